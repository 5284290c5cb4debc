//! Parse arbitrary bytes as SIP: datagram parsing, typed headers, error responses, stream framing, Digest
//! headers and the transaction layer's input path. Nothing may panic.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use vienna_sip::transaction::{Peer, TimerConfig, TransactionLayer};
use vienna_sip::{HeaderName, Limits, Message, StreamFramer, Transport, digest, message::error_response};

fuzz_target!(|data: &[u8]| {
    match Message::parse(data) {
        Ok(m) => {
            let h = m.headers();
            let _ = (h.vias(), h.from(), h.to(), h.cseq(), h.contacts(), h.routes(), h.record_routes(), h.event());
            for v in h.get_all(&HeaderName::Authorization).chain(h.get_all(&HeaderName::WwwAuthenticate)) {
                let _ = digest::Credentials::parse(v);
                let _ = digest::Challenge::parse(v);
            }
            let _ = Message::parse(&m.to_bytes());
        }
        Err(e) => {
            let _ = error_response(data, &e);
        }
    }
    let now = Instant::now();
    let mut framer = StreamFramer::new(Limits::default());
    framer.push(now, data);
    while let Ok(Some(_)) = framer.next_event() {}
    let mut layer = TransactionLayer::new(TimerConfig::default(), Limits::default(), [0; 32]);
    let peer = Peer { transport: Transport::Udp, addr: "192.0.2.1:5060".parse().unwrap() };
    layer.handle_bytes(now, peer, data);
    while layer.poll_output().is_some() {}
});
