//! The conference focus over SIP (MS-CONFBAS, MS-CONFPRO, MS-CONFAV, RFC 4575, RFC 4579), sans-IO: what
//! the signaling core keeps about conference dialogs and roster subscriptions, and what it asks its
//! driver to do. The request handling itself is in the core (`core/focus.rs`), next to the proxy it shares
//! the transaction layer and authentication with; the conference model is `vienna-focus`.
//!
//! | request | to | answer |
//! |---|---|---|
//! | SERVICE, `application/cccp+xml` | the organizer's focus factory `sip:<org>;gruu;opaque=app:conf:focusfactory` | 200 OK with the C3P response (addConference, getConference, deleteConference, getConferencingCapabilities) |
//! | INVITE, `application/cccp+xml` addUser | a focus `...;opaque=app:conf:focus:id:<id>` | 200 OK with the addUser response; the focus dialog lives until BYE |
//! | INVITE, `application/sdp` | the AV MCU `...;opaque=app:conf:audio-video:id:<id>` (Microsoft clients), or a focus, or `sip:<dial_prefix><id>@<domain>` (standard clients) | the offer goes to the MCU ([`ConferenceOutput::Join`]); 200 OK with its SDP answer; BYE or media timeout leaves |
//! | SUBSCRIBE `Event: conference` | a focus or the dial-in URI | 200 OK, then a full conference-info NOTIFY, then partial ones (versions increasing per subscription) |
//! | INFO `application/cccp+xml` | in a focus (or dial-in) dialog | modifyEndpointMedia, deleteUser, modifyConferenceLock, modifyUserRoles: 202 Accepted with the C3P response; getConference: 200 OK with it |
//!
//! A C3P body that is not well-formed C3P gets 400 (MS-CONFPRO §2.2.3); a C3P failure (locked, no such
//! conference, not allowed) is a C3P `code="failure"` in a 2xx, except for addUser, where it is a SIP
//! error (403, 404, 486) with the C3P failure in its body, so no focus dialog is set up.
//!
//! Roster subscriptions: one NOTIFY in flight per subscription; changes that happen meanwhile are merged
//! into the next partial NOTIFY (RFC 4575 §4.6 allows it: a partial document carries what changed since
//! the last one). A NOTIFY that fails (481, timeout) ends the subscription. Subscribers that negotiated
//! `ms-benotify` still get NOTIFY: BENOTIFY (MS-SIP §3.5) belongs to the Microsoft client work, and
//! [`Subscription::benotify`] is where it plugs in.
//!
//! Conferences are persisted through [`ConferenceOutput::Save`] and [`ConferenceOutput::Remove`] (written
//! before the answer that acknowledges them); one the focus does not hold is looked up in the store by
//! the driver's [`ConferenceLookup`] (created with the CLI or the admin API, or held before a restart);
//! rosters are not persisted (after a restart, clients join again). Left out: dial-out (addUser for
//! someone else), the lobby, the IM and sharing MCUs, late-offer INVITEs, `multipart/alternative` SDP,
//! Record-Route sets of proxies in front of the focus.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use vienna_focus::{Conference, Focus, FocusConfig, UserChange};
use vienna_sip::transaction::{Peer, TransactionId};
use vienna_sip::{Request, Response, Uri};
use vienna_store::ConferenceRecord;

/// Content type of C3P.
pub const C3P_TYPE: &str = "application/cccp+xml";
/// Content type of RFC 4575 documents.
pub const CONFERENCE_INFO_TYPE: &str = "application/conference-info+xml";
/// How long an unknown conference id stays unknown before the store is asked again.
const MISS_TTL: Duration = Duration::from_secs(2);
/// Most unknown ids remembered.
const MAX_MISSES: usize = 10_000;

