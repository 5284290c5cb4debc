//! STUN message header and framing of attributes (RFC 8489 §5, §6, §14).
//!
//! [`Message::decode`] validates the header and walks the attribute list once, without copying
//! or allocating; values are then borrowed from the input. Attributes that follow
//! MESSAGE-INTEGRITY are ignored (except MESSAGE-INTEGRITY-SHA256 and FINGERPRINT) as RFC 8489
//! §14.5 requires, and nothing may follow FINGERPRINT. [`MessageBuilder`] encodes responses and
//! appends MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT over the bytes written so far.

use std::net::SocketAddr;

use crate::Error;
use crate::attributes::{self as attr, Attribute};
use crate::integrity;

/// The fixed magic cookie of RFC 5389 and later (RFC 8489 §5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Length of the STUN header.
pub const HEADER_LEN: usize = 20;
/// XOR constant of FINGERPRINT (RFC 8489 §14.7).
pub const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// The 96-bit transaction id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TransactionId(pub [u8; 12]);

/// Message class (RFC 8489 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Request.
    Request,
    /// Indication.
    Indication,
    /// Success response.
    Success,
    /// Error response.
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        }
    }
    fn from_bits(b: u16) -> Class {
        match b & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        }
    }
}

/// A 12-bit STUN method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Method(pub u16);

impl Method {
    /// Binding (RFC 8489).
    pub const BINDING: Method = Method(0x001);
    /// Allocate (RFC 8656 §7).
    pub const ALLOCATE: Method = Method(0x003);
    /// Refresh (RFC 8656 §8).
    pub const REFRESH: Method = Method(0x004);
    /// Send indication (RFC 8656 §11).
    pub const SEND: Method = Method(0x006);
    /// Data indication (RFC 8656 §11).
    pub const DATA: Method = Method(0x007);
    /// CreatePermission (RFC 8656 §10).
    pub const CREATE_PERMISSION: Method = Method(0x008);
    /// ChannelBind (RFC 8656 §12).
    pub const CHANNEL_BIND: Method = Method(0x009);
}

