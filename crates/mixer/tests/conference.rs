//! The conference core driven with simulated datagrams and a fake clock: each participant sends its
//! own tone, and what each one hears is checked with a spectral (Goertzel) test, also under loss,
//! jitter and reordering.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vienna_e2e::media::goertzel;
use vienna_media::codec::{self, CodecKind, CodecSetting, Decoder, Encoder};
use vienna_media::rtp::{HeaderFields, RtpPacket, write_header};
use vienna_mixer::MixerConfig;
use vienna_mixer::conference::{Host, HostConfig, HostEvent, JoinOptions, MemberKey};
use vienna_mixer::mixer::MixerEvent;
use vienna_srtp::sdes::{CryptoAttribute, KeyParam};
use vienna_srtp::{MasterKey, ReceiverOptions, SrtpReceiver, SrtpSender, Suite};
use vienna_stun::{Attribute, Class, Message, MessageBuilder, Method, TransactionId};

const RATE: u32 = 48_000;

/// Deterministic pseudo-random numbers.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn host(t0: Instant, max_talkers: usize) -> Host {
    Host::new(HostConfig {
        mixer: MixerConfig { max_talkers, ..MixerConfig::default() },
        local: "127.0.0.1:40000".parse().unwrap(),
        opus_bitrate: 32_000,
        max_jitter_frames: 10,
        media_timeout: Duration::from_secs(10),
        max_participants: 100,
        quiet_decode_interval: 4,
        cname: "mcu@test".into(),
        unix_at_start: Duration::from_secs(1_800_000_000),
        started: t0,
        srtp: vienna_srtp::LocalPolicy::default(),
    })
    .unwrap()
}

fn offer(port: u16, codec: CodecKind, ssrc: u32) -> String {
    let (pt, map) = match codec {
        CodecKind::Opus => (111, "a=rtpmap:111 opus/48000/2\r\n"),
        CodecKind::Pcmu => (0, "a=rtpmap:0 PCMU/8000\r\n"),
        CodecKind::Pcma => (8, "a=rtpmap:8 PCMA/8000\r\n"),
        CodecKind::G722 => (9, "a=rtpmap:9 G722/8000\r\n"),
    };
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {pt}\r\n{map}a=rtcp-mux\r\na=ssrc:{ssrc} cname:p{port}\r\n"
    )
}

struct Peer {
    addr: SocketAddr,
    ssrc: u32,
    tone: Option<f64>,
    codec: CodecKind,
    encoder: Box<dyn Encoder>,
    decoder: Box<dyn Decoder>,
    header: rtp::header::Header,
    seq: u16,
    heard: Vec<i16>,
    csrc_first: Vec<u32>,
    key: Option<MemberKey>,
    msi: u32,
    /// Frames before this one are quiet noise, not the tone.
    tone_from: u32,
    /// SRTP: the key this peer offers (it sends with it), and its contexts once the answer came.
    srtp_key: Option<MasterKey>,
    srtp: Option<(SrtpSender, SrtpReceiver)>,
}

