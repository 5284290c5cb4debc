//! SDES: the `a=crypto` attribute (RFC 4568 §4, §6 and the grammar of §9) and Microsoft's `a=cryptoscale`
//! (MS-SDPEXT §3.1.5.2).
//!
//! ```text
//! a=crypto:<tag> <crypto-suite> <key-params> [<session-param> ...]
//! a=cryptoscale:<tag> <scale-direction> <crypto-suite> <key-params> [<session-param> ...]
//! key-params = inline:<base64(key||salt)>[|<lifetime>][|<mki-value>:<mki-length>] *(";" key-param)
//! ```
//!
//! Parsing accepts one or more spaces or tabs between fields (RFC 4568 `1*WSP`); formatting writes single
//! spaces, as MS-SDPEXT requires. Crypto suites and session parameters this crate does not know are kept
//! as text, so a line round-trips, and [`crate::negotiate`] decides what is acceptable.
//!
//! Microsoft forms (MS-SDPEXT, real Skype for Business offers): the same key is offered three times, as
//! `a=cryptoscale:1 client ...|2^31|1:1`, `a=crypto:2 ...|2^31|1:1` (with a one-byte MKI of value 1) and
//! `a=crypto:3 ...|2^31` (without MKI); the tag is unique across `a=crypto` and `a=cryptoscale`. Only the
//! direction value `client` has been seen; what other values mean (and what an MCU answers) is
//! **UNCONFIRMED**: [`ScaleDirection`] keeps any token. Left out: key methods other than `inline` (a line
//! with one is an error), MKI values wider than 64 bits.

use std::fmt;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};

use crate::suite::{MasterKey, Suite};
use crate::{Error, Result};

/// Base64 decoder that accepts key material with or without `=` padding (both are seen in the wild).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Largest tag: `1*9DIGIT`.
const MAX_TAG: u32 = 999_999_999;

/// A key's lifetime in packets: `2^n` or a decimal count (RFC 4568 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Written `2^n`.
    PowerOfTwo(u8),
    /// Written as a decimal number.
    Count(u64),
}

impl Lifetime {
    /// The number of packets (saturating at `u64::MAX` for `2^64` and more).
    pub fn packets(self) -> u64 {
        match self {
            Lifetime::PowerOfTwo(n) if n >= 64 => u64::MAX,
            Lifetime::PowerOfTwo(n) => 1 << n,
            Lifetime::Count(c) => c,
        }
    }
}

impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lifetime::PowerOfTwo(n) => write!(f, "2^{n}"),
            Lifetime::Count(c) => write!(f, "{c}"),
        }
    }
}

/// Master Key Identifier: the value carried in each packet and its length in bytes (RFC 3711 §3.1, RFC 4568
/// §6.1 `mki-value:mki-length`). Microsoft clients use `1:1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mki {
    /// The MKI value.
    pub value: u64,
    /// Its length on the wire, 1 to 128 bytes.
    pub length: u8,
}

impl Mki {
    /// An MKI; the value must fit in `length` bytes and `length` must be 1..=128.
    pub fn new(value: u64, length: u8) -> Result<Mki> {
        if length == 0 || length > 128 {
            return Err(Error::Sdes(format!("MKI length {length} is not 1..=128")));
        }
        if length < 8 && value >> (8 * u32::from(length)) != 0 {
            return Err(Error::Sdes(format!("MKI value {value} does not fit in {length} bytes")));
        }
        Ok(Mki { value, length })
    }

    /// Writes the MKI big-endian into `out` (which must be `length` bytes long).
    pub fn write(self, out: &mut [u8]) {
        let n = out.len();
        for (i, b) in out.iter_mut().enumerate() {
            let shift = 8 * (n - 1 - i);
            *b = if shift >= 64 { 0 } else { (self.value >> shift) as u8 };
        }
    }

    /// Whether `bytes` (exactly `length` long) carry this MKI.
    pub fn matches(self, bytes: &[u8]) -> bool {
        bytes.len() == usize::from(self.length)
            && bytes.iter().enumerate().all(|(i, &b)| {
                let shift = 8 * (bytes.len() - 1 - i);
                b == if shift >= 64 { 0 } else { (self.value >> shift) as u8 }
            })
    }
}

impl fmt::Display for Mki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.value, self.length)
    }
}

/// One `inline:` key parameter.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyParam {
    /// Decoded `key || salt` (its length is checked against the suite by [`KeyParam::master_key`]).
    pub key_salt: Vec<u8>,
    /// Optional lifetime.
    pub lifetime: Option<Lifetime>,
    /// Optional MKI.
    pub mki: Option<Mki>,
}

