//! Inputs that once crashed the `sip_parse` fuzz target (files in `tests/regressions/`), replayed through the
//! same paths.

use std::time::Instant;

use vienna_sip::transaction::{Peer, TimerConfig, TransactionLayer};
use vienna_sip::{Limits, Message, StreamFramer, Transport, message::error_response};

#[test]
fn fuzz_regressions_do_not_panic() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        n += 1;
        match Message::parse(&data) {
            Ok(m) => {
                let _ = Message::parse(&m.to_bytes());
            }
            Err(e) => {
                let _ = error_response(&data, &e);
            }
        }
        let mut f = StreamFramer::new(Limits::default());
        f.push(Instant::now(), &data);
        while let Ok(Some(_)) = f.next_event() {}
        let mut layer = TransactionLayer::new(TimerConfig::default(), Limits::default(), [0; 32]);
        layer.handle_bytes(
            Instant::now(),
            Peer { transport: Transport::Udp, addr: "192.0.2.1:5060".parse().unwrap() },
            &data,
        );
        while layer.poll_output().is_some() {}
    }
    assert!(n > 0);
}