/// Encode method and class into the 14-bit message type.
pub fn encode_type(method: Method, class: Class) -> u16 {
    let m = method.0 & 0x0fff;
    let c = class.bits();
    (m & 0x000f) | ((m & 0x0070) << 1) | ((m & 0x0f80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
}

/// Split a 14-bit message type into method and class.
pub fn decode_type(t: u16) -> (Method, Class) {
    let m = (t & 0x000f) | ((t & 0x00e0) >> 1) | ((t & 0x3e00) >> 2);
    let c = ((t >> 4) & 1) | ((t >> 7) & 2);
    (Method(m), Class::from_bits(c))
}

/// A validated, borrowed view of one STUN message.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    raw: &'a [u8],
    method: Method,
    class: Class,
    txid: TransactionId,
    /// End of the attributes covered by integrity (offset of the first MI/MI-SHA256/FINGERPRINT).
    covered_end: usize,
    integrity: Option<usize>,
    integrity_sha256: Option<usize>,
    fingerprint: Option<usize>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

impl<'a> Message<'a> {
    /// Decode one message occupying exactly `bytes`.
    ///
    /// Checks the header (leading zero bits, magic cookie, length multiple of 4 and equal to
    /// the buffer), and that every attribute fits. Never panics.
    pub fn decode(bytes: &'a [u8]) -> Result<Message<'a>, Error> {
        if bytes.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if bytes[0] & 0xc0 != 0 {
            return Err(Error::NotStun);
        }
        let len = be16(bytes, 2) as usize;
        if u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) != MAGIC_COOKIE {
            return Err(Error::BadMagicCookie);
        }
        if !len.is_multiple_of(4) {
            return Err(Error::BadLength);
        }
        if bytes.len() < HEADER_LEN + len {
            return Err(Error::Truncated);
        }
        if bytes.len() > HEADER_LEN + len {
            return Err(Error::BadLength);
        }
        let (method, class) = decode_type(be16(bytes, 0));
        let mut txid = [0u8; 12];
        txid.copy_from_slice(&bytes[8..20]);
        let mut msg = Message {
            raw: bytes,
            method,
            class,
            txid: TransactionId(txid),
            covered_end: bytes.len(),
            integrity: None,
            integrity_sha256: None,
            fingerprint: None,
        };
        let mut pos = HEADER_LEN;
        while pos < bytes.len() {
            if bytes.len() - pos < 4 {
                return Err(Error::Truncated);
            }
            let typ = be16(bytes, pos);
            let vlen = be16(bytes, pos + 2) as usize;
            let padded = (vlen + 3) & !3;
            if bytes.len() - pos - 4 < padded {
                return Err(Error::AttributeOverflow(typ));
            }
            if msg.fingerprint.is_some() {
                return Err(Error::AfterFingerprint);
            }
            match typ {
                attr::MESSAGE_INTEGRITY => {
                    if vlen != 20 {
                        return Err(Error::BadAttribute { typ, reason: "MESSAGE-INTEGRITY must be 20 bytes" });
                    }
                    if msg.integrity.is_none() && msg.integrity_sha256.is_none() {
                        msg.integrity = Some(pos);
                    }
                    msg.covered_end = msg.covered_end.min(pos);
                }
                attr::MESSAGE_INTEGRITY_SHA256 => {
                    if !(16..=32).contains(&vlen) || !vlen.is_multiple_of(4) {
                        return Err(Error::BadAttribute { typ, reason: "MESSAGE-INTEGRITY-SHA256 length" });
                    }
                    if msg.integrity_sha256.is_none() {
                        msg.integrity_sha256 = Some(pos);
                    }
                    msg.covered_end = msg.covered_end.min(pos);
                }
                attr::FINGERPRINT => {
                    if vlen != 4 {
                        return Err(Error::BadAttribute { typ, reason: "FINGERPRINT must be 4 bytes" });
                    }
                    msg.fingerprint = Some(pos);
                    msg.covered_end = msg.covered_end.min(pos);
                }
                _ => {}
            }
            pos += 4 + padded;
        }
        Ok(msg)
    }

    /// The message bytes.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
    /// Method.
    pub fn method(&self) -> Method {
        self.method
    }
    /// Class.
    pub fn class(&self) -> Class {
        self.class
    }
    /// Transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        self.txid
    }

    /// Raw `(type, value)` pairs of the attributes that precede MESSAGE-INTEGRITY(-SHA256) and
    /// FINGERPRINT, i.e. those that count (RFC 8489 §14.5).
    pub fn raw_attributes(&self) -> RawAttributes<'a> {
        RawAttributes { bytes: &self.raw[..self.covered_end], pos: HEADER_LEN }
    }

    /// The value of the first covered attribute of type `typ`.
    pub fn get_raw(&self, typ: u16) -> Option<&'a [u8]> {
        self.raw_attributes().find(|(t, _)| *t == typ).map(|(_, v)| v)
    }

    /// Typed attributes (covered ones, in order). Malformed values come out as errors.
    pub fn attributes(&self) -> impl Iterator<Item = Result<Attribute<'a>, Error>> + 'a {
        let txid = self.txid;
        self.raw_attributes().map(move |(t, v)| Attribute::decode(t, v, &txid))
    }

    /// Decode the first attribute of type `typ`, if any.
    pub fn get(&self, typ: u16) -> Option<Result<Attribute<'a>, Error>> {
        self.get_raw(typ).map(|v| Attribute::decode(typ, v, &self.txid))
    }

    /// Comprehension-required attribute types (< 0x8000) that `known` does not recognise; a
    /// server answers 420 with these in UNKNOWN-ATTRIBUTES (RFC 8489 §6.3.1).
    pub fn unknown_comprehension_required(&self, known: impl Fn(u16) -> bool) -> Vec<u16> {
        let mut out = Vec::new();
        for (t, _) in self.raw_attributes() {
            if t < 0x8000 && !known(t) && !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }

    /// Whether MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 is present.
    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some() || self.integrity_sha256.is_some()
    }

    /// Whether FINGERPRINT is present.
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint.is_some()
    }

    /// Check FINGERPRINT: `None` when absent, `Some(valid)` otherwise.
    pub fn check_fingerprint(&self) -> Option<bool> {
        let at = self.fingerprint?;
        let got = u32::from_be_bytes([self.raw[at + 4], self.raw[at + 5], self.raw[at + 6], self.raw[at + 7]]);
        let header = adjusted_header(self.raw, at + 8);
        let crc = integrity::crc32(&[&header, &self.raw[HEADER_LEN..at]]) ^ FINGERPRINT_XOR;
        Some(crc == got)
    }

    /// Verify message integrity with `key` (the long-term MD5 key or the short-term password).
    ///
    /// Uses MESSAGE-INTEGRITY-SHA256 when present, else MESSAGE-INTEGRITY. Works on the
    /// received bytes with the header length rewritten to end after the integrity attribute.
    pub fn verify_integrity(&self, key: &[u8]) -> Option<IntegrityKind> {
        if let Some(at) = self.integrity_sha256 {
            let vlen = be16(self.raw, at + 2) as usize;
            let header = adjusted_header(self.raw, at + 4 + vlen);
            let mac = integrity::hmac_sha256(key, &[&header, &self.raw[HEADER_LEN..at]]);
            let got = &self.raw[at + 4..at + 4 + vlen];
            return integrity::ct_eq(&mac[..vlen], got).then_some(IntegrityKind::Sha256);
        }
        let at = self.integrity?;
        let header = adjusted_header(self.raw, at + 24);
        let mac = integrity::hmac_sha1(key, &[&header, &self.raw[HEADER_LEN..at]])?;
        integrity::ct_eq(&mac, &self.raw[at + 4..at + 24]).then_some(IntegrityKind::Sha1)
    }

    /// Which integrity attribute the message carries (SHA-256 preferred), if any.
    pub fn integrity_kind(&self) -> Option<IntegrityKind> {
        if self.integrity_sha256.is_some() {
            Some(IntegrityKind::Sha256)
        } else if self.integrity.is_some() {
            Some(IntegrityKind::Sha1)
        } else {
            None
        }
    }
}

