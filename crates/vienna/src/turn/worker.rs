//! One relay worker: a thread with its own `mio` poll, its own share of the UDP listener
//! (`SO_REUSEPORT`), its own relay core, and every relayed socket of the allocations it owns.
//!
//! Nothing here is shared with another worker on the packet path: a datagram is received in a batch
//! (`recvmmsg`), handed to the core, and its forwarded copy queued in a send batch (`sendmmsg`), with no
//! allocation and no lock. The datagrams for clients, all from the worker's share of the listener, leave
//! once per turn of the loop (or when the batch is full), whichever relayed sockets they came in on; those
//! for peers leave one `sendmmsg` per relayed socket. Stream clients (TCP/TLS) are connections in the same
//! poll ([`StreamClients`]): their frames go to the core from the read buffer and what goes back to them is
//! written once per turn. Control-plane figures leave through [`TurnShared`] once a second.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use vienna_netio::{BATCH, RecvBatch, SendBatch, UdpOptions, bind_udp, set_dont_fragment};
use vienna_turn::{
    BindFailure, BindRequest, ClientDatagram, DropReason, Event, FiveTuple, NotForwarded, Output, Relay, Transmit,
    Transport,
};

use super::shared::{AllocationView, TurnShared, WorkerStats};
use super::stream_clients::{ReadOutcome, StreamClients};

