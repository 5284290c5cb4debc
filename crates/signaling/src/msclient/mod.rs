//! Microsoft clients (Communicator, Lync, SIPE) in the SIP core: MS-SIPAE NTLM ([`auth`]), endpoint
//! identity and gruu-10 GRUUs ([`epid`]), the documents of MS-SIPREGE and MS-PRES ([`documents`]) and the
//! bodies clients send ([`service`]). The state kept here: the self subscriptions (provisioning, roaming
//! contacts, roaming self, roaming ACL, pending watchers) and the category presence subscriptions of
//! these clients, each user's published category instances with their versions, and its containers.
//!
//! Presence itself stays in `vienna-presence`: a published `state` or `note` becomes a publication of
//! the one presence model ([`vienna_presence::PresenceCore::publish_state`]), so SIMPLE watchers see it,
//! and changes of the model reach category subscribers here. What is soft state: publications, categories,
//! containers and subscriptions live in memory (clients publish again at sign-in, as with RFC 3903);
//! contact lists, groups and access control entries are in the store.

pub mod auth;
pub mod documents;
pub mod epid;
pub mod im_gateway;
pub mod service;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use vienna_presence::PresenceState;
use vienna_sip::Uri;
use vienna_sip::transaction::Peer;

pub use auth::{NtlmAuth, NtlmCounters};
pub use documents::{Category, Container};

/// Settings of the Microsoft-client support.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsConfig {
    /// Offer NTLM (MS-SIPAE) beside Digest on TCP and TLS, and serve the Microsoft events and SERVICE
    /// operations.
    pub enabled: bool,
    /// The server's name in NTLM challenges (`targetname`).
    pub targetname: String,
    /// The MRAS URI told in provisioning.
    pub mras_uri: Option<String>,
    /// Organization name told in provisioning.
    pub organization: String,
    /// Most resources in one batched subscription.
    pub max_batch: usize,
    /// Answer as an LCS 2005 server: no `msrtc-event-categories` in the REGISTER answer, so clients use
    /// the 2005 dialect (roaming ACL, `setPresence`, `text/xml+msrtc.pidf`, pending watchers).
    pub lcs2005: bool,
    /// The IM-session gateway to standard clients ([`im_gateway`]).
    pub im_gateway: im_gateway::ImGatewayConfig,
}

impl Default for MsConfig {
    fn default() -> Self {
        MsConfig {
            enabled: true,
            targetname: "localhost".into(),
            mras_uri: None,
            organization: "Vienna".into(),
            max_batch: 500,
            lcs2005: false,
            im_gateway: im_gateway::ImGatewayConfig::default(),
        }
    }
}

/// Counters of the Microsoft-client support.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MsCounters {
    /// NTLM authentication.
    pub ntlm: NtlmCounters,
    /// Self subscriptions answered (provisioning, roaming contacts, roaming self, ACL, pending watchers).
    pub self_subscriptions: u64,
    /// Category (or legacy) presence subscriptions created.
    pub presence_subscriptions: u64,
    /// BENOTIFY requests sent.
    pub benotifies: u64,
    /// NOTIFY requests sent to Microsoft clients.
    pub notifies: u64,
    /// Category publications accepted.
    pub publications: u64,
    /// Category publications refused for a stale version (409).
    pub version_conflicts: u64,
    /// SOAP and container operations that changed a contact list or an ACL.
    pub edits: u64,
    /// Bodies refused as malformed or too large.
    pub bad_bodies: u64,
    /// Server-initiated deregistrations sent.
    pub deregistrations: u64,
    /// The IM-session gateway.
    pub im_gateway: im_gateway::ImGatewayCounters,
}

/// What a Microsoft subscription is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubKind {
    /// `vnd-microsoft-roaming-contacts`.
    RoamingContacts,
    /// `vnd-microsoft-roaming-self`.
    RoamingSelf,
    /// `vnd-microsoft-roaming-ACL`.
    RoamingAcl,
    /// `presence.wpending`.
    WPending,
    /// `presence` in categories (MS-PRES) or legacy documents, for these resources.
    Presence(Vec<String>),
}

/// Presence document format of a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/msrtc-event-categories+xml` in `multipart/related` with RLMI.
    Categories,
    /// `text/xml+msrtc.pidf` (LCS 2005).
    MsrtcPidf,
}

/// The dialog of a subscription, from the notifier's side.
#[derive(Clone, Debug)]
pub struct MsDialog {
    /// Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// From of our NOTIFYs (the SUBSCRIBE's To, without tag).
    pub local: String,
    /// To of our NOTIFYs (the SUBSCRIBE's From).
    pub remote: String,
    /// Request-URI of our NOTIFYs (the subscriber's Contact).
    pub remote_target: Uri,
    /// Our CSeq.
    pub cseq: u32,
    /// The Event header value.
    pub event: String,
    /// Our Contact.
    pub contact: String,
    /// Where notifications go.
    pub peer: Peer,
}

