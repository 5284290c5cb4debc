//! MS-TURN wire format ([MS-TURN] §2.1, §2.2; research notes `media-protocols.md` §1).
//!
//! MS-TURN is not RFC 5766 TURN: its header has a 128-bit transaction id and no magic cookie, the
//! cookie 0x72C64BC6 is the first *attribute* (MAGIC-COOKIE, 0x000F), NONCE is 0x0014 and REALM
//! 0x0015 (swapped against RFC 5389), XOR-MAPPED-ADDRESS is 0x8020 and XORed with the transaction
//! id, and MESSAGE-INTEGRITY hashes the message zero-padded to a multiple of 64 bytes (RFC 3489
//! style), with HMAC-SHA256 and a key derivation of its own from MS-Version 3 on.
//!
//! * [`is_msturn`] tells an MS-TURN control message from anything else on a shared port (the
//!   cookie attribute at bytes 20..28).
//! * [`Message::decode`] is a zero-copy view. Attribute values are accepted both padded to 4 bytes
//!   and unpadded (libnice and OfficeSIP send them unpadded, turner pads): the decoder walks the
//!   message unpadded first, then padded, and remembers which form fitted ([`Message::padded`]) so
//!   an answer can use the same form.
//! * [`Builder`] writes control messages; [`write_data_indication`] writes a Data Indication into
//!   a caller's buffer without allocating (the relay's peer-to-client path), and
//!   [`write_send_request`] a signed Send request (a client's data path, as a load generator sends it).
//! * [`key_v1`] and [`key_v3`] are the two key derivations; [`mac`] the padded HMAC of both.
//! * [`tcp_frame`] cuts the TCP stream framing of §2.1.4 (`type, 0, length16`: 0x02 control, 0x03
//!   end-to-end data), and [`pseudo_tls_client_hello`] / [`PSEUDO_TLS_SERVER_HELLO`] are the fixed
//!   fake TLS handshake of §2.1.1 that precedes it on port 443.
//!
//! Left out: MS-Version 5/6 multiplexed TURN (MULTIPLEXED-TURN-SESSION-ID is parsed as opaque bytes
//! only), and the Shared Secret method (which the specification forbids).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

use crate::Error;
use crate::integrity::ct_eq;

/// The MS-TURN magic cookie, carried as the first attribute.
pub const MAGIC_COOKIE: u32 = 0x72C6_4BC6;
/// The MAGIC-COOKIE attribute as it appears on the wire, at bytes 20..28 of every message.
pub const COOKIE_ATTRIBUTE: [u8; 8] = [0x00, 0x0F, 0x00, 0x04, 0x72, 0xC6, 0x4B, 0xC6];
/// Length of the MS-TURN header.
pub const HEADER_LEN: usize = 20;
/// Smallest message: header and MAGIC-COOKIE.
pub const MIN_LEN: usize = HEADER_LEN + COOKIE_ATTRIBUTE.len();

/// Message types ([MS-TURN] §2.2.1). The method/class bit layout of RFC 5389 does not hold:
/// 0x0115 is an indication although its class bits read "error".
pub mod types {
    /// Allocate request (also refreshes, and with LIFETIME 0 deallocates).
    pub const ALLOCATE_REQUEST: u16 = 0x0003;
    /// Allocate response.
    pub const ALLOCATE_RESPONSE: u16 = 0x0103;
    /// Allocate error response.
    pub const ALLOCATE_ERROR: u16 = 0x0113;
    /// Send request: authenticated, never answered.
    pub const SEND_REQUEST: u16 = 0x0004;
    /// Data Indication (server to client).
    pub const DATA_INDICATION: u16 = 0x0115;
    /// Set Active Destination request.
    pub const SET_ACTIVE_DESTINATION_REQUEST: u16 = 0x0006;
    /// Set Active Destination response.
    pub const SET_ACTIVE_DESTINATION_RESPONSE: u16 = 0x0106;
    /// Set Active Destination error response.
    pub const SET_ACTIVE_DESTINATION_ERROR: u16 = 0x0116;

    /// The error response type of a request type, if it has one.
    pub fn error_of(request: u16) -> Option<u16> {
        match request {
            ALLOCATE_REQUEST => Some(ALLOCATE_ERROR),
            SET_ACTIVE_DESTINATION_REQUEST => Some(SET_ACTIVE_DESTINATION_ERROR),
            _ => None,
        }
    }
}

