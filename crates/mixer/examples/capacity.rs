//! Participants per core: runs ticks back to back for growing loads and reports, for each, the tick
//! cost percentiles and the share of ticks over the 20 ms budget; the capacity is the largest load with
//! no more than 1 % of ticks over budget. Single-threaded, so one core.
//!
//! cargo run --release -p vienna-mixer --example capacity -- [a|b|a-per-listener|b-per-listener] [core|mixer] [ticks]

use std::time::{Duration, Instant};

use vienna_media::codec::CodecKind;

mod scenario;
use scenario::{HostLoad, MixerLoad, Shape};

const BUDGET: Duration = Duration::from_millis(20);

fn measure(shape: Shape, core: bool, ticks: usize) -> (Duration, Duration, Duration, f64) {
    let mut durations = Vec::with_capacity(ticks);
    if core {
        let mut h = HostLoad::new(shape);
        for _ in 0..50 {
            h.tick();
        }
        for _ in 0..ticks {
            let t = Instant::now();
            h.tick();
            durations.push(t.elapsed());
        }
    } else {
        let mut m = MixerLoad::new(shape);
        for _ in 0..50 {
            m.tick();
        }
        for _ in 0..ticks {
            let t = Instant::now();
            m.tick();
            durations.push(t.elapsed());
        }
    }
    durations.sort();
    let over = durations.iter().filter(|d| **d > BUDGET).count() as f64 / ticks as f64;
    let mean = durations.iter().sum::<Duration>() / ticks as u32;
    (mean, durations[ticks / 2], durations[ticks * 99 / 100], over)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("a", String::as_str);
    let core = args.get(2).is_none_or(|s| s == "core");
    let ticks: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(250);
    let per_listener = which.ends_with("per-listener");
    let (mut load, step): (usize, usize) = if which.starts_with('a') { (100, 100) } else { (10, 10) };
    println!("shape {which}, {} path, {ticks} ticks per load, budget 20 ms", if core { "core" } else { "mixer" });
    println!("participants  mean_us  p50_us  p99_us  over_budget_%");
    let mut best = 0;
    loop {
        let shape = if which.starts_with('a') {
            Shape { conferences: 1, talkers: 3, listeners: load - 3, codec: CodecKind::Opus, per_listener, rate: 48_000 }
        } else {
            Shape { conferences: load / 5, talkers: 2, listeners: 3, codec: CodecKind::Opus, per_listener, rate: 48_000 }
        };
        let (mean, p50, p99, over) = measure(shape, core, ticks);
        println!(
            "{:>12}  {:>7}  {:>6}  {:>6}  {:>6.2}",
            shape.participants(),
            mean.as_micros(),
            p50.as_micros(),
            p99.as_micros(),
            100.0 * over
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
