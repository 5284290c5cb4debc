//! Real clients in a conference of the real binary on loopback. baresip (Debian package baresip) dials
//! the conference's dial-in URI `sip:conf-<id>@localhost` through Vienna (Digest, MD5) and GStreamer
//! (gst-launch-1.0) joins through this test's SIP user agent, which sends GStreamer's SDP offer; every
//! participant sends its own tone and each hears the others' tones and not its own (Goertzel on what
//! baresip decoded, dumped by its `sndfile` module, and on what GStreamer decoded). Once in plain RTP,
//! once with SRTP everywhere (baresip `mediaenc=srtp-mand`, GStreamer `srtpenc`/`srtpdec` keyed from the
//! SDES lines of offer and answer), and once with baresip speaking G.722 (its `g722` module) to a bridge
//! whose other participant speaks Opus. A further test proves that listeners share one encoding: with two
//! talkers and four listeners the MCU encodes three frames per tick (two N-1 mixes and one shared
//! mix), not six. The roster (admin API) shows the talkers' SSRCs and a dominant speaker.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use vienna_e2e::baresip::Baresip;
use vienna_e2e::media::{Gst, goertzel, read_wav, read_wav_format};
use vienna_e2e::ports::free_port;
use vienna_e2e::ua::Ua;
use vienna_e2e::{PATIENCE, Server, add_user, http_request};

const GST_SSRC: u32 = 0x6a57_0001;

/// A baresip participant: its user, its tone (Hz) and the one codec it offers.
#[derive(Clone, Copy)]
struct Dialer {
    user: &'static str,
    tone: u32,
    codec: Codec,
}

/// carol: Opus, 440 Hz.
const CAROL: Dialer = Dialer { user: "carol", tone: 440, codec: Codec::Opus };

/// What a baresip participant speaks.
#[derive(Clone, Copy, PartialEq)]
enum Codec {
    Opus,
    G722,
}

impl Codec {
    /// baresip's `audio_codecs` value.
    fn baresip(self) -> &'static str {
        match self {
            Codec::Opus => "opus/48000/2",
            Codec::G722 => "G722/16000/1",
        }
    }

    /// The name the MCU reports.
    fn mcu(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::G722 => "G722",
        }
    }
}

/// A headless baresip that dials `uri` at start, sends its tone in its codec and hangs up after
/// `seconds`; `sndfile` dumps what it sends and what it decodes into its directory.
fn dialer(root: &Path, d: Dialer, proxy: std::net::SocketAddr, uri: &str, srtp: bool, seconds: u32) -> Baresip {
    let (user, tone) = (d.user, d.tone);
    let mediaenc = if srtp { ";mediaenc=srtp-mand" } else { "" };
    let account = format!(
        "<sip:{user}@localhost>;auth_pass={user}-secret;outbound=\"sip:{proxy};transport=udp\";regint=0;\
         answermode=auto{mediaenc};audio_codecs={}",
        d.codec.baresip()
    );
    Baresip::builder(root, user, account)
        .modules(&["opus.so", "g722.so", "srtp.so", "sndfile.so"])
        .tone(tone)
        .dial(uri)
        .seconds(seconds)
        .start()
}