const LISTENER: Token = Token(0);
/// Token of the waker (the inbox has something).
pub const WAKER: Token = Token(1);
const FIRST_RELAY: usize = 2;
/// Tokens of stream clients (TURN over TCP/TLS) start here (UDP relayed sockets stay below).
const FIRST_STREAM: usize = 1 << 29;
/// Tokens of TCP relay listeners and connections start here (stream clients stay below).
const FIRST_TCP: usize = 1 << 30;
/// Most peer connections on one relayed TCP address.
const MAX_TCP_PEERS: usize = 64;
/// Bytes queued to one TCP peer before more are dropped.
const MAX_TCP_BACKLOG: usize = 256 << 10;

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
    /// A stream client connected: the worker takes the connection (and runs its TLS handshake).
    StreamAccepted {
        /// The accepted connection.
        stream: std::net::TcpStream,
        /// Its 5-tuple.
        tuple: FiveTuple,
        /// The TLS configuration, for a TLS listener's connection.
        tls: Option<Arc<rustls::ServerConfig>>,
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

/// A relayed TCP address (MS-TURN allocations made over TCP): its listener, or one of its connections
/// to a peer. The connection's bytes are relayed as they are, both ways: the client's DATA is written to
/// it, what it reads goes to the client as DATA (ICE-TCP clients frame their own packets, RFC 4571).
enum TcpEntry {
    Listener { listener: mio::net::TcpListener, addr: SocketAddr, peers: usize },
    Conn(TcpConn),
}

struct TcpConn {
    stream: mio::net::TcpStream,
    relayed: SocketAddr,
    peer: SocketAddr,
    connected: bool,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
}

impl TcpConn {
    /// Writes what is queued; `false` when the connection failed.
    fn flush(&mut self) -> bool {
        use std::io::Write;
        if !self.connected {
            match self.stream.peer_addr() {
                Ok(_) => self.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    return !matches!(self.stream.take_error(), Ok(Some(_)) | Err(_));
                }
                Err(_) => return false,
            }
        }
        while !self.outbuf.is_empty() {
            match self.stream.write(&self.outbuf) {
                Ok(0) => return false,
                Ok(n) => {
                    self.outbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
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
    /// Registers TCP relay sockets.
    registry: mio::Registry,
    /// TCP relay listeners and connections, by token - FIRST_TCP.
    tcp: Vec<Option<TcpEntry>>,
    tcp_free: Vec<usize>,
    /// Listener slot of each relayed TCP address.
    tcp_listeners: HashMap<SocketAddr, usize>,
    /// Connection slot of each (relayed, peer).
    tcp_conns: HashMap<(SocketAddr, SocketAddr), usize>,
    /// Connections holding bytes that wait for a permission.
    tcp_stalled: Vec<usize>,
}

impl PeerSide {
    fn new(registry: mio::Registry) -> Self {
        Self {
            sockets: Vec::new(),
            free: Vec::new(),
            by_addr: HashMap::new(),
            batch: SendBatch::new(),
            batch_slot: None,
            dropped: 0,
            registry,
            tcp: Vec::new(),
            tcp_free: Vec::new(),
            tcp_listeners: HashMap::new(),
            tcp_conns: HashMap::new(),
            tcp_stalled: Vec::new(),
        }
    }

    fn tcp_insert(&mut self, entry: TcpEntry) -> usize {
        let slot = self.tcp_free.pop().unwrap_or_else(|| {
            self.tcp.push(None);
            self.tcp.len() - 1
        });
        self.tcp[slot] = Some(entry);
        slot
    }

    /// A new connection (accepted or opened) on relayed `relayed`; `None` when it cannot be watched.
    fn tcp_add_conn(
        &mut self,
        mut stream: mio::net::TcpStream,
        relayed: SocketAddr,
        peer: SocketAddr,
        connected: bool,
    ) -> Option<usize> {
        let listener = *self.tcp_listeners.get(&relayed)?;
        if let Some(Some(TcpEntry::Listener { peers, .. })) = self.tcp.get_mut(listener) {
            if *peers >= MAX_TCP_PEERS {
                return None;
            }
            *peers += 1;
        }
        let slot = self.tcp_free.last().copied().unwrap_or(self.tcp.len());
        self.registry.register(&mut stream, Token(FIRST_TCP + slot), Interest::READABLE | Interest::WRITABLE).ok()?;
        let _ = stream.set_nodelay(true);
        let conn = TcpConn { stream, relayed, peer, connected, inbuf: Vec::new(), outbuf: Vec::new() };
        let slot = self.tcp_insert(TcpEntry::Conn(conn));
        self.tcp_conns.insert((relayed, peer), slot);
        Some(slot)
    }

    fn tcp_close(&mut self, slot: usize) {
        if let Some(Some(TcpEntry::Conn(mut c))) = self.tcp.get_mut(slot).map(Option::take) {
            let _ = self.registry.deregister(&mut c.stream);
            self.tcp_conns.remove(&(c.relayed, c.peer));
            self.tcp_stalled.retain(|s| *s != slot);
            if let Some(&l) = self.tcp_listeners.get(&c.relayed)
                && let Some(Some(TcpEntry::Listener { peers, .. })) = self.tcp.get_mut(l)
            {
                *peers = peers.saturating_sub(1);
            }
            self.tcp_free.push(slot);
        }
    }

    /// Queues `payload` on the TCP connection from `relayed` to `peer`, opening it if needed.
    fn tcp_send(&mut self, relayed: SocketAddr, payload: &[u8], peer: SocketAddr) {
        let slot = match self.tcp_conns.get(&(relayed, peer)) {
            Some(&slot) => slot,
            None => {
                let opened = vienna_netio::connect_from(relayed, peer)
                    .ok()
                    .and_then(|s| self.tcp_add_conn(mio::net::TcpStream::from_std(s), relayed, peer, false));
                match opened {
                    Some(slot) => slot,
                    None => {
                        self.dropped += 1;
                        return;
                    }
                }
            }
        };
        let Some(Some(TcpEntry::Conn(c))) = self.tcp.get_mut(slot) else { return };
        if c.outbuf.len() + payload.len() > MAX_TCP_BACKLOG {
            self.dropped += 1;
            return;
        }
        c.outbuf.extend_from_slice(payload);
        if !c.flush() {
            self.tcp_close(slot);
        }
    }

    /// Queues `payload` to `peer` from the relayed socket bound on `relayed`.
    fn send(&mut self, relayed: SocketAddr, payload: &[u8], peer: SocketAddr) {
        let Some(&slot) = self.by_addr.get(&relayed) else {
            if self.tcp_listeners.contains_key(&relayed) {
                return self.tcp_send(relayed, payload, peer);
            }
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
        if request.tcp {
            let listener = match vienna_netio::bind_tcp_relay(request.addr) {
                Ok(l) => l,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(BindFailure::AddrInUse),
                Err(e) => {
                    tracing::warn!(address = %request.addr, error = %e, "turn: cannot bind relayed TCP address");
                    return Err(BindFailure::Other);
                }
            };
            let mut listener = mio::net::TcpListener::from_std(listener);
            let slot = self.tcp_free.last().copied().unwrap_or(self.tcp.len());
            if registry.register(&mut listener, Token(FIRST_TCP + slot), Interest::READABLE).is_err() {
                return Err(BindFailure::Other);
            }
            let slot = self.tcp_insert(TcpEntry::Listener { listener, addr: request.addr, peers: 0 });
            self.tcp_listeners.insert(request.addr, slot);
            return Ok(());
        }
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
        if let Some(slot) = self.tcp_listeners.remove(&addr) {
            let conns: Vec<usize> =
                self.tcp_conns.iter().filter(|((relayed, _), _)| *relayed == addr).map(|(_, s)| *s).collect();
            for c in conns {
                self.tcp_close(c);
            }
            if let Some(Some(TcpEntry::Listener { mut listener, .. })) = self.tcp.get_mut(slot).map(Option::take) {
                let _ = registry.deregister(&mut listener);
            }
            self.tcp_free.push(slot);
            return;
        }
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
    streams: StreamClients,
    /// Stream clients whose connection closed this turn (their allocations go).
    streams_closed: Vec<FiveTuple>,
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
        let peers = PeerSide::new(poll.registry().try_clone()?);
        let streams = StreamClients::new(poll.registry().try_clone()?, FIRST_STREAM, shared.clone());
        Ok(Self {
            index,
            relay,
            poll,
            listener,
            listener_addr,
            inbox,
            shared,
            peers,
            streams,
            streams_closed: Vec::new(),
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
                    Token(t) if t >= FIRST_TCP => self.tcp_ready(t - FIRST_TCP),
                    Token(t) if t >= FIRST_STREAM => self.stream_ready(t - FIRST_STREAM),
                    Token(t) => self.read_relay(t - FIRST_RELAY),
                }
            }
            self.ready = ready;
            let now = Instant::now();
            if !self.peers.tcp_stalled.is_empty() {
                for slot in self.peers.tcp_stalled.clone() {
                    self.tcp_deliver(slot, now);
                }
                self.flush();
            }
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
                self.streams.sweep(now, &mut self.streams_closed);
                self.close_streams();
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
                    self.streams.queue(&t.tuple, &out[..t.len]);
                }
            }
            if n < BATCH {
                return; // drained; see read_listener
            }
        }
        self.unfinished.push(Token(slot + FIRST_RELAY));
    }

    /// A TCP relay listener or connection is ready: accept, write what is queued, read whole frames and
    /// hand them to the core as peer datagrams.
    fn tcp_ready(&mut self, slot: usize) {
        use std::io::Read;
        let now = Instant::now();
        if let Some(Some(TcpEntry::Listener { .. })) = self.peers.tcp.get(slot) {
            loop {
                let Some(Some(TcpEntry::Listener { listener, addr, .. })) = self.peers.tcp.get(slot) else { return };
                let relayed = *addr;
                match listener.accept() {
                    Ok((stream, peer)) => {
                        // Over the connection limit: dropped (closed) here.
                        let _ = self.peers.tcp_add_conn(stream, relayed, peer, true);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
        }
        let Some(Some(TcpEntry::Conn(c))) = self.peers.tcp.get_mut(slot) else { return };
        let mut alive = c.flush();
        let mut chunk = [0u8; 4096];
        while alive {
            match c.stream.read(&mut chunk) {
                Ok(0) => alive = false,
                Ok(n) => c.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => alive = false,
            }
        }
        if c.inbuf.len() > MAX_TCP_BACKLOG {
            alive = false;
        }
        self.tcp_deliver(slot, now);
        if !alive {
            self.peers.tcp_close(slot);
        }
        self.flush();
    }

    /// Hands what a TCP peer connection has read to the core (in chunks of at most a DATA attribute). A
    /// peer that speaks before the client's first Send installed its permission is held, not dropped:
    /// ICE-TCP does not retransmit, so its stalled bytes are retried on every turn of the loop.
    fn tcp_deliver(&mut self, slot: usize, now: Instant) {
        const CHUNK: usize = 60_000;
        let Some(Some(TcpEntry::Conn(c))) = self.peers.tcp.get_mut(slot) else { return };
        let (relayed, peer) = (c.relayed, c.peer);
        if !c.inbuf.is_empty() && !self.relay.peer_permitted(now, relayed, peer) {
            if !self.peers.tcp_stalled.contains(&slot) {
                self.peers.tcp_stalled.push(slot);
            }
            return;
        }
        let input = std::mem::take(&mut c.inbuf);
        let mut used = 0;
        let mut stalled = false;
        while used < input.len() {
            let chunk = &input[used..input.len().min(used + CHUNK)];
            let mut out = vec![0u8; chunk.len() + 64];
            match self.relay.relay_peer_datagram(now, relayed, peer, chunk, &mut out) {
                Ok(t) => {
                    out.truncate(t.len);
                    if t.tuple.transport == Transport::Udp {
                        self.send_client(&t.tuple, out);
                    } else {
                        self.streams.queue(&t.tuple, &out);
                    }
                }
                Err(DropReason::NoPermission) => {
                    stalled = true;
                    break;
                }
                Err(_) => {}
            }
            used += chunk.len();
        }
        if let Some(Some(TcpEntry::Conn(c))) = self.peers.tcp.get_mut(slot) {
            let mut rest = input;
            rest.drain(..used);
            rest.extend_from_slice(&c.inbuf);
            c.inbuf = rest;
        }
        if stalled {
            if !self.peers.tcp_stalled.contains(&slot) {
                self.peers.tcp_stalled.push(slot);
            }
        } else {
            self.peers.tcp_stalled.retain(|s| *s != slot);
        }
    }

    /// Commands from other threads; `false` means stop.
    fn read_inbox(&mut self) -> bool {
        loop {
            match self.inbox.try_recv() {
                Ok(Command::StreamAccepted { stream, tuple, tls }) => {
                    if let Err(e) = self.streams.add(stream, tuple, tls, Instant::now()) {
                        self.shared.free_stream_place();
                        tracing::warn!(worker = self.index, client = %tuple.client, error = %e, "turn: cannot take a stream client");
                    }
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
            self.streams.queue(tuple, &bytes);
        }
    }

    /// A stream client's connection is ready: write what waits, read what came.
    fn stream_ready(&mut self, slot: usize) {
        self.streams.flush_one(slot, &mut self.streams_closed);
        let now = Instant::now();
        let (relay, peers) = (&mut self.relay, &mut self.peers);
        let outcome = self.streams.read(slot, now, |tuple, frame| client_input(relay, peers, now, tuple, frame));
        match outcome {
            ReadOutcome::Drained => {}
            ReadOutcome::More => self.unfinished.push(Token(FIRST_STREAM + slot)),
            ReadOutcome::Closed(reason) => self.streams_closed.extend(self.streams.close(slot, reason)),
        }
        // Closed connections' allocations go with the turn's flush.
        self.drain_outputs(now);
    }

    /// Deletes the allocations of stream clients whose connection closed (RFC 8656 §3.1).
    fn close_streams(&mut self) {
        for tuple in std::mem::take(&mut self.streams_closed) {
            self.relay.client_disconnected(&tuple);
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
        self.streams.flush(&mut self.streams_closed);
        if !self.streams_closed.is_empty() {
            self.close_streams();
            // Deleting allocations only releases sockets; nothing of it needs sending.
            self.drain_outputs(Instant::now());
        }
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
        stats.stream_dropped += self.streams.dropped();
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
        self.streams.close_all();
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