impl KeyParam {
    /// A key parameter for `key`.
    pub fn new(key: &MasterKey, lifetime: Option<Lifetime>, mki: Option<Mki>) -> KeyParam {
        KeyParam { key_salt: key.as_bytes().to_vec(), lifetime, mki }
    }

    /// The key material as a [`MasterKey`] of `suite`.
    pub fn master_key(&self, suite: Suite) -> Result<MasterKey> {
        MasterKey::new(suite, &self.key_salt)
    }

    fn parse(text: &str) -> Result<KeyParam> {
        let info = text
            .strip_prefix("inline:")
            .ok_or_else(|| Error::Sdes(format!("unsupported key method in {:?}", truncate(text))))?;
        let mut parts = info.split('|');
        let b64 = parts.next().unwrap_or_default();
        if b64.is_empty() || !b64.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')) {
            return Err(Error::Sdes("key-salt is not base64".into()));
        }
        let key_salt = LENIENT.decode(b64).map_err(|_| Error::Sdes("key-salt is not base64".into()))?;
        let mut lifetime = None;
        let mut mki = None;
        for part in parts {
            if let Some((value, length)) = part.split_once(':') {
                if mki.is_some() {
                    return Err(Error::Sdes("two MKIs in one key".into()));
                }
                let value: u64 = parse_digits(value, 39).ok_or_else(|| Error::Sdes("bad MKI value".into()))?;
                let length: u8 = parse_digits(length, 3)
                    .and_then(|l: u64| u8::try_from(l).ok())
                    .ok_or_else(|| Error::Sdes("bad MKI length".into()))?;
                mki = Some(Mki::new(value, length)?);
            } else {
                if lifetime.is_some() || mki.is_some() {
                    return Err(Error::Sdes("lifetime out of place".into()));
                }
                lifetime = Some(if let Some(exp) = part.strip_prefix("2^") {
                    let n: u64 = parse_digits(exp, 3).ok_or_else(|| Error::Sdes("bad lifetime".into()))?;
                    Lifetime::PowerOfTwo(u8::try_from(n).map_err(|_| Error::Sdes("bad lifetime".into()))?)
                } else {
                    Lifetime::Count(parse_digits(part, 20).ok_or_else(|| Error::Sdes("bad lifetime".into()))?)
                });
            }
        }
        Ok(KeyParam { key_salt, lifetime, mki })
    }
}

impl fmt::Debug for KeyParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyParam")
            .field("key_salt", &format_args!("<{} bytes redacted>", self.key_salt.len()))
            .field("lifetime", &self.lifetime)
            .field("mki", &self.mki)
            .finish()
    }
}

impl fmt::Display for KeyParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inline:{}", STANDARD.encode(&self.key_salt))?;
        if let Some(l) = self.lifetime {
            write!(f, "|{l}")?;
        }
        if let Some(m) = self.mki {
            write!(f, "|{m}")?;
        }
        Ok(())
    }
}

/// An SRTP session parameter (RFC 4568 §6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionParam {
    /// `KDR=n`: key derivation rate 2^n (0 means derive once).
    Kdr(u8),
    /// `UNENCRYPTED_SRTP`.
    UnencryptedSrtp,
    /// `UNENCRYPTED_SRTCP`.
    UnencryptedSrtcp,
    /// `UNAUTHENTICATED_SRTP`.
    UnauthenticatedSrtp,
    /// `FEC_ORDER=...`.
    FecOrder(String),
    /// `FEC_KEY=...`.
    FecKey(String),
    /// `WSH=n`: replay window size hint in packets.
    Wsh(u32),
    /// Anything else, kept verbatim.
    Other(String),
}

impl SessionParam {
    fn parse(text: &str) -> SessionParam {
        let number = |v: &str, max_digits| parse_digits(v, max_digits);
        match text.split_once('=') {
            Some(("KDR", v)) => match number(v, 2).and_then(|n| u8::try_from(n).ok()).filter(|&n| n <= 24) {
                Some(n) => SessionParam::Kdr(n),
                None => SessionParam::Other(text.into()),
            },
            Some(("WSH", v)) => match number(v, 9).and_then(|n| u32::try_from(n).ok()) {
                Some(n) => SessionParam::Wsh(n),
                None => SessionParam::Other(text.into()),
            },
            Some(("FEC_ORDER", v)) => SessionParam::FecOrder(v.into()),
            Some(("FEC_KEY", v)) => SessionParam::FecKey(v.into()),
            _ => match text {
                "UNENCRYPTED_SRTP" => SessionParam::UnencryptedSrtp,
                "UNENCRYPTED_SRTCP" => SessionParam::UnencryptedSrtcp,
                "UNAUTHENTICATED_SRTP" => SessionParam::UnauthenticatedSrtp,
                _ => SessionParam::Other(text.into()),
            },
        }
    }
}

