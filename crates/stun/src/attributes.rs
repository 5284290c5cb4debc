//! STUN and TURN attributes (RFC 8489 §14, RFC 8656 §18, RFC 8445 §16.1 for the ICE ones).
//!
//! [`Attribute::decode`] borrows strings and byte strings from the message; only the rare
//! list attributes (UNKNOWN-ATTRIBUTES, PASSWORD-ALGORITHMS) allocate. Attribute types the
//! decoder does not know come out as [`Attribute::Unknown`]. USERHASH is decoded but the relay
//! does not look users up by hash. ICMP is decoded (a server never sends it to a client in
//! this relay). ALTERNATE-DOMAIN is left as `Unknown`.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::Error;
use crate::message::{MAGIC_COOKIE, TransactionId};

/// MAPPED-ADDRESS.
pub const MAPPED_ADDRESS: u16 = 0x0001;
/// USERNAME.
pub const USERNAME: u16 = 0x0006;
/// MESSAGE-INTEGRITY.
pub const MESSAGE_INTEGRITY: u16 = 0x0008;
/// ERROR-CODE.
pub const ERROR_CODE: u16 = 0x0009;
/// UNKNOWN-ATTRIBUTES.
pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
/// CHANNEL-NUMBER.
pub const CHANNEL_NUMBER: u16 = 0x000C;
/// LIFETIME.
pub const LIFETIME: u16 = 0x000D;
/// XOR-PEER-ADDRESS.
pub const XOR_PEER_ADDRESS: u16 = 0x0012;
/// DATA.
pub const DATA: u16 = 0x0013;
/// REALM.
pub const REALM: u16 = 0x0014;
/// NONCE.
pub const NONCE: u16 = 0x0015;
/// XOR-RELAYED-ADDRESS.
pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
/// REQUESTED-ADDRESS-FAMILY.
pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
/// EVEN-PORT.
pub const EVEN_PORT: u16 = 0x0018;
/// REQUESTED-TRANSPORT.
pub const REQUESTED_TRANSPORT: u16 = 0x0019;
/// DONT-FRAGMENT.
pub const DONT_FRAGMENT: u16 = 0x001A;
/// MESSAGE-INTEGRITY-SHA256.
pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
/// PASSWORD-ALGORITHM.
pub const PASSWORD_ALGORITHM: u16 = 0x001D;
/// USERHASH.
pub const USERHASH: u16 = 0x001E;
/// XOR-MAPPED-ADDRESS.
pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// RESERVATION-TOKEN.
pub const RESERVATION_TOKEN: u16 = 0x0022;
/// PRIORITY (ICE).
pub const PRIORITY: u16 = 0x0024;
/// USE-CANDIDATE (ICE).
pub const USE_CANDIDATE: u16 = 0x0025;
/// ADDITIONAL-ADDRESS-FAMILY.
pub const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
/// ADDRESS-ERROR-CODE.
pub const ADDRESS_ERROR_CODE: u16 = 0x8001;
/// PASSWORD-ALGORITHMS.
pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
/// ALTERNATE-DOMAIN.
pub const ALTERNATE_DOMAIN: u16 = 0x8003;
/// ICMP.
pub const ICMP: u16 = 0x8004;
/// SOFTWARE.
pub const SOFTWARE: u16 = 0x8022;
/// ALTERNATE-SERVER.
pub const ALTERNATE_SERVER: u16 = 0x8023;
/// FINGERPRINT.
pub const FINGERPRINT: u16 = 0x8028;
/// ICE-CONTROLLED.
pub const ICE_CONTROLLED: u16 = 0x8029;
/// ICE-CONTROLLING.
pub const ICE_CONTROLLING: u16 = 0x802A;

