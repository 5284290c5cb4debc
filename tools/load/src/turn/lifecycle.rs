//! What the clients of both TURN dialects ([`super::client`], [`super::msclient`]) share, sans-IO: the
//! phase, the one outstanding request with its RFC 8489 §6.2.1 retransmission timers (RTO doubling from
//! 500 ms, five transmissions, then a timeout) and its retry state (challenged once, stale nonces), the
//! failure, and the allocation's lifetime with its two refresh times (the allocation's, and the path's:
//! the channel binding, or MS-TURN's active destination). The dialects build and read the messages.

use std::time::{Duration, Instant};

use super::client::{Action, Failure, Phase, Step};

/// First retransmission timeout.
pub const RTO: Duration = Duration::from_millis(500);
/// Transmissions of one request before it times out.
pub const MAX_TRIES: u32 = 5;
/// Retries of one request after 438 Stale Nonce.
pub const MAX_STALE_RETRIES: u8 = 3;

/// The outstanding request.
#[derive(Debug)]
pub struct Pending<T> {
    /// What it asks for.
    pub step: Step,
    /// Its transaction id.
    pub txid: T,
    /// Its bytes, sent again on retransmission.
    pub bytes: Vec<u8>,
    tries: u32,
    rto: Duration,
    next_at: Instant,
    /// Whether it already answered a 401 challenge.
    pub challenged: bool,
    /// How many 438 Stale Nonce answers it has had.
    pub stale_retries: u8,
}

/// What a timeout asks the client to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet.
    Nothing,
    /// Send the outstanding request again.
    Resend,
    /// Make this refresh request.
    Request(Step),
}

/// One client's state apart from its messages.
#[derive(Debug)]
pub struct Lifecycle<T> {
    /// Where the client stands.
    pub phase: Phase,
    /// The request in flight.
    pub pending: Option<Pending<T>>,
    /// Why set-up (or deletion) failed.
    pub failure: Option<Failure>,
    /// Refreshes that failed while the client was ready.
    pub refresh_failures: u32,
    /// The allocation's lifetime (the server's LIFETIME, 600 s until it says).
    pub lifetime: Duration,
    /// When the allocation is refreshed next.
    pub alloc_refresh_at: Option<Instant>,
    /// When the path (channel binding, active destination) is refreshed next.
    pub path_refresh_at: Option<Instant>,
}

impl<T: Copy + PartialEq> Default for Lifecycle<T> {
    fn default() -> Self {
        Lifecycle {
            phase: Phase::Idle,
            pending: None,
            failure: None,
            refresh_failures: 0,
            lifetime: Duration::from_secs(600),
            alloc_refresh_at: None,
            path_refresh_at: None,
        }
    }
}

impl<T: Copy + PartialEq> Lifecycle<T> {
    /// The request to (re)send.
    pub fn outgoing(&self) -> &[u8] {
        self.pending.as_ref().map_or(&[], |t| &t.bytes)
    }

    /// When [`timeout`](Self::timeout) is next needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(t) = &self.pending {
            return Some(t.next_at);
        }
        if self.phase == Phase::Ready {
            return [self.alloc_refresh_at, self.path_refresh_at].into_iter().flatten().min();
        }
        None
    }

    /// Retransmits or times out the request in flight, or names the refresh that is due (`path_step`
    /// for the path's).
    pub fn timeout(&mut self, now: Instant, path_step: Step) -> Due {
        if let Some(t) = &mut self.pending {
            if now < t.next_at {
                return Due::Nothing;
            }
            if t.tries >= MAX_TRIES {
                let step = t.step;
                self.fail(step, None);
                return Due::Nothing;
            }
            t.tries += 1;
            t.rto *= 2;
            t.next_at = now + t.rto;
            return Due::Resend;
        }
        if self.phase != Phase::Ready {
            return Due::Nothing;
        }
        if self.alloc_refresh_at.is_some_and(|t| now >= t) {
            return Due::Request(Step::Refresh);
        }
        if self.path_refresh_at.is_some_and(|t| now >= t) {
            return Due::Request(path_step);
        }
        Due::Nothing
    }

    /// The step of the request in flight, if `txid` answers it.
    pub fn answered(&self, txid: T) -> Option<Step> {
        self.pending.as_ref().filter(|t| t.txid == txid).map(|t| t.step)
    }

    /// Puts a new request in flight.
    pub fn begin(&mut self, now: Instant, step: Step, txid: T, bytes: Vec<u8>) -> Action {
        self.pending = Some(Pending {
            step,
            txid,
            bytes,
            tries: 1,
            rto: RTO,
            next_at: now + RTO,
            challenged: false,
            stale_retries: 0,
        });
        Action::Send
    }

    /// The retry state (challenged, stale retries) of the request in flight.
    pub fn retry_state(&self) -> (bool, u8) {
        self.pending.as_ref().map_or((false, 0), |t| (t.challenged, t.stale_retries))
    }

    /// Carries a retry state over to the request just begun in place of the answered one.
    pub fn set_retry_state(&mut self, challenged: bool, stale_retries: u8) {
        if let Some(t) = &mut self.pending {
            t.challenged = challenged;
            t.stale_retries = stale_retries;
        }
    }

    /// The request in flight is done.
    pub fn settle(&mut self) {
        self.pending = None;
    }

    /// `step` failed with `code` (`None`: no answer).
    pub fn fail(&mut self, step: Step, code: Option<u16>) {
        if self.phase == Phase::Ready {
            // A refresh failed: the allocation or path will lapse, so the client stops using it.
            self.refresh_failures += 1;
        }
        self.pending = None;
        self.phase = Phase::Failed;
        self.failure = Some(Failure { step, code });
    }

    /// The server granted `lifetime` seconds (or kept the last); the allocation is refreshed at half.
    pub fn note_lifetime(&mut self, now: Instant, lifetime: Option<u32>) {
        if let Some(secs) = lifetime {
            self.lifetime = Duration::from_secs(u64::from(secs));
        }
        self.alloc_refresh_at = Some(now + self.lifetime / 2);
    }

    /// The path is in place: the client is ready, the path refreshed after `refresh`.
    pub fn ready(&mut self, now: Instant, refresh: Option<Duration>) {
        self.phase = Phase::Ready;
        if let Some(r) = refresh {
            self.path_refresh_at = Some(now + r);
        }
    }

    /// The allocation is gone (deleted, or the server no longer has it).
    pub fn deleted(&mut self) {
        self.pending = None;
        self.phase = Phase::Deleted;
    }

    /// Starts tearing down: `true` when a delete request must go out (there is an allocation), else the
    /// client is done (abandoning any request in flight; an unanswered Allocate expires on the server).
    pub fn start_delete(&mut self, allocated: bool) -> bool {
        match self.phase {
            Phase::Deleting | Phase::Deleted => false,
            _ if !allocated => {
                self.pending = None;
                if self.phase != Phase::Failed {
                    self.phase = Phase::Deleted;
                }
                false
            }
            _ => {
                self.phase = Phase::Deleting;
                true
            }
        }
    }
}
