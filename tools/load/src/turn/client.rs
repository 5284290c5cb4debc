//! One TURN client's control plane (RFC 8656 §7–§12 from the client side), sans-IO: Allocate (with the
//! long-term credential challenge of RFC 8489 §9.2), CreatePermission and ChannelBind to one peer,
//! refreshes before expiry, and deletion with Refresh LIFETIME 0.
//!
//! One transaction is outstanding at a time, retransmitted by [`super::lifecycle`] (RFC 8489 §6.2.1).
//! A 438 Stale Nonce is retried with the new nonce; a 401 is answered once with credentials. Response integrity is not verified (the tool
//! trusts the server it measures), and FINGERPRINT is neither sent nor checked.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vienna_stun::attributes as attr;
use vienna_stun::integrity::long_term_key;
use vienna_stun::{Attribute, Class, Message, MessageBuilder, Method, TransactionId};

use super::lifecycle::{Due, Lifecycle, MAX_STALE_RETRIES};

/// Permissions last 300 s (RFC 8656 §9); a ChannelBind refresh renews the channel and the permission.
const BIND_REFRESH: Duration = Duration::from_secs(240);
/// The channel every client binds (channel numbers are per allocation).
pub const CHANNEL: u16 = 0x4000;

/// The request a client is making.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// Allocate.
    Allocate,
    /// CreatePermission for the peer.
    CreatePermission,
    /// ChannelBind to the peer.
    ChannelBind,
    /// Refresh of the allocation.
    Refresh,
    /// Refresh with LIFETIME 0 (MS-TURN: Allocate with LIFETIME 0).
    Delete,
    /// MS-TURN Set Active Destination ([`super::msclient`]; the RFC 8656 client never makes it).
    SetActiveDestination,
}

impl Step {
    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Step::Allocate => "allocate",
            Step::CreatePermission => "create_permission",
            Step::ChannelBind => "channel_bind",
            Step::Refresh => "refresh",
            Step::Delete => "delete",
            Step::SetActiveDestination => "set_active_destination",
        }
    }

    fn method(self) -> Method {
        match self {
            Step::Allocate => Method::ALLOCATE,
            Step::CreatePermission => Method::CREATE_PERMISSION,
            Step::ChannelBind => Method::CHANNEL_BIND,
            Step::Refresh | Step::Delete | Step::SetActiveDestination => Method::REFRESH,
        }
    }
}

/// Where a client stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started.
    Idle,
    /// Allocating, permitting or binding.
    SettingUp,
    /// Allocation, permission and channel in place.
    Ready,
    /// Deletion requested.
    Deleting,
    /// Deleted (or never allocated, after teardown).
    Deleted,
    /// A step failed; see [`Client::failure`].
    Failed,
}

/// Why a step failed: its error code, or `None` for no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// The failed step.
    pub step: Step,
    /// STUN error code; `None`: timed out.
    pub code: Option<u16>,
}

/// What every client of a run shares.
#[derive(Debug, Clone)]
pub struct Settings {
    /// USERNAME.
    pub username: String,
    /// Password for the long-term key.
    pub password: String,
    /// The peer to permit and bind.
    pub peer: SocketAddr,
}

#[derive(Debug)]
struct Auth {
    realm: String,
    nonce: String,
    key: [u8; 16],
}

/// One client's TURN control state.
#[derive(Debug, Default)]
pub struct Client {
    life: Lifecycle<TransactionId>,
    auth: Option<Auth>,
    relayed: Option<SocketAddr>,
}

/// Whether the caller must send [`Client::outgoing`] now.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the pending request.
    Send,
    /// Nothing to send.
    Nothing,
}

impl Client {
    /// A client that has not started.
    pub fn new() -> Client {
        Client::default()
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        self.life.phase
    }

    /// Why set-up (or deletion) failed.
    pub fn failure(&self) -> Option<Failure> {
        self.life.failure
    }

    /// Refreshes (allocation or channel) that failed while the client was ready.
    pub fn refresh_failures(&self) -> u32 {
        self.life.refresh_failures
    }

