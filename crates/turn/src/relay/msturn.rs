//! The MS-TURN dialect of the relay ([MS-TURN] §3.3, MS-TURNBWM §3.3; research notes
//! `media-protocols.md` §1.7, §1.8, §2).
//!
//! MS-TURN allocations live in the same tables as RFC 8656 ones (same ports, quotas, peer policy,
//! bandwidth cap, timers); what differs is kept in [`MsState`]. Every datagram or TCP frame is
//! classified on its own: an MS-TURN control message carries the MAGIC-COOKIE attribute at bytes
//! 20..28; on an MS-TURN allocation everything else is raw data for the active destination.
//!
//! * Allocate (0x0003): 401 with NONCE (0x0014), REALM (0x0015) and, over UDP, ALTERNATE-SERVER
//!   (the relay's public address, when [`Config::ms_public_address`](crate::Config) is set); then credentials from an MRAS token
//!   ([`Config::mras`](crate::Config::mras)), a TURN REST username, or a store account; MI checked
//!   with the MS-Version 1/2 MD5 key or the MS-Version 3+ SHA-256 derived key. The success
//!   response carries MAPPED-ADDRESS (relayed), LIFETIME, BANDWIDTH, XOR-MAPPED-ADDRESS,
//!   MS-SEQUENCE-NUMBER (a fresh 20-byte connection id) and MI. A second Allocate on the same
//!   5-tuple refreshes; LIFETIME 0 deletes.
//! * Send (0x0004): checked with the allocation's key and MS-SEQUENCE-NUMBER, installs a
//!   permission for DESTINATION-ADDRESS and forwards DATA; never answered. REALM may be present
//!   or not. Drops are counted.
//! * Data Indication (0x0115): peer data from a permitted peer other than the active destination.
//! * Set Active Destination (0x0006): after it, data to and from that peer flows raw (TCP frame type
//!   0x03). Without DESTINATION-ADDRESS it clears the active destination (the specification's
//!   transition timer is UNCONFIRMED and not implemented: the change is immediate).
//! * MS-SEQUENCE-NUMBER: the connection id must match; numbers are accepted once, within a 64-wide
//!   window (UDP reorders). A retransmitted Allocate or Set Active Destination (same transaction
//!   id) gets the same answer again.
//! * An Allocate over TCP or TLS asks the driver for a TCP relayed address ([`BindRequest::tcp`]):
//!   MS-ICE2 clients then offer TCP relay candidates, and the driver relays the peers' byte streams
//!   (Send DATA written to the connection, bytes read returned as Data Indications or raw data).
//! * MS-TURNBWM: Reservation Check, Commit and Update in Allocate requests are answered with the
//!   site address response attributes, judged against the bandwidth cap; a committed reservation
//!   becomes the allocation's cap. The numeric values of the admission message (1 check, 2
//!   commit, 3 update) are UNCONFIRMED.
//!
//! Error codes: 400 malformed, 401 challenge, 420 unknown attribute, 431 integrity, 432 no
//! username, 434 no realm, 435 no nonce, 436 unknown user or expired token, 437 no allocation,
//! 438 stale nonce, 403 peer refused, 486/300/500 quotas and capacity.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vienna_stun::attributes::AddressFamily;
use vienna_stun::msturn::{self, Builder, Hash, Message, SequenceNumber, TransactionId, attr, types};

use super::{Allocation, Auth, BindState, Pending, PendingBind, Relay, TimerKey, TokenBucket};
use crate::counters::reason_phrase;
use crate::credentials;
use crate::nonce::{self, NonceCheck};
use crate::{AuthFailure, BindRequest, DropReason, Event, FiveTuple, Output, PeerTransmit, Quota, Transmit, Transport};

/// MS-TURNBWM admission control operations (values UNCONFIRMED).
const RESERVATION_CHECK: u16 = 1;
const RESERVATION_COMMIT: u16 = 2;
const RESERVATION_UPDATE: u16 = 3;

/// A derived MS-TURN key (16-byte MD5 key for SHA-1, 32-byte key for SHA-256).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MsKey {
    bytes: [u8; 32],
    hash: Hash,
}

impl MsKey {
    fn as_slice(&self) -> &[u8] {
        match self.hash {
            Hash::Sha1 => &self.bytes[..16],
            Hash::Sha256 => &self.bytes[..32],
        }
    }
}

/// Credentials a request authenticated with.
#[derive(Clone, Debug)]
pub(crate) struct MsAuth {
    display: String,
    username: Vec<u8>,
    key: MsKey,
    expiry: Option<u64>,
}

/// An MS-TURNBWM request found in an Allocate.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bwm {
    op: Option<u16>,
    id: Vec<u8>,
    /// (min send, max send, min receive, max receive), kbps.
    amount: Option<[u32; 4]>,
    remote_site: bool,
    remote_relay_site: bool,
}