/// Which MESSAGE-INTEGRITY variant protects a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntegrityKind {
    /// MESSAGE-INTEGRITY (HMAC-SHA1).
    Sha1,
    /// MESSAGE-INTEGRITY-SHA256.
    Sha256,
}

/// The header of `raw` with its length field set so the message ends at `end`.
fn adjusted_header(raw: &[u8], end: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&raw[..HEADER_LEN]);
    let len = (end - HEADER_LEN) as u16;
    h[2..4].copy_from_slice(&len.to_be_bytes());
    h
}

/// Iterator over raw `(type, value)` attribute pairs of a validated message.
#[derive(Clone, Debug)]
pub struct RawAttributes<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for RawAttributes<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.bytes;
        if b.len().saturating_sub(self.pos) < 4 {
            return None;
        }
        let typ = be16(b, self.pos);
        let vlen = be16(b, self.pos + 2) as usize;
        let start = self.pos + 4;
        let value = b.get(start..start + vlen)?;
        self.pos = start + ((vlen + 3) & !3);
        Some((typ, value))
    }
}

/// Encodes one STUN message into a growing buffer.
#[derive(Clone, Debug)]
pub struct MessageBuilder {
    buf: Vec<u8>,
    txid: TransactionId,
}

impl MessageBuilder {
    /// Start a message with the given class, method and transaction id.
    pub fn new(class: Class, method: Method, txid: TransactionId) -> MessageBuilder {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&encode_type(method, class).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&txid.0);
        MessageBuilder { buf, txid }
    }

    /// The transaction id of the message being built.
    pub fn transaction_id(&self) -> TransactionId {
        self.txid
    }

    fn set_len(&mut self) {
        let len = (self.buf.len() - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// Append an attribute with a raw value (padded with zeros to 4 bytes).
    pub fn add_raw(&mut self, typ: u16, value: &[u8]) -> Result<(), Error> {
        let len = u16::try_from(value.len()).map_err(|_| Error::TooLong)?;
        if self.buf.len() + 4 + value.len() + 3 - HEADER_LEN > usize::from(u16::MAX) {
            return Err(Error::TooLong);
        }
        self.buf.extend_from_slice(&typ.to_be_bytes());
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(value);
        let pad = (4 - value.len() % 4) % 4;
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
        self.set_len();
        Ok(())
    }

    /// Append a typed attribute (encoded in place, no temporary buffer).
    pub fn add(&mut self, a: &Attribute<'_>) -> Result<(), Error> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&a.typ().to_be_bytes());
        self.buf.extend_from_slice(&[0, 0]);
        a.encode_value(&self.txid, &mut self.buf);
        let vlen = self.buf.len() - start - 4;
        let padded = (vlen + 3) & !3;
        if vlen > usize::from(u16::MAX) || start + 4 + padded - HEADER_LEN > usize::from(u16::MAX) {
            self.buf.truncate(start);
            return Err(Error::TooLong);
        }
        self.buf[start + 2..start + 4].copy_from_slice(&(vlen as u16).to_be_bytes());
        self.buf.resize(start + 4 + padded, 0);
        self.set_len();
        Ok(())
    }

    /// Append MESSAGE-INTEGRITY (HMAC-SHA1 with `key`) over everything written so far.
    pub fn add_message_integrity(&mut self, key: &[u8]) {
        let end = self.buf.len() + 24;
        let header = adjusted_header(&self.buf, end);
        let mac = integrity::hmac_sha1(key, &[&header, &self.buf[HEADER_LEN..]]).unwrap_or([0; 20]);
        // add_raw cannot fail for a 20-byte value on a message that fit so far
        let _ = self.add_raw(attr::MESSAGE_INTEGRITY, &mac);
    }

    /// Append MESSAGE-INTEGRITY-SHA256 (full 32 bytes) over everything written so far.
    pub fn add_message_integrity_sha256(&mut self, key: &[u8]) {
        let end = self.buf.len() + 36;
        let header = adjusted_header(&self.buf, end);
        let mac = integrity::hmac_sha256(key, &[&header, &self.buf[HEADER_LEN..]]);
        let _ = self.add_raw(attr::MESSAGE_INTEGRITY_SHA256, &mac);
    }

    /// Append FINGERPRINT; it must be the last attribute.
    pub fn add_fingerprint(&mut self) {
        let end = self.buf.len() + 8;
        let header = adjusted_header(&self.buf, end);
        let crc = integrity::crc32(&[&header, &self.buf[HEADER_LEN..]]) ^ FINGERPRINT_XOR;
        let _ = self.add_raw(attr::FINGERPRINT, &crc.to_be_bytes());
    }

    /// The encoded message.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Write a Data indication (RFC 8656 §11.4: XOR-PEER-ADDRESS and DATA, no FINGERPRINT) into
/// `out` without allocating; returns the length written.
pub fn write_data_indication(
    txid: &TransactionId,
    peer: SocketAddr,
    data: &[u8],
    out: &mut [u8],
) -> Result<usize, Error> {
    let addr_len = if peer.is_ipv4() { 8 } else { 20 };
    let padded = (data.len() + 3) & !3;
    let body = 4 + addr_len + 4 + padded;
    let total = HEADER_LEN + body;
    if data.len() > usize::from(u16::MAX) || body > usize::from(u16::MAX) {
        return Err(Error::TooLong);
    }
    let out = out.get_mut(..total).ok_or(Error::BufferTooSmall)?;
    out[0..2].copy_from_slice(&encode_type(Method::DATA, Class::Indication).to_be_bytes());
    out[2..4].copy_from_slice(&(body as u16).to_be_bytes());
    out[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out[8..20].copy_from_slice(&txid.0);
    out[20..22].copy_from_slice(&attr::XOR_PEER_ADDRESS.to_be_bytes());
    out[22..24].copy_from_slice(&(addr_len as u16).to_be_bytes());
    attr::write_xor_address(peer, txid, &mut out[24..24 + addr_len]);
    let d = 24 + addr_len;
    out[d..d + 2].copy_from_slice(&attr::DATA.to_be_bytes());
    out[d + 2..d + 4].copy_from_slice(&(data.len() as u16).to_be_bytes());
    out[d + 4..d + 4 + data.len()].copy_from_slice(data);
    out[d + 4 + data.len()..total].fill(0);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_roundtrip() {
        for m in [1u16, 3, 4, 6, 7, 8, 9, 0xfff, 0x123] {
            for c in [Class::Request, Class::Indication, Class::Success, Class::Error] {
                let t = encode_type(Method(m), c);
                assert_eq!(t & 0xc000, 0);
                assert_eq!(decode_type(t), (Method(m), c));
            }
        }
        assert_eq!(encode_type(Method::BINDING, Class::Request), 0x0001);
        assert_eq!(encode_type(Method::BINDING, Class::Success), 0x0101);
        assert_eq!(encode_type(Method::ALLOCATE, Class::Error), 0x0113);
        assert_eq!(encode_type(Method::DATA, Class::Indication), 0x0017);
    }
}
