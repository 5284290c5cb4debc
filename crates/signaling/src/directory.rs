//! The user directory the core consults: who exists, whether they may sign in, and their Digest secrets.

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
}

impl<D: Directory + ?Sized> Directory for &D {
    fn account(&self, aor: &str) -> Option<Account> {
        (**self).account(aor)
    }
    fn account_by_auth(&self, username: &str, realm: &str) -> Option<Account> {
        (**self).account_by_auth(username, realm)
    }
}
