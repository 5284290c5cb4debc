//! RFC 5769 test vectors: decoding, XOR addresses, MESSAGE-INTEGRITY and FINGERPRINT.

use std::net::SocketAddr;

use vienna_stun::attributes::{self as attr, Attribute};
use vienna_stun::integrity::{long_term_key, short_term_key};
use vienna_stun::message::IntegrityKind;
use vienna_stun::{Class, Message, MessageBuilder, Method};

const REQUEST: &[u8] = include_bytes!("../../../testvectors/rfc5769/2.1-sample-request.bin");
const IPV4: &[u8] = include_bytes!("../../../testvectors/rfc5769/2.2-sample-ipv4-response.bin");
const IPV6: &[u8] = include_bytes!("../../../testvectors/rfc5769/2.3-sample-ipv6-response.bin");
const LONG_TERM: &[u8] = include_bytes!("../../../testvectors/rfc5769/2.4-long-term-request.bin");
const PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";

#[test]
fn sample_request() {
    let m = Message::decode(REQUEST).unwrap();
    assert_eq!((m.method(), m.class()), (Method::BINDING, Class::Request));
    let attrs: Vec<_> = m.attributes().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        attrs,
        vec![
            Attribute::Software("STUN test client"),
            Attribute::Priority(0x6e0001ff),
            Attribute::IceControlled(0x932ff9b151263b36),
            Attribute::Username("evtj:h6vY"),
        ]
    );
    assert_eq!(m.verify_integrity(&short_term_key(PASSWORD)), Some(IntegrityKind::Sha1));
    assert_eq!(m.verify_integrity(b"wrong"), None);
    assert_eq!(m.check_fingerprint(), Some(true));
    assert!(m.unknown_comprehension_required(attr::is_known).is_empty());
}

#[test]
fn sample_ipv4_response() {
    let m = Message::decode(IPV4).unwrap();
    assert_eq!(m.class(), Class::Success);
    let want: SocketAddr = "192.0.2.1:32853".parse().unwrap();
    assert_eq!(m.get(attr::XOR_MAPPED_ADDRESS), Some(Ok(Attribute::XorMappedAddress(want))));
    assert_eq!(m.get(attr::SOFTWARE), Some(Ok(Attribute::Software("test vector"))));
    assert!(m.verify_integrity(PASSWORD.as_bytes()).is_some());
    assert_eq!(m.check_fingerprint(), Some(true));
}

#[test]
fn sample_ipv6_response() {
    let m = Message::decode(IPV6).unwrap();
    let want: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853".parse().unwrap();
    assert_eq!(m.get(attr::XOR_MAPPED_ADDRESS), Some(Ok(Attribute::XorMappedAddress(want))));
    assert!(m.verify_integrity(PASSWORD.as_bytes()).is_some());
    assert_eq!(m.check_fingerprint(), Some(true));
}

#[test]
fn long_term_request_and_reencode() {
    let m = Message::decode(LONG_TERM).unwrap();
    let user = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
    assert_eq!(m.get(attr::USERNAME), Some(Ok(Attribute::Username(user))));
    assert_eq!(m.get(attr::NONCE), Some(Ok(Attribute::Nonce("f//499k954d6OL34oL9FSTvy64sA"))));
    assert_eq!(m.get(attr::REALM), Some(Ok(Attribute::Realm("example.org"))));
    assert_eq!(m.check_fingerprint(), None);
    let key = long_term_key(user, "example.org", "TheMatrIX");
    assert!(m.verify_integrity(&key).is_some());
    assert!(m.verify_integrity(&long_term_key(user, "example.org", "thematrix")).is_none());

    // Our builder reproduces the vector byte for byte.
    let mut b = MessageBuilder::new(Class::Request, Method::BINDING, m.transaction_id());
    b.add(&Attribute::Username(user)).unwrap();
    b.add(&Attribute::Nonce("f//499k954d6OL34oL9FSTvy64sA")).unwrap();
    b.add(&Attribute::Realm("example.org")).unwrap();
    b.add_message_integrity(&key);
    assert_eq!(b.finish(), LONG_TERM);
}

#[test]
fn tampering_is_detected() {
    let mut bytes = REQUEST.to_vec();
    bytes[30] ^= 1; // inside SOFTWARE
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(m.check_fingerprint(), Some(false));
    assert!(m.verify_integrity(PASSWORD.as_bytes()).is_none());
}
