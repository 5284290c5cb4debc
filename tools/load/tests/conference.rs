//! `vienna-load conference` against Vienna's audio MCU (`vienna serve` with `[mcu]`, joined through the
//! admin API), and against two small bridges written here that the tool must judge: one sends every
//! participant its own stream back (talkers hear themselves, nobody hears the others: the checks must
//! fail), one forwards each of two participants' packets to the other after 100 ms (the mix checks pass
//! and the mouth-to-ear latency is the 100 ms plus the sender's 20 ms frame). Runs are bounded by
//! `--duration`; the tests assert counts and the latency's lower bound, which no scheduling delay can
//! undercut.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Mcu, vienna_load};

#[test]
fn vienna_mcu_mixes_every_talker_for_every_participant() {
    let mcu = Mcu::start(&[]);
    let admin = mcu.admin.to_string();
    let pid = mcu.pid().to_string();
    // 3 talkers (Vienna mixes 3) and 2 listeners.
    let args = ["conference", "--admin", &admin, "--participants", "5", "--duration", "6", "--pid", &pid];
    let run = vienna_load(&args, Some("html"));
    run.assert_success();
    let j = &run.json;
    assert_eq!(j["mode"], "conference");
    assert_eq!(j["config"]["talkers"], 3);
    assert_eq!(j["config"]["codec"], "opus");
    assert_eq!(j["join"]["ok"], 5);
    assert_eq!(j["join"]["left"], 5, "everyone leaves at the end");
    assert_eq!(j["sent"]["packets"], 1500, "5 participants x 50 pps x 6 s");
    assert_eq!(j["sent"]["errors"], 0);
    let r = &j["received"];
    assert_eq!(r["silent_participants"], 0);
    assert_eq!(r["lost"], 0, "no loss on loopback at this rate");
    assert!(r["packets"].as_u64().unwrap() >= 5 * 50 * 5, "a mix for everyone: {r}");
    let m = &j["mix"];
    assert_eq!(m["checked"], 5, "talkers and listeners (up to --check-listeners) decode");
    assert_eq!(m["seconds"].as_u64(), Some(5 * 4), "5 participants x the 4 s after the warm-up");
    assert_eq!(m["seconds_expected"], m["seconds"]);
    assert!(r["per_participant_pps"].as_f64().unwrap() >= 45.0, "the bridge keeps up with 50/s: {r}");
    assert_eq!(m["seconds_ok"], m["seconds"], "every second has the other talkers and not the own tone: {m}");
    assert_eq!((m["missing_tone"].as_u64(), m["own_tone"].as_u64()), (Some(0), Some(0)));
    // talkers hear 2 others, listeners 3: (3 x 2 + 2 x 3) per second
    assert_eq!(m["onsets_expected"].as_u64(), Some(12 * 4));
    let found = m["onsets_found"].as_u64().unwrap();
    assert!(found * 10 >= 12 * 4 * 9, "most gap ends are found: {m}");
    assert!(j["latency_us"]["count"].as_u64().unwrap() >= found);
    assert!(j["latency_us"]["p50"].as_u64().unwrap() >= 20_000, "at least the sender's 20 ms frame");
    assert!(j["server_process"]["cpu_secs"].as_f64().is_some());
    for (topic, key, path) in [
        ("sent", "packets", "/sent/packets"),
        ("received", "packets", "/received/packets"),
        ("received", "loss_percent", "/received/loss_percent"),
        ("mix", "seconds_ok", "/mix/seconds_ok"),
        ("mix", "onsets_found", "/mix/onsets_found"),
        ("latency_us", "p50", "/latency_us/p50"),
        ("jitter_us", "mean", "/jitter_us/mean"),
    ] {
        run.same(topic, key, path);
    }
    assert_eq!(run.timeline_sum("offered"), 1500);
    let html = run.report.as_deref().unwrap();
    assert!(html.contains("<svg") && html.contains("packets=1500"));
}

