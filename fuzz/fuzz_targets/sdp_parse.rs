//! Arbitrary bytes as an SDP offer: the parser, the answer, and a join to a conference core with it.
//! Nothing may panic; an answer that is produced must parse again.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use vienna_media::ice::IceCredentials;
use vienna_media::sdp::{AnswerConfig, SessionDescription, answer};
use vienna_mixer::MixerConfig;
use vienna_mixer::conference::{Host, HostConfig, JoinOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(offer) = SessionDescription::parse(text) {
        let config = AnswerConfig {
            address: "198.51.100.1".parse().unwrap(),
            port: 40000,
            ice: IceCredentials::from_random([2; 6], [1; 18]),
            session_id: 1,
            opus_bitrate: 32_000,
            crypto: None,
            ssrc: Some((7, "fuzz".into())),
        };
        if let Ok((sdp, _)) = answer(&offer, &config) {
            SessionDescription::parse(&sdp).expect("our own answer parses");
        }
    }
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
    let _ = host.add_participant(t0, conf, text, JoinOptions { label: String::new(), msi: None, random: [3; 32] });
    host.handle_timeout(t0 + Duration::from_millis(20));
    let mut out = vec![0u8; 1500];
    while host.poll_transmit(t0, &mut out).is_some() {}
});
