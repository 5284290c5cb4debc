//! One load thread: owns a contiguous range of clients (one UDP socket or one TCP/TLS connection each), drives their TURN
//! control plane (RFC 8656, [`super::client`], or MS-TURN, [`super::msclient`]), paces their data
//! (ChannelData; MS-TURN Send requests or raw data to the active destination), and receives the echoes
//! (ChannelData; Data Indications or raw data) with `recvmmsg` on the sockets epoll reports readable. Over
//! TCP and TLS (RFC 8656 §10.1, standard dialect) the same messages are framed on the stream, ChannelData
//! padded to a multiple of 4 (§12.5). The main thread steers every worker through the run's phases with
//! [`Shared`].

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};
use vienna_netio::{BATCH, RecvBatch, SendBatch};
use vienna_stun::msturn::{self, SendRequest, TransactionId};
use vienna_stun::{ChannelData, Kind, Message, channel_data, classify, frame_len};

use super::client::{Action, CHANNEL, Client, Failure, Phase, Rng, Settings, Step};
use super::msclient::{MsClient, MsSettings};
use crate::framework::series::{BinCounts, Collector, Recorder};
use crate::framework::stream::{Connected, StreamConn};
use crate::pacing::{Pacer, share};
use crate::payload;
use crate::stats::{Arrival, Jitter, SeqTracker, Totals};

/// Run phases, set by the main thread.
pub mod phase {
    /// Allocating.
    pub const SETUP: u8 = 0;
    /// Sending data.
    pub const RUN: u8 = 1;
    /// Holding allocations without data.
    pub const HOLD: u8 = 2;
    /// Deleting allocations.
    pub const TEARDOWN: u8 = 3;
    /// Stop now.
    pub const EXIT: u8 = 4;
}

/// Most packets handed out per wake-up (bounds a catch-up burst after a stall).
const MAX_PER_WAKE: u64 = 4096;
/// How long deletion may take before the worker gives up.
pub const TEARDOWN_LIMIT: Duration = Duration::from_secs(20);
/// Longest sleep, so phase changes are seen quickly.
const MAX_SLEEP: Duration = Duration::from_millis(10);
/// Bytes queued on one stream client's connection before more data packets are dropped (the server or
/// the network does not keep up).
const MAX_STREAM_BACKLOG: usize = 1 << 20;
/// Bytes read from a stream connection at a time.
const STREAM_READ: usize = 64 << 10;

/// A client's way to the server, as the main thread made it.
pub enum ClientSocket {
    /// Its own UDP socket.
    Udp(UdpSocket),
    /// Its own TCP connection (with TLS when the run uses it), connected.
    Stream(Connected),
}

/// A client's way to the server, registered in the worker's poll.
enum ClientIo {
    Udp(mio::net::UdpSocket),
    /// The connection and what was read of a frame not yet whole.
    Stream {
        conn: StreamConn,
        rbuf: Vec<u8>,
    },
}

/// Live counters of one worker, read by the progress line.
#[derive(Debug, Default)]
pub struct Counters {
    /// Clients whose set-up finished (ready or failed).
    pub settled: AtomicU64,
    /// Clients that became ready.
    pub ready: AtomicU64,
    /// Packets sent.
    pub sent: AtomicU64,
    /// Distinct packets received.
    pub received: AtomicU64,
    /// Allocations deleted.
    pub deleted: AtomicU64,
    /// Sending and draining are over.
    pub data_done: AtomicBool,
    /// The worker is about to return.
    pub finished: AtomicBool,
}

/// State shared by the main thread and the workers.
#[derive(Debug)]
pub struct Shared {
    /// Current [`phase`].
    pub phase: AtomicU8,
    /// Clock origin of payload timestamps.
    pub base: Instant,
    /// Data start, nanoseconds after `base`.
    pub start_ns: AtomicU64,
    /// Stop sending now (Ctrl-C); drain and tear down as usual.
    pub cut: AtomicBool,
    /// One per worker.
    pub counters: Vec<Counters>,
    /// Latency per second.
    pub collector: Collector,
}

/// The data part of a run.
#[derive(Debug, Clone, Copy)]
pub struct DataPlan {
    /// Packets per second per client.
    pub rate: f64,
    /// Sending time.
    pub duration: Duration,
    /// Payload bytes (ChannelData adds 4).
    pub size: usize,
    /// How long to wait for echoes after the last send.
    pub drain: Duration,
}

