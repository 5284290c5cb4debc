//! The relay state machine (RFC 8656 §5-§12, RFC 8489 §9.2 long-term credentials); the MS-TURN
//! dialect is in [`msturn`].

mod msturn;

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use vienna_stun::attributes::{self as attr, AddressFamily, Attribute, ErrorCode};
use vienna_stun::message::{IntegrityKind, write_data_indication};
use vienna_stun::msturn as msturn_codec;
use vienna_stun::{ChannelData, Class, Kind, Message, MessageBuilder, Method, TransactionId, channel_data, classify};

use crate::counters::reason_phrase;
use crate::credentials::{self, CredentialStore};
use crate::hash::SeededState;
use crate::nonce::{self, NonceCheck};
use crate::ports::PortPool;
use crate::{
    AllocationId, AllocationInfo, AuthFailure, BindFailure, BindRequest, ClientDatagram, ClientTransmit, Config,
    Counters, DropReason, Entropy, Error, Event, FiveTuple, NotForwarded, Output, PeerTransmit, Quota, Transmit,
};

/// Hash map keyed with the relay's seeded hasher.
type Map<K, V> = HashMap<K, V, SeededState>;

/// UDP's protocol number in REQUESTED-TRANSPORT.
const UDP: u8 = 17;

/// An authenticated request's credentials.
#[derive(Clone, Debug)]
struct Auth {
    username: String,
    key: [u8; 16],
    kind: IntegrityKind,
    rest_expiry: Option<u64>,
}

/// Token bucket in bytes, refilled at `rate` bytes/s up to `burst`.
#[derive(Clone, Debug)]
struct TokenBucket {
    rate: u64,
    burst: u64,
    tokens: u64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u64, now: Instant) -> TokenBucket {
        let burst = rate.max(1500);
        TokenBucket { rate, burst, tokens: burst, last: now }
    }

    #[inline]
    fn take(&mut self, now: Instant, n: usize) -> bool {
        if now > self.last {
            let add = now.duration_since(self.last).as_nanos() * u128::from(self.rate) / 1_000_000_000;
            if add > 0 {
                self.tokens = (u128::from(self.tokens) + add).min(u128::from(self.burst)) as u64;
                self.last = now;
            }
        }
        let n = n as u64;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Channel {
    peer: SocketAddr,
    expires: Instant,
}

#[derive(Debug)]
struct Allocation {
    id: AllocationId,
    tuple: FiveTuple,
    username: String,
    key: [u8; 16],
    rest_expiry: Option<u64>,
    relayed_v4: Option<SocketAddr>,
    relayed_v6: Option<SocketAddr>,
    expires: Instant,
    permissions: Map<IpAddr, Instant>,
    channels: Map<u16, Channel>,
    peer_channels: Map<SocketAddr, u16>,
    bucket: Option<TokenBucket>,
    alloc_txid: TransactionId,
    alloc_response: Vec<u8>,
    last_txid: Option<TransactionId>,
    last_response: Vec<u8>,
    /// The MS-TURN side of an MS-TURN allocation.
    ms: Option<Box<msturn::MsState>>,
    /// Earliest allocation timer in the heap (at most one live entry per allocation plus a few
    /// stale ones: a Refresh only pushes when it brings the expiry forward).
    scheduled: Instant,
}

impl Allocation {
    #[inline]
    fn relayed_for(&self, peer: &SocketAddr) -> Option<SocketAddr> {
        if peer.is_ipv4() { self.relayed_v4 } else { self.relayed_v6 }
    }

    #[inline]
    fn permitted(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.get(&ip).is_some_and(|e| *e > now)
    }

    fn purge(&mut self, now: Instant) {
        self.permissions.retain(|_, e| *e > now);
        self.channels.retain(|_, c| c.expires > now);
        let channels = &self.channels;
        self.peer_channels.retain(|_, ch| channels.contains_key(ch));
    }

    fn relayed(&self) -> impl Iterator<Item = SocketAddr> {
        self.relayed_v4.into_iter().chain(self.relayed_v6)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BindState {
    Waiting,
    Bound,
    Failed,
}

#[derive(Clone, Debug)]
struct PendingBind {
    family: AddressFamily,
    addr: SocketAddr,
    state: BindState,
    attempts: u8,
    /// Port+1 is held for a RESERVATION-TOKEN.
    pair: bool,
    even: bool,
}

#[derive(Debug)]
struct Pending {
    id: AllocationId,
    tuple: FiveTuple,
    txid: TransactionId,
    method: Method,
    auth: Auth,
    lifetime: Duration,
    dont_fragment: bool,
    from_reservation: bool,
    binds: Vec<PendingBind>,
    address_errors: Vec<(AddressFamily, u16)>,
    deadline: Instant,
    /// What an MS-TURN Allocate needs for its answer.
    ms: Option<Box<msturn::MsPending>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Allocation(AllocationId),
    Pending(AllocationId),
    Reservation([u8; 8]),
}

#[derive(Clone, Copy, Debug)]
struct Reservation {
    addr: SocketAddr,
    expires: Instant,
}

/// Attributes of a request the relay looks at.
#[derive(Default, Debug)]
struct Req<'a> {
    username: Option<&'a str>,
    realm: Option<&'a str>,
    nonce: Option<&'a str>,
    lifetime: Option<u32>,
    transport: Option<u8>,
    dont_fragment: bool,
    even_port: Option<bool>,
    token: Option<[u8; 8]>,
    req_family: Option<AddressFamily>,
    add_family: Option<AddressFamily>,
    channel: Option<u16>,
    peers: Vec<SocketAddr>,
    data: Option<&'a [u8]>,
}

fn parse_req<'a>(m: &Message<'a>) -> Option<Req<'a>> {
    let mut r = Req::default();
    for a in m.attributes() {
        match a.ok()? {
            Attribute::Username(u) => r.username = Some(u),
            Attribute::Realm(v) => r.realm = Some(v),
            Attribute::Nonce(v) => r.nonce = Some(v),
            Attribute::Lifetime(v) => r.lifetime = Some(v),
            Attribute::RequestedTransport(p) => r.transport = Some(p),
            Attribute::DontFragment => r.dont_fragment = true,
            Attribute::EvenPort(b) => r.even_port = Some(b),
            Attribute::ReservationToken(t) => r.token = Some(t),
            Attribute::RequestedAddressFamily(f) => r.req_family = Some(f),
            Attribute::AdditionalAddressFamily(f) => r.add_family = Some(f),
            Attribute::ChannelNumber(c) => r.channel = Some(c),
            Attribute::XorPeerAddress(p) => r.peers.push(p),
            Attribute::Data(d) => r.data = Some(d),
            _ => {}
        }
    }
    Some(r)
}