impl fmt::Display for SessionParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionParam::Kdr(n) => write!(f, "KDR={n}"),
            SessionParam::UnencryptedSrtp => f.write_str("UNENCRYPTED_SRTP"),
            SessionParam::UnencryptedSrtcp => f.write_str("UNENCRYPTED_SRTCP"),
            SessionParam::UnauthenticatedSrtp => f.write_str("UNAUTHENTICATED_SRTP"),
            SessionParam::FecOrder(v) => write!(f, "FEC_ORDER={v}"),
            SessionParam::FecKey(v) => write!(f, "FEC_KEY={v}"),
            SessionParam::Wsh(n) => write!(f, "WSH={n}"),
            SessionParam::Other(v) => f.write_str(v),
        }
    }
}

/// The field after the tag of `a=cryptoscale` (MS-SDPEXT §3.1.5.2). Clients send `client`; the other
/// values and their meaning are **UNCONFIRMED**.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleDirection {
    /// `client`: seen in every captured Microsoft client offer.
    Client,
    /// `server`: what Vienna writes in its answer (UNCONFIRMED).
    Server,
    /// Any other token, kept verbatim.
    Other(String),
}

impl ScaleDirection {
    fn parse(token: &str) -> ScaleDirection {
        match token {
            "client" => ScaleDirection::Client,
            "server" => ScaleDirection::Server,
            t => ScaleDirection::Other(t.into()),
        }
    }
}

impl fmt::Display for ScaleDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScaleDirection::Client => f.write_str("client"),
            ScaleDirection::Server => f.write_str("server"),
            ScaleDirection::Other(t) => f.write_str(t),
        }
    }
}

/// One `a=crypto` (or, with [`CryptoAttribute::scale`] set, `a=cryptoscale`) line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    /// The tag (1 to 9 digits), unique among the crypto lines of one media description.
    pub tag: u32,
    /// `Some` for `a=cryptoscale`: its direction field.
    pub scale: Option<ScaleDirection>,
    /// The crypto suite as written; [`CryptoAttribute::known_suite`] maps it.
    pub suite: String,
    /// One or more keys (MS-SDPEXT: exactly one).
    pub keys: Vec<KeyParam>,
    /// Session parameters.
    pub session_params: Vec<SessionParam>,
}

impl CryptoAttribute {
    /// An `a=crypto` line with one key.
    pub fn new(tag: u32, suite: Suite, key: KeyParam) -> CryptoAttribute {
        CryptoAttribute { tag, scale: None, suite: suite.name().into(), keys: vec![key], session_params: Vec::new() }
    }

    /// The suite, if this crate supports it.
    pub fn known_suite(&self) -> Option<Suite> {
        Suite::from_name(&self.suite)
    }

