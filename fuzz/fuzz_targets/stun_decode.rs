//! Decode arbitrary bytes as STUN, ChannelData and stream frames; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vienna_stun::{ChannelData, Message, attributes, frame_len};

fuzz_target!(|data: &[u8]| {
    let _ = frame_len(data);
    let _ = ChannelData::parse(data);
    if let Ok(m) = Message::decode(data) {
        for a in m.attributes() {
            let _ = a;
        }
        let _ = m.unknown_comprehension_required(attributes::is_known);
        let _ = m.verify_integrity(b"key");
        let _ = m.check_fingerprint();
    }
});