/// Whether [`Attribute::decode`] understands `typ` (used to find unknown
/// comprehension-required attributes).
pub fn is_known(typ: u16) -> bool {
    matches!(
        typ,
        MAPPED_ADDRESS
            | USERNAME
            | MESSAGE_INTEGRITY
            | ERROR_CODE
            | UNKNOWN_ATTRIBUTES
            | CHANNEL_NUMBER
            | LIFETIME
            | XOR_PEER_ADDRESS
            | DATA
            | REALM
            | NONCE
            | XOR_RELAYED_ADDRESS
            | REQUESTED_ADDRESS_FAMILY
            | EVEN_PORT
            | REQUESTED_TRANSPORT
            | DONT_FRAGMENT
            | MESSAGE_INTEGRITY_SHA256
            | PASSWORD_ALGORITHM
            | USERHASH
            | XOR_MAPPED_ADDRESS
            | RESERVATION_TOKEN
            | PRIORITY
            | USE_CANDIDATE
            | ADDITIONAL_ADDRESS_FAMILY
            | ADDRESS_ERROR_CODE
            | PASSWORD_ALGORITHMS
            | ICMP
            | SOFTWARE
            | ALTERNATE_SERVER
            | FINGERPRINT
            | ICE_CONTROLLED
            | ICE_CONTROLLING
    )
}

/// Address family as carried in address attributes and (REQUESTED|ADDITIONAL)-ADDRESS-FAMILY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// IPv4 (0x01).
    V4,
    /// IPv6 (0x02).
    V6,
}

impl AddressFamily {
    /// Wire value.
    pub fn to_byte(self) -> u8 {
        match self {
            AddressFamily::V4 => 1,
            AddressFamily::V6 => 2,
        }
    }
    /// From wire value.
    pub fn from_byte(b: u8) -> Option<AddressFamily> {
        match b {
            1 => Some(AddressFamily::V4),
            2 => Some(AddressFamily::V6),
            _ => None,
        }
    }
    /// Family of an address.
    pub fn of(addr: &SocketAddr) -> AddressFamily {
        if addr.is_ipv4() { AddressFamily::V4 } else { AddressFamily::V6 }
    }
}

/// An error code: class*100 + number, 300..=699, with a reason phrase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// Numeric code (300..=699).
    pub code: u16,
    /// Reason phrase.
    pub reason: Cow<'a, str>,
}

/// One entry of PASSWORD-ALGORITHMS or the value of PASSWORD-ALGORITHM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordAlgorithm<'a> {
    /// Algorithm number (1 = MD5, 2 = SHA-256).
    pub algorithm: u16,
    /// Algorithm parameters (empty for MD5 and SHA-256).
    pub params: &'a [u8],
}