impl Peer {
    fn new(port: u16, codec: CodecKind, tone: Option<f64>) -> Peer {
        let setting = CodecSetting::of(codec, 32_000);
        Peer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            ssrc: 0x5000_0000 + u32::from(port),
            tone,
            codec,
            encoder: codec::encoder(setting, RATE, 5).unwrap(),
            decoder: codec::decoder(codec, RATE).unwrap(),
            header: rtp::header::Header::default(),
            seq: 0,
            heard: Vec::new(),
            csrc_first: Vec::new(),
            key: None,
            msi: 0,
            tone_from: 0,
            srtp_key: None,
            srtp: None,
        }
    }

    /// The same peer offering SRTP (`RTP/SAVP`, one `a=crypto` line).
    fn with_srtp(mut self) -> Peer {
        self.srtp_key = Some(MasterKey::random(Suite::AesCm128HmacSha1_80).unwrap());
        self
    }

    fn offer(&self) -> String {
        let plain = offer(self.addr.port(), self.codec, self.ssrc);
        match &self.srtp_key {
            None => plain,
            Some(k) => {
                let line = CryptoAttribute::new(1, Suite::AesCm128HmacSha1_80, KeyParam::new(k, None, None)).value();
                plain.replace("RTP/AVP", "RTP/SAVP") + &format!("a=crypto:{line}\r\n")
            }
        }
    }

    /// Takes the MCU's key from the answer.
    fn answered(&mut self, answer: &str) {
        let Some(own) = &self.srtp_key else { return };
        let line = answer.lines().find_map(|l| l.strip_prefix("a=crypto:")).expect("SRTP answer");
        let attr = CryptoAttribute::parse("crypto", line).unwrap();
        let k = &attr.keys[0];
        let theirs = k.master_key(Suite::AesCm128HmacSha1_80).unwrap();
        let receiver = SrtpReceiver::new(&theirs, k.mki, None, ReceiverOptions::default()).unwrap();
        self.srtp = Some((SrtpSender::new(own, None, None).unwrap(), receiver));
    }

    /// Frame `i` as an RTP packet.
    fn packet(&mut self, i: u32) -> Vec<u8> {
        let n = codec::frame_samples(RATE);
        let pcm: Vec<i16> = (0..n)
            .map(|k| match self.tone.filter(|_| i >= self.tone_from) {
                Some(hz) => {
                    let t = (i as usize * n + k) as f64 / f64::from(RATE);
                    (6000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
                }
                None => ((k * 7919 + i as usize * 104_729) % 9) as i16 - 4, // near-silent noise
            })
            .collect();
        let mut payload = [0u8; 1500];
        let len = self.encoder.encode(&pcm, &mut payload).unwrap();
        let pt = self.codec.static_payload_type().unwrap_or(111);
        let fields = HeaderFields {
            marker: i == 0,
            payload_type: pt,
            sequence: self.seq,
            timestamp: i.wrapping_mul(self.codec.frame_ticks()),
            ssrc: self.ssrc,
        };
        self.seq = self.seq.wrapping_add(1);
        let mut out = vec![0u8; 1600];
        let h = write_header(&mut self.header, fields, &[], &mut out).unwrap();
        out[h..h + len].copy_from_slice(&payload[..len]);
        let mut n = h + len;
        if let Some((sender, _)) = &mut self.srtp {
            n = sender.protect_rtp(&mut out, n).unwrap();
        }
        out.truncate(n);
        out
    }

    fn receive(&mut self, bytes: &[u8]) {
        let mut plain = bytes.to_vec();
        let bytes = match &mut self.srtp {
            Some((_, receiver)) => {
                let n = receiver.unprotect_rtp(&mut plain).expect("the MCU's SRTP authenticates");
                &plain[..n]
            }
            None => bytes,
        };
        let p = RtpPacket::parse(bytes).unwrap();
        if let Some(c) = p.csrc(0) {
            self.csrc_first.push(c);
        }
        let mut pcm = [0i16; 960];
        let n = self.decoder.decode(p.payload(), &mut pcm).unwrap();
        self.heard.extend_from_slice(&pcm[..n]);
    }
}

/// Impairments on the way from the participants to the MCU.
#[derive(Clone, Copy)]
struct Network {
    loss_percent: u64,
    jitter_ms: u64,
}

/// The mixer's view in the middle of the conference.
struct Midpoint {
    stats: vienna_mixer::MixerStats,
    dominant: Option<vienna_mixer::ParticipantId>,
    /// How many CSRC lists each peer had received by then.
    csrc_seen: Vec<usize>,
}