/// Attribute types ([MS-TURN] §2.2.2, MS-TURNBWM §2.2, MS-ICE2), named as the specifications
/// name them.
pub mod attr {
    /// MAPPED-ADDRESS (in an Allocate response: the relayed address).
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME (opaque bytes; an MRAS token is 52 or 56 binary bytes).
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY (20 bytes HMAC-SHA1, or 32 bytes HMAC-SHA256 from MS-Version 3).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES.
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// LIFETIME (seconds).
    pub const LIFETIME: u16 = 0x000D;
    /// ALTERNATE-SERVER.
    pub const ALTERNATE_SERVER: u16 = 0x000E;
    /// MAGIC-COOKIE, always first.
    pub const MAGIC_COOKIE: u16 = 0x000F;
    /// BANDWIDTH (kbps).
    pub const BANDWIDTH: u16 = 0x0010;
    /// DESTINATION-ADDRESS (the peer of a Send or Set Active Destination request).
    pub const DESTINATION_ADDRESS: u16 = 0x0011;
    /// REMOTE-ADDRESS (the peer of a Data Indication).
    pub const REMOTE_ADDRESS: u16 = 0x0012;
    /// DATA.
    pub const DATA: u16 = 0x0013;
    /// NONCE (0x0014 in MS-TURN; RFC 5389 has REALM here).
    pub const NONCE: u16 = 0x0014;
    /// REALM (0x0015 in MS-TURN; RFC 5389 has NONCE here).
    pub const REALM: u16 = 0x0015;
    /// REQUESTED-ADDRESS-FAMILY (MS-Version 4).
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    /// MS-VERSION.
    pub const MS_VERSION: u16 = 0x8008;
    /// XOR-MAPPED-ADDRESS (XORed with the transaction id).
    pub const XOR_MAPPED_ADDRESS: u16 = 0x8020;
    /// MS-ALTERNATE-HOST-NAME.
    pub const MS_ALTERNATE_HOST_NAME: u16 = 0x8032;
    /// APP-ID.
    pub const APP_ID: u16 = 0x8037;
    /// SECURE-TAG.
    pub const SECURE_TAG: u16 = 0x8039;
    /// MS-SEQUENCE-NUMBER (connection id and sequence number).
    pub const MS_SEQUENCE_NUMBER: u16 = 0x8050;
    /// Candidate Identifier (MS-ICE2).
    pub const CANDIDATE_IDENTIFIER: u16 = 0x8054;
    /// MS-SERVICE-QUALITY.
    pub const MS_SERVICE_QUALITY: u16 = 0x8055;
    /// Bandwidth Admission Control Message (MS-TURNBWM).
    pub const BANDWIDTH_ADMISSION_CONTROL_MESSAGE: u16 = 0x8056;
    /// Bandwidth Reservation Identifier (MS-TURNBWM).
    pub const BANDWIDTH_RESERVATION_IDENTIFIER: u16 = 0x8057;
    /// Bandwidth Reservation Amount (MS-TURNBWM).
    pub const BANDWIDTH_RESERVATION_AMOUNT: u16 = 0x8058;
    /// Remote Site Address (MS-TURNBWM).
    pub const REMOTE_SITE_ADDRESS: u16 = 0x8059;
    /// Remote Relay Site Address (MS-TURNBWM).
    pub const REMOTE_RELAY_SITE_ADDRESS: u16 = 0x805A;
    /// Local Site Address (MS-TURNBWM).
    pub const LOCAL_SITE_ADDRESS: u16 = 0x805B;
    /// Local Relay Site Address (MS-TURNBWM).
    pub const LOCAL_RELAY_SITE_ADDRESS: u16 = 0x805C;
    /// Remote Site Address Response (MS-TURNBWM).
    pub const REMOTE_SITE_ADDRESS_RESPONSE: u16 = 0x805D;
    /// Remote Relay Site Address Response (MS-TURNBWM).
    pub const REMOTE_RELAY_SITE_ADDRESS_RESPONSE: u16 = 0x805E;
    /// Local Site Address Response (MS-TURNBWM).
    pub const LOCAL_SITE_ADDRESS_RESPONSE: u16 = 0x805F;
    /// Local Relay Site Address Response (MS-TURNBWM).
    pub const LOCAL_RELAY_SITE_ADDRESS_RESPONSE: u16 = 0x8060;
    /// SIP Dialog Identifier (MS-TURNBWM).
    pub const SIP_DIALOG_IDENTIFIER: u16 = 0x8061;
    /// SIP Call Identifier (MS-TURNBWM).
    pub const SIP_CALL_IDENTIFIER: u16 = 0x8062;
    /// Location Profile (MS-TURNBWM).
    pub const LOCATION_PROFILE: u16 = 0x8068;
    /// MS-Implementation-Version (MS-ICE2).
    pub const MS_IMPLEMENTATION_VERSION: u16 = 0x8070;
    /// MS-ALTERNATE-MAPPED-ADDRESS (the second family's relayed address, MS-Version 4).
    pub const MS_ALTERNATE_MAPPED_ADDRESS: u16 = 0x8090;
    /// MULTIPLEXED-TURN-SESSION-ID (MS-Version 5/6).
    pub const MULTIPLEXED_TURN_SESSION_ID: u16 = 0x8095;

    /// Whether a comprehension-required type (< 0x8000) is one MS-TURN defines; the relay answers
    /// 420 for the others.
    pub fn is_known_required(typ: u16) -> bool {
        matches!(
            typ,
            MAPPED_ADDRESS
                | USERNAME
                | MESSAGE_INTEGRITY
                | ERROR_CODE
                | UNKNOWN_ATTRIBUTES
                | LIFETIME
                | ALTERNATE_SERVER
                | MAGIC_COOKIE
                | BANDWIDTH
                | DESTINATION_ADDRESS
                | REMOTE_ADDRESS
                | DATA
                | NONCE
                | REALM
                | REQUESTED_ADDRESS_FAMILY
        )
    }
}

/// Whether `bytes` is an MS-TURN control message: top two bits zero and the MAGIC-COOKIE attribute
/// at bytes 20..28. RFC 5389 STUN has 0x2112A442 at bytes 4..8 instead; raw media does not match.
#[inline]
pub fn is_msturn(bytes: &[u8]) -> bool {
    bytes.len() >= MIN_LEN && bytes[0] & 0xC0 == 0 && bytes[20..28] == COOKIE_ATTRIBUTE
}

/// The 128-bit transaction id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TransactionId(pub [u8; 16]);

/// Which HMAC protects a message: MS-Version 1 and 2 use SHA-1, 3 and later SHA-256.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hash {
    /// HMAC-SHA1, 20 bytes, key [`key_v1`].
    Sha1,
    /// HMAC-SHA256, 32 bytes, key [`key_v3`].
    Sha256,
}

impl Hash {
    /// Length of the MESSAGE-INTEGRITY value.
    pub fn len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
        }
    }
    /// Never empty (for clippy's `len` rule).
    pub fn is_empty(self) -> bool {
        false
    }
    /// The hash an MS-Version asks for.
    pub fn for_version(version: u32) -> Hash {
        if version >= 3 { Hash::Sha256 } else { Hash::Sha1 }
    }
}

/// MS-Version 1/2 key: MD5(username ":" realm ":" password) over the raw bytes (for MRAS
/// credentials, the base64-decoded username and password).
pub fn key_v1(username: &[u8], realm: &[u8], password: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(username);
    h.update(b":");
    h.update(realm);
    h.update(b":");
    h.update(password);
    h.finalize().into()
}