impl Bwm {
    fn parse(m: &Message<'_>) -> Bwm {
        let op = m.get(attr::BANDWIDTH_ADMISSION_CONTROL_MESSAGE).and_then(|v| match v.len() {
            2 => Some(u16::from_be_bytes([v[0], v[1]])),
            4 => Some(u16::from_be_bytes([v[2], v[3]])),
            _ => None,
        });
        let amount = m
            .get(attr::BANDWIDTH_RESERVATION_AMOUNT)
            .filter(|v| v.len() == 16)
            .map(|v| std::array::from_fn(|i| u32::from_be_bytes([v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]])));
        Bwm {
            op,
            id: m.get(attr::BANDWIDTH_RESERVATION_IDENTIFIER).map(<[u8]>::to_vec).unwrap_or_default(),
            amount,
            remote_site: m.get(attr::REMOTE_SITE_ADDRESS).is_some(),
            remote_relay_site: m.get(attr::REMOTE_RELAY_SITE_ADDRESS).is_some(),
        }
    }
}

/// A committed MS-TURNBWM reservation.
#[derive(Clone, Debug)]
struct Reservation {
    id: Vec<u8>,
    /// Send plus receive, kbps.
    kbps: u64,
}

/// What an MS-TURN Allocate waiting for its relayed socket needs for its answer.
#[derive(Debug)]
pub(crate) struct MsPending {
    txid: TransactionId,
    version: u32,
    padded: bool,
    auth: MsAuth,
    bwm: Bwm,
}

/// The MS-TURN part of an allocation.
#[derive(Debug)]
pub(crate) struct MsState {
    version: u32,
    padded: bool,
    username: Vec<u8>,
    key: MsKey,
    connection_id: [u8; 20],
    seq_top: u32,
    seq_window: u64,
    seq_any: bool,
    /// The active destination (raw data to and from it).
    pub(crate) active: Option<SocketAddr>,
    alloc_txid: TransactionId,
    alloc_response: Vec<u8>,
    last_txid: Option<TransactionId>,
    last_response: Vec<u8>,
    reservation: Option<Reservation>,
    /// Data Indication transaction ids.
    indications: u128,
}

/// Sequence number check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seq {
    New,
    Replay,
    WrongConnection,
}

impl MsState {
    /// Accept `s` once (64-wide window below the highest number seen).
    fn accept(&mut self, s: &SequenceNumber) -> Seq {
        if s.connection_id != self.connection_id {
            return Seq::WrongConnection;
        }
        let n = s.number;
        if !self.seq_any {
            self.seq_any = true;
            self.seq_top = n;
            self.seq_window = 1;
            return Seq::New;
        }
        if n > self.seq_top {
            let shift = n - self.seq_top;
            self.seq_window = if shift >= 64 { 0 } else { self.seq_window << shift };
            self.seq_window |= 1;
            self.seq_top = n;
            return Seq::New;
        }
        let back = self.seq_top - n;
        if back >= 64 || self.seq_window & (1 << back) != 0 {
            return Seq::Replay;
        }
        self.seq_window |= 1 << back;
        Seq::New
    }
}

/// Where an MS-TURN error goes: the request's type, transaction and form.
struct Reply {
    tuple: FiveTuple,
    typ: u16,
    txid: TransactionId,
    padded: bool,
}

/// The offset of `inner` inside `outer` (both from the same buffer).
fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

fn site_response(valid: bool, send: u32, recv: u32) -> [u8; 12] {
    let mut v = [0u8; 12];
    if valid {
        v[0] = 0x80;
    }
    v[4..8].copy_from_slice(&send.to_be_bytes());
    v[8..12].copy_from_slice(&recv.to_be_bytes());
    v
}

impl Relay {
    /// The allocation cap in kbps (both directions), from [`Config::bandwidth_limit`](crate::Config).
    fn cap_kbps(&self) -> Option<u64> {
        self.config.bandwidth_limit.map(|b| b.saturating_mul(8) / 1000)
    }

    /// One MS-TURN control message from a client (Allocate, Send, Set Active Destination).
    pub(super) fn ms_control(&mut self, now: Instant, tuple: FiveTuple, bytes: &[u8]) {
        self.counters.ms.requests += 1;
        let Ok(m) = Message::decode(bytes) else {
            return self.dropped(tuple.client, DropReason::Malformed);
        };
        match m.msg_type() {
            types::ALLOCATE_REQUEST => self.ms_allocate(now, tuple, &m),
            types::SEND_REQUEST => match self.ms_send(now, &tuple, bytes) {
                Ok(t) => self.outputs.push_back(Output::Transmit(Transmit::Peer {
                    relayed: t.relayed,
                    peer: t.peer,
                    bytes: bytes[t.payload].to_vec(),
                })),
                Err(reason) => self.outputs.push_back(Output::Event(Event::Dropped { from: tuple.client, reason })),
            },
            types::SET_ACTIVE_DESTINATION_REQUEST => self.ms_set_active_destination(now, tuple, &m),
            _ => self.dropped(tuple.client, DropReason::Unexpected),
        }
    }

    fn ms_send_reply(&mut self, r: &Reply, typ: u16, build: impl FnOnce(&mut Builder), key: Option<&MsKey>) -> Vec<u8> {
        let mut b = Builder::new(typ, r.txid, r.padded);
        build(&mut b);
        if let Some(k) = key {
            let _ = b.add_integrity(k.hash, k.as_slice());
        }
        let bytes = b.finish();
        self.outputs.push_back(Output::Transmit(Transmit::Client { tuple: r.tuple, bytes: bytes.clone() }));
        bytes
    }