/// Runs a conference of `peers` for `seconds`; returns the host and the midpoint.
fn run_conference(peers: &mut [Peer], seconds: u32, net: Network, seed: u64) -> (Host, Midpoint) {
    let t0 = Instant::now();
    let mut host = host(t0, 3);
    let conf = host.create_conference("tones").unwrap();
    for (i, p) in peers.iter_mut().enumerate() {
        let mut random = [0u8; 32];
        random
            .iter_mut()
            .enumerate()
            .for_each(|(k, b)| *b = (k as u8).wrapping_mul(31).wrapping_add((i as u8).wrapping_mul(7)).wrapping_add(1));
        let joined = host
            .add_participant(
                t0,
                conf,
                &p.offer(),
                JoinOptions { label: format!("p{i}"), msi: Some(100 + i as u32), random },
            )
            .unwrap();
        assert_eq!(joined.codec, p.codec);
        assert_eq!(joined.srtp, p.srtp_key.is_some());
        let proto = if joined.srtp { "RTP/SAVP" } else { "RTP/AVP" };
        assert!(joined.answer.contains(&format!("m=audio 40000 {proto}")), "{}", joined.answer);
        p.answered(&joined.answer);
        p.key = Some(joined.key);
        p.msi = joined.msi;
    }
    assert!(peers.iter().all(|p| p.srtp.is_some() == p.srtp_key.is_some()));
    let mut rng = Rng(seed);
    // every packet's arrival time at the MCU
    let frames = seconds * 50;
    let mut arrivals: Vec<(Duration, usize, Vec<u8>)> = Vec::new();
    for i in 0..frames {
        for (pi, p) in peers.iter_mut().enumerate() {
            let bytes = p.packet(i);
            if rng.below(100) < net.loss_percent {
                continue;
            }
            let delay = if net.jitter_ms > 0 { rng.below(net.jitter_ms) } else { 0 };
            arrivals.push((Duration::from_millis(u64::from(i) * 20 + 2 + delay), pi, bytes));
        }
    }
    arrivals.sort_by_key(|a| a.0);
    let end = t0 + Duration::from_secs(u64::from(seconds)) + Duration::from_millis(500);
    let mut next = 0;
    let mut buf = vec![0u8; 1500];
    let mut now = t0;
    let mid = t0 + Duration::from_millis(u64::from(seconds) * 500);
    let mut midpoint = None;
    while now < end {
        if midpoint.is_none() && now >= mid {
            let m = host.mixer(conf).unwrap();
            midpoint = Some(Midpoint {
                stats: m.stats(),
                dominant: m.dominant(),
                csrc_seen: peers.iter().map(|p| p.csrc_first.len()).collect(),
            });
        }
        let arrival = arrivals.get(next).map(|a| t0 + a.0);
        let deadline = host.poll_timeout();
        now = match (arrival, deadline) {
            (Some(a), Some(d)) => a.min(d),
            (Some(a), None) => a,
            (None, Some(d)) => d,
            (None, None) => break,
        };
        while next < arrivals.len() && t0 + arrivals[next].0 <= now {
            let (_, pi, bytes) = &mut arrivals[next];
            host.handle_datagram(now, peers[*pi].addr, bytes);
            next += 1;
        }
        if host.poll_timeout().is_some_and(|d| d <= now) {
            host.handle_timeout(now);
        }
        while let Some(t) = host.poll_transmit(now, &mut buf) {
            if buf[1] >= 192 && buf[1] <= 223 {
                continue; // RTCP
            }
            if let Some(p) = peers.iter_mut().find(|p| p.addr == t.destination) {
                p.receive(&buf[..t.len]);
            }
        }
    }
    (host, midpoint.expect("ran past the middle"))
}

