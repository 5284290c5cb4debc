//! CPU cost of one 20 ms frame through each codec at each mixing rate (and Opus complexity), in thread
//! CPU time: what one encoded mix or one decoded participant costs.
//!
//! cargo run --release -p vienna-mixer --example codec_cost

use std::time::Duration;

use vienna_media::codec::{CodecKind, CodecSetting, MIX_RATES, decoder, encoder, frame_samples};

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec on our stack.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn speechlike(rate: u32, i: usize, n: usize) -> Vec<i16> {
    // two tones with a slow amplitude wobble and a little noise: not a pure tone (see janus-anchor.md)
    (0..n)
        .map(|k| {
            let t = (i * n + k) as f64 / f64::from(rate);
            let env = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            let noise = (((i * n + k) * 2_654_435_761) % 2001) as f64 - 1000.0;
            (env * (5000.0 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()
                + 2500.0 * (2.0 * std::f64::consts::PI * 1250.0 * t).sin())
                + noise) as i16
        })
        .collect()
}

fn main() {
    const FRAMES: usize = 500;
    println!("codec  rate  complexity  encode_us  decode_us");
    for rate in MIX_RATES {
        let n = frame_samples(rate);
        let pcm: Vec<Vec<i16>> = (0..50).map(|i| speechlike(rate, i, n)).collect();
        let settings: Vec<(CodecSetting, u8)> = vec![
            (CodecSetting::opus(32_000), 1),
            (CodecSetting::opus(32_000), 5),
            (CodecSetting::opus(32_000), 10),
            (CodecSetting::g711(CodecKind::Pcmu), 0),
            (CodecSetting::g722(), 0),
        ];
        for (setting, complexity) in settings {
            let mut enc = encoder(setting, rate, complexity).unwrap();
            let mut dec = decoder(setting.kind, rate).unwrap();
            let mut packets = Vec::new();
            let mut buf = [0u8; 1500];
            let t = thread_cpu();
            for i in 0..FRAMES {
                let len = enc.encode(&pcm[i % 50], &mut buf).unwrap();
                if packets.len() < 50 {
                    packets.push(buf[..len].to_vec());
                }
            }
            let e = (thread_cpu() - t) / FRAMES as u32;
            let mut out = [0i16; 960];
            let t = thread_cpu();
            for i in 0..FRAMES {
                dec.decode(&packets[i % 50], &mut out).unwrap();
            }
            let d = (thread_cpu() - t) / FRAMES as u32;
            println!(
                "{:5}  {rate:5}  {complexity:10}  {:9.1}  {:9.1}",
                setting.kind.name(),
                e.as_secs_f64() * 1e6,
                d.as_secs_f64() * 1e6
            );
        }
    }
}