/// The first channel of what `agent` decoded, and its sampling rate.
fn heard(agent: &Baresip) -> (Vec<i16>, f64) {
    let dump = std::fs::read_dir(&agent.home)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .unwrap_or_else(|| panic!("baresip dumped nothing it decoded:\n{}", agent.log_text()));
    let (rate, channels, samples) = read_wav_format(&dump);
    (samples.chunks_exact(usize::from(channels.max(1))).map(|c| c[0]).collect(), f64::from(rate))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// GStreamer in the conference: joined by this test's SIP agent (user `gst`), sending a 700 Hz tone and
/// decoding what the MCU sends into a WAV file.
struct GstParticipant {
    receiver: Gst,
    sender: Gst,
    wav: PathBuf,
}

fn gstreamer_joins(
    dir: &Path,
    sip: std::net::SocketAddr,
    dial: &str,
    srtp: bool,
    seconds: u32,
) -> (GstParticipant, Ua) {
    let rx = free_port();
    let key: Vec<u8> = (0..30u8).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
    // With SRTP the MCU's SRTCP goes to the next port (no rtcp-mux): srtpdec would push it out of its
    // RTCP pad, which a one-line pipeline leaves unlinked (a not-linked error stops it).
    let (proto, crypto, mux) = if srtp {
        let inline = base64::engine::general_purpose::STANDARD.encode(&key);
        ("RTP/SAVP", format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{inline}\r\n"), "")
    } else {
        ("RTP/AVP", String::new(), "a=rtcp-mux\r\n")
    };
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rx} {proto} 111\r\n\
         a=rtpmap:111 opus/48000/2\r\n{mux}a=ssrc:{GST_SSRC} cname:gst\r\n{crypto}"
    );
    let mut ua = Ua::new(sip, "gst", "gst-secret", "localhost");
    let (r, _) = ua.request("INVITE", dial, "", Some(("application/sdp", &offer)));
    assert_eq!(r.status, 200, "GStreamer's INVITE: {r:?}");
    let answer = String::from_utf8_lossy(&r.body).into_owned();
    let attr = |name: &str| answer.lines().find_map(|l| l.strip_prefix(name)).map(str::to_owned);
    let mcu_port: u16 = attr("m=audio ").and_then(|l| l.split(' ').next().map(str::to_owned)).unwrap().parse().unwrap();
    let mcu_ssrc: u32 = attr("a=ssrc:").and_then(|l| l.split(' ').next().map(str::to_owned)).unwrap().parse().unwrap();
    let wav = dir.join("gst-heard.wav");
    let buffers = seconds * 50;
    let (src_caps, decrypt, encrypt) = if srtp {
        let line = attr("a=crypto:").unwrap_or_else(|| panic!("no SRTP in the answer:\n{answer}"));
        assert!(answer.contains(&format!("m=audio {mcu_port} RTP/SAVP 111")), "{answer}");
        let inline = line.split("inline:").nth(1).unwrap().split('|').next().unwrap();
        let theirs = base64::engine::general_purpose::STANDARD.decode(inline).unwrap();
        let suite = "srtp-cipher=(string)aes-128-icm,srtp-auth=(string)hmac-sha1-80,\
                     srtcp-cipher=(string)aes-128-icm,srtcp-auth=(string)hmac-sha1-80";
        (
            format!(
                "application/x-srtp,media=(string)audio,clock-rate=(int)48000,encoding-name=(string)OPUS,\
                 payload=(int)111,ssrc=(uint){mcu_ssrc},srtp-key=(buffer){},{suite}",
                hex(&theirs)
            ),
            "! srtpdec ",
            format!(
                "! srtpenc key={} rtp-cipher=aes-128-icm rtp-auth=hmac-sha1-80 rtcp-cipher=aes-128-icm \
                 rtcp-auth=hmac-sha1-80 ",
                hex(&key)
            ),
        )
    } else {
        ("application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=111".to_owned(), "", String::new())
    };
    let receiver = Gst::launch(&format!(
        "udpsrc address=127.0.0.1 port={rx} num-buffers={buffers} caps={src_caps} {decrypt}\
         ! rtpopusdepay ! opusdec ! audioconvert ! audioresample \
         ! audio/x-raw,format=S16LE,channels=1,rate=48000 ! wavenc ! filesink location={}",
        wav.display()
    ));
    let sender = Gst::launch(&format!(
        "audiotestsrc is-live=true wave=sine freq=700 volume=0.25 samplesperbuffer=960 num-buffers={buffers} \
         ! audio/x-raw,rate=48000,channels=1 ! opusenc bitrate=32000 frame-size=20 \
         ! rtpopuspay pt=111 ssrc={GST_SSRC} {encrypt}! udpsink host=127.0.0.1 port={mcu_port}"
    ));
    (GstParticipant { receiver, sender, wav }, ua)
}

