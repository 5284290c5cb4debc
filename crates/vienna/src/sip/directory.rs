//! The signaling core's view of the store: accounts, and each user's presence policy (ACL entries,
//! watcher decisions, contact list), with short caches so a burst of requests from one user costs one
//! store read.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vienna_presence::{Decision, WatcherState};
use vienna_signaling::{Account, ContactEdit, Directory};
use vienna_sip::digest::Ha1;
use vienna_store::{Ace, Aor, Store, Watcher};

/// How long a found account is reused before the store is asked again (password changes and disabled
/// accounts take effect within this time).
const HIT_TTL: Duration = Duration::from_secs(10);
/// How long an unknown name stays unknown (limits store reads by a client guessing names).
const MISS_TTL: Duration = Duration::from_secs(5);
/// Most cached entries per map; a map is emptied when it grows past this.
const MAX_ENTRIES: usize = 50_000;

/// How long a user's presence policy is reused (a decision made with `vienna watcher` reaches live
/// subscriptions within this plus `presence.reauthorize_secs`).
const POLICY_TTL: Duration = Duration::from_secs(5);

type Cache = RefCell<HashMap<String, (Option<Account>, Instant)>>;

/// What the store says about one user's presence policy.
#[derive(Default)]
struct OwnerPolicy {
    aces: Vec<Ace>,
    watchers: HashMap<String, Watcher>,
    /// Subscribed contacts, as addresses of record.
    contacts: Vec<String>,
    manual: Option<vienna_store::ManualPresence>,
}

/// Accounts and presence policies from the store for one realm.
pub struct StoreDirectory {
    store: Arc<dyn Store>,
    realm: String,
    by_aor: Cache,
    by_auth: Cache,
    policies: RefCell<HashMap<String, (Arc<OwnerPolicy>, Instant)>>,
}

impl StoreDirectory {
    /// Looks accounts up in `store`; Digest user names are those of `realm`.
    pub fn new(store: Arc<dyn Store>, realm: &str) -> Self {
        Self {
            store,
            realm: realm.to_owned(),
            by_aor: Cache::default(),
            by_auth: Cache::default(),
            policies: RefCell::default(),
        }
    }