/// MS-Version 3+ key: K = HMAC-SHA256(nonce, password), key = HMAC-SHA256(K, 0x01 "TURN" 0x00
/// username realm 0x00 0x00 0x01 0x00) (an SP 800-108 counter-mode derivation, 256 bits).
pub fn key_v3(username: &[u8], realm: &[u8], nonce: &[u8], password: &[u8]) -> [u8; 32] {
    let k = crate::integrity::hmac_sha256(nonce, &[password]);
    crate::integrity::hmac_sha256(&k, &[&[0x01], b"TURN", &[0x00], username, realm, &[0x00, 0x00, 0x01, 0x00]])
}

const ZEROS: [u8; 64] = [0; 64];

/// MESSAGE-INTEGRITY over `before` (the message up to the MI attribute, header included) for an MI
/// of `hash`: the header's length field is rewritten to end after the MI, and the input is
/// zero-padded to a multiple of 64 bytes. Returns 32 bytes; SHA-1 uses the first 20.
pub fn mac(hash: Hash, key: &[u8], before: &[u8]) -> [u8; 32] {
    let body_len = (before.len() + 4 + hash.len() - HEADER_LEN) as u16;
    let len = body_len.to_be_bytes();
    let pad = &ZEROS[..(64 - before.len() % 64) % 64];
    let parts: [&[u8]; 4] = [&before[..2], &len, &before[4..], pad];
    match hash {
        Hash::Sha1 => {
            let mut out = [0u8; 32];
            if let Ok(mut m) = <Hmac<Sha1> as KeyInit>::new_from_slice(key) {
                for p in parts {
                    m.update(p);
                }
                out[..20].copy_from_slice(&m.finalize().into_bytes());
            }
            out
        }
        Hash::Sha256 => crate::integrity::hmac_sha256(key, &parts),
    }
}

/// MS-SEQUENCE-NUMBER: the server-chosen connection id and a counter the client pre-increments on
/// every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SequenceNumber {
    /// Connection id (20 bytes, chosen by the server in the Allocate response).
    pub connection_id: [u8; 20],
    /// Sequence number.
    pub number: u32,
}

impl SequenceNumber {
    /// Decode the 24-byte value.
    pub fn decode(v: &[u8]) -> Result<SequenceNumber, Error> {
        if v.len() != 24 {
            return Err(bad(attr::MS_SEQUENCE_NUMBER, "MS-SEQUENCE-NUMBER must be 24 bytes"));
        }
        let mut connection_id = [0u8; 20];
        connection_id.copy_from_slice(&v[..20]);
        Ok(SequenceNumber { connection_id, number: u32::from_be_bytes([v[20], v[21], v[22], v[23]]) })
    }
    /// The 24-byte value.
    pub fn encode(&self) -> [u8; 24] {
        let mut v = [0u8; 24];
        v[..20].copy_from_slice(&self.connection_id);
        v[20..].copy_from_slice(&self.number.to_be_bytes());
        v
    }
}

fn bad(typ: u16, reason: &'static str) -> Error {
    Error::BadAttribute { typ, reason }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Decode an address value (MAPPED-ADDRESS, ALTERNATE-SERVER, DESTINATION-ADDRESS, REMOTE-ADDRESS,
/// MS-ALTERNATE-MAPPED-ADDRESS): the RFC 3489 layout.
pub fn decode_address(typ: u16, v: &[u8]) -> Result<SocketAddr, Error> {
    crate::attributes::decode_address(typ, v)
}

/// Apply (or undo) the MS-TURN XOR: port with the first 16 bits of the transaction id, IPv4 with
/// its first 32 bits, IPv6 with all 128.
pub fn xor_address(a: SocketAddr, txid: &TransactionId) -> SocketAddr {
    let t = &txid.0;
    let port = a.port() ^ u16::from_be_bytes([t[0], t[1]]);
    match a.ip() {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(o[0] ^ t[0], o[1] ^ t[1], o[2] ^ t[2], o[3] ^ t[3])), port)
        }
        IpAddr::V6(ip) => {
            let mut o = ip.octets();
            for (b, x) in o.iter_mut().zip(t) {
                *b ^= x;
            }
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port)
        }
    }
}

/// Length of an address value.
pub fn address_len(a: &SocketAddr) -> usize {
    if a.is_ipv4() { 8 } else { 20 }
}