/// Settings of the focus over SIP.
#[derive(Clone, Debug)]
pub struct ConferenceConfig {
    /// The focus: limits, lifetimes, the dial-in form.
    pub focus: FocusConfig,
    /// Whether an MCU takes audio (INVITEs with SDP get 488 without one).
    pub media: bool,
    /// Shortest roster subscription accepted (423 below), seconds.
    pub min_subscription_secs: u32,
    /// Longest roster subscription granted, seconds.
    pub max_subscription_secs: u32,
    /// Most roster subscriptions at once (503 beyond).
    pub max_subscriptions: usize,
}

impl Default for ConferenceConfig {
    fn default() -> Self {
        ConferenceConfig {
            focus: FocusConfig::default(),
            media: true,
            min_subscription_secs: 60,
            max_subscription_secs: 3600,
            max_subscriptions: 100_000,
        }
    }
}

/// Looks a conference up in the store by id (the driver's, on the core's thread).
pub type ConferenceLookup = Box<dyn FnMut(&str) -> Option<ConferenceRecord> + Send>;

/// What the driver does for the focus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConferenceOutput {
    /// Store the conference (add or replace) before sending any later [`crate::Output::Transmit`].
    Save(ConferenceRecord),
    /// Remove the conference from the store (before later transmits).
    Remove(String),
    /// Add a participant to MCU conference `conference` from its SDP offer; answer with
    /// [`crate::Core::media_answer`] and this `token`.
    Join {
        /// Names this request in the answer.
        token: u64,
        /// The MCU conference (the conference id).
        conference: String,
        /// The SDP offer.
        offer: String,
        /// The user, for logs and the MCU's roster.
        label: String,
    },
    /// Remove a participant from the MCU.
    Leave {
        /// The MCU conference.
        conference: String,
        /// The MCU's participant id.
        participant: String,
    },
    /// Mute or unmute a participant in the MCU's mix.
    Mute {
        /// The MCU conference.
        conference: String,
        /// The MCU's participant id.
        participant: String,
        /// Mute or unmute.
        muted: bool,
    },
    /// Remove the whole MCU conference (it ended).
    End {
        /// The MCU conference.
        conference: String,
    },
}

/// What the MCU answered to a [`ConferenceOutput::Join`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaJoined {
    /// The MCU's participant id.
    pub participant: String,
    /// The SDP answer.
    pub answer: String,
    /// The participant's SSRC, if its offer announced it.
    pub ssrc: Option<u32>,
}

/// Why the MCU refused a join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaRefused {
    /// The offer cannot be answered (no common codec, encryption mismatch): 488.
    NotAcceptable(String),
    /// The MCU is full or unavailable: 503.
    Unavailable(String),
}

/// What the MCU reports about its participants (from its events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaEvent {
    /// A participant's stream has this SSRC (its roster `src-id`).
    Source {
        /// The MCU conference.
        conference: String,
        /// The participant.
        participant: String,
        /// Its SSRC.
        ssrc: u32,
    },
    /// A participant left the MCU on its own (media timeout, or removed through the admin API).
    Left {
        /// The MCU conference.
        conference: String,
        /// The participant.
        participant: String,
    },
    /// A participant was muted or unmuted in the mix (possibly through the admin API).
    Muted {
        /// The MCU conference.
        conference: String,
        /// The participant.
        participant: String,
        /// Now muted.
        muted: bool,
    },
    /// The dominant speaker changed (`None`: nobody speaks).
    Dominant {
        /// The MCU conference.
        conference: String,
        /// The participant, if anyone.
        participant: Option<String>,
    },
}

/// What the admin API shows of a conference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConferenceView {
    /// The conference id.
    pub id: String,
    /// The focus URI.
    pub focus_uri: String,
    /// Organizer.
    pub organizer: String,
    /// Subject.
    pub subject: String,
    /// Locked.
    pub locked: bool,
    /// The dominant speaker, if anyone speaks.
    pub dominant: Option<String>,
    /// Users: URI, role, whether in the audio, muted, SSRC.
    pub users: Vec<UserView>,
    /// Roster subscriptions.
    pub subscribers: Vec<SubscriberView>,
}

