//! Load shapes for the benchmarks and the capacity probe: conferences of talkers and listeners whose
//! packets are pre-encoded, fed to a conference core (or a bare mixer) one 20 ms tick at a time.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vienna_media::codec::{self, CodecKind, CodecSetting, frame_samples};
use vienna_media::rtp::{HeaderFields, write_header};
use vienna_mixer::conference::{Host, HostConfig, JoinOptions};
use vienna_mixer::{Mixer, MixerConfig, ParticipantId};

/// One conference shape.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Conferences.
    pub conferences: usize,
    /// Talkers per conference.
    pub talkers: usize,
    /// Listeners per conference.
    pub listeners: usize,
    /// Codec of every participant.
    pub codec: CodecKind,
    /// Encode per listener (the Janus-like comparison mode).
    pub per_listener: bool,
    /// Mixing rate.
    pub rate: u32,
    /// Quiet participants decoded every this many frames.
    pub quiet_interval: u32,
    /// Opus complexity of the mixes.
    pub complexity: u8,
}

impl Shape {
    /// Participants in all.
    pub fn participants(&self) -> usize {
        self.conferences * (self.talkers + self.listeners)
    }
}

fn pcm(frame: usize, i: usize, talker: bool, rate: u32, seed: usize) -> Vec<i16> {
    (0..frame)
        .map(|k| {
            if talker {
                let t = (i * frame + k) as f64 / f64::from(rate);
                (6000.0 * (2.0 * std::f64::consts::PI * (300.0 + 50.0 * seed as f64) * t).sin()) as i16
            } else {
                // low noise (about -60 dBFS): a listener's open microphone
                (((i * frame + k) * 2_654_435_761 + seed * 40_503) % 65) as i16 - 32
            }
        })
        .collect()
}

/// Pre-encoded packets: 50 frames of a talker's tone or of a listener's noise.
fn payloads(codec: CodecKind, rate: u32, talker: bool, seed: usize) -> Vec<Vec<u8>> {
    let setting = CodecSetting::of(codec, 32_000);
    let mut enc = codec::encoder(setting, 48_000, 5).expect("encoder");
    let frame = frame_samples(48_000);
    let _ = rate;
    (0..50)
        .map(|i| {
            let mut out = vec![0u8; 1500];
            let n = enc.encode(&pcm(frame, i, talker, 48_000, seed), &mut out).expect("encode");
            out.truncate(n);
            out
        })
        .collect()
}

struct Feed {
    addr: SocketAddr,
    ssrc: u32,
    talker: bool,
    header: rtp::header::Header,
}

/// Conferences on one conference core, fed with simulated datagrams.
pub struct HostLoad {
    /// The core.
    pub host: Host,
    feeds: Vec<Feed>,
    talk: Vec<Vec<u8>>,
    quiet: Vec<Vec<u8>>,
    pt: u8,
    ticks_per_frame: u32,
    t0: Instant,
    frame: u32,
    packet: Vec<u8>,
    out: Vec<u8>,
}

