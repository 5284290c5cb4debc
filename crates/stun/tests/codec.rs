//! Round-trip property tests and malformed-input tests for the STUN/TURN codec.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use vienna_stun::attributes::{self as attr, AddressFamily, Attribute, ErrorCode, PasswordAlgorithm};
use vienna_stun::message::IntegrityKind;
use vienna_stun::{ChannelData, Class, Error, Message, MessageBuilder, Method, TransactionId, channel_data, frame_len};

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), p)),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), p)),
    ]
}

fn family() -> impl Strategy<Value = AddressFamily> {
    prop_oneof![Just(AddressFamily::V4), Just(AddressFamily::V6)]
}

fn code() -> impl Strategy<Value = u16> {
    (3u16..=6, 0u16..=99).prop_map(|(c, n)| c * 100 + n)
}

/// Owned description of an attribute, turned into a borrowed [`Attribute`] for encoding.
#[derive(Debug, Clone)]
enum Owned {
    Addr(u16, SocketAddr),
    Text(u16, String),
    Bytes(u16, Vec<u8>),
    U32(u16, u32),
    Error(u16, String),
    AddrErr(AddressFamily, u16, String),
    Family(u16, AddressFamily),
    Channel(u16),
    EvenPort(bool),
    Transport(u8),
    DontFragment,
    Token([u8; 8]),
    Icmp(u8, u8, u32),
    Unknown(Vec<u16>),
    Algs(Vec<u16>),
}

fn owned() -> impl Strategy<Value = Owned> {
    let text = "[a-zA-Z0-9 äöü:/+=.-]{0,40}";
    prop_oneof![
        (
            prop_oneof![
                Just(attr::MAPPED_ADDRESS),
                Just(attr::XOR_MAPPED_ADDRESS),
                Just(attr::XOR_PEER_ADDRESS),
                Just(attr::XOR_RELAYED_ADDRESS),
                Just(attr::ALTERNATE_SERVER)
            ],
            addr()
        )
            .prop_map(|(t, a)| Owned::Addr(t, a)),
        (prop_oneof![Just(attr::USERNAME), Just(attr::REALM), Just(attr::NONCE), Just(attr::SOFTWARE)], text)
            .prop_map(|(t, s)| Owned::Text(t, s)),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(|d| Owned::Bytes(attr::DATA, d)),
        any::<[u8; 32]>().prop_map(|d| Owned::Bytes(attr::USERHASH, d.to_vec())),
        (prop_oneof![Just(attr::LIFETIME), Just(attr::PRIORITY)], any::<u32>()).prop_map(|(t, v)| Owned::U32(t, v)),
        (code(), text).prop_map(|(c, s)| Owned::Error(c, s)),
        (family(), code(), text).prop_map(|(f, c, s)| Owned::AddrErr(f, c, s)),
        (prop_oneof![Just(attr::REQUESTED_ADDRESS_FAMILY), Just(attr::ADDITIONAL_ADDRESS_FAMILY)], family())
            .prop_map(|(t, f)| Owned::Family(t, f)),
        (0x4000u16..=0x4fff).prop_map(Owned::Channel),
        any::<bool>().prop_map(Owned::EvenPort),
        any::<u8>().prop_map(Owned::Transport),
        Just(Owned::DontFragment),
        any::<[u8; 8]>().prop_map(Owned::Token),
        (any::<u8>(), any::<u8>(), any::<u32>()).prop_map(|(a, b, c)| Owned::Icmp(a, b, c)),
        proptest::collection::vec(any::<u16>(), 0..6).prop_map(Owned::Unknown),
        proptest::collection::vec(any::<u16>(), 0..4).prop_map(Owned::Algs),
    ]
}

