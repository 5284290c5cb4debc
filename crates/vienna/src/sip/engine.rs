//! The SIP core thread: owns the signaling core and the UDP socket, takes stream messages from the
//! connection tasks, writes binding changes to the store before the answers that depend on them, and
//! sends the core's output.
//!
//! Group commit: every message that arrived together (up to [`BATCH`]) is handled, then all binding
//! changes they caused are written in one store transaction, then the answers go out. Under load one
//! fsync covers many REGISTERs; idle, a REGISTER waits for exactly one. With write-back
//! (`sip.bindings_write_back_ms`), binding changes go to the writer thread instead and the answers go
//! out at once (watcher and conference writes stay before their answers).
//!
//! UDP is read with `recvmmsg` (up to [`vienna_netio::BATCH`] datagrams a call) and the datagrams of a
//! flush are sent with `sendmmsg`, in the order the core produced them.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use vienna_netio::{RecvBatch, send_many};
use vienna_signaling::conference::ConferenceOutput;
use vienna_signaling::{Core, Output};
use vienna_sip::transaction::{Peer, Transmit};
use vienna_sip::{Message, ParseError, Transport};
use vienna_store::{Aor, BindingChange, Store, Watcher};

use super::conference::{ConferenceShared, FromMcu, McuLink};
use super::directory::StoreDirectory;
use super::shared::{DriverCounters, SipShared, SipStats};
use super::stream::{self, StreamContext};
use super::writeback::{WriteBack, WriteBackCounters};
use crate::net::stop_requested;

/// Most messages handled before their outputs are flushed.
pub const BATCH: usize = 256;
/// Largest UDP datagram read (the largest UDP payload).
const MAX_DATAGRAM: usize = 65_535;
/// How often the core's Unix clock is re-anchored.
const CLOCK_EVERY: Duration = Duration::from_secs(60);
/// During a long burst of sends (a presence fan-out), the socket is read every this many datagrams sent, so
/// the answers coming back wait in memory rather than overflow the kernel's receive buffer.
const READ_EVERY_SENDS: u32 = 128;
/// Most datagrams held that way.
const STASH_MAX: usize = 200_000;
/// How often the presentity list the admin API shows is refreshed.
const VIEWS_EVERY: Duration = Duration::from_secs(1);
/// Most presentities the admin API lists.
const MAX_VIEWS: usize = 1000;

/// What the connection tasks tell the core thread.
#[derive(Debug)]
pub enum Inbound {
    /// A connection is up; `writer` takes the bytes to send on it.
    Opened {
        /// The remote end.
        peer: Peer,
        /// Its write queue.
        writer: mpsc::Sender<Vec<u8>>,
    },
    /// A framed message.
    Message {
        /// From.
        peer: Peer,
        /// The message.
        message: Message,
    },
    /// A frame that did not parse (answered 400 when it was a request).
    Invalid {
        /// From.
        peer: Peer,
        /// The frame.
        bytes: Vec<u8>,
        /// Why.
        error: ParseError,
    },
    /// The connection closed.
    Closed {
        /// The remote end.
        peer: Peer,
    },
    /// An outbound connection could not be opened.
    ConnectFailed {
        /// Where to.
        peer: Peer,
    },
}

/// One wake-up's worth of work.
enum Wake {
    Stop,
    Readable,
    Inbound(Inbound),
    Mcu(FromMcu),
    Timer,
}

/// The core thread's state.
pub struct Engine {
    core: Core<StoreDirectory>,
    udp: UdpSocket,
    inbox: mpsc::Receiver<Inbound>,
    /// Open connections by remote end.
    connections: HashMap<Peer, mpsc::Sender<Vec<u8>>>,
    /// Bytes waiting for an outbound connection being opened.
    connecting: HashMap<Peer, Vec<Vec<u8>>>,
    store: Arc<dyn Store>,
    shared: Arc<SipShared>,
    /// For outbound connections, spawned on the main runtime.
    streams: StreamContext,
    runtime: tokio::runtime::Handle,
    counters: DriverCounters,
    /// Datagrams of one `recvmmsg` call.
    recv: RecvBatch,
    /// UDP datagrams waiting for one `sendmmsg` call.
    udp_out: Vec<Transmit>,
    next_views: Instant,
    /// Datagrams read while sending, handled before new ones.
    stash: std::collections::VecDeque<(Vec<u8>, SocketAddr)>,
    sends_since_read: u32,
    /// The conference focus's link to the MCU and what it publishes (see [`Engine::with_conferences`]).
    mcu: Option<McuLink>,
    conferences: Option<Arc<ConferenceShared>>,
    /// Write-back of registrations (see [`Engine::with_write_back`]) and its counters.
    write_back: Option<WriteBack>,
    write_back_counters: Option<Arc<WriteBackCounters>>,
}