    /// The relayed address the server gave.
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.relayed
    }

    /// The request to (re)send.
    pub fn outgoing(&self) -> &[u8] {
        self.life.outgoing()
    }

    /// Starts with an Allocate.
    pub fn start(&mut self, now: Instant, s: &Settings, rng: &mut Rng) -> Action {
        self.life.phase = Phase::SettingUp;
        self.request(now, Step::Allocate, s, rng)
    }

    /// Deletes the allocation if there is one (Refresh LIFETIME 0), abandoning any other request.
    pub fn delete(&mut self, now: Instant, s: &Settings, rng: &mut Rng) -> Action {
        if self.life.start_delete(self.relayed.is_some()) {
            self.request(now, Step::Delete, s, rng)
        } else {
            Action::Nothing
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.life.poll_timeout()
    }

    /// Retransmits, times out, or starts a due refresh (the allocation's, or the channel binding's).
    pub fn handle_timeout(&mut self, now: Instant, s: &Settings, rng: &mut Rng) -> Action {
        match self.life.timeout(now, Step::ChannelBind) {
            Due::Nothing => Action::Nothing,
            Due::Resend => Action::Send,
            Due::Request(step) => self.request(now, step, s, rng),
        }
    }

    /// Handles a STUN response from the server.
    pub fn handle_response(&mut self, now: Instant, msg: &Message<'_>, s: &Settings, rng: &mut Rng) -> Action {
        let Some(step) = self.life.answered(msg.transaction_id()).filter(|step| msg.method() == step.method()) else {
            return Action::Nothing; // a late answer to an earlier transmission or another request
        };
        match msg.class() {
            Class::Success => self.succeeded(now, step, msg, s, rng),
            Class::Error => {
                let code = match msg.get(attr::ERROR_CODE) {
                    Some(Ok(Attribute::ErrorCode(e))) => e.code,
                    _ => 0,
                };
                self.errored(now, step, code, msg, s, rng)
            }
            Class::Request | Class::Indication => Action::Nothing,
        }
    }

    fn succeeded(&mut self, now: Instant, step: Step, msg: &Message<'_>, s: &Settings, rng: &mut Rng) -> Action {
        self.life.settle();
        let lifetime = match msg.get(attr::LIFETIME) {
            Some(Ok(Attribute::Lifetime(secs))) => Some(secs),
            _ => None,
        };
        match step {
            Step::Allocate => {
                self.relayed = match msg.get(attr::XOR_RELAYED_ADDRESS) {
                    Some(Ok(Attribute::XorRelayedAddress(a))) => Some(a),
                    _ => None,
                };
                self.life.note_lifetime(now, lifetime);
                self.request(now, Step::CreatePermission, s, rng)
            }
            Step::CreatePermission => self.request(now, Step::ChannelBind, s, rng),
            Step::ChannelBind => {
                self.life.ready(now, Some(BIND_REFRESH));
                Action::Nothing
            }
            Step::Refresh => {
                self.life.note_lifetime(now, lifetime);
                Action::Nothing
            }
            Step::Delete => {
                self.life.deleted();
                Action::Nothing
            }
            Step::SetActiveDestination => Action::Nothing,
        }
    }

    fn errored(
        &mut self,
        now: Instant,
        step: Step,
        code: u16,
        msg: &Message<'_>,
        s: &Settings,
        rng: &mut Rng,
    ) -> Action {
        let text = |typ| match msg.get(typ) {
            Some(Ok(Attribute::Realm(v) | Attribute::Nonce(v))) => Some(v.to_owned()),
            _ => None,
        };
        let (challenged, stale) = self.life.retry_state();
        match code {
            401 if !challenged => {
                let (Some(realm), Some(nonce)) = (text(attr::REALM), text(attr::NONCE)) else {
                    self.life.fail(step, Some(code));
                    return Action::Nothing;
                };
                let key = long_term_key(&s.username, &realm, &s.password);
                self.auth = Some(Auth { realm, nonce, key });
                let action = self.request(now, step, s, rng);
                self.life.set_retry_state(true, stale);
                action
            }
            438 if stale < MAX_STALE_RETRIES => {
                let (Some(nonce), Some(auth)) = (text(attr::NONCE), self.auth.as_mut()) else {
                    self.life.fail(step, Some(code));
                    return Action::Nothing;
                };
                auth.nonce = nonce;
                if let Some(realm) = text(attr::REALM)
                    && realm != auth.realm
                {
                    auth.key = long_term_key(&s.username, &realm, &s.password);
                    auth.realm = realm;
                }
                let action = self.request(now, step, s, rng);
                self.life.set_retry_state(challenged, stale + 1);
                action
            }
            // 437 Allocation Mismatch on delete: already gone.
            437 if step == Step::Delete => {
                self.life.deleted();
                Action::Nothing
            }
            _ => {
                self.life.fail(step, Some(code));
                Action::Nothing
            }
        }
    }

    fn request(&mut self, now: Instant, step: Step, s: &Settings, rng: &mut Rng) -> Action {
        let txid = TransactionId(rng.txid());
        let bytes = self.build(step, txid, s);
        self.life.begin(now, step, txid, bytes)
    }

    fn build(&self, step: Step, txid: TransactionId, s: &Settings) -> Vec<u8> {
        let mut b = MessageBuilder::new(Class::Request, step.method(), txid);
        // Encoding these fixed-size attributes cannot fail.
        let _ = match step {
            Step::Allocate => b.add(&Attribute::RequestedTransport(17)),
            Step::CreatePermission => b.add(&Attribute::XorPeerAddress(s.peer)),
            Step::ChannelBind => {
                let _ = b.add(&Attribute::ChannelNumber(CHANNEL));
                b.add(&Attribute::XorPeerAddress(s.peer))
            }
            Step::Refresh | Step::SetActiveDestination => Ok(()),
            Step::Delete => b.add(&Attribute::Lifetime(0)),
        };
        if let Some(a) = &self.auth {
            let _ = b.add(&Attribute::Username(&s.username));
            let _ = b.add(&Attribute::Realm(&a.realm));
            let _ = b.add(&Attribute::Nonce(&a.nonce));
            b.add_message_integrity(&a.key);
        }
        b.finish()
    }
}

