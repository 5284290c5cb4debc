//! MRAS tokens (MS-AVEDGEA; layout known from OfficeSIP's `TokenBlob1/2`, research notes §3.4).
//!
//! A v2 token blob is 36 bytes, big-endian: major version 2, minor 0, size 0x0024, expiry (two
//! u32s, low then high), ClientID = HMAC-SHA1(Key0, identity URI) (20 bytes), flags (u32). The
//! username is `blob ‖ HMAC-SHA1(Key1, blob)` (56 bytes) and the password HMAC-SHA1(Key2,
//! username) (20 bytes); the MRAS XML carries both base64-encoded and clients put the decoded
//! bytes on the wire. A relay holding Key1 and Key2 validates a username and derives its password
//! with no state and no call to the service. v1 blobs (32 bytes, no flags) are accepted too.
//!
//! The expiry is a Windows FILETIME (100 ns units since 1601-01-01), the most likely reading of
//! OfficeSIP's fields; Microsoft's own encoding is UNCONFIRMED, which matters only for tokens minted
//! by a Microsoft MRAS (Vienna's relays validate Vienna's tokens). The three keys are derived from
//! one shared secret ([`MrasKeys::derive`]), so the service and every relay are configured with the
//! same string.
//!
//! libnice strips leading `"` and trailing `"` or NUL bytes from the username and password before it
//! hashes them (its `priv_trim_var`), so [`MrasKeys::mint`] never issues a token whose username or
//! password starts or ends that way: it moves the expiry back by one second and tries again.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use vienna_crypto::{ct_eq, hmac_sha256};

/// Seconds between 1601-01-01 (FILETIME epoch) and 1970-01-01.
const FILETIME_UNIX_OFFSET: u64 = 11_644_473_600;
/// FILETIME ticks per second.
const TICKS: u64 = 10_000_000;
/// Length of a v2 username (blob and MAC).
pub const USERNAME_V2_LEN: usize = 56;
/// Length of a v1 username.
pub const USERNAME_V1_LEN: usize = 52;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not the layout of an MRAS token.
    #[error("not an MRAS token")]
    Malformed,
    /// The MAC does not verify (another key, or altered).
    #[error("token MAC does not verify")]
    BadMac,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
}

/// The keys shared by the credential service (all three) and every relay (Key1 and Key2).
#[derive(Clone)]
pub struct MrasKeys {
    key0: [u8; 32],
    key1: [u8; 32],
    key2: [u8; 32],
}

impl std::fmt::Debug for MrasKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MrasKeys(..)")
    }
}

/// A validated (or freshly minted) token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The username bytes (what goes into USERNAME on the wire).
    pub username: Vec<u8>,
    /// The password bytes (what the MS-TURN key is derived from).
    pub password: [u8; 20],
    /// Expiry, Unix seconds.
    pub expires_unix: u64,
    /// HMAC-SHA1(Key0, identity): binds the token to one SIP identity (the relay cannot check it).
    pub client_id: [u8; 20],
}

fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    match <Hmac<Sha1> as KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().into()
        }
        // HMAC takes keys of any length.
        Err(_) => [0; 20],
    }
}

/// What libnice would trim from a credential before hashing it.
fn trimmed_by_libnice(v: &[u8]) -> bool {
    v.first() == Some(&b'"') || matches!(v.last(), Some(b'"' | 0))
}

impl MrasKeys {
    /// Keys from explicit values (e.g. provisioned separately).
    pub fn new(key0: [u8; 32], key1: [u8; 32], key2: [u8; 32]) -> MrasKeys {
        MrasKeys { key0, key1, key2 }
    }

    /// The three keys derived from one shared secret (HMAC-SHA256 with a label per key).
    pub fn derive(secret: &[u8]) -> MrasKeys {
        MrasKeys {
            key0: hmac_sha256(secret, &[b"vienna mras key0 client id"]),
            key1: hmac_sha256(secret, &[b"vienna mras key1 username mac"]),
            key2: hmac_sha256(secret, &[b"vienna mras key2 password"]),
        }
    }

    /// ClientID of an identity: HMAC-SHA1(Key0, identity).
    pub fn client_id(&self, identity: &str) -> [u8; 20] {
        hmac_sha1(&self.key0, &[identity.as_bytes()])
    }

    /// The password of a username: HMAC-SHA1(Key2, username).
    pub fn password(&self, username: &[u8]) -> [u8; 20] {
        hmac_sha1(&self.key2, &[username])
    }

    fn username(&self, client_id: &[u8; 20], expires_unix: u64) -> Vec<u8> {
        let ft = expires_unix.saturating_add(FILETIME_UNIX_OFFSET).saturating_mul(TICKS);
        let mut u = Vec::with_capacity(USERNAME_V2_LEN);
        u.extend_from_slice(&[2, 0, 0, 0x24]);
        u.extend_from_slice(&(ft as u32).to_be_bytes());
        u.extend_from_slice(&((ft >> 32) as u32).to_be_bytes());
        u.extend_from_slice(client_id);
        u.extend_from_slice(&0u32.to_be_bytes());
        let mac = hmac_sha1(&self.key1, &[&u]);
        u.extend_from_slice(&mac);
        u
    }