/// Tone powers in the second half of what `p` heard, and the longest run of silent frames.
fn analyse(p: &Peer, tones: &[f64]) -> (Vec<f64>, usize) {
    // the second half of the conference, without the last 0.6 s after everyone stopped sending
    let half = &p.heard[p.heard.len() / 2..p.heard.len() - 30 * 960];
    let powers = tones.iter().map(|&hz| goertzel(half, hz, f64::from(RATE))).collect();
    // the longest run of 20 ms frames with no audible tone at all
    let mut run = 0;
    let mut worst = 0;
    for frame in half.chunks(960) {
        let energy: f64 = frame.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / frame.len() as f64;
        if std::env::var("DEBUG_TONES").is_ok() {
            eprint!("{:.0} ", energy);
        }
        run = if energy < 1000.0 { run + 1 } else { 0 };
        worst = worst.max(run);
    }
    (powers, worst)
}

fn check_tones(net: Network, seed: u64) {
    check_tones_with(net, seed, false);
}

fn check_tones_with(net: Network, seed: u64, srtp: bool) {
    let tones = [440.0, 760.0, 1180.0];
    let mut peers = vec![
        Peer::new(5000, CodecKind::Opus, Some(tones[0])),
        Peer::new(5002, CodecKind::Pcmu, Some(tones[1])),
        Peer::new(5004, CodecKind::G722, Some(tones[2])),
        Peer::new(5006, CodecKind::Pcma, None),
    ];
    if srtp {
        // two of them (one talker, the listener) with SRTP, the others plain, in one conference
        for i in [0, 3] {
            let p = std::mem::replace(&mut peers[i], Peer::new(1, CodecKind::Pcmu, None));
            peers[i] = p.with_srtp();
        }
    }
    let (_host, mid) = run_conference(&mut peers, 4, net, seed);
    for (i, p) in peers.iter().enumerate() {
        assert!(p.heard.len() >= 960 * 150, "peer {i} heard {} samples", p.heard.len());
        let (powers, gap) = analyse(p, &tones);
        for (t, power) in powers.iter().enumerate() {
            if Some(tones[t]) == p.tone {
                assert!(*power < 1e3, "peer {i} hears its own tone: {powers:?}");
            } else {
                assert!(*power > 1e5, "peer {i} misses tone {}: {powers:?}", tones[t]);
            }
        }
        assert!(gap <= 2, "peer {i}: {gap} silent frames in a row");
        // the dominant speaker's MSI is the first CSRC of what everyone hears
        assert!(!p.csrc_first.is_empty());
    }
    let dominant = mid.dominant.expect("someone dominates");
    let msi = peers.iter().find(|p| p.key.map(|k| k.participant) == Some(dominant)).unwrap().msi;
    assert_eq!(peers[3].csrc_first[mid.csrc_seen[3] - 1], msi);
    assert_eq!(mid.stats.talkers_last_tick, 3);
    // three talkers: three N-1 mixes (one setting each) and the shared mix for the listener
    assert_eq!(mid.stats.encodes_last_tick, 4);
}

#[test]
fn each_participant_hears_the_other_tones_and_not_its_own() {
    check_tones(Network { loss_percent: 0, jitter_ms: 0 }, 1);
}

#[test]
fn srtp_and_plain_participants_share_a_conference() {
    check_tones_with(Network { loss_percent: 0, jitter_ms: 0 }, 5, true);
}