/// Which TURN a run speaks, with its credentials and peer.
#[derive(Debug, Clone)]
pub enum Dialect {
    /// RFC 8656: Allocate, CreatePermission, ChannelBind, ChannelData.
    Standard(Settings),
    /// MS-TURN: Allocate, then Send requests, or Set Active Destination and raw data.
    Ms(MsSettings),
}

/// A client's control plane in the run's dialect.
#[derive(Debug)]
enum Control {
    Std(Client),
    Ms(MsClient),
}

impl Control {
    fn new(d: &Dialect) -> Control {
        match d {
            Dialect::Standard(_) => Control::Std(Client::new()),
            Dialect::Ms(_) => Control::Ms(MsClient::new()),
        }
    }
    fn start(&mut self, now: Instant, d: &Dialect, rng: &mut Rng) -> Action {
        match (self, d) {
            (Control::Std(c), Dialect::Standard(s)) => c.start(now, s, rng),
            (Control::Ms(c), Dialect::Ms(s)) => c.start(now, s, rng),
            _ => Action::Nothing,
        }
    }
    fn delete(&mut self, now: Instant, d: &Dialect, rng: &mut Rng) -> Action {
        match (self, d) {
            (Control::Std(c), Dialect::Standard(s)) => c.delete(now, s, rng),
            (Control::Ms(c), Dialect::Ms(s)) => c.delete(now, s, rng),
            _ => Action::Nothing,
        }
    }
    fn handle_timeout(&mut self, now: Instant, d: &Dialect, rng: &mut Rng) -> Action {
        match (self, d) {
            (Control::Std(c), Dialect::Standard(s)) => c.handle_timeout(now, s, rng),
            (Control::Ms(c), Dialect::Ms(s)) => c.handle_timeout(now, s, rng),
            _ => Action::Nothing,
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Control::Std(c) => c.poll_timeout(),
            Control::Ms(c) => c.poll_timeout(),
        }
    }
    fn outgoing(&self) -> &[u8] {
        match self {
            Control::Std(c) => c.outgoing(),
            Control::Ms(c) => c.outgoing(),
        }
    }
    fn phase(&self) -> Phase {
        match self {
            Control::Std(c) => c.phase(),
            Control::Ms(c) => c.phase(),
        }
    }
    fn failure(&self) -> Option<Failure> {
        match self {
            Control::Std(c) => c.failure(),
            Control::Ms(c) => c.failure(),
        }
    }
    fn relayed(&self) -> Option<SocketAddr> {
        match self {
            Control::Std(c) => c.relayed(),
            Control::Ms(c) => c.relayed(),
        }
    }
    fn refresh_failures(&self) -> u32 {
        match self {
            Control::Std(c) => c.refresh_failures(),
            Control::Ms(c) => c.refresh_failures(),
        }
    }
}

/// What every worker is told.
#[derive(Debug)]
pub struct Config {
    /// Dialect, credentials and peer.
    pub dialect: Dialect,
    /// The TURN server.
    pub server: SocketAddr,
    /// `None`: hold mode.
    pub data: Option<DataPlan>,
    /// Most set-ups in flight per worker.
    pub setup_window: usize,
}

/// What a worker measured.
#[derive(Debug)]
pub struct Outcome {
    /// Packet totals.
    pub totals: Totals,
    /// Round-trip times in microseconds.
    pub latency: Histogram<u64>,
    /// Clients that became ready.
    pub ready: u64,
    /// Set-up failures by "step code" (`code` is a number or `timeout`); unfinished set-ups as
    /// `unfinished`.
    pub failures: BTreeMap<(String, String), u64>,
    /// Allocations deleted / not deleted.
    pub deleted: u64,
    /// Deletions that failed or were not answered.
    pub delete_failed: u64,
    /// Failed deletions by error code, `timeout` or `unfinished`.
    pub delete_failures: BTreeMap<String, u64>,
    /// Refreshes that failed during the run.
    pub refresh_failures: u64,
    /// Scheduled packets skipped because their client was not ready.
    pub skipped: u64,
    /// First and last data send, nanoseconds after the clock origin.
    pub send_window: Option<(u64, u64)>,
    /// Receive errors other than "nothing to read".
    pub recv_errors: u64,
    /// Final RFC 3550 jitter of every client that received at least two packets, nanoseconds.
    pub jitter_ns: Vec<f64>,
    /// Packets sent and echoed per second of sending time.
    pub bins: Vec<BinCounts>,
}