/// xorshift64* for transaction ids: unpredictable enough for a load generator, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `seed` (any value; zero is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A fresh 96-bit transaction id.
    pub fn txid(&mut self) -> [u8; 12] {
        let mut id = [0u8; 12];
        id[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&self.next_u64().to_be_bytes()[..4]);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vienna_stun::ErrorCode;

    fn settings() -> Settings {
        Settings { username: "alice".into(), password: "secret".into(), peer: "127.0.0.1:9".parse().unwrap() }
    }

    fn request(c: &Client) -> Message<'_> {
        Message::decode(c.outgoing()).expect("a valid request")
    }

    fn error(req: &Message<'_>, code: u16, nonce: &str) -> Vec<u8> {
        let mut b = MessageBuilder::new(Class::Error, req.method(), req.transaction_id());
        b.add(&Attribute::ErrorCode(ErrorCode { code, reason: "x".into() })).unwrap();
        b.add(&Attribute::Realm("example.org")).unwrap();
        b.add(&Attribute::Nonce(nonce)).unwrap();
        b.finish()
    }

    fn success(req: &Message<'_>, extra: &[Attribute<'_>]) -> Vec<u8> {
        let mut b = MessageBuilder::new(Class::Success, req.method(), req.transaction_id());
        for a in extra {
            b.add(a).unwrap();
        }
        b.finish()
    }

    fn answer(c: &mut Client, now: Instant, bytes: &[u8], rng: &mut Rng) -> Action {
        let m = Message::decode(bytes).unwrap();
        c.handle_response(now, &m, &settings(), rng)
    }

    #[test]
    fn full_setup_with_challenge_stale_nonce_refresh_and_delete() {
        let (s, mut rng, t0) = (settings(), Rng::new(1), Instant::now());
        let mut c = Client::new();
        assert_eq!(c.start(t0, &s, &mut rng), Action::Send);
        let resp = error(&request(&c), 401, "n1");
        assert_eq!(answer(&mut c, t0, &resp, &mut rng), Action::Send);
        let req = request(&c);
        assert_eq!(req.method(), Method::ALLOCATE);
        let key = long_term_key("alice", "example.org", "secret");
        assert!(req.verify_integrity(&key).is_some(), "retry carries MESSAGE-INTEGRITY");
        let resp = error(&req, 438, "n2");
        assert_eq!(answer(&mut c, t0, &resp, &mut rng), Action::Send);
        let req = request(&c);
        assert!(matches!(req.get(attr::NONCE), Some(Ok(Attribute::Nonce("n2")))));
        let relayed: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let resp = success(&req, &[Attribute::XorRelayedAddress(relayed), Attribute::Lifetime(100)]);
        assert_eq!(answer(&mut c, t0, &resp, &mut rng), Action::Send);
        assert_eq!(c.relayed(), Some(relayed));
        let req = request(&c);
        assert_eq!(req.method(), Method::CREATE_PERMISSION);
        let resp = success(&req, &[]);
        assert_eq!(answer(&mut c, t0, &resp, &mut rng), Action::Send);
        let req = request(&c);
        assert_eq!(req.method(), Method::CHANNEL_BIND);
        let resp = success(&req, &[]);
        assert_eq!(answer(&mut c, t0, &resp, &mut rng), Action::Nothing);
        assert_eq!(c.phase(), Phase::Ready);
        // allocation refresh at half the lifetime
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(50)));
        let t1 = t0 + Duration::from_secs(50);
        assert_eq!(c.handle_timeout(t1, &s, &mut rng), Action::Send);
        let req = request(&c);
        assert_eq!(req.method(), Method::REFRESH);
        let resp = success(&req, &[Attribute::Lifetime(100)]);
        assert_eq!(answer(&mut c, t1, &resp, &mut rng), Action::Nothing);
        assert_eq!(c.phase(), Phase::Ready);
        assert_eq!(c.delete(t1, &s, &mut rng), Action::Send);
        let req = request(&c);
        assert!(matches!(req.get(attr::LIFETIME), Some(Ok(Attribute::Lifetime(0)))));
        let resp = success(&req, &[]);
        assert_eq!(answer(&mut c, t1, &resp, &mut rng), Action::Nothing);
        assert_eq!(c.phase(), Phase::Deleted);
    }

    #[test]
    fn wrong_password_fails_with_401() {
        let (s, mut rng, t0) = (settings(), Rng::new(2), Instant::now());
        let mut c = Client::new();
        let _ = c.start(t0, &s, &mut rng);
        let resp = error(&request(&c), 401, "n1");
        assert_eq!(answer(&mut c, t0, &resp, &mut rng), Action::Send);
        let resp = error(&request(&c), 401, "n1");
        assert_eq!(answer(&mut c, t0, &resp, &mut rng), Action::Nothing);
        assert_eq!(c.phase(), Phase::Failed);
        assert_eq!(c.failure(), Some(Failure { step: Step::Allocate, code: Some(401) }));
    }

    #[test]
    fn retransmits_then_times_out_and_ignores_foreign_answers() {
        let (s, mut rng, t0) = (settings(), Rng::new(3), Instant::now());
        let mut c = Client::new();
        let _ = c.start(t0, &s, &mut rng);
        let first = c.outgoing().to_vec();
        let mut other = MessageBuilder::new(Class::Success, Method::ALLOCATE, TransactionId([9; 12]));
        other.add(&Attribute::Lifetime(1)).unwrap();
        assert_eq!(answer(&mut c, t0, &other.finish(), &mut rng), Action::Nothing);
        let mut now = t0;
        let mut sends = 1;
        while let Some(at) = c.poll_timeout() {
            assert!(at > now, "deadlines move forward");
            now = at;
            if c.handle_timeout(now, &s, &mut rng) == Action::Send {
                assert_eq!(c.outgoing(), &first[..], "a retransmission is the same request");
                sends += 1;
            }
        }
        assert_eq!(sends, crate::turn::lifecycle::MAX_TRIES);
        assert_eq!(now - t0, Duration::from_millis(500 + 1000 + 2000 + 4000 + 8000));
        assert_eq!(c.failure(), Some(Failure { step: Step::Allocate, code: None }));
    }
}
