//! Participants per core: runs ticks back to back for growing loads and reports, for each, the tick
//! cost percentiles and the share of ticks over the 20 ms budget; the capacity is the largest load with
//! no more than 1 % of ticks over budget. Single-threaded, so one core.
//!
//! Each tick is timed in CPU time of this thread (`CLOCK_THREAD_CPUTIME_ID`), which is what one
//! dedicated core would spend; on a machine shared with other work, wall time also counts the time
//! the thread waited for the CPU (printed too, as `wall_p99_us`).
//!
//! cargo run --release -p vienna-mixer --example capacity -- [a|b|a-per-listener|b-per-listener] [core|mixer] [ticks]
//! (environment: MIX_RATE, OPUS_COMPLEXITY, QUIET_DECODE_INTERVAL)

use std::time::{Duration, Instant};

use vienna_media::codec::CodecKind;

mod scenario;
use scenario::{HostLoad, MixerLoad, Shape};

const BUDGET: Duration = Duration::from_millis(20);

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec on our stack.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn measure(shape: Shape, core: bool, ticks: usize) -> (Duration, Duration, Duration, f64, Duration) {
    let mut durations = Vec::with_capacity(ticks);
    let mut walls = Vec::with_capacity(ticks);
    if core {
        let mut h = HostLoad::new(shape);
        for _ in 0..50 {
            h.tick();
        }
        for _ in 0..ticks {
            let (t, c) = (Instant::now(), thread_cpu());
            h.tick();
            durations.push(thread_cpu() - c);
            walls.push(t.elapsed());
        }
    } else {
        let mut m = MixerLoad::new(shape);
        for _ in 0..50 {
            m.tick();
        }
        for _ in 0..ticks {
            let (t, c) = (Instant::now(), thread_cpu());
            m.tick();
            durations.push(thread_cpu() - c);
            walls.push(t.elapsed());
        }
    }
    durations.sort();
    walls.sort();
    let over = durations.iter().filter(|d| **d > BUDGET).count() as f64 / ticks as f64;
    let mean = durations.iter().sum::<Duration>() / ticks as u32;
    (mean, durations[ticks / 2], durations[ticks * 99 / 100], over, walls[ticks * 99 / 100])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("a", String::as_str);
    let core = args.get(2).is_none_or(|s| s == "core");
    let ticks: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(250);
    let per_listener = which.ends_with("per-listener");
    let env = |name: &str, default: u32| std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    let quiet_interval = env("QUIET_DECODE_INTERVAL", 4);
    let complexity = env("OPUS_COMPLEXITY", 5) as u8;
    let rate = env("MIX_RATE", 48_000);
    println!(
        "mix rate {rate} Hz, Opus complexity {complexity}, quiet participants decoded every {quiet_interval} frames"
    );
    let (mut load, step): (usize, usize) = if which.starts_with('a') && !per_listener { (100, 100) } else { (10, 10) };
    println!("shape {which}, {} path, {ticks} ticks per load, budget 20 ms", if core { "core" } else { "mixer" });
    println!("participants  mean_us  p50_us  p99_us  over_budget_%  wall_p99_us");
    let mut best = 0;
    loop {
        let shape = if which.starts_with('a') {
            Shape {
                conferences: 1,
                talkers: 3,
                listeners: load - 3,
                codec: CodecKind::Opus,
                per_listener,
                rate,
                quiet_interval,
                complexity,
            }
        } else {
            Shape {
                conferences: load / 5,
                talkers: 2,
                listeners: 3,
                codec: CodecKind::Opus,
                per_listener,
                rate,
                quiet_interval,
                complexity,
            }
        };
        let (mean, p50, p99, over, wall) = measure(shape, core, ticks);
        println!(
            "{:>12}  {:>7}  {:>6}  {:>6}  {:>13.2}  {:>11}",
            shape.participants(),
            mean.as_micros(),
            p50.as_micros(),
            p99.as_micros(),
            100.0 * over,
            wall.as_micros()
        );
        if over > 0.01 {
            break;
        }
        best = shape.participants();
        if load >= 20_000 {
            break;
        }
        load += step;
        if load >= 10 * step {
            // coarser steps once well above the first loads
            load += step;
        }
    }
    println!("capacity: {best} participants on one core with at most 1 % of ticks over 20 ms");
}
