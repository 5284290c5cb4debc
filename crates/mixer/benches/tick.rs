//! Criterion benchmarks of one 20 ms tick (see BENCHMARKS.md, "Conference MCU"):
//! (a) one conference of 3 talkers and N listeners, N = 10, 100, 1000, shared encoding and, for
//!     comparison, one encoding per listener; (b) M conferences of 5 participants with 2 talkers.
//! `mixer/…` is the mixing engine alone (decoded frames in); `core/…` is the whole conference core
//! (datagrams in: RTP parse, jitter buffer, decode, mix, encode, RTP out per listener).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vienna_media::codec::CodecKind;

#[path = "../examples/scenario/mod.rs"]
mod scenario;
use scenario::{HostLoad, MixerLoad, Shape};

fn shape(conferences: usize, talkers: usize, listeners: usize, per_listener: bool) -> Shape {
    Shape {
        conferences,
        talkers,
        listeners,
        codec: CodecKind::Opus,
        per_listener,
        rate: 48_000,
        quiet_interval: 4,
        complexity: 5,
    }
}

fn one_conference(c: &mut Criterion) {
    let mut g = c.benchmark_group("a_one_conference_3_talkers");
    g.sample_size(20);
    for n in [10usize, 100, 1000] {
        g.throughput(Throughput::Elements((n + 3) as u64));
        let mut m = MixerLoad::new(shape(1, 3, n, false));
        g.bench_function(BenchmarkId::new("mixer_shared", n), |b| b.iter(|| m.tick()));
        let mut m = MixerLoad::new(shape(1, 3, n, true));
        g.bench_function(BenchmarkId::new("mixer_per_listener", n), |b| b.iter(|| m.tick()));
        let mut h = HostLoad::new(shape(1, 3, n, false));
        g.bench_function(BenchmarkId::new("core_shared", n), |b| b.iter(|| h.tick()));
    }
    g.finish();
}

fn many_conferences(c: &mut Criterion) {
    let mut g = c.benchmark_group("b_conferences_of_5_with_2_talkers");
    g.sample_size(20);
    for m in [10usize, 50] {
        g.throughput(Throughput::Elements((m * 5) as u64));
        let mut mx = MixerLoad::new(shape(m, 2, 3, false));
        g.bench_function(BenchmarkId::new("mixer_shared", m), |b| b.iter(|| mx.tick()));
        let mut mx = MixerLoad::new(shape(m, 2, 3, true));
        g.bench_function(BenchmarkId::new("mixer_per_listener", m), |b| b.iter(|| mx.tick()));
        let mut h = HostLoad::new(shape(m, 2, 3, false));
        g.bench_function(BenchmarkId::new("core_shared", m), |b| b.iter(|| h.tick()));
    }
    g.finish();
}

criterion_group!(benches, one_conference, many_conferences);
criterion_main!(benches);
