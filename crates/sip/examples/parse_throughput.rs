//! Rough parse + serialize throughput of a REGISTER with Digest credentials (not a test; wall time only
//! informs). `cargo run --release -p vienna-sip --example parse_throughput`
use std::time::Instant;

use vienna_sip::Message;

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
}