/// One roster subscription of a [`ConferenceView`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberView {
    /// Who subscribed.
    pub subscriber: String,
    /// Version of the last document sent.
    pub version: u32,
    /// It negotiated `ms-benotify` (it still gets NOTIFY).
    pub benotify: bool,
}

/// One user of a [`ConferenceView`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserView {
    /// The user's URI.
    pub entity: String,
    /// `presenter` or `attendee`.
    pub role: &'static str,
    /// In the audio.
    pub audio: bool,
    /// Muted.
    pub muted: bool,
    /// The SSRC of the user's audio, once known.
    pub src_id: Option<u32>,
}

/// What the focus has done, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConferenceCounters {
    /// C3P requests handled (SERVICE, INVITE addUser, INFO).
    pub c3p_requests: u64,
    /// C3P requests answered `code="failure"` (or a SIP error for addUser).
    pub c3p_failures: u64,
    /// C3P bodies refused with 400.
    pub c3p_malformed: u64,
    /// Focus dialogs set up (addUser).
    pub focus_joins: u64,
    /// Audio joins the MCU answered.
    pub media_joins: u64,
    /// Audio joins the MCU refused (488, 503).
    pub media_refused: u64,
    /// Audio sessions the MCU ended (media timeout, admin API).
    pub media_timeouts: u64,
    /// Roster subscriptions accepted.
    pub subscriptions: u64,
    /// Roster NOTIFYs sent.
    pub notifies: u64,
    /// Roster NOTIFYs that failed (the subscription ended).
    pub notify_failures: u64,
    /// BYEs sent (ejections, timeouts, ended conferences).
    pub byes: u64,
    /// Conferences that ended (deleteConference, expiry).
    pub conferences_ended: u64,
}

/// Dialogs and subscriptions are keyed by Call-ID and our tag.
pub(crate) type DialogKey = (String, String);

/// What a conference dialog is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DialogKind {
    /// The focus dialog (INVITE with addUser): the user's focus session.
    Focus,
    /// Audio with the MCU. `dial_in`: a standard client's one dialog (it is also its membership).
    Media { dial_in: bool },
}

/// One dialog in which this server is the UAS.
#[derive(Debug)]
pub(crate) struct Dialog {
    pub kind: DialogKind,
    pub conference: String,
    pub user: String,
    pub call_id: String,
    pub local_tag: String,
    /// Our identity (the INVITE's To, without tag).
    pub local: String,
    /// The peer's From value, tag included.
    pub remote: String,
    /// The peer's Contact URI.
    pub remote_target: Uri,
    pub peer: Peer,
    /// Our Contact value.
    pub contact: String,
    pub local_cseq: u32,
    /// The INVITE server transaction and its 2xx, retransmitted until the ACK (RFC 3261 §13.3.1.4).
    pub invite: Option<(TransactionId, Response)>,
    pub acked: bool,
    pub retransmit_at: Option<Instant>,
    pub retransmit_interval: Duration,
    pub give_up_at: Instant,
    /// The MCU's participant id (media dialogs).
    pub participant: Option<String>,
    /// Our SDP answer (a re-INVITE gets it again).
    pub answer: Option<String>,
}

/// What the next NOTIFY of a subscription must carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Pending {
    /// Nothing.
    #[default]
    Nothing,
    /// The whole roster.
    Full,
    /// These users (none: only the conference state changed).
    Partial(Vec<UserChange>),
}

impl Pending {
    pub fn merge(&mut self, changes: &[UserChange]) {
        match self {
            Pending::Full => {}
            Pending::Nothing => *self = Pending::Partial(changes.to_vec()),
            Pending::Partial(list) => {
                for c in changes {
                    let entity = match c {
                        UserChange::Updated(e) | UserChange::Deleted(e) => e,
                    };
                    list.retain(|o| !matches!(o, UserChange::Updated(x) | UserChange::Deleted(x) if x.eq_ignore_ascii_case(entity)));
                    list.push(c.clone());
                }
            }
        }
    }
}