#[test]
fn a_forged_srtp_packet_is_counted_and_dropped() {
    let t0 = Instant::now();
    let mut host = host(t0, 3);
    let conf = host.create_conference("forged").unwrap();
    let mut peer = Peer::new(7400, CodecKind::Pcmu, Some(300.0)).with_srtp();
    let joined = host
        .add_participant(t0, conf, &peer.offer(), JoinOptions { label: "s".into(), msi: None, random: [6; 32] })
        .unwrap();
    peer.answered(&joined.answer);
    let mut good = peer.packet(0);
    host.handle_datagram(t0, peer.addr, &mut good);
    let mut bad = peer.packet(1);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    host.handle_datagram(t0, peer.addr, &mut bad);
    assert_eq!(host.stats().unprotect_failed, 1);
    let m = &host.members(conf)[0];
    assert!(m.srtp);
    assert_eq!((m.protection.rtp_in, m.protection.rejected, m.session.rtp_in), (1, 1, 1));
    assert_eq!(m.remote_ssrc, Some(peer.ssrc));
    let sources: Vec<_> =
        std::iter::from_fn(|| host.poll_event()).filter(|e| matches!(e, HostEvent::Source { .. })).collect();
    assert_eq!(sources, [HostEvent::Source { key: joined.key, ssrc: peer.ssrc }], "one source event");
    // required encryption refuses a plain offer; a plain-only MCU refuses RTP/SAVP
    let plain = Peer::new(7402, CodecKind::Pcmu, None);
    let mut strict = self::host(t0, 3);
    let mut cfg = strict.config().clone();
    cfg.srtp.encryption = vienna_srtp::EncryptionPolicy::Required;
    strict = Host::new(cfg.clone()).unwrap();
    let c = strict.create_conference("x").unwrap();
    let opts = || JoinOptions { label: "x".into(), msi: None, random: [7; 32] };
    assert!(matches!(strict.add_participant(t0, c, &plain.offer(), opts()), Err(vienna_mixer::Error::Srtp(_))));
    cfg.srtp.encryption = vienna_srtp::EncryptionPolicy::Rejected;
    let mut none = Host::new(cfg).unwrap();
    let c = none.create_conference("x").unwrap();
    let srtp = Peer::new(7404, CodecKind::Pcmu, None).with_srtp();
    assert!(matches!(none.add_participant(t0, c, &srtp.offer(), opts()), Err(vienna_mixer::Error::Srtp(_))));
}

#[test]
fn tones_survive_loss_jitter_and_reordering() {
    // 5 % loss and up to 60 ms of jitter (packets overtake each other: 20 ms apart, 60 ms spread)
    check_tones(Network { loss_percent: 5, jitter_ms: 60 }, 2);
}

#[test]
fn a_quiet_participant_that_starts_talking_is_mixed_in() {
    // 20 quiet participants decoded only every 4th frame; one of them starts a tone after 1 s
    let mut peers: Vec<Peer> = (0..21u16)
        .map(|i| {
            Peer::new(8000 + 2 * i, CodecKind::Opus, if i < 2 { Some(500.0 + 300.0 * f64::from(i)) } else { None })
        })
        .collect();
    peers[1].tone_from = 50;
    let (_host, mid) = run_conference(&mut peers, 3, Network { loss_percent: 0, jitter_ms: 0 }, 4);
    assert_eq!(mid.stats.talkers_last_tick, 2, "the late talker is mixed by the middle");
    let (powers, _) = analyse(&peers[0], &[800.0]);
    assert!(powers[0] > 1e5, "peer 0 hears the late talker: {powers:?}");
    let (powers, _) = analyse(&peers[5], &[500.0, 800.0]);
    assert!(powers.iter().all(|p| *p > 1e5), "a listener hears both: {powers:?}");
}

#[test]
fn listeners_share_one_encoding() {
    let mut peers: Vec<Peer> = (0..40u16)
        .map(|i| {
            Peer::new(6000 + 2 * i, CodecKind::Pcmu, if i < 2 { Some(500.0 + 300.0 * f64::from(i)) } else { None })
        })
        .collect();
    let (host, mid) = run_conference(&mut peers, 1, Network { loss_percent: 0, jitter_ms: 0 }, 3);
    let s = mid.stats;
    assert_eq!((s.talkers_last_tick, s.listeners_last_tick), (2, 40));
    assert_eq!(s.encodes_last_tick, 3, "2 N-1 mixes + 1 shared mix for 38 listeners");
    assert!(host.stats().rtp_out >= 40 * 45, "{:?}", host.stats());
}

