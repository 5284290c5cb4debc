//! The conference focus's driver in the SIP core thread: the `[conference]` settings, store writes of
//! conferences, and the message passing to and from the MCU workers. An MCU join goes out as a task on
//! the core thread's runtime that asks the worker (its inbox, no shared locks on the packet path) and
//! sends the answer back on a channel the engine reads; the workers' roster events come in on another.

use std::sync::{Arc, Mutex};

use anyhow::{Result, bail};
use serde::Serialize;
use tokio::sync::mpsc;
use vienna_focus::{DialIn, FocusConfig};
use vienna_signaling::conference::{
    ConferenceConfig, ConferenceCounters, ConferenceLookup, ConferenceOutput, ConferenceView, MediaEvent, MediaJoined,
    MediaRefused,
};
use vienna_store::{ConferenceRecord, Store, StoreError};

use crate::config::{ConferenceSection, Config};
use crate::mcu::McuRole;

/// Checks the `[conference]` section.
pub fn validate(c: &ConferenceSection) -> Result<()> {
    if c.max_conferences == 0 || c.max_users == 0 {
        bail!("conference.max_conferences and conference.max_users must be positive");
    }
    if c.default_lifetime_hours == 0 || c.max_lifetime_days == 0 || c.default_lifetime_hours > c.max_lifetime_days * 24
    {
        bail!("conference.default_lifetime_hours must be positive and within conference.max_lifetime_days");
    }
    if c.dial_prefix.is_empty()
        || c.dial_prefix.len() > 32
        || !c.dial_prefix.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        bail!("conference.dial_prefix must be 1-32 of A-Z a-z 0-9 - _ . (got {:?})", c.dial_prefix);
    }
    if c.max_subscription_secs < 60 {
        bail!("conference.max_subscription_secs must be at least 60");
    }
    Ok(())
}

/// The focus's settings from the configuration.
pub fn conference_config(config: &Config, media: bool) -> ConferenceConfig {
    let c = &config.conference;
    ConferenceConfig {
        focus: FocusConfig {
            max_conferences: c.max_conferences,
            max_participants: c.max_users,
            default_lifetime_secs: c.default_lifetime_hours * 3600,
            max_lifetime_secs: c.max_lifetime_days * 86_400,
            dial_in: Some(DialIn { prefix: c.dial_prefix.clone(), domain: config.server.domain.to_ascii_lowercase() }),
        },
        media,
        min_subscription_secs: 60.min(c.max_subscription_secs),
        max_subscription_secs: c.max_subscription_secs,
        max_subscriptions: 100_000,
    }
}

/// Finds a conference the focus does not hold in the store (created with the CLI or the admin API).
pub fn lookup(store: Arc<dyn Store>) -> ConferenceLookup {
    Box::new(move |id| match store.conference(id) {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(conference = id, error = %e, "conference: store lookup failed");
            None
        }
    })
}

/// What the engine learns from the MCU.
pub enum FromMcu {
    /// The answer to a join.
    Answer(u64, Result<MediaJoined, MediaRefused>),
    /// A roster event.
    Event(MediaEvent),
}

/// The engine's link to the MCU.
pub struct McuLink {
    mcu: Option<Arc<McuRole>>,
    tx: mpsc::UnboundedSender<FromMcu>,
    /// Answers and events, for the engine's loop.
    pub rx: mpsc::UnboundedReceiver<FromMcu>,
}

impl McuLink {
    /// A link to `mcu` (none: every join is refused); the MCU's events arrive on `events`.
    pub fn new(mcu: Option<Arc<McuRole>>, events: Option<mpsc::UnboundedReceiver<MediaEvent>>) -> McuLink {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(mut events) = events {
            let forward = tx.clone();
            tokio::spawn(async move {
                while let Some(e) = events.recv().await {
                    if forward.send(FromMcu::Event(e)).is_err() {
                        return;
                    }
                }
            });
        }
        McuLink { mcu, tx, rx }
    }