/// A roster subscription (`Event: conference`, RFC 4575 §3).
#[derive(Debug)]
pub(crate) struct Subscription {
    pub conference: String,
    pub subscriber: String,
    pub call_id: String,
    pub local_tag: String,
    pub local: String,
    pub remote: String,
    pub remote_target: Uri,
    pub peer: Peer,
    pub contact: String,
    pub event: String,
    pub local_cseq: u32,
    pub expires_at: Instant,
    /// The version of the last document sent.
    pub version: u32,
    pub in_flight: Option<TransactionId>,
    pub pending: Pending,
    /// Ending: the next NOTIFY is `terminated` with this reason, then the subscription goes.
    pub terminating: Option<&'static str>,
    /// The `terminated` NOTIFY went out.
    pub final_sent: bool,
    /// The subscriber negotiated `ms-benotify` (`Supported` and `Proxy-Require`). The hook for BENOTIFY
    /// (MS-SIP §3.5: same NOTIFY, method BENOTIFY, no response, no client transaction); NOTIFY is sent
    /// today.
    pub benotify: bool,
}

/// An INVITE with SDP waiting for the MCU's answer.
#[derive(Debug)]
pub(crate) struct PendingJoin {
    pub server: TransactionId,
    pub request: Request,
    pub kind: DialogKind,
    pub conference: String,
    pub user: String,
    pub display: String,
    pub local_tag: String,
    pub peer: Peer,
    pub contact: String,
    pub cancelled: bool,
}

/// A client transaction of ours in a conference dialog or subscription.
#[derive(Debug)]
pub(crate) enum ClientTx {
    Notify(DialogKey),
    Bye,
}

/// Everything the core keeps for the focus.
pub(crate) struct State {
    pub config: ConferenceConfig,
    pub focus: Focus,
    pub lookup: Option<ConferenceLookup>,
    misses: HashMap<String, Instant>,
    pub dialogs: HashMap<DialogKey, Dialog>,
    pub subs: HashMap<DialogKey, Subscription>,
    /// (conference, participant) → the media dialog.
    pub media: HashMap<(String, String), DialogKey>,
    pub pending: HashMap<u64, PendingJoin>,
    pub next_token: u64,
    pub client_txs: HashMap<TransactionId, ClientTx>,
    /// When conference lifetimes are next checked.
    pub next_expiry_check: Option<Instant>,
    pub counters: ConferenceCounters,
}

impl State {
    pub fn new(config: ConferenceConfig, secret: [u8; 32]) -> State {
        State {
            focus: Focus::new(config.focus.clone(), secret),
            config,
            lookup: None,
            misses: HashMap::new(),
            dialogs: HashMap::new(),
            subs: HashMap::new(),
            media: HashMap::new(),
            pending: HashMap::new(),
            next_token: 1,
            client_txs: HashMap::new(),
            next_expiry_check: None,
            counters: ConferenceCounters::default(),
        }
    }

    /// Whether conference `id` exists, asking the store once for one the focus does not hold.
    pub fn ensure(&mut self, now: Instant, id: &str) -> bool {
        if self.focus.conference(id).is_some() {
            return true;
        }
        if self.misses.get(id).is_some_and(|t| now.saturating_duration_since(*t) < MISS_TTL) {
            return false;
        }
        let found = self.lookup.as_mut().and_then(|l| l(id));
        match found {
            Some(record) => {
                self.focus.restore(from_record(&record));
                self.misses.remove(id);
                true
            }
            None => {
                if self.misses.len() >= MAX_MISSES {
                    self.misses.clear();
                }
                self.misses.insert(id.to_owned(), now);
                false
            }
        }
    }

    /// Subscriptions to conference `id`.
    pub fn subscriptions_of(&self, id: &str) -> Vec<DialogKey> {
        self.subs.iter().filter(|(_, s)| s.conference == id).map(|(k, _)| k.clone()).collect()
    }