    fn ms_error(&mut self, r: &Reply, code: u16, extra: &[(u16, &[u8])], key: Option<&MsKey>) {
        let Some(typ) = types::error_of(r.typ) else { return };
        self.counters.ms.error_responses += 1;
        self.counters.count_error(code);
        let bytes = self.ms_send_reply(
            r,
            typ,
            |b| {
                let _ = b.add_error(code, ms_reason(code));
                for (t, v) in extra {
                    let _ = b.add(*t, v);
                }
            },
            key,
        );
        self.ms_cache(&r.tuple, r.txid, bytes);
    }

    fn ms_cache(&mut self, tuple: &FiveTuple, txid: TransactionId, bytes: Vec<u8>) {
        if let Some(&idx) = self.by_tuple.get(tuple)
            && let Some(ms) = self.slots[idx as usize].as_mut().and_then(|a| a.ms.as_mut())
        {
            ms.last_txid = Some(txid);
            ms.last_response = bytes;
        }
    }

    /// 401 (or 438) with a fresh nonce and the realm; over UDP also ALTERNATE-SERVER.
    fn ms_challenge(&mut self, now: Instant, r: &Reply, code: u16) {
        let nonce = nonce::issue(&self.nonce_secret, self.unix_now(now), r.tuple.client.ip());
        let realm = self.config.realm.clone();
        let mut alt = [0u8; 20];
        let alt_len = match self.config.ms_public_address {
            Some(public) if r.tuple.transport == Transport::Udp => {
                msturn::write_address(public, &mut alt);
                msturn::address_len(&public)
            }
            _ => 0,
        };
        let mut extra: Vec<(u16, &[u8])> = vec![(attr::NONCE, nonce.as_bytes()), (attr::REALM, realm.as_bytes())];
        if alt_len > 0 {
            extra.push((attr::ALTERNATE_SERVER, &alt[..alt_len]));
        }
        self.ms_error(r, code, &extra, None);
    }

    fn ms_auth_failed(&mut self, r: &Reply, username: &[u8], reason: AuthFailure, code: u16) {
        self.counters.auth_failures += 1;
        self.counters.ms.auth_failures += 1;
        self.outputs.push_back(Output::Event(Event::AuthFailed {
            client: r.tuple.client,
            username: String::from_utf8_lossy(username).into_owned(),
            reason,
        }));
        self.ms_error(r, code, &[], None);
    }

    fn derive(hash: Hash, username: &[u8], realm: &[u8], nonce: &[u8], password: &[u8]) -> MsKey {
        let mut bytes = [0u8; 32];
        match hash {
            Hash::Sha1 => bytes[..16].copy_from_slice(&msturn::key_v1(username, realm, password)),
            Hash::Sha256 => bytes = msturn::key_v3(username, realm, nonce, password),
        }
        MsKey { bytes, hash }
    }

    /// Find and check the credentials of an authenticated Allocate. Answers failures itself.
    fn ms_authenticate(&mut self, now: Instant, r: &Reply, m: &Message<'_>) -> Option<MsAuth> {
        let Some(hash) = m.integrity() else {
            self.counters.auth_challenges += 1;
            self.ms_challenge(now, r, 401);
            return None;
        };
        let Some(username) = m.get(attr::USERNAME) else {
            self.ms_error(r, 432, &[], None);
            return None;
        };
        let Some(realm) = m.get(attr::REALM) else {
            self.ms_error(r, 434, &[], None);
            return None;
        };
        let Some(nonce) = m.get(attr::NONCE) else {
            self.ms_error(r, 435, &[], None);
            return None;
        };
        let unix = self.unix_now(now);
        let lifetime = self.config.nonce_lifetime.as_secs();
        let fresh = std::str::from_utf8(nonce).is_ok_and(|n| {
            nonce::check(&self.nonce_secret, n, unix, r.tuple.client.ip(), lifetime) == NonceCheck::Valid
        });
        if !fresh {
            self.ms_challenge(now, r, 438);
            return None;
        }
        if realm != self.config.realm.as_bytes() {
            self.counters.auth_failures += 1;
            self.counters.ms.auth_failures += 1;
            self.outputs.push_back(Output::Event(Event::AuthFailed {
                client: r.tuple.client,
                username: String::from_utf8_lossy(username).into_owned(),
                reason: AuthFailure::WrongRealm,
            }));
            self.ms_challenge(now, r, 401);
            return None;
        }
        // 1. An MRAS token: stateless, the password is derived from the username.
        if let Some(keys) = &self.config.mras {
            match keys.validate(username, unix) {
                Ok(token) => {
                    let key = Self::derive(hash, username, realm, nonce, &token.password);
                    if !m.verify(key.as_slice()) {
                        self.ms_auth_failed(r, username, AuthFailure::BadIntegrity, 431);
                        return None;
                    }
                    let display = format!("mras:{}", hex::encode(&token.client_id[..8]));
                    return Some(MsAuth {
                        display,
                        username: username.to_vec(),
                        key,
                        expiry: Some(token.expires_unix),
                    });
                }
                Err(vienna_edge_auth::TokenError::Expired) => {
                    self.ms_auth_failed(r, username, AuthFailure::Expired, 436);
                    return None;
                }
                Err(vienna_edge_auth::TokenError::BadMac) => {
                    self.ms_auth_failed(r, username, AuthFailure::UnknownUser, 436);
                    return None;
                }
                Err(vienna_edge_auth::TokenError::Malformed) => {}
            }
        }
        let Ok(name) = std::str::from_utf8(username) else {
            self.ms_auth_failed(r, username, AuthFailure::UnknownUser, 436);
            return None;
        };
        // 2. A TURN REST username.
        if !self.config.rest_secrets.is_empty()
            && let Some(expiry) = credentials::rest_expiry(name)
        {
            if expiry < unix {
                self.ms_auth_failed(r, username, AuthFailure::Expired, 436);
                return None;
            }
            let found = self.config.rest_secrets.iter().find_map(|s| {
                let password = credentials::rest_password(s, name);
                let key = Self::derive(hash, username, realm, nonce, password.as_bytes());
                m.verify(key.as_slice()).then_some(key)
            });
            return match found {
                Some(key) => {
                    Some(MsAuth { display: name.to_string(), username: username.to_vec(), key, expiry: Some(expiry) })
                }
                None => {
                    self.ms_auth_failed(r, username, AuthFailure::BadIntegrity, 431);
                    None
                }
            };
        }
        // 3. A store account: its MD5 key is exactly the MS-Version 1/2 key (no SHA-256: the store keeps
        //    no password to derive it from).
        match self.credentials.long_term_key(name, &self.config.realm) {
            Some(k) if hash == Hash::Sha1 => {
                let mut bytes = [0u8; 32];
                bytes[..16].copy_from_slice(&k);
                let key = MsKey { bytes, hash };
                if m.verify(key.as_slice()) {
                    Some(MsAuth { display: name.to_string(), username: username.to_vec(), key, expiry: None })
                } else {
                    self.ms_auth_failed(r, username, AuthFailure::BadIntegrity, 431);
                    None
                }
            }
            _ => {
                self.ms_auth_failed(r, username, AuthFailure::UnknownUser, 436);
                None
            }
        }
    }

