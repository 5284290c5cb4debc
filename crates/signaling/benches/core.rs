//! Cost of the signaling core per SIP transaction, without sockets or store: an authenticated REGISTER
//! refresh (parse, Digest check, binding update, 200 OK), and a MESSAGE routed to a registered contact and
//! its 200 OK relayed back (both legs; the simulated callee's parse and answer are included).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use vienna_signaling::{Account, Core, CoreConfig, Directory, LocalAddr, Output};
use vienna_sip::digest::{Challenge, Ha1, respond};
use vienna_sip::transaction::Peer;
use vienna_sip::{HeaderName, Message, Transport};

const DOMAIN: &str = "example.com";

struct Users;

impl Directory for Users {
    fn account(&self, aor: &str) -> Option<Account> {
        let user = aor.strip_prefix("sip:")?.strip_suffix("@example.com")?;
        Some(Account { aor: aor.to_owned(), enabled: true, ha1: Ha1::derive(user, DOMAIN, "pw") })
    }
    fn account_by_auth(&self, username: &str, _realm: &str) -> Option<Account> {
        self.account(&format!("sip:{username}@{DOMAIN}"))
    }
}

fn peer(s: &str) -> Peer {
    Peer { transport: Transport::Udp, addr: s.parse::<SocketAddr>().unwrap() }
}

fn core(authenticate: bool) -> Core<Users> {
    let local = vec![LocalAddr { transport: Transport::Udp, addr: "192.0.2.100:5060".parse().unwrap() }];
    let mut config = CoreConfig::new(DOMAIN, local);
    config.authenticate = authenticate;
    config.nonce_lifetime_secs = 1 << 30;
    config.max_transactions = 10_000_000;
    Core::new(config, Users, [9; 32], vec![], Instant::now(), 1_800_000_000)
}

/// Moves the clock by 100 µs and runs due timers, so finished transactions are reaped as in a server
/// handling 10,000 transactions a second.
fn tick(core: &mut Core<Users>, now: &mut Instant) {
    *now += std::time::Duration::from_micros(100);
    if core.poll_timeout().is_some_and(|t| t <= *now) {
        core.handle_timeout(*now);
    }
}

fn drain(core: &mut Core<Users>) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    while let Some(o) = core.poll_output() {
        if let Output::Transmit(t) = o {
            sent.push(t.bytes);
        }
    }
    sent
}

fn register(user: &str, from: &str, cseq: u32, auth: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-r{cseq}\r\nMax-Forwards: 70\r\n\
         From: <sip:{user}@{DOMAIN}>;tag=t\r\nTo: <sip:{user}@{DOMAIN}>\r\nCall-ID: reg-{user}\r\nCSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@{from}>\r\nExpires: 3600\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn bench_register(c: &mut Criterion) {
    let mut core = core(true);
    let mut now = Instant::now();
    let from = peer("192.0.2.1:5070");
    core.handle_datagram(now, from, &register("alice", "192.0.2.1:5070", 1, ""));
    let challenge = drain(&mut core)
        .into_iter()
        .find_map(|b| match Message::parse(&b) {
            Ok(Message::Response(r)) => {
                r.headers.get_all(&HeaderName::WwwAuthenticate).next().map(|v| Challenge::parse(v).unwrap())
            }
            _ => None,
        })
        .expect("a challenge");
    let mut cseq = 1u32;
    let mut group = c.benchmark_group("signaling");
    group.throughput(Throughput::Elements(1));
    group.bench_function("register_refresh_with_digest", |b| {
        b.iter_batched(
            || {
                cseq += 1;
                let creds = respond(&challenge, "alice", "pw", "REGISTER", &format!("sip:{DOMAIN}"), "cn", cseq);
                register("alice", "192.0.2.1:5070", cseq, &format!("Authorization: {creds}\r\n"))
            },
            |bytes| {
                tick(&mut core, &mut now);
                core.handle_datagram(now, from, &bytes);
                black_box(drain(&mut core));
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn bench_message(c: &mut Criterion) {
    let mut core = core(false);
    let mut now = Instant::now();
    let bob = peer("192.0.2.2:5070");
    core.handle_datagram(now, bob, &register("bob", "192.0.2.2:5070", 1, ""));
    drain(&mut core);
    let alice = peer("192.0.2.1:5070");
    let mut n = 0u64;
    let mut group = c.benchmark_group("signaling");
    group.throughput(Throughput::Elements(1));
    group.bench_function("message_routed_and_answered", |b| {
        b.iter_batched(
            || {
                n += 1;
                format!(
                    "MESSAGE sip:bob@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK-m{n}\r\nMax-Forwards: 70\r\n\
                     From: <sip:alice@{DOMAIN}>;tag=a\r\nTo: <sip:bob@{DOMAIN}>\r\nCall-ID: m{n}\r\nCSeq: 1 MESSAGE\r\n\
                     Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
                )
                .into_bytes()
            },
            |bytes| {
                tick(&mut core, &mut now);
                core.handle_datagram(now, alice, &bytes);
                let forwarded = drain(&mut core);
                let Ok(Message::Request(req)) = Message::parse(&forwarded[0]) else { panic!("not forwarded") };
                let ok = req.make_response_with_tag(200, None, "b").to_bytes();
                core.handle_datagram(now, bob, &ok);
                black_box(drain(&mut core));
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_register, bench_message);
criterion_main!(benches);