/// The TURN relay core. See the crate documentation for the driver protocol.
pub struct Relay {
    config: Config,
    hasher: SeededState,
    credentials: Box<dyn CredentialStore + Send>,
    entropy: Box<dyn Entropy + Send>,
    nonce_secret: [u8; 32],
    instant_anchor: Instant,
    unix_anchor: u64,
    slots: Vec<Option<Allocation>>,
    free: Vec<u32>,
    by_tuple: Map<FiveTuple, u32>,
    by_relayed: Map<SocketAddr, u32>,
    by_id: Map<AllocationId, u32>,
    pending: Map<AllocationId, Pending>,
    pending_by_tuple: Map<FiveTuple, AllocationId>,
    reservations: Map<[u8; 8], Reservation>,
    user_allocs: Map<String, u32>,
    ports_v4: PortPool,
    ports_v6: PortPool,
    timers: BinaryHeap<Reverse<(Instant, TimerKey)>>,
    outputs: VecDeque<Output>,
    counters: Counters,
    next_id: u64,
    indication_txid: u128,
    draining: bool,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("realm", &self.config.realm)
            .field("allocations", &self.by_id.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay with `config`, looking users up in `credentials`, drawing randomness from
    /// `entropy`. `now` and `unix_secs` anchor the wall clock used for nonces and TURN REST
    /// expiry (see [`Relay::set_unix_time`]).
    pub fn new(
        config: Config,
        credentials: impl CredentialStore + Send + 'static,
        mut entropy: impl Entropy + Send + 'static,
        now: Instant,
        unix_secs: u64,
    ) -> Result<Relay, Error> {
        config.validate()?;
        let nonce_secret = config.nonce_secret.unwrap_or_else(|| {
            let mut s = [0u8; 32];
            entropy.fill(&mut s);
            s
        });
        let mut t = [0u8; 16];
        entropy.fill(&mut t);
        let mut seed = [0u8; 8];
        entropy.fill(&mut seed);
        let hasher = SeededState::new(u64::from_le_bytes(seed));
        Ok(Relay {
            hasher,
            ports_v4: PortPool::new(config.min_port, config.max_port),
            ports_v6: PortPool::new(config.min_port, config.max_port),
            config,
            credentials: Box::new(credentials),
            entropy: Box::new(entropy),
            nonce_secret,
            instant_anchor: now,
            unix_anchor: unix_secs,
            slots: Vec::new(),
            free: Vec::new(),
            by_tuple: Map::with_hasher(hasher),
            by_relayed: Map::with_hasher(hasher),
            by_id: Map::with_hasher(hasher),
            pending: Map::with_hasher(hasher),
            pending_by_tuple: Map::with_hasher(hasher),
            reservations: Map::with_hasher(hasher),
            user_allocs: Map::with_hasher(hasher),
            timers: BinaryHeap::new(),
            outputs: VecDeque::new(),
            counters: Counters::default(),
            next_id: 1,
            draining: false,
            indication_txid: u128::from_le_bytes(t),
        })
    }

    /// Re-anchor the wall clock: Unix time `unix_secs` corresponds to `now`. Call it now and
    /// then (e.g. every minute) so that clock adjustments reach nonce and REST expiry checks.
    pub fn set_unix_time(&mut self, now: Instant, unix_secs: u64) {
        self.instant_anchor = now;
        self.unix_anchor = unix_secs;
    }

    fn unix_now(&self, now: Instant) -> u64 {
        self.unix_anchor + now.saturating_duration_since(self.instant_anchor).as_secs()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Number of live allocations (not counting those waiting for their relayed socket).
    pub fn allocation_count(&self) -> usize {
        self.by_id.len()
    }

    /// Drain mode: refuse new allocations (300 Try Alternate with [`Config::alternate_server`],
    /// else 508) while existing ones keep working, e.g. before a graceful shutdown.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// Snapshot of the live allocations (for an admin interface).
    pub fn allocations(&self) -> impl Iterator<Item = AllocationInfo<'_>> {
        self.slots.iter().flatten().map(|a| AllocationInfo {
            id: a.id,
            tuple: a.tuple,
            username: &a.username,
            relayed_v4: a.relayed_v4,
            relayed_v6: a.relayed_v6,
            expires: a.expires,
            permissions: a.permissions.len(),
            channels: a.channels.len(),
            rest_expiry: a.rest_expiry,
            msturn: a.ms.is_some(),
        })
    }

    /// With [`Config::strict_rest_expiry`], no lifetime runs past the REST credential's expiry.
    fn cap_lifetime(&self, now: Instant, lifetime: Duration, rest_expiry: Option<u64>) -> Duration {
        match rest_expiry {
            Some(e) if self.config.strict_rest_expiry => {
                lifetime.min(Duration::from_secs(e.saturating_sub(self.unix_now(now))))
            }
            _ => lifetime,
        }
    }

    /// Relay ports in use (bound, being bound, or reserved), both families.
    pub fn ports_in_use(&self) -> usize {
        self.ports_v4.in_use() + self.ports_v6.in_use()
    }

    /// Next output for the driver, `None` when drained.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Relay::handle_timeout`] should next be called (may be early, never late).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    // ----------------------------------------------------------------------------------------
    // Input: client side

    /// Feed one datagram (or stream frame) from a client: STUN requests and indications, and
    /// ChannelData (which is better sent through [`Relay::relay_channel_data`], avoiding the
    /// copy this path makes).
    pub fn handle_client_datagram(&mut self, now: Instant, d: ClientDatagram<'_>) {
        let tuple = d.tuple();
        match self.relay_client_packet(now, &tuple, d.bytes) {
            Ok(t) => self.outputs.push_back(Output::Transmit(Transmit::Peer {
                relayed: t.relayed,
                peer: t.peer,
                bytes: d.bytes[t.payload].to_vec(),
            })),
            Err(NotForwarded::Dropped(reason)) => {
                self.outputs.push_back(Output::Event(Event::Dropped { from: d.client, reason }))
            }
            Err(NotForwarded::Control) if msturn_codec::is_msturn(d.bytes) => self.ms_control(now, tuple, d.bytes),
            Err(NotForwarded::Control) => self.handle_stun(now, tuple, d.bytes),
        }
    }

    /// Hot path for everything a client sends, both dialects: ChannelData, MS-TURN Send requests
    /// and raw data for an MS-TURN active destination are forwarded (where to send
    /// `bytes[payload]`); control messages (STUN, MS-TURN Allocate and Set Active Destination) come
    /// back as [`NotForwarded::Control`] for [`Relay::handle_client_datagram`]. One hash lookup,
    /// no allocation; drops are counted.
    #[inline]
    pub fn relay_client_packet(
        &mut self,
        now: Instant,
        tuple: &FiveTuple,
        bytes: &[u8],
    ) -> Result<PeerTransmit, NotForwarded> {
        if msturn_codec::is_msturn(bytes) {
            if !self.config.msturn {
                self.counters.drop(DropReason::Unexpected);
                return Err(NotForwarded::Dropped(DropReason::Unexpected));
            }
            if bytes[..2] == msturn_codec::types::SEND_REQUEST.to_be_bytes() {
                return self.ms_send(now, tuple, bytes).map_err(NotForwarded::Dropped);
            }
            return Err(NotForwarded::Control);
        }
        let idx = self.by_tuple.get(tuple).copied();
        if let Some(idx) = idx
            && self.slots[idx as usize].as_ref().is_some_and(|a| a.ms.is_some())
        {
            // MS-TURN: whatever is not a control message is raw data for the active destination.
            return match self.ms_raw_to_peer(now, idx, bytes) {
                Ok(t) => {
                    let n = t.payload.len() as u64;
                    self.counters.client_to_peer_packets += 1;
                    self.counters.client_to_peer_bytes += n;
                    self.counters.ms.client_to_peer_packets += 1;
                    self.counters.ms.client_to_peer_bytes += n;
                    self.counters.ms.raw_client_to_peer += 1;
                    Ok(t)
                }
                Err(reason) => {
                    self.counters.drop(reason);
                    Err(NotForwarded::Dropped(reason))
                }
            };
        }
        match classify(bytes) {
            Kind::ChannelData => {
                let r = match idx {
                    Some(idx) => self.channel_to_peer_at(now, idx, bytes),
                    None => Err(DropReason::NoAllocation),
                };
                self.count_channel(&r);
                r.map_err(NotForwarded::Dropped)
            }
            Kind::Stun => Err(NotForwarded::Control),
            Kind::Other => {
                self.counters.drop(DropReason::NotStunOrChannelData);
                Err(NotForwarded::Dropped(DropReason::NotStunOrChannelData))
            }
        }
    }

    /// Hot path, client to peer: forward a ChannelData message received on `tuple`. Returns
    /// where to send `bytes[payload]`. Allocates nothing; drops are counted.
    #[inline]
    pub fn relay_channel_data(
        &mut self,
        now: Instant,
        tuple: &FiveTuple,
        bytes: &[u8],
    ) -> Result<PeerTransmit, DropReason> {
        let r = match self.by_tuple.get(tuple) {
            Some(&idx) => self.channel_to_peer_at(now, idx, bytes),
            None => Err(DropReason::NoAllocation),
        };
        self.count_channel(&r);
        r
    }

    #[inline]
    fn count_channel(&mut self, r: &Result<PeerTransmit, DropReason>) {
        match r {
            Ok(t) => {
                self.counters.client_to_peer_packets += 1;
                self.counters.client_to_peer_bytes += t.payload.len() as u64;
            }
            Err(reason) => self.counters.drop(*reason),
        }
    }

    #[inline]
    fn channel_to_peer_at(&mut self, now: Instant, idx: u32, bytes: &[u8]) -> Result<PeerTransmit, DropReason> {
        let cd = ChannelData::parse(bytes).map_err(|_| DropReason::Malformed)?;
        let a = self.slots[idx as usize].as_mut().ok_or(DropReason::NoAllocation)?;
        if a.ms.is_some() {
            return Err(DropReason::NoChannel);
        }
        if a.expires <= now {
            return Err(DropReason::NoAllocation);
        }
        let ch = a.channels.get(&cd.channel).ok_or(DropReason::NoChannel)?;
        if ch.expires <= now {
            return Err(DropReason::NoChannel);
        }
        let peer = ch.peer;
        if !a.permitted(peer.ip(), now) {
            return Err(DropReason::NoPermission);
        }
        let relayed = a.relayed_for(&peer).ok_or(DropReason::FamilyMismatch)?;
        if let Some(b) = &mut a.bucket
            && !b.take(now, cd.data.len())
        {
            return Err(DropReason::BandwidthExceeded);
        }
        Ok(PeerTransmit { relayed, peer, payload: channel_data::HEADER_LEN..channel_data::HEADER_LEN + cd.data.len() })
    }

    // ----------------------------------------------------------------------------------------
    // Input: peer side

    /// Feed one datagram a relayed socket received from `peer` (copying path; see
    /// [`Relay::relay_peer_datagram`]).
    pub fn handle_peer_datagram(&mut self, now: Instant, relayed: SocketAddr, peer: SocketAddr, payload: &[u8]) {
        let mut buf = vec![0u8; payload.len() + 64];
        match self.relay_peer_datagram(now, relayed, peer, payload, &mut buf) {
            Ok(t) => {
                buf.truncate(t.len);
                self.outputs.push_back(Output::Transmit(Transmit::Client { tuple: t.tuple, bytes: buf }));
            }
            Err(reason) => self.outputs.push_back(Output::Event(Event::Dropped { from: peer, reason })),
        }
    }

    /// Whether data from `peer` on relayed address `relayed` would be relayed now (a live allocation
    /// with a permission for the peer's IP). For a driver that holds stream bytes until then; nothing
    /// is counted.
    pub fn peer_permitted(&self, now: Instant, relayed: SocketAddr, peer: SocketAddr) -> bool {
        self.by_relayed
            .get(&relayed)
            .and_then(|&idx| self.slots[idx as usize].as_ref())
            .is_some_and(|a| a.expires > now && a.permitted(peer.ip(), now))
    }

    /// Hot path, peer to client: wrap `payload` from `peer` (received on `relayed`) as
    /// ChannelData (bound channel) or a Data indication into `out`, and say which 5-tuple to send
    /// `out[..len]` on. `out` needs at most `payload.len() + 51` bytes (a Data indication to an
    /// IPv6 peer, with padding).
    /// Allocates nothing; drops are counted.
    #[inline]
    pub fn relay_peer_datagram(
        &mut self,
        now: Instant,
        relayed: SocketAddr,
        peer: SocketAddr,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<ClientTransmit, DropReason> {
        let r = self.peer_to_client(now, relayed, peer, payload, out);
        match &r {
            Ok(_) => {
                self.counters.peer_to_client_packets += 1;
                self.counters.peer_to_client_bytes += payload.len() as u64;
            }
            Err(reason) => self.counters.drop(*reason),
        }
        r
    }

    #[inline]
    fn peer_to_client(
        &mut self,
        now: Instant,
        relayed: SocketAddr,
        peer: SocketAddr,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<ClientTransmit, DropReason> {
        let idx = *self.by_relayed.get(&relayed).ok_or(DropReason::NoAllocation)?;
        let a = self.slots[idx as usize].as_mut().ok_or(DropReason::NoAllocation)?;
        if a.expires <= now {
            return Err(DropReason::NoAllocation);
        }
        if !a.permitted(peer.ip(), now) {
            return Err(DropReason::NoPermission);
        }
        if let Some(b) = &mut a.bucket
            && !b.take(now, payload.len())
        {
            return Err(DropReason::BandwidthExceeded);
        }
        let tuple = a.tuple;
        if a.ms.is_some() {
            let len = Self::ms_to_client(&mut self.counters, a, peer, payload, out)?;
            self.counters.ms.peer_to_client_packets += 1;
            self.counters.ms.peer_to_client_bytes += payload.len() as u64;
            return Ok(ClientTransmit { tuple, len });
        }
        let channel =
            a.peer_channels.get(&peer).copied().filter(|ch| a.channels.get(ch).is_some_and(|c| c.expires > now));
        let len = match channel {
            Some(ch) => channel_data::write(ch, payload, out, tuple.transport.is_stream()),
            None => {
                self.indication_txid = self.indication_txid.wrapping_add(1);
                let mut t = [0u8; 12];
                t.copy_from_slice(&self.indication_txid.to_be_bytes()[4..]);
                write_data_indication(&TransactionId(t), peer, payload, out)
            }
        }
        .map_err(|_| DropReason::BufferTooSmall)?;
        Ok(ClientTransmit { tuple, len })
    }

    // ----------------------------------------------------------------------------------------
    // Relayed socket handshake

    /// The driver's answer to [`Output::BindRelay`]: the socket on `addr` for `allocation` is
    /// bound (`Ok`) or could not be (`Err`). A late or unknown `Ok` is answered with
    /// [`Output::ReleaseRelay`].
    pub fn relay_bound(
        &mut self,
        now: Instant,
        allocation: AllocationId,
        addr: SocketAddr,
        result: Result<(), BindFailure>,
    ) {
        let Some(mut p) = self.pending.remove(&allocation) else {
            if result.is_ok() {
                self.outputs.push_back(Output::ReleaseRelay(addr));
            }
            return;
        };
        let Some(i) = p.binds.iter().position(|b| b.addr == addr && b.state == BindState::Waiting) else {
            if result.is_ok() && !p.binds.iter().any(|b| b.addr == addr && b.state == BindState::Bound) {
                self.outputs.push_back(Output::ReleaseRelay(addr));
            }
            self.pending.insert(allocation, p);
            return;
        };
        match result {
            Ok(()) => p.binds[i].state = BindState::Bound,
            Err(BindFailure::AddrInUse) if !p.from_reservation && p.binds[i].attempts < self.config.bind_attempts => {
                let b = p.binds[i].clone();
                self.release_port(b.addr, b.pair);
                match self.pick_addr(b.family, b.even, b.pair) {
                    Some(new) => {
                        p.binds[i].addr = new;
                        p.binds[i].attempts += 1;
                        self.outputs.push_back(Output::BindRelay(BindRequest {
                            allocation,
                            addr: new,
                            dont_fragment: p.dont_fragment,
                            tcp: p.ms.is_some() && p.tuple.transport.is_stream(),
                        }));
                    }
                    None => {
                        p.binds[i].state = BindState::Failed;
                        p.binds[i].pair = false;
                    }
                }
            }
            Err(_) => {
                let b = p.binds[i].clone();
                self.release_port(b.addr, b.pair);
                p.binds[i].state = BindState::Failed;
                p.binds[i].pair = false;
            }
        }
        if p.binds.iter().any(|b| b.state == BindState::Waiting) {
            self.pending.insert(allocation, p);
        } else {
            self.finish_allocation(now, p);
        }
    }

    /// A TCP/TLS client connection closed: its allocation (or pending Allocate) goes away
    /// (RFC 8656 §3.1: the allocation's lifetime is tied to the connection).
    pub fn client_disconnected(&mut self, tuple: &FiveTuple) {
        if let Some(&idx) = self.by_tuple.get(tuple) {
            self.remove_allocation(idx, true);
        }
        if let Some(id) = self.pending_by_tuple.remove(tuple)
            && let Some(p) = self.pending.remove(&id)
        {
            for b in &p.binds {
                if b.state != BindState::Failed {
                    self.outputs.push_back(Output::ReleaseRelay(b.addr));
                    self.release_port(b.addr, b.pair);
                }
            }
            self.user_dec(&p.auth.username);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Timers

    /// Expire allocations, pending binds and reservations due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((t, key))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            match key {
                TimerKey::Allocation(id) => {
                    let Some(&idx) = self.by_id.get(&id) else {
                        continue;
                    };
                    let Some(a) = self.slots[idx as usize].as_mut() else {
                        continue;
                    };
                    if a.scheduled != t {
                        continue; // stale entry
                    }
                    if a.expires <= now {
                        self.remove_allocation(idx, false);
                    } else {
                        a.purge(now);
                        a.scheduled = a.expires;
                        self.timers.push(Reverse((a.expires, TimerKey::Allocation(id))));
                    }
                }
                TimerKey::Pending(id) => {
                    if self.pending.get(&id).is_some_and(|p| p.deadline <= now)
                        && let Some(mut p) = self.pending.remove(&id)
                    {
                        for b in &mut p.binds {
                            if b.state == BindState::Waiting {
                                self.outputs.push_back(Output::ReleaseRelay(b.addr));
                                let (addr, pair) = (b.addr, b.pair);
                                self.release_port(addr, pair);
                                b.state = BindState::Failed;
                                b.pair = false;
                            }
                        }
                        self.finish_allocation(now, p);
                    }
                }
                TimerKey::Reservation(tok) => {
                    if self.reservations.get(&tok).is_some_and(|r| r.expires <= now)
                        && let Some(r) = self.reservations.remove(&tok)
                    {
                        self.release_port(r.addr, false);
                    }
                }
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // STUN control path

    fn dropped(&mut self, from: SocketAddr, reason: DropReason) {
        self.counters.drop(reason);
        self.outputs.push_back(Output::Event(Event::Dropped { from, reason }));
    }

    fn handle_stun(&mut self, now: Instant, tuple: FiveTuple, bytes: &[u8]) {
        let Ok(m) = Message::decode(bytes) else {
            return self.dropped(tuple.client, DropReason::Malformed);
        };
        if m.check_fingerprint() == Some(false) {
            return self.dropped(tuple.client, DropReason::BadFingerprint);
        }
        match (m.class(), m.method()) {
            (Class::Request, _) => self.handle_request(now, tuple, &m),
            (Class::Indication, Method::SEND) => self.handle_send(now, tuple, &m),
            (Class::Indication, Method::BINDING) => {} // keepalive
            _ => self.dropped(tuple.client, DropReason::Unexpected),
        }
    }

    fn respond(
        &mut self,
        tuple: FiveTuple,
        method: Method,
        txid: TransactionId,
        code: Option<u16>,
        attrs: &[Attribute<'_>],
        auth: Option<&Auth>,
    ) -> Vec<u8> {
        let class = if code.is_some() { Class::Error } else { Class::Success };
        let mut b = MessageBuilder::new(class, method, txid);
        if let Some(code) = code {
            let _ = b.add(&Attribute::ErrorCode(ErrorCode { code, reason: Cow::Borrowed(reason_phrase(code)) }));
            self.counters.count_error(code);
        } else {
            self.counters.success_responses += 1;
        }
        for a in attrs {
            let _ = b.add(a);
        }
        if let Some(s) = &self.config.software {
            let _ = b.add(&Attribute::Software(s));
        }
        if let Some(auth) = auth {
            match auth.kind {
                IntegrityKind::Sha1 => b.add_message_integrity(&auth.key),
                IntegrityKind::Sha256 => b.add_message_integrity_sha256(&auth.key),
            }
        }
        b.add_fingerprint();
        let bytes = b.finish();
        if let Some(&idx) = self.by_tuple.get(&tuple)
            && let Some(a) = self.slots[idx as usize].as_mut()
        {
            a.last_txid = Some(txid);
            a.last_response.clone_from(&bytes);
        }
        self.outputs.push_back(Output::Transmit(Transmit::Client { tuple, bytes: bytes.clone() }));
        bytes
    }

    fn error(&mut self, tuple: FiveTuple, m: &Message<'_>, code: u16, attrs: &[Attribute<'_>], auth: Option<&Auth>) {
        self.respond(tuple, m.method(), m.transaction_id(), Some(code), attrs, auth);
    }

    fn challenge(&mut self, now: Instant, tuple: FiveTuple, m: &Message<'_>, code: u16) {
        let nonce = nonce::issue(&self.nonce_secret, self.unix_now(now), tuple.client.ip());
        let realm = self.config.realm.clone();
        self.error(tuple, m, code, &[Attribute::Realm(&realm), Attribute::Nonce(&nonce)], None);
    }

    fn auth_fail(&mut self, now: Instant, tuple: FiveTuple, m: &Message<'_>, username: &str, reason: AuthFailure) {
        self.counters.auth_failures += 1;
        self.outputs.push_back(Output::Event(Event::AuthFailed {
            client: tuple.client,
            username: username.to_string(),
            reason,
        }));
        self.challenge(now, tuple, m, 401);
    }

    /// Long-term credential check (RFC 8489 §9.2.4). Answers the failure itself.
    fn authenticate(&mut self, now: Instant, tuple: FiveTuple, m: &Message<'_>, req: &Req<'_>) -> Option<Auth> {
        let Some(kind) = m.integrity_kind() else {
            self.counters.auth_challenges += 1;
            self.challenge(now, tuple, m, 401);
            return None;
        };
        let (Some(username), Some(realm), Some(nonce)) = (req.username, req.realm, req.nonce) else {
            self.error(tuple, m, 400, &[], None);
            return None;
        };
        let unix = self.unix_now(now);
        let lifetime = self.config.nonce_lifetime.as_secs();
        if nonce::check(&self.nonce_secret, nonce, unix, tuple.client.ip(), lifetime) == NonceCheck::Stale {
            self.challenge(now, tuple, m, 438);
            return None;
        }
        if realm != self.config.realm {
            self.auth_fail(now, tuple, m, username, AuthFailure::WrongRealm);
            return None;
        }
        // Requests on an existing allocation by its own user: the remembered key.
        let existing = self
            .by_tuple
            .get(&tuple)
            .and_then(|&i| self.slots[i as usize].as_ref())
            .filter(|a| a.username == username)
            .map(|a| (a.key, a.rest_expiry));
        let mut rest_expiry = None;
        let key = if let Some((key, expiry)) = existing {
            if expiry.is_some_and(|e| e < unix) {
                self.auth_fail(now, tuple, m, username, AuthFailure::Expired);
                return None;
            }
            rest_expiry = expiry;
            // A long-term account must still exist with the same key: a disabled account or a changed
            // password stops the allocation's refreshes, permissions and channels (the store's cache
            // keeps this lookup cheap). REST credentials carry their own expiry, checked above.
            if expiry.is_none() && self.credentials.long_term_key(username, realm) != Some(key) {
                self.auth_fail(now, tuple, m, username, AuthFailure::UnknownUser);
                return None;
            }
            m.verify_integrity(&key).map(|_| key)
        } else {
            let mut found = None;
            if !self.config.rest_secrets.is_empty()
                && let Some(expiry) = credentials::rest_expiry(username)
            {
                if expiry < unix {
                    self.auth_fail(now, tuple, m, username, AuthFailure::Expired);
                    return None;
                }
                found = self
                    .config
                    .rest_secrets
                    .iter()
                    .map(|s| credentials::rest_key(s, username, realm))
                    .find(|k| m.verify_integrity(k).is_some());
                if found.is_some() {
                    rest_expiry = Some(expiry);
                }
            }
            if found.is_none() {
                match self.credentials.long_term_key(username, realm) {
                    Some(k) => found = m.verify_integrity(&k).map(|_| k),
                    None if rest_expiry.is_none() && credentials::rest_expiry(username).is_none() => {
                        self.auth_fail(now, tuple, m, username, AuthFailure::UnknownUser);
                        return None;
                    }
                    None => {}
                }
            }
            found
        };
        match key {
            Some(key) => Some(Auth { username: username.to_string(), key, kind, rest_expiry }),
            None => {
                self.auth_fail(now, tuple, m, username, AuthFailure::BadIntegrity);
                None
            }
        }
    }

    fn handle_request(&mut self, now: Instant, tuple: FiveTuple, m: &Message<'_>) {
        let txid = m.transaction_id();
        // An allocation past its lifetime is gone even if handle_timeout has not run yet: a
        // late Refresh must not revive it.
        if let Some(&idx) = self.by_tuple.get(&tuple)
            && self.slots[idx as usize].as_ref().is_some_and(|a| a.expires <= now)
        {
            self.remove_allocation(idx, false);
        }
        // Retransmissions (RFC 8656 §7.2, RFC 8489 §6.3.1): same answer again.
        if let Some(&idx) = self.by_tuple.get(&tuple)
            && let Some(a) = self.slots[idx as usize].as_ref()
        {
            let cached = if m.method() == Method::ALLOCATE && a.alloc_txid == txid {
                Some(a.alloc_response.clone())
            } else if a.last_txid == Some(txid) {
                Some(a.last_response.clone())
            } else {
                None
            };
            if let Some(bytes) = cached {
                self.outputs.push_back(Output::Transmit(Transmit::Client { tuple, bytes }));
                return;
            }
        }
        if self.pending_by_tuple.get(&tuple).and_then(|id| self.pending.get(id)).is_some_and(|p| p.txid == txid) {
            return; // answered once the relayed socket is bound
        }
        let Some(req) = parse_req(m) else {
            return self.error(tuple, m, 400, &[], None);
        };
        if m.method() == Method::BINDING {
            let unknown = m.unknown_comprehension_required(attr::is_known);
            if !unknown.is_empty() {
                return self.error(tuple, m, 420, &[Attribute::UnknownAttributes(Cow::Owned(unknown))], None);
            }
            self.respond(tuple, Method::BINDING, txid, None, &[Attribute::XorMappedAddress(tuple.client)], None);
            return;
        }
        if !matches!(m.method(), Method::ALLOCATE | Method::REFRESH | Method::CREATE_PERMISSION | Method::CHANNEL_BIND)
        {
            return self.error(tuple, m, 400, &[], None);
        }
        let Some(auth) = self.authenticate(now, tuple, m, &req) else {
            return;
        };
        let unknown = m.unknown_comprehension_required(attr::is_known);
        if !unknown.is_empty() {
            return self.error(tuple, m, 420, &[Attribute::UnknownAttributes(Cow::Owned(unknown))], Some(&auth));
        }
        if m.method() == Method::ALLOCATE {
            return self.allocate(now, tuple, m, &req, auth);
        }
        let Some(&idx) = self.by_tuple.get(&tuple) else {
            return self.error(tuple, m, 437, &[], Some(&auth));
        };
        if self.slots[idx as usize].as_ref().is_none_or(|a| a.username != auth.username) {
            self.counters.auth_failures += 1;
            self.outputs.push_back(Output::Event(Event::AuthFailed {
                client: tuple.client,
                username: auth.username.clone(),
                reason: AuthFailure::WrongUser,
            }));
            return self.error(tuple, m, 441, &[], Some(&auth));
        }
        match m.method() {
            Method::REFRESH => self.refresh(now, tuple, idx, m, &req, &auth),
            Method::CREATE_PERMISSION => self.create_permission(now, tuple, idx, m, &req, &auth),
            _ => self.channel_bind(now, tuple, idx, m, &req, &auth),
        }
    }

    fn peer_allowed(&self, ip: IpAddr) -> bool {
        let is_relay = match ip {
            IpAddr::V4(v4) => self.config.relay_ipv4 == Some(v4),
            IpAddr::V6(v6) => self.config.relay_ipv6 == Some(v6),
        };
        if is_relay {
            // Relaying to our own relayed addresses only when the operator allowed that range.
            self.config.peer_policy.is_explicitly_allowed(ip)
        } else {
            self.config.peer_policy.is_allowed(ip)
        }
    }

    fn pick_addr(&mut self, family: AddressFamily, even: bool, pair: bool) -> Option<SocketAddr> {
        let mut seed = [0u8; 4];
        self.entropy.fill(&mut seed);
        let seed = u32::from_le_bytes(seed);
        match family {
            AddressFamily::V4 => {
                let ip = self.config.relay_ipv4?;
                let port = self.ports_v4.pick(seed, even, pair)?;
                Some(SocketAddr::new(IpAddr::V4(ip), port))
            }
            AddressFamily::V6 => {
                let ip = self.config.relay_ipv6?;
                let port = self.ports_v6.pick(seed, even, pair)?;
                Some(SocketAddr::new(IpAddr::V6(ip), port))
            }
        }
    }

    fn release_port(&mut self, addr: SocketAddr, pair: bool) {
        let pool = if addr.is_ipv4() { &mut self.ports_v4 } else { &mut self.ports_v6 };
        pool.release(addr.port());
        if pair {
            pool.release(addr.port().wrapping_add(1));
        }
    }

    fn family_configured(&self, f: AddressFamily) -> bool {
        match f {
            AddressFamily::V4 => self.config.relay_ipv4.is_some(),
            AddressFamily::V6 => self.config.relay_ipv6.is_some(),
        }
    }

    /// Quotas and drain mode for a new allocation of `username`: `None` to admit, else the error
    /// code and the ALTERNATE-SERVER to send (the event and counter are recorded here).
    fn admission(&mut self, username: &str) -> Option<(u16, Option<SocketAddr>)> {
        let (user_count, shared_total) = match &self.config.shared_quota {
            Some(shared) => {
                let (user, total) = shared.get(username);
                (user, Some(total as usize))
            }
            None => (self.user_allocs.get(username).copied().unwrap_or(0), None),
        };
        if self.config.user_quota.is_some_and(|q| user_count >= q) {
            self.counters.user_quota_hits += 1;
            self.outputs
                .push_back(Output::Event(Event::QuotaExceeded { username: username.to_string(), quota: Quota::User }));
            return Some((486, None));
        }
        if self.draining {
            self.outputs.push_back(Output::Event(Event::QuotaExceeded {
                username: username.to_string(),
                quota: Quota::Draining,
            }));
            return Some(self.config.alternate_server.map_or((508, None), |alt| (300, Some(alt))));
        }
        let total = shared_total.unwrap_or(self.by_id.len() + self.pending.len());
        if self.config.total_quota.is_some_and(|q| total >= q as usize) {
            self.counters.total_quota_hits += 1;
            self.outputs
                .push_back(Output::Event(Event::QuotaExceeded { username: username.to_string(), quota: Quota::Total }));
            return Some(self.config.alternate_server.map_or((508, None), |alt| (300, Some(alt))));
        }
        None
    }

    /// Allocate (RFC 8656 §7.2), first phase: checks, port choice, BindRelay outputs.
    fn allocate(&mut self, now: Instant, tuple: FiveTuple, m: &Message<'_>, req: &Req<'_>, auth: Auth) {
        if self.by_tuple.contains_key(&tuple) || self.pending_by_tuple.contains_key(&tuple) {
            return self.error(tuple, m, 437, &[], Some(&auth));
        }
        match req.transport {
            None => return self.error(tuple, m, 400, &[], Some(&auth)),
            Some(UDP) => {}
            Some(_) => return self.error(tuple, m, 442, &[], Some(&auth)),
        }
        if (req.token.is_some() && (req.even_port.is_some() || req.req_family.is_some() || req.add_family.is_some()))
            || (req.req_family.is_some() && req.add_family.is_some())
            || req.add_family == Some(AddressFamily::V4)
        {
            return self.error(tuple, m, 400, &[], Some(&auth));
        }
        if let Some((code, alt)) = self.admission(&auth.username) {
            let attrs: Vec<Attribute<'_>> = alt.map(Attribute::AlternateServer).into_iter().collect();
            return self.error(tuple, m, code, &attrs, Some(&auth));
        }
        let requested = Duration::from_secs(u64::from(req.lifetime.unwrap_or(0)));
        let lifetime = requested.clamp(self.config.default_lifetime, self.config.max_lifetime);
        let lifetime = self.cap_lifetime(now, lifetime, auth.rest_expiry);
        let id = AllocationId(self.next_id);
        self.next_id += 1;
        let mut binds = Vec::new();
        let mut address_errors = Vec::new();
        if let Some(token) = req.token {
            let r = match self.reservations.remove(&token) {
                Some(r) if r.expires > now => r,
                Some(r) => {
                    // Expired, its timer has not run yet: give the port back now.
                    self.release_port(r.addr, false);
                    return self.error(tuple, m, 508, &[], Some(&auth));
                }
                None => return self.error(tuple, m, 508, &[], Some(&auth)),
            };
            binds.push(PendingBind {
                family: AddressFamily::of(&r.addr),
                addr: r.addr,
                state: BindState::Waiting,
                attempts: 0,
                pair: false,
                even: false,
            });
        } else {
            let primary = req.req_family.unwrap_or(AddressFamily::V4);
            if !self.family_configured(primary) {
                return self.error(tuple, m, 440, &[], Some(&auth));
            }
            let mut families = vec![primary];
            if req.add_family == Some(AddressFamily::V6) {
                if self.family_configured(AddressFamily::V6) {
                    families.push(AddressFamily::V6);
                } else {
                    address_errors.push((AddressFamily::V6, 440));
                }
            }
            for (i, family) in families.into_iter().enumerate() {
                let even = i == 0 && req.even_port.is_some();
                let pair = i == 0 && req.even_port == Some(true);
                match self.pick_addr(family, even, pair) {
                    Some(addr) => {
                        binds.push(PendingBind { family, addr, state: BindState::Waiting, attempts: 0, pair, even })
                    }
                    None if i == 0 => {
                        self.outputs.push_back(Output::Event(Event::QuotaExceeded {
                            username: auth.username.clone(),
                            quota: Quota::Ports,
                        }));
                        return self.error(tuple, m, 508, &[], Some(&auth));
                    }
                    None => address_errors.push((family, 508)),
                }
            }
        }
        for b in &binds {
            self.outputs.push_back(Output::BindRelay(BindRequest {
                allocation: id,
                addr: b.addr,
                dont_fragment: req.dont_fragment,
                tcp: false,
            }));
        }
        *self.user_allocs.entry(auth.username.clone()).or_insert(0) += 1;
        if let Some(shared) = &self.config.shared_quota {
            shared.acquire(&auth.username);
        }
        let deadline = now + self.config.bind_timeout;
        self.timers.push(Reverse((deadline, TimerKey::Pending(id))));
        self.pending_by_tuple.insert(tuple, id);
        self.pending.insert(
            id,
            Pending {
                id,
                tuple,
                txid: m.transaction_id(),
                method: m.method(),
                auth,
                lifetime,
                dont_fragment: req.dont_fragment,
                from_reservation: req.token.is_some(),
                binds,
                address_errors,
                deadline,
                ms: None,
            },
        );
    }

    /// Allocate, second phase: all binds resolved.
    fn finish_allocation(&mut self, now: Instant, mut p: Pending) {
        if self.pending_by_tuple.get(&p.tuple) == Some(&p.id) {
            self.pending_by_tuple.remove(&p.tuple);
        }
        let primary_ok = p.binds.first().is_some_and(|b| b.state == BindState::Bound);
        if !primary_ok {
            for b in &p.binds {
                if b.state == BindState::Bound {
                    self.outputs.push_back(Output::ReleaseRelay(b.addr));
                    self.release_port(b.addr, b.pair);
                }
            }
            self.user_dec(&p.auth.username);
            match p.ms.take() {
                Some(ms) => self.ms_finish_failed(&p, &ms),
                None => {
                    self.respond(p.tuple, p.method, p.txid, Some(508), &[], Some(&p.auth));
                }
            }
            return;
        }
        let mut relayed_v4 = None;
        let mut relayed_v6 = None;
        let mut token = None;
        for b in &p.binds {
            match b.state {
                BindState::Bound => {
                    if b.addr.is_ipv4() {
                        relayed_v4 = Some(b.addr);
                    } else {
                        relayed_v6 = Some(b.addr);
                    }
                    if b.pair {
                        let mut t = [0u8; 8];
                        self.entropy.fill(&mut t);
                        let addr = SocketAddr::new(b.addr.ip(), b.addr.port().wrapping_add(1));
                        let expires = now + self.config.reservation_lifetime;
                        self.reservations.insert(t, Reservation { addr, expires });
                        self.timers.push(Reverse((expires, TimerKey::Reservation(t))));
                        token = Some(t);
                    }
                }
                _ => p.address_errors.push((b.family, 508)),
            }
        }
        let ms_pending = p.ms.take();
        let mut attrs: Vec<Attribute<'_>> = Vec::new();
        attrs.extend(relayed_v4.map(Attribute::XorRelayedAddress));
        attrs.extend(relayed_v6.map(Attribute::XorRelayedAddress));
        for (family, code) in &p.address_errors {
            attrs.push(Attribute::AddressErrorCode {
                family: *family,
                error: ErrorCode { code: *code, reason: Cow::Borrowed(reason_phrase(*code)) },
            });
        }
        attrs.push(Attribute::Lifetime(p.lifetime.as_secs() as u32));
        attrs.extend(token.map(Attribute::ReservationToken));
        attrs.push(Attribute::XorMappedAddress(p.tuple.client));
        let response = match ms_pending {
            Some(_) => Vec::new(),
            None => self.respond(p.tuple, p.method, p.txid, None, &attrs, Some(&p.auth)),
        };
        let mut alloc = Allocation {
            id: p.id,
            tuple: p.tuple,
            username: p.auth.username.clone(),
            key: p.auth.key,
            rest_expiry: p.auth.rest_expiry,
            relayed_v4,
            relayed_v6,
            expires: now + p.lifetime,
            permissions: Map::with_hasher(self.hasher),
            channels: Map::with_hasher(self.hasher),
            peer_channels: Map::with_hasher(self.hasher),
            bucket: self.config.bandwidth_limit.map(|r| TokenBucket::new(r, now)),
            alloc_txid: p.txid,
            alloc_response: response,
            last_txid: None,
            last_response: Vec::new(),
            ms: None,
            scheduled: now + p.lifetime,
        };
        if let Some(ms) = ms_pending {
            self.ms_finish(now, &p, *ms, &mut alloc);
            self.counters.ms.allocations_active += 1;
        }
        let relayed: Vec<SocketAddr> = alloc.relayed().collect();
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(alloc);
                i
            }
            None => {
                self.slots.push(Some(alloc));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_tuple.insert(p.tuple, idx);
        self.by_id.insert(p.id, idx);
        for r in &relayed {
            self.by_relayed.insert(*r, idx);
        }
        self.timers.push(Reverse((now + p.lifetime, TimerKey::Allocation(p.id))));
        self.counters.allocations_created += 1;
        self.counters.allocations_active += 1;
        self.outputs.push_back(Output::Event(Event::AllocationCreated {
            id: p.id,
            tuple: p.tuple,
            username: p.auth.username,
            relayed,
            lifetime: p.lifetime,
        }));
    }

    fn user_dec(&mut self, username: &str) {
        if let Some(n) = self.user_allocs.get_mut(username) {
            if let Some(shared) = &self.config.shared_quota {
                shared.release(username);
            }
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.user_allocs.remove(username);
            }
        }
    }

    fn remove_allocation(&mut self, idx: u32, deleted: bool) {
        let Some(a) = self.slots[idx as usize].take() else {
            return;
        };
        self.free.push(idx);
        self.by_tuple.remove(&a.tuple);
        self.by_id.remove(&a.id);
        for r in a.relayed() {
            self.by_relayed.remove(&r);
            self.release_port(r, false);
            self.outputs.push_back(Output::ReleaseRelay(r));
        }
        self.user_dec(&a.username);
        self.counters.allocations_active -= 1;
        if a.ms.is_some() {
            self.counters.ms.allocations_active -= 1;
        }
        let event = if deleted {
            self.counters.allocations_deleted += 1;
            Event::AllocationDeleted { id: a.id }
        } else {
            self.counters.allocations_expired += 1;
            Event::AllocationExpired { id: a.id }
        };
        self.outputs.push_back(Output::Event(event));
    }

    /// Refresh (RFC 8656 §8).
    fn refresh(&mut self, now: Instant, tuple: FiveTuple, idx: u32, m: &Message<'_>, req: &Req<'_>, auth: &Auth) {
        let rest_expiry = self.slots[idx as usize].as_ref().and_then(|a| a.rest_expiry);
        let max = self.cap_lifetime(now, self.config.max_lifetime, rest_expiry);
        let Some(a) = self.slots[idx as usize].as_mut() else {
            return;
        };
        if let Some(f) = req.req_family {
            let has = match f {
                AddressFamily::V4 => a.relayed_v4.is_some(),
                AddressFamily::V6 => a.relayed_v6.is_some(),
            };
            if !has {
                return self.error(tuple, m, 443, &[], Some(auth));
            }
        }
        if req.lifetime == Some(0) {
            self.remove_allocation(idx, true);
            self.respond(tuple, m.method(), m.transaction_id(), None, &[Attribute::Lifetime(0)], Some(auth));
            return;
        }
        let requested = req.lifetime.map_or(self.config.default_lifetime, |s| Duration::from_secs(u64::from(s)));
        let lifetime = requested.min(max);
        a.expires = now + lifetime;
        a.purge(now);
        let id = a.id;
        if a.expires < a.scheduled {
            a.scheduled = a.expires;
            self.timers.push(Reverse((a.expires, TimerKey::Allocation(id))));
        }
        self.outputs.push_back(Output::Event(Event::AllocationRefreshed { id, lifetime }));
        self.respond(
            tuple,
            m.method(),
            m.transaction_id(),
            None,
            &[Attribute::Lifetime(lifetime.as_secs() as u32)],
            Some(auth),
        );
    }

    /// Check the peers of a CreatePermission/ChannelBind: 443 family, 403 policy.
    fn check_peers(&mut self, tuple: FiveTuple, idx: u32, m: &Message<'_>, peers: &[SocketAddr], auth: &Auth) -> bool {
        let Some(a) = self.slots[idx as usize].as_ref() else {
            return false;
        };
        if peers.is_empty() {
            self.error(tuple, m, 400, &[], Some(auth));
            return false;
        }
        if peers.iter().any(|p| a.relayed_for(p).is_none()) {
            self.error(tuple, m, 443, &[], Some(auth));
            return false;
        }
        if peers.iter().any(|p| !self.peer_allowed(p.ip())) {
            self.error(tuple, m, 403, &[], Some(auth));
            return false;
        }
        true
    }

    /// CreatePermission (RFC 8656 §10).
    fn create_permission(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        idx: u32,
        m: &Message<'_>,
        req: &Req<'_>,
        auth: &Auth,
    ) {
        if !self.check_peers(tuple, idx, m, &req.peers, auth) {
            return;
        }
        let max = self.config.max_permissions;
        let expires = now + self.config.permission_lifetime;
        let Some(a) = self.slots[idx as usize].as_mut() else {
            return;
        };
        a.purge(now);
        let mut new: Vec<IpAddr> =
            req.peers.iter().map(|p| p.ip()).filter(|ip| !a.permissions.contains_key(ip)).collect();
        new.sort();
        new.dedup();
        if a.permissions.len() + new.len() > max {
            return self.error(tuple, m, 508, &[], Some(auth));
        }
        for p in &req.peers {
            a.permissions.insert(p.ip(), expires);
        }
        self.respond(tuple, m.method(), m.transaction_id(), None, &[], Some(auth));
    }

    /// ChannelBind (RFC 8656 §11).
    fn channel_bind(&mut self, now: Instant, tuple: FiveTuple, idx: u32, m: &Message<'_>, req: &Req<'_>, auth: &Auth) {
        let Some(ch) = req.channel.filter(|c| channel_data::is_valid_channel(*c)) else {
            return self.error(tuple, m, 400, &[], Some(auth));
        };
        if req.peers.len() != 1 {
            return self.error(tuple, m, 400, &[], Some(auth));
        }
        if !self.check_peers(tuple, idx, m, &req.peers, auth) {
            return;
        }
        let peer = req.peers[0];
        let max = self.config.max_permissions;
        let channel_expires = now + self.config.channel_lifetime;
        let perm_expires = now + self.config.permission_lifetime;
        let Some(a) = self.slots[idx as usize].as_mut() else {
            return;
        };
        a.purge(now);
        if a.channels.get(&ch).is_some_and(|c| c.peer != peer) || a.peer_channels.get(&peer).is_some_and(|c| *c != ch) {
            return self.error(tuple, m, 400, &[], Some(auth));
        }
        if !a.permissions.contains_key(&peer.ip()) && a.permissions.len() >= max {
            return self.error(tuple, m, 508, &[], Some(auth));
        }
        a.channels.insert(ch, Channel { peer, expires: channel_expires });
        a.peer_channels.insert(peer, ch);
        a.permissions.insert(peer.ip(), perm_expires);
        self.respond(tuple, m.method(), m.transaction_id(), None, &[], Some(auth));
    }

    /// Send indication (RFC 8656 §11.2).
    fn handle_send(&mut self, now: Instant, tuple: FiveTuple, m: &Message<'_>) {
        let Some(&idx) = self.by_tuple.get(&tuple) else {
            return self.dropped(tuple.client, DropReason::NoAllocation);
        };
        if !m.unknown_comprehension_required(attr::is_known).is_empty() {
            return self.dropped(tuple.client, DropReason::UnknownAttribute);
        }
        let Some(req) = parse_req(m) else {
            return self.dropped(tuple.client, DropReason::Malformed);
        };
        let (Some(&peer), Some(data)) = (req.peers.first(), req.data) else {
            return self.dropped(tuple.client, DropReason::Malformed);
        };
        if !self.peer_allowed(peer.ip()) {
            return self.dropped(tuple.client, DropReason::PeerDenied);
        }
        let Some(a) = self.slots[idx as usize].as_mut() else {
            return;
        };
        if a.expires <= now {
            return self.dropped(tuple.client, DropReason::NoAllocation);
        }
        if !a.permitted(peer.ip(), now) {
            return self.dropped(tuple.client, DropReason::NoPermission);
        }
        let Some(relayed) = a.relayed_for(&peer) else {
            return self.dropped(tuple.client, DropReason::FamilyMismatch);
        };
        if let Some(b) = &mut a.bucket
            && !b.take(now, data.len())
        {
            return self.dropped(tuple.client, DropReason::BandwidthExceeded);
        }
        self.counters.client_to_peer_packets += 1;
        self.counters.client_to_peer_bytes += data.len() as u64;
        self.outputs.push_back(Output::Transmit(Transmit::Peer { relayed, peer, bytes: data.to_vec() }));
    }
}