    /// Allocate (new, refresh or delete).
    fn ms_allocate(&mut self, now: Instant, tuple: FiveTuple, m: &Message<'_>) {
        let txid = m.transaction_id();
        let r = Reply { tuple, typ: types::ALLOCATE_REQUEST, txid, padded: m.padded() };
        if let Some(&idx) = self.by_tuple.get(&tuple)
            && self.slots[idx as usize].as_ref().is_some_and(|a| a.expires <= now)
        {
            self.remove_allocation(idx, false);
        }
        // Retransmissions: the same answer again.
        if let Some(&idx) = self.by_tuple.get(&tuple)
            && let Some(ms) = self.slots[idx as usize].as_ref().and_then(|a| a.ms.as_ref())
        {
            let cached = if ms.alloc_txid == txid {
                Some(ms.alloc_response.clone())
            } else if ms.last_txid == Some(txid) {
                Some(ms.last_response.clone())
            } else {
                None
            };
            if let Some(bytes) = cached {
                self.counters.ms.retransmissions += 1;
                self.outputs.push_back(Output::Transmit(Transmit::Client { tuple, bytes }));
                return;
            }
        }
        if self
            .pending_by_tuple
            .get(&tuple)
            .and_then(|id| self.pending.get(id))
            .is_some_and(|p| p.ms.as_ref().is_some_and(|ms| ms.txid == txid))
        {
            return; // answered once the relayed socket is bound
        }
        let version = match m.get_u32(attr::MS_VERSION) {
            None => 1,
            Some(Ok(v)) => v,
            Some(Err(_)) => return self.ms_error(&r, 400, &[], None),
        };
        let lifetime = match m.get_u32(attr::LIFETIME) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => return self.ms_error(&r, 400, &[], None),
        };
        let Some(auth) = self.ms_authenticate(now, &r, m) else {
            return;
        };
        let unknown: Vec<u16> = m.unknown_required().collect();
        if !unknown.is_empty() {
            let list: Vec<u8> = unknown.iter().flat_map(|t| t.to_be_bytes()).collect();
            return self.ms_error(&r, 420, &[(attr::UNKNOWN_ATTRIBUTES, &list)], Some(&auth.key));
        }
        let bwm = Bwm::parse(m);
        if let Some(&idx) = self.by_tuple.get(&tuple) {
            return self.ms_refresh(now, &r, idx, m, auth, lifetime, &bwm);
        }
        if self.pending_by_tuple.contains_key(&tuple) {
            return self.ms_error(&r, 437, &[], Some(&auth.key));
        }
        if lifetime == Some(0) {
            return self.ms_error(&r, 437, &[], Some(&auth.key));
        }
        if let Some((code, alt)) = self.admission(&auth.display) {
            let mut v = [0u8; 20];
            let extra: Vec<(u16, &[u8])> = match alt {
                Some(a) => {
                    msturn::write_address(a, &mut v);
                    vec![(attr::ALTERNATE_SERVER, &v[..msturn::address_len(&a)])]
                }
                None => Vec::new(),
            };
            let code = if code == 508 { 500 } else { code };
            return self.ms_error(&r, code, &extra, Some(&auth.key));
        }
        // Families: IPv4 unless MS-Version 4+ asks for IPv6; from version 4 the other family too.
        let requested = match m.get(attr::REQUESTED_ADDRESS_FAMILY).and_then(|v| v.first().copied()) {
            Some(2) if version >= 4 => AddressFamily::V6,
            _ => AddressFamily::V4,
        };
        let mut families = vec![requested];
        let other = if requested == AddressFamily::V4 { AddressFamily::V6 } else { AddressFamily::V4 };
        if version >= 4 && self.family_configured(other) {
            families.push(other);
        }
        if !self.family_configured(requested) {
            return self.ms_error(&r, 500, &[], Some(&auth.key));
        }
        let requested_lifetime = Duration::from_secs(u64::from(lifetime.unwrap_or(0)));
        let granted = requested_lifetime.clamp(self.config.default_lifetime, self.config.max_lifetime);
        let granted = self.cap_lifetime(now, granted, auth.expiry);
        let id = crate::AllocationId(self.next_id);
        self.next_id += 1;
        let mut binds = Vec::new();
        for (i, family) in families.into_iter().enumerate() {
            match self.pick_addr(family, false, false) {
                Some(addr) => binds.push(PendingBind {
                    family,
                    addr,
                    state: BindState::Waiting,
                    attempts: 0,
                    pair: false,
                    even: false,
                }),
                None if i == 0 => {
                    self.outputs.push_back(Output::Event(Event::QuotaExceeded {
                        username: auth.display.clone(),
                        quota: Quota::Ports,
                    }));
                    return self.ms_error(&r, 500, &[], Some(&auth.key));
                }
                None => {}
            }
        }
        for b in &binds {
            self.outputs.push_back(Output::BindRelay(BindRequest {
                allocation: id,
                addr: b.addr,
                dont_fragment: false,
                tcp: tuple.transport.is_stream(),
            }));
        }
        *self.user_allocs.entry(auth.display.clone()).or_insert(0) += 1;
        if let Some(shared) = &self.config.shared_quota {
            shared.acquire(&auth.display);
        }
        let deadline = now + self.config.bind_timeout;
        self.timers.push(std::cmp::Reverse((deadline, TimerKey::Pending(id))));
        self.pending_by_tuple.insert(tuple, id);
        let mut legacy_key = [0u8; 16];
        legacy_key.copy_from_slice(&auth.key.bytes[..16]);
        self.pending.insert(
            id,
            Pending {
                id,
                tuple,
                txid: vienna_stun::TransactionId::default(),
                method: vienna_stun::Method::ALLOCATE,
                auth: Auth {
                    username: auth.display.clone(),
                    key: legacy_key,
                    kind: vienna_stun::message::IntegrityKind::Sha1,
                    rest_expiry: auth.expiry,
                },
                lifetime: granted,
                dont_fragment: false,
                from_reservation: false,
                binds,
                address_errors: Vec::new(),
                deadline,
                ms: Some(Box::new(MsPending { txid, version, padded: m.padded(), auth, bwm })),
            },
        );
    }

    /// MS-TURNBWM: judge `bwm` against the cap (and apply a commit or update to `a`); the response
    /// attributes.
    fn ms_bandwidth(&mut self, now: Instant, a: &mut Allocation, bwm: &Bwm) -> Vec<(u16, [u8; 12])> {
        let Some(op) = bwm.op else { return Vec::new() };
        let cap = self.cap_kbps();
        let [min_send, max_send, min_recv, max_recv] = bwm.amount.unwrap_or([0; 4]);
        let cap32 = cap.map_or(u32::MAX, |c| c.min(u64::from(u32::MAX)) as u32);
        let valid = cap.is_none_or(|c| u64::from(min_send) + u64::from(min_recv) <= c);
        let send = max_send.min(cap32);
        let recv = max_recv.min(cap32);
        let Some(ms) = a.ms.as_mut() else { return Vec::new() };
        match op {
            RESERVATION_CHECK => self.counters.ms.bandwidth_checks += 1,
            RESERVATION_COMMIT => {
                self.counters.ms.bandwidth_commits += 1;
                if valid && bwm.amount.is_some() {
                    ms.reservation = Some(Reservation { id: bwm.id.clone(), kbps: u64::from(send) + u64::from(recv) });
                }
            }
            RESERVATION_UPDATE => {
                self.counters.ms.bandwidth_updates += 1;
                if ms.reservation.as_ref().is_some_and(|res| res.id == bwm.id) {
                    if max_send == 0 && max_recv == 0 {
                        ms.reservation = None;
                    } else if valid {
                        ms.reservation =
                            Some(Reservation { id: bwm.id.clone(), kbps: u64::from(send) + u64::from(recv) });
                    }
                } else {
                    return Vec::new();
                }
            }
            _ => return Vec::new(),
        }
        // The allocation's cap: the committed reservation, never above the relay's cap.
        let rate = match (&ms.reservation, self.config.bandwidth_limit) {
            (Some(res), Some(limit)) => Some((res.kbps * 1000 / 8).min(limit)),
            (Some(res), None) => Some(res.kbps * 1000 / 8),
            (None, limit) => limit,
        };
        a.bucket = rate.map(|r| TokenBucket::new(r.max(1), now));
        let v = site_response(valid, send, recv);
        let mut out = vec![(attr::LOCAL_SITE_ADDRESS_RESPONSE, v), (attr::LOCAL_RELAY_SITE_ADDRESS_RESPONSE, v)];
        if bwm.remote_site {
            out.push((attr::REMOTE_SITE_ADDRESS_RESPONSE, v));
        }
        if bwm.remote_relay_site {
            out.push((attr::REMOTE_RELAY_SITE_ADDRESS_RESPONSE, v));
        }
        out
    }

    /// The Allocate success response of allocation `a`.
    fn ms_allocate_response(&self, r: &Reply, a: &Allocation, lifetime: Duration, bwm: &[(u16, [u8; 12])]) -> Vec<u8> {
        let Some(ms) = a.ms.as_ref() else { return Vec::new() };
        let mut b = Builder::new(types::ALLOCATE_RESPONSE, r.txid, r.padded);
        // IPv4 first when there is one; the other family only from MS-Version 4 on.
        let primary = a.relayed_v4.or(a.relayed_v6);
        let second = if ms.version >= 4 && a.relayed_v4.is_some() { a.relayed_v6 } else { None };
        if let Some(p) = primary {
            let _ = b.add_address(attr::MAPPED_ADDRESS, p);
        }
        if let Some(s) = second {
            let _ = b.add_address(attr::MS_ALTERNATE_MAPPED_ADDRESS, s);
        }
        let _ = b.add_u32(attr::LIFETIME, lifetime.as_secs() as u32);
        let kbps = match (&ms.reservation, self.cap_kbps()) {
            (Some(res), _) => Some(res.kbps),
            (None, cap) => cap,
        };
        if let Some(k) = kbps {
            let _ = b.add_u32(attr::BANDWIDTH, k.min(u64::from(u32::MAX)) as u32);
        }
        let _ = b.add_xor_address(attr::XOR_MAPPED_ADDRESS, r.tuple.client);
        let seq = SequenceNumber { connection_id: ms.connection_id, number: ms.seq_top };
        let _ = b.add(attr::MS_SEQUENCE_NUMBER, &seq.encode());
        for (t, v) in bwm {
            let _ = b.add(*t, v);
        }
        let _ = b.add_integrity(ms.key.hash, ms.key.as_slice());
        b.finish()
    }

    /// Allocate, second phase (called from `finish_allocation` when every bind is resolved): the
    /// MS-TURN state of the new allocation `a`, and the answer.
    pub(super) fn ms_finish(&mut self, now: Instant, p: &Pending, ms: MsPending, a: &mut Allocation) {
        let mut connection_id = [0u8; 20];
        self.entropy.fill(&mut connection_id);
        a.username.clone_from(&ms.auth.display);
        a.ms = Some(Box::new(MsState {
            version: ms.version,
            padded: ms.padded,
            username: ms.auth.username.clone(),
            key: ms.auth.key,
            connection_id,
            seq_top: 0,
            seq_window: 0,
            seq_any: false,
            active: None,
            alloc_txid: ms.txid,
            alloc_response: Vec::new(),
            last_txid: None,
            last_response: Vec::new(),
            reservation: None,
            indications: u128::from_be_bytes({
                let mut t = [0u8; 16];
                self.entropy.fill(&mut t);
                t
            }),
        }));
        let bwm = self.ms_bandwidth(now, a, &ms.bwm);
        let r = Reply { tuple: p.tuple, typ: types::ALLOCATE_REQUEST, txid: ms.txid, padded: ms.padded };
        let bytes = self.ms_allocate_response(&r, a, p.lifetime, &bwm);
        self.counters.success_responses += 1;
        self.counters.ms.success_responses += 1;
        self.counters.ms.allocations_created += 1;
        if let Some(state) = a.ms.as_mut() {
            state.alloc_response.clone_from(&bytes);
        }
        self.outputs.push_back(Output::Transmit(Transmit::Client { tuple: p.tuple, bytes }));
    }

    /// The answer to an MS-TURN Allocate whose relayed socket could not be bound.
    pub(super) fn ms_finish_failed(&mut self, p: &Pending, ms: &MsPending) {
        let r = Reply { tuple: p.tuple, typ: types::ALLOCATE_REQUEST, txid: ms.txid, padded: ms.padded };
        self.ms_error(&r, 500, &[], Some(&ms.auth.key));
    }

    #[allow(clippy::too_many_arguments)]
    fn ms_refresh(
        &mut self,
        now: Instant,
        r: &Reply,
        idx: u32,
        m: &Message<'_>,
        auth: MsAuth,
        lifetime: Option<u32>,
        bwm: &Bwm,
    ) {
        let Some(mut a) = self.slots[idx as usize].take() else { return };
        let same_user = a.ms.as_ref().is_some_and(|ms| ms.username == auth.username);
        if !same_user {
            self.slots[idx as usize] = Some(a);
            return self.ms_auth_failed(r, &auth.username, AuthFailure::WrongUser, 401);
        }
        if let Some(Ok(s)) = m.sequence_number()
            && let Some(ms) = a.ms.as_mut()
            && ms.accept(&s) != Seq::New
        {
            self.slots[idx as usize] = Some(a);
            self.counters.ms.replays += 1;
            return self.dropped(r.tuple.client, DropReason::Replay);
        }
        if let Some(ms) = a.ms.as_mut() {
            ms.key = auth.key; // a new nonce gives a new MS-Version 3 key
        }
        if lifetime == Some(0) {
            self.slots[idx as usize] = Some(a);
            self.remove_allocation(idx, true);
            let key = auth.key;
            self.counters.success_responses += 1;
            self.counters.ms.success_responses += 1;
            self.ms_send_reply(
                r,
                types::ALLOCATE_RESPONSE,
                |b| {
                    let _ = b.add_u32(attr::LIFETIME, 0);
                },
                Some(&key),
            );
            return;
        }
        let requested = lifetime.map_or(self.config.default_lifetime, |s| Duration::from_secs(u64::from(s)));
        let max = self.cap_lifetime(now, self.config.max_lifetime, auth.expiry);
        let granted = requested.clamp(self.config.default_lifetime.min(max), max);
        a.expires = now + granted;
        a.purge(now);
        let id = a.id;
        if a.expires < a.scheduled {
            a.scheduled = a.expires;
            self.timers.push(std::cmp::Reverse((a.expires, TimerKey::Allocation(id))));
        }
        let bwm = self.ms_bandwidth(now, &mut a, bwm);
        let bytes = self.ms_allocate_response(r, &a, granted, &bwm);
        self.slots[idx as usize] = Some(a);
        self.counters.success_responses += 1;
        self.counters.ms.success_responses += 1;
        self.outputs.push_back(Output::Event(Event::AllocationRefreshed { id, lifetime: granted }));
        self.outputs.push_back(Output::Transmit(Transmit::Client { tuple: r.tuple, bytes: bytes.clone() }));
        self.ms_cache(&r.tuple, r.txid, bytes);
    }

    /// Set Active Destination.
    fn ms_set_active_destination(&mut self, now: Instant, tuple: FiveTuple, m: &Message<'_>) {
        let txid = m.transaction_id();
        let r = Reply { tuple, typ: types::SET_ACTIVE_DESTINATION_REQUEST, txid, padded: m.padded() };
        let Some(&idx) = self.by_tuple.get(&tuple) else {
            return self.ms_error(&r, 437, &[], None);
        };
        let dest = match m.get_address(attr::DESTINATION_ADDRESS) {
            None => None,
            Some(Ok(d)) => Some(d),
            Some(Err(_)) => return self.ms_error(&r, 400, &[], None),
        };
        let allowed = dest.is_none_or(|d| self.peer_allowed(d.ip()));
        let permission_expires = now + self.config.permission_lifetime;
        let max_permissions = self.config.max_permissions;
        let Some(a) = self.slots[idx as usize].as_mut() else { return };
        if a.expires <= now {
            return self.ms_error(&r, 437, &[], None);
        }
        let Some(ms) = a.ms.as_mut() else {
            return self.dropped(tuple.client, DropReason::Unexpected);
        };
        if ms.last_txid == Some(txid) {
            let bytes = ms.last_response.clone();
            self.counters.ms.retransmissions += 1;
            self.outputs.push_back(Output::Transmit(Transmit::Client { tuple, bytes }));
            return;
        }
        let key = ms.key;
        if !m.verify(key.as_slice()) {
            self.counters.auth_failures += 1;
            self.counters.ms.auth_failures += 1;
            return self.ms_error(&r, 431, &[], None);
        }
        let seq = match m.sequence_number() {
            Some(Ok(s)) => match ms.accept(&s) {
                Seq::New => Some(s),
                Seq::Replay => {
                    self.counters.ms.replays += 1;
                    return self.dropped(tuple.client, DropReason::Replay);
                }
                Seq::WrongConnection => return self.ms_error(&r, 431, &[], Some(&key)),
            },
            Some(Err(_)) => return self.ms_error(&r, 400, &[], Some(&key)),
            None => None,
        };
        if let Some(d) = dest {
            if !allowed {
                return self.ms_error(&r, 403, &[], Some(&key));
            }
            if a.relayed_for(&d).is_none() {
                return self.ms_error(&r, 443, &[], Some(&key));
            }
            if !a.permissions.contains_key(&d.ip()) && a.permissions.len() >= max_permissions {
                return self.ms_error(&r, 500, &[], Some(&key));
            }
            a.permissions.insert(d.ip(), permission_expires);
        }
        if let Some(ms) = a.ms.as_mut() {
            ms.active = dest;
        }
        self.counters.ms.active_destinations += 1;
        self.counters.success_responses += 1;
        self.counters.ms.success_responses += 1;
        let bytes = self.ms_send_reply(
            &r,
            types::SET_ACTIVE_DESTINATION_RESPONSE,
            |b| {
                if let Some(s) = seq {
                    let _ = b.add(attr::MS_SEQUENCE_NUMBER, &s.encode());
                }
            },
            Some(&key),
        );
        self.ms_cache(&tuple, txid, bytes);
    }

    /// Send request, client to peer, without allocating: where to send `bytes[payload]`.
    #[inline]
    pub(super) fn ms_send(
        &mut self,
        now: Instant,
        tuple: &FiveTuple,
        bytes: &[u8],
    ) -> Result<PeerTransmit, DropReason> {
        let r = self.ms_send_inner(now, tuple, bytes);
        match &r {
            Ok(t) => {
                let n = t.payload.len() as u64;
                self.counters.client_to_peer_packets += 1;
                self.counters.client_to_peer_bytes += n;
                self.counters.ms.client_to_peer_packets += 1;
                self.counters.ms.client_to_peer_bytes += n;
                self.counters.ms.send_requests += 1;
            }
            Err(reason) => {
                if *reason == DropReason::Replay {
                    self.counters.ms.replays += 1;
                }
                self.counters.drop(*reason);
            }
        }
        r
    }

    #[inline]
    fn ms_send_inner(&mut self, now: Instant, tuple: &FiveTuple, bytes: &[u8]) -> Result<PeerTransmit, DropReason> {
        let m = Message::decode(bytes).map_err(|_| DropReason::Malformed)?;
        let dest = match m.get_address(attr::DESTINATION_ADDRESS) {
            Some(Ok(d)) => d,
            _ => return Err(DropReason::Malformed),
        };
        let data = m.get(attr::DATA).ok_or(DropReason::Malformed)?;
        let allowed = self.peer_allowed(dest.ip());
        let permission_expires = now + self.config.permission_lifetime;
        let max_permissions = self.config.max_permissions;
        let idx = *self.by_tuple.get(tuple).ok_or(DropReason::NoAllocation)?;
        let a = self.slots[idx as usize].as_mut().ok_or(DropReason::NoAllocation)?;
        if a.expires <= now {
            return Err(DropReason::NoAllocation);
        }
        let ms = a.ms.as_mut().ok_or(DropReason::Unexpected)?;
        if !m.verify(ms.key.as_slice()) {
            return Err(DropReason::Unauthenticated);
        }
        match m.sequence_number() {
            Some(Ok(s)) => match ms.accept(&s) {
                Seq::New => {}
                Seq::Replay => return Err(DropReason::Replay),
                Seq::WrongConnection => return Err(DropReason::Unauthenticated),
            },
            Some(Err(_)) => return Err(DropReason::Malformed),
            None => {}
        }
        if !allowed {
            return Err(DropReason::PeerDenied);
        }
        let relayed = a.relayed_for(&dest).ok_or(DropReason::FamilyMismatch)?;
        let full = a.permissions.len() >= max_permissions;
        match a.permissions.get_mut(&dest.ip()) {
            Some(e) => *e = permission_expires,
            None if full => return Err(DropReason::NoPermission),
            None => {
                a.permissions.insert(dest.ip(), permission_expires);
            }
        }
        if let Some(b) = &mut a.bucket
            && !b.take(now, data.len())
        {
            return Err(DropReason::BandwidthExceeded);
        }
        let start = offset_in(bytes, data);
        Ok(PeerTransmit { relayed, peer: dest, payload: start..start + data.len() })
    }

    /// Raw data from the client of MS-TURN allocation `idx` for its active destination.
    #[inline]
    pub(super) fn ms_raw_to_peer(&mut self, now: Instant, idx: u32, bytes: &[u8]) -> Result<PeerTransmit, DropReason> {
        let a = self.slots[idx as usize].as_mut().ok_or(DropReason::NoAllocation)?;
        if a.expires <= now {
            return Err(DropReason::NoAllocation);
        }
        let peer = a.ms.as_ref().and_then(|ms| ms.active).ok_or(DropReason::NoActiveDestination)?;
        if !a.permitted(peer.ip(), now) {
            return Err(DropReason::NoPermission);
        }
        let relayed = a.relayed_for(&peer).ok_or(DropReason::FamilyMismatch)?;
        if let Some(b) = &mut a.bucket
            && !b.take(now, bytes.len())
        {
            return Err(DropReason::BandwidthExceeded);
        }
        Ok(PeerTransmit { relayed, peer, payload: 0..bytes.len() })
    }

    /// Peer data for MS-TURN allocation `a`: raw when `peer` is the active destination, else a Data
    /// Indication. Permission and bandwidth are already checked.
    #[inline]
    pub(super) fn ms_to_client(
        counters: &mut crate::Counters,
        a: &mut Allocation,
        peer: SocketAddr,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, DropReason> {
        let ms = a.ms.as_mut().ok_or(DropReason::Unexpected)?;
        if ms.active == Some(peer) {
            let out = out.get_mut(..payload.len()).ok_or(DropReason::BufferTooSmall)?;
            out.copy_from_slice(payload);
            counters.ms.raw_peer_to_client += 1;
            Ok(payload.len())
        } else {
            ms.indications = ms.indications.wrapping_add(1);
            let txid = TransactionId(ms.indications.to_be_bytes());
            let n = msturn::write_data_indication(&txid, peer, payload, ms.padded, out)
                .map_err(|_| DropReason::BufferTooSmall)?;
            counters.ms.data_indications += 1;
            Ok(n)
        }
    }
}

fn ms_reason(code: u16) -> &'static str {
    match code {
        431 => "Integrity Check Failure",
        432 => "Missing Username",
        434 => "Missing Realm",
        435 => "Missing Nonce",
        436 => "Unknown User",
        437 => "No Binding",
        500 => "Server Error",
        c => reason_phrase(c),
    }
}