    /// `owner`'s presence policy, from the cache or the store (empty when the store fails: every watcher
    /// then waits as pending, nobody is shown more than before).
    fn policy(&self, owner: &str) -> Arc<OwnerPolicy> {
        let now = Instant::now();
        if let Some((p, at)) = self.policies.borrow().get(owner)
            && now.duration_since(*at) < POLICY_TTL
        {
            return p.clone();
        }
        let fetched = Aor::parse(owner, None).map_err(|e| e.to_string()).and_then(|aor| {
            let read = || -> vienna_store::Result<OwnerPolicy> {
                let aces = self.store.aces(&aor)?;
                let watchers = self.store.watchers(&aor)?.into_iter().map(|w| (normalize(&w.uri), w)).collect();
                let contacts = self
                    .store
                    .contact_list(&aor)?
                    .contacts
                    .into_iter()
                    .filter(|c| c.subscribed)
                    .map(|c| normalize(&c.uri))
                    .collect();
                let manual = self.store.manual_presence(&aor)?;
                Ok(OwnerPolicy { aces, watchers, contacts, manual })
            };
            read().map_err(|e| e.to_string())
        });
        let policy = Arc::new(fetched.unwrap_or_else(|e| {
            metrics::counter!("vienna_store_errors_total").increment(1);
            tracing::warn!(error = %e, owner, "sip: presence policy lookup failed");
            OwnerPolicy::default()
        }));
        let mut map = self.policies.borrow_mut();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(owner.to_owned(), (policy.clone(), now));
        policy
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

    fn watcher_decision(&self, owner: &str, watcher: &str) -> Decision {
        let p = self.policy(owner);
        let watcher = normalize(watcher);
        let in_contacts = p.contacts.contains(&watcher);
        vienna_presence::decide(owner, &watcher, &p.aces, p.watchers.get(&watcher), in_contacts)
    }

    fn contacts(&self, owner: &str) -> Vec<String> {
        self.policy(owner).contacts.clone()
    }

    fn manual_presence(&self, owner: &str) -> Option<vienna_store::ManualPresence> {
        self.policy(owner).manual.clone()
    }

    fn pending_watchers(&self, owner: &str) -> Vec<(String, Option<String>)> {
        self.policy(owner)
            .watchers
            .values()
            .filter(|w| w.state == WatcherState::Pending)
            .map(|w| (w.uri.clone(), w.display_name.clone()))
            .collect()
    }

    fn ntlm_account(&self, aor: &str) -> Option<(Account, [u8; 16])> {
        let parsed = Aor::parse(aor, None).ok()?;
        match self.store.account_secrets(&parsed) {
            Ok(Some((account, secrets))) => {
                let nt_hash = secrets.nt_hash;
                Some((
                    Account {
                        aor: account.uri,
                        enabled: account.enabled,
                        ha1: Ha1 { md5: secrets.ha1_md5, sha256: secrets.ha1_sha256 },
                    },
                    nt_hash,
                ))
            }
            Ok(None) => None,
            Err(e) => {
                metrics::counter!("vienna_store_errors_total").increment(1);
                tracing::warn!(error = %e, "sip: account lookup failed");
                None
            }
        }
    }

    fn contact_list(&self, owner: &str) -> Option<vienna_store::ContactList> {
        let aor = Aor::parse(owner, None).ok()?;
        match self.store.contact_list(&aor) {
            Ok(mut list) => {
                for c in &mut list.contacts {
                    c.uri = normalize(&c.uri);
                }
                Some(list)
            }
            Err(e) => {
                metrics::counter!("vienna_store_errors_total").increment(1);
                tracing::warn!(error = %e, owner, "sip: contact list lookup failed");
                None
            }
        }
    }

    fn edit_contacts(
        &self,
        owner: &str,
        edit: &ContactEdit,
    ) -> Result<(vienna_store::ContactList, Option<u32>), String> {
        let aor = Aor::parse(owner, None).map_err(|e| e.to_string())?;
        let s = &self.store;
        let mut group = None;
        let result = match edit {
            ContactEdit::PutContact(c) => {
                let mut c = c.clone();
                c.uri = normalize(&c.uri);
                s.put_contact(&aor, &c).map(|_| ())
            }
            ContactEdit::RemoveContact(uri) => {
                let list = s.contact_list(&aor).map_err(|e| e.to_string())?;
                let wanted = normalize(uri);
                match list.contacts.iter().find(|c| normalize(&c.uri) == wanted) {
                    Some(c) => s.remove_contact(&aor, &c.uri).map(|_| ()),
                    None => return Err(format!("no contact {uri}")),
                }
            }
            ContactEdit::AddGroup(name) => s.add_group(&aor, name).map(|(g, _)| group = Some(g.id)),
            ContactEdit::RenameGroup(id, name) => s.rename_group(&aor, *id, name).map(|_| ()),
            ContactEdit::RemoveGroup(id) => s.remove_group(&aor, *id).map(|_| ()),
            ContactEdit::PutAce(ace) => s.put_ace(&aor, ace).map(|_| ()),
            ContactEdit::RemoveAce(scope) => s.remove_ace(&aor, scope).map(|_| ()),
        };
        result.map_err(|e| e.to_string())?;
        // The next authorization question reads the store again.
        self.policies.borrow_mut().remove(owner);
        let list = self.contact_list(owner).ok_or("contact list unreadable")?;
        Ok((list, group))
    }

    fn aces(&self, owner: &str) -> Vec<Ace> {
        self.policy(owner).aces.clone()
    }

    fn display_name(&self, aor: &str) -> Option<String> {
        let parsed = Aor::parse(aor, None).ok()?;
        self.store.account(&parsed).ok().flatten().map(|a| a.display_name).filter(|d| !d.is_empty())
    }
}

/// A stored URI as the address of record the SIP core compares with (`bob@x` → `sip:bob@x`).
fn normalize(uri: &str) -> String {
    match Aor::parse(uri, None) {
        Ok(aor) => aor.as_str().to_owned(),
        Err(_) => uri.to_owned(),
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
