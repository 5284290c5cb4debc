//! Parse arbitrary bytes as a PIDF/RPID presence document (and as bare XML), render what was read and
//! read it back: nothing may panic, and a rendered state must read back as the same state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vienna_presence::pidf;
use vienna_xml as xml;

fuzz_target!(|data: &[u8]| {
    let _ = xml::parse(data, xml::Limits::default());
    if let Ok(p) = pidf::parse(data) {
        let doc = pidf::render(&p.entity, &p.state);
        let back = pidf::parse(doc.as_bytes()).expect("a rendered document parses");
        assert_eq!(back.state.state(), p.state.state(), "{doc}");
    }
});