impl HostLoad {
    /// Builds the conferences of `shape`.
    pub fn new(shape: Shape) -> HostLoad {
        let t0 = Instant::now();
        let mut host = Host::new(HostConfig {
            mixer: MixerConfig {
                rate: shape.rate,
                encode_per_listener: shape.per_listener,
                opus_complexity: shape.complexity,
                ..MixerConfig::default()
            },
            local: "127.0.0.1:40000".parse().unwrap(),
            opus_bitrate: 32_000,
            max_jitter_frames: 10,
            media_timeout: Duration::from_secs(3600),
            max_participants: 100_000,
            quiet_decode_interval: shape.quiet_interval,
            cname: "bench".into(),
            unix_at_start: Duration::from_secs(1_800_000_000),
            started: t0,
            srtp: vienna_srtp::LocalPolicy::default(),
        })
        .expect("host");
        let (pt, map) = match shape.codec {
            CodecKind::Opus => (111u8, "a=rtpmap:111 opus/48000/2\r\n"),
            CodecKind::Pcmu => (0, "a=rtpmap:0 PCMU/8000\r\n"),
            CodecKind::Pcma => (8, "a=rtpmap:8 PCMA/8000\r\n"),
            CodecKind::G722 => (9, "a=rtpmap:9 G722/8000\r\n"),
        };
        let mut feeds = Vec::new();
        let mut n = 0u32;
        for c in 0..shape.conferences {
            let conf = host.create_conference(&format!("c{c}")).expect("conference");
            for p in 0..shape.talkers + shape.listeners {
                n += 1;
                let addr = SocketAddr::from(([127, (n >> 16) as u8, (n >> 8) as u8, n as u8], 10_000));
                let sdp = format!(
                    "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 10000 RTP/AVP {pt}\r\n{map}a=rtcp-mux\r\n",
                    ip = addr.ip()
                );
                let mut random = [0u8; 32];
                random[..4].copy_from_slice(&n.to_le_bytes());
                random[18..22].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_le_bytes());
                host.add_participant(t0, conf, &sdp, JoinOptions { label: String::new(), msi: Some(n), random })
                    .expect("join");
                feeds.push(Feed { addr, ssrc: n, talker: p < shape.talkers, header: rtp::header::Header::default() });
            }
        }
        HostLoad {
            host,
            feeds,
            talk: payloads(shape.codec, shape.rate, true, 1),
            quiet: payloads(shape.codec, shape.rate, false, 2),
            pt,
            ticks_per_frame: shape.codec.frame_ticks(),
            t0,
            frame: 0,
            packet: vec![0u8; 1500],
            out: vec![0u8; 1500],
        }
    }

    /// Delivers one packet per participant (all arriving at the tick), runs the tick and sends every
    /// packet it makes. Returns the packets sent.
    pub fn tick(&mut self) -> usize {
        self.frame += 1;
        let now = self.t0 + Duration::from_millis(20 * u64::from(self.frame));
        let i = self.frame as usize % 50;
        for f in &mut self.feeds {
            let payload = if f.talker { &self.talk[i] } else { &self.quiet[i] };
            let fields = HeaderFields {
                marker: false,
                payload_type: self.pt,
                sequence: self.frame as u16,
                timestamp: self.frame.wrapping_mul(self.ticks_per_frame),
                ssrc: f.ssrc,
            };
            let h = write_header(&mut f.header, fields, &[], &mut self.packet).expect("header");
            self.packet[h..h + payload.len()].copy_from_slice(payload);
            self.host.handle_datagram(now, f.addr, &mut self.packet[..h + payload.len()]);
        }
        if self.host.poll_timeout().is_some_and(|d| d <= now) {
            self.host.handle_timeout(now);
        }
        let mut sent = 0;
        while self.host.poll_transmit(now, &mut self.out).is_some() {
            sent += 1;
        }
        while self.host.poll_event().is_some() {}
        sent
    }
}

/// Bare mixers (no sessions, jitter buffers or decoders): decoded frames in, encoded frames out.
pub struct MixerLoad {
    mixers: Vec<(Mixer, Vec<(ParticipantId, bool)>)>,
    talk: Vec<Vec<i16>>,
    quiet: Vec<Vec<i16>>,
    frame: usize,
}

impl MixerLoad {
    /// Builds the mixers of `shape`.
    pub fn new(shape: Shape) -> MixerLoad {
        let frame = frame_samples(shape.rate);
        let setting = CodecSetting::of(shape.codec, 32_000);
        let mixers = (0..shape.conferences)
            .map(|_| {
                let mut m = Mixer::new(MixerConfig {
                    rate: shape.rate,
                    encode_per_listener: shape.per_listener,
                    opus_complexity: shape.complexity,
                    ..MixerConfig::default()
                })
                .expect("mixer");
                let ids = (0..shape.talkers + shape.listeners)
                    .map(|p| (m.add(p as u32, setting, true).expect("add"), p < shape.talkers))
                    .collect();
                (m, ids)
            })
            .collect();
        MixerLoad {
            mixers,
            talk: (0..50).map(|i| pcm(frame, i, true, shape.rate, 1)).collect(),
            quiet: (0..50).map(|i| pcm(frame, i, false, shape.rate, 2)).collect(),
            frame: 0,
        }
    }

    /// One tick of every mixer: frames in, mix, every listener's output looked up.
    pub fn tick(&mut self) -> usize {
        self.frame += 1;
        let i = self.frame % 50;
        let mut bytes = 0;
        for (m, ids) in &mut self.mixers {
            for (id, talker) in ids.iter() {
                let src = if *talker { &self.talk[i] } else { &self.quiet[i] };
                if let Some(f) = m.frame_mut(*id) {
                    f.copy_from_slice(src);
                }
                m.set_present(*id, true);
            }
            m.mix();
            for (id, _) in ids.iter() {
                bytes += m.output(*id).map_or(0, |o| o.payload.len());
            }
            while m.poll_event().is_some() {}
        }
        bytes
    }

    /// Frames encoded in the last tick, over all mixers.
    pub fn encodes_last_tick(&self) -> u32 {
        self.mixers.iter().map(|(m, _)| m.stats().encodes_last_tick).sum()
    }
}
