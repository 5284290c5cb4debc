//! One MS-TURN client's control plane ([MS-TURN] §3.1, the client side), sans-IO: Allocate with the
//! MS-TURN challenge (NONCE 0x0014, REALM 0x0015, MESSAGE-INTEGRITY over the message zero-padded to 64
//! bytes, with the MS-Version 1/2 MD5 key or the MS-Version 3 SHA-256 derived key), optionally Set Active
//! Destination to the peer (then data flows raw both ways), refreshes (a new Allocate on the same 5-tuple
//! at half the lifetime; Set Active Destination again before the permission's 300 s run out), and
//! deletion (Allocate with LIFETIME 0).
//!
//! The wire format is `vienna_stun::msturn`'s; the states, steps and failures are those of the RFC 8656
//! client ([`super::client`]), so the worker drives both the same way. One transaction is outstanding at
//! a time, retransmitted with the same timers. The MS-SEQUENCE-NUMBER the Allocate response hands out is
//! pre-incremented for every Set Active Destination and every Send request ([`MsClient::send_key`]).
//! Response integrity is not verified (the tool trusts the server it measures). Left out: TCP and the
//! pseudo-TLS port, MS-TURNBWM, MS-Version 4+ dual-family allocations.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vienna_stun::msturn::{self, Builder, Hash, Message, SequenceNumber, TransactionId, attr, types};

use super::client::{Action, Failure, Phase, Rng, Step};
use super::lifecycle::{Due, Lifecycle, MAX_STALE_RETRIES};

/// Permissions last 300 s; Set Active Destination is sent again before that.
const ACTIVE_REFRESH: Duration = Duration::from_secs(240);

/// What every MS-TURN client of a run shares.
#[derive(Debug, Clone)]
pub struct MsSettings {
    /// USERNAME bytes (an MRAS token is binary: the base64-decoded username of the MRAS answer).
    pub username: Vec<u8>,
    /// Password bytes the key is derived from (MRAS: the decoded password).
    pub password: Vec<u8>,
    /// The peer data goes to.
    pub peer: SocketAddr,
    /// MS-VERSION sent in the Allocate (1–3; 3 and up sign with HMAC-SHA256).
    pub version: u32,
    /// Set Active Destination to the peer after allocating: data then flows raw (else: Send requests
    /// out, Data Indications back).
    pub active_destination: bool,
}

#[derive(Debug, Clone)]
struct Auth {
    realm: Vec<u8>,
    nonce: Vec<u8>,
    key: [u8; 32],
}

/// The key and sequence number to sign one Send request with.
#[derive(Debug, Clone, Copy)]
pub struct SendKey {
    /// Key bytes (the first 16 for SHA-1).
    pub key: [u8; 32],
    /// Which HMAC.
    pub hash: Hash,
    /// MS-SEQUENCE-NUMBER for this request.
    pub sequence: Option<SequenceNumber>,
}

impl SendKey {
    /// The key as the HMAC takes it.
    pub fn key(&self) -> &[u8] {
        &self.key[..if self.hash == Hash::Sha1 { 16 } else { 32 }]
    }
}

/// One client's MS-TURN control state.
#[derive(Debug, Default)]
pub struct MsClient {
    life: Lifecycle<TransactionId>,
    auth: Option<Auth>,
    relayed: Option<SocketAddr>,
    sequence: Option<SequenceNumber>,
}

impl MsClient {
    /// A client that has not started.
    pub fn new() -> MsClient {
        MsClient::default()
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        self.life.phase
    }

    /// Why set-up (or deletion) failed.
    pub fn failure(&self) -> Option<Failure> {
        self.life.failure
    }

    /// Refreshes (allocation or active destination) that failed while the client was ready.
    pub fn refresh_failures(&self) -> u32 {
        self.life.refresh_failures
    }