    /// The SDP attribute name: `crypto` or `cryptoscale`.
    pub fn name(&self) -> &'static str {
        if self.scale.is_some() { "cryptoscale" } else { "crypto" }
    }

    /// Parses a whole line, `a=crypto:...` or `a=cryptoscale:...` (the `a=` and a trailing CR LF are
    /// optional).
    pub fn parse_line(line: &str) -> Result<CryptoAttribute> {
        let line = line.trim_end_matches(['\r', '\n']);
        let line = line.strip_prefix("a=").unwrap_or(line);
        let (name, value) = line.split_once(':').ok_or_else(|| Error::Sdes("not an attribute".into()))?;
        CryptoAttribute::parse(name, value)
    }

    /// Parses the value of attribute `name` (`crypto` or `cryptoscale`), i.e. the text after the colon.
    pub fn parse(name: &str, value: &str) -> Result<CryptoAttribute> {
        let scale = match name {
            "crypto" => false,
            "cryptoscale" => true,
            _ => return Err(Error::Sdes(format!("not a crypto attribute: {:?}", truncate(name)))),
        };
        let mut fields = value.split([' ', '\t']).filter(|f| !f.is_empty());
        let tag = fields
            .next()
            .and_then(|t| parse_digits(t, 9))
            .and_then(|t| u32::try_from(t).ok())
            .filter(|&t| t <= MAX_TAG)
            .ok_or_else(|| Error::Sdes("bad tag".into()))?;
        let scale = if scale {
            Some(ScaleDirection::parse(fields.next().ok_or_else(|| Error::Sdes("missing scale direction".into()))?))
        } else {
            None
        };
        let suite = fields.next().ok_or_else(|| Error::Sdes("missing crypto suite".into()))?;
        if !suite.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            return Err(Error::Sdes("bad crypto suite".into()));
        }
        let key_params = fields.next().ok_or_else(|| Error::Sdes("missing key parameters".into()))?;
        let keys = key_params.split(';').map(KeyParam::parse).collect::<Result<Vec<_>>>()?;
        let session_params = fields.map(SessionParam::parse).collect();
        Ok(CryptoAttribute { tag, scale, suite: suite.into(), keys, session_params })
    }

    /// The attribute value (what follows `a=crypto:`), single-spaced.
    pub fn value(&self) -> String {
        let mut s = self.tag.to_string();
        if let Some(d) = &self.scale {
            s.push(' ');
            s.push_str(&d.to_string());
        }
        s.push(' ');
        s.push_str(&self.suite);
        s.push(' ');
        let keys: Vec<String> = self.keys.iter().map(KeyParam::to_string).collect();
        s.push_str(&keys.join(";"));
        for p in &self.session_params {
            s.push(' ');
            s.push_str(&p.to_string());
        }
        s
    }
}

impl fmt::Display for CryptoAttribute {
    /// The whole line without CR LF: `a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a={}:{}", self.name(), self.value())
    }
}

