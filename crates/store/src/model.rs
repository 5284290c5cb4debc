//! The records the store keeps.

use serde::Serialize;

use crate::{Aor, Secrets};

/// Seconds since the Unix epoch. The store never reads a clock: callers pass the time.
pub type UnixTime = i64;

/// A user account, without its secrets (safe to list and serialize).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// Address of record, `sip:user@domain`.
    pub uri: String,
    /// Name shown to other users.
    pub display_name: String,
    /// A disabled account cannot authenticate.
    pub enabled: bool,
    /// Realm its secrets were derived for; a changed server domain needs a new password.
    pub realm: String,
    /// When the account was created.
    pub created_at: UnixTime,
    /// When the account last changed.
    pub updated_at: UnixTime,
}

/// What is needed to create an account.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Address of record.
    pub aor: Aor,
    /// Name shown to other users.
    pub display_name: String,
    /// Whether it may authenticate.
    pub enabled: bool,
    /// Password-derived secrets.
    pub secrets: Secrets,
}

/// A partial update of an account; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AccountUpdate {
    /// New display name.
    pub display_name: Option<String>,
    /// New enabled flag.
    pub enabled: Option<bool>,
    /// New secrets (a password change).
    pub secrets: Option<Secrets>,
}

/// One registered contact of an address of record (RFC 3261 §10, RFC 5626, RFC 5627).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binding {
    /// Address of record the contact is bound to.
    pub aor: String,
    /// Contact URI as registered.
    pub contact: String,
    /// `+sip.instance` (RFC 5626) if the client sent one.
    pub instance_id: Option<String>,
    /// `reg-id` (RFC 5626) if the client sent one.
    pub reg_id: Option<u32>,
    /// Call-ID of the REGISTER that made or refreshed the binding.
    pub call_id: String,
    /// CSeq of that REGISTER.
    pub cseq: u32,
    /// When the binding expires.
    pub expires_at: UnixTime,
    /// `q` value in thousandths (0..=1000), if given.
    pub q: Option<u16>,
    /// Transport and source the REGISTER arrived from, e.g. `tcp:127.0.0.1:50122`.
    pub received: Option<String>,
    /// Path header values (RFC 3327), in order.
    pub path: Vec<String>,
    /// User-Agent of the registering client.
    pub user_agent: Option<String>,
    /// When the binding was last written.
    pub updated_at: UnixTime,
}

/// One change to the registrar's bindings, applied with others in one durable write by
/// [`crate::Store::apply_bindings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingChange {
    /// Create or replace the binding of `(aor, contact)`.
    Put(Binding),
    /// Remove the binding of `contact` from `aor` (nothing happens if there is none).
    Remove {
        /// Address of record.
        aor: String,
        /// Contact URI as registered.
        contact: String,
    },
}

/// A contact-list group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// Identifier, unique per owner, assigned by the store (1, 2, ...).
    pub id: u32,
    /// Name shown to the user; unique per owner.
    pub name: String,
}

/// An entry of a user's contact list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactEntry {
    /// The contact's URI.
    pub uri: String,
    /// Name the owner gave the contact.
    pub display_name: String,
    /// Groups the contact is in (ids of [`Group`]s of the same owner), ascending.
    pub groups: Vec<u32>,
    /// Whether the owner wants the contact's presence.
    pub subscribed: bool,
}

/// A user's whole contact list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct ContactList {
    /// Version, raised by every change of the owner's groups, contacts or access entries, so clients can
    /// ask for what changed since the version they hold.
    pub version: u64,
    /// Groups, by id.
    pub groups: Vec<Group>,
    /// Contacts, by URI.
    pub contacts: Vec<ContactEntry>,
}

/// Who an access control entry applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum AceScope {
    /// One user, by URI.
    User(String),
    /// Everyone in a domain.
    Domain(String),
    /// Everyone.
    Everyone,
}

/// What an access control entry grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLevel {
    /// May see the owner's presence.
    Allow,
    /// Sees the owner as offline.
    Block,
}

/// An access control entry of a user's presence ACL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ace {
    /// Who it applies to.
    pub scope: AceScope,
    /// What it grants.
    pub level: AccessLevel,
}

/// Authorization state of a watcher (RFC 3857 §3.4 states, reduced to what the owner decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WatcherState {
    /// Asked to watch; the owner has not decided.
    Pending,
    /// May watch.
    Allowed,
    /// Refused; sees the owner as offline.
    Blocked,
}

/// Someone who watches (or asked to watch) a user's presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Watcher {
    /// The watcher's URI.
    pub uri: String,
    /// Display name the watcher gave, if any.
    pub display_name: Option<String>,
    /// Authorization state.
    pub state: WatcherState,
    /// When the watcher first asked.
    pub first_seen: UnixTime,
    /// When the entry last changed.
    pub updated_at: UnixTime,
}

/// A presence state the user set by hand that outlives its devices' sessions (the MS-PRES `userState`
/// with `expireType="static"`): kept across restarts until changed or cleared. Numbers are the MS-PRES
/// availability scale (3500 Online … 18500 Offline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManualPresence {
    /// Availability number, 0..=100000.
    pub availability: u32,
    /// Activity token (`in-a-meeting`, ...), if any.
    pub activity: Option<String>,
    /// Note, if any.
    pub note: Option<String>,
    /// When it was set.
    pub updated_at: UnixTime,
}

/// A scheduled or running conference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConferenceRecord {
    /// Conference identifier (the `id:` part of `app:conf:focus:id:...`).
    pub id: String,
    /// Address of record of the organizer.
    pub organizer: String,
    /// Subject shown to participants.
    pub subject: String,
    /// A locked conference admits no one new.
    pub locked: bool,
    /// Most participants admitted, if limited.
    pub max_participants: Option<u32>,
    /// When it was created.
    pub created_at: UnixTime,
    /// When it may be deleted, if ever.
    pub expires_at: Option<UnixTime>,
}