    /// Dialogs of `user` in conference `id`.
    pub fn dialogs_of(&self, id: &str, user: &str) -> Vec<DialogKey> {
        self.dialogs
            .iter()
            .filter(|(_, d)| d.conference == id && d.user.eq_ignore_ascii_case(user))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The user behind MCU participant `participant` of `conference`.
    pub fn user_of(&self, conference: &str, participant: &str) -> Option<&str> {
        let key = self.media.get(&(conference.to_owned(), participant.to_owned()))?;
        self.dialogs.get(key).map(|d| d.user.as_str())
    }

    /// The MCU participant of `user` in `conference`.
    pub fn participant_of(&self, conference: &str, user: &str) -> Option<String> {
        self.dialogs
            .values()
            .find(|d| d.conference == conference && d.user.eq_ignore_ascii_case(user) && d.participant.is_some())
            .and_then(|d| d.participant.clone())
    }

    /// Views for the admin API.
    pub fn views(&self) -> Vec<ConferenceView> {
        let mut out: Vec<ConferenceView> = self
            .focus
            .conferences()
            .map(|c| ConferenceView {
                id: c.id.clone(),
                focus_uri: c.focus_uri().to_string(),
                organizer: c.organizer.clone(),
                subject: c.subject.clone(),
                locked: c.locked,
                dominant: c.dominant.clone(),
                users: c
                    .users
                    .iter()
                    .map(|u| {
                        let media = u.av().and_then(|e| e.media.first());
                        UserView {
                            entity: u.entity.clone(),
                            role: u.role.as_str(),
                            audio: u.av().is_some(),
                            muted: media.is_some_and(|m| m.muted()),
                            src_id: media.and_then(|m| m.src_id),
                        }
                    })
                    .collect(),
                subscribers: self
                    .subs
                    .values()
                    .filter(|s| s.conference == c.id)
                    .map(|s| SubscriberView {
                        subscriber: s.subscriber.clone(),
                        version: s.version,
                        benotify: s.benotify,
                    })
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

/// The store's record of a conference.
pub fn to_record(c: &Conference) -> ConferenceRecord {
    ConferenceRecord {
        id: c.id.clone(),
        organizer: c.organizer.clone(),
        subject: c.subject.clone(),
        locked: c.locked,
        max_participants: c.max_participants,
        created_at: c.created_at as i64,
        expires_at: c.expires_at.map(|t| t as i64),
    }
}

/// A stored conference as the focus holds it (no users yet).
pub fn from_record(r: &ConferenceRecord) -> Conference {
    Conference {
        id: r.id.clone(),
        organizer: r.organizer.to_ascii_lowercase(),
        subject: r.subject.clone(),
        locked: r.locked,
        admission_policy: "openAuthenticated".into(),
        max_participants: r.max_participants,
        created_at: u64::try_from(r.created_at).unwrap_or(0),
        expires_at: r.expires_at.and_then(|t| u64::try_from(t).ok()),
        users: Vec::new(),
        dial_in: None,
        dominant: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_changes_merge_latest_per_user() {
        let mut p = Pending::Nothing;
        p.merge(&[UserChange::Updated("sip:a@x".into())]);
        p.merge(&[UserChange::Updated("sip:b@x".into()), UserChange::Deleted("sip:A@x".into())]);
        assert_eq!(
            p,
            Pending::Partial(vec![UserChange::Updated("sip:b@x".into()), UserChange::Deleted("sip:A@x".into())])
        );
        let mut full = Pending::Full;
        full.merge(&[UserChange::Updated("sip:a@x".into())]);
        assert_eq!(full, Pending::Full);
    }

    #[test]
    fn records_round_trip() {
        let r = ConferenceRecord {
            id: "ABCD1234".into(),
            organizer: "sip:alice@example.com".into(),
            subject: "s".into(),
            locked: true,
            max_participants: Some(5),
            created_at: 10,
            expires_at: Some(20),
        };
        assert_eq!(to_record(&from_record(&r)), r);
    }
}