fn as_attr(o: &Owned) -> Attribute<'_> {
    match o {
        Owned::Addr(t, a) => match *t {
            attr::MAPPED_ADDRESS => Attribute::MappedAddress(*a),
            attr::XOR_MAPPED_ADDRESS => Attribute::XorMappedAddress(*a),
            attr::XOR_PEER_ADDRESS => Attribute::XorPeerAddress(*a),
            attr::XOR_RELAYED_ADDRESS => Attribute::XorRelayedAddress(*a),
            _ => Attribute::AlternateServer(*a),
        },
        Owned::Text(t, s) => match *t {
            attr::USERNAME => Attribute::Username(s),
            attr::REALM => Attribute::Realm(s),
            attr::NONCE => Attribute::Nonce(s),
            _ => Attribute::Software(s),
        },
        Owned::Bytes(t, d) if *t == attr::DATA => Attribute::Data(d),
        Owned::Bytes(_, d) => Attribute::UserHash(d),
        Owned::U32(t, v) if *t == attr::LIFETIME => Attribute::Lifetime(*v),
        Owned::U32(_, v) => Attribute::Priority(*v),
        Owned::Error(c, s) => Attribute::ErrorCode(ErrorCode { code: *c, reason: Cow::Borrowed(s) }),
        Owned::AddrErr(f, c, s) => {
            Attribute::AddressErrorCode { family: *f, error: ErrorCode { code: *c, reason: Cow::Borrowed(s) } }
        }
        Owned::Family(t, f) if *t == attr::REQUESTED_ADDRESS_FAMILY => Attribute::RequestedAddressFamily(*f),
        Owned::Family(_, f) => Attribute::AdditionalAddressFamily(*f),
        Owned::Channel(c) => Attribute::ChannelNumber(*c),
        Owned::EvenPort(r) => Attribute::EvenPort(*r),
        Owned::Transport(p) => Attribute::RequestedTransport(*p),
        Owned::DontFragment => Attribute::DontFragment,
        Owned::Token(t) => Attribute::ReservationToken(*t),
        Owned::Icmp(a, b, c) => Attribute::Icmp { icmp_type: *a, icmp_code: *b, data: *c },
        Owned::Unknown(v) => Attribute::UnknownAttributes(Cow::Borrowed(v)),
        Owned::Algs(v) => Attribute::PasswordAlgorithms(Cow::Owned(
            v.iter().map(|a| PasswordAlgorithm { algorithm: *a, params: &[] }).collect(),
        )),
    }
}

proptest! {
    #[test]
    fn roundtrip(
        method in 0u16..0x1000,
        class in prop_oneof![Just(Class::Request), Just(Class::Indication), Just(Class::Success), Just(Class::Error)],
        txid in any::<[u8; 12]>(),
        attrs in proptest::collection::vec(owned(), 0..8),
        key in proptest::collection::vec(any::<u8>(), 1..40),
        integrity in 0u8..3,
        fingerprint in any::<bool>(),
    ) {
        let txid = TransactionId(txid);
        let mut b = MessageBuilder::new(class, Method(method), txid);
        for a in &attrs {
            b.add(&as_attr(a)).unwrap();
        }
        match integrity {
            1 => b.add_message_integrity(&key),
            2 => b.add_message_integrity_sha256(&key),
            _ => {}
        }
        if fingerprint {
            b.add_fingerprint();
        }
        let bytes = b.finish();
        prop_assert_eq!(frame_len(&bytes), Ok(Some(bytes.len())));
        let m = Message::decode(&bytes).unwrap();
        prop_assert_eq!(m.method(), Method(method));
        prop_assert_eq!(m.class(), class);
        prop_assert_eq!(m.transaction_id(), txid);
        let decoded: Vec<Attribute<'_>> = m.attributes().collect::<Result<_, _>>().unwrap();
        let want: Vec<Attribute<'_>> = attrs.iter().map(as_attr).collect();
        prop_assert_eq!(decoded, want);
        let kind = match integrity { 1 => Some(IntegrityKind::Sha1), 2 => Some(IntegrityKind::Sha256), _ => None };
        prop_assert_eq!(m.verify_integrity(&key), kind);
        if integrity != 0 {
            let mut other = key.clone();
            other[0] ^= 0xff;
            prop_assert_eq!(m.verify_integrity(&other), None);
        }
        prop_assert_eq!(m.check_fingerprint(), fingerprint.then_some(true));
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(m) = Message::decode(&bytes) {
            for a in m.attributes() { let _ = a; }
            let _ = m.verify_integrity(b"k");
            let _ = m.check_fingerprint();
        }
        let _ = ChannelData::parse(&bytes);
        let _ = frame_len(&bytes);
    }

    #[test]
    fn garbage_after_valid_header_never_panics(
        txid in any::<[u8; 12]>(),
        body in proptest::collection::vec(any::<u8>(), 0..40).prop_map(|mut v| { v.truncate(v.len() & !3); v }),
    ) {
        let mut bytes = vec![0, 1, 0, body.len() as u8, 0x21, 0x12, 0xa4, 0x42];
        bytes.extend_from_slice(&txid);
        bytes.extend_from_slice(&body);
        if let Ok(m) = Message::decode(&bytes) {
            for a in m.attributes() { let _ = a; }
            let _ = m.verify_integrity(b"k");
            let _ = m.check_fingerprint();
        }
    }

    #[test]
    fn channel_data_roundtrip(ch in 0x4000u16..=0x4fff, data in proptest::collection::vec(any::<u8>(), 0..300), pad in any::<bool>()) {
        let mut buf = [0u8; 400];
        let n = channel_data::write(ch, &data, &mut buf, pad).unwrap();
        prop_assert_eq!(n.is_multiple_of(4) || !pad, true);
        let cd = ChannelData::parse(&buf[..n]).unwrap();
        prop_assert_eq!(cd.channel, ch);
        prop_assert_eq!(cd.data, &data[..]);
        if pad { prop_assert_eq!(frame_len(&buf[..n]), Ok(Some(n))); }
    }
}