    /// The relayed address (MAPPED-ADDRESS of the Allocate response).
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.relayed
    }

    /// The request to (re)send.
    pub fn outgoing(&self) -> &[u8] {
        self.life.outgoing()
    }

    /// Starts with an Allocate.
    pub fn start(&mut self, now: Instant, s: &MsSettings, rng: &mut Rng) -> Action {
        self.life.phase = Phase::SettingUp;
        self.request(now, Step::Allocate, s, rng)
    }

    /// Deletes the allocation if there is one (Allocate with LIFETIME 0), abandoning any other request.
    pub fn delete(&mut self, now: Instant, s: &MsSettings, rng: &mut Rng) -> Action {
        if self.life.start_delete(self.relayed.is_some()) {
            self.request(now, Step::Delete, s, rng)
        } else {
            Action::Nothing
        }
    }

    /// The key and the next sequence number for a Send request; `None` before the allocation exists.
    pub fn send_key(&mut self, s: &MsSettings) -> Option<SendKey> {
        let key = self.auth.as_ref()?.key;
        self.relayed?;
        let sequence = self.next_sequence();
        Some(SendKey { key, hash: Hash::for_version(s.version), sequence })
    }

    fn next_sequence(&mut self) -> Option<SequenceNumber> {
        let s = self.sequence.as_mut()?;
        s.number = s.number.wrapping_add(1);
        Some(*s)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.life.poll_timeout()
    }

    /// Retransmits, times out, or starts a due refresh (the allocation's, or the active destination's).
    pub fn handle_timeout(&mut self, now: Instant, s: &MsSettings, rng: &mut Rng) -> Action {
        match self.life.timeout(now, Step::SetActiveDestination) {
            Due::Nothing => Action::Nothing,
            Due::Resend => Action::Send,
            Due::Request(step) => self.request(now, step, s, rng),
        }
    }

    /// Handles an MS-TURN response from the server (anything else is ignored).
    pub fn handle_response(&mut self, now: Instant, msg: &Message<'_>, s: &MsSettings, rng: &mut Rng) -> Action {
        let Some(step) = self.life.answered(msg.transaction_id()) else {
            return Action::Nothing; // a late answer to an earlier request
        };
        let (ok, error) = match step {
            Step::SetActiveDestination => (types::SET_ACTIVE_DESTINATION_RESPONSE, types::SET_ACTIVE_DESTINATION_ERROR),
            _ => (types::ALLOCATE_RESPONSE, types::ALLOCATE_ERROR),
        };
        match msg.msg_type() {
            t if t == ok => self.succeeded(now, step, msg, s, rng),
            t if t == error => {
                let code = msg.error_code().and_then(Result::ok).map_or(0, |(c, _)| c);
                self.errored(now, step, code, msg, s, rng)
            }
            _ => Action::Nothing,
        }
    }

    fn succeeded(&mut self, now: Instant, step: Step, msg: &Message<'_>, s: &MsSettings, rng: &mut Rng) -> Action {
        self.life.settle();
        let lifetime = msg.get_u32(attr::LIFETIME).and_then(Result::ok);
        match step {
            Step::Allocate => {
                self.relayed = msg.get_address(attr::MAPPED_ADDRESS).and_then(Result::ok);
                self.sequence = msg.sequence_number().and_then(Result::ok);
                self.life.note_lifetime(now, lifetime);
                if s.active_destination {
                    self.request(now, Step::SetActiveDestination, s, rng)
                } else {
                    self.life.ready(now, None);
                    Action::Nothing
                }
            }
            Step::SetActiveDestination => {
                self.life.ready(now, Some(ACTIVE_REFRESH));
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
            Step::CreatePermission | Step::ChannelBind => Action::Nothing,
        }
    }

    fn errored(
        &mut self,
        now: Instant,
        step: Step,
        code: u16,
        msg: &Message<'_>,
        s: &MsSettings,
        rng: &mut Rng,
    ) -> Action {
        let (challenged, stale) = self.life.retry_state();
        let nonce = msg.get(attr::NONCE).map(<[u8]>::to_vec);
        let realm = msg.get(attr::REALM).map(<[u8]>::to_vec);
        match code {
            401 if !challenged && step == Step::Allocate => {
                let (Some(realm), Some(nonce)) = (realm, nonce) else {
                    self.life.fail(step, Some(code));
                    return Action::Nothing;
                };
                self.auth = Some(Auth { key: derive(s, &realm, &nonce), realm, nonce });
                let action = self.request(now, step, s, rng);
                self.life.set_retry_state(true, stale);
                action
            }
            438 if stale < MAX_STALE_RETRIES && matches!(step, Step::Allocate | Step::Refresh | Step::Delete) => {
                let (Some(nonce), Some(auth)) = (nonce, self.auth.as_mut()) else {
                    self.life.fail(step, Some(code));
                    return Action::Nothing;
                };
                if let Some(r) = realm {
                    auth.realm = r;
                }
                auth.nonce = nonce;
                auth.key = derive(s, &auth.realm, &auth.nonce);
                let action = self.request(now, step, s, rng);
                self.life.set_retry_state(challenged, stale + 1);
                action
            }
            // 437 on delete: already gone.
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

    fn request(&mut self, now: Instant, step: Step, s: &MsSettings, rng: &mut Rng) -> Action {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
        let txid = TransactionId(id);
        let bytes = self.build(step, txid, s);
        self.life.begin(now, step, txid, bytes)
    }

    fn build(&mut self, step: Step, txid: TransactionId, s: &MsSettings) -> Vec<u8> {
        let hash = Hash::for_version(s.version);
        let typ = match step {
            Step::SetActiveDestination => types::SET_ACTIVE_DESTINATION_REQUEST,
            _ => types::ALLOCATE_REQUEST,
        };
        let mut b = Builder::new(typ, txid, false);
        // Encoding these small attributes cannot fail.
        if step == Step::SetActiveDestination {
            let _ = b.add(attr::USERNAME, &s.username);
            let _ = b.add_address(attr::DESTINATION_ADDRESS, s.peer);
            if let Some(seq) = self.next_sequence() {
                let _ = b.add(attr::MS_SEQUENCE_NUMBER, &seq.encode());
            }
        } else {
            let _ = b.add_u32(attr::MS_VERSION, s.version);
            if step == Step::Delete {
                let _ = b.add_u32(attr::LIFETIME, 0);
            }
            if let Some(a) = &self.auth {
                let _ = b.add(attr::REALM, &a.realm);
                let _ = b.add(attr::NONCE, &a.nonce);
                let _ = b.add(attr::USERNAME, &s.username);
            }
        }
        if let Some(a) = &self.auth {
            let key = &a.key[..if hash == Hash::Sha1 { 16 } else { 32 }];
            let _ = b.add_integrity(hash, key);
        }
        b.finish()
    }
}

/// The MS-TURN key for `s` with this realm and nonce (the nonce only enters the MS-Version 3 key).
fn derive(s: &MsSettings, realm: &[u8], nonce: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 32];
    match Hash::for_version(s.version) {
        Hash::Sha1 => key[..16].copy_from_slice(&msturn::key_v1(&s.username, realm, &s.password)),
        Hash::Sha256 => key = msturn::key_v3(&s.username, realm, nonce, &s.password),
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    const REALM: &[u8] = b"vienna.test";

    fn settings(version: u32, active: bool) -> MsSettings {
        MsSettings {
            username: vec![2, 0, 0, 0x24, 0xAB],
            password: b"pw".to_vec(),
            peer: "127.0.0.1:9".parse().unwrap(),
            version,
            active_destination: active,
        }
    }

    fn request(c: &MsClient) -> Message<'_> {
        Message::decode(c.outgoing()).expect("a valid MS-TURN request")
    }

    fn error(req: &Message<'_>, code: u16, nonce: &[u8]) -> Vec<u8> {
        let typ = types::error_of(req.msg_type()).unwrap();
        let mut b = Builder::new(typ, req.transaction_id(), false);
        b.add_error(code, "x").unwrap();
        b.add(attr::NONCE, nonce).unwrap();
        b.add(attr::REALM, REALM).unwrap();
        b.finish()
    }

    fn allocated(req: &Message<'_>, relayed: SocketAddr, lifetime: u32) -> Vec<u8> {
        let mut b = Builder::new(types::ALLOCATE_RESPONSE, req.transaction_id(), false);
        b.add_address(attr::MAPPED_ADDRESS, relayed).unwrap();
        b.add_u32(attr::LIFETIME, lifetime).unwrap();
        b.add(attr::MS_SEQUENCE_NUMBER, &SequenceNumber { connection_id: [5; 20], number: 0 }.encode()).unwrap();
        b.finish()
    }

    fn answer(c: &mut MsClient, s: &MsSettings, now: Instant, bytes: &[u8], rng: &mut Rng) -> Action {
        let m = Message::decode(bytes).unwrap();
        c.handle_response(now, &m, s, rng)
    }

    #[test]
    fn allocate_challenge_active_destination_refresh_and_delete() {
        let (s, mut rng, t0) = (settings(1, true), Rng::new(1), Instant::now());
        let mut c = MsClient::new();
        assert_eq!(c.start(t0, &s, &mut rng), Action::Send);
        let req = request(&c);
        assert_eq!(req.msg_type(), types::ALLOCATE_REQUEST);
        assert_eq!(req.get_u32(attr::MS_VERSION), Some(Ok(1)));
        assert_eq!(req.integrity(), None, "the first Allocate carries no credentials");
        let resp = error(&req, 401, b"n1");
        assert_eq!(answer(&mut c, &s, t0, &resp, &mut rng), Action::Send);
        let req = request(&c);
        let key = msturn::key_v1(&s.username, REALM, &s.password);
        assert!(req.verify(&key), "signed with MD5(username:realm:password)");
        assert_eq!(req.get(attr::NONCE), Some(&b"n1"[..]));
        assert_eq!(req.get(attr::USERNAME), Some(&s.username[..]));
        let relayed: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let resp = allocated(&req, relayed, 100);
        assert_eq!(answer(&mut c, &s, t0, &resp, &mut rng), Action::Send, "then Set Active Destination");
        assert_eq!(c.relayed(), Some(relayed));
        let req = request(&c);
        assert_eq!(req.msg_type(), types::SET_ACTIVE_DESTINATION_REQUEST);
        assert_eq!(req.get_address(attr::DESTINATION_ADDRESS), Some(Ok(s.peer)));
        assert_eq!(req.sequence_number().unwrap().unwrap().number, 1, "the sequence number is pre-incremented");
        assert!(req.verify(&key));
        let mut ok = Builder::new(types::SET_ACTIVE_DESTINATION_RESPONSE, req.transaction_id(), false);
        ok.add_integrity(Hash::Sha1, &key).unwrap();
        assert_eq!(answer(&mut c, &s, t0, &ok.finish(), &mut rng), Action::Nothing);
        assert_eq!(c.phase(), Phase::Ready);
        let k = c.send_key(&s).unwrap();
        assert_eq!((k.key(), k.hash, k.sequence.unwrap().number), (&key[..], Hash::Sha1, 2));
        // allocation refresh at half the lifetime: a signed Allocate on the same 5-tuple
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(50)));
        let t1 = t0 + Duration::from_secs(50);
        assert_eq!(c.handle_timeout(t1, &s, &mut rng), Action::Send);
        let req = request(&c);
        assert_eq!(req.msg_type(), types::ALLOCATE_REQUEST);
        assert!(req.verify(&key));
        let resp = error(&req, 438, b"n2");
        assert_eq!(answer(&mut c, &s, t1, &resp, &mut rng), Action::Send, "stale nonce: again with the new one");
        let req = request(&c);
        assert_eq!(req.get(attr::NONCE), Some(&b"n2"[..]));
        let resp = allocated(&req, relayed, 100);
        assert_eq!(answer(&mut c, &s, t1, &resp, &mut rng), Action::Nothing);
        assert_eq!(c.phase(), Phase::Ready);
        assert_eq!(c.delete(t1, &s, &mut rng), Action::Send);
        let req = request(&c);
        assert_eq!(req.get_u32(attr::LIFETIME), Some(Ok(0)));
        let resp = allocated(&req, relayed, 0);
        assert_eq!(answer(&mut c, &s, t1, &resp, &mut rng), Action::Nothing);
        assert_eq!(c.phase(), Phase::Deleted);
    }

    #[test]
    fn version_3_signs_with_the_sha256_key_of_the_nonce() {
        let (s, mut rng, t0) = (settings(3, false), Rng::new(2), Instant::now());
        let mut c = MsClient::new();
        let _ = c.start(t0, &s, &mut rng);
        let resp = error(&request(&c), 401, b"nonce-3");
        let _ = answer(&mut c, &s, t0, &resp, &mut rng);
        let req = request(&c);
        assert_eq!(req.integrity(), Some(Hash::Sha256));
        assert!(req.verify(&msturn::key_v3(&s.username, REALM, b"nonce-3", &s.password)));
        let resp = allocated(&req, "127.0.0.1:50001".parse().unwrap(), 600);
        assert_eq!(answer(&mut c, &s, t0, &resp, &mut rng), Action::Nothing, "no active destination: ready");
        assert_eq!(c.phase(), Phase::Ready);
        assert_eq!(c.send_key(&s).unwrap().key().len(), 32);
    }

    #[test]
    fn a_second_401_fails_and_foreign_answers_are_ignored() {
        let (s, mut rng, t0) = (settings(1, false), Rng::new(3), Instant::now());
        let mut c = MsClient::new();
        let _ = c.start(t0, &s, &mut rng);
        let other = Builder::new(types::ALLOCATE_RESPONSE, TransactionId([7; 16]), false).finish();
        assert_eq!(answer(&mut c, &s, t0, &other, &mut rng), Action::Nothing);
        assert_eq!(c.phase(), Phase::SettingUp);
        let resp = error(&request(&c), 401, b"n");
        let _ = answer(&mut c, &s, t0, &resp, &mut rng);
        let resp = error(&request(&c), 401, b"n");
        assert_eq!(answer(&mut c, &s, t0, &resp, &mut rng), Action::Nothing);
        assert_eq!(c.failure(), Some(Failure { step: Step::Allocate, code: Some(401) }));
        assert!(c.send_key(&s).is_none());
    }
}