/// The next answer or event from the MCU; never, without a link.
async fn from_mcu(link: &mut Option<McuLink>) -> Option<FromMcu> {
    match link {
        Some(l) => l.rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Engine {
    /// Assembles the engine; `udp` is a bound non-blocking socket, converted on the core thread.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        core: Core<StoreDirectory>,
        udp: std::net::UdpSocket,
        inbox: mpsc::Receiver<Inbound>,
        store: Arc<dyn Store>,
        shared: Arc<SipShared>,
        streams: StreamContext,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<Self> {
        Ok(Engine {
            core,
            udp: UdpSocket::from_std(udp)?,
            inbox,
            connections: HashMap::new(),
            connecting: HashMap::new(),
            store,
            shared,
            streams,
            runtime,
            counters: DriverCounters::default(),
            recv: RecvBatch::with_max_datagram(MAX_DATAGRAM),
            udp_out: Vec::with_capacity(vienna_netio::BATCH),
            next_views: Instant::now(),
            stash: std::collections::VecDeque::new(),
            sends_since_read: 0,
            mcu: None,
            conferences: None,
            write_back: None,
            write_back_counters: None,
        })
    }

    /// Drives the conference focus too: MCU requests go through `link`, views and counters to `shared`.
    pub fn with_conferences(mut self, link: McuLink, shared: Arc<ConferenceShared>) -> Self {
        self.mcu = Some(link);
        self.conferences = Some(shared);
        self
    }

    /// Hands binding changes to `write_back`'s thread instead of writing them before the answers
    /// (`sip.bindings_write_back_ms`); `None` keeps them durable before the answers.
    pub fn with_write_back(mut self, write_back: Option<WriteBack>) -> Self {
        self.write_back_counters = write_back.as_ref().map(|w| w.counters.clone());
        self.write_back = write_back;
        self
    }

    /// Runs until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut next_clock = Instant::now() + CLOCK_EVERY;
        loop {
            let deadline = self.core.poll_timeout().unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            let wake = if !self.stash.is_empty() {
                Wake::Timer
            } else {
                tokio::select! {
                biased;
                () = stop_requested(&mut stop) => Wake::Stop,
                r = self.udp.readable() => match r {
                    Ok(()) => Wake::Readable,
                    Err(e) => {
                        tracing::trace!(error = %e, "sip: udp readiness error");
                        Wake::Timer
                    }
                },
                Some(m) = self.inbox.recv() => Wake::Inbound(m),
                Some(m) = from_mcu(&mut self.mcu) => Wake::Mcu(m),
                () = tokio::time::sleep_until(deadline.into()) => Wake::Timer,
                }
            };
            let now = Instant::now();
            match wake {
                Wake::Stop => break,
                Wake::Readable => self.read_udp(now, BATCH),
                Wake::Inbound(m) => self.on_inbound(now, m),
                Wake::Mcu(FromMcu::Answer(token, result)) => self.core.media_answer(now, token, result),
                Wake::Mcu(FromMcu::Event(event)) => self.core.media_event(now, event),
                Wake::Timer => {}
            }
            // Datagrams read during the last burst of sends first, all of them before timers run: a fan-out
            // of thousands of NOTIFYs can take longer than T1, and their 200s are in the stash, not late.
            while let Some((bytes, from)) = self.stash.pop_front() {
                self.on_bytes(now, &bytes, from);
            }
            // Then whatever else is ready, from both sources, so a flood on one does not starve the other.
            self.read_udp(now, BATCH);
            for _ in 1..BATCH {
                let Ok(m) = self.inbox.try_recv() else { break };
                self.on_inbound(now, m);
            }
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                // Answers already here are handled before the timers that would retransmit for them.
                self.read_into_stash();
                while let Some((bytes, from)) = self.stash.pop_front() {
                    self.on_bytes(now, &bytes, from);
                }
                self.core.handle_timeout(now);
            }
            self.flush(now);
            if now >= next_clock {
                next_clock = now + CLOCK_EVERY;
                self.core.set_unix_time(now, unix_now());
            }
            self.publish();
        }
        // Graceful stop: tell every watcher its subscription ends (reason=deactivated: subscribe again).
        let now = Instant::now();
        self.core.shutdown(now);
        self.flush(now);
        // The binding writer writes what it still holds before the thread ends.
        if let Some(write_back) = self.write_back.take() {
            write_back.finish();
        }
        self.publish();
    }

    /// One `recvmmsg` call (through tokio, so an empty socket clears its readiness): how many datagrams
    /// are in `self.recv`, or `None` when the socket is empty.
    fn recv_batch(&mut self) -> Option<usize> {
        let recv = &mut self.recv;
        match self.udp.try_io(Interest::READABLE, || recv.try_recv(&self.udp)) {
            Ok(n) => Some(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => None,
            // ICMP port unreachable from an earlier send shows up here on Linux; nothing to do.
            Err(e) => {
                tracing::trace!(error = %e, "sip: udp receive error");
                Some(0)
            }
        }
    }

    /// Hands the core what the UDP socket holds, in batches, until it is empty or about `max` datagrams
    /// were read.
    fn read_udp(&mut self, now: Instant, max: usize) {
        let mut read = 0;
        while read < max {
            let Some(n) = self.recv_batch() else { break };
            // An error or only dropped datagrams still count, so this loop ends.
            read += n.max(1);
            for i in 0..n {
                let (bytes, from) = self.recv.get(i);
                on_bytes(&mut self.core, &mut self.counters, now, bytes, from);
            }
        }
    }

    fn on_bytes(&mut self, now: Instant, bytes: &[u8], from: SocketAddr) {
        on_bytes(&mut self.core, &mut self.counters, now, bytes, from);
    }

    /// Moves what the UDP socket holds into the stash (see [`READ_EVERY_SENDS`]).
    fn read_into_stash(&mut self) {
        while self.stash.len() < STASH_MAX {
            let Some(n) = self.recv_batch() else { break };
            for i in 0..n {
                let (bytes, from) = self.recv.get(i);
                self.stash.push_back((bytes.to_vec(), from));
            }
        }
    }

    fn on_inbound(&mut self, now: Instant, m: Inbound) {
        match m {
            Inbound::Opened { peer, writer } => {
                for bytes in self.connecting.remove(&peer).unwrap_or_default() {
                    let _ = writer.try_send(bytes);
                }
                self.connections.insert(peer, writer);
            }
            Inbound::Message { peer, message } => {
                self.counters.stream_messages_in += 1;
                self.core.handle_message(now, peer, message);
            }
            Inbound::Invalid { peer, bytes, error } => self.core.handle_parse_error(now, peer, &bytes, &error),
            Inbound::Closed { peer } => {
                self.connections.remove(&peer);
                self.core.connection_lost(now, peer);
            }
            Inbound::ConnectFailed { peer } => {
                self.counters.connect_failures += 1;
                self.connecting.remove(&peer);
                self.core.transport_error(now, peer);
            }
        }
    }

    /// Writes pending binding changes, then sends what may go; repeats while sending makes more output
    /// (a failed send fails its transaction, which answers upstream).
    fn flush(&mut self, now: Instant) {
        loop {
            let mut before = Vec::new();
            let mut after = Vec::new();
            let mut changes: Vec<BindingChange> = Vec::new();
            // Write-back: binding changes for the writer thread; no answer waits for them.
            let mut deferred: Vec<BindingChange> = Vec::new();
            let mut watchers: Vec<(String, Watcher)> = Vec::new();
            let mut conference_writes = Vec::new();
            while let Some(output) = self.core.poll_output() {
                match output {
                    Output::Persist(c) if self.write_back.is_some() => deferred.extend(c),
                    Output::Persist(c) => changes.extend(c),
                    Output::PersistWatchers(w) => watchers.extend(w),
                    Output::Conference(c @ (ConferenceOutput::Save(_) | ConferenceOutput::Remove(_))) => {
                        conference_writes.push(c)
                    }
                    Output::Conference(c) => match &self.mcu {
                        Some(link) => link.dispatch(c),
                        None => tracing::debug!("sip: conference output without an mcu link"),
                    },
                    Output::Transmit(t)
                        if changes.is_empty() && watchers.is_empty() && conference_writes.is_empty() =>
                    {
                        before.push(t)
                    }
                    Output::Transmit(t) => after.push(t),
                }
            }
            if !deferred.is_empty()
                && let Some(write_back) = &self.write_back
            {
                write_back.push(deferred);
            }
            if before.is_empty()
                && after.is_empty()
                && changes.is_empty()
                && watchers.is_empty()
                && conference_writes.is_empty()
            {
                return;
            }
            // Counters first: whoever reads `/metrics` after seeing an answer sees what caused it.
            self.publish();
            let mut failed = Vec::new();
            for t in before {
                self.transmit(t, &mut failed);
            }
            self.send_udp();
            if !changes.is_empty() {
                self.counters.store_writes += 1;
                match self.store.apply_bindings(&changes) {
                    Ok(()) => self.counters.bindings_written += changes.len() as u64,
                    Err(e) => {
                        // Answers that would acknowledge a registration not on disk are not sent; the
                        // client retransmits or re-registers.
                        self.counters.store_errors += 1;
                        metrics::counter!("vienna_store_errors_total").increment(1);
                        tracing::error!(error = %e, changes = changes.len(), dropped = after.len(), "sip: cannot store bindings");
                        after.clear();
                    }
                }
            }
            if !watchers.is_empty() {
                self.counters.store_writes += 1;
                if let Err(e) = self.write_watchers(&watchers) {
                    self.counters.store_errors += 1;
                    metrics::counter!("vienna_store_errors_total").increment(1);
                    tracing::error!(error = %e, watchers = watchers.len(), dropped = after.len(), "sip: cannot store watchers");
                    after.clear();
                }
            }
            if !conference_writes.is_empty() {
                self.counters.store_writes += 1;
                let written: vienna_store::Result<()> =
                    conference_writes.iter().try_for_each(|c| super::conference::write(self.store.as_ref(), c));
                if let Err(e) = written {
                    self.counters.store_errors += 1;
                    metrics::counter!("vienna_store_errors_total").increment(1);
                    tracing::error!(error = %e, dropped = after.len(), "sip: cannot store conferences");
                    after.clear();
                }
            }
            for t in after {
                self.transmit(t, &mut failed);
            }
            self.send_udp();
            for peer in failed {
                self.core.transport_error(now, peer);
            }
        }
    }

    /// Records new watchers (owner, watcher), keeping a decision already stored.
    fn write_watchers(&self, watchers: &[(String, Watcher)]) -> vienna_store::Result<()> {
        for (owner, w) in watchers {
            let owner = Aor::parse(owner, None)?;
            if self.store.watchers(&owner)?.iter().any(|old| old.uri == w.uri) {
                continue;
            }
            self.store.put_watcher(&owner, w)?;
        }
        Ok(())
    }

    /// Sends one message; peers that cannot be reached go to `failed`.
    fn transmit(&mut self, t: Transmit, failed: &mut Vec<Peer>) {
        match t.peer.transport {
            Transport::Udp => {
                self.udp_out.push(t);
                if self.udp_out.len() >= vienna_netio::BATCH {
                    self.send_udp();
                }
            }
            Transport::Tcp | Transport::Tls => {
                if let Some(writer) = self.connections.get(&t.peer) {
                    match writer.try_send(t.bytes) {
                        Ok(()) => self.counters.messages_out += 1,
                        Err(TrySendError::Full(_)) => {
                            self.counters.send_failures += 1;
                            tracing::debug!(peer = %t.peer.addr, "sip: connection write queue full; message dropped");
                        }
                        Err(TrySendError::Closed(_)) => {
                            self.counters.send_failures += 1;
                            self.connections.remove(&t.peer);
                            failed.push(t.peer);
                        }
                    }
                } else if let Some(queue) = self.connecting.get_mut(&t.peer) {
                    queue.push(t.bytes);
                } else if t.peer.transport == Transport::Tcp && !t.bytes.starts_with(b"SIP/2.0 ") {
                    // A request to a contact with no connection: open one.
                    self.counters.connects += 1;
                    self.connecting.insert(t.peer, Vec::new());
                    self.runtime.spawn(stream::connect(t.peer, vec![t.bytes], self.streams.clone()));
                } else {
                    // A response whose connection is gone, or TLS to a contact with no connection (this
                    // server does not open TLS connections yet).
                    self.counters.send_failures += 1;
                    tracing::debug!(peer = %t.peer.addr, transport = ?t.peer.transport, "sip: no connection to send on");
                    failed.push(t.peer);
                }
            }
            Transport::Ws => {
                self.counters.send_failures += 1;
                failed.push(t.peer);
            }
        }
    }

    /// Sends the queued UDP datagrams (one `sendmmsg` call per [`vienna_netio::BATCH`]).
    fn send_udp(&mut self) {
        if self.udp_out.is_empty() {
            return;
        }
        let outcome = send_many(&self.udp, &self.udp_out, |t| (t.bytes.as_slice(), t.peer.addr));
        if outcome.dropped > 0 {
            // A full socket buffer loses these copies; the transaction layer retransmits.
            tracing::debug!(dropped = outcome.dropped, "sip: udp send failed");
        }
        self.udp_out.clear();
        self.counters.messages_out += outcome.sent as u64;
        self.counters.send_failures += outcome.dropped as u64;
        self.sends_since_read += outcome.sent as u32;
        if self.sends_since_read >= READ_EVERY_SENDS {
            self.sends_since_read = 0;
            self.read_into_stash();
        }
    }

    /// The driver's counters, with the binding writer's store writes when it runs.
    fn driver_counters(&self) -> DriverCounters {
        let mut d = self.counters.clone();
        if let Some(w) = &self.write_back_counters {
            use std::sync::atomic::Ordering::Relaxed;
            d.store_writes += w.writes.load(Relaxed);
            d.bindings_written += w.bindings_written.load(Relaxed);
            d.store_errors += w.errors.load(Relaxed);
            d.bindings_dropped += w.dropped.load(Relaxed);
        }
        d
    }

    /// Refreshes the snapshot `/metrics` reads: once per batch of messages, not per message.
    fn publish(&mut self) {
        let presence = self.core.presence();
        let now = Instant::now();
        if now >= self.next_views {
            self.next_views = now + VIEWS_EVERY;
            let views = presence.views(MAX_VIEWS);
            match self.shared.presence_views.lock() {
                Ok(mut v) => *v = views,
                Err(poisoned) => *poisoned.into_inner() = views,
            }
            if let Some(shared) = &self.conferences {
                shared.publish(self.core.conference_views(), self.core.conference_counters());
            }
        }
        let stats = SipStats {
            presence: presence.counters().clone(),
            subscriptions: presence.subscriptions(),
            presentities: presence.presentities(),
            publications: presence.publications(),
            core: self.core.counters().clone(),
            transactions: *self.core.transaction_counters(),
            live_transactions: self.core.transactions(),
            completed_transactions: self.core.completed_transactions(),
            bindings: self.core.location().len(),
            connections: self.connections.len(),
            driver: self.driver_counters(),
            ms: self.core.ms_counters(),
            ntlm_associations: self.core.ntlm_associations(),
            ms_subscriptions: self.core.ms_subscriptions(),
        };
        match self.shared.stats.lock() {
            Ok(mut s) => *s = stats,
            Err(poisoned) => *poisoned.into_inner() = stats,
        }
    }
}

/// Hands one datagram to the core (a free function, so the receive batch it comes from stays borrowed).
fn on_bytes(
    core: &mut Core<StoreDirectory>,
    counters: &mut DriverCounters,
    now: Instant,
    bytes: &[u8],
    from: SocketAddr,
) {
    counters.datagrams_in += 1;
    // Keep-alives (CRLF) carry no message.
    if bytes.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return;
    }
    core.handle_datagram(now, Peer { transport: Transport::Udp, addr: from }, bytes);
}

/// Now, in seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
