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
    /// The account `aor` and the NT hash of its password, for NTLM (MS-SIPAE). By default none.
    fn ntlm_account(&self, _aor: &str) -> Option<(Account, [u8; 16])> {
        None
    }
    /// `owner`'s whole contact list (groups, contacts, version), for roaming contacts.
    fn contact_list(&self, _owner: &str) -> Option<vienna_store::ContactList> {
        None
    }
    /// Changes `owner`'s contact list or access control entries (synchronously, durable before it
    /// returns); returns the list afterwards and, for [`ContactEdit::AddGroup`], the new group's id.
    fn edit_contacts(
        &self,
        _owner: &str,
        _edit: &ContactEdit,
    ) -> Result<(vienna_store::ContactList, Option<u32>), String> {
        Err("contact lists cannot be changed here".into())
    }
    /// `owner`'s access control entries.
    fn aces(&self, _owner: &str) -> Vec<vienna_store::Ace> {
        Vec::new()
    }
    /// The display name of account `aor`, if it has one.
    fn display_name(&self, _aor: &str) -> Option<String> {
        None
    }
}

/// A change to a user's contact list or access control entries (MS-SIP §3.7 SOAP operations, MS-PRES
/// container membership).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContactEdit {
    /// Adds or replaces a contact.
    PutContact(vienna_store::ContactEntry),
    /// Removes the contact with this URI.
    RemoveContact(String),
    /// Adds a group with this name.
    AddGroup(String),
    /// Renames a group.
    RenameGroup(u32, String),
    /// Removes a group (its contacts stay, in no group).
    RemoveGroup(u32),
    /// Adds or replaces an access control entry.
    PutAce(vienna_store::Ace),
    /// Removes the entry of this scope.
    RemoveAce(vienna_store::AceScope),
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
    fn ntlm_account(&self, aor: &str) -> Option<(Account, [u8; 16])> {
        (**self).ntlm_account(aor)
    }
    fn contact_list(&self, owner: &str) -> Option<vienna_store::ContactList> {
        (**self).contact_list(owner)
    }
    fn edit_contacts(
        &self,
        owner: &str,
        edit: &ContactEdit,
    ) -> Result<(vienna_store::ContactList, Option<u32>), String> {
        (**self).edit_contacts(owner, edit)
    }
    fn aces(&self, owner: &str) -> Vec<vienna_store::Ace> {
        (**self).aces(owner)
    }
    fn display_name(&self, aor: &str) -> Option<String> {
        (**self).display_name(aor)
    }
}
