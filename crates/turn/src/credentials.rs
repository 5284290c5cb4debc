//! Credentials for the long-term credential mechanism (RFC 8489 §9.2) and the TURN REST API
//! ephemeral credentials (draft-uberti-behave-turn-rest-00 as implemented by coturn's
//! `use-auth-secret`): username `expiry` or `expiry:user`, where `expiry` is a Unix time in
//! seconds, and password = base64(HMAC-SHA1(secret, username)).

use std::collections::HashMap;

use vienna_stun::integrity::long_term_key;

/// Looks up long-term keys; the driver implements it over the store (keep it fast: it is called
/// on the control path of the relay's worker thread; cache if the store is slow).
pub trait CredentialStore {
    /// MD5(username ":" realm ":" password) for a known user, `None` otherwise.
    fn long_term_key(&self, username: &str, realm: &str) -> Option<[u8; 16]>;
}

impl<F: Fn(&str, &str) -> Option<[u8; 16]>> CredentialStore for F {
    fn long_term_key(&self, username: &str, realm: &str) -> Option<[u8; 16]> {
        self(username, realm)
    }
}

/// A fixed table of users and keys (tests, small deployments).
#[derive(Clone, Debug, Default)]
pub struct StaticUsers {
    keys: HashMap<(String, String), [u8; 16]>,
}

impl StaticUsers {
    /// An empty table.
    pub fn new() -> StaticUsers {
        StaticUsers::default()
    }
    /// Add a user with a clear-text password (the key is computed here).
    pub fn with_password(mut self, username: &str, realm: &str, password: &str) -> StaticUsers {
        self.keys.insert((username.to_string(), realm.to_string()), long_term_key(username, realm, password));
        self
    }
}

impl CredentialStore for StaticUsers {
    fn long_term_key(&self, username: &str, realm: &str) -> Option<[u8; 16]> {
        self.keys.get(&(username.to_string(), realm.to_string())).copied()
    }
}

pub use vienna_edge_auth::rest::{rest_expiry, rest_password};

/// The long-term key for a TURN REST username under one secret.
pub fn rest_key(secret: &[u8], username: &str, realm: &str) -> [u8; 16] {
    long_term_key(username, realm, &rest_password(secret, username))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_key_is_the_long_term_key_of_the_rest_password() {
        // The username and password rules themselves are vienna-edge-auth's (tested there).
        let key = rest_key(b"north", "1700000000:alice", "example.org");
        assert_eq!(key, long_term_key("1700000000:alice", "example.org", &rest_password(b"north", "1700000000:alice")));
        assert_ne!(key, rest_key(b"south", "1700000000:alice", "example.org"));
    }
}