/// Write an address value into `out[..address_len(a)]`.
pub fn write_address(a: SocketAddr, out: &mut [u8]) {
    out[0] = 0;
    out[2..4].copy_from_slice(&a.port().to_be_bytes());
    match a.ip() {
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

/// A validated, borrowed view of one MS-TURN message.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    raw: &'a [u8],
    padded: bool,
    /// Offset of the first MESSAGE-INTEGRITY attribute.
    integrity: Option<usize>,
}

/// Walk the attributes after the cookie; `Some(first MI offset)` when every TLV fits exactly.
fn walk(bytes: &[u8], padded: bool) -> Option<Option<usize>> {
    let mut pos = MIN_LEN;
    let mut integrity = None;
    while pos < bytes.len() {
        if bytes.len() - pos < 4 {
            return None;
        }
        let typ = be16(bytes, pos);
        let vlen = usize::from(be16(bytes, pos + 2));
        // Type 0 is reserved: in the unpadded walk of a padded message it is where padding is read
        // as a header, so it marks the wrong guess.
        if typ == 0 {
            return None;
        }
        let step = if padded { (vlen + 3) & !3 } else { vlen };
        let rest = bytes.len() - pos - 4;
        if rest < vlen {
            return None;
        }
        if typ == attr::MESSAGE_INTEGRITY && integrity.is_none() {
            if vlen != 20 && vlen != 32 {
                return None;
            }
            integrity = Some(pos);
        }
        // The last value of a padded message may come without its padding.
        pos += 4 + step.min(rest);
    }
    Some(integrity)
}

impl<'a> Message<'a> {
    /// Decode one message occupying exactly `bytes`: header (top bits zero, length equal to the
    /// buffer), MAGIC-COOKIE first, every attribute fitting in the unpadded or else the padded
    /// form. Never panics.
    pub fn decode(bytes: &'a [u8]) -> Result<Message<'a>, Error> {
        if bytes.len() < MIN_LEN {
            return Err(Error::Truncated);
        }
        if bytes[0] & 0xC0 != 0 {
            return Err(Error::NotStun);
        }
        if bytes[20..28] != COOKIE_ATTRIBUTE {
            return Err(Error::BadMagicCookie);
        }
        let len = usize::from(be16(bytes, 2));
        if bytes.len() < HEADER_LEN + len {
            return Err(Error::Truncated);
        }
        if bytes.len() > HEADER_LEN + len {
            return Err(Error::BadLength);
        }
        let (padded, integrity) = match walk(bytes, false) {
            Some(i) => (false, i),
            None => match walk(bytes, true) {
                Some(i) => (true, i),
                None => return Err(Error::AttributeOverflow(0)),
            },
        };
        Ok(Message { raw: bytes, padded, integrity })
    }

    /// The message bytes.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
    /// The 16-bit message type (see [`types`]).
    pub fn msg_type(&self) -> u16 {
        be16(self.raw, 0)
    }
    /// The transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        let mut t = [0u8; 16];
        t.copy_from_slice(&self.raw[4..20]);
        TransactionId(t)
    }
    /// Whether the attributes came padded to 4 bytes (answer in the same form).
    pub fn padded(&self) -> bool {
        self.padded
    }

    /// Raw `(type, value)` pairs after MAGIC-COOKIE and before MESSAGE-INTEGRITY.
    pub fn attributes(&self) -> Attributes<'a> {
        let end = self.integrity.unwrap_or(self.raw.len());
        Attributes { bytes: &self.raw[..end], pos: MIN_LEN, padded: self.padded }
    }

    /// The value of the first attribute of type `typ` (before MESSAGE-INTEGRITY).
    pub fn get(&self, typ: u16) -> Option<&'a [u8]> {
        self.attributes().find(|(t, _)| *t == typ).map(|(_, v)| v)
    }

    /// A u32 attribute (LIFETIME, MS-VERSION, BANDWIDTH...): `None` when absent, an error when not
    /// 4 bytes.
    pub fn get_u32(&self, typ: u16) -> Option<Result<u32, Error>> {
        self.get(typ).map(|v| {
            let a: [u8; 4] = v.try_into().map_err(|_| bad(typ, "expected 4 bytes"))?;
            Ok(u32::from_be_bytes(a))
        })
    }

    /// An address attribute.
    pub fn get_address(&self, typ: u16) -> Option<Result<SocketAddr, Error>> {
        self.get(typ).map(|v| decode_address(typ, v))
    }

    /// An XOR-ed address attribute (XOR-MAPPED-ADDRESS).
    pub fn get_xor_address(&self, typ: u16) -> Option<Result<SocketAddr, Error>> {
        let txid = self.transaction_id();
        self.get(typ).map(|v| decode_address(typ, v).map(|a| xor_address(a, &txid)))
    }

    /// MS-SEQUENCE-NUMBER.
    pub fn sequence_number(&self) -> Option<Result<SequenceNumber, Error>> {
        self.get(attr::MS_SEQUENCE_NUMBER).map(SequenceNumber::decode)
    }

    /// ERROR-CODE as (code, reason).
    pub fn error_code(&self) -> Option<Result<(u16, &'a [u8]), Error>> {
        self.get(attr::ERROR_CODE).map(|v| {
            if v.len() < 4 {
                return Err(bad(attr::ERROR_CODE, "error code too short"));
            }
            Ok((u16::from(v[2] & 7) * 100 + u16::from(v[3]), &v[4..]))
        })
    }

    /// Comprehension-required types MS-TURN does not define (for 420 UNKNOWN-ATTRIBUTES).
    pub fn unknown_required(&self) -> impl Iterator<Item = u16> + 'a {
        self.attributes().map(|(t, _)| t).filter(|t| *t < 0x8000 && !attr::is_known_required(*t))
    }

    /// Which HMAC the MESSAGE-INTEGRITY attribute uses, if there is one.
    pub fn integrity(&self) -> Option<Hash> {
        let at = self.integrity?;
        Some(if be16(self.raw, at + 2) == 32 { Hash::Sha256 } else { Hash::Sha1 })
    }

    /// Check MESSAGE-INTEGRITY with `key` (16-byte MD5 key for SHA-1, 32-byte derived key for
    /// SHA-256). `false` when absent or wrong.
    pub fn verify(&self, key: &[u8]) -> bool {
        let (Some(at), Some(hash)) = (self.integrity, self.integrity()) else {
            return false;
        };
        let got = &self.raw[at + 4..at + 4 + hash.len()];
        let want = mac(hash, key, &self.raw[..at]);
        ct_eq(&want[..hash.len()], got)
    }
}

/// Iterator over raw `(type, value)` pairs of a decoded message.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    bytes: &'a [u8],
    pos: usize,
    padded: bool,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.bytes;
        if b.len().saturating_sub(self.pos) < 4 {
            return None;
        }
        let typ = be16(b, self.pos);
        let vlen = usize::from(be16(b, self.pos + 2));
        let start = self.pos + 4;
        let value = b.get(start..start + vlen)?;
        self.pos = start + if self.padded { (vlen + 3) & !3 } else { vlen };
        Some((typ, value))
    }
}

/// Encodes one MS-TURN control message (header, MAGIC-COOKIE, attributes, MESSAGE-INTEGRITY).
#[derive(Clone, Debug)]
pub struct Builder {
    buf: Vec<u8>,
    txid: TransactionId,
    padded: bool,
}

impl Builder {
    /// Start a message of type `typ`; with `padded`, values are padded to 4 bytes.
    pub fn new(typ: u16, txid: TransactionId, padded: bool) -> Builder {
        let mut buf = Vec::with_capacity(160);
        buf.extend_from_slice(&typ.to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&txid.0);
        buf.extend_from_slice(&COOKIE_ATTRIBUTE);
        let mut b = Builder { buf, txid, padded };
        b.set_len();
        b
    }