/// Creates a conference of alice through the admin API; returns (id, dial-in URI).
fn create_conference(server: &Server) -> (String, String) {
    let r = http_request(
        server.admin,
        "POST",
        "/api/v1/conferences",
        "application/json",
        r#"{"organizer":"alice","subject":"interop"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    (v["conference"]["id"].as_str().unwrap().to_owned(), v["uris"]["dial_in"].as_str().unwrap().to_owned())
}

fn start(dir: &Path, users: &[&str]) -> Server {
    let data = dir.join("data");
    for user in users {
        add_user(&data, user, &format!("{user}-secret"));
    }
    Server::start(&data, &["--set", "turn.enabled=false", "--set", "sip.digest_algorithms=[\"MD5\"]"])
}

/// Asserts that `heard` (at `rate`) holds every tone of `others` and not `own`.
fn check(who: &str, heard: &[i16], rate: f64, own: f64, others: &[f64], context: &dyn Fn() -> String) {
    assert!(heard.len() as f64 > rate * 3.0, "{who} heard only {} samples\n{}", heard.len(), context());
    // from a third in, to skip the start (joins, jitter buffers filling), to a tenth before the end
    let part = &heard[heard.len() / 3..heard.len() - heard.len() / 10];
    let own_power = goertzel(part, own, rate);
    for &hz in others {
        let p = goertzel(part, hz, rate);
        assert!(p > 1e5, "{who} misses {hz} Hz ({p:e}; own {own} Hz {own_power:e})\n{}", context());
        assert!(
            own_power < p / 300.0,
            "{who} hears its own {own} Hz ({own_power:e} against {hz} Hz {p:e})\n{}",
            context()
        );
    }
}

fn conference_of_real_clients(srtp: bool, baresips: &[Dialer]) {
    let dir = tempfile::tempdir().unwrap();
    let mut users = vec!["alice", "gst"];
    users.extend(baresips.iter().map(|b| b.user));
    let mut server = start(dir.path(), &users);
    let sip = server.listener("sip", "udp");
    let (id, dial) = create_conference(&server);
    let seconds = 9;
    let (mut g, mut gst_ua) = gstreamer_joins(dir.path(), sip, &dial, srtp, seconds);
    let mut agents: Vec<Baresip> = baresips.iter().map(|d| dialer(dir.path(), *d, sip, &dial, srtp, seconds)).collect();
    let dirs: Vec<PathBuf> = agents.iter().map(|a| a.home.clone()).collect();
    let peers = || {
        let mut s = String::new();
        for d in &dirs {
            let out = std::fs::read(d.join("stdout.log")).unwrap_or_default();
            s.push_str(&format!("--- {} ---\n{}\n", d.display(), String::from_utf8_lossy(&out)));
        }
        s
    };
    // While everyone is in: the MCU's view and the roster.
    let n = baresips.len() + 1;
    let path = format!("/api/v1/conferences/{id}");
    let live = server.wait_json_or(
        &path,
        |v| {
            v["mcu"]["participants"]
                .as_array()
                .is_some_and(|p| p.len() == n && p.iter().all(|p| p["rtp_in"].as_u64() > Some(50)))
                && v["roster"]["users"]
                    .as_array()
                    .is_some_and(|u| u.len() == n && u.iter().all(|u| u["src_id"].is_u64()))
        },
        peers,
    );
    let mut codecs: Vec<&str> = Vec::new();
    for p in live["mcu"]["participants"].as_array().unwrap() {
        assert_eq!(p["srtp"], srtp, "{live}");
        codecs.push(p["codec"].as_str().unwrap_or("?"));
    }
    // GStreamer speaks Opus, each baresip its own codec.
    let mut expected: Vec<&str> = baresips.iter().map(|b| b.codec.mcu()).chain(["opus"]).collect();
    codecs.sort_unstable();
    expected.sort_unstable();
    assert_eq!(codecs, expected, "{live}");
    let gst_user =
        live["roster"]["users"].as_array().unwrap().iter().find(|u| u["entity"] == "sip:gst@localhost").unwrap();
    assert_eq!(gst_user["src_id"], GST_SSRC, "{live}");
    let live = server.wait_json_or(&path, |v| v["roster"]["dominant"].is_string(), peers);
    assert!(users.iter().any(|u| live["roster"]["dominant"] == format!("sip:{u}@localhost")), "{live}");

    g.sender.wait_exit(PATIENCE);
    g.receiver.wait_exit(PATIENCE);
    for a in &mut agents {
        a.wait_exit(PATIENCE);
    }
    let tones: Vec<f64> = baresips.iter().map(|b| f64::from(b.tone)).collect();
    let context = || format!("{}--- vienna ---\n{}", peers(), server.log_text());
    for (a, Dialer { user, tone, .. }) in agents.iter().zip(baresips) {
        assert!(a.log_text().contains("Call established"), "{user}:\n{}", a.log_text());
        if srtp {
            assert!(a.log_text().contains("SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)"), "{}", a.log_text());
        }
        let mut others = vec![700.0];
        others.extend(tones.iter().copied().filter(|t| *t != f64::from(*tone)));
        let (samples, rate) = heard(a);
        check(user, &samples, rate, f64::from(*tone), &others, &context);
    }
    check("GStreamer", &read_wav(&g.wav), 48_000.0, 700.0, &tones, &context);
    // baresip hung up (BYE): only GStreamer's agent is left, and it leaves with BYE.
    server.wait_json_or(&path, |v| v["roster"]["users"].as_array().is_some_and(|u| u.len() == 1), peers);
    gst_ua.inbox.clear();
}

#[test]
fn baresip_and_gstreamer_are_mixed_over_plain_rtp() {
    conference_of_real_clients(false, &[CAROL]);
}

#[test]
fn two_baresips_and_gstreamer_are_mixed_over_srtp() {
    conference_of_real_clients(true, &[CAROL, Dialer { user: "dave", tone: 1000, codec: Codec::Opus }]);
}

#[test]
fn baresip_speaking_g722_and_gstreamer_speaking_opus_are_mixed() {
    conference_of_real_clients(false, &[Dialer { user: "erin", tone: 1200, codec: Codec::G722 }]);
}

#[test]
fn listeners_share_one_encoding_of_the_mix() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &["alice", "gst", "carol", "l0", "l1", "l2", "l3"]);
    let sip = server.listener("sip", "udp");
    let (id, dial) = create_conference(&server);
    let (mut g, _ua) = gstreamer_joins(dir.path(), sip, &dial, false, 8);
    let mut carol = dialer(dir.path(), CAROL, sip, &dial, false, 8);
    // Four listeners: receive-only Opus offers, each on its own socket.
    let mut sockets = Vec::new();
    let mut agents = Vec::new();
    for i in 0..4 {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let port = s.local_addr().unwrap().port();
        let offer = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 111\r\n\
             a=rtpmap:111 opus/48000/2\r\na=rtcp-mux\r\na=recvonly\r\n"
        );
        let mut ua = Ua::new(sip, &format!("l{i}"), &format!("l{i}-secret"), "localhost");
        let (r, _) = ua.request("INVITE", &dial, "", Some(("application/sdp", &offer)));
        assert_eq!(r.status, 200, "{r:?}");
        assert!(String::from_utf8_lossy(&r.body).contains("a=sendonly"));
        sockets.push(s);
        agents.push(ua);
    }
    // Both talkers mixed, six participants: each distinct mix is encoded once per tick.
    let path = format!("/api/v1/conferences/{id}");
    let v = server.wait_json(&path, |v| {
        v["mcu"]["talkers_last_tick"] == 2 && v["mcu"]["participants"].as_array().is_some_and(|p| p.len() == 6)
    });
    assert_eq!(v["mcu"]["encodes_last_tick"], 3, "2 N-1 mixes + 1 shared mix for 4 listeners: {v}");
    let before = (v["mcu"]["encodes"].as_u64().unwrap(), v["mcu"]["ticks"].as_u64().unwrap());
    std::thread::sleep(Duration::from_secs(2));
    let v = server.get(&path).json();
    let after = (v["mcu"]["encodes"].as_u64().unwrap(), v["mcu"]["ticks"].as_u64().unwrap());
    let per_tick = (after.0 - before.0) as f64 / (after.1 - before.1) as f64;
    assert!(per_tick <= 3.05, "{per_tick} encodes per tick for 6 participants: {v}");
    // Every listener got the shared mix.
    for (i, s) in sockets.iter().enumerate() {
        let mut buf = [0u8; 1500];
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if s.recv(&mut buf).is_ok() {
                got += 1;
            }
        }
        assert!(got >= 30, "listener {i} got {got} packets in a second");
    }
    let metrics = server.get("/metrics").body;
    assert!(metrics.contains("vienna_mcu_encodes_total"), "{metrics}");
    g.sender.wait_exit(PATIENCE);
    carol.wait_exit(PATIENCE);
}