fn binding_with(attrs: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 1, 0, attrs.len() as u8, 0x21, 0x12, 0xa4, 0x42];
    v.extend_from_slice(&[7; 12]);
    v.extend_from_slice(attrs);
    v
}

#[test]
fn malformed_messages_are_errors() {
    let good = {
        let mut b = MessageBuilder::new(Class::Request, Method::BINDING, TransactionId([1; 12]));
        b.add(&Attribute::Software("abc")).unwrap();
        b.finish()
    };
    assert!(Message::decode(&good).is_ok());
    // truncated
    for n in 0..good.len() {
        assert!(Message::decode(&good[..n]).is_err(), "prefix {n}");
    }
    // trailing bytes
    let mut long = good.clone();
    long.extend_from_slice(&[0; 4]);
    assert_eq!(Message::decode(&long).unwrap_err(), Error::BadLength);
    // top bits set
    let mut b = good.clone();
    b[0] |= 0x80;
    assert_eq!(Message::decode(&b).unwrap_err(), Error::NotStun);
    // no magic cookie
    let mut b = good.clone();
    b[4] ^= 1;
    assert_eq!(Message::decode(&b).unwrap_err(), Error::BadMagicCookie);
    // length not a multiple of 4
    let mut b = good.clone();
    b[3] = 6;
    b.truncate(26);
    assert_eq!(Message::decode(&b).unwrap_err(), Error::BadLength);
    // huge attribute length
    let b = binding_with(&[0x80, 0x22, 0xff, 0xff, 1, 2, 3, 4]);
    assert_eq!(Message::decode(&b).unwrap_err(), Error::AttributeOverflow(0x8022));
    // attribute value not padded inside the message (length 3 with only 3 bytes before end)
    let b = binding_with(&[0x80, 0x22, 0x00, 0x05, 1, 2, 3, 4]);
    assert_eq!(Message::decode(&b).unwrap_err(), Error::AttributeOverflow(0x8022));
    // bad family in XOR-PEER-ADDRESS
    let b = binding_with(&[0x00, 0x12, 0x00, 0x08, 0, 3, 0, 1, 1, 2, 3, 4]);
    let m = Message::decode(&b).unwrap();
    assert!(matches!(m.get(attr::XOR_PEER_ADDRESS), Some(Err(Error::BadAttribute { .. }))));
    // IPv4 family with IPv6 length
    let mut v = vec![0x00, 0x20, 0x00, 0x14, 0, 1, 0, 1];
    v.extend_from_slice(&[0; 16]);
    let b = binding_with(&v);
    assert!(matches!(Message::decode(&b).unwrap().get(attr::XOR_MAPPED_ADDRESS), Some(Err(_))));
    // error code class out of range
    let b = binding_with(&[0x00, 0x09, 0x00, 0x04, 0, 0, 7, 1]);
    assert!(matches!(Message::decode(&b).unwrap().get(attr::ERROR_CODE), Some(Err(_))));
    // bad UTF-8 in USERNAME
    let b = binding_with(&[0x00, 0x06, 0x00, 0x02, 0xff, 0xfe, 0, 0]);
    assert!(matches!(Message::decode(&b).unwrap().get(attr::USERNAME), Some(Err(_))));
    // MESSAGE-INTEGRITY with a wrong length
    let b = binding_with(&[0x00, 0x08, 0x00, 0x04, 0, 0, 0, 0]);
    assert!(Message::decode(&b).is_err());
    // attribute after FINGERPRINT
    let b = binding_with(&[0x80, 0x28, 0x00, 0x04, 0, 0, 0, 0, 0x80, 0x22, 0, 0]);
    assert_eq!(Message::decode(&b).unwrap_err(), Error::AfterFingerprint);
}

