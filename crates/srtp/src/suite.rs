//! Crypto suites and master keys.
//!
//! The three suites of RFC 4568 §6.2 (AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32) and RFC 7714 §14.1
//! (AEAD_AES_128_GCM), with the lengths RFC 3711 §8.2 / RFC 7714 §12 give them. MS-SDPEXT §3.1.5.1 allows only
//! AES_CM_128_HMAC_SHA1_80 towards Microsoft endpoints. The `_32` suite keeps an 80-bit tag on SRTCP (RFC 4568
//! §6.2.2), as libsrtp and GStreamer do.

use std::fmt;

use srtp::CryptoPolicy;

use crate::{Error, Result};

/// An SRTP crypto suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// AES-128 counter mode, HMAC-SHA1 with an 80-bit tag (RFC 3711 default; MS-SRTP's only suite).
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 with a 32-bit tag on SRTP (80 bits on SRTCP).
    AesCm128HmacSha1_32,
    /// AES-128-GCM with a 16-byte tag (RFC 7714).
    AeadAes128Gcm,
}

impl Suite {
    /// Every suite, in Vienna's default order of preference.
    pub const ALL: [Suite; 3] = [Suite::AesCm128HmacSha1_80, Suite::AeadAes128Gcm, Suite::AesCm128HmacSha1_32];

    /// The name used in `a=crypto` (RFC 4568 §6.2, RFC 7714 §14.1).
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    /// The suite an `a=crypto` name stands for (case-sensitive, as the registry spells them).
    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Master key length in bytes.
    pub fn key_len(self) -> usize {
        16
    }

    /// Master salt length in bytes: 112 bits for AES-CM, 96 bits for GCM (RFC 7714 §12).
    pub fn salt_len(self) -> usize {
        match self {
            Suite::AeadAes128Gcm => 12,
            _ => 14,
        }
    }

    /// Length of key || salt, the bytes carried base64-encoded in `inline:`.
    pub fn master_len(self) -> usize {
        self.key_len() + self.salt_len()
    }

    /// Authentication tag length on SRTP packets.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
            Suite::AeadAes128Gcm => 16,
        }
    }

    /// Authentication tag length on SRTCP packets.
    pub fn rtcp_tag_len(self) -> usize {
        match self {
            Suite::AeadAes128Gcm => 16,
            _ => 10,
        }
    }

    /// Whether the suite is an AEAD (tag computed by the cipher, MKI after the tag: RFC 7714 §8.1).
    pub fn is_aead(self) -> bool {
        self == Suite::AeadAes128Gcm
    }

    /// Largest number of SRTP packets one master key may protect: 2^48 (RFC 3711 §9.2, RFC 4568 §6.2).
    pub fn max_lifetime(self) -> u64 {
        1 << 48
    }

    /// libsrtp policies for SRTP and SRTCP.
    pub(crate) fn policies(self) -> (CryptoPolicy, CryptoPolicy) {
        match self {
            Suite::AesCm128HmacSha1_80 => {
                (CryptoPolicy::aes_cm_128_hmac_sha1_80(), CryptoPolicy::aes_cm_128_hmac_sha1_80())
            }
            Suite::AesCm128HmacSha1_32 => {
                (CryptoPolicy::aes_cm_128_hmac_sha1_32(), CryptoPolicy::aes_cm_128_hmac_sha1_80())
            }
            Suite::AeadAes128Gcm => (CryptoPolicy::aes_gcm_128_16_auth(), CryptoPolicy::aes_gcm_128_16_auth()),
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Longest key || salt of the supported suites.
const MAX_MASTER: usize = 30;

/// A master key and master salt (RFC 3711 §3.2.1) for one suite. `Debug` never shows the bytes; they are
/// overwritten (best effort) when the value is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    suite: Suite,
    bytes: [u8; MAX_MASTER],
}

impl MasterKey {
    /// Key material `key || salt` for `suite`; the length must be the suite's [`Suite::master_len`].
    pub fn new(suite: Suite, key_salt: &[u8]) -> Result<MasterKey> {
        if key_salt.len() != suite.master_len() {
            return Err(Error::InvalidKey("key || salt length does not match the suite"));
        }
        let mut bytes = [0; MAX_MASTER];
        bytes[..key_salt.len()].copy_from_slice(key_salt);
        Ok(MasterKey { suite, bytes })
    }

    /// Fresh key material from the operating system's random source.
    pub fn random(suite: Suite) -> Result<MasterKey> {
        let mut bytes = [0; MAX_MASTER];
        openssl::rand::rand_bytes(&mut bytes[..suite.master_len()]).map_err(|_| Error::Random)?;
        Ok(MasterKey { suite, bytes })
    }

    /// The suite this key is for.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// `key || salt`, as carried in `inline:` and handed to libsrtp.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.suite.master_len()]
    }

    /// The master key part.
    pub fn key(&self) -> &[u8] {
        &self.bytes[..self.suite.key_len()]
    }

    /// The master salt part.
    pub fn salt(&self) -> &[u8] {
        &self.bytes[self.suite.key_len()..self.suite.master_len()]
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, <redacted>)", self.suite)
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.bytes.fill(0);
        // Keep the compiler from treating the wipe as a dead store.
        std::hint::black_box(&self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(Suite::AesCm128HmacSha1_80.master_len(), 30);
        assert_eq!(Suite::AeadAes128Gcm.master_len(), 28);
        assert_eq!(Suite::AesCm128HmacSha1_32.rtp_tag_len(), 4);
        assert_eq!(Suite::AesCm128HmacSha1_32.rtcp_tag_len(), 10);
        for s in Suite::ALL {
            assert_eq!(Suite::from_name(s.name()), Some(s));
            let (rtp, _) = s.policies();
            assert_eq!(rtp.key_len(), s.master_len(), "libsrtp policy for {s}");
        }
        assert_eq!(Suite::from_name("aes_cm_128_hmac_sha1_80"), None);
    }

    #[test]
    fn keys() {
        assert!(MasterKey::new(Suite::AesCm128HmacSha1_80, &[0; 28]).is_err());
        let k = MasterKey::new(Suite::AeadAes128Gcm, &[7; 28]).unwrap();
        assert_eq!(k.key().len(), 16);
        assert_eq!(k.salt().len(), 12);
        assert!(!format!("{k:?}").contains('7'));
        let a = MasterKey::random(Suite::AesCm128HmacSha1_80).unwrap();
        let b = MasterKey::random(Suite::AesCm128HmacSha1_80).unwrap();
        assert_ne!(a.as_bytes(), b.as_bytes());
    }
}