/// A decimal number of at most `max_digits` digits (and no sign, no spaces).
fn parse_digits(text: &str, max_digits: usize) -> Option<u64> {
    if text.is_empty() || text.len() > max_digits || !text.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(24) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Base64 as this crate writes it (standard alphabet, padded).
pub fn encode_key(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Skype for Business 2016 offer (MS-SDPEXT forms: scale, with MKI, without MKI; same key).
    const SFB: [&str; 3] = [
        "a=cryptoscale:1 client AES_CM_128_HMAC_SHA1_80 inline:IQ+Q4YcN8irlbEovMTkF8LL/uMV0JIGFWrAxrrpY|2^31|1:1",
        "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:IQ+Q4YcN8irlbEovMTkF8LL/uMV0JIGFWrAxrrpY|2^31|1:1",
        "a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:IQ+Q4YcN8irlbEovMTkF8LL/uMV0JIGFWrAxrrpY|2^31",
    ];

    #[test]
    fn microsoft_forms() {
        let a: Vec<CryptoAttribute> = SFB.iter().map(|l| CryptoAttribute::parse_line(l).unwrap()).collect();
        assert_eq!(a[0].scale, Some(ScaleDirection::Client));
        assert_eq!(a[0].tag, 1);
        assert_eq!(a[1].scale, None);
        assert_eq!(a[0].keys[0].key_salt, a[2].keys[0].key_salt, "the same key in every form");
        assert_eq!(a[0].keys[0].key_salt.len(), 30);
        assert_eq!(a[1].keys[0].mki, Some(Mki { value: 1, length: 1 }));
        assert_eq!(a[2].keys[0].mki, None);
        assert_eq!(a[2].keys[0].lifetime, Some(Lifetime::PowerOfTwo(31)));
        assert_eq!(a[2].keys[0].lifetime.unwrap().packets(), 1 << 31);
        for (attr, line) in a.iter().zip(SFB) {
            assert_eq!(attr.known_suite(), Some(Suite::AesCm128HmacSha1_80));
            assert_eq!(attr.to_string(), line, "round trip");
        }
    }

    #[test]
    fn rfc4568_examples() {
        // RFC 4568 §4 and §8.1 (folded lines joined; several keys, a decimal lifetime, session parameters).
        let line = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4";
        let a = CryptoAttribute::parse_line(line).unwrap();
        assert_eq!(a.keys[0].mki, Some(Mki { value: 1, length: 4 }));
        assert_eq!(a.to_string(), line);
        let multi = "a=crypto:2 AES_CM_128_HMAC_SHA1_32 \
                     inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32;\
                     inline:QUJjZGVmZ2hpSktMbW9QUXJzVFVWV3l6eHl6dUlq|1048576|2:32 KDR=1 WSH=128 FEC_ORDER=FEC_SRTP";
        let a = CryptoAttribute::parse_line(multi).unwrap();
        assert_eq!(a.keys.len(), 2);
        assert_eq!(a.keys[1].lifetime, Some(Lifetime::Count(1_048_576)));
        assert_eq!(a.keys[1].mki, Some(Mki { value: 2, length: 32 }));
        assert_eq!(
            a.session_params,
            vec![SessionParam::Kdr(1), SessionParam::Wsh(128), SessionParam::FecOrder("FEC_SRTP".into())]
        );
        assert_eq!(a.to_string(), multi);
    }

    #[test]
    fn whitespace_and_unknowns() {
        let a = CryptoAttribute::parse(
            "crypto",
            "7\tF8_128_HMAC_SHA1_80   inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5QUJjZGVm X_FOO",
        )
        .unwrap();
        assert_eq!(a.known_suite(), None);
        assert_eq!(a.session_params, vec![SessionParam::Other("X_FOO".into())]);
        assert_eq!(a.value(), "7 F8_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5QUJjZGVm X_FOO");
        // GCM key || salt is 28 bytes: padding is accepted either way.
        let key = [9u8; 28];
        let padded = STANDARD.encode(key);
        assert!(padded.ends_with('='));
        let unpadded = padded.trim_end_matches('=');
        for k in [padded.as_str(), unpadded] {
            let a = CryptoAttribute::parse("crypto", &format!("1 AEAD_AES_128_GCM inline:{k}")).unwrap();
            assert_eq!(a.keys[0].master_key(Suite::AeadAes128Gcm).unwrap().as_bytes(), &key);
        }
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "x AES_CM_128_HMAC_SHA1_80 inline:AAAA",
            "1234567890 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
            "1",
            "1 AES_CM_128_HMAC_SHA1_80",
            "1 AES-CM inline:AAAA",
            "1 AES_CM_128_HMAC_SHA1_80 uri:http://x",
            "1 AES_CM_128_HMAC_SHA1_80 inline:",
            "1 AES_CM_128_HMAC_SHA1_80 inline:A*AA",
            "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA|2^x",
            "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA|1:0",
            "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA|256:1",
            "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA|1:1|2^31",
            "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA|1:1|2:1",
            "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA|2^300",
        ] {
            assert!(CryptoAttribute::parse("crypto", bad).is_err(), "{bad:?}");
        }
        assert!(CryptoAttribute::parse("cryptoscale", "1").is_err());
        assert!(CryptoAttribute::parse_line("a=rtpmap:0 PCMU/8000").is_err());
    }

    #[test]
    fn vector_file_lines_round_trip() {
        let text = include_str!("../../../testvectors/srtp/sdes-offers.sdp");
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("a=crypto")).collect();
        assert_eq!(lines.len(), 7);
        for line in lines {
            let a = CryptoAttribute::parse_line(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(a.to_string(), line);
        }
    }

    #[test]
    fn mki_bytes() {
        let m = Mki::new(0x0102, 3).unwrap();
        let mut b = [0; 3];
        m.write(&mut b);
        assert_eq!(b, [0, 1, 2]);
        assert!(m.matches(&[0, 1, 2]));
        assert!(!m.matches(&[0, 1, 3]));
        assert!(!m.matches(&[1, 2]));
        let wide = Mki::new(5, 16).unwrap();
        let mut b = [0xff; 16];
        wide.write(&mut b);
        assert_eq!(b[15], 5);
        assert!(b[..15].iter().all(|&x| x == 0));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = CryptoAttribute::parse_line(&s);
            let _ = CryptoAttribute::parse("crypto", &s);
            let _ = CryptoAttribute::parse("cryptoscale", &s);
        }

        #[test]
        fn round_trip(tag in 0u32..=MAX_TAG, key in proptest::collection::vec(proptest::num::u8::ANY, 1..48),
                      life in proptest::option::of(0u8..64), mki in proptest::option::of((0u64..256, 1u8..5)),
                      scale in proptest::bool::ANY) {
            let a = CryptoAttribute {
                tag,
                scale: scale.then_some(ScaleDirection::Client),
                suite: "AES_CM_128_HMAC_SHA1_80".into(),
                keys: vec![KeyParam {
                    key_salt: key,
                    lifetime: life.map(Lifetime::PowerOfTwo),
                    mki: mki.map(|(v, l)| Mki::new(v, l).unwrap()),
                }],
                session_params: vec![SessionParam::Wsh(64)],
            };
            proptest::prop_assert_eq!(CryptoAttribute::parse_line(&a.to_string()).unwrap(), a);
        }
    }
}