#[test]
fn vienna_mcu_with_pcmu_and_with_g722_in_two_conferences() {
    let mcu = Mcu::start(&[]);
    let admin = mcu.admin.to_string();
    for (codec, name) in [("pcmu", "PCMU"), ("g722", "G722")] {
        let args = [
            "conference",
            "--admin",
            &admin,
            "--participants",
            "6",
            "--conferences",
            "2",
            "--talkers",
            "2",
            "--codec",
            codec,
            "--duration",
            "5",
        ];
        let run = vienna_load(&args, None);
        run.assert_success();
        let j = &run.json;
        assert_eq!(j["config"]["conferences"].as_array().unwrap().len(), 2);
        assert_eq!(j["config"]["codec"], name);
        assert_eq!(j["join"]["ok"], 6);
        assert_eq!(j["sent"]["packets"], 1500);
        assert_eq!(j["received"]["lost"], 0);
        let m = &j["mix"];
        assert_eq!(m["checked"], 6);
        assert_eq!(m["seconds_ok"], m["seconds"], "{codec}: {m}");
        // per conference: 2 talkers hear 1 other, 1 listener hears 2: 4 per second, 2 conferences, 3 s
        assert_eq!(m["onsets_expected"].as_u64(), Some(4 * 2 * 3), "{codec}");
    }
}

#[test]
fn vienna_mcu_with_srtp_on_every_stream() {
    let mcu = Mcu::start(&[]);
    let admin = mcu.admin.to_string();
    let args = ["conference", "--admin", &admin, "--participants", "4", "--talkers", "2", "--srtp", "--duration", "4"];
    let run = vienna_load(&args, None);
    run.assert_success();
    let j = &run.json;
    assert_eq!(j["config"]["srtp"], true);
    assert_eq!(j["join"]["ok"], 4);
    assert_eq!(j["sent"]["packets"], 800);
    assert_eq!(j["sent"]["errors"], 0);
    let r = &j["received"];
    assert_eq!((r["lost"].as_u64(), r["srtp_rejected"].as_u64()), (Some(0), Some(0)), "{r}");
    assert!(r["packets"].as_u64() > Some(700), "the mixes came back decrypted: {r}");
    let m = &j["mix"];
    assert_eq!(m["seconds_ok"], m["seconds"], "{m}");
    // Each talker hears the other's tone: the bridge decrypted what they sent, they decrypted the mix.
    assert_eq!(m["seconds"].as_u64(), Some(4 * 2), "4 checked participants x 2 s after the warm-up: {m}");
}

/// What the fake bridge does with a participant's packets.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Back to the sender.
    Mirror,
    /// To the other participant of its pair (the first two to join, the next two...), after a delay.
    Swap(Duration),
}