struct Slot {
    io: ClientIo,
    client: Control,
    settled: bool,
    was_ready: bool,
    setup_failure: Option<(String, String)>,
    deleted: bool,
    last_phase: Phase,
    tracker: SeqTracker,
    jitter: Jitter,
    sent: u64,
    next_seq: u64,
}

enum Local {
    Setup,
    Run { pacer: Pacer, start: Instant, drain_until: Option<Instant> },
    Wait,
    Teardown { until: Instant },
}

struct Worker {
    index: usize,
    first_client: u32,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    rng: Rng,
    registry: mio::Registry,
    send: SendBatch,
    recorder: Recorder,
    started: usize,
    settled: usize,
    ready_now: usize,
    next_timer: Option<Instant>,
    total_sent: u64,
    total_unique: u64,
    deleted: u64,
    send_dropped: u64,
    foreign: u64,
    skipped: u64,
    recv_errors: u64,
    first_send: Option<u64>,
    last_send: Option<u64>,
    /// A payload being framed (MS-TURN Send requests copy it into the request).
    scratch: Vec<u8>,
    /// What a stream connection read last (plaintext).
    stream_read: Vec<u8>,
}

/// Runs one worker over `sockets` (clients `first_client..`) until the main thread says stop or
/// its teardown is over.
pub fn run(
    index: usize,
    sockets: Vec<ClientSocket>,
    first_client: u32,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
) -> std::io::Result<Outcome> {
    let mut poll = Poll::new()?;
    let mut slots = Vec::with_capacity(sockets.len());
    for (i, s) in sockets.into_iter().enumerate() {
        let io = match s {
            ClientSocket::Udp(s) => {
                let mut sock = mio::net::UdpSocket::from_std(s);
                poll.registry().register(&mut sock, Token(i), Interest::READABLE)?;
                ClientIo::Udp(sock)
            }
            ClientSocket::Stream(c) => {
                ClientIo::Stream { conn: c.register(poll.registry(), Token(i))?, rbuf: Vec::new() }
            }
        };
        slots.push(Slot {
            io,
            client: Control::new(&cfg.dialect),
            settled: false,
            was_ready: false,
            setup_failure: None,
            deleted: false,
            last_phase: Phase::Idle,
            tracker: SeqTracker::default(),
            jitter: Jitter::default(),
            sent: 0,
            next_seq: 0,
        });
    }
    let seed = shared.base.elapsed().as_nanos() as u64 ^ (u64::from(std::process::id()) << 32) ^ (index as u64 + 1);
    let mut w = Worker {
        index,
        first_client,
        cfg,
        shared,
        slots,
        rng: Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        registry: poll.registry().try_clone()?,
        send: SendBatch::new(),
        recorder: Recorder::new(),
        started: 0,
        settled: 0,
        ready_now: 0,
        next_timer: None,
        total_sent: 0,
        total_unique: 0,
        deleted: 0,
        send_dropped: 0,
        foreign: 0,
        skipped: 0,
        recv_errors: 0,
        first_send: None,
        last_send: None,
        scratch: Vec::new(),
        stream_read: Vec::new(),
    };
    w.main_loop(&mut poll)?;
    Ok(w.outcome())
}

impl Worker {
    fn counters(&self) -> &Counters {
        &self.shared.counters[self.index]
    }

