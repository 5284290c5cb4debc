//! One relay worker: a thread with its own `mio` poll, its own share of the UDP listener
//! (`SO_REUSEPORT`), its own relay core, and every relayed socket of the allocations it owns.
//!
//! Nothing here is shared with another worker on the packet path: a datagram is received in a batch
//! (`recvmmsg`), handed to the core, and its forwarded copy queued in a send batch (`sendmmsg`), with no
//! allocation and no lock. Stream clients (TCP/TLS) are served by async tasks that pass frames in through
//! the inbox; control-plane figures leave through [`TurnShared`] once a second.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use tokio::sync::mpsc::Sender;
use vienna_netio::{BATCH, RecvBatch, SendBatch, UdpOptions, bind_udp, set_dont_fragment};
use vienna_turn::{
    BindFailure, BindRequest, ClientDatagram, Event, FiveTuple, NotForwarded, Output, Relay, Transmit, Transport,
};

use super::shared::{AllocationView, TurnShared, WorkerStats};

const LISTENER: Token = Token(0);
/// Token of the waker (the inbox has something).
pub const WAKER: Token = Token(1);
const FIRST_RELAY: usize = 2;

/// Batches read from one socket before giving the others a turn.
const READ_BUDGET: usize = 16;
/// Longest sleep when the core has no deadline (keeps statistics fresh).
const MAX_IDLE: Duration = Duration::from_millis(500);
/// How often statistics are published.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// How often the core's wall clock is re-anchored.
const CLOCK_EVERY: Duration = Duration::from_secs(60);
/// Socket buffer size of relayed sockets (the shared listener's is [`LISTENER_BUFFER`]).
const RELAY_BUFFER: usize = 256 << 10;
/// Socket buffer size of each worker's share of the UDP listener.
pub const LISTENER_BUFFER: usize = 4 << 20;

/// What other threads tell a worker.
pub enum Command {
    /// A stream client connected; frames for it go to `sender`.
    StreamOpened {
        /// Its 5-tuple.
        tuple: FiveTuple,
        /// Where to write frames for it.
        sender: Sender<Vec<u8>>,
    },
    /// A whole frame (STUN message or ChannelData) from a stream client.
    StreamFrame {
        /// Its 5-tuple.
        tuple: FiveTuple,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// A stream client went away: its allocation goes too (RFC 8656 §3.1).
    StreamClosed {
        /// Its 5-tuple.
        tuple: FiveTuple,
    },
    /// Publish statistics now (and the allocation list, if asked), then answer on the channel.
    Snapshot {
        /// Where to say it is done.
        reply: std::sync::mpsc::Sender<()>,
        /// Also publish every live allocation.
        allocations: bool,
    },
    /// Stop: release every socket and return.
    Shutdown,
}

struct RelaySocket {
    socket: UdpSocket,
    addr: SocketAddr,
}

/// The relayed sockets of a worker and the batch of datagrams going out of them to peers.
struct PeerSide {
    sockets: Vec<Option<RelaySocket>>,
    free: Vec<usize>,
    by_addr: HashMap<SocketAddr, usize>,
    /// Datagrams for one socket at a time: a datagram for another socket sends the batch first.
    batch: SendBatch,
    batch_slot: Option<usize>,
    /// Datagrams dropped at send.
    dropped: u64,
}

impl PeerSide {
    fn new() -> Self {
        Self {
            sockets: Vec::new(),
            free: Vec::new(),
            by_addr: HashMap::new(),
            batch: SendBatch::new(),
            batch_slot: None,
            dropped: 0,
        }
    }

