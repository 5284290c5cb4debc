//! TURN REST API ephemeral credentials (draft-uberti-behave-turn-rest-00, as coturn's
//! `use-auth-secret` implements them): username `expiry` or `expiry:user`, where `expiry` is a Unix
//! time in seconds, and password = base64(HMAC-SHA1(secret, username)). The relay needs only the
//! shared secret to check them.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// The expiry (Unix seconds) of a TURN REST username, `None` if it is not of that form.
pub fn rest_expiry(username: &str) -> Option<u64> {
    let ts = username.split_once(':').map_or(username, |(t, _)| t);
    if ts.is_empty() || ts.len() > 20 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ts.parse().ok()
}

/// The TURN REST password for `username`: base64(HMAC-SHA1(secret, username)).
pub fn rest_password(secret: &[u8], username: &str) -> String {
    let tag = match <Hmac<Sha1> as KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(username.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC accepts keys of any length.
        Err(_) => return String::new(),
    };
    base64::engine::general_purpose::STANDARD.encode(tag)
}

/// A TURN REST credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestCredential {
    /// `expiry:user`.
    pub username: String,
    /// base64(HMAC-SHA1(secret, username)).
    pub password: String,
    /// Expiry, Unix seconds.
    pub expires_unix: u64,
}

/// Mint a credential for `user` valid for `ttl_secs` from `now_unix`.
pub fn mint(secret: &[u8], user: &str, now_unix: u64, ttl_secs: u64) -> RestCredential {
    let expires_unix = now_unix.saturating_add(ttl_secs);
    let username = if user.is_empty() { expires_unix.to_string() } else { format!("{expires_unix}:{user}") };
    let password = rest_password(secret, &username);
    RestCredential { username, password, expires_unix }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_usernames() {
        assert_eq!(rest_expiry("1700000000:alice"), Some(1_700_000_000));
        assert_eq!(rest_expiry("1700000000"), Some(1_700_000_000));
        assert_eq!(rest_expiry("alice"), None);
        assert_eq!(rest_expiry(":alice"), None);
        assert_eq!(rest_expiry("12a:alice"), None);
        let p = rest_password(b"north", "1700000000:alice");
        assert_eq!(p.len(), 28);
        assert_eq!(p, rest_password(b"north", "1700000000:alice"));
        assert_ne!(p, rest_password(b"south", "1700000000:alice"));
        let c = mint(b"north", "alice", 1_699_999_000, 1000);
        assert_eq!(c.username, "1700000000:alice");
        assert_eq!(c.password, p);
        assert_eq!(rest_expiry(&c.username), Some(c.expires_unix));
    }
}
