//! One user's presence: the states its endpoints published (RFC 3903 event state, one per entity tag),
//! how many of its endpoints are registered, and the aggregate its watchers see.
//!
//! Aggregation (the working rule of MS-PRES §3.7.5 as clients observe it; see the research notes §4.3):
//! 1. With `require_registration` and no registered endpoint: Offline, whatever was published.
//! 2. No publication that says anything: Online when an endpoint is registered, else Offline.
//! 3. A manual state (the user chose it) is kept over automatic ones; of several, the latest published.
//! 4. Otherwise the most available automatic state wins (the lowest availability number), so an idle
//!    desktop and an active phone show Online.
//!
//! The note is the winning publication's, or else the latest note any publication carries.
//!
//! A durable manual state (set by the user for all its devices and kept across restarts, MS-PRES's
//! static `userState`) counts as a manual publication from the moment it was seen: a later manual state
//! from a device replaces it in the aggregate, and it never makes a user with no registered endpoint
//! look online.

use std::collections::HashMap;
use std::time::Instant;

use crate::availability::PresenceState;

/// One publication (RFC 3903 §2: event state identified by an entity tag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    /// What it says.
    pub state: PresenceState,
    /// Whether the user chose it.
    pub manual: bool,
    /// Whether it says anything (see [`crate::pidf::Published::informative`]); others are left out.
    pub informative: bool,
    /// When it expires.
    pub expires_at: Instant,
    /// Order of publication (higher is later), for "the latest manual state".
    pub seq: u64,
    /// The PIDF tuple ids it carries (see [`crate::pidf::Published::tuples`]).
    pub tuples: Vec<String>,
    /// Where it came from: the sent-by of the PUBLISH's top Via (the publishing device).
    pub source: String,
}

/// A presentity: publications by entity tag, registered endpoints, the aggregate.
#[derive(Clone, Debug)]
pub struct Presentity {
    /// Live publications by entity tag.
    pub publications: HashMap<String, Publication>,
    /// Registered endpoints (live bindings).
    pub endpoints: usize,
    /// The aggregate watchers see now.
    pub current: PresenceState,
    /// The durable manual state, with the time it was set (its identity) and its place in publication
    /// order.
    pub durable: Option<(PresenceState, i64, u64)>,
}

impl Default for Presentity {
    fn default() -> Self {
        Presentity { publications: HashMap::new(), endpoints: 0, current: PresenceState::offline(), durable: None }
    }
}

impl Presentity {
    /// Computes the aggregate from publications and endpoints (see the module docs).
    pub fn aggregate(&self, require_registration: bool) -> PresenceState {
        if require_registration && self.endpoints == 0 {
            return PresenceState::offline();
        }
        let durable = self.durable.as_ref().map(|(state, _, seq)| (state, *seq));
        let latest_manual = self.publications.values().filter(|p| p.manual && p.informative).map(|p| p.seq).max();
        if let Some((state, seq)) = durable
            && latest_manual.is_none_or(|m| m < seq)
        {
            return state.clone();
        }
        if !self.publications.values().any(|p| p.informative) {
            return if self.endpoints > 0 {
                PresenceState::of(crate::availability::State::Online)
            } else {
                PresenceState::offline()
            };
        }
        let pubs = self.publications.values().filter(|p| p.informative);
        let winner = pubs
            .clone()
            .filter(|p| p.manual)
            .max_by_key(|p| p.seq)
            .or_else(|| pubs.clone().min_by_key(|p| (p.state.availability, std::cmp::Reverse(p.seq))))
            .expect("non-empty");
        let mut state = winner.state.clone();
        if state.note.is_none() {
            state.note =
                pubs.filter(|p| p.state.note.is_some()).max_by_key(|p| p.seq).and_then(|p| p.state.note.clone());
        }
        state
    }

    /// Recomputes the aggregate; returns whether it changed.
    pub fn refresh(&mut self, require_registration: bool) -> bool {
        let next = self.aggregate(require_registration);
        if next == self.current {
            return false;
        }
        self.current = next;
        true
    }

    /// Drops the publications other than `keep` from the same `source` that carry one of `tuples`: a device
    /// that publishes the same tuple again without SIP-If-Match (baresip 1.0 does, twice at start)
    /// replaces its own older state instead of leaving it to compete in the aggregate until it expires.
    /// Other devices' publications stay, whatever their tuple ids. Returns the entity tags dropped.
    pub fn supersede(&mut self, keep: &str, source: &str, tuples: &[String]) -> Vec<String> {
        if tuples.is_empty() || source.is_empty() {
            return Vec::new();
        }
        let old: Vec<String> = self
            .publications
            .iter()
            .filter(|(etag, p)| {
                etag.as_str() != keep && p.source == source && p.tuples.iter().any(|t| tuples.contains(t))
            })
            .map(|(etag, _)| etag.clone())
            .collect();
        for etag in &old {
            self.publications.remove(etag);
        }
        old
    }

    /// Whether nothing is left to remember (no publication, no endpoint).
    pub fn is_idle(&self) -> bool {
        self.publications.is_empty() && self.endpoints == 0 && self.durable.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::availability::{ONLINE_IDLE, State};

    fn publication(state: State, manual: bool, seq: u64) -> Publication {
        Publication {
            state: PresenceState::of(state),
            manual,
            informative: true,
            expires_at: Instant::now(),
            seq,
            tuples: Vec::new(),
            source: String::new(),
        }
    }

    #[test]
    fn manual_beats_automatic_and_most_available_wins() {
        let mut p = Presentity::default();
        assert_eq!(p.aggregate(true).state(), State::Offline);
        p.endpoints = 2;
        assert_eq!(p.aggregate(true).state(), State::Online);
        let mut idle = publication(State::Online, false, 1);
        idle.state.availability = ONLINE_IDLE;
        p.publications.insert("desk".into(), idle);
        assert_eq!(p.aggregate(true).availability, ONLINE_IDLE);
        p.publications.insert("phone".into(), publication(State::Online, false, 2));
        assert_eq!(p.aggregate(true).availability, 3500, "the most available endpoint wins");
        p.publications.insert("desk".into(), publication(State::Busy, true, 3));
        assert_eq!(p.aggregate(true).state(), State::Busy, "a manual state is kept over automatic ones");
        p.publications.insert("phone".into(), publication(State::Away, true, 4));
        assert_eq!(p.aggregate(true).state(), State::Away, "the latest manual state");
        p.endpoints = 0;
        assert_eq!(p.aggregate(true).state(), State::Offline, "no endpoint registered");
        assert_eq!(p.aggregate(false).state(), State::Away);
    }
}