/// One Microsoft subscription.
#[derive(Clone, Debug)]
pub struct MsSub {
    /// What it is about.
    pub kind: SubKind,
    /// The subscriber (address of record).
    pub owner: String,
    /// The dialog.
    pub dialog: MsDialog,
    /// When it ends.
    pub expires_at: Instant,
    /// Notifications go as BENOTIFY (negotiated with `Supported`/`Proxy-Require: ms-benotify`).
    pub benotify: bool,
    /// Presence document format.
    pub format: Format,
    /// A batched (list) subscription: notifications are `multipart/related` with RLMI.
    pub list: bool,
    /// Version counter of RLMI documents.
    pub version: u32,
    /// The list last sent (roaming contacts), to send deltas.
    pub last_list: Option<vienna_store::ContactList>,
}

/// What one user has published in categories, and its containers.
#[derive(Clone, Debug, Default)]
pub struct UserCategories {
    /// Published instances by (name, instance, container), with the publishing connection.
    pub instances: BTreeMap<(String, u32, u32), (Category, Option<Peer>)>,
    /// Containers by id.
    pub containers: BTreeMap<u32, Container>,
    /// Subscribers the user acknowledged.
    pub acknowledged: HashSet<String>,
    /// The manual (`userState`) availability and activity, the machine states by connection, the note.
    pub manual: Option<(u32, Option<String>)>,
    /// Machine states by connection.
    pub machine: HashMap<Peer, u32>,
    /// The note.
    pub note: Option<String>,
}

impl UserCategories {
    /// The presence state the user's categories say (manual state, else the best machine state), with the
    /// note; `None` when nothing was published.
    pub fn presence(&self) -> Option<(PresenceState, bool)> {
        let note = self.note.clone();
        if let Some((availability, activity)) = &self.manual {
            return Some((PresenceState { availability: *availability, activity: activity.clone(), note }, true));
        }
        let best = self.machine.values().min().copied();
        match (best, note) {
            (Some(availability), note) => Some((PresenceState { availability, activity: None, note }, false)),
            (None, Some(note)) => Some((PresenceState { availability: 3500, activity: None, note: Some(note) }, false)),
            (None, None) => None,
        }
    }
}

/// The Microsoft-client state of a core.
pub struct MsClient {
    /// Settings.
    pub config: MsConfig,
    /// MS-SIPAE.
    pub auth: NtlmAuth,
    /// Subscriptions by id.
    pub subs: HashMap<u64, MsSub>,
    /// (Call-ID, our tag) → subscription.
    pub dialogs: HashMap<(String, String), u64>,
    /// Next subscription id.
    pub next_sub: u64,
    /// Category state by address of record.
    pub users: HashMap<String, UserCategories>,
    /// Counters (the NTLM ones are copied in by [`MsClient::counters`]).
    pub counters: MsCounters,
    /// Whether the request being handled came over TCP or TLS (NTLM is offered then).
    pub reliable_request: bool,
    /// The address of record NTLM authenticated for the request being handled.
    pub identity: Option<String>,
    /// Registration subscriptions (`Event: registration` in REGISTER) by connection: (aor, dialog).
    pub registrations: HashMap<Peer, (String, MsDialog)>,
    /// When the accounts of registered Microsoft clients are next checked (disabled or removed accounts
    /// are signed out).
    pub next_account_check: Option<Instant>,
    /// The time of the latest input (for documents built where no time is passed).
    pub now: Option<Instant>,
    /// The IM-session gateway to standard clients.
    pub imgw: im_gateway::ImGateway,
}

impl MsClient {
    /// The state for `config`; `secret` keys NTLM challenges and opaque values.
    pub fn new(config: MsConfig, domain: &str, secret: [u8; 32]) -> Self {
        let auth = NtlmAuth::new(domain, &config.targetname, secret);
        let imgw = im_gateway::ImGateway::new(config.im_gateway);
        MsClient {
            config,
            auth,
            subs: HashMap::new(),
            dialogs: HashMap::new(),
            next_sub: 1,
            users: HashMap::new(),
            counters: MsCounters::default(),
            reliable_request: false,
            identity: None,
            registrations: HashMap::new(),
            next_account_check: None,
            now: None,
            imgw,
        }
    }

    /// Counters, NTLM included.
    pub fn counters(&self) -> MsCounters {
        let mut c = self.counters.clone();
        c.ntlm = self.auth.counters().clone();
        c.im_gateway = self.imgw.counters();
        c
    }

    /// Live subscriptions.
    pub fn subscriptions(&self) -> usize {
        self.subs.len()
    }

    /// Removes subscription `id`.
    pub fn remove(&mut self, id: u64) -> Option<MsSub> {
        let sub = self.subs.remove(&id)?;
        self.dialogs.remove(&(sub.dialog.call_id.clone(), sub.dialog.local_tag.clone()));
        Some(sub)
    }

    /// Subscriptions of `owner` of `kind`.
    pub fn subs_of(&self, owner: &str, kind: &SubKind) -> Vec<u64> {
        let mut ids: Vec<u64> =
            self.subs.iter().filter(|(_, s)| s.owner == owner && s.kind == *kind).map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids
    }

    /// Presence subscriptions watching `aor`.
    pub fn watching(&self, aor: &str) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, s)| matches!(&s.kind, SubKind::Presence(r) if r.iter().any(|u| u == aor)))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }
}