/// A decoded attribute, borrowing from the message where it can.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attribute<'a> {
    /// MAPPED-ADDRESS.
    MappedAddress(SocketAddr),
    /// XOR-MAPPED-ADDRESS.
    XorMappedAddress(SocketAddr),
    /// USERNAME (at most 513 bytes).
    Username(&'a str),
    /// USERHASH (32 bytes).
    UserHash(&'a [u8]),
    /// MESSAGE-INTEGRITY (20 bytes).
    MessageIntegrity(&'a [u8]),
    /// MESSAGE-INTEGRITY-SHA256 (16 to 32 bytes).
    MessageIntegritySha256(&'a [u8]),
    /// FINGERPRINT value as sent.
    Fingerprint(u32),
    /// ERROR-CODE.
    ErrorCode(ErrorCode<'a>),
    /// REALM.
    Realm(&'a str),
    /// NONCE.
    Nonce(&'a str),
    /// PASSWORD-ALGORITHMS.
    PasswordAlgorithms(Cow<'a, [PasswordAlgorithm<'a>]>),
    /// PASSWORD-ALGORITHM.
    PasswordAlgorithm(PasswordAlgorithm<'a>),
    /// UNKNOWN-ATTRIBUTES.
    UnknownAttributes(Cow<'a, [u16]>),
    /// SOFTWARE.
    Software(&'a str),
    /// ALTERNATE-SERVER.
    AlternateServer(SocketAddr),
    /// CHANNEL-NUMBER.
    ChannelNumber(u16),
    /// LIFETIME in seconds.
    Lifetime(u32),
    /// XOR-PEER-ADDRESS.
    XorPeerAddress(SocketAddr),
    /// DATA.
    Data(&'a [u8]),
    /// XOR-RELAYED-ADDRESS.
    XorRelayedAddress(SocketAddr),
    /// REQUESTED-ADDRESS-FAMILY.
    RequestedAddressFamily(AddressFamily),
    /// ADDITIONAL-ADDRESS-FAMILY.
    AdditionalAddressFamily(AddressFamily),
    /// ADDRESS-ERROR-CODE.
    AddressErrorCode {
        /// Family the error is about.
        family: AddressFamily,
        /// The error.
        error: ErrorCode<'a>,
    },
    /// EVEN-PORT with its R (reserve next port) bit.
    EvenPort(bool),
    /// REQUESTED-TRANSPORT protocol number (17 = UDP).
    RequestedTransport(u8),
    /// DONT-FRAGMENT.
    DontFragment,
    /// RESERVATION-TOKEN.
    ReservationToken([u8; 8]),
    /// ICMP (RFC 8656 §18.13).
    Icmp {
        /// ICMP type.
        icmp_type: u8,
        /// ICMP code.
        icmp_code: u8,
        /// Error data.
        data: u32,
    },
    /// PRIORITY (ICE).
    Priority(u32),
    /// USE-CANDIDATE (ICE).
    UseCandidate,
    /// ICE-CONTROLLED tie-breaker.
    IceControlled(u64),
    /// ICE-CONTROLLING tie-breaker.
    IceControlling(u64),
    /// Any other attribute.
    Unknown {
        /// Type.
        typ: u16,
        /// Raw value.
        value: &'a [u8],
    },
}

fn bad(typ: u16, reason: &'static str) -> Error {
    Error::BadAttribute { typ, reason }
}

fn text(typ: u16, v: &[u8], max: usize) -> Result<&str, Error> {
    if v.len() > max {
        return Err(bad(typ, "text too long"));
    }
    std::str::from_utf8(v).map_err(|_| bad(typ, "not UTF-8"))
}

fn u32_of(typ: u16, v: &[u8]) -> Result<u32, Error> {
    let a: [u8; 4] = v.try_into().map_err(|_| bad(typ, "expected 4 bytes"))?;
    Ok(u32::from_be_bytes(a))
}

fn u64_of(typ: u16, v: &[u8]) -> Result<u64, Error> {
    let a: [u8; 8] = v.try_into().map_err(|_| bad(typ, "expected 8 bytes"))?;
    Ok(u64::from_be_bytes(a))
}

fn family_of(typ: u16, v: &[u8]) -> Result<AddressFamily, Error> {
    if v.len() != 4 {
        return Err(bad(typ, "expected 4 bytes"));
    }
    AddressFamily::from_byte(v[0]).ok_or(bad(typ, "bad address family"))
}

fn error_code(typ: u16, v: &[u8]) -> Result<ErrorCode<'_>, Error> {
    if v.len() < 4 {
        return Err(bad(typ, "error code too short"));
    }
    let class = u16::from(v[2] & 0x07);
    let number = u16::from(v[3]);
    if !(3..=6).contains(&class) || number > 99 {
        return Err(bad(typ, "error code out of range"));
    }
    let reason = text(typ, &v[4..], 763)?;
    Ok(ErrorCode { code: class * 100 + number, reason: Cow::Borrowed(reason) })
}

/// Decode a (non-XOR) address value.
pub fn decode_address(typ: u16, v: &[u8]) -> Result<SocketAddr, Error> {
    if v.len() < 4 {
        return Err(bad(typ, "address too short"));
    }
    let port = u16::from_be_bytes([v[2], v[3]]);
    match (v[1], v.len()) {
        (1, 8) => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(v[4], v[5], v[6], v[7])), port)),
        (2, 20) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&v[4..20]);
            Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port))
        }
        (1 | 2, _) => Err(bad(typ, "address length does not match family")),
        _ => Err(bad(typ, "bad address family")),
    }
}

/// Decode an XOR-ed address value (RFC 8489 §14.2).
pub fn decode_xor_address(typ: u16, v: &[u8], txid: &TransactionId) -> Result<SocketAddr, Error> {
    let a = decode_address(typ, v)?;
    Ok(xor_address(a, txid))
}

/// Apply (or undo) the XOR of RFC 8489 §14.2 to an address.
pub fn xor_address(a: SocketAddr, txid: &TransactionId) -> SocketAddr {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = a.port() ^ (MAGIC_COOKIE >> 16) as u16;
    match a.ip() {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            let x = [o[0] ^ cookie[0], o[1] ^ cookie[1], o[2] ^ cookie[2], o[3] ^ cookie[3]];
            SocketAddr::new(IpAddr::V4(Ipv4Addr::from(x)), port)
        }
        IpAddr::V6(ip) => {
            let mut o = ip.octets();
            for (i, b) in o.iter_mut().enumerate() {
                *b ^= if i < 4 { cookie[i] } else { txid.0[i - 4] };
            }
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port)
        }
    }
}