#[test]
fn ice_checks_register_the_address_and_roster_events_flow() {
    let t0 = Instant::now();
    let mut host = host(t0, 3);
    let conf = host.create_conference("ice").unwrap();
    let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-ufrag:peer\r\na=ice-pwd:peerpasswordpeerpassword\r\n\
               m=audio 9 RTP/AVPF 0\r\nc=IN IP4 0.0.0.0\r\na=rtcp-mux\r\n";
    let joined =
        host.add_participant(t0, conf, sdp, JoinOptions { label: "ice".into(), msi: None, random: [3; 32] }).unwrap();
    let ufrag = joined.answer.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")).unwrap().to_owned();
    let pwd = joined.answer.lines().find_map(|l| l.strip_prefix("a=ice-pwd:")).unwrap().to_owned();
    assert!(joined.answer.contains("a=ice-lite"));
    let from: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    // RTP before any check is from nobody
    let mut peer = Peer::new(7000, CodecKind::Pcmu, Some(300.0));
    let mut rtp = peer.packet(0);
    host.handle_datagram(t0, from, &mut rtp);
    assert_eq!(host.stats().unknown_source, 1);
    // a check with the right credentials is answered and nominates the address
    let mut b = MessageBuilder::new(Class::Request, Method::BINDING, TransactionId([1; 12]));
    let user = format!("{ufrag}:peer");
    b.add(&Attribute::Username(&user)).unwrap();
    b.add(&Attribute::Priority(1)).unwrap();
    b.add(&Attribute::IceControlling(5)).unwrap();
    b.add(&Attribute::UseCandidate).unwrap();
    b.add_message_integrity(pwd.as_bytes());
    b.add_fingerprint();
    let mut check = b.finish();
    host.handle_datagram(t0, from, &mut check);
    let mut buf = [0u8; 1500];
    let t = host.poll_transmit(t0, &mut buf).unwrap();
    assert_eq!(t.destination, from);
    let resp = Message::decode(&buf[..t.len]).unwrap();
    assert_eq!(resp.class(), Class::Success);
    assert!(resp.verify_integrity(pwd.as_bytes()).is_some());
    // now RTP from there is this participant's, and the mix goes back there
    for i in 1..20 {
        let mut rtp = peer.packet(i);
        host.handle_datagram(t0 + Duration::from_millis(20 * u64::from(i)), from, &mut rtp);
    }
    let info = host.members(conf);
    assert_eq!(info[0].destination, Some(from));
    assert_eq!(info[0].session.rtp_in, 19);
    // mute and remove show up as roster events
    host.set_muted(joined.key, true).unwrap();
    host.remove_participant(t0, joined.key).unwrap();
    let events: Vec<_> = std::iter::from_fn(|| host.poll_event()).collect();
    let roster: Vec<_> = events
        .iter()
        .filter_map(|e| if let HostEvent::Roster { event, .. } = e { Some(*event) } else { None })
        .collect();
    assert!(matches!(roster[0], MixerEvent::Joined(_)));
    assert!(roster.contains(&MixerEvent::Muted { id: joined.key.participant, muted: true }));
    assert!(roster.contains(&MixerEvent::Left(joined.key.participant)));
    // the removed participant's ufrag no longer answers
    let mut check2 = check.clone();
    host.handle_datagram(t0, from, &mut check2);
    while host.poll_transmit(t0, &mut buf).is_some() {}
    assert_eq!(host.stats().stun_answered, 1);
}

#[test]
fn a_sender_on_another_port_is_latched_by_its_announced_ssrc() {
    let t0 = Instant::now();
    let mut host = host(t0, 3);
    let conf = host.create_conference("latch").unwrap();
    let mut peer = Peer::new(7100, CodecKind::Pcmu, Some(300.0));
    host.add_participant(
        t0,
        conf,
        &offer(7100, CodecKind::Pcmu, peer.ssrc),
        JoinOptions { label: "g".into(), msi: None, random: [4; 32] },
    )
    .unwrap();
    // it sends from an ephemeral port, not the one in its offer
    let from: SocketAddr = "127.0.0.1:53111".parse().unwrap();
    let mut stranger = Peer::new(7200, CodecKind::Pcmu, Some(300.0));
    let mut other = stranger.packet(0);
    host.handle_datagram(t0, from, &mut other);
    assert_eq!(host.stats().latched, 0, "an SSRC nobody announced is not latched");
    let mut rtp = peer.packet(0);
    host.handle_datagram(t0, from, &mut rtp);
    assert_eq!(host.stats().latched, 1);
    assert_eq!(host.members(conf)[0].session.rtp_in, 1);
    // it still receives at the port of its offer
    assert_eq!(host.members(conf)[0].destination, Some(peer.addr));
}

