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
use vienna_netio::{RecvBatch, SendBatch, UdpOptions, bind_udp, set_dont_fragment};
use vienna_stun::{Kind, classify};
use vienna_turn::{
    AllocationId, BindFailure, BindRequest, ClientDatagram, Event, FiveTuple, Output, Relay, Transmit, Transport,
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
    /// Stop: release every socket and return.
    Shutdown,
}

struct RelaySocket {
    socket: UdpSocket,
    addr: SocketAddr,
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
    relays: Vec<Option<RelaySocket>>,
    free_slots: Vec<usize>,
    relay_by_addr: HashMap<SocketAddr, usize>,
    streams: HashMap<FiveTuple, Sender<Vec<u8>>>,
    recv: RecvBatch,
    to_clients: SendBatch,
    to_peers: SendBatch,
    to_peers_slot: Option<usize>,
    stats: WorkerStats,
    /// Sockets whose read budget ran out: read again before sleeping.
    unfinished: Vec<Token>,
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
            relays: Vec::new(),
            free_slots: Vec::new(),
            relay_by_addr: HashMap::new(),
            streams: HashMap::new(),
            recv: RecvBatch::new(),
            to_clients: SendBatch::new(),
            to_peers: SendBatch::new(),
            to_peers_slot: None,
            stats: WorkerStats::default(),
            unfinished: Vec::new(),
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
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(worker = self.index, error = %e, "turn: poll failed; worker stops");
                    return;
                }
            }
            let mut ready: Vec<Token> = std::mem::take(&mut self.unfinished);
            for event in events.iter() {
                if !ready.contains(&event.token()) {
                    ready.push(event.token());
                }
            }
            for token in ready {
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

    /// Datagrams from UDP clients: ChannelData takes the hot path, the rest goes to the core.
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
                if classify(bytes) == Kind::ChannelData {
                    if let Ok(t) = self.relay.relay_channel_data(now, &tuple, bytes) {
                        let Some(&slot) = self.relay_by_addr.get(&t.relayed) else { continue };
                        queue_to_peer(
                            &mut self.to_peers,
                            &mut self.to_peers_slot,
                            &self.relays,
                            &mut self.stats,
                            slot,
                            &bytes[t.payload],
                            t.peer,
                        );
                    }
                } else {
                    self.relay.handle_client_datagram(
                        now,
                        ClientDatagram { transport: Transport::Udp, client, server: self.listener_addr, bytes },
                    );
                }
            }
            self.drain_outputs(now);
            self.flush();
        }
        self.unfinished.push(LISTENER);
    }

    /// Datagrams from peers on a relayed socket: wrapped by the core straight into the client batch.
    fn read_relay(&mut self, slot: usize) {
        for _ in 0..READ_BUDGET {
            let Some(Some(relay)) = self.relays.get(slot) else { return };
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
                    let datagram = ClientDatagram {
                        transport: tuple.transport,
                        client: tuple.client,
                        server: tuple.server,
                        bytes: &bytes,
                    };
                    if classify(&bytes) == Kind::ChannelData {
                        if let Ok(t) = self.relay.relay_channel_data(now, &tuple, &bytes) {
                            if let Some(&slot) = self.relay_by_addr.get(&t.relayed) {
                                queue_to_peer(
                                    &mut self.to_peers,
                                    &mut self.to_peers_slot,
                                    &self.relays,
                                    &mut self.stats,
                                    slot,
                                    &bytes[t.payload],
                                    t.peer,
                                );
                            }
                        }
                    } else {
                        self.relay.handle_client_datagram(now, datagram);
                    }
                    self.drain_outputs(now);
                }
                Ok(Command::StreamClosed { tuple }) => {
                    self.streams.remove(&tuple);
                    self.relay.client_disconnected(&tuple);
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
                Output::Transmit(Transmit::Peer { relayed, peer, bytes }) => {
                    if let Some(&slot) = self.relay_by_addr.get(&relayed) {
                        queue_to_peer(
                            &mut self.to_peers,
                            &mut self.to_peers_slot,
                            &self.relays,
                            &mut self.stats,
                            slot,
                            &bytes,
                            peer,
                        );
                    }
                }
                Output::BindRelay(request) => {
                    let result = self.bind_relay(request);
                    self.relay.relay_bound(now, request.allocation, request.addr, result);
                }
                Output::ReleaseRelay(addr) => self.release_relay(addr),
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

    fn bind_relay(&mut self, request: BindRequest) -> Result<(), BindFailure> {
        let options = UdpOptions { reuse_port: false, recv_buffer: RELAY_BUFFER, send_buffer: RELAY_BUFFER };
        let socket = match bind_udp(request.addr, options) {
            Ok(socket) => socket,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(BindFailure::AddrInUse),
            Err(e) => {
                tracing::warn!(worker = self.index, address = %request.addr, error = %e, "turn: cannot bind relayed socket");
                return Err(BindFailure::Other);
            }
        };
        if request.dont_fragment {
            if let Err(e) = set_dont_fragment(&socket) {
                tracing::debug!(address = %request.addr, error = %e, "turn: cannot set DONT-FRAGMENT");
            }
        }
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.relays.push(None);
            self.relays.len() - 1
        });
        let mut socket = UdpSocket::from_std(socket);
        if let Err(e) = self.poll.registry().register(&mut socket, Token(slot + FIRST_RELAY), Interest::READABLE) {
            tracing::warn!(worker = self.index, error = %e, "turn: cannot watch relayed socket");
            self.free_slots.push(slot);
            return Err(BindFailure::Other);
        }
        self.relays[slot] = Some(RelaySocket { socket, addr: request.addr });
        self.relay_by_addr.insert(request.addr, slot);
        Ok(())
    }

    fn release_relay(&mut self, addr: SocketAddr) {
        let Some(slot) = self.relay_by_addr.remove(&addr) else { return };
        if self.to_peers_slot == Some(slot) {
            self.flush_peers();
        }
        if let Some(mut relay) = self.relays[slot].take() {
            let _ = self.poll.registry().deregister(&mut relay.socket);
        }
        self.free_slots.push(slot);
    }

    fn on_event(&mut self, event: Event) {
        let key = |id: AllocationId| (self.index, id.0);
        match event {
            Event::AllocationCreated { id, tuple, username, relayed, lifetime } => {
                tracing::info!(
                    worker = self.index,
                    allocation = id.0,
                    transport = ?tuple.transport,
                    client = %tuple.client,
                    username = %username,
                    relayed = ?relayed,
                    lifetime_secs = lifetime.as_secs(),
                    "turn: allocation created"
                );
                let now = unix_now();
                let view = AllocationView {
                    id: format!("{}-{}", self.index, id.0),
                    transport: transport_name(tuple.transport),
                    client: tuple.client,
                    server: tuple.server,
                    username,
                    relayed,
                    created_at: now,
                    expires_at: now + lifetime.as_secs(),
                };
                self.shared.allocations.lock().unwrap_or_else(|p| p.into_inner()).insert(key(id), view);
            }
            Event::AllocationRefreshed { id, lifetime } => {
                if let Some(view) = self.shared.allocations.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&key(id))
                {
                    view.expires_at = unix_now() + lifetime.as_secs();
                }
            }
            Event::AllocationExpired { id } | Event::AllocationDeleted { id } => {
                let gone = self.shared.allocations.lock().unwrap_or_else(|p| p.into_inner()).remove(&key(id));
                if let Some(view) = gone {
                    tracing::info!(worker = self.index, allocation = id.0, client = %view.client, "turn: allocation ended");
                }
            }
            Event::AuthFailed { client, username, reason } => {
                tracing::debug!(worker = self.index, %client, username = %username, ?reason, "turn: authentication failed");
            }
            Event::QuotaExceeded { username, quota } => {
                tracing::info!(worker = self.index, username = %username, ?quota, "turn: quota reached");
            }
            Event::Dropped { from, reason } => {
                tracing::trace!(worker = self.index, %from, reason = reason.name(), "turn: dropped");
            }
        }
    }

    fn flush(&mut self) {
        self.flush_clients();
        self.flush_peers();
    }

    fn flush_clients(&mut self) {
        if !self.to_clients.is_empty() {
            let outcome = self.to_clients.flush(&self.listener);
            self.stats.send_dropped += outcome.dropped as u64;
        }
    }

    fn flush_peers(&mut self) {
        flush_to_peers(&mut self.to_peers, &mut self.to_peers_slot, &self.relays, &mut self.stats);
    }

    fn publish_stats(&mut self) {
        self.stats.relay = self.relay.counters().clone();
        self.stats.truncated = self.recv.truncated();
        self.stats.relay_sockets = self.relay_by_addr.len() as u64;
        self.stats.stream_clients = self.streams.len() as u64;
        *self.shared.stats[self.index].lock().unwrap_or_else(|p| p.into_inner()) = self.stats.clone();
    }

    fn shutdown(&mut self) {
        self.flush();
        self.publish_stats();
        let addrs: Vec<SocketAddr> = self.relay_by_addr.keys().copied().collect();
        for addr in addrs {
            self.release_relay(addr);
        }
        let mut views = self.shared.allocations.lock().unwrap_or_else(|p| p.into_inner());
        views.retain(|(worker, _), _| *worker != self.index);
    }
}

/// Queues a datagram from the relayed socket in `slot` to `peer`. The batch holds one socket's datagrams
/// at a time; a datagram for another socket sends the batch first.
fn queue_to_peer(
    batch: &mut SendBatch,
    batch_slot: &mut Option<usize>,
    relays: &[Option<RelaySocket>],
    stats: &mut WorkerStats,
    slot: usize,
    payload: &[u8],
    peer: SocketAddr,
) {
    if *batch_slot != Some(slot) || batch.is_full() {
        flush_to_peers(batch, batch_slot, relays, stats);
        *batch_slot = Some(slot);
    }
    if !batch.push(payload, peer) {
        stats.send_dropped += 1;
    }
}

fn flush_to_peers(
    batch: &mut SendBatch,
    batch_slot: &mut Option<usize>,
    relays: &[Option<RelaySocket>],
    stats: &mut WorkerStats,
) {
    if batch.is_empty() {
        return;
    }
    match batch_slot.and_then(|s| relays.get(s)).and_then(Option::as_ref) {
        Some(relay) => stats.send_dropped += batch.flush(&relay.socket).dropped as u64,
        None => {
            // The socket is gone; what was queued for it is lost.
            stats.send_dropped += batch.len() as u64;
            batch.clear();
        }
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
