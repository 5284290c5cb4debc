//! The storage interface every back end implements.

use crate::{
    Account, AccountUpdate, Ace, AceScope, Aor, Binding, BindingChange, ConferenceRecord, ContactEntry, ContactList,
    Group, ManualPresence, NewAccount, Result, Secrets, UnixTime, Watcher,
};

/// Persistent state of a Vienna server. Every method that returns `Ok` has made its change durable: it
/// survives a crash of the process right after.
///
/// Owners (of bindings, contact lists, ACLs, watchers and conferences) are accounts; removing an account
/// removes everything it owns. Mutations of a user's groups, contacts and ACL raise the version of its
/// [`ContactList`] and return the new version.
pub trait Store: Send + Sync + 'static {
    /// Checks that the back end answers.
    fn ping(&self) -> Result<()>;
    /// Makes sure everything written is on stable storage and compacts logs; called at shutdown.
    fn flush(&self) -> Result<()>;

    /// Creates an account; `AlreadyExists` if the address of record is taken.
    fn add_account(&self, account: &NewAccount, now: UnixTime) -> Result<Account>;
    /// The account, if it exists.
    fn account(&self, aor: &Aor) -> Result<Option<Account>>;
    /// The account and its secrets, if it exists.
    fn account_secrets(&self, aor: &Aor) -> Result<Option<(Account, Secrets)>>;
    /// The account and secrets whose authentication user name and realm match (TURN and Digest look up
    /// by user name).
    fn account_by_auth_username(&self, username: &str, realm: &str) -> Result<Option<(Account, Secrets)>>;
    /// Every account, by address of record.
    fn list_accounts(&self) -> Result<Vec<Account>>;
    /// Changes an account; `NotFound` if it does not exist.
    fn update_account(&self, aor: &Aor, update: &AccountUpdate, now: UnixTime) -> Result<Account>;
    /// Removes an account and everything it owns; `NotFound` if it does not exist.
    fn remove_account(&self, aor: &Aor) -> Result<()>;

    /// Creates or replaces the binding of `(binding.aor, binding.contact)`.
    fn put_binding(&self, binding: &Binding) -> Result<()>;
    /// Applies `changes` in order as one write: all of them are durable when it returns `Ok`, none on `Err`.
    /// A registrar acknowledges a batch of REGISTERs with one call (group commit).
    fn apply_bindings(&self, changes: &[BindingChange]) -> Result<()>;
    /// Removes one binding; `false` if there was none.
    fn remove_binding(&self, aor: &Aor, contact: &str) -> Result<bool>;
    /// Removes every binding of an address of record; returns how many.
    fn remove_bindings(&self, aor: &Aor) -> Result<usize>;
    /// Bindings of an address of record that have not expired at `now`, by contact.
    fn bindings(&self, aor: &Aor, now: UnixTime) -> Result<Vec<Binding>>;
    /// Every binding that has not expired at `now`, by address of record and contact.
    fn all_bindings(&self, now: UnixTime) -> Result<Vec<Binding>>;
    /// Deletes bindings expired at `now`; returns how many.
    fn remove_expired_bindings(&self, now: UnixTime) -> Result<usize>;

    /// The owner's groups and contacts with the list version.
    fn contact_list(&self, owner: &Aor) -> Result<ContactList>;
    /// Adds a group; `AlreadyExists` if the name is taken. Returns the group and the new list version.
    fn add_group(&self, owner: &Aor, name: &str) -> Result<(Group, u64)>;
    /// Renames a group; returns the new list version.
    fn rename_group(&self, owner: &Aor, id: u32, name: &str) -> Result<u64>;
    /// Removes a group (its contacts stay, out of that group); returns the new list version.
    fn remove_group(&self, owner: &Aor, id: u32) -> Result<u64>;
    /// Creates or replaces a contact; every group must exist. Returns the new list version.
    fn put_contact(&self, owner: &Aor, contact: &ContactEntry) -> Result<u64>;
    /// Removes a contact; returns the new list version.
    fn remove_contact(&self, owner: &Aor, uri: &str) -> Result<u64>;

    /// The owner's access control entries.
    fn aces(&self, owner: &Aor) -> Result<Vec<Ace>>;
    /// Creates or replaces the entry for `ace.scope`; returns the new list version.
    fn put_ace(&self, owner: &Aor, ace: &Ace) -> Result<u64>;
    /// Removes the entry for `scope`; returns the new list version.
    fn remove_ace(&self, owner: &Aor, scope: &AceScope) -> Result<u64>;

    /// The owner's watchers, by URI.
    fn watchers(&self, owner: &Aor) -> Result<Vec<Watcher>>;
    /// Creates or replaces a watcher entry.
    fn put_watcher(&self, owner: &Aor, watcher: &Watcher) -> Result<()>;
    /// Removes a watcher entry; `false` if there was none.
    fn remove_watcher(&self, owner: &Aor, uri: &str) -> Result<bool>;

    /// The presence state the owner set by hand, if any.
    fn manual_presence(&self, owner: &Aor) -> Result<Option<ManualPresence>>;
    /// Sets (`Some`) or clears (`None`) the owner's manual presence state.
    fn set_manual_presence(&self, owner: &Aor, state: Option<&ManualPresence>) -> Result<()>;

    /// Creates a conference; `AlreadyExists` if the id is taken.
    fn add_conference(&self, conference: &ConferenceRecord) -> Result<()>;
    /// The conference, if it exists.
    fn conference(&self, id: &str) -> Result<Option<ConferenceRecord>>;
    /// Every conference, by id.
    fn list_conferences(&self) -> Result<Vec<ConferenceRecord>>;
    /// Replaces a conference's fields (by id); `NotFound` if it does not exist.
    fn update_conference(&self, conference: &ConferenceRecord) -> Result<()>;
    /// Removes a conference; `false` if there was none.
    fn remove_conference(&self, id: &str) -> Result<bool>;
}
