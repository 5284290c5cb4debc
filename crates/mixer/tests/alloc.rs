//! The hot path allocates nothing: a counting global allocator watches the mixer's ticks and the
//! conference core's packet path (receive, tick, send) once they are warmed up.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vienna_media::codec::{CodecKind, CodecSetting};
use vienna_media::rtp::{HeaderFields, write_header};
use vienna_mixer::conference::{Host, HostConfig, JoinOptions};
use vienna_mixer::{Mixer, MixerConfig};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

fn tone(hz: f64, tick: usize, out: &mut [i16]) {
    let n = out.len();
    for (i, o) in out.iter_mut().enumerate() {
        *o = (8000.0 * (2.0 * std::f64::consts::PI * hz * (tick * n + i) as f64 / 48_000.0).sin()) as i16;
    }
}

#[test]
fn hot_paths_do_not_allocate() {
    // The mixer alone: 3 talkers, 100 listeners, two codec settings.
    let mut m = Mixer::new(MixerConfig::default()).unwrap();
    let ids: Vec<_> = (0..103)
        .map(|i| {
            let s = if i % 2 == 0 { CodecSetting::g711(CodecKind::Pcmu) } else { CodecSetting::opus(32_000) };
            m.add(i, s, true).unwrap()
        })
        .collect();
    let run = |m: &mut Mixer, from: usize, ticks: usize| {
        for t in from..from + ticks {
            for (i, id) in ids.iter().enumerate() {
                let f = m.frame_mut(*id).unwrap();
                if i < 3 {
                    tone(300.0 + 200.0 * i as f64, t, f)
                } else {
                    f.fill(0)
                }
                m.set_present(*id, true);
            }
            m.mix();
            for id in &ids {
                std::hint::black_box(m.output(*id));
            }
            while m.poll_event().is_some() {}
        }
    };
    run(&mut m, 0, 20);
    let before = allocations();
    run(&mut m, 20, 100);
    assert_eq!(allocations() - before, 0, "mixer ticks allocated");

    // The conference core: 20 PCMU participants sending over simulated datagrams.
    let t0 = Instant::now();
    let mut host = Host::new(HostConfig {
        mixer: MixerConfig::default(),
        local: "127.0.0.1:40000".parse().unwrap(),
        opus_bitrate: 32_000,
        max_jitter_frames: 10,
        media_timeout: Duration::from_secs(30),
        max_participants: 100,
        quiet_decode_interval: 4,
        cname: "mcu".into(),
        unix_at_start: Duration::from_secs(1_800_000_000),
        started: t0,
        srtp: vienna_srtp::LocalPolicy::default(),
    })
    .unwrap();
    let conf = host.create_conference("a").unwrap();
    let peers: Vec<SocketAddr> = (0..20u16).map(|i| SocketAddr::from(([127, 0, 0, 1], 9000 + 2 * i))).collect();
    // every other participant with SRTP: their packets are protected here, unprotected and re-protected there
    let suite = vienna_srtp::Suite::AesCm128HmacSha1_80;
    let mut senders: Vec<Option<vienna_srtp::SrtpSender>> = Vec::new();
    for (i, p) in peers.iter().enumerate() {
        let mut sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtcp-mux\r\n",
            p.port()
        );
        if i % 2 == 1 {
            let key = vienna_srtp::MasterKey::random(suite).unwrap();
            let line = vienna_srtp::CryptoAttribute::new(1, suite, vienna_srtp::KeyParam::new(&key, None, None));
            sdp = sdp.replace("RTP/AVP", "RTP/SAVP") + &format!("a=crypto:{}\r\n", line.value());
            senders.push(Some(vienna_srtp::SrtpSender::new(&key, None, None).unwrap()));
        } else {
            senders.push(None);
        }
        host.add_participant(
            t0,
            conf,
            &sdp,
            JoinOptions { label: String::new(), msi: None, random: [i as u8 + 1; 32] },
        )
        .unwrap();
    }
    let mut header = rtp::header::Header::default();
    let mut packet = vec![0u8; 200 + vienna_srtp::TRAILER_ROOM];
    let mut out = vec![0u8; 1500];
    let mut step = |host: &mut Host, frame: u32| {
        let now = t0 + Duration::from_millis(20 * u64::from(frame));
        for (i, p) in peers.iter().enumerate() {
            let fields = HeaderFields {
                marker: false,
                payload_type: 0,
                sequence: frame as u16,
                timestamp: frame * 160,
                ssrc: 100 + i as u32,
            };
            let h = write_header(&mut header, fields, &[], &mut packet).unwrap();
            let fill = if i < 2 { 0x10 } else { 0xff };
            packet[h..h + 160].fill(fill);
            let n = match &mut senders[i] {
                Some(s) => s.protect_rtp(&mut packet, h + 160).unwrap(),
                None => h + 160,
            };
            host.handle_datagram(now, *p, &mut packet[..n]);
        }
        if host.poll_timeout().is_some_and(|d| d <= now) {
            host.handle_timeout(now);
        }
        while host.poll_transmit(now, &mut out).is_some() {}
        while host.poll_event().is_some() {}
    };
    for frame in 0..25 {
        step(&mut host, frame);
    }
    let before = allocations();
    // RTCP (which does allocate, a few packets per participant every 5 s) is not due before 2.5 s.
    for frame in 25..110 {
        step(&mut host, frame);
    }
    assert_eq!(allocations() - before, 0, "conference packet path allocated");
    assert!(host.stats().rtp_out > 20 * 80);
    assert_eq!(host.stats().unprotect_failed, 0);
    assert_eq!(host.members(conf).iter().filter(|m| m.srtp && m.protection.rtp_out > 80).count(), 10);
}
