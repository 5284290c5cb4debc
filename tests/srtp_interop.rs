//! SRTP interop judged by GStreamer's `srtpenc` and `srtpdec` (libsrtp inside GStreamer's srtp plugin,
//! packages gstreamer1.0-tools and gstreamer1.0-plugins-base/good/bad, installed by the test command), both
//! ways, for every suite, with and without a one-byte MKI, across a sequence-number wrap at 65535.
//! Replayed, tampered and wrong-key packets are rejected and counted by `vienna-srtp`, and dropped by
//! `srtpdec`. A Scale SRTP fan-out is decoded by several `srtpdec`s sharing the group key, next to
//! per-receiver legs. Everything is on loopback; every GStreamer run is bounded by `timeout` and a packet
//! count.

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vienna_e2e::media::Gst;
use vienna_e2e::ports::free_port;
use vienna_srtp::{MasterKey, Mki, ReceiverOptions, RejectReason, SrtpReceiver, SrtpSender, Suite, TRAILER_ROOM};

const SSRC: u32 = 0x1122_3344;
/// Longest a GStreamer pipeline may take (they take about a second).
const PATIENCE: Duration = Duration::from_secs(60);

/// Starts `pipeline` once the SRTP elements are known to be there.
fn launch(pipeline: &str) -> Gst {
    require_gstreamer();
    Gst::launch(pipeline)
}

fn require_gstreamer() {
    for element in ["srtpenc", "srtpdec", "opusenc", "rtpopuspay", "udpsrc"] {
        let ok = Command::new("gst-inspect-1.0")
            .arg(element)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "GStreamer element {element} is missing: run `bash tools/install-deps.sh` (gstreamer1.0-tools, \
             gstreamer1.0-plugins-base, -good, -bad)"
        );
    }
}