    /// Carries out an MCU request of the focus (store writes are the engine's, in order with answers).
    pub fn dispatch(&self, output: ConferenceOutput) {
        let Some(mcu) = self.mcu.clone() else {
            if let ConferenceOutput::Join { token, .. } = output {
                let _ = self.tx.send(FromMcu::Answer(token, Err(MediaRefused::Unavailable("no audio MCU".into()))));
            }
            return;
        };
        let tx = self.tx.clone();
        match output {
            ConferenceOutput::Join { token, conference, offer, label } => {
                tokio::spawn(async move {
                    let result = match mcu.join(&conference, offer, label).await {
                        Ok(j) => Ok(MediaJoined { participant: j.participant, answer: j.answer, ssrc: j.ssrc }),
                        Err(e) if e.starts_with("SDP") || e.starts_with("SRTP") => Err(MediaRefused::NotAcceptable(e)),
                        Err(e) => Err(MediaRefused::Unavailable(e)),
                    };
                    let _ = tx.send(FromMcu::Answer(token, result));
                });
            }
            ConferenceOutput::Leave { conference, participant } => {
                tokio::spawn(async move {
                    if let Err(e) = mcu.leave(&conference, &participant).await {
                        tracing::debug!(conference, participant, error = e, "conference: mcu leave");
                    }
                });
            }
            ConferenceOutput::Mute { conference, participant, muted } => {
                tokio::spawn(async move {
                    if let Err(e) = mcu.mute(&conference, &participant, muted).await {
                        tracing::debug!(conference, participant, error = e, "conference: mcu mute");
                    }
                });
            }
            ConferenceOutput::End { conference } => {
                tokio::spawn(async move {
                    let _ = mcu.remove(&conference).await;
                });
            }
            ConferenceOutput::Save(_) | ConferenceOutput::Remove(_) => {}
        }
    }
}

/// Writes a conference change to the store.
pub fn write(store: &dyn Store, output: &ConferenceOutput) -> vienna_store::Result<()> {
    match output {
        ConferenceOutput::Save(record) => match store.update_conference(record) {
            Err(StoreError::NotFound { .. }) => store.add_conference(record),
            other => other,
        },
        ConferenceOutput::Remove(id) => store.remove_conference(id).map(|_| ()),
        _ => Ok(()),
    }
}

/// A new conference id for the CLI and the admin API: 32 upper-case hex digits, random.
pub fn new_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode_upper(bytes))
}

/// A conference record for the CLI and the admin API (`expires_at` from the configured default).
pub fn new_record(
    config: &Config,
    organizer: &str,
    subject: &str,
    id: Option<&str>,
    now: i64,
) -> Result<ConferenceRecord> {
    let id = match id {
        Some(id) if vienna_focus::uri::valid_id(id) => id.to_owned(),
        Some(id) => bail!("conference ids are 8 to 32 letters and digits (got {id:?})"),
        None => new_id()?,
    };
    let lifetime = config.conference.default_lifetime_hours as i64 * 3600;
    Ok(ConferenceRecord {
        id,
        organizer: organizer.to_owned(),
        subject: subject.to_owned(),
        locked: false,
        max_participants: None,
        created_at: now,
        expires_at: Some(now + lifetime),
    })
}

/// The URIs of a conference: focus, AV MCU, dial-in.
pub fn uris(config: &Config, record: &ConferenceRecord) -> serde_json::Value {
    let focus = vienna_focus::ConfUri::of(&record.organizer, vienna_focus::ConfKind::Focus, &record.id);
    serde_json::json!({
        "focus": focus.to_string(),
        "audio_video": focus.with_kind(vienna_focus::ConfKind::AudioVideo).to_string(),
        "dial_in": format!("sip:{}{}@{}", config.conference.dial_prefix, record.id, config.server.domain),
    })
}

/// A user of a conference, for the admin API.
#[derive(Clone, Debug, Serialize)]
pub struct UserJson {
    /// URI.
    pub entity: String,
    /// Role.
    pub role: &'static str,
    /// In the audio.
    pub audio: bool,
    /// Muted.
    pub muted: bool,
    /// SSRC of its audio.
    pub src_id: Option<u32>,
}