/// A bridge of these tests: an admin API that answers every offer with its one UDP port, and that port.
struct FakeBridge {
    admin: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeBridge {
    fn start(behaviour: Behaviour) -> FakeBridge {
        let http = TcpListener::bind("127.0.0.1:0").unwrap();
        http.set_nonblocking(true).unwrap();
        let admin = http.local_addr().unwrap();
        let media = UdpSocket::bind("127.0.0.1:0").unwrap();
        media.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let media_port = media.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let peers: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
        let (s, p) = (stop.clone(), peers.clone());
        let api = std::thread::spawn(move || {
            while !s.load(Relaxed) {
                let Ok((stream, _)) = http.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                answer(stream, media_port, &p);
            }
        });
        let s = stop.clone();
        let relay = std::thread::spawn(move || {
            let mut queue: Vec<(Instant, SocketAddr, Vec<u8>)> = Vec::new();
            let mut buf = [0u8; 2048];
            while !s.load(Relaxed) {
                if let Ok((n, from)) = media.recv_from(&mut buf) {
                    let list = peers.lock().unwrap().clone();
                    match behaviour {
                        Behaviour::Mirror => queue.push((Instant::now(), from, buf[..n].to_vec())),
                        Behaviour::Swap(delay) => {
                            if let Some(to) = list.iter().position(|a| *a == from).and_then(|i| list.get(i ^ 1)) {
                                queue.push((Instant::now() + delay, *to, buf[..n].to_vec()));
                            }
                        }
                    }
                }
                let now = Instant::now();
                queue.retain(|(at, to, bytes)| {
                    if *at <= now {
                        let _ = media.send_to(bytes, to);
                        false
                    } else {
                        true
                    }
                });
            }
        });
        FakeBridge { admin, stop, threads: vec![api, relay] }
    }
}

impl Drop for FakeBridge {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One admin request: POST an offer (201, an answer with the media port), DELETE (204).
fn answer(mut stream: std::net::TcpStream, media_port: u16, peers: &Mutex<Vec<SocketAddr>>) {
    stream.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    let offer = String::from_utf8(body).unwrap();
    if request_line.starts_with("DELETE") {
        stream.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n").unwrap();
        return;
    }
    let port: u16 =
        offer.lines().find_map(|l| l.strip_prefix("m=audio ")).unwrap().split(' ').next().unwrap().parse().unwrap();
    let format = offer.lines().find_map(|l| l.strip_prefix("a=rtpmap:")).unwrap().to_owned();
    let pt = format.split(' ').next().unwrap();
    let mut list = peers.lock().unwrap();
    list.push(SocketAddr::from(([127, 0, 0, 1], port)));
    let id = list.len();
    let sdp = format!(
        "v=0\r\no=fake 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {media_port} RTP/AVP {pt}\r\n\
         a=rtpmap:{format}\r\na=rtcp-mux\r\n"
    );
    let head = format!(
        "HTTP/1.1 201 Created\r\nContent-Type: application/sdp\r\nLocation: /api/v1/mcu/conferences/x/participants/{id}\r\n\
         Content-Length: {}\r\n\r\n",
        sdp.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(sdp.as_bytes()).unwrap();
}

#[test]
fn a_bridge_that_sends_talkers_their_own_voice_fails_the_check() {
    let bridge = FakeBridge::start(Behaviour::Mirror);
    let admin = bridge.admin.to_string();
    let args = ["conference", "--admin", &admin, "--participants", "2", "--duration", "4", "--warmup", "1"];
    let run = vienna_load(&args, None);
    assert_eq!(run.out.status.code(), Some(1), "{}", run.stdout());
    let m = &run.json["mix"];
    assert_eq!(m["own_tone"], 6, "both talkers, every checked second: {m}");
    assert_eq!(m["missing_tone"], 6, "and neither hears the other");
    assert_eq!(m["seconds_ok"], 0);
    assert_eq!(m["seconds_expected"], 6);
    assert_eq!(run.json["join"]["left"], 2);
}

#[test]
fn forwarding_with_a_delay_is_measured_as_that_delay_plus_the_frame() {
    let bridge = FakeBridge::start(Behaviour::Swap(Duration::from_millis(100)));
    let admin = bridge.admin.to_string();
    for codec in ["opus", "pcmu", "g722"] {
        let args = [
            "conference",
            "--admin",
            &admin,
            "--participants",
            "2",
            "--duration",
            "5",
            "--warmup",
            "1",
            "--codec",
            codec,
        ];
        let run = vienna_load(&args, None);
        run.assert_success();
        let j = &run.json;
        let m = &j["mix"];
        assert_eq!(m["seconds_ok"], m["seconds"], "{codec}: each hears the other, not itself: {m}");
        assert_eq!(m["onsets_expected"], 8, "{codec}: 2 participants x 4 s");
        assert_eq!(m["onsets_found"], 8, "{codec}: {m}");
        // 100 ms in the bridge + the 20 ms frame the gap's end waited in: never less (within the
        // detector's 1 ms), however the threads are scheduled.
        let l = &j["latency_us"];
        assert!(l["min"].as_u64().unwrap() >= 119_000, "{codec}: {l}");
        assert!(l["p50"].as_u64().unwrap() < 400_000, "{codec}: {l}");
    }
}