/// GStreamer's names for a suite: cipher, SRTP auth, SRTCP auth.
fn gst_names(suite: Suite) -> (&'static str, &'static str, &'static str) {
    match suite {
        Suite::AesCm128HmacSha1_80 => ("aes-128-icm", "hmac-sha1-80", "hmac-sha1-80"),
        Suite::AesCm128HmacSha1_32 => ("aes-128-icm", "hmac-sha1-32", "hmac-sha1-80"),
        Suite::AeadAes128Gcm => ("aes-128-gcm", "null", "null"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Index of the last byte of the authentication tag (an AEAD packet's MKI follows its tag).
fn tag_end(suite: Suite, len: usize, mki: bool) -> usize {
    if suite.is_aead() && mki { len - 2 } else { len - 1 }
}

fn rejected(r: vienna_srtp::Result<usize>) -> RejectReason {
    match r {
        Err(vienna_srtp::Error::Rejected(reason)) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// `srtpenc` sends Opus over SRTP (sequence numbers from 65500, so they wrap); returns the datagrams.
fn from_srtpenc(key: &MasterKey, mki: Option<u8>) -> Vec<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let port = sock.local_addr().unwrap().port();
    let (cipher, rtp_auth, rtcp_auth) = gst_names(key.suite());
    let mki = mki.map(|m| format!("mki={m:02x}")).unwrap_or_default();
    let mut gst = launch(&format!(
        "audiotestsrc num-buffers=60 ! audio/x-raw,rate=48000,channels=1 ! opusenc \
         ! rtpopuspay pt=96 ssrc={SSRC} seqnum-offset=65500 \
         ! srtpenc key={} rtp-cipher={cipher} rtp-auth={rtp_auth} rtcp-cipher={cipher} rtcp-auth={rtcp_auth} {mki} \
         ! udpsink host=127.0.0.1 port={port} sync=false",
        hex(key.as_bytes())
    ));
    let deadline = Instant::now() + PATIENCE;
    let mut packets = Vec::new();
    let mut buf = [0u8; 2048];
    let mut quiet_since_exit = 0;
    while quiet_since_exit < 5 {
        assert!(Instant::now() < deadline, "srtpenc sent {} packets in {PATIENCE:?}", packets.len());
        match sock.recv(&mut buf) {
            Ok(n) => packets.push(buf[..n].to_vec()),
            Err(_) if gst.exited() => quiet_since_exit += 1,
            Err(_) => {}
        }
    }
    gst.finish(PATIENCE);
    assert!(packets.len() >= 50, "srtpenc sent only {} packets", packets.len());
    packets
}

/// Receives `srtpenc`'s stream with `vienna-srtp`: every packet decrypts, the sequence wraps, and a
/// replay, a tampered tag and a wrong key are rejected and counted.
fn srtpenc_to_vienna(suite: Suite, mki: Option<u8>) {
    let key = MasterKey::random(suite).unwrap();
    let packets = from_srtpenc(&key, mki);
    let mki = mki.map(|m| Mki::new(u64::from(m), 1).unwrap());
    let mut rx = SrtpReceiver::new(&key, mki, None, ReceiverOptions::default()).unwrap();
    let (last, first) = packets.split_last().unwrap();
    let mut seqs = Vec::new();
    for (i, p) in first.iter().enumerate() {
        if let Some(m) = mki {
            let at = if suite.is_aead() { p.len() - 1 } else { p.len() - 1 - suite.rtp_tag_len() };
            assert_eq!(u64::from(p[at]), m.value, "MKI in packet {i}");
        }
        let mut b = p.clone();
        let n = rx.unprotect_rtp(&mut b).unwrap_or_else(|e| panic!("{suite}: packet {i}: {e}"));
        assert_eq!(n, p.len() - suite.rtp_tag_len() - mki.map_or(0, |m| usize::from(m.length)));
        assert_eq!(b[1] & 0x7f, 96, "payload type");
        assert_eq!(u32::from_be_bytes([b[8], b[9], b[10], b[11]]), SSRC);
        seqs.push(u16::from_be_bytes([b[2], b[3]]));
    }
    assert_eq!(seqs[0], 65500);
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "consecutive: {seqs:?}");
    assert!(seqs.contains(&65535) && seqs.contains(&0), "wrapped at 65535: {seqs:?}");

    // A replayed packet.
    let mut replay = first[3].clone();
    assert_eq!(rejected(rx.unprotect_rtp(&mut replay)), RejectReason::Replayed);
    // A tampered tag on a packet not yet received; then the genuine packet still passes.
    let mut tampered = last.clone();
    let end = tag_end(suite, tampered.len(), mki.is_some());
    tampered[end] ^= 0x40;
    assert_eq!(rejected(rx.unprotect_rtp(&mut tampered)), RejectReason::AuthFailed);
    let mut genuine = last.clone();
    rx.unprotect_rtp(&mut genuine).expect("the genuine packet after the tampered one");
    // A receiver with the wrong key.
    let mut wrong =
        SrtpReceiver::new(&MasterKey::random(suite).unwrap(), mki, None, ReceiverOptions::default()).unwrap();
    for p in &packets[..5] {
        assert_eq!(rejected(wrong.unprotect_rtp(&mut p.clone())), RejectReason::WrongKey);
    }

    assert_eq!(rx.accepted().0, packets.len() as u64);
    assert_eq!(rx.rejected().get(RejectReason::Replayed), 1);
    assert_eq!(rx.rejected().get(RejectReason::AuthFailed), 1);
    assert_eq!(rx.rejected().total(), 2);
    assert_eq!(wrong.rejected().get(RejectReason::WrongKey), 5);
}

#[test]
fn srtpenc_to_vienna_aes_cm_80() {
    srtpenc_to_vienna(Suite::AesCm128HmacSha1_80, None);
}

#[test]
fn srtpenc_to_vienna_aes_cm_80_with_mki() {
    srtpenc_to_vienna(Suite::AesCm128HmacSha1_80, Some(1));
}

#[test]
fn srtpenc_to_vienna_aes_cm_32() {
    srtpenc_to_vienna(Suite::AesCm128HmacSha1_32, None);
}

#[test]
fn srtpenc_to_vienna_gcm() {
    srtpenc_to_vienna(Suite::AeadAes128Gcm, None);
}

#[test]
fn srtpenc_to_vienna_gcm_with_mki() {
    srtpenc_to_vienna(Suite::AeadAes128Gcm, Some(7));
}

/// Waits until someone else has bound `port` (the pipeline is listening).
fn wait_bound(port: u16, gst: &mut Gst) {
    let deadline = Instant::now() + PATIENCE;
    while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(!gst.exited(), "gst-launch-1.0 exited before listening on {port}");
        assert!(Instant::now() < deadline, "gst-launch-1.0 did not listen on {port} within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&u32::from(seq).wrapping_mul(960).to_be_bytes());
    p.extend_from_slice(&SSRC.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn sender_report(fill: u8) -> Vec<u8> {
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&SSRC.to_be_bytes());
    sr.extend_from_slice(&[fill; 20]);
    sr
}

fn protect(s: &mut SrtpSender, plain: &[u8], rtcp: bool) -> Vec<u8> {
    let mut buf = vec![0u8; plain.len() + TRAILER_ROOM + 8];
    buf[..plain.len()].copy_from_slice(plain);
    let n = if rtcp { s.protect_rtcp(&mut buf, plain.len()) } else { s.protect_rtp(&mut buf, plain.len()) };
    buf.truncate(n.unwrap());
    buf
}

/// Payload byte of the packets that only open the way: `srtpdec` drops what arrives while its pads are
/// still starting up, so each test first sends these until one comes out the other side.
const PRIMING: u8 = 0xee;

/// What `srtpdec` wrote to `out`, less the leading priming packets of `size` bytes (priming byte at
/// `offset`).
fn decoded(out: &std::path::Path, size: usize, offset: usize) -> Vec<u8> {
    let mut got = std::fs::read(out).unwrap_or_default();
    let skip = got.chunks(size).take_while(|p| p.len() == size && p[offset] == PRIMING).count();
    got.drain(..skip * size);
    got
}

/// Sends primers (made by `next`, one per output and round) until `srtpdec` has passed one into every output.
fn prime(gst: &mut Gst, sock: &UdpSocket, outputs: &[(&std::path::Path, u16)], mut next: impl FnMut(usize) -> Vec<u8>) {
    let deadline = Instant::now() + PATIENCE;
    while outputs.iter().any(|(out, _)| std::fs::metadata(out).map_or(0, |m| m.len()) == 0) {
        assert!(!gst.exited(), "gst-launch-1.0 exited while starting");
        assert!(Instant::now() < deadline, "srtpdec passed nothing within {PATIENCE:?}");
        for (i, (_, port)) in outputs.iter().enumerate() {
            sock.send_to(&next(i), ("127.0.0.1", *port)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `srtpdec` has written at least `expected.len()` bytes after the primers; returns them.
fn wait_decoded(out: &std::path::Path, expected: &[u8], size: usize, offset: usize) -> Vec<u8> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = decoded(out, size, offset);
        if got.len() >= expected.len() || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `vienna-srtp` sends to `srtpdec` 100 RTP packets across the sequence wrap and 10 SRTCP sender reports,
/// mixed with a replay, a tampered tag and a wrong-key packet of each kind. What `srtpdec` writes out must
/// be exactly the good packets' plaintext, in order.
fn vienna_to_srtpdec(suite: Suite, mki: Option<u8>) {
    let key = MasterKey::random(suite).unwrap();
    let m = mki.map(|v| Mki::new(u64::from(v), 1).unwrap());
    let mut tx = SrtpSender::new(&key, m, None).unwrap();
    let mut stranger = SrtpSender::new(&MasterKey::random(suite).unwrap(), m, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (rtp_out, rtcp_out) = (dir.path().join("rtp.bin"), dir.path().join("rtcp.bin"));
    let (rtp_port, rtcp_port) = (free_port(), free_port());
    let (cipher, rtp_auth, rtcp_auth) = gst_names(suite);
    let keying = format!(
        "ssrc=(uint){SSRC},srtp-key=(buffer){},srtp-cipher=(string){cipher},srtp-auth=(string){rtp_auth},\
         srtcp-cipher=(string){cipher},srtcp-auth=(string){rtcp_auth}{}",
        hex(key.as_bytes()),
        mki.map(|v| format!(",mki=(buffer){v:02x}")).unwrap_or_default()
    );
    let mut gst = launch(&format!(
        "srtpdec name=d \
         udpsrc address=127.0.0.1 port={rtp_port} caps=application/x-srtp,{keying} \
         ! d.rtp_sink d.rtp_src ! filesink buffer-mode=unbuffered location={} \
         udpsrc address=127.0.0.1 port={rtcp_port} caps=application/x-srtcp,{keying} \
         ! d.rtcp_sink d.rtcp_src ! filesink buffer-mode=unbuffered location={}",
        rtp_out.display(),
        rtcp_out.display()
    ));
    wait_bound(rtp_port, &mut gst);
    wait_bound(rtcp_port, &mut gst);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    // srtpdec passes RTP only once both of its pads are flowing: prime both. The primers' sequence numbers
    // stay below the test's (it starts at 65486), so they cannot turn into replays.
    let mut seq = 60_000u16;
    prime(&mut gst, &sock, &[(&rtp_out, rtp_port), (&rtcp_out, rtcp_port)], |i| {
        if i == 0 {
            seq += 1;
            assert!(seq < 65_486, "priming took too long");
            protect(&mut tx, &rtp(seq, &[PRIMING; 80]), false)
        } else {
            protect(&mut tx, &sender_report(PRIMING), true)
        }
    });
    let send = |p: &[u8], port: u16| {
        sock.send_to(p, ("127.0.0.1", port)).unwrap();
        // Pace a little: udpsrc reads one datagram per buffer.
        std::thread::sleep(Duration::from_millis(2));
    };

    let mut expected_rtp = Vec::new();
    for i in 0..100u16 {
        let plain = rtp(65_486u16.wrapping_add(i), &[i as u8; 80]);
        let p = protect(&mut tx, &plain, false);
        if i == 20 {
            let mut t = p.clone();
            let end = tag_end(suite, t.len(), mki.is_some());
            t[end] ^= 1;
            send(&t, rtp_port); // tampered, before the genuine one
        }
        if i == 30 {
            send(&protect(&mut stranger, &plain, false), rtp_port); // wrong key
        }
        send(&p, rtp_port);
        if i == 40 {
            send(&p, rtp_port); // replayed
        }
        expected_rtp.extend_from_slice(&plain);
    }
    let mut expected_rtcp = Vec::new();
    for i in 0..10u8 {
        let sr = sender_report(i);
        let p = protect(&mut tx, &sr, true);
        if i == 2 {
            let mut t = p.clone();
            let end = tag_end(suite, t.len(), mki.is_some());
            t[end] ^= 1;
            send(&t, rtcp_port);
        }
        if i == 4 {
            send(&protect(&mut stranger, &sr, true), rtcp_port);
        }
        send(&p, rtcp_port);
        if i == 6 {
            send(&p, rtcp_port);
        }
        expected_rtcp.extend_from_slice(&sr);
    }
    let got_rtp = wait_decoded(&rtp_out, &expected_rtp, 92, 12);
    // Every RTP packet is 12 + 80 bytes and its payload byte is its number.
    let numbers: Vec<u8> = got_rtp.chunks(92).map(|p| p.get(12).copied().unwrap_or(255)).collect();
    assert!(
        got_rtp == expected_rtp,
        "{suite}: srtpdec passed {} of {} RTP bytes; packets {numbers:?}",
        got_rtp.len(),
        expected_rtp.len()
    );
    let got_rtcp = wait_decoded(&rtcp_out, &expected_rtcp, 28, 8);
    assert!(
        got_rtcp == expected_rtcp,
        "{suite}: srtpdec passed {} of {} RTCP bytes",
        got_rtcp.len(),
        expected_rtcp.len()
    );
    // Nothing more arrives late (a bad packet let through would show up here or above).
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(decoded(&rtp_out, 92, 12).len(), expected_rtp.len());
    assert_eq!(decoded(&rtcp_out, 28, 8).len(), expected_rtcp.len());
}

#[test]
fn vienna_to_srtpdec_aes_cm_80() {
    vienna_to_srtpdec(Suite::AesCm128HmacSha1_80, None);
}

#[test]
fn vienna_to_srtpdec_aes_cm_80_with_mki() {
    vienna_to_srtpdec(Suite::AesCm128HmacSha1_80, Some(1));
}

#[test]
fn vienna_to_srtpdec_aes_cm_32() {
    vienna_to_srtpdec(Suite::AesCm128HmacSha1_32, None);
}

#[test]
fn vienna_to_srtpdec_gcm() {
    vienna_to_srtpdec(Suite::AeadAes128Gcm, None);
}

#[test]
fn vienna_to_srtpdec_gcm_with_mki() {
    vienna_to_srtpdec(Suite::AeadAes128Gcm, Some(7));
}

/// An `srtpdec` pipeline that writes the RTP it decrypts to a file.
struct SrtpDec {
    /// Kept for its lifetime: the pipeline is killed when this drops.
    _gst: Gst,
    port: u16,
    out: std::path::PathBuf,
}

impl SrtpDec {
    fn start(key: &MasterKey, mki: Option<u8>, out: std::path::PathBuf) -> SrtpDec {
        let port = free_port();
        let (cipher, rtp_auth, rtcp_auth) = gst_names(key.suite());
        let mut gst = launch(&format!(
            "udpsrc address=127.0.0.1 port={port} caps=application/x-srtp,ssrc=(uint){SSRC},\
             srtp-key=(buffer){},srtp-cipher=(string){cipher},srtp-auth=(string){rtp_auth},\
             srtcp-cipher=(string){cipher},srtcp-auth=(string){rtcp_auth}{} ! srtpdec \
             ! filesink buffer-mode=unbuffered location={}",
            hex(key.as_bytes()),
            mki.map(|v| format!(",mki=(buffer){v:02x}")).unwrap_or_default(),
            out.display()
        ));
        wait_bound(port, &mut gst);
        SrtpDec { _gst: gst, port, out }
    }
}

/// One mix fanned out by `vienna-srtp` to three Scale SRTP members (one shared key, one encryption, the same
/// bytes to each) and two per-receiver legs (own keys), each a separate `srtpdec`: all five decode every
/// packet.
#[test]
fn scale_srtp_fan_out_to_srtpdec() {
    use std::net::SocketAddr;
    use vienna_srtp::fanout::ScalePolicy;
    use vienna_srtp::{FanOut, ReceiverId, ScaleGroup};

    let suite = Suite::AesCm128HmacSha1_80;
    let dir = tempfile::tempdir().unwrap();
    let group_key = MasterKey::random(suite).unwrap();
    let mut group = ScaleGroup::new(&group_key, Some(Mki::new(1, 1).unwrap()), None, ScalePolicy::default()).unwrap();
    let mut fan = FanOut::new(1500);
    let mut decoders = Vec::new();
    for i in 0..3 {
        let dec = SrtpDec::start(&group_key, Some(1), dir.path().join(format!("member{i}.bin")));
        group.join(ReceiverId(i), SocketAddr::from(([127, 0, 0, 1], dec.port)));
        decoders.push(dec);
    }
    fan.set_group(group);
    for i in 0..2 {
        let key = MasterKey::random(suite).unwrap();
        let dec = SrtpDec::start(&key, None, dir.path().join(format!("leg{i}.bin")));
        let to = SocketAddr::from(([127, 0, 0, 1], dec.port));
        fan.add_leg(ReceiverId(10 + i), to, SrtpSender::new(&key, None, None).unwrap());
        decoders.push(dec);
    }

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut buf = vec![0u8; 1500 + TRAILER_ROOM + 8];
    let mut seq = 60_000u16;
    let mut send = |fan: &mut FanOut, plain: &[u8]| {
        buf[..plain.len()].copy_from_slice(plain);
        let out = fan.protect_rtp(&mut buf, plain.len()).unwrap();
        let (shared, members) = out.shared.unwrap();
        assert_eq!(members.len(), 3);
        assert_eq!(shared.len(), plain.len() + 10 + 1);
        for (datagram, to) in out.datagrams() {
            sock.send_to(datagram, to).unwrap();
        }
    };
    // Prime until every decoder passes something (their sequence numbers stay below the test's).
    let deadline = Instant::now() + PATIENCE;
    while decoders.iter().any(|d| std::fs::metadata(&d.out).map_or(0, |m| m.len()) == 0) {
        assert!(Instant::now() < deadline && seq < 65_519, "an srtpdec passed nothing");
        seq += 1;
        send(&mut fan, &rtp(seq, &[PRIMING; 160]));
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut expected = Vec::new();
    for i in 0..60u16 {
        let plain = rtp(65_520u16.wrapping_add(i), &[i as u8; 160]);
        send(&mut fan, &plain);
        expected.extend_from_slice(&plain);
        std::thread::sleep(Duration::from_millis(2));
    }
    for dec in &decoders {
        let got = wait_decoded(&dec.out, &expected, 172, 12);
        assert!(got == expected, "{}: srtpdec decoded {} of {} bytes", dec.out.display(), got.len(), expected.len());
    }
    drop(decoders);
}