    /// Mint a v2 token for `identity` valid until `expires_unix` (or up to a minute earlier, see
    /// the module documentation).
    pub fn mint(&self, identity: &str, expires_unix: u64) -> Token {
        let client_id = self.client_id(identity);
        let mut expiry = expires_unix;
        for _ in 0..60 {
            let username = self.username(&client_id, expiry);
            let password = self.password(&username);
            if !trimmed_by_libnice(&username) && !trimmed_by_libnice(&password) {
                return Token { username, password, expires_unix: expiry, client_id };
            }
            expiry = expiry.saturating_sub(1);
        }
        // 60 unlucky draws in a row (probability about 2^-300): issue the last one anyway.
        let username = self.username(&client_id, expiry);
        let password = self.password(&username);
        Token { username, password, expires_unix: expiry, client_id }
    }

    /// Validate a username at Unix time `now` and derive its password. Constant-time MAC check;
    /// no state.
    pub fn validate(&self, username: &[u8], now_unix: u64) -> Result<Token, TokenError> {
        let blob_len = match (username.len(), username.first(), username.get(2..4)) {
            (USERNAME_V2_LEN, Some(2), Some([0, 0x24])) => 36,
            (USERNAME_V1_LEN, Some(1), Some([0, 0x20])) => 32,
            _ => return Err(TokenError::Malformed),
        };
        let (blob, mac) = username.split_at(blob_len);
        if !ct_eq(&hmac_sha1(&self.key1, &[blob]), mac) {
            return Err(TokenError::BadMac);
        }
        let low = u32::from_be_bytes([blob[4], blob[5], blob[6], blob[7]]);
        let high = u32::from_be_bytes([blob[8], blob[9], blob[10], blob[11]]);
        let ft = (u64::from(high) << 32) | u64::from(low);
        let expires_unix = (ft / TICKS).saturating_sub(FILETIME_UNIX_OFFSET);
        if expires_unix <= now_unix {
            return Err(TokenError::Expired);
        }
        let mut client_id = [0u8; 20];
        client_id.copy_from_slice(&blob[12..32]);
        Ok(Token { username: username.to_vec(), password: self.password(username), expires_unix, client_id })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    /// The OfficeSIP scheme with its debug keys (research notes §7.5): our derivation of the
    /// username and password from the blob matches the self-computed reference.
    #[test]
    fn research_vector_officesip_scheme() {
        let key0: Vec<u8> = (1..=9)
            .chain([10])
            .chain(1..=9)
            .chain([20])
            .chain(1..=9)
            .chain([30])
            .chain(1..=9)
            .chain([40])
            .chain(1..=9)
            .chain([50])
            .chain(1..=9)
            .chain([60])
            .chain(1..=4)
            .collect();
        assert_eq!(key0.len(), 64);
        let key12: Vec<u8> = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0].repeat(2);
        let client_id = hmac_sha1(&key0, &[b"sip:alice@example.com"]);
        assert_eq!(STANDARD.encode(client_id), STANDARD.encode(hex("8f86896993791f582ae84726e470b0c1fd220685")));
        let mut blob = vec![2, 0, 0, 0x24, 0, 0, 0, 0, 0, 0, 0, 0];
        blob.extend_from_slice(&client_id);
        blob.extend_from_slice(&[0; 4]);
        let mut username = blob.clone();
        username.extend_from_slice(&hmac_sha1(&key12, &[&blob]));
        assert_eq!(
            STANDARD.encode(&username),
            "AgAAJAAAAAAAAAAAj4aJaZN5H1gq6Ecm5HCwwf0iBoUAAAAAGNbrpdSr9fNFQNSu7qvzbn/2WW0="
        );
        assert_eq!(STANDARD.encode(hmac_sha1(&key12, &[&username])), "U4wtux90tJ2heppF/tvPWjtnCu8=");
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn mint_validate_expire() {
        let keys = MrasKeys::derive(b"shared secret");
        let t = keys.mint("sip:alice@example.com", 1_800_000_000);
        assert_eq!(t.username.len(), USERNAME_V2_LEN);
        assert_eq!(&t.username[..4], &[2, 0, 0, 0x24]);
        assert!(1_800_000_000 - t.expires_unix < 60);
        assert_eq!(STANDARD.encode(&t.username).get(..5), Some("AgAAJ"), "the header real MRAS usernames show");
        let v = keys.validate(&t.username, 1_700_000_000).unwrap();
        assert_eq!(v, t);
        assert_eq!(keys.validate(&t.username, t.expires_unix), Err(TokenError::Expired));
        let other = MrasKeys::derive(b"another secret");
        assert_eq!(other.validate(&t.username, 1_700_000_000), Err(TokenError::BadMac));
        let mut altered = t.username.clone();
        altered[5] ^= 1;
        assert_eq!(keys.validate(&altered, 1_700_000_000), Err(TokenError::BadMac));
        assert_eq!(keys.validate(b"alice", 1_700_000_000), Err(TokenError::Malformed));
        assert_eq!(keys.validate(&t.username[..55], 1_700_000_000), Err(TokenError::Malformed));
        assert_ne!(t.client_id, keys.mint("sip:bob@example.com", 1_800_000_000).client_id);
    }

    #[test]
    fn minted_tokens_survive_libnice_trimming() {
        let keys = MrasKeys::derive(b"k");
        for i in 0..2000u64 {
            let t = keys.mint("sip:a@b", 1_800_000_000 + i * 7);
            assert!(!trimmed_by_libnice(&t.username) && !trimmed_by_libnice(&t.password));
        }
    }
}
