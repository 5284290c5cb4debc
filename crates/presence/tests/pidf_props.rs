//! The PIDF/RPID reader on arbitrary and mutated input: it never panics, and whatever it accepts renders
//! to a document that reads back as the same state (the same property the `pidf_parse` fuzz target checks,
//! run here on every `cargo test`).

use proptest::prelude::*;
use vienna_presence::{PresenceState, State, pidf};

fn check(bytes: &[u8]) {
    if let Ok(p) = pidf::parse(bytes) {
        let doc = pidf::render(&p.entity, &p.state);
        let back = pidf::parse(doc.as_bytes()).expect("a rendered document parses");
        assert_eq!(back.state.state(), p.state.state());
    }
}

fn seed() -> Vec<u8> {
    let mut s = PresenceState::of(State::BeRightBack);
    s.note = Some("a & b".into());
    pidf::render("sip:alice@example.com", &s).into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check(&bytes);
    }

    #[test]
    fn mutated_documents(edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8)) {
        let mut doc = seed();
        for (at, byte, op) in edits {
            if doc.is_empty() {
                break;
            }
            let i = at % doc.len();
            match op {
                0 => doc[i] = byte,
                1 => { doc.remove(i); }
                _ => doc.insert(i, byte),
            }
        }
        check(&doc);
    }
}