fn encode_address(a: SocketAddr, out: &mut Vec<u8>) {
    out.push(0);
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(1);
            out.extend_from_slice(&a.port().to_be_bytes());
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(2);
            out.extend_from_slice(&a.port().to_be_bytes());
            out.extend_from_slice(&ip.octets());
        }
    }
}

/// Write an XOR-ed address value into `out` (8 bytes for IPv4, 20 for IPv6).
pub fn write_xor_address(a: SocketAddr, txid: &TransactionId, out: &mut [u8]) {
    let x = xor_address(a, txid);
    out[0] = 0;
    out[2..4].copy_from_slice(&x.port().to_be_bytes());
    match x.ip() {
        IpAddr::V4(ip) => {
            out[1] = 1;
            out[4..8].copy_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out[1] = 2;
            out[4..20].copy_from_slice(&ip.octets());
        }
    }
}

fn encode_error(e: &ErrorCode<'_>, first: u8, out: &mut Vec<u8>) {
    out.push(first);
    out.push(0);
    out.push(((e.code / 100) & 0x07) as u8);
    out.push((e.code % 100) as u8);
    out.extend_from_slice(e.reason.as_bytes());
}

fn password_algorithm(typ: u16, v: &[u8]) -> Result<(PasswordAlgorithm<'_>, usize), Error> {
    if v.len() < 4 {
        return Err(bad(typ, "password algorithm too short"));
    }
    let algorithm = u16::from_be_bytes([v[0], v[1]]);
    let plen = usize::from(u16::from_be_bytes([v[2], v[3]]));
    let params = v.get(4..4 + plen).ok_or(bad(typ, "password algorithm params overflow"))?;
    let used = (4 + plen + 3) & !3;
    Ok((PasswordAlgorithm { algorithm, params }, used.min(v.len())))
}