#[test]
fn silent_participants_time_out_and_empty_conferences_do_not_tick() {
    let t0 = Instant::now();
    let mut host = host(t0, 3);
    let conf = host.create_conference("quiet").unwrap();
    assert_eq!(host.poll_timeout(), None, "an empty conference has no tick");
    let key = host
        .add_participant(
            t0,
            conf,
            &offer(7300, CodecKind::Pcmu, 1),
            JoinOptions { label: "q".into(), msi: None, random: [5; 32] },
        )
        .unwrap()
        .key;
    let mut now = t0;
    let mut buf = [0u8; 1500];
    let mut timed_out = false;
    while let Some(d) = host.poll_timeout() {
        now = d;
        host.handle_timeout(now);
        while host.poll_transmit(now, &mut buf).is_some() {}
        while let Some(e) = host.poll_event() {
            timed_out |= e == HostEvent::MediaTimeout(key);
        }
        assert!(now < t0 + Duration::from_secs(12));
    }
    assert!(timed_out);
    assert!(now >= t0 + Duration::from_secs(10));
    assert!(host.members(conf).is_empty());
    // garbage never panics
    let mut rng = Rng(9);
    for len in 0..2000usize {
        let mut junk: Vec<u8> = (0..len % 300).map(|_| rng.next() as u8).collect();
        if !junk.is_empty() {
            junk[0] = [0x80, 0x00, 0x01, 0x90, 0xff][len % 5];
        }
        host.handle_datagram(now, "127.0.0.1:7300".parse().unwrap(), &mut junk);
    }
}

#[test]
fn conferences_that_fall_behind_together_keep_their_own_phase() {
    // Two conferences whose ticks are 7 ms apart; the worker stalls for 200 ms (more than MAX_BEHIND).
    let t0 = Instant::now();
    let mut host = host(t0, 3);
    let join = |host: &mut Host, name: &str, at: Instant, port: u16| {
        let conf = host.create_conference(name).unwrap();
        let options = JoinOptions { label: name.into(), msi: None, random: [port as u8; 32] };
        host.add_participant(at, conf, &offer(port, CodecKind::Pcmu, u32::from(port)), options).unwrap();
    };
    join(&mut host, "a", t0, 5000);
    join(&mut host, "b", t0 + Duration::from_millis(7), 5002);
    let stalled = t0 + Duration::from_millis(200);
    host.handle_timeout(stalled);
    let mut buf = [0u8; 1500];
    while host.poll_transmit(stalled, &mut buf).is_some() {}
    assert_eq!(host.stats().ticks, 2, "each conference ran once after the stall");
    assert_eq!(host.stats().late_ticks, 2);
    // From then on every wake-up runs one conference's tick, 7 and 13 ms apart, not both at once.
    let mut last = stalled;
    for i in 0..10 {
        let due = host.poll_timeout().unwrap();
        assert!(due > last, "deadlines move on");
        let gap = due - last;
        if i > 0 {
            assert!(gap == Duration::from_millis(7) || gap == Duration::from_millis(13), "tick {i}: {gap:?}");
        }
        let before = host.stats().ticks;
        host.handle_timeout(due);
        while host.poll_transmit(due, &mut buf).is_some() {}
        assert_eq!(host.stats().ticks, before + 1, "one conference per wake-up");
        last = due;
    }
    assert_eq!(host.stats().late_ticks, 2, "no tick late after the stall");
}
