//! Per-packet cost of SRTP protect and unprotect (160 and 1200 bytes of payload, every suite), and of
//! fanning one 160-byte mix out to 1, 10, 100 and 1,000 receivers: once with Scale SRTP (one protect, one
//! buffer for every address) and once with a context per receiver (one copy and one protect each). No
//! sockets: the cost of the crate and libsrtp only.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vienna_srtp::fanout::ScalePolicy;
use vienna_srtp::{
    FanOut, MasterKey, Mki, ReceiverId, ReceiverOptions, ScaleGroup, SrtpReceiver, SrtpSender, Suite, TRAILER_ROOM,
};

fn rtp(seq: u16, payload: usize) -> Vec<u8> {
    let mut p = vec![0x80, 0x60];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44]);
    p.extend(std::iter::repeat_n(0xab, payload));
    p
}

fn set_seq(buf: &mut [u8], seq: u16) {
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
}

fn protect_unprotect(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp");
    for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32, Suite::AeadAes128Gcm] {
        for payload in [160usize, 1200] {
            let key = MasterKey::random(suite).unwrap();
            let plain = rtp(0, payload);
            g.throughput(Throughput::Elements(1));

            let mut tx = SrtpSender::new(&key, None, None).unwrap();
            let mut buf = vec![0u8; plain.len() + TRAILER_ROOM];
            buf[..plain.len()].copy_from_slice(&plain);
            let mut seq = 0u16;
            g.bench_function(BenchmarkId::new(format!("protect/{suite}"), payload), |b| {
                b.iter(|| {
                    seq = seq.wrapping_add(1);
                    set_seq(&mut buf, seq);
                    black_box(tx.protect_rtp(&mut buf, plain.len()).unwrap())
                })
            });

            // Unprotect needs a fresh packet each time (replay protection): protect a chunk untimed, then
            // time unprotecting it.
            let mut tx = SrtpSender::new(&key, None, None).unwrap();
            let mut rx = SrtpReceiver::new(&key, None, None, ReceiverOptions::default()).unwrap();
            let mut seq = 0u16;
            let mut chunk: Vec<Vec<u8>> = (0..1024).map(|_| vec![0u8; plain.len() + TRAILER_ROOM]).collect();
            let mut lens = vec![0usize; chunk.len()];
            g.bench_function(BenchmarkId::new(format!("unprotect/{suite}"), payload), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut done = 0;
                    while done < iters {
                        let n = (iters - done).min(chunk.len() as u64) as usize;
                        for (p, len) in chunk[..n].iter_mut().zip(&mut lens) {
                            seq = seq.wrapping_add(1);
                            p[..plain.len()].copy_from_slice(&plain);
                            set_seq(p, seq);
                            *len = tx.protect_rtp(p, plain.len()).unwrap();
                        }
                        let t = Instant::now();
                        for (p, len) in chunk[..n].iter_mut().zip(&lens) {
                            black_box(rx.unprotect_rtp(&mut p[..*len]).unwrap());
                        }
                        total += t.elapsed();
                        done += n as u64;
                    }
                    total
                })
            });
        }
    }
    g.finish();
}

fn address(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16))
}

fn fan_out(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    let suite = Suite::AesCm128HmacSha1_80;
    let plain = rtp(0, 160);
    for receivers in [1usize, 10, 100, 1000] {
        g.throughput(Throughput::Elements(receivers as u64));

        let key = MasterKey::random(suite).unwrap();
        let mut group = ScaleGroup::new(&key, Some(Mki::new(1, 1).unwrap()), None, ScalePolicy::default()).unwrap();
        for i in 0..receivers {
            group.join(ReceiverId(i as u64), address(i));
        }
        let mut scale = FanOut::new(1500);
        scale.set_group(group);
        let mut buf = vec![0u8; 1500 + TRAILER_ROOM + 8];
        buf[..plain.len()].copy_from_slice(&plain);
        let mut seq = 0u16;
        g.bench_function(BenchmarkId::new("scale_srtp", receivers), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                set_seq(&mut buf, seq);
                let out = scale.protect_rtp(&mut buf, plain.len()).unwrap();
                for d in out.datagrams() {
                    black_box(d);
                }
            })
        });

        let mut legs = FanOut::new(1500);
        for i in 0..receivers {
            let k = MasterKey::random(suite).unwrap();
            legs.add_leg(
                ReceiverId(i as u64),
                address(i),
                SrtpSender::new(&k, Some(Mki::new(1, 1).unwrap()), None).unwrap(),
            );
        }
        g.bench_function(BenchmarkId::new("per_receiver", receivers), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                set_seq(&mut buf, seq);
                let out = legs.protect_rtp(&mut buf, plain.len()).unwrap();
                for d in out.datagrams() {
                    black_box(d);
                }
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(20);
    targets = protect_unprotect, fan_out
}
criterion_main!(benches);
