//! NOTIFY fan-out of the presence core, no I/O: one presentity with N allowed watchers changes state
//! (a PUBLISH that modifies its publication); the time covers the PUBLISH, building every NOTIFY (PIDF
//! and request) and answering each 200. The rate limit and the burst limit are off so every change notifies
//! every watcher at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vienna_presence::{AllowAll, Origin, Output, PresenceConfig, PresenceCore, PresenceState, State, pidf};
use vienna_sip::transaction::Peer;
use vienna_sip::{HeaderName, Message, Request, Transport};

fn request(text: &str) -> Request {
    match Message::parse(text.replace('\n', "\r\n").as_bytes()) {
        Ok(Message::Request(r)) => r,
        other => panic!("{other:?}"),
    }
}

fn setup(watchers: usize) -> (PresenceCore, Instant, String) {
    let config = PresenceConfig {
        notify_interval: Duration::ZERO,
        notify_burst: 0,
        require_registration: false,
        max_subscriptions: watchers + 10,
        ..PresenceConfig::default()
    };
    let now = Instant::now();
    let mut core = PresenceCore::new(config, [1; 32], now);
    let peer = Peer { transport: Transport::Udp, addr: "127.0.0.1:5099".parse::<SocketAddr>().unwrap() };
    for i in 0..watchers {
        let req = request(&format!(
            "SUBSCRIBE sip:alice@example.com SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK{i}\n\
             From: <sip:w{i}@example.com>;tag=t{i}\nTo: <sip:alice@example.com>\nCall-ID: c{i}\nCSeq: 1 SUBSCRIBE\n\
             Contact: <sip:w{i}@127.0.0.1:5099>\nEvent: presence\nContent-Length: 0\n\n"
        ));
        let watcher = format!("sip:w{i}@example.com");
        let origin = Origin {
            watcher: &watcher,
            resource: "sip:alice@example.com",
            peer,
            contact: "<sip:127.0.0.1:5060>",
            unix: 0,
        };
        assert_eq!(core.subscribe(now, &req, origin, &AllowAll).status, 200);
    }
    answer_all(&mut core, now);
    let etag = publish(&mut core, now, None, State::Online);
    answer_all(&mut core, now);
    (core, now, etag)
}

fn publish(core: &mut PresenceCore, now: Instant, etag: Option<&str>, state: State) -> String {
    let body = pidf::render("sip:alice@example.com", &PresenceState::of(state));
    let if_match = etag.map(|e| format!("SIP-If-Match: {e}\n")).unwrap_or_default();
    let mut req = request(&format!(
        "PUBLISH sip:alice@example.com SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5098;branch=z9hG4bKpub\n\
         From: <sip:alice@example.com>;tag=a\nTo: <sip:alice@example.com>\nCall-ID: pub\nCSeq: 1 PUBLISH\n\
         Event: presence\n{if_match}Content-Type: application/pidf+xml\nContent-Length: 0\n\n"
    ));
    req.body = body.into_bytes();
    let r = core.publish(now, &req, "sip:alice@example.com");
    r.headers.get(&HeaderName::Other("SIP-ETag".into())).expect("etag").to_owned()
}

fn answer_all(core: &mut PresenceCore, now: Instant) -> usize {
    let mut n = 0;
    while let Some(o) = core.poll_output() {
        if let Output::Notify { sub, .. } = o {
            core.notify_result(now, sub, 200);
            n += 1;
        }
    }
    n
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("notify_fanout");
    for watchers in [100usize, 1_000, 10_000] {
        let (mut core, now, mut etag) = setup(watchers);
        // Outside the routine: criterion calls it more than once (warm-up, samples).
        let mut busy = false;
        group.throughput(Throughput::Elements(watchers as u64));
        group.bench_with_input(BenchmarkId::from_parameter(watchers), &watchers, |b, &watchers| {
            b.iter(|| {
                busy = !busy;
                etag = publish(&mut core, now, Some(&etag), if busy { State::Busy } else { State::Away });
                assert_eq!(answer_all(&mut core, now), watchers);
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = fanout
}
criterion_main!(benches);