    /// Queues `payload` to `peer` from the relayed socket bound on `relayed`.
    fn send(&mut self, relayed: SocketAddr, payload: &[u8], peer: SocketAddr) {
        let Some(&slot) = self.by_addr.get(&relayed) else {
            self.dropped += 1;
            return;
        };
        if self.batch_slot != Some(slot) || self.batch.is_full() {
            self.flush();
            self.batch_slot = Some(slot);
        }
        if !self.batch.push(payload, peer) {
            self.dropped += 1;
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        match self.batch_slot.and_then(|s| self.sockets.get(s)).and_then(Option::as_ref) {
            Some(relay) => self.dropped += self.batch.flush(&relay.socket).dropped as u64,
            None => {
                // The socket is gone; what was queued for it is lost.
                self.dropped += self.batch.len() as u64;
                self.batch.clear();
            }
        }
    }

    fn bind(&mut self, registry: &mio::Registry, request: BindRequest) -> Result<(), BindFailure> {
        let options = UdpOptions { reuse_port: false, recv_buffer: RELAY_BUFFER, send_buffer: RELAY_BUFFER };
        let socket = match bind_udp(request.addr, options) {
            Ok(socket) => socket,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(BindFailure::AddrInUse),
            Err(e) => {
                tracing::warn!(address = %request.addr, error = %e, "turn: cannot bind relayed socket");
                return Err(BindFailure::Other);
            }
        };
        if request.dont_fragment
            && let Err(e) = set_dont_fragment(&socket)
        {
            tracing::debug!(address = %request.addr, error = %e, "turn: cannot set DONT-FRAGMENT");
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.sockets.push(None);
            self.sockets.len() - 1
        });
        let mut socket = UdpSocket::from_std(socket);
        if let Err(e) = registry.register(&mut socket, Token(slot + FIRST_RELAY), Interest::READABLE) {
            tracing::warn!(error = %e, "turn: cannot watch relayed socket");
            self.free.push(slot);
            return Err(BindFailure::Other);
        }
        self.sockets[slot] = Some(RelaySocket { socket, addr: request.addr });
        self.by_addr.insert(request.addr, slot);
        Ok(())
    }

    fn release(&mut self, registry: &mio::Registry, addr: SocketAddr) {
        let Some(slot) = self.by_addr.remove(&addr) else { return };
        if self.batch_slot == Some(slot) {
            self.flush();
        }
        if let Some(mut relay) = self.sockets[slot].take() {
            let _ = registry.deregister(&mut relay.socket);
        }
        self.free.push(slot);
    }
}

/// One datagram or stream frame from a client: ChannelData takes the hot path (no parsing, no
/// allocation), everything else goes to the core.
fn client_input(relay: &mut Relay, peers: &mut PeerSide, now: Instant, tuple: FiveTuple, bytes: &[u8]) {
    // ChannelData, MS-TURN Send requests and raw data for an active destination: no allocation.
    match relay.relay_client_packet(now, &tuple, bytes) {
        Ok(t) => peers.send(t.relayed, &bytes[t.payload], t.peer),
        Err(NotForwarded::Dropped(_)) => {}
        Err(NotForwarded::Control) => {
            let datagram =
                ClientDatagram { transport: tuple.transport, client: tuple.client, server: tuple.server, bytes };
            relay.handle_client_datagram(now, datagram);
        }
    }
}

/// The state of one worker thread.
pub struct Worker {
    index: usize,
    relay: Relay,
    poll: Poll,
    listener: UdpSocket,
    listener_addr: SocketAddr,
    inbox: Receiver<Command>,
    shared: Arc<TurnShared>,
    peers: PeerSide,
    streams: HashMap<FiveTuple, Sender<Vec<u8>>>,
    recv: RecvBatch,
    to_clients: SendBatch,
    stats: WorkerStats,
    /// Sockets whose read budget ran out: read again before sleeping.
    unfinished: Vec<Token>,
    /// Tokens to read in this turn of the loop (kept to reuse its memory).
    ready: Vec<Token>,
}

impl Worker {
    /// A worker around `relay`, serving the UDP `listener` (already bound, non-blocking) and `inbox`.
    pub fn new(
        index: usize,
        relay: Relay,
        poll: Poll,
        listener: std::net::UdpSocket,
        inbox: Receiver<Command>,
        shared: Arc<TurnShared>,
    ) -> io::Result<Self> {
        let listener_addr = listener.local_addr()?;
        let mut listener = UdpSocket::from_std(listener);
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Self {
            index,
            relay,
            poll,
            listener,
            listener_addr,
            inbox,
            shared,
            peers: PeerSide::new(),
            streams: HashMap::new(),
            recv: RecvBatch::new(),
            to_clients: SendBatch::new(),
            stats: WorkerStats::default(),
            unfinished: Vec::new(),
            ready: Vec::with_capacity(256),
        })
    }

