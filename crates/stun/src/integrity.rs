//! Credentials and message integrity (RFC 8489 §9.1, §9.2, §14.5, §14.6, §14.7).
//!
//! The long-term key is MD5(username ":" realm ":" password), the same 16 bytes as SIP Digest
//! HA1, so a store can keep it precomputed. The short-term key is the password itself.
//! SASLprep/OpaqueString preparation is not applied (left out: strings are used as given), and
//! the SHA-256 password algorithm (key = SHA-256 of the same string) is provided for
//! completeness but the relay core uses the MD5 key with either integrity attribute.

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

/// Long-term credential key: MD5(username ":" realm ":" password).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// Long-term key with PASSWORD-ALGORITHM SHA-256: SHA-256(username ":" realm ":" password).
pub fn long_term_key_sha256(username: &str, realm: &str, password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// Short-term credential key: the password bytes (no SASLprep).
pub fn short_term_key(password: &str) -> Vec<u8> {
    password.as_bytes().to_vec()
}

/// HMAC-SHA1 over the concatenation of `parts`; `None` only if the key is rejected.
pub fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> Option<[u8; 20]> {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key).ok()?;
    for p in parts {
        mac.update(p);
    }
    Some(mac.finalize().into_bytes().into())
}

pub use vienna_crypto::{ct_eq, hmac_sha256};

/// CRC-32 (ISO HDLC, as zlib) over the concatenation of `parts`.
pub fn crc32(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5769_long_term_key() {
        // RFC 5769 §2.4: username "<U+30DE><U+30C8><U+30EA><U+30C3><U+30AF><U+30B9>", realm "example.org", password "TheMatrIX"
        let k = long_term_key("\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}", "example.org", "TheMatrIX");
        assert_eq!(k.len(), 16);
        assert!(ct_eq(&k, &k));
        assert!(!ct_eq(&k, &[0; 16]));
    }
}
