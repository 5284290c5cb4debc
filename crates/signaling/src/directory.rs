//! The user directory the core consults: who exists, whether they may sign in, and their Digest secrets.

use vienna_presence::{Decision, Policy, WatcherState};
use vienna_sip::digest::Ha1;

/// A local account as the signaling core sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Address of record, `sip:alice@example.com`.
    pub aor: String,
    /// Disabled accounts cannot register, send or receive.
    pub enabled: bool,
    /// Digest HA1 values for the core's realm.
    pub ha1: Ha1,
}

/// Looks accounts up. Implementations may cache; they are called on the core's thread, once per request
/// that needs an account.
pub trait Directory {
    /// The account whose address of record is `aor` (`sip:user@domain`, as [`vienna_sip::SipUri::aor`]).
    fn account(&self, aor: &str) -> Option<Account>;
    /// The account whose Digest user name is `username` in `realm`.
    fn account_by_auth(&self, username: &str, realm: &str) -> Option<Account>;
    /// What `owner` decided about `watcher` watching its presence. By default nobody has decided anything
    /// (every watcher is pending and unrecorded).
    fn watcher_decision(&self, _owner: &str, _watcher: &str) -> Decision {
        Decision { state: WatcherState::Pending, recorded: false }
    }
    /// The contacts `owner` subscribes to (its contact list), for its contact-list subscription.
    fn contacts(&self, _owner: &str) -> Vec<String> {
        Vec::new()
    }
    /// Recorded watchers of `owner` still waiting for its decision (URI, display name).
    fn pending_watchers(&self, _owner: &str) -> Vec<(String, Option<String>)> {
        Vec::new()
    }
    /// The presence state `owner` set by hand for all its devices (durable), if any.
    fn manual_presence(&self, _owner: &str) -> Option<vienna_store::ManualPresence> {
        None
    }
}

/// The presence agent's [`Policy`] answered by a [`Directory`].
pub(crate) struct DirectoryPolicy<'a, D>(pub &'a D);

impl<D: Directory> Policy for DirectoryPolicy<'_, D> {
    fn authorize(&self, owner: &str, watcher: &str) -> Decision {
        self.0.watcher_decision(owner, watcher)
    }
    fn contacts(&self, owner: &str) -> Vec<String> {
        self.0.contacts(owner)
    }
    fn pending_watchers(&self, owner: &str) -> Vec<(String, Option<String>)> {
        self.0.pending_watchers(owner)
    }
    fn manual_state(&self, owner: &str) -> Option<vienna_store::ManualPresence> {
        self.0.manual_presence(owner)
    }
}

impl<D: Directory + ?Sized> Directory for &D {
    fn account(&self, aor: &str) -> Option<Account> {
        (**self).account(aor)
    }
    fn account_by_auth(&self, username: &str, realm: &str) -> Option<Account> {
        (**self).account_by_auth(username, realm)
    }
    fn watcher_decision(&self, owner: &str, watcher: &str) -> Decision {
        (**self).watcher_decision(owner, watcher)
    }
    fn contacts(&self, owner: &str) -> Vec<String> {
        (**self).contacts(owner)
    }
    fn pending_watchers(&self, owner: &str) -> Vec<(String, Option<String>)> {
        (**self).pending_watchers(owner)
    }
    fn manual_presence(&self, owner: &str) -> Option<vienna_store::ManualPresence> {
        (**self).manual_presence(owner)
    }
}
