//! An independent implementation of the RFC 3711 default transform, written from the RFC: key derivation
//! (§4.3.1, KDR 0, AES-128 PRF §4.3.3), AES counter mode (§4.1.1) and HMAC-SHA1 (§4.2.1) for SRTP and SRTCP
//! (§3.4). It checks the RFC's Appendix B vectors and lets the tests (and the fuzz target) cross-check
//! libsrtp packet by packet, at any rollover counter.
//!
//! It allocates and is slow: it is an oracle, never on the packet path. Left out: AES-GCM, MKI, replay
//! protection, key derivation rates other than 0.

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use openssl::symm::{Cipher, Crypter, Mode};

use crate::{Error, Result};

/// AES-128 counter-mode keystream of `len` bytes from the 16-byte counter block `iv` (RFC 3711 §4.1.1:
/// the block counter is added to the IV's low bits).
pub fn aes_cm_keystream(key: &[u8; 16], iv: &[u8; 16], len: usize) -> Result<Vec<u8>> {
    let mut c = Crypter::new(Cipher::aes_128_ctr(), Mode::Encrypt, key, Some(iv)).map_err(openssl_err)?;
    let zeros = vec![0u8; len];
    let mut out = vec![0u8; len + 16];
    let n = c.update(&zeros, &mut out).map_err(openssl_err)?;
    out.truncate(n);
    Ok(out)
}

/// RFC 3711 §4.3.1 with KDR 0: `len` bytes of key material for `label` from the master key and salt.
pub fn derive(master_key: &[u8; 16], master_salt: &[u8; 14], label: u8, len: usize) -> Result<Vec<u8>> {
    // x = key_id XOR master_salt, key_id = label || r (48 bits of zero): the label lands in byte 7.
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(master_salt);
    iv[7] ^= label;
    aes_cm_keystream(master_key, &iv, len)
}

/// Session keys of one direction (SRTP or SRTCP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// k_e, the AES-128 key.
    pub cipher_key: [u8; 16],
    /// k_a, the HMAC-SHA1 key (160 bits).
    pub auth_key: [u8; 20],
    /// k_s, the 112-bit session salt.
    pub salt: [u8; 14],
}

impl SessionKeys {
    /// Derives the SRTP keys (labels 0, 1, 2) or the SRTCP keys (labels 3, 4, 5).
    pub fn derive(master_key: &[u8; 16], master_salt: &[u8; 14], rtcp: bool) -> Result<SessionKeys> {
        let base = if rtcp { 3 } else { 0 };
        let mut keys = SessionKeys { cipher_key: [0; 16], auth_key: [0; 20], salt: [0; 14] };
        keys.cipher_key.copy_from_slice(&derive(master_key, master_salt, base, 16)?);
        keys.auth_key.copy_from_slice(&derive(master_key, master_salt, base + 1, 20)?);
        keys.salt.copy_from_slice(&derive(master_key, master_salt, base + 2, 14)?);
        Ok(keys)
    }

    /// IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16) (RFC 3711 §4.1.1).
    fn iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
            iv[4 + i] ^= b;
        }
        for (i, b) in index.to_be_bytes()[2..].iter().enumerate() {
            iv[8 + i] ^= b;
        }
        iv
    }

    fn hmac(&self, parts: &[&[u8]]) -> Result<Vec<u8>> {
        let key = PKey::hmac(&self.auth_key).map_err(openssl_err)?;
        let mut s = Signer::new(MessageDigest::sha1(), &key).map_err(openssl_err)?;
        for p in parts {
            s.update(p).map_err(openssl_err)?;
        }
        s.sign_to_vec().map_err(openssl_err)
    }
}

fn rtp_header_len(p: &[u8]) -> Result<usize> {
    let bad = || Error::BadPacket("not an RTP packet");
    if p.len() < 12 {
        return Err(bad());
    }
    let mut n = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let ext = p.get(n + 2..n + 4).ok_or_else(bad)?;
        n += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    if n > p.len() { Err(bad()) } else { Ok(n) }
}

/// SRTP-protects `rtp` with rollover counter `roc` and a `tag_len`-byte tag (10 or 4).
pub fn protect_rtp(keys: &SessionKeys, roc: u32, rtp: &[u8], tag_len: usize) -> Result<Vec<u8>> {
    let header = rtp_header_len(rtp)?;
    let seq = u16::from_be_bytes([rtp[2], rtp[3]]);
    let ssrc = u32::from_be_bytes([rtp[8], rtp[9], rtp[10], rtp[11]]);
    let index = (u64::from(roc) << 16) | u64::from(seq);
    let stream = aes_cm_keystream(&keys.cipher_key, &keys.iv(ssrc, index), rtp.len() - header)?;
    let mut out = rtp.to_vec();
    for (b, k) in out[header..].iter_mut().zip(stream) {
        *b ^= k;
    }
    let tag = keys.hmac(&[&out, &roc.to_be_bytes()])?;
    out.extend_from_slice(&tag[..tag_len]);
    Ok(out)
}