    /// Runs until [`Command::Shutdown`] or the inbox closes.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut next_stats = Instant::now() + STATS_EVERY;
        let mut next_clock = Instant::now() + CLOCK_EVERY;
        loop {
            let now = Instant::now();
            let timeout = if self.unfinished.is_empty() {
                let deadline = self.relay.poll_timeout().map_or(next_stats, |t| t.min(next_stats));
                deadline.saturating_duration_since(now).min(MAX_IDLE)
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(worker = self.index, error = %e, "turn: poll failed; worker stops");
                return;
            }
            let mut ready = std::mem::take(&mut self.ready);
            ready.clear();
            ready.append(&mut self.unfinished);
            let carried = ready.len();
            for event in events.iter() {
                if !ready[..carried].contains(&event.token()) {
                    ready.push(event.token());
                }
            }
            for &token in &ready {
                match token {
                    LISTENER => self.read_listener(),
                    WAKER => {
                        if !self.read_inbox() {
                            self.shutdown();
                            return;
                        }
                    }
                    Token(t) => self.read_relay(t - FIRST_RELAY),
                }
            }
            self.ready = ready;
            let now = Instant::now();
            if self.relay.poll_timeout().is_some_and(|t| t <= now) {
                self.relay.handle_timeout(now);
            }
            self.drain_outputs(now);
            self.flush();
            if now >= next_clock {
                self.relay.set_unix_time(now, unix_now());
                next_clock = now + CLOCK_EVERY;
            }
            if now >= next_stats {
                self.publish_stats();
                next_stats = now + STATS_EVERY;
            }
        }
    }

    /// Datagrams from UDP clients.
    fn read_listener(&mut self) {
        for _ in 0..READ_BUDGET {
            let n = match self.recv.recv(&self.listener) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(worker = self.index, error = %e, "turn: receive failed");
                    return;
                }
            };
            if n == 0 {
                return;
            }
            let now = Instant::now();
            for i in 0..n {
                let (bytes, client) = self.recv.get(i);
                let tuple = FiveTuple { transport: Transport::Udp, client, server: self.listener_addr };
                client_input(&mut self.relay, &mut self.peers, now, tuple, bytes);
            }
            self.drain_outputs(now);
            self.flush();
            if n < BATCH {
                // A short batch means the queue is empty; Linux raises a new edge for every datagram that
                // arrives later, so the extra read that would only return EAGAIN is skipped.
                return;
            }
        }
        self.unfinished.push(LISTENER);
    }

    /// Datagrams from peers on a relayed socket: wrapped by the core straight into the client batch.
    fn read_relay(&mut self, slot: usize) {
        for _ in 0..READ_BUDGET {
            let Some(Some(relay)) = self.peers.sockets.get(slot) else { return };
            let relayed = relay.addr;
            let n = match self.recv.recv(&relay.socket) {
                Ok(n) => n,
                Err(e) => {
                    // ICMP errors surface here (ECONNREFUSED from an unreachable peer): nothing to do.
                    tracing::trace!(worker = self.index, error = %e, "turn: relayed socket receive error");
                    return;
                }
            };
            if n == 0 {
                return;
            }
            let now = Instant::now();
            for i in 0..n {
                if self.to_clients.is_full() {
                    self.flush_clients();
                }
                let (payload, peer) = self.recv.get(i);
                let out = self.to_clients.slot().expect("flushed above");
                let Ok(t) = self.relay.relay_peer_datagram(now, relayed, peer, payload, out) else { continue };
                if t.tuple.transport == Transport::Udp {
                    self.to_clients.commit(t.len, t.tuple.client);
                } else {
                    let frame = out[..t.len].to_vec();
                    self.send_stream(&t.tuple, frame);
                }
            }
            self.flush();
            if n < BATCH {
                return; // drained; see read_listener
            }
        }
        self.unfinished.push(Token(slot + FIRST_RELAY));
    }

    /// Commands from other threads; `false` means stop.
    fn read_inbox(&mut self) -> bool {
        loop {
            match self.inbox.try_recv() {
                Ok(Command::StreamOpened { tuple, sender }) => {
                    self.streams.insert(tuple, sender);
                }
                Ok(Command::StreamFrame { tuple, bytes }) => {
                    let now = Instant::now();
                    client_input(&mut self.relay, &mut self.peers, now, tuple, &bytes);
                    self.drain_outputs(now);
                }
                Ok(Command::StreamClosed { tuple }) => {
                    self.streams.remove(&tuple);
                    self.relay.client_disconnected(&tuple);
                }
                Ok(Command::Snapshot { reply, allocations }) => {
                    self.publish_stats();
                    if allocations {
                        self.publish_allocations();
                    }
                    let _ = reply.send(());
                }
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    fn drain_outputs(&mut self, now: Instant) {
        while let Some(output) = self.relay.poll_output() {
            match output {
                Output::Transmit(Transmit::Client { tuple, bytes }) => self.send_client(&tuple, bytes),
                Output::Transmit(Transmit::Peer { relayed, peer, bytes }) => self.peers.send(relayed, &bytes, peer),
                Output::BindRelay(request) => {
                    let result = self.peers.bind(self.poll.registry(), request);
                    self.relay.relay_bound(now, request.allocation, request.addr, result);
                }
                Output::ReleaseRelay(addr) => self.peers.release(self.poll.registry(), addr),
                Output::Event(event) => self.on_event(event),
            }
        }
    }

    fn send_client(&mut self, tuple: &FiveTuple, bytes: Vec<u8>) {
        if tuple.transport == Transport::Udp {
            if self.to_clients.is_full() {
                self.flush_clients();
            }
            if !self.to_clients.push(&bytes, tuple.client) {
                self.stats.send_dropped += 1;
            }
        } else {
            self.send_stream(tuple, bytes);
        }
    }

    fn send_stream(&mut self, tuple: &FiveTuple, frame: Vec<u8>) {
        match self.streams.get(tuple) {
            Some(sender) if sender.try_send(frame).is_ok() => {}
            // Gone, or its writer is that far behind: drop, as UDP would.
            _ => self.stats.stream_dropped += 1,
        }
    }

    fn on_event(&mut self, event: Event) {
        let worker = self.index;
        match event {
            Event::AllocationCreated { id, tuple, username, relayed, lifetime } => {
                tracing::info!(
                    worker,
                    allocation = id.0,
                    transport = transport_name(tuple.transport),
                    client = %tuple.client,
                    username = %username,
                    relayed = ?relayed,
                    lifetime_secs = lifetime.as_secs(),
                    "turn: allocation created"
                );
            }
            Event::AllocationRefreshed { id, lifetime } => {
                let lifetime_secs = lifetime.as_secs();
                tracing::debug!(worker, allocation = id.0, lifetime_secs, "turn: allocation refreshed");
            }
            Event::AllocationExpired { id } => tracing::info!(worker, allocation = id.0, "turn: allocation expired"),
            Event::AllocationDeleted { id } => tracing::info!(worker, allocation = id.0, "turn: allocation deleted"),
            Event::AuthFailed { client, username, reason } => {
                tracing::debug!(worker, %client, username = %username, ?reason, "turn: authentication failed");
            }
            Event::QuotaExceeded { username, quota } => {
                tracing::info!(worker, username = %username, ?quota, "turn: quota reached");
            }
            Event::Dropped { from, reason } => {
                tracing::trace!(worker, %from, reason = reason.name(), "turn: dropped");
            }
        }
    }

    fn flush(&mut self) {
        self.flush_clients();
        self.peers.flush();
    }

    fn flush_clients(&mut self) {
        if !self.to_clients.is_empty() {
            let outcome = self.to_clients.flush(&self.listener);
            self.stats.send_dropped += outcome.dropped as u64;
        }
    }

    fn publish_stats(&mut self) {
        let mut stats = self.stats.clone();
        stats.relay = self.relay.counters().clone();
        stats.truncated = self.recv.truncated();
        stats.send_dropped += self.peers.dropped;
        stats.relay_sockets = self.peers.by_addr.len() as u64;
        stats.stream_clients = self.streams.len() as u64;
        *self.shared.stats[self.index].lock().unwrap_or_else(|p| p.into_inner()) = stats;
    }

    fn publish_allocations(&mut self) {
        let now = Instant::now();
        let views = self
            .relay
            .allocations()
            .map(|a| AllocationView {
                id: format!("{}-{}", self.index, a.id.0),
                transport: transport_name(a.tuple.transport),
                dialect: if a.msturn { "msturn" } else { "standard" },
                client: a.tuple.client,
                server: a.tuple.server,
                username: a.username.to_owned(),
                relayed: a.relayed_v4.into_iter().chain(a.relayed_v6).collect(),
                expires_in_secs: a.expires.saturating_duration_since(now).as_secs(),
                permissions: a.permissions,
                channels: a.channels,
            })
            .collect();
        *self.shared.allocations[self.index].lock().unwrap_or_else(|p| p.into_inner()) = views;
    }

    fn shutdown(&mut self) {
        self.flush();
        self.publish_stats();
        let addrs: Vec<SocketAddr> = self.peers.by_addr.keys().copied().collect();
        for addr in addrs {
            self.peers.release(self.poll.registry(), addr);
        }
        self.shared.allocations[self.index].lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