#[test]
fn attributes_after_integrity_are_ignored() {
    let mut b = MessageBuilder::new(Class::Request, Method::ALLOCATE, TransactionId([2; 12]));
    b.add(&Attribute::Lifetime(600)).unwrap();
    b.add_message_integrity(b"key");
    let mut bytes = b.finish();
    bytes.extend_from_slice(&[0x00, 0x13, 0x00, 0x04, 1, 2, 3, 4]); // DATA after MI
    let len = (bytes.len() - 20) as u16;
    bytes[2..4].copy_from_slice(&len.to_be_bytes());
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(m.get_raw(attr::DATA), None);
    assert_eq!(m.verify_integrity(b"key"), Some(IntegrityKind::Sha1));
}

#[test]
fn unknown_comprehension_required_reported() {
    let mut b = MessageBuilder::new(Class::Request, Method::ALLOCATE, TransactionId([3; 12]));
    b.add_raw(0x7777, b"x").unwrap();
    b.add_raw(0xC001, b"optional").unwrap();
    b.add_raw(0x002A, &[0; 4]).unwrap(); // CONNECTION-ID (RFC 6062), not supported
    let bytes = b.finish();
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(m.unknown_comprehension_required(attr::is_known), vec![0x7777, 0x002A]);
}

#[test]
fn data_indication_writer_matches_builder() {
    let txid = TransactionId([9; 12]);
    for peer in ["1.2.3.4:5678", "[2001:db8::1]:9"] {
        let peer: SocketAddr = peer.parse().unwrap();
        let mut buf = [0u8; 300];
        let n = vienna_stun::message::write_data_indication(&txid, peer, b"hello", &mut buf).unwrap();
        let mut b = MessageBuilder::new(Class::Indication, Method::DATA, txid);
        b.add(&Attribute::XorPeerAddress(peer)).unwrap();
        b.add(&Attribute::Data(b"hello")).unwrap();
        assert_eq!(&buf[..n], &b.finish()[..]);
        assert_eq!(
            vienna_stun::message::write_data_indication(&txid, peer, b"hello", &mut buf[..20]),
            Err(Error::BufferTooSmall)
        );
    }
}

#[test]
fn oversized_attributes_are_refused_without_corrupting_the_message() {
    let mut b = MessageBuilder::new(Class::Indication, Method::SEND, TransactionId([4; 12]));
    b.add(&Attribute::Software("x")).unwrap();
    let big = vec![0u8; 70_000];
    assert_eq!(b.add(&Attribute::Data(&big)), Err(Error::TooLong));
    assert_eq!(b.add_raw(attr::DATA, &big), Err(Error::TooLong));
    let almost = vec![0u8; 65_535 - 8 - 4];
    assert_eq!(b.add(&Attribute::Data(&almost)), Err(Error::TooLong), "padding would overflow the length");
    let bytes = b.finish();
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(m.attributes().count(), 1);
}