impl<'a> Attribute<'a> {
    /// Decode the value of an attribute of type `typ`.
    pub fn decode(typ: u16, v: &'a [u8], txid: &TransactionId) -> Result<Attribute<'a>, Error> {
        Ok(match typ {
            MAPPED_ADDRESS => Attribute::MappedAddress(decode_address(typ, v)?),
            XOR_MAPPED_ADDRESS => Attribute::XorMappedAddress(decode_xor_address(typ, v, txid)?),
            XOR_PEER_ADDRESS => Attribute::XorPeerAddress(decode_xor_address(typ, v, txid)?),
            XOR_RELAYED_ADDRESS => Attribute::XorRelayedAddress(decode_xor_address(typ, v, txid)?),
            ALTERNATE_SERVER => Attribute::AlternateServer(decode_address(typ, v)?),
            USERNAME => Attribute::Username(text(typ, v, 513)?),
            USERHASH => {
                if v.len() != 32 {
                    return Err(bad(typ, "USERHASH must be 32 bytes"));
                }
                Attribute::UserHash(v)
            }
            MESSAGE_INTEGRITY => {
                if v.len() != 20 {
                    return Err(bad(typ, "MESSAGE-INTEGRITY must be 20 bytes"));
                }
                Attribute::MessageIntegrity(v)
            }
            MESSAGE_INTEGRITY_SHA256 => {
                if !(16..=32).contains(&v.len()) || !v.len().is_multiple_of(4) {
                    return Err(bad(typ, "MESSAGE-INTEGRITY-SHA256 length"));
                }
                Attribute::MessageIntegritySha256(v)
            }
            FINGERPRINT => Attribute::Fingerprint(u32_of(typ, v)?),
            ERROR_CODE => Attribute::ErrorCode(error_code(typ, v)?),
            REALM => Attribute::Realm(text(typ, v, 763)?),
            NONCE => Attribute::Nonce(text(typ, v, 763)?),
            SOFTWARE => Attribute::Software(text(typ, v, 763)?),
            PASSWORD_ALGORITHM => {
                let (pa, used) = password_algorithm(typ, v)?;
                if used != v.len() {
                    return Err(bad(typ, "trailing bytes"));
                }
                Attribute::PasswordAlgorithm(pa)
            }
            PASSWORD_ALGORITHMS => {
                let mut list = Vec::new();
                let mut rest = v;
                while !rest.is_empty() {
                    let (pa, used) = password_algorithm(typ, rest)?;
                    list.push(pa);
                    rest = &rest[used..];
                }
                Attribute::PasswordAlgorithms(Cow::Owned(list))
            }
            UNKNOWN_ATTRIBUTES => {
                if !v.len().is_multiple_of(2) {
                    return Err(bad(typ, "odd length"));
                }
                Attribute::UnknownAttributes(Cow::Owned(
                    v.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect(),
                ))
            }
            CHANNEL_NUMBER => Attribute::ChannelNumber((u32_of(typ, v)? >> 16) as u16),
            LIFETIME => Attribute::Lifetime(u32_of(typ, v)?),
            DATA => Attribute::Data(v),
            REQUESTED_ADDRESS_FAMILY => Attribute::RequestedAddressFamily(family_of(typ, v)?),
            ADDITIONAL_ADDRESS_FAMILY => Attribute::AdditionalAddressFamily(family_of(typ, v)?),
            ADDRESS_ERROR_CODE => {
                let family = AddressFamily::from_byte(*v.first().ok_or(bad(typ, "empty"))?)
                    .ok_or(bad(typ, "bad address family"))?;
                Attribute::AddressErrorCode { family, error: error_code(typ, v)? }
            }
            EVEN_PORT => match v {
                [b] => Attribute::EvenPort(b & 0x80 != 0),
                _ => return Err(bad(typ, "EVEN-PORT must be 1 byte")),
            },
            REQUESTED_TRANSPORT => Attribute::RequestedTransport((u32_of(typ, v)? >> 24) as u8),
            DONT_FRAGMENT => {
                if !v.is_empty() {
                    return Err(bad(typ, "DONT-FRAGMENT must be empty"));
                }
                Attribute::DontFragment
            }
            RESERVATION_TOKEN => Attribute::ReservationToken(v.try_into().map_err(|_| bad(typ, "expected 8 bytes"))?),
            ICMP => {
                if v.len() != 8 {
                    return Err(bad(typ, "ICMP must be 8 bytes"));
                }
                Attribute::Icmp { icmp_type: v[2], icmp_code: v[3], data: u32::from_be_bytes([v[4], v[5], v[6], v[7]]) }
            }
            PRIORITY => Attribute::Priority(u32_of(typ, v)?),
            USE_CANDIDATE => {
                if !v.is_empty() {
                    return Err(bad(typ, "USE-CANDIDATE must be empty"));
                }
                Attribute::UseCandidate
            }
            ICE_CONTROLLED => Attribute::IceControlled(u64_of(typ, v)?),
            ICE_CONTROLLING => Attribute::IceControlling(u64_of(typ, v)?),
            _ => Attribute::Unknown { typ, value: v },
        })
    }

    /// The attribute type.
    pub fn typ(&self) -> u16 {
        match self {
            Attribute::MappedAddress(_) => MAPPED_ADDRESS,
            Attribute::XorMappedAddress(_) => XOR_MAPPED_ADDRESS,
            Attribute::Username(_) => USERNAME,
            Attribute::UserHash(_) => USERHASH,
            Attribute::MessageIntegrity(_) => MESSAGE_INTEGRITY,
            Attribute::MessageIntegritySha256(_) => MESSAGE_INTEGRITY_SHA256,
            Attribute::Fingerprint(_) => FINGERPRINT,
            Attribute::ErrorCode(_) => ERROR_CODE,
            Attribute::Realm(_) => REALM,
            Attribute::Nonce(_) => NONCE,
            Attribute::PasswordAlgorithms(_) => PASSWORD_ALGORITHMS,
            Attribute::PasswordAlgorithm(_) => PASSWORD_ALGORITHM,
            Attribute::UnknownAttributes(_) => UNKNOWN_ATTRIBUTES,
            Attribute::Software(_) => SOFTWARE,
            Attribute::AlternateServer(_) => ALTERNATE_SERVER,
            Attribute::ChannelNumber(_) => CHANNEL_NUMBER,
            Attribute::Lifetime(_) => LIFETIME,
            Attribute::XorPeerAddress(_) => XOR_PEER_ADDRESS,
            Attribute::Data(_) => DATA,
            Attribute::XorRelayedAddress(_) => XOR_RELAYED_ADDRESS,
            Attribute::RequestedAddressFamily(_) => REQUESTED_ADDRESS_FAMILY,
            Attribute::AdditionalAddressFamily(_) => ADDITIONAL_ADDRESS_FAMILY,
            Attribute::AddressErrorCode { .. } => ADDRESS_ERROR_CODE,
            Attribute::EvenPort(_) => EVEN_PORT,
            Attribute::RequestedTransport(_) => REQUESTED_TRANSPORT,
            Attribute::DontFragment => DONT_FRAGMENT,
            Attribute::ReservationToken(_) => RESERVATION_TOKEN,
            Attribute::Icmp { .. } => ICMP,
            Attribute::Priority(_) => PRIORITY,
            Attribute::UseCandidate => USE_CANDIDATE,
            Attribute::IceControlled(_) => ICE_CONTROLLED,
            Attribute::IceControlling(_) => ICE_CONTROLLING,
            Attribute::Unknown { typ, .. } => *typ,
        }
    }

    /// Append the encoded value (without type, length or padding) to `out`.
    pub fn encode_value(&self, txid: &TransactionId, out: &mut Vec<u8>) {
        match self {
            Attribute::MappedAddress(a) | Attribute::AlternateServer(a) => encode_address(*a, out),
            Attribute::XorMappedAddress(a) | Attribute::XorPeerAddress(a) | Attribute::XorRelayedAddress(a) => {
                encode_address(xor_address(*a, txid), out)
            }
            Attribute::Username(s) | Attribute::Realm(s) | Attribute::Nonce(s) | Attribute::Software(s) => {
                out.extend_from_slice(s.as_bytes())
            }
            Attribute::UserHash(b)
            | Attribute::MessageIntegrity(b)
            | Attribute::MessageIntegritySha256(b)
            | Attribute::Data(b) => out.extend_from_slice(b),
            Attribute::Fingerprint(v) | Attribute::Lifetime(v) | Attribute::Priority(v) => {
                out.extend_from_slice(&v.to_be_bytes())
            }
            Attribute::ErrorCode(e) => encode_error(e, 0, out),
            Attribute::AddressErrorCode { family, error } => encode_error(error, family.to_byte(), out),
            Attribute::PasswordAlgorithm(p) => encode_password_algorithm(p, out),
            Attribute::PasswordAlgorithms(list) => {
                for p in list.iter() {
                    encode_password_algorithm(p, out);
                }
            }
            Attribute::UnknownAttributes(list) => {
                for t in list.iter() {
                    out.extend_from_slice(&t.to_be_bytes());
                }
            }
            Attribute::ChannelNumber(c) => {
                out.extend_from_slice(&c.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            Attribute::RequestedAddressFamily(f) | Attribute::AdditionalAddressFamily(f) => {
                out.extend_from_slice(&[f.to_byte(), 0, 0, 0])
            }
            Attribute::EvenPort(r) => out.push(if *r { 0x80 } else { 0 }),
            Attribute::RequestedTransport(p) => out.extend_from_slice(&[*p, 0, 0, 0]),
            Attribute::DontFragment | Attribute::UseCandidate => {}
            Attribute::ReservationToken(t) => out.extend_from_slice(t),
            Attribute::Icmp { icmp_type, icmp_code, data } => {
                out.extend_from_slice(&[0, 0, *icmp_type, *icmp_code]);
                out.extend_from_slice(&data.to_be_bytes());
            }
            Attribute::IceControlled(v) | Attribute::IceControlling(v) => out.extend_from_slice(&v.to_be_bytes()),
            Attribute::Unknown { value, .. } => out.extend_from_slice(value),
        }
    }
}

fn encode_password_algorithm(p: &PasswordAlgorithm<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(&p.algorithm.to_be_bytes());
    out.extend_from_slice(&(p.params.len() as u16).to_be_bytes());
    out.extend_from_slice(p.params);
    let pad = (4 - p.params.len() % 4) % 4;
    out.extend_from_slice(&[0u8; 3][..pad]);
}
