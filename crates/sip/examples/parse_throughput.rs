//! Rough parse + serialize throughput of a REGISTER with Digest credentials (not a test; wall time only
//! informs). `cargo run --release -p vienna-sip --example parse_throughput`
use std::time::Instant;

use vienna_sip::Message;
use vienna_sip::digest::{DigestServer, Ha1, respond};
use vienna_sip::transaction::{Output, Peer, TimerConfig, TransactionEvent, TransactionLayer};
use vienna_sip::{HeaderName, Limits, Transport};

const REGISTER: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 2 REGISTER\r\n\
Contact: <sip:alice@192.0.2.1:5070;transport=udp>;expires=3600;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1\r\n\
Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"0000000000000000aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", uri=\"sip:example.com\", response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5, cnonce=\"abc\", qop=auth, nc=00000001\r\n\
User-Agent: load/1.0\r\n\
Content-Length: 0\r\n\r\n";

fn main() {
    let n = 200_000;
    let t = Instant::now();
    let mut total = 0;
    for _ in 0..n {
        let m = Message::parse(REGISTER).expect("parses");
        total += m.headers().len();
    }
    let parse = t.elapsed();
    let m = Message::parse(REGISTER).expect("parses");
    let t = Instant::now();
    for _ in 0..n {
        total += usize::from(m.validate().is_ok());
    }
    let validate = t.elapsed();
    let t = Instant::now();
    for _ in 0..n {
        total += m.to_bytes().len();
    }
    let ser = t.elapsed();
    println!(
        "parse+validate: {:.2} us/msg (validate alone {:.2}), serialize: {:.2} us/msg ({total})",
        parse.as_secs_f64() * 1e6 / n as f64,
        validate.as_secs_f64() * 1e6 / n as f64,
        ser.as_secs_f64() * 1e6 / n as f64
    );

    // One UDP REGISTER transaction with Digest verification, end to end through the layer: receive, verify,
    // answer 200, drain the transmit.
    let mut layer = TransactionLayer::new(TimerConfig::default(), Limits::default(), [1; 32]);
    let mut digest = DigestServer::new([2; 32], "example.com", 300, 1 << 20);
    let ha1 = Ha1::derive("alice", "example.com", "secret");
    let ch = digest.challenges(1000, false).remove(0);
    let text = String::from_utf8_lossy(REGISTER).into_owned();
    let n = 100_000u32;
    let msgs: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let c = respond(&ch, "alice", "secret", "REGISTER", "sip:example.com", "abc", i + 1);
            let line = text.lines().find(|l| l.starts_with("Authorization")).unwrap().to_owned();
            text.replace(&line, &format!("Authorization: {c}"))
                .replace("z9hG4bK776asdhds", &format!("z9hG4bK{i}"))
                .into_bytes()
        })
        .collect();
    let peer = Peer { transport: Transport::Udp, addr: "192.0.2.1:5070".parse().unwrap() };
    let now = Instant::now();
    let t = Instant::now();
    let mut ok = 0;
    for m in &msgs {
        layer.handle_bytes(now, peer, m);
        while let Some(o) = layer.poll_output() {
            if let Output::Event(TransactionEvent::Request { id, request, .. }) = o {
                let c = vienna_sip::digest::Credentials::find(&request.headers, false, "example.com").unwrap();
                let v = digest.verify(1001, "REGISTER", &c, &ha1);
                ok += usize::from(v == vienna_sip::digest::Verdict::Ok);
                let mut r = request.make_response_with_tag(200, None, "x");
                r.headers.push(HeaderName::Contact, request.headers.get(&HeaderName::Contact).unwrap_or(""));
                layer.send_response(now, id, r).unwrap();
            }
        }
    }
    let e = t.elapsed();
    println!(
        "REGISTER transaction with SHA-256 Digest through the layer: {:.2} us each ({ok} ok, {} live)",
        e.as_secs_f64() * 1e6 / f64::from(n),
        layer.len()
    );
}
