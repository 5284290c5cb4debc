//! Arbitrary datagrams into the MCU's conference core, split into chunks and spread over a plain RTP
//! participant's address, an ICE participant's address and a stranger's, with the clock moving and
//! ticks running between them; and the same bytes through the RTP view, the RTCP parser, a jitter
//! buffer and the DTMF receiver on their own. Nothing may panic.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use vienna_media::dtmf::DtmfReceiver;
use vienna_media::jitter::{JitterBuffer, JitterConfig};
use vienna_media::report::parse_compound;
use vienna_media::rtp::RtpPacket;
use vienna_mixer::MixerConfig;
use vienna_mixer::conference::{Host, HostConfig, JoinOptions};

const PLAIN: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
    m=audio 5000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp-mux\r\n";
const ICE: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-ufrag:peer\r\na=ice-pwd:peerpasswordpeerpassword\r\n\
    m=audio 9 RTP/AVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-mux\r\n";

fuzz_target!(|data: &[u8]| {
    // the pieces on their own
    if let Ok(p) = RtpPacket::parse(data) {
        let _ = (p.payload().len(), p.csrc(0));
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(8_000));
        jb.push(t0, p.timestamp, p.payload());
        let _ = jb.pop();
        let _ = DtmfReceiver::default().handle(p.timestamp, p.payload());
    }
    let _ = parse_compound(data, 1);

    // the whole input path
    let t0 = Instant::now();
    let mut host = Host::new(HostConfig {
        mixer: MixerConfig { rate: 8_000, ..MixerConfig::default() },
        local: "198.51.100.1:40000".parse().unwrap(),
        opus_bitrate: 16_000,
        max_jitter_frames: 10,
        media_timeout: Duration::from_secs(5),
        max_participants: 10,
        quiet_decode_interval: 4,
        cname: "fuzz".into(),
        unix_at_start: Duration::from_secs(1_800_000_000),
        started: t0,
        srtp: vienna_srtp::LocalPolicy::default(),
    })
    .unwrap();
    let conf = host.create_conference("f").unwrap();
    let opts = |b: u8| JoinOptions { label: String::new(), msi: None, random: [b; 32] };
    host.add_participant(t0, conf, PLAIN, opts(1)).unwrap();
    host.add_participant(t0, conf, ICE, opts(2)).unwrap();
    let sources: [SocketAddr; 3] =
        ["192.0.2.1:5000".parse().unwrap(), "192.0.2.9:6000".parse().unwrap(), "203.0.113.7:7".parse().unwrap()];
    let mut now = t0;
    let mut out = vec![0u8; 1500];
    for chunk in data.split(|b| *b == 0xa5).take(64) {
        let Some((&first, rest)) = chunk.split_first() else { continue };
        now += Duration::from_millis(u64::from(first & 0x3f));
        let mut bytes = rest.to_vec();
        host.handle_datagram(now, sources[usize::from(first >> 6) % 3], &mut bytes);
        if host.poll_timeout().is_some_and(|d| d <= now) {
            host.handle_timeout(now);
        }
        while host.poll_transmit(now, &mut out).is_some() {}
        while host.poll_event().is_some() {}
    }
});