/// SRTCP-protects `rtcp` with SRTCP `index` (31 bits), encryption on, a 10-byte tag.
pub fn protect_rtcp(keys: &SessionKeys, index: u32, rtcp: &[u8]) -> Result<Vec<u8>> {
    if rtcp.len() < 8 {
        return Err(Error::BadPacket("not an RTCP packet"));
    }
    let ssrc = u32::from_be_bytes([rtcp[4], rtcp[5], rtcp[6], rtcp[7]]);
    let stream = aes_cm_keystream(&keys.cipher_key, &keys.iv(ssrc, u64::from(index & 0x7fff_ffff)), rtcp.len() - 8)?;
    let mut out = rtcp.to_vec();
    for (b, k) in out[8..].iter_mut().zip(stream) {
        *b ^= k;
    }
    out.extend_from_slice(&(index | 0x8000_0000).to_be_bytes());
    let tag = keys.hmac(&[&out])?;
    out.extend_from_slice(&tag[..10]);
    Ok(out)
}

fn openssl_err(e: openssl::error::ErrorStack) -> Error {
    Error::Srtp(format!("openssl: {e}"))
}

/// Reads a test-vector file of `name: hex` lines (`#` comments) — shared by the crate's tests.
#[cfg(test)]
pub(crate) fn vectors(text: &str) -> std::collections::HashMap<String, Vec<u8>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, hex) = l.split_once(':').expect("name: hex");
            (name.trim().to_string(), unhex(hex.trim()))
        })
        .collect()
}

/// Hex to bytes (test helper).
#[cfg(test)]
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const B2: &str = include_str!("../../../testvectors/srtp/rfc3711-b2-aes-cm-keystream.txt");
    const B3: &str = include_str!("../../../testvectors/srtp/rfc3711-b3-key-derivation.txt");
    const LIBSRTP: &str = include_str!("../../../testvectors/srtp/libsrtp-aes-cm-128-hmac-sha1-80.txt");

    fn arr<const N: usize>(v: &[u8]) -> [u8; N] {
        v[..N].try_into().unwrap()
    }

    #[test]
    fn rfc3711_b2_keystream() {
        let v = vectors(B2);
        let stream = aes_cm_keystream(&arr(&v["session-key"]), &arr(&v["iv"]), 0xff02 * 16).unwrap();
        for (name, block) in v.iter().filter(|(k, _)| k.starts_with("block-")) {
            let i = usize::from_str_radix(&name["block-".len()..], 16).unwrap();
            assert_eq!(&stream[i * 16..i * 16 + 16], &block[..], "{name}");
        }
        assert_eq!(v.keys().filter(|k| k.starts_with("block-")).count(), 6);
    }

    #[test]
    fn rfc3711_b3_key_derivation() {
        let v = vectors(B3);
        let (k, s) = (arr(&v["master-key"]), arr(&v["master-salt"]));
        assert_eq!(derive(&k, &s, 0, 16).unwrap(), v["label-0-srtp-cipher-key"]);
        assert_eq!(derive(&k, &s, 2, 14).unwrap(), v["label-2-srtp-salt"]);
        assert_eq!(derive(&k, &s, 1, 32).unwrap(), v["label-1-srtp-auth-key"], "all 32 bytes the RFC prints");
        let rtp = SessionKeys::derive(&k, &s, false).unwrap();
        assert_eq!(rtp.auth_key[..], v["label-1-srtp-auth-key"][..20]);
        let rtcp = SessionKeys::derive(&k, &s, true).unwrap();
        assert_eq!(rtcp.cipher_key[..], v["label-3-srtcp-cipher-key"][..]);
        assert_eq!(rtcp.auth_key[..], v["label-4-srtcp-auth-key"][..]);
        assert_eq!(rtcp.salt[..], v["label-5-srtcp-salt"][..]);
    }

    /// The reference transform, keyed by B.3's derivation, reproduces libsrtp's reference packets.
    #[test]
    fn reproduces_libsrtp_reference_packets() {
        let v = vectors(LIBSRTP);
        let m = &v["master-key-salt"];
        let (k, s) = (arr(&m[..16]), arr(&m[16..]));
        let rtp_keys = SessionKeys::derive(&k, &s, false).unwrap();
        assert_eq!(protect_rtp(&rtp_keys, 0, &v["rtp"], 10).unwrap(), v["srtp"]);
        assert_eq!(protect_rtp(&rtp_keys, 0, &v["rtp"], 4).unwrap(), v["srtp-32"]);
        let rtcp_keys = SessionKeys::derive(&k, &s, true).unwrap();
        assert_eq!(protect_rtcp(&rtcp_keys, 1, &v["rtcp"]).unwrap(), v["srtcp"]);
    }

    #[test]
    fn refuses_non_rtp() {
        let keys = SessionKeys { cipher_key: [0; 16], auth_key: [0; 20], salt: [0; 14] };
        assert!(protect_rtp(&keys, 0, &[0x80; 5], 10).is_err());
        assert!(protect_rtp(&keys, 0, &[0x9f; 12], 10).is_err(), "CSRC count beyond the packet");
        assert!(protect_rtcp(&keys, 0, &[0x80; 5]).is_err());
    }
}
