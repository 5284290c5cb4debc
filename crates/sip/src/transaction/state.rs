//! Per-transaction state shared by the four RFC 3261 §17 state machines.

use std::time::{Duration, Instant};

use super::{Peer, ServerKey, TransactionId};
use crate::message::Request;

/// Transaction states (RFC 3261 §17 figures 5-8, RFC 6026 Accepted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// INVITE client, request sent.
    Calling,
    /// Non-INVITE client or server, before any response.
    Trying,
    /// A provisional response was received or sent.
    Proceeding,
    /// A 2xx to an INVITE was received or sent (RFC 6026).
    Accepted,
    /// A non-2xx final response was received or sent.
    Completed,
    /// INVITE server: the ACK arrived.
    Confirmed,
}

/// The timers of RFC 3261 Table 4 and RFC 6026, plus the 200 ms 100 Trying delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// INVITE request retransmit (unreliable).
    A,
    /// INVITE transaction timeout.
    B,
    /// Proxy INVITE transaction timeout.
    C,
    /// Wait for response retransmits (INVITE client, Completed).
    D,
    /// Non-INVITE request retransmit (unreliable).
    E,
    /// Non-INVITE transaction timeout.
    F,
    /// INVITE final response retransmit (unreliable).
    G,
    /// Wait for ACK receipt.
    H,
    /// Wait for ACK retransmits.
    I,
    /// Wait for non-INVITE request retransmits.
    J,
    /// Wait for non-INVITE response retransmits.
    K,
    /// RFC 6026: INVITE server Accepted state.
    L,
    /// RFC 6026: INVITE client Accepted state.
    M,
    /// Automatic 100 Trying of an INVITE server transaction.
    Trying,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
pub(super) enum Kind {
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
}

impl Kind {
    pub(super) fn is_client(self) -> bool {
        matches!(self, Kind::ClientInvite | Kind::ClientNonInvite)
    }
}

#[derive(Debug)]
pub(super) struct Transaction {
    pub(super) id: TransactionId,
    pub(super) kind: Kind,
    pub(super) state: State,
    pub(super) peer: Peer,
    /// Boxed: most server transactions keep none, and the table moves entries when it grows.
    pub(super) request: Option<Box<Request>>,
    pub(super) request_bytes: Vec<u8>,
    pub(super) last_response: Option<Vec<u8>>,
    pub(super) ack: Option<Vec<u8>>,
    pub(super) server_key: Option<ServerKey>,
    pub(super) interval: Duration,
    pub(super) timers: Vec<(Timer, Instant)>,
    pub(super) timer_c: bool,
    pub(super) got_provisional: bool,
    pub(super) cancel_pending: bool,
}

impl Transaction {
    pub(super) fn new(
        id: TransactionId,
        kind: Kind,
        state: State,
        peer: Peer,
        request: Option<Request>,
        request_bytes: Vec<u8>,
        server_key: Option<ServerKey>,
    ) -> Self {
        Transaction {
            id,
            kind,
            state,
            peer,
            request: request.map(Box::new),
            request_bytes,
            last_response: None,
            ack: None,
            server_key,
            interval: Duration::ZERO,
            timers: Vec::new(),
            timer_c: false,
            got_provisional: false,
            cancel_pending: false,
        }
    }

    pub(super) fn set_timer(&mut self, timer: Timer, at: Instant) {
        self.clear_timer(timer);
        self.timers.push((timer, at));
    }

    pub(super) fn timer(&self, timer: Timer) -> Option<Instant> {
        self.timers.iter().find(|(t, _)| *t == timer).map(|(_, at)| *at)
    }

    pub(super) fn clear_timer(&mut self, timer: Timer) {
        self.timers.retain(|(t, _)| *t != timer);
    }

    pub(super) fn clear_timers(&mut self) {
        self.timers.clear();
    }
}
