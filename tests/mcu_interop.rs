//! The audio MCU in the real binary over real UDP on loopback: a GStreamer participant (Opus RTP, plain)
//! and a participant of this test (PCMU) join one conference through the admin API; each sends its own
//! tone, and each hears the other's tone and not its own (Goertzel on what it decoded).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use vienna_e2e::media::{Gst, goertzel, read_wav};
use vienna_e2e::ports::free_port;
use vienna_e2e::{PATIENCE, Server, http_request};
use vienna_media::codec::{CodecKind, CodecSetting, decoder, encoder};
use vienna_media::rtp::RtpPacket;

const GST_SSRC: u32 = 0x1234_5678;
const OUR_SSRC: u32 = 0x0bad_cafe;

fn offer(port: u16, codec: &str, ssrc: u32) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP {codec}\r\na=rtcp-mux\r\na=ssrc:{ssrc} cname:t\r\n"
    )
}

fn answer_port(answer: &str) -> u16 {
    answer.lines().find_map(|l| l.strip_prefix("m=audio ")).and_then(|l| l.split(' ').next()).unwrap().parse().unwrap()
}

#[test]
fn gstreamer_and_a_pcmu_peer_hear_each_other_through_the_mcu() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--set", "mcu.enabled=true", "--set", "mcu.workers=1"]);

    // GStreamer: Opus, 440 Hz; its receiving pipeline listens on gst_rx, its sender uses any port.
    let gst_rx = free_port();
    let r = http_request(
        server.admin,
        "POST",
        "/api/v1/mcu/conferences/e2e/participants?label=gstreamer",
        "application/sdp",
        &offer(gst_rx, "111\r\na=rtpmap:111 opus/48000/2", GST_SSRC),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    assert!(r.header("location").unwrap().starts_with("/api/v1/mcu/conferences/e2e/participants/"));
    assert!(r.body.contains("a=rtpmap:111 opus/48000/2"), "{}", r.body);
    let mcu_port = answer_port(&r.body);
    assert_eq!(SocketAddr::from(([127, 0, 0, 1], mcu_port)), server_listener(&server));

    // This test's participant: PCMU, 1000 Hz.
    let ours = UdpSocket::bind("127.0.0.1:0").unwrap();
    ours.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let r = http_request(
        server.admin,
        "POST",
        "/api/v1/mcu/conferences/e2e/participants?label=pcmu",
        "application/sdp",
        &offer(ours.local_addr().unwrap().port(), "0", OUR_SSRC),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(answer_port(&r.body), mcu_port, "one conference, one worker");
    let mcu = SocketAddr::from(([127, 0, 0, 1], mcu_port));

    let wav = dir.path().join("gst-heard.wav");
    let mut receiver = Gst::launch(&format!(
        "udpsrc address=127.0.0.1 port={gst_rx} num-buffers=150 \
         caps=application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=111 \
         ! rtpopusdepay ! opusdec ! audioconvert ! audioresample \
         ! audio/x-raw,format=S16LE,channels=1,rate=48000 ! wavenc ! filesink location={}",
        wav.display()
    ));
    let mut sender = Gst::launch(&format!(
        "audiotestsrc is-live=true wave=sine freq=440 volume=0.25 samplesperbuffer=960 num-buffers=300 \
         ! audio/x-raw,rate=48000,channels=1 ! opusenc bitrate=32000 frame-size=20 \
         ! rtpopuspay pt=111 ssrc={GST_SSRC} ! udpsink host=127.0.0.1 port={mcu_port}"
    ));

    // Send our tone for 6 s and decode what comes back.
    let mut enc = encoder(CodecSetting::g711(CodecKind::Pcmu), 8_000, 0).unwrap();
    let mut dec = decoder(CodecKind::Pcmu, 8_000).unwrap();
    let mut heard: Vec<i16> = Vec::new();
    let mut csrcs = 0;
    let start = Instant::now();
    let mut header = rtp::header::Header::default();
    for i in 0..300u32 {
        let pcm: Vec<i16> = (0..160)
            .map(|k| (6000.0 * (2.0 * std::f64::consts::PI * 1000.0 * f64::from(i * 160 + k) / 8000.0).sin()) as i16)
            .collect();
        let mut packet = [0u8; 200];
        let fields = vienna_media::rtp::HeaderFields {
            marker: i == 0,
            payload_type: 0,
            sequence: i as u16,
            timestamp: i * 160,
            ssrc: OUR_SSRC,
        };
        let h = vienna_media::rtp::write_header(&mut header, fields, &[], &mut packet).unwrap();
        let n = enc.encode(&pcm, &mut packet[h..]).unwrap();
        ours.send_to(&packet[..h + n], mcu).unwrap();
        let next = start + Duration::from_millis(20 * u64::from(i + 1));
        while Instant::now() < next {
            let mut buf = [0u8; 1500];
            if let Ok((n, _)) = ours.recv_from(&mut buf) {
                let p = RtpPacket::parse(&buf[..n]).unwrap();
                if p.payload_type == 0 {
                    csrcs += usize::from(p.csrc_count > 0);
                    let mut out = [0i16; 960];
                    let m = dec.decode(p.payload(), &mut out).unwrap();
                    heard.extend_from_slice(&out[..m]);
                }
            }
            let left = next.saturating_duration_since(Instant::now());
            ours.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        }
    }
    sender.wait_exit(PATIENCE);
    receiver.wait_exit(PATIENCE);

    // The conference as the admin API shows it, while both are still in it.
    let list = server.get("/api/v1/mcu/conferences").json();
    let conf = &list.as_array().unwrap()[0];
    assert_eq!(conf["name"], "e2e");
    assert_eq!(conf["participants"].as_array().unwrap().len(), 2, "{conf}");
    let gst_in = conf["participants"].as_array().unwrap().iter().find(|p| p["label"] == "gstreamer").unwrap()["rtp_in"]
        .as_u64()
        .unwrap();
    assert!(gst_in > 200, "the MCU used GStreamer's packets: {conf}");

    // We hear GStreamer's 440 Hz and not our own 1000 Hz (second half, after start-up).
    assert!(heard.len() > 8000 * 4, "we heard {} samples", heard.len());
    let tail = &heard[heard.len() / 3..];
    let (theirs, own) = (goertzel(tail, 440.0, 8000.0), goertzel(tail, 1000.0, 8000.0));
    assert!(theirs > 1e5 && own < theirs / 1000.0, "440 Hz {theirs:e}, own 1000 Hz {own:e}");
    assert!(csrcs > 100, "mixes carry the talker as CSRC");

    // GStreamer heard our 1000 Hz and not its own 440 Hz.
    let gst_heard = read_wav(&wav);
    assert!(gst_heard.len() > 48_000 * 2, "GStreamer decoded {} samples", gst_heard.len());
    let tail = &gst_heard[gst_heard.len() / 3..];
    let (theirs, own) = (goertzel(tail, 1000.0, 48_000.0), goertzel(tail, 440.0, 48_000.0));
    assert!(theirs > 1e5 && own < theirs / 1000.0, "GStreamer: 1000 Hz {theirs:e}, own 440 Hz {own:e}");

    // Mute and leave through the API.
    let id = conf["participants"].as_array().unwrap()[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/mcu/conferences/e2e/participants/{id}");
    assert_eq!(http_request(server.admin, "POST", &format!("{path}/mute"), "text/plain", "").status, 204);
    assert_eq!(http_request(server.admin, "DELETE", &path, "text/plain", "").status, 204);
    assert_eq!(http_request(server.admin, "DELETE", &path, "text/plain", "").status, 404);
    let bad =
        http_request(server.admin, "POST", "/api/v1/mcu/conferences/e2e/participants", "application/sdp", "v=0\r\n");
    assert_eq!(bad.status, 400, "{}", bad.body);
    let metrics = server.get("/metrics").body;
    assert!(metrics.contains("vienna_mcu_rtp_out_total"));
    // The worker's tick rounds against the 20 ms budget, per worker, in /metrics and the admin API.
    assert!(metrics.contains("vienna_mcu_tick_rounds_total{worker=\"0\"}"), "{metrics}");
    for clock in ["wall", "cpu"] {
        assert!(
            metrics.lines().any(|l| l.starts_with("vienna_mcu_tick_overruns_total{")
                && l.contains("worker=\"0\"")
                && l.contains(&format!("clock=\"{clock}\""))),
            "{metrics}"
        );
    }
    let mcu = server.get("/api/v1/mcu").json();
    let worker = &mcu["workers"][0];
    let rounds = worker["tick_rounds"].as_u64().unwrap();
    assert!(rounds > 100, "a few seconds of 20 ms ticks: {mcu}");
    assert!(worker["tick_overruns"].as_u64().unwrap() <= rounds, "{mcu}");
    assert!(worker["tick_cpu_overruns"].as_u64().unwrap() <= rounds, "{mcu}");
    assert!(worker["tick_cpu_us"].as_u64().unwrap() > 0, "{mcu}");
    assert!(worker["tick_busy_us"].as_u64().unwrap() > 0, "{mcu}");
}

fn server_listener(server: &Server) -> SocketAddr {
    // the log line of the MCU's one worker
    let text = server.log_text();
    let line = text.lines().find(|l| l.contains("\"role\":\"mcu\"")).expect("mcu listener logged");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["address"].as_str().unwrap().parse().unwrap()
}

/// xorshift: repeatable "network" impairments.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One participant of this test over real UDP: sends its tone with loss, jitter and reordering, and
/// decodes what the MCU sends back. Returns what it heard (8 or 48 kHz, by codec).
fn participant(
    socket: UdpSocket,
    mcu: SocketAddr,
    codec: CodecKind,
    ssrc: u32,
    tone: f64,
    frames: u32,
    seed: u64,
) -> Vec<i16> {
    let rate = if codec == CodecKind::Opus { 48_000 } else { 8_000 };
    let setting = if codec == CodecKind::Opus { CodecSetting::opus(32_000) } else { CodecSetting::g711(codec) };
    let pt = if codec == CodecKind::Opus { 111 } else { 0 };
    let mut enc = encoder(setting, rate, 5).unwrap();
    let mut dec = decoder(codec, rate).unwrap();
    let n = (rate / 50) as usize;
    let mut header = rtp::header::Header::default();
    let mut rng = Rng(seed);
    // (send time, packet) waiting in the "network"
    let mut in_flight: Vec<(Instant, Vec<u8>)> = Vec::new();
    let mut heard = Vec::new();
    let start = Instant::now();
    let end = start + Duration::from_millis(20 * u64::from(frames) + 300);
    let mut next_frame = 0u32;
    socket.set_nonblocking(true).unwrap();
    while Instant::now() < end {
        let now = Instant::now();
        while next_frame < frames && start + Duration::from_millis(20 * u64::from(next_frame)) <= now {
            let i = next_frame;
            next_frame += 1;
            let pcm: Vec<i16> = (0..n)
                .map(|k| {
                    let t = (i as usize * n + k) as f64 / f64::from(rate);
                    (6000.0 * (2.0 * std::f64::consts::PI * tone * t).sin()) as i16
                })
                .collect();
            let mut packet = vec![0u8; 1500];
            let fields = vienna_media::rtp::HeaderFields {
                marker: i == 0,
                payload_type: pt,
                sequence: i as u16,
                timestamp: i * codec.frame_ticks(),
                ssrc,
            };
            let h = vienna_media::rtp::write_header(&mut header, fields, &[], &mut packet).unwrap();
            let len = enc.encode(&pcm, &mut packet[h..]).unwrap();
            packet.truncate(h + len);
            if rng.below(100) < 5 {
                continue; // 5 % lost
            }
            // 0..60 ms of delay: packets 20 ms apart overtake each other
            in_flight.push((now + Duration::from_millis(rng.below(60)), packet));
        }
        in_flight.sort_by_key(|p| p.0);
        while in_flight.first().is_some_and(|p| p.0 <= now) {
            let (_, packet) = in_flight.remove(0);
            let _ = socket.send_to(&packet, mcu);
        }
        let mut buf = [0u8; 1500];
        while let Ok((len, _)) = socket.recv_from(&mut buf) {
            if let Ok(p) = RtpPacket::parse(&buf[..len])
                && p.payload_type == pt
            {
                let mut out = [0i16; 960];
                if let Ok(m) = dec.decode(p.payload(), &mut out) {
                    heard.extend_from_slice(&out[..m]);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    heard
}

#[test]
fn four_participants_over_udp_hear_the_others_through_loss_jitter_and_reordering() {
    let dir = tempfile::tempdir().unwrap();
    // four talkers, all mixed
    let server = Server::start(
        dir.path(),
        &["--set", "mcu.enabled=true", "--set", "mcu.workers=2", "--set", "mcu.max_talkers=4"],
    );
    let tones = [440.0, 760.0, 1180.0, 1520.0];
    let codecs = [CodecKind::Opus, CodecKind::Pcmu, CodecKind::Opus, CodecKind::Pcmu];
    let mut threads = Vec::new();
    let mut mcu_port = None;
    for i in 0..4 {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ssrc = 0x7700_0000 + i as u32;
        let fmt = if codecs[i] == CodecKind::Opus { "111\r\na=rtpmap:111 opus/48000/2" } else { "0" };
        let r = http_request(
            server.admin,
            "POST",
            &format!("/api/v1/mcu/conferences/tones/participants?label=p{i}"),
            "application/sdp",
            &offer(socket.local_addr().unwrap().port(), fmt, ssrc),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let port = answer_port(&r.body);
        assert_eq!(*mcu_port.get_or_insert(port), port, "one conference lives on one worker");
        let mcu = SocketAddr::from(([127, 0, 0, 1], port));
        let (codec, tone) = (codecs[i], tones[i]);
        threads.push(std::thread::spawn(move || participant(socket, mcu, codec, ssrc, tone, 250, 11 + i as u64)));
    }
    let heard: Vec<Vec<i16>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let list = server.get("/api/v1/mcu/conferences").json();
    for (i, h) in heard.iter().enumerate() {
        let rate = if codecs[i] == CodecKind::Opus { 48_000.0 } else { 8_000.0 };
        let frame = (rate / 50.0) as usize;
        assert!(h.len() > frame * 200, "p{i} heard {} samples: {list}", h.len());
        // from 1 s in to 0.5 s before the end
        let part = &h[50 * frame..h.len() - 25 * frame];
        for (t, &hz) in tones.iter().enumerate() {
            let power = goertzel(part, hz, rate);
            if t == i {
                assert!(power < 1e3, "p{i} hears its own tone ({power:e}): {list}");
            } else {
                assert!(power > 1e5, "p{i} misses p{t}'s {hz} Hz ({power:e}): {list}");
            }
        }
        // no silent stretch longer than concealment covers: at most 3 silent frames in a row
        let mut run = 0;
        let mut worst = 0;
        for f in part.chunks(frame) {
            let energy = f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / f.len() as f64;
            run = if energy < 1000.0 { run + 1 } else { 0 };
            worst = worst.max(run);
        }
        assert!(worst <= 3, "p{i}: {worst} silent frames in a row: {list}");
    }
}
