//! The signaling core's view of the store's accounts, with a short cache so a burst of requests from one
//! user costs one store read.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vienna_signaling::{Account, Directory};
use vienna_sip::digest::Ha1;
use vienna_store::{Aor, Store};

/// How long a found account is reused before the store is asked again (password changes and disabled
/// accounts take effect within this time).
const HIT_TTL: Duration = Duration::from_secs(10);
/// How long an unknown name stays unknown (limits store reads by a client guessing names).
const MISS_TTL: Duration = Duration::from_secs(5);
/// Most cached entries per map; a map is emptied when it grows past this.
const MAX_ENTRIES: usize = 50_000;

type Cache = RefCell<HashMap<String, (Option<Account>, Instant)>>;

/// Accounts from the store for one realm.
pub struct StoreDirectory {
    store: Arc<dyn Store>,
    realm: String,
    by_aor: Cache,
    by_auth: Cache,
}

impl StoreDirectory {
    /// Looks accounts up in `store`; Digest user names are those of `realm`.
    pub fn new(store: Arc<dyn Store>, realm: &str) -> Self {
        Self { store, realm: realm.to_owned(), by_aor: Cache::default(), by_auth: Cache::default() }
    }

    fn cached(cache: &Cache, key: &str, fetch: impl FnOnce() -> Option<Account>) -> Option<Account> {
        let now = Instant::now();
        if let Some((found, at)) = cache.borrow().get(key) {
            let ttl = if found.is_some() { HIT_TTL } else { MISS_TTL };
            if now.duration_since(*at) < ttl {
                return found.clone();
            }
        }
        let found = fetch();
        let mut map = cache.borrow_mut();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key.to_owned(), (found.clone(), now));
        found
    }

    fn convert(found: vienna_store::Result<Option<(vienna_store::Account, vienna_store::Secrets)>>) -> Option<Account> {
        match found {
            Ok(Some((account, secrets))) => Some(Account {
                aor: account.uri,
                enabled: account.enabled,
                ha1: Ha1 { md5: secrets.ha1_md5, sha256: secrets.ha1_sha256 },
            }),
            Ok(None) => None,
            Err(e) => {
                metrics::counter!("vienna_store_errors_total").increment(1);
                tracing::warn!(error = %e, "sip: account lookup failed");
                None
            }
        }
    }
}

impl Directory for StoreDirectory {
    fn account(&self, aor: &str) -> Option<Account> {
        Self::cached(&self.by_aor, aor, || {
            let aor = Aor::parse(aor, None).ok()?;
            Self::convert(self.store.account_secrets(&aor))
        })
    }

    fn account_by_auth(&self, username: &str, realm: &str) -> Option<Account> {
        if realm != self.realm {
            return None;
        }
        Self::cached(&self.by_auth, username, || Self::convert(self.store.account_by_auth_username(username, realm)))
    }
}

#[cfg(test)]
mod tests {
    use vienna_store::{AccountUpdate, NewAccount, Secrets, SqliteStore};

    use super::*;

    #[test]
    fn accounts_come_from_the_store() {
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let aor = Aor::parse("alice", Some("example.test")).unwrap();
        let secrets = Secrets::derive("alice", "example.test", "pw");
        let account =
            NewAccount { aor: aor.clone(), display_name: String::new(), enabled: true, secrets: secrets.clone() };
        store.add_account(&account, 0).unwrap();
        let dir = StoreDirectory::new(store.clone(), "example.test");
        let found = dir.account("sip:alice@example.test").unwrap();
        assert_eq!(found.ha1, Ha1::derive("alice", "example.test", "pw"));
        assert!(found.enabled);
        assert_eq!(dir.account_by_auth("alice", "example.test").unwrap().aor, "sip:alice@example.test");
        assert!(dir.account_by_auth("alice", "other.test").is_none());
        assert!(dir.account("sip:bob@example.test").is_none());

        store.update_account(&aor, &AccountUpdate { enabled: Some(false), ..Default::default() }, 1).unwrap();
        let fresh = StoreDirectory::new(store, "example.test");
        assert!(!fresh.account("sip:alice@example.test").unwrap().enabled);
    }
}
