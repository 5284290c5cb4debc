//! Arbitrary bytes as a C3P body (application/cccp+xml) into the XML reader, the C3P parser and a focus
//! with one conference, sent to its focus factory and to its focus. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vienna_focus::{ConfKind, ConfUri, Focus, FocusConfig, c3p};

fuzz_target!(|data: &[u8]| {
    let _ = vienna_xml::parse(data, vienna_xml::Limits::default());
    let Ok(request) = c3p::parse(data) else { return };
    let organizer = "sip:alice@example.test";
    let mut focus = Focus::new(FocusConfig::default(), [0; 32]);
    let id = focus.add_conference(1000, organizer, "fuzz", Some("FUZZCONF1"), None).expect("room for one");
    let _ = focus.join(1000, &id, "sip:bob@example.test", "Bob", Some("e1"));
    for target in [ConfUri::focus_factory(organizer), ConfUri::of(organizer, ConfKind::Focus, &id)] {
        for sender in [organizer, "sip:bob@example.test"] {
            let _ = focus.handle(1001, sender, &target, &request);
        }
    }
    while focus.poll_output().is_some() {}
    if let Some(c) = focus.conference(&id) {
        let _ = c.full_document(1);
    }
});