    fn set_len(&mut self) {
        let len = (self.buf.len() - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// Append an attribute; values longer than 65535 bytes or a message past 64 KiB are refused.
    pub fn add(&mut self, typ: u16, value: &[u8]) -> Result<&mut Builder, Error> {
        let len = u16::try_from(value.len()).map_err(|_| Error::TooLong)?;
        let pad = if self.padded { (4 - value.len() % 4) % 4 } else { 0 };
        if self.buf.len() + 4 + value.len() + pad - HEADER_LEN > usize::from(u16::MAX) {
            return Err(Error::TooLong);
        }
        self.buf.extend_from_slice(&typ.to_be_bytes());
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(value);
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
        self.set_len();
        Ok(self)
    }

    /// Append a u32 attribute.
    pub fn add_u32(&mut self, typ: u16, v: u32) -> Result<&mut Builder, Error> {
        self.add(typ, &v.to_be_bytes())
    }

    /// Append an address attribute.
    pub fn add_address(&mut self, typ: u16, a: SocketAddr) -> Result<&mut Builder, Error> {
        let mut v = [0u8; 20];
        let n = address_len(&a);
        write_address(a, &mut v);
        self.add(typ, &v[..n])
    }

    /// Append an XOR-ed address attribute (XOR-MAPPED-ADDRESS).
    pub fn add_xor_address(&mut self, typ: u16, a: SocketAddr) -> Result<&mut Builder, Error> {
        let x = xor_address(a, &self.txid);
        self.add_address(typ, x)
    }

    /// Append ERROR-CODE.
    pub fn add_error(&mut self, code: u16, reason: &str) -> Result<&mut Builder, Error> {
        let mut v = Vec::with_capacity(4 + reason.len());
        v.extend_from_slice(&[0, 0, ((code / 100) & 7) as u8, (code % 100) as u8]);
        v.extend_from_slice(reason.as_bytes());
        self.add(attr::ERROR_CODE, &v)
    }

    /// Append MESSAGE-INTEGRITY with `hash` and `key` over everything written so far.
    pub fn add_integrity(&mut self, hash: Hash, key: &[u8]) -> Result<&mut Builder, Error> {
        let m = mac(hash, key, &self.buf);
        self.add(attr::MESSAGE_INTEGRITY, &m[..hash.len()])
    }

    /// The encoded message.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Length of a Data Indication carrying `data_len` bytes from `peer`.
pub fn data_indication_len(peer: &SocketAddr, data_len: usize, padded: bool) -> usize {
    let data = if padded { (data_len + 3) & !3 } else { data_len };
    MIN_LEN + 4 + address_len(peer) + 4 + data
}

/// Write a Data Indication (0x0115: MAGIC-COOKIE, REMOTE-ADDRESS, DATA; no MESSAGE-INTEGRITY)
/// into `out` without allocating; returns the length written.
pub fn write_data_indication(
    txid: &TransactionId,
    peer: SocketAddr,
    data: &[u8],
    padded: bool,
    out: &mut [u8],
) -> Result<usize, Error> {
    let total = data_indication_len(&peer, data.len(), padded);
    if data.len() > usize::from(u16::MAX) || total - HEADER_LEN > usize::from(u16::MAX) {
        return Err(Error::TooLong);
    }
    let out = out.get_mut(..total).ok_or(Error::BufferTooSmall)?;
    out[0..2].copy_from_slice(&types::DATA_INDICATION.to_be_bytes());
    out[2..4].copy_from_slice(&((total - HEADER_LEN) as u16).to_be_bytes());
    out[4..20].copy_from_slice(&txid.0);
    out[20..28].copy_from_slice(&COOKIE_ATTRIBUTE);
    let alen = address_len(&peer);
    out[28..30].copy_from_slice(&attr::REMOTE_ADDRESS.to_be_bytes());
    out[30..32].copy_from_slice(&(alen as u16).to_be_bytes());
    write_address(peer, &mut out[32..32 + alen]);
    let d = 32 + alen;
    out[d..d + 2].copy_from_slice(&attr::DATA.to_be_bytes());
    out[d + 2..d + 4].copy_from_slice(&(data.len() as u16).to_be_bytes());
    out[d + 4..d + 4 + data.len()].copy_from_slice(data);
    out[d + 4 + data.len()..].fill(0);
    Ok(total)
}

/// What a Send request carries besides its data ([MS-TURN] §2.2.1.5, §3.1.4.2): written by
/// [`write_send_request`].
#[derive(Clone, Copy, Debug)]
pub struct SendRequest<'a> {
    /// Transaction id (Send requests are never answered; a fresh one per request).
    pub txid: TransactionId,
    /// USERNAME (the allocation's).
    pub username: &'a [u8],
    /// DESTINATION-ADDRESS: the peer.
    pub destination: SocketAddr,
    /// MS-SEQUENCE-NUMBER, when the allocation has one (the client pre-increments it).
    pub sequence: Option<SequenceNumber>,
    /// REALM, for servers that want it in every request (optional).
    pub realm: Option<&'a [u8]>,
    /// The HMAC of MESSAGE-INTEGRITY.
    pub hash: Hash,
    /// The allocation's key ([`key_v1`] or [`key_v3`]).
    pub key: &'a [u8],
    /// Pad attribute values to 4 bytes.
    pub padded: bool,
}

/// Length of the Send request `r` carrying `data_len` bytes.
pub fn send_request_len(r: &SendRequest<'_>, data_len: usize) -> usize {
    let v = |n: usize| 4 + if r.padded { (n + 3) & !3 } else { n };
    MIN_LEN
        + v(r.username.len())
        + v(address_len(&r.destination))
        + v(data_len)
        + r.sequence.map_or(0, |_| v(24))
        + r.realm.map_or(0, |realm| v(realm.len()))
        + v(r.hash.len())
}

/// Write the Send request `r` with `data` (MAGIC-COOKIE, USERNAME, DESTINATION-ADDRESS, DATA,
/// MS-SEQUENCE-NUMBER, REALM, MESSAGE-INTEGRITY; the attribute order of [`Builder`]) into `out`
/// without allocating; returns the length written.
pub fn write_send_request(r: &SendRequest<'_>, data: &[u8], out: &mut [u8]) -> Result<usize, Error> {
    let total = send_request_len(r, data.len());
    if total - HEADER_LEN > usize::from(u16::MAX) || r.username.len() > usize::from(u16::MAX) {
        return Err(Error::TooLong);
    }
    let out = out.get_mut(..total).ok_or(Error::BufferTooSmall)?;
    out[0..2].copy_from_slice(&types::SEND_REQUEST.to_be_bytes());
    out[2..4].copy_from_slice(&((total - HEADER_LEN) as u16).to_be_bytes());
    out[4..20].copy_from_slice(&r.txid.0);
    out[20..28].copy_from_slice(&COOKIE_ATTRIBUTE);
    let mut pos = MIN_LEN;
    let padded = r.padded;
    let mut tlv = |out: &mut [u8], typ: u16, len: usize, fill: &dyn Fn(&mut [u8])| {
        out[pos..pos + 2].copy_from_slice(&typ.to_be_bytes());
        out[pos + 2..pos + 4].copy_from_slice(&(len as u16).to_be_bytes());
        fill(&mut out[pos + 4..pos + 4 + len]);
        let step = if padded { (len + 3) & !3 } else { len };
        out[pos + 4 + len..pos + 4 + step].fill(0);
        pos += 4 + step;
        pos
    };
    tlv(out, attr::USERNAME, r.username.len(), &|v| v.copy_from_slice(r.username));
    tlv(out, attr::DESTINATION_ADDRESS, address_len(&r.destination), &|v| write_address(r.destination, v));
    tlv(out, attr::DATA, data.len(), &|v| v.copy_from_slice(data));
    if let Some(s) = r.sequence {
        tlv(out, attr::MS_SEQUENCE_NUMBER, 24, &|v| v.copy_from_slice(&s.encode()));
    }
    if let Some(realm) = r.realm {
        tlv(out, attr::REALM, realm.len(), &|v| v.copy_from_slice(realm));
    }
    let at = tlv(out, 0, 0, &|_| {}) - 4;
    let m = mac(r.hash, r.key, &out[..at]);
    out[at..at + 2].copy_from_slice(&attr::MESSAGE_INTEGRITY.to_be_bytes());
    out[at + 2..at + 4].copy_from_slice(&(r.hash.len() as u16).to_be_bytes());
    out[at + 4..at + 4 + r.hash.len()].copy_from_slice(&m[..r.hash.len()]);
    Ok(total)
}

/// Frame type of the TCP framing ([MS-TURN] §2.1.4): a TURN control message.
pub const FRAME_CONTROL: u8 = 0x02;
/// Frame type of the TCP framing: end-to-end data to or from the active destination.
pub const FRAME_DATA: u8 = 0x03;
/// Length of the TCP frame header.
pub const FRAME_HEADER_LEN: usize = 4;

/// The next TCP frame at the start of `buf`: `Ok(None)` when fewer than 4 bytes, else its type
/// and total length (header included; may exceed `buf.len()`: read more). Types other than 0x02
/// and 0x03 are an error (the stream is out of sync; libnice closes it too).
pub fn tcp_frame(buf: &[u8]) -> Result<Option<(u8, usize)>, Error> {
    if buf.len() < FRAME_HEADER_LEN {
        return Ok(None);
    }
    match buf[0] {
        FRAME_CONTROL | FRAME_DATA => Ok(Some((buf[0], FRAME_HEADER_LEN + usize::from(be16(buf, 2))))),
        _ => Err(Error::UnknownFrame),
    }
}

/// The 4-byte TCP frame header for `payload`: type 0x02 when it is an MS-TURN control message,
/// 0x03 otherwise (the rule libnice applies).
pub fn tcp_header(payload: &[u8]) -> [u8; FRAME_HEADER_LEN] {
    let typ = if is_msturn(payload) { FRAME_CONTROL } else { FRAME_DATA };
    let len = (payload.len().min(usize::from(u16::MAX)) as u16).to_be_bytes();
    [typ, 0, len[0], len[1]]
}

/// Whether a stream starts with MS-TURN TCP framing (type 0x02 or 0x03, reserved byte zero). RFC
/// 5389 STUN on a stream starts with 0x00 or 0x01, ChannelData with 0x40..0x7F, TLS with 0x16.
pub fn starts_tcp_framing(buf: &[u8]) -> bool {
    buf.len() >= 2 && matches!(buf[0], FRAME_CONTROL | FRAME_DATA) && buf[1] == 0
}

/// Length of the pseudo-TLS ClientHello.
pub const PSEUDO_TLS_CLIENT_HELLO_LEN: usize = 50;

/// Whether `buf` starts with the fixed pseudo-TLS ClientHello of [MS-TURN] §2.1.1: `None` when
/// more bytes are needed to tell, else whether it is one. The 32 random bytes are not checked.
pub fn pseudo_tls_client_hello(buf: &[u8]) -> Option<bool> {
    const FIXED: [(usize, u8); 18] = [
        (0, 0x16),
        (1, 0x03),
        (2, 0x01),
        (3, 0x00),
        (4, 0x2d),
        (5, 0x01),
        (6, 0x00),
        (7, 0x00),
        (8, 0x29),
        (9, 0x03),
        (10, 0x01),
        (43, 0x00),
        (44, 0x00),
        (45, 0x02),
        (46, 0x00),
        (47, 0x18),
        (48, 0x01),
        (49, 0x00),
    ];
    if FIXED.iter().any(|&(at, want)| buf.get(at).is_some_and(|&b| b != want)) {
        return Some(false);
    }
    if buf.len() < PSEUDO_TLS_CLIENT_HELLO_LEN { None } else { Some(true) }
}

/// The fixed pseudo-TLS server answer: ServerHello (version 3.1, zero random, a 32-byte zero
/// session id, suite 0x0018, null compression) and ServerHelloDone, 83 bytes in one record.
pub const PSEUDO_TLS_SERVER_HELLO: [u8; 83] = {
    let mut h = [0u8; 83];
    let head = [0x16, 0x03, 0x01, 0x00, 0x4e, 0x02, 0x00, 0x00, 0x46, 0x03, 0x01];
    let mut i = 0;
    while i < head.len() {
        h[i] = head[i];
        i += 1;
    }
    // 11..43 random (zero), 43 session id length, 44..76 session id (zero)
    h[43] = 0x20;
    h[76] = 0x00;
    h[77] = 0x18;
    h[78] = 0x00;
    h[79] = 0x0e;
    h
};

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn txid() -> TransactionId {
        TransactionId(std::array::from_fn(|i| i as u8))
    }

    #[test]
    fn research_vector_v1_hmac_sha1_padded() {
        // media-protocols.md §7.3
        let key = key_v1(b"user", b"realm", b"pass");
        assert_eq!(key.to_vec(), hex("8493fbc53ba582fb4c044c456bdc40eb"));
        let mut b = Builder::new(types::ALLOCATE_REQUEST, txid(), false);
        b.add_integrity(Hash::Sha1, &key).unwrap();
        let m = b.finish();
        assert_eq!(
            m,
            hex("00030020 000102030405060708090a0b0c0d0e0f 000f000472c64bc6
                 00080014 f4af03c6216f1976659f8721187cffc59eb7322a")
        );
        let d = Message::decode(&m).unwrap();
        assert_eq!(d.integrity(), Some(Hash::Sha1));
        assert!(d.verify(&key));
        assert!(!d.verify(&[0; 16]));
    }

    #[test]
    fn research_vector_v3_hmac_sha256_kdf() {
        // media-protocols.md §7.4 (from turner's messages.test.cpp)
        let key = key_v3(b"user", b"realm", b"nonce", b"pass");
        assert_eq!(key.to_vec(), hex("5e972cd57d52b57654d0fa6f6b297f2f073af0f8db0d2be1bc1f1b6deefc5b44"));
        let mut b = Builder::new(types::ALLOCATE_REQUEST, txid(), false);
        b.add_integrity(Hash::Sha256, &key).unwrap();
        let m = b.finish();
        assert_eq!(
            m,
            hex("0003002c 000102030405060708090a0b0c0d0e0f 000f000472c64bc6 00080020
                 890e90e0fee6ed6fa33ac97ea004761627 95e25a607386cc9817fa6ed8d2cd14")
        );
        let d = Message::decode(&m).unwrap();
        assert_eq!(d.integrity(), Some(Hash::Sha256));
        assert!(d.verify(&key));
    }

    #[test]
    fn classification() {
        let mut b = Builder::new(types::ALLOCATE_REQUEST, txid(), false);
        b.add_u32(attr::MS_VERSION, 1).unwrap();
        let m = b.finish();
        assert!(is_msturn(&m));
        let mut rfc = m.clone();
        rfc[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
        rfc[20..28].copy_from_slice(&[0, 0x19, 0, 4, 17, 0, 0, 0]);
        assert!(!is_msturn(&rfc));
        assert!(!is_msturn(&[0x80; 64]), "RTP");
        assert!(!is_msturn(&m[..27]));
        assert_eq!(Message::decode(&rfc).unwrap_err(), Error::BadMagicCookie);
    }

    #[test]
    fn padded_and_unpadded_attributes() {
        for padded in [false, true] {
            let mut b = Builder::new(types::ALLOCATE_ERROR, txid(), padded);
            b.add_error(401, "Unauthorized!").unwrap();
            b.add(attr::NONCE, b"nonce-5").unwrap();
            b.add(attr::REALM, b"realm").unwrap();
            b.add_u32(attr::LIFETIME, 600).unwrap();
            let m = b.finish();
            let d = Message::decode(&m).unwrap();
            assert_eq!(d.padded(), padded);
            assert_eq!(d.get(attr::NONCE), Some(&b"nonce-5"[..]));
            assert_eq!(d.get(attr::REALM), Some(&b"realm"[..]));
            assert_eq!(d.get_u32(attr::LIFETIME), Some(Ok(600)));
            let (code, reason) = d.error_code().unwrap().unwrap();
            assert_eq!((code, reason), (401, &b"Unauthorized!"[..]));
        }
    }

    #[test]
    fn round_trip_every_message_type() {
        let peer: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:3478".parse().unwrap();
        let key = key_v1(b"u", b"r", b"p");
        let seq = SequenceNumber { connection_id: [7; 20], number: 42 };
        for typ in [
            types::ALLOCATE_REQUEST,
            types::ALLOCATE_RESPONSE,
            types::ALLOCATE_ERROR,
            types::SEND_REQUEST,
            types::SET_ACTIVE_DESTINATION_REQUEST,
            types::SET_ACTIVE_DESTINATION_RESPONSE,
            types::SET_ACTIVE_DESTINATION_ERROR,
        ] {
            let mut b = Builder::new(typ, txid(), false);
            b.add(attr::USERNAME, &[1, 2, 3]).unwrap();
            b.add_address(attr::DESTINATION_ADDRESS, peer).unwrap();
            b.add_address(attr::MS_ALTERNATE_MAPPED_ADDRESS, v6).unwrap();
            b.add_xor_address(attr::XOR_MAPPED_ADDRESS, v6).unwrap();
            b.add(attr::MS_SEQUENCE_NUMBER, &seq.encode()).unwrap();
            b.add(attr::DATA, b"hello").unwrap();
            b.add_integrity(Hash::Sha1, &key).unwrap();
            let m = b.finish();
            let d = Message::decode(&m).unwrap();
            assert_eq!(d.msg_type(), typ);
            assert_eq!(d.transaction_id(), txid());
            assert_eq!(d.get(attr::USERNAME), Some(&[1u8, 2, 3][..]));
            assert_eq!(d.get_address(attr::DESTINATION_ADDRESS), Some(Ok(peer)));
            assert_eq!(d.get_address(attr::MS_ALTERNATE_MAPPED_ADDRESS), Some(Ok(v6)));
            assert_eq!(d.get_xor_address(attr::XOR_MAPPED_ADDRESS), Some(Ok(v6)));
            assert_eq!(d.sequence_number(), Some(Ok(seq)));
            assert_eq!(d.get(attr::DATA), Some(&b"hello"[..]));
            assert!(d.verify(&key));
            assert_eq!(d.unknown_required().count(), 0);
        }
        // Data Indication, both forms, both families.
        for padded in [false, true] {
            for p in [peer, v6] {
                let mut out = [0u8; 128];
                let n = write_data_indication(&txid(), p, b"abcde", padded, &mut out).unwrap();
                assert_eq!(n, data_indication_len(&p, 5, padded));
                let d = Message::decode(&out[..n]).unwrap();
                assert_eq!(d.msg_type(), types::DATA_INDICATION);
                assert_eq!(d.get_address(attr::REMOTE_ADDRESS), Some(Ok(p)));
                assert_eq!(d.get(attr::DATA), Some(&b"abcde"[..]));
                assert_eq!(d.integrity(), None);
            }
        }
        assert_eq!(write_data_indication(&txid(), peer, b"abc", false, &mut [0u8; 20]), Err(Error::BufferTooSmall));
    }

    #[test]
    fn send_requests_written_in_place_match_the_builder() {
        let key = key_v1(b"user", b"realm", b"pass");
        let key3 = key_v3(b"user", b"realm", b"nonce", b"pass");
        let seq = SequenceNumber { connection_id: [9; 20], number: 7 };
        for (hash, key) in [(Hash::Sha1, &key[..]), (Hash::Sha256, &key3[..])] {
            for padded in [false, true] {
                for (sequence, realm) in [(None, None), (Some(seq), Some(&b"realm"[..]))] {
                    for dest in ["203.0.113.9:40000", "[2001:db8::1]:3478"] {
                        let destination: SocketAddr = dest.parse().unwrap();
                        let r = SendRequest {
                            txid: txid(),
                            username: b"user-x",
                            destination,
                            sequence,
                            realm,
                            hash,
                            key,
                            padded,
                        };
                        let data = b"payload of odd length";
                        let mut b = Builder::new(types::SEND_REQUEST, txid(), padded);
                        b.add(attr::USERNAME, b"user-x").unwrap();
                        b.add_address(attr::DESTINATION_ADDRESS, destination).unwrap();
                        b.add(attr::DATA, data).unwrap();
                        if let Some(s) = sequence {
                            b.add(attr::MS_SEQUENCE_NUMBER, &s.encode()).unwrap();
                        }
                        if let Some(realm) = realm {
                            b.add(attr::REALM, realm).unwrap();
                        }
                        b.add_integrity(hash, key).unwrap();
                        let want = b.finish();
                        let mut out = [0xEEu8; 256];
                        let n = write_send_request(&r, data, &mut out).unwrap();
                        assert_eq!(n, send_request_len(&r, data.len()));
                        assert_eq!(&out[..n], &want[..], "{hash:?} padded={padded} seq={sequence:?} {dest}");
                        let d = Message::decode(&out[..n]).unwrap();
                        assert!(d.verify(key));
                        assert_eq!(d.get(attr::DATA), Some(&data[..]));
                        assert_eq!(d.sequence_number().map(Result::unwrap), sequence);
                        assert_eq!(write_send_request(&r, data, &mut out[..n - 1]), Err(Error::BufferTooSmall));
                    }
                }
            }
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        let mut b = Builder::new(types::ALLOCATE_REQUEST, txid(), false);
        b.add(attr::USERNAME, b"abc").unwrap();
        let m = b.finish();
        assert!(Message::decode(&m).is_ok());
        assert_eq!(Message::decode(&m[..m.len() - 1]).unwrap_err(), Error::Truncated);
        let mut long = m.clone();
        long.push(0);
        assert_eq!(Message::decode(&long).unwrap_err(), Error::BadLength);
        let mut over = m.clone();
        over[30] = 0x40; // USERNAME length runs past the end
        assert!(Message::decode(&over).is_err());
        let mut mi = Builder::new(types::ALLOCATE_REQUEST, txid(), false);
        mi.add(attr::MESSAGE_INTEGRITY, &[0; 7]).unwrap();
        assert!(Message::decode(&mi.finish()).is_err(), "MI must be 20 or 32 bytes");
        let mut unknown = Builder::new(types::ALLOCATE_REQUEST, txid(), false);
        unknown.add(0x0019, &[17, 0, 0, 0]).unwrap();
        unknown.add(0x9999, &[1]).unwrap();
        let u = unknown.finish();
        assert_eq!(Message::decode(&u).unwrap().unknown_required().collect::<Vec<_>>(), [0x0019]);
    }

    #[test]
    fn tcp_framing_and_pseudo_tls() {
        assert_eq!(tcp_frame(&[2, 0, 0]), Ok(None));
        assert_eq!(tcp_frame(&[2, 0, 0, 36]), Ok(Some((FRAME_CONTROL, 40))));
        assert_eq!(tcp_frame(&[3, 0, 1, 0]), Ok(Some((FRAME_DATA, 260))));
        assert_eq!(tcp_frame(&[0, 3, 0, 16]), Err(Error::UnknownFrame));
        let m = Builder::new(types::ALLOCATE_REQUEST, txid(), false).finish();
        assert_eq!(tcp_header(&m), [2, 0, 0, 28]);
        assert_eq!(tcp_header(&[0x80; 172]), [3, 0, 0, 172]);
        assert!(starts_tcp_framing(&[2, 0]) && starts_tcp_framing(&[3, 0]) && !starts_tcp_framing(&[0, 3]));

        let mut hello = hex("16030100 2d 01000029 0301");
        hello.extend_from_slice(&[0xAB; 32]);
        hello.extend_from_slice(&hex("00 00020018 0100"));
        assert_eq!(hello.len(), PSEUDO_TLS_CLIENT_HELLO_LEN);
        assert_eq!(pseudo_tls_client_hello(&hello), Some(true));
        assert_eq!(pseudo_tls_client_hello(&hello[..20]), None);
        let mut other = hello.clone();
        other[47] = 0x2f;
        assert_eq!(pseudo_tls_client_hello(&other), Some(false));
        assert_eq!(pseudo_tls_client_hello(&[0x16, 0x03, 0x03]), Some(false), "a real TLS 1.2 record");
        let s = PSEUDO_TLS_SERVER_HELLO;
        assert_eq!(&s[..11], &hex("16030100 4e 02000046 0301")[..]);
        assert_eq!((s[43], s[77], s[78]), (0x20, 0x18, 0x00));
        assert_eq!(&s[79..], &[0x0e, 0, 0, 0]);
        assert_eq!(usize::from(s[4]) + 5, s.len());
    }
}
