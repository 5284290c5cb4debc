//! Long-term TURN credentials from the store, with a short per-worker cache.
//!
//! The key is the account's Digest MD5 HA1, `MD5(user:realm:password)`, which is exactly the TURN
//! long-term key (RFC 8489 §9.2.2), so one password serves SIP and TURN. The TURN user name is the user
//! part of the address of record (`alice` for `sip:alice@example.com`). Disabled accounts have no key.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vienna_store::Store;
use vienna_turn::CredentialStore;

/// How long a found key is reused before the store is asked again (password changes and disabled
/// accounts take effect within this time).
const HIT_TTL: Duration = Duration::from_secs(10);
/// How long an unknown user stays unknown (limits store lookups by a client guessing names).
const MISS_TTL: Duration = Duration::from_secs(5);
/// Most cached entries; the cache is emptied when it grows past this.
const MAX_ENTRIES: usize = 10_000;

/// A cached answer: the key (or none) and when it was fetched.
type Cached = (Option<[u8; 16]>, Instant);

/// The relay's view of the store's accounts.
pub struct StoreCredentials {
    store: Arc<dyn Store>,
    /// By (user name, realm).
    cache: RefCell<HashMap<(String, String), Cached>>,
}

impl StoreCredentials {
    /// Looks accounts up in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, cache: RefCell::new(HashMap::new()) }
    }

    fn fetch(&self, username: &str, realm: &str) -> Option<[u8; 16]> {
        match self.store.account_by_auth_username(username, realm) {
            Ok(Some((account, secrets))) if account.enabled => Some(secrets.ha1_md5),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "turn: credential lookup failed");
                None
            }
        }
    }
}

impl CredentialStore for StoreCredentials {
    fn long_term_key(&self, username: &str, realm: &str) -> Option<[u8; 16]> {
        let now = Instant::now();
        let key = (username.to_owned(), realm.to_owned());
        if let Some((found, at)) = self.cache.borrow().get(&key) {
            let ttl = if found.is_some() { HIT_TTL } else { MISS_TTL };
            if now.duration_since(*at) < ttl {
                return *found;
            }
        }
        let found = self.fetch(username, realm);
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
        cache.insert(key, (found, now));
        found
    }
}

#[cfg(test)]
mod tests {
    use vienna_store::{AccountUpdate, Aor, NewAccount, Secrets, SqliteStore};

    use super::*;

    #[test]
    fn keys_come_from_accounts_and_disabled_accounts_have_none() {
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let aor = Aor::parse("alice", Some("example.test")).unwrap();
        let secrets = Secrets::derive("alice", "example.test", "pw");
        let account =
            NewAccount { aor: aor.clone(), display_name: String::new(), enabled: true, secrets: secrets.clone() };
        store.add_account(&account, 0).unwrap();
        let creds = StoreCredentials::new(store.clone());
        assert_eq!(creds.long_term_key("alice", "example.test"), Some(secrets.ha1_md5));
        assert_eq!(creds.long_term_key("alice", "other.test"), None);
        assert_eq!(creds.long_term_key("bob", "example.test"), None);

        store.update_account(&aor, &AccountUpdate { enabled: Some(false), ..Default::default() }, 1).unwrap();
        let fresh = StoreCredentials::new(store);
        assert_eq!(fresh.long_term_key("alice", "example.test"), None, "disabled account");
    }
}