/// A roster subscription, for the admin API.
#[derive(Clone, Debug, Serialize)]
pub struct SubscriberJson {
    /// Who.
    pub subscriber: String,
    /// Last version sent.
    pub version: u32,
    /// Negotiated ms-benotify.
    pub benotify: bool,
}

/// A live conference, for the admin API.
#[derive(Clone, Debug, Serialize)]
pub struct ConferenceJson {
    /// Id.
    pub id: String,
    /// Focus URI.
    pub focus_uri: String,
    /// Organizer.
    pub organizer: String,
    /// Subject.
    pub subject: String,
    /// Locked.
    pub locked: bool,
    /// Dominant speaker.
    pub dominant: Option<String>,
    /// Users.
    pub users: Vec<UserJson>,
    /// Subscribers.
    pub subscribers: Vec<SubscriberJson>,
}

impl From<ConferenceView> for ConferenceJson {
    fn from(v: ConferenceView) -> Self {
        ConferenceJson {
            id: v.id,
            focus_uri: v.focus_uri,
            organizer: v.organizer,
            subject: v.subject,
            locked: v.locked,
            dominant: v.dominant,
            users: v
                .users
                .into_iter()
                .map(|u| UserJson { entity: u.entity, role: u.role, audio: u.audio, muted: u.muted, src_id: u.src_id })
                .collect(),
            subscribers: v
                .subscribers
                .into_iter()
                .map(|s| SubscriberJson { subscriber: s.subscriber, version: s.version, benotify: s.benotify })
                .collect(),
        }
    }
}

/// What the core thread publishes about the focus (refreshed about once a second).
#[derive(Default)]
pub struct ConferenceShared {
    /// Live conferences (those the focus holds).
    pub views: Mutex<Vec<ConferenceJson>>,
    /// Counters.
    pub counters: Mutex<ConferenceCounters>,
}

impl ConferenceShared {
    /// Replaces the snapshot.
    pub fn publish(&self, views: Vec<ConferenceView>, counters: ConferenceCounters) {
        let views: Vec<ConferenceJson> = views.into_iter().map(Into::into).collect();
        match self.views.lock() {
            Ok(mut v) => *v = views,
            Err(p) => *p.into_inner() = views,
        }
        match self.counters.lock() {
            Ok(mut c) => *c = counters,
            Err(p) => *p.into_inner() = counters,
        }
    }

    /// One live conference.
    pub fn view(&self, id: &str) -> Option<ConferenceJson> {
        self.views.lock().ok()?.iter().find(|c| c.id.eq_ignore_ascii_case(id)).cloned()
    }

    /// Sets the `vienna_conference_*` metrics.
    pub fn export_metrics(&self) {
        let c = self.counters.lock().map(|c| *c).unwrap_or_default();
        let live =
            self.views.lock().map(|v| (v.len(), v.iter().map(|c| c.users.len()).sum::<usize>())).unwrap_or((0, 0));
        metrics::gauge!("vienna_conference_live").set(live.0 as f64);
        metrics::gauge!("vienna_conference_users").set(live.1 as f64);
        metrics::counter!("vienna_conference_c3p_requests_total").absolute(c.c3p_requests);
        metrics::counter!("vienna_conference_c3p_failures_total").absolute(c.c3p_failures);
        metrics::counter!("vienna_conference_c3p_malformed_total").absolute(c.c3p_malformed);
        metrics::counter!("vienna_conference_focus_joins_total").absolute(c.focus_joins);
        metrics::counter!("vienna_conference_media_joins_total").absolute(c.media_joins);
        metrics::counter!("vienna_conference_media_refused_total").absolute(c.media_refused);
        metrics::counter!("vienna_conference_media_ended_total").absolute(c.media_timeouts);
        metrics::counter!("vienna_conference_subscriptions_total").absolute(c.subscriptions);
        metrics::counter!("vienna_conference_notifies_total").absolute(c.notifies);
        metrics::counter!("vienna_conference_notify_failures_total").absolute(c.notify_failures);
        metrics::counter!("vienna_conference_byes_total").absolute(c.byes);
        metrics::counter!("vienna_conference_ended_total").absolute(c.conferences_ended);
    }
}
