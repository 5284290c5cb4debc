//! Vienna's persistent store.
//!
//! Everything Vienna must remember across restarts and crashes: user accounts and the secrets their
//! authentication schemes need, registrations (SIP bindings), contact lists with groups, access control
//! entries, watcher lists, presence states set by hand and conferences. Without the default `sqlite`
//! feature the crate is the model and the trait alone (the sans-IO presence core uses it so).
//!
//! [`Store`] is the back-end-independent interface. [`SqliteStore`] is the embedded default (one file, WAL
//! journal, every acknowledged write synced). A PostgreSQL back end must pass the same
//! [`conformance`](crate::conformance) suite (feature `conformance`) before it is offered.
//!
//! The trait is synchronous: protocol cores never touch the store, and the async drivers call it from a
//! blocking-task pool. Times are arguments ([`UnixTime`]), never read inside, so tests control them.

mod aor;
mod error;
mod model;
mod secrets;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use aor::Aor;
pub use error::{Result, StoreError};
pub use model::{
    AccessLevel, Account, AccountUpdate, Ace, AceScope, Binding, BindingChange, ConferenceRecord, ContactEntry,
    ContactList, Group, ManualPresence, NewAccount, UnixTime, Watcher, WatcherState,
};
pub use secrets::Secrets;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};
pub use store::Store;