    fn main_loop(&mut self, poll: &mut Poll) -> std::io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut recv = RecvBatch::new();
        let mut local = Local::Setup;
        loop {
            let now = Instant::now();
            let global = self.shared.phase.load(Relaxed);
            if global == phase::EXIT {
                return Ok(());
            }
            if global == phase::TEARDOWN && !matches!(local, Local::Teardown { .. }) {
                self.begin_teardown(now);
                local = Local::Teardown { until: now + TEARDOWN_LIMIT };
            }
            let mut wake = now + MAX_SLEEP;
            match &mut local {
                Local::Setup => {
                    self.start_clients(now);
                    if global == phase::RUN
                        && let Some(plan) = self.cfg.data
                    {
                        let start = self.shared.base + Duration::from_nanos(self.shared.start_ns.load(Relaxed));
                        let rate = plan.rate * self.slots.len() as f64;
                        self.recorder.start(start);
                        local = Local::Run { pacer: Pacer::new(rate, plan.duration), start, drain_until: None };
                        continue;
                    } else if global == phase::HOLD || global == phase::RUN {
                        local = Local::Wait;
                    }
                }
                Local::Run { pacer, start, drain_until } => {
                    let plan = self.cfg.data.expect("run phase has a data plan");
                    if drain_until.is_none() {
                        if now >= *start {
                            let elapsed = now - *start;
                            let range = pacer.due(elapsed, MAX_PER_WAKE);
                            if !range.is_empty() {
                                self.send_data(range, now);
                            }
                            if pacer.done() || elapsed >= plan.duration || self.shared.cut.load(Relaxed) {
                                *drain_until = Some(now + plan.drain);
                            }
                        }
                        if let Some(next) = pacer.next_due() {
                            wake = wake.min(*start + next);
                        }
                    }
                    if let Some(until) = *drain_until {
                        if now >= until || self.total_unique >= self.total_sent {
                            self.counters().data_done.store(true, Relaxed);
                            local = Local::Wait;
                        } else {
                            wake = wake.min(until);
                        }
                    }
                }
                Local::Wait => {}
                Local::Teardown { until } => {
                    let all_done = self
                        .slots
                        .iter()
                        .all(|s| matches!(s.client.phase(), Phase::Deleted | Phase::Failed | Phase::Idle));
                    if all_done || now >= *until {
                        self.publish();
                        self.counters().finished.store(true, Relaxed);
                        return Ok(());
                    }
                }
            }
            if let Some(t) = self.next_timer {
                if t <= now {
                    self.run_timers(now);
                }
                if let Some(t) = self.next_timer {
                    wake = wake.min(t);
                }
            }
            self.recorder.tick(&self.shared.collector, now);
            self.publish();
            let timeout = wake.saturating_duration_since(Instant::now());
            if let Err(e) = poll.poll(&mut events, Some(timeout))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                return Err(e);
            }
            let now = Instant::now();
            for ev in events.iter() {
                let i = ev.token().0;
                if ev.is_writable()
                    && let Some(ClientIo::Stream { conn, .. }) = self.slots.get_mut(i).map(|s| &mut s.io)
                {
                    conn.flush(&self.registry);
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.drain_socket(&mut recv, i, now);
                }
            }
        }
    }

    fn publish(&self) {
        let c = self.counters();
        c.settled.store(self.settled as u64, Relaxed);
        c.ready.store(self.ready_now as u64, Relaxed);
        c.sent.store(self.total_sent, Relaxed);
        c.received.store(self.total_unique, Relaxed);
        c.deleted.store(self.deleted, Relaxed);
    }

    fn note_timer(&mut self, i: usize) {
        if let Some(t) = self.slots[i].client.poll_timeout() {
            self.next_timer = Some(self.next_timer.map_or(t, |n| n.min(t)));
        }
    }

    /// Sends the pending request of client `i` if `action` says so, then books its phase change.
    fn after(&mut self, i: usize, action: Action) {
        let slot = &mut self.slots[i];
        if action == Action::Send {
            // A lost request is retransmitted on the timer; errors are treated like losses.
            match &mut slot.io {
                ClientIo::Udp(sock) => {
                    let _ = sock.send_to(slot.client.outgoing(), self.cfg.server);
                }
                ClientIo::Stream { conn, .. } => {
                    conn.wbuf.extend_from_slice(slot.client.outgoing());
                    conn.flush(&self.registry);
                }
            }
        }
        let phase = slot.client.phase();
        if !slot.settled && matches!(phase, Phase::Ready | Phase::Failed) {
            slot.settled = true;
            self.settled += 1;
            if phase == Phase::Ready {
                slot.was_ready = true;
            } else if let Some(f) = slot.client.failure() {
                let code = f.code.map_or_else(|| "timeout".to_owned(), |c| c.to_string());
                slot.setup_failure = Some((f.step.name().to_owned(), code));
            }
        }
        if phase == Phase::Deleted && slot.client.relayed().is_some() && !slot.deleted {
            slot.deleted = true;
            self.deleted += 1;
        }
        if phase != slot.last_phase {
            if phase == Phase::Ready {
                self.ready_now += 1;
            } else if slot.last_phase == Phase::Ready {
                self.ready_now -= 1;
            }
            slot.last_phase = phase;
        }
        self.note_timer(i);
    }

    fn start_clients(&mut self, now: Instant) {
        while self.started < self.slots.len() && self.started - self.settled < self.cfg.setup_window {
            let i = self.started;
            self.started += 1;
            let action = self.slots[i].client.start(now, &self.cfg.dialect, &mut self.rng);
            self.after(i, action);
        }
    }

    fn begin_teardown(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            let action = self.slots[i].client.delete(now, &self.cfg.dialect, &mut self.rng);
            self.after(i, action);
        }
    }

    fn run_timers(&mut self, now: Instant) {
        self.next_timer = None;
        for i in 0..self.slots.len() {
            let c = &mut self.slots[i].client;
            if c.poll_timeout().is_some_and(|t| t <= now) {
                let action = c.handle_timeout(now, &self.cfg.dialect, &mut self.rng);
                self.after(i, action);
            } else {
                self.note_timer(i);
            }
        }
    }

    fn send_data(&mut self, range: std::ops::Range<u64>, now: Instant) {
        let Some(plan) = self.cfg.data else { return };
        let n = self.slots.len() as u64;
        let first = range.start % n;
        let now_ns = now.duration_since(self.shared.base).as_nanos() as u64;
        for j in 0..(range.end - range.start).min(n) {
            let c = ((first + j) % n) as usize;
            let count = share(&range, n, c as u64);
            if self.slots[c].client.phase() != Phase::Ready {
                self.skipped += count;
                continue;
            }
            if matches!(self.slots[c].io, ClientIo::Stream { .. }) {
                self.send_stream_data(c, count, plan.size, now_ns);
                continue;
            }
            for _ in 0..count {
                if self.send.is_full() {
                    self.flush_udp(c);
                }
                let header = payload::Header {
                    client: self.first_client + c as u32,
                    seq: self.slots[c].next_seq,
                    sent_ns: now_ns,
                };
                if !self.frame(c, &header, plan.size) {
                    break;
                }
                self.slots[c].next_seq += 1;
            }
            self.flush_udp(c);
        }
        let total: u64 = self.slots.iter().map(|s| s.sent).sum();
        self.recorder.offered(now, total - self.total_sent);
        self.total_sent = total;
        self.first_send.get_or_insert(now_ns);
        self.last_send = Some(now_ns);
    }

    /// Sends the send batch from client `c`'s UDP socket.
    fn flush_udp(&mut self, c: usize) {
        let slot = &mut self.slots[c];
        let ClientIo::Udp(sock) = &slot.io else { return };
        let o = self.send.flush(sock);
        slot.sent += o.sent as u64;
        self.send_dropped += o.dropped as u64;
    }

    /// Queues `count` ChannelData packets of stream client `c` on its connection (padded to 4 bytes)
    /// and writes what the connection takes now.
    fn send_stream_data(&mut self, c: usize, count: u64, size: usize, now_ns: u64) {
        let first_client = self.first_client;
        let slot = &mut self.slots[c];
        let ClientIo::Stream { conn, .. } = &mut slot.io else { return };
        let frame = channel_data::encoded_len(size, true);
        for _ in 0..count {
            if conn.is_closed() || conn.wbuf.len() + frame > MAX_STREAM_BACKLOG {
                self.send_dropped += 1;
                continue;
            }
            let header = payload::Header { client: first_client + c as u32, seq: slot.next_seq, sent_ns: now_ns };
            let start = conn.wbuf.len();
            conn.wbuf.resize(start + frame, 0);
            if !write_channel_data(&mut conn.wbuf[start..], &header, size) {
                conn.wbuf.truncate(start);
                self.send_dropped += 1;
                continue;
            }
            slot.next_seq += 1;
            slot.sent += 1;
        }
        conn.flush(&self.registry);
    }

    /// Writes one data packet of client `c` carrying `header` (payload of `size` bytes) into the send
    /// batch: a ChannelData frame, an MS-TURN Send request, or the raw payload for the active
    /// destination. `false` if it could not be written.
    fn frame(&mut self, c: usize, header: &payload::Header, size: usize) -> bool {
        let server = self.cfg.server;
        match &self.cfg.dialect {
            Dialect::Standard(_) => {
                let Some(buf) = self.send.slot() else { return false };
                // The CLI bounds the size, so the header and payload fit the slot.
                if !write_channel_data(buf, header, size) {
                    return false;
                }
                self.send.commit(channel_data::HEADER_LEN + size, server);
            }
            Dialect::Ms(s) if s.active_destination => {
                let Some(buf) = self.send.slot() else { return false };
                payload::write(&mut buf[..size], header);
                self.send.commit(size, server);
            }
            Dialect::Ms(s) => {
                let Control::Ms(client) = &mut self.slots[c].client else { return false };
                let Some(k) = client.send_key(s) else { return false };
                self.scratch.resize(size, 0);
                payload::write(&mut self.scratch, header);
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&self.rng.next_u64().to_be_bytes());
                id[8..].copy_from_slice(&self.rng.next_u64().to_be_bytes());
                let r = SendRequest {
                    txid: TransactionId(id),
                    username: &s.username,
                    destination: s.peer,
                    sequence: k.sequence,
                    realm: None,
                    hash: k.hash,
                    key: k.key(),
                    padded: false,
                };
                let Some(buf) = self.send.slot() else { return false };
                let Ok(len) = msturn::write_send_request(&r, &self.scratch, buf) else { return false };
                self.send.commit(len, server);
            }
        }
        true
    }

    fn drain_socket(&mut self, recv: &mut RecvBatch, i: usize, now: Instant) {
        let now_ns = now.duration_since(self.shared.base).as_nanos() as u64;
        match self.slots.get(i).map(|s| &s.io) {
            Some(ClientIo::Udp(_)) => {}
            Some(ClientIo::Stream { .. }) => return self.drain_stream(i, now, now_ns),
            None => return,
        }
        loop {
            let ClientIo::Udp(sock) = &self.slots[i].io else { return };
            let n = match recv.recv(sock) {
                Ok(n) => n,
                Err(_) => {
                    self.recv_errors += 1;
                    return;
                }
            };
            for k in 0..n {
                let (bytes, from) = recv.get(k);
                if from != self.cfg.server {
                    self.foreign += 1;
                    continue;
                }
                self.on_packet(i, bytes, now, now_ns);
            }
            if n < BATCH {
                return;
            }
        }
    }

    /// Reads what stream client `i`'s connection has and hands every whole frame to [`Self::on_packet`].
    fn drain_stream(&mut self, i: usize, now: Instant, now_ns: u64) {
        let mut chunk = std::mem::take(&mut self.stream_read);
        chunk.resize(STREAM_READ, 0);
        let ClientIo::Stream { conn, rbuf } = &mut self.slots[i].io else { return };
        let mut frames = std::mem::take(rbuf);
        let mut lost = false;
        loop {
            match conn.read_plain(&mut chunk) {
                Ok(0) => {
                    lost = true;
                    break;
                }
                Ok(n) => frames.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    lost = true;
                    break;
                }
            }
        }
        let mut at = 0;
        loop {
            match frame_len(&frames[at..]) {
                Ok(Some(len)) if frames.len() - at >= len => {
                    self.on_packet(i, &frames[at..at + len], now, now_ns);
                    at += len;
                }
                Ok(_) => break,
                Err(_) => {
                    // Out of step with the server: nothing more on this connection can be trusted.
                    self.foreign += 1;
                    lost = true;
                    at = frames.len();
                    break;
                }
            }
        }
        frames.drain(..at);
        let ClientIo::Stream { conn, rbuf } = &mut self.slots[i].io else { return };
        *rbuf = frames;
        if lost && !conn.is_closed() {
            self.recv_errors += 1;
            conn.close(&self.registry);
        } else {
            // rustls may have something to say back (a key update, an alert).
            conn.flush(&self.registry);
        }
        self.stream_read = chunk;
    }

    /// One datagram or stream frame from the server for client `i`.
    fn on_packet(&mut self, i: usize, bytes: &[u8], now: Instant, now_ns: u64) {
        match &self.cfg.dialect {
            Dialect::Standard(settings) => match classify(bytes) {
                Kind::ChannelData => {
                    let data = ChannelData::parse(bytes).ok().filter(|cd| cd.channel == CHANNEL).map(|cd| cd.data);
                    let header = data.and_then(payload::read);
                    self.on_data(i, header, now, now_ns);
                }
                Kind::Stun => {
                    let Ok(msg) = Message::decode(bytes) else {
                        self.foreign += 1;
                        return;
                    };
                    let Control::Std(c) = &mut self.slots[i].client else { return };
                    let action = c.handle_response(now, &msg, settings, &mut self.rng);
                    self.after(i, action);
                }
                Kind::Other => self.foreign += 1,
            },
            Dialect::Ms(settings) => {
                if !msturn::is_msturn(bytes) {
                    // Raw data from the active destination.
                    let header = settings.active_destination.then_some(bytes).and_then(payload::read);
                    self.on_data(i, header, now, now_ns);
                    return;
                }
                let Ok(msg) = msturn::Message::decode(bytes) else {
                    self.foreign += 1;
                    return;
                };
                if msg.msg_type() == msturn::types::DATA_INDICATION {
                    let header = msg.get(msturn::attr::DATA).and_then(payload::read);
                    self.on_data(i, header, now, now_ns);
                    return;
                }
                let Control::Ms(c) = &mut self.slots[i].client else { return };
                let action = c.handle_response(now, &msg, settings, &mut self.rng);
                self.after(i, action);
            }
        }
    }

    /// Books an echoed data packet of client `i` (`None`: not a payload of this run).
    fn on_data(&mut self, i: usize, header: Option<payload::Header>, now: Instant, now_ns: u64) {
        let slot = &mut self.slots[i];
        let client = self.first_client + i as u32;
        let Some(h) = header.filter(|h| h.client == client && h.seq < slot.next_seq) else {
            self.foreign += 1;
            return;
        };
        if slot.tracker.record(h.seq) != Arrival::Duplicate {
            slot.jitter.record(h.sent_ns, now_ns);
            self.total_unique += 1;
            let us = now_ns.saturating_sub(h.sent_ns) / 1000;
            self.recorder.latency(&self.shared.collector, now, us);
            let start_ns = self.shared.start_ns.load(Relaxed);
            self.recorder.ok_in_bin((h.sent_ns.saturating_sub(start_ns) / 1_000_000_000) as usize);
        }
    }

    fn outcome(mut self) -> Outcome {
        self.recorder.flush(&self.shared.collector);
        let bins = self.recorder.take_bins();
        let mut totals = Totals { send_dropped: self.send_dropped, foreign: self.foreign, ..Totals::default() };
        let mut failures = BTreeMap::new();
        let mut delete_failures = BTreeMap::new();
        let (mut ready, mut delete_failed, mut refresh_failures) = (0, 0, 0);
        for s in &self.slots {
            totals.add_stream(s.sent, &s.tracker);
            refresh_failures += u64::from(s.client.refresh_failures());
            if s.was_ready {
                ready += 1;
            } else {
                let key = s.setup_failure.clone().unwrap_or_else(|| ("setup".to_owned(), "unfinished".to_owned()));
                *failures.entry(key).or_insert(0) += 1;
            }
            if s.client.relayed().is_some() && s.client.phase() != Phase::Deleted {
                delete_failed += 1;
                let code = match s.client.failure() {
                    Some(f) if f.step == Step::Delete => f.code.map_or_else(|| "timeout".to_owned(), |c| c.to_string()),
                    _ => "unfinished".to_owned(),
                };
                *delete_failures.entry(code).or_insert(0) += 1;
            }
        }
        Outcome {
            totals,
            latency: self.recorder.total,
            ready,
            failures,
            deleted: self.deleted,
            delete_failed,
            delete_failures,
            refresh_failures,
            skipped: self.skipped,
            send_window: self.first_send.zip(self.last_send),
            recv_errors: self.recv_errors,
            jitter_ns: self.slots.iter().filter(|s| s.jitter.samples >= 2).map(|s| s.jitter.jitter_ns).collect(),
            bins,
        }
    }
}

/// Writes a ChannelData frame on the run's channel carrying `header` in a `size`-byte payload at the start
/// of `buf`; `false` if it does not fit.
fn write_channel_data(buf: &mut [u8], header: &payload::Header, size: usize) -> bool {
    let len = channel_data::HEADER_LEN + size;
    if buf.len() < len || channel_data::write_header(CHANNEL, size, buf).is_err() {
        return false;
    }
    payload::write(&mut buf[channel_data::HEADER_LEN..len], header);
    true
}
