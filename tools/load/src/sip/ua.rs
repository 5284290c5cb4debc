//! One SIP load thread: many user agents behind a few UDP sockets (or TCP connections to the target), each
//! with its own RFC 3261 transaction layer from `vienna-sip` (timers E/F and A/B retransmit requests,
//! responses are matched by branch), so the load generator retransmits exactly as a conforming UA would.
//!
//! As a UAC a thread runs operations for its own users: REGISTER, MESSAGE, a call (INVITE, ACK for the
//! 2xx, BYE after the hold time), SUBSCRIBE and PUBLISH; each one answers a 401/407 Digest challenge
//! (MD5 or SHA-256, `qop=auth`) and, with [`AuthMode::Reuse`], sends the next request of that user with the
//! cached nonce and the next nonce count, as real phones do. As a UAS every thread answers what the server
//! routes to its sockets: MESSAGE 200, INVITE 180 + 200 (retransmitted until the ACK, RFC 3261 §13.3.1.4),
//! BYE 200, NOTIFY 200 (reading the PUBLISH marker for the publish-to-NOTIFY latency), OPTIONS 200.
//!
//! Datagrams go out in `sendmmsg` batches and come in with `recvmmsg` (`vienna-netio`); over TCP, one
//! connection per socket is framed with `vienna-sip`'s stream framer (RFC 3261 §18.3), and everything,
//! callees' requests included, goes over it (the server reaches a TCP-registered user over its flow).
//! Messages are parsed once, by `vienna-sip`'s parser inside the transaction layer. Left out: TLS, DNS (the
//! target and every Route must be IP addresses), re-INVITEs, CANCEL of our own INVITEs, media.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};
use vienna_netio::{BATCH, RecvBatch, SendBatch};
use vienna_sip::digest::{Algorithm, Challenge, respond};
use vienna_sip::transaction::{Output, Peer, TimerConfig, TransactionEvent, TransactionId, TransactionLayer};
use vienna_sip::{
    FrameEvent, HeaderName, Limits, Method, NameAddr, PONG, Request, Response, StreamFramer, Transport, Uri,
};

use super::users::UserSpec;
use crate::framework::series::{self, BinCounts, Collector, Recorder};
use crate::framework::stream::{self, Connected, StreamConn};
use crate::framework::tls::TlsClient;
use crate::pacing::Pacer;
use crate::turn::client::Rng;

/// Run phases, set by the main thread.
pub mod phase {
    /// Registering (and subscribing).
    pub const SETUP: u8 = 0;
    /// Measured load.
    pub const RUN: u8 = 1;
    /// Stop now.
    pub const EXIT: u8 = 2;
}

/// Longest sleep, so phase changes are seen quickly.
const MAX_SLEEP: Duration = Duration::from_millis(10);
/// Most operations started per wake-up.
const MAX_PER_WAKE: u64 = 2048;
/// Digest challenges answered per operation before it fails.
const MAX_AUTH_TRIES: u8 = 2;

/// What the load does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// REGISTER.
    Register,
    /// MESSAGE from a user to another (all registered first).
    Message,
    /// INVITE, 200, ACK, BYE (all registered first).
    Call,
    /// Watchers SUBSCRIBE in the set-up, presentities PUBLISH in the run.
    Presence,
}

/// How credentials are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Every operation starts without credentials and answers the challenge (as SIPp scenarios do).
    Challenge,
    /// After a user's first challenge, its requests carry credentials with the cached nonce and the next
    /// nonce count; a new challenge (stale, replay) is answered.
    Reuse,
}

/// Which Digest algorithm to answer when a server offers several challenges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AlgorithmChoice {
    /// SHA-256 if offered, else MD5.
    Best,
    /// MD5 only.
    Md5,
    /// SHA-256 only.
    Sha256,
}

/// The presence part of the configuration.
#[derive(Debug, Clone)]
pub struct PresencePlan {
    /// Users `0..presentities` publish.
    pub presentities: usize,
    /// Per watcher (users `presentities..`), the presentities it subscribes to.
    pub subscriptions: Vec<Vec<usize>>,
    /// Expires of SUBSCRIBE and PUBLISH.
    pub expires: u32,
    /// Tag of this run in PUBLISH bodies (NOTIFYs of other runs are not matched).
    pub run_id: u32,
    /// Rounds instead of a rate: each round every presentity PUBLISHes once, when the main thread
    /// raises [`Rounds::round`].
    pub rounds: Option<RoundPlan>,
}

/// The round (burst) schedule of `presence --rounds`.
#[derive(Debug, Clone, Copy)]
pub struct RoundPlan {
    /// Rounds.
    pub count: u32,
    /// Pause before each round.
    pub interval: Duration,
    /// Longest wait for the NOTIFYs of one round.
    pub timeout: Duration,
}

/// What the main thread and the threads share about the current round (`presence --rounds`).
#[derive(Debug)]
pub struct Rounds {
    /// The round the main thread asked for (0: none yet); a thread starts one PUBLISH per presentity
    /// for every round it has not started.
    pub round: AtomicU32,
    /// When the main thread started the current round, ns after `base`: NOTIFYs whose PUBLISH marker
    /// was sent before it belong to an earlier round.
    pub start_ns: AtomicU64,
    /// First PUBLISH of the round sent, ns after `base`.
    pub first_publish_ns: AtomicU64,
    /// Last PUBLISH of the round answered 2xx, ns after `base`.
    pub last_publish_ns: AtomicU64,
    /// Last NOTIFY of the round received, ns after `base`.
    pub last_notify_ns: AtomicU64,
}

impl Default for Rounds {
    fn default() -> Rounds {
        Rounds {
            round: AtomicU32::new(0),
            start_ns: AtomicU64::new(u64::MAX),
            first_publish_ns: AtomicU64::new(u64::MAX),
            last_publish_ns: AtomicU64::new(0),
            last_notify_ns: AtomicU64::new(0),
        }
    }
}

/// Everything every thread is told.
#[derive(Debug)]
pub struct Config {
    /// What to do.
    pub scenario: Scenario,
    /// The server.
    pub target: SocketAddr,
    /// UDP or TCP.
    pub transport: Transport,
    /// Domain of the addresses.
    pub domain: String,
    /// All users; user `g` belongs to thread `g % threads`.
    pub users: Vec<UserSpec>,
    /// Load threads.
    pub threads: usize,
    /// Credentials.
    pub auth: AuthMode,
    /// Digest algorithm.
    pub algorithm: AlgorithmChoice,
    /// REGISTER expires.
    pub expires: u32,
    /// Transaction timers.
    pub timers: TimerConfig,
    /// Operations per second, all threads.
    pub rate: f64,
    /// Measured time.
    pub duration: Duration,
    /// Most operations in all.
    pub count: u64,
    /// Most operations in flight in all.
    pub concurrency: usize,
    /// Call: time between the ACK and the BYE.
    pub hold: Duration,
    /// After the last start, how long in-flight operations may take.
    pub drain: Duration,
    /// Most set-up operations in flight per thread.
    pub setup_window: usize,
    /// Register every user in the set-up.
    pub register_first: bool,
    /// MESSAGE and call targets: user `(g + offset) % users`, or this one name.
    pub callee: Callee,
    /// Presence plan (presence scenario).
    pub presence: Option<PresencePlan>,
}

/// Who a MESSAGE or a call goes to.
#[derive(Debug, Clone)]
pub enum Callee {
    /// User `(caller + offset) % users`.
    Offset(usize),
    /// This user name (for example a SIPp UAS registered as `sink`).
    Fixed(String),
}

/// Live counters of one thread, read by the progress line.
#[derive(Debug, Default)]
pub struct Counters {
    /// Set-up operations finished.
    pub setup_done: AtomicU64,
    /// Set-up operations that succeeded.
    pub setup_ok: AtomicU64,
    /// The thread's set-up is over.
    pub setup_finished: AtomicBool,
    /// Operations started in the run.
    pub started: AtomicU64,
    /// Operations that succeeded.
    pub ok: AtomicU64,
    /// Operations that failed.
    pub failed: AtomicU64,
    /// Client transactions created.
    pub transactions: AtomicU64,
    /// NOTIFYs received that matched a PUBLISH of this run.
    pub notifies: AtomicU64,
    /// NOTIFYs received (initial ones included).
    pub notifies_received: AtomicU64,
    /// Subscriptions established in the set-up.
    pub subscribed: AtomicU64,
    /// Matched NOTIFYs carrying a PUBLISH of the current round or a later one (`--rounds`).
    pub round_notifies: AtomicU64,
    /// The thread started and finished all its operations.
    pub run_done: AtomicBool,
}

/// State shared by the main thread and the threads.
#[derive(Debug)]
pub struct Shared {
    /// Current [`phase`].
    pub phase: AtomicU8,
    /// Clock origin of timestamps in bodies.
    pub base: Instant,
    /// Run start, nanoseconds after `base`.
    pub start_ns: AtomicU64,
    /// Stop starting operations (Ctrl-C).
    pub cut: AtomicBool,
    /// One per thread.
    pub counters: Vec<Counters>,
    /// Latency per second.
    pub collector: Collector,
    /// The current round (`presence --rounds`).
    pub rounds: Rounds,
}

/// Counts by kind of message.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Final responses by status code received by our client transactions.
    pub responses: BTreeMap<u16, u64>,
    /// Requests received as UAS, by method.
    pub uas_requests: BTreeMap<String, u64>,
}

/// What one thread measured.
#[derive(Debug)]
pub struct Outcome {
    /// Set-up operations that succeeded / failed.
    pub setup_ok: u64,
    /// Set-up failures by reason.
    pub setup_failures: BTreeMap<String, u64>,
    /// Run operations started, succeeded, failed, still in flight at the end.
    pub started: u64,
    /// Succeeded.
    pub ok: u64,
    /// Failed.
    pub failed: u64,
    /// Not finished when the drain time ran out.
    pub unfinished: u64,
    /// Due but not started: every user of the thread busy or the concurrency limit reached.
    pub not_started: u64,
    /// Failures by reason (status code, `timeout`, `transport`).
    pub failures: BTreeMap<String, u64>,
    /// Operation latency (per scenario: REGISTER to its 200, MESSAGE to its 200, INVITE to its 200,
    /// PUBLISH to each NOTIFY).
    pub latency: Histogram<u64>,
    /// Every client transaction: first transmission to final response.
    pub response_latency: Histogram<u64>,
    /// Client transactions created in the run.
    pub transactions: u64,
    /// Requests retransmitted by timers (all phases).
    pub retransmissions: u64,
    /// Digest challenges answered in the run.
    pub challenges: u64,
    /// 2xx responses to INVITE retransmitted by our UAS (no ACK yet).
    pub uas_2xx_retransmissions: u64,
    /// Message counts.
    pub tally: Tally,
    /// Per second.
    pub bins: Vec<BinCounts>,
    /// Presence: PUBLISHes that succeeded, per presentity (global index).
    pub published: BTreeMap<usize, u64>,
    /// Presence: subscriptions established, per presentity.
    pub subscribed: BTreeMap<usize, u64>,
    /// Presence: NOTIFYs received (all).
    pub notifies: u64,
    /// Presence: NOTIFYs carrying a new PUBLISH of this run.
    pub notifies_matched: u64,
    /// Presence: NOTIFYs repeating a state already seen.
    pub notifies_repeated: u64,
    /// Presence: NOTIFYs carrying an older state than one seen before.
    pub notifies_reordered: u64,
    /// Datagrams that did not parse or matched nothing.
    pub stray: u64,
    /// Received datagrams cut at the batch slot size.
    pub truncated: u64,
    /// Datagrams the local socket refused.
    pub send_dropped: u64,
    /// When the last run operation succeeded.
    pub last_ok: Option<Instant>,
}

struct AuthCache {
    challenge: Challenge,
    nc: u32,
}

struct User {
    g: usize,
    sock: usize,
    aor: String,
    /// `<aor>;tag=...`, the From of every request.
    from_hdr: String,
    /// The AOR parsed, for REGISTER's To and PUBLISH.
    aor_uri: Uri,
    /// MESSAGE and call target: Request-URI and To, parsed once.
    callee: Option<(Uri, String)>,
    contact: String,
    reg_call_id: String,
    cseq: u32,
    www: Option<AuthCache>,
    proxy: Option<AuthCache>,
    busy: bool,
    registered: bool,
    etag: Option<String>,
    pub_seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Register,
    Message,
    Call,
    Subscribe,
    Publish,
}

struct Dialog {
    route: Vec<String>,
    remote_target: Uri,
    first_hop: SocketAddr,
    to: String,
    ack: Vec<u8>,
}

struct Op {
    kind: OpKind,
    user: usize,
    /// Callee or presentity (global index).
    peer_user: usize,
    setup: bool,
    started: Instant,
    tx: Option<(usize, TransactionId)>,
    /// Call: the INVITE transaction while it may pass 2xx retransmissions.
    invite_tx: Option<(usize, TransactionId)>,
    tx_sent: Instant,
    auth_tries: u8,
    call_id: String,
    cseq: u32,
    /// Call: the dialog after the 2xx; the BYE is out when `bye_sent`.
    dialog: Option<Dialog>,
    bye_sent: bool,
    /// Publish: retried once as an initial PUBLISH after 412.
    retried_412: bool,
}

struct CalleeDialog {
    sock: usize,
    dest: SocketAddr,
    bytes: Vec<u8>,
    interval: Duration,
    next: Instant,
    give_up: Instant,
    acked: bool,
    call_id: String,
}

enum Io {
    Udp(mio::net::UdpSocket),
    Tcp(TcpConn),
}

struct TcpConn {
    conn: StreamConn,
    framer: StreamFramer,
}

/// A thread's local endpoint: a UDP socket, or a TCP connection to the target.
pub enum Endpoint {
    /// UDP.
    Udp(UdpSocket),
    /// TCP, connected; with its TLS session (handshake done) for SIP over TLS.
    Tcp(Connected),
}

struct Sock {
    io: Io,
    addr: SocketAddr,
    /// `SIP/2.0/UDP ADDR;branch=`, the start of every Via this socket sends.
    via_prefix: String,
    layer: TransactionLayer,
    out: SendBatch,
    armed: Option<Instant>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Layer(usize),
    /// Op slot and generation: send the BYE.
    Bye(usize, u32),
    /// Callee dialog slot and generation: retransmit the 2xx.
    Callee(usize, u32),
}

/// A watcher's subscription, found by the Call-ID of its NOTIFYs.
struct Subscription {
    presentity: usize,
    highest: Option<u64>,
}

/// A small multiply-rotate hasher for the maps keyed by our own ids and Call-IDs (no untrusted keys
/// worth a DoS-resistant hash: the Call-IDs are ours, or the server's echo of ours).
#[derive(Default, Clone, Copy)]
struct FastHash(u64);

impl std::hash::Hasher for FastHash {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FastHash>>;

/// Slots with generations, so a stale reference to a reused slot is recognised.
struct Slab<T> {
    items: Vec<(u32, Option<T>)>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Slab<T> {
    fn new() -> Self {
        Slab { items: Vec::new(), free: Vec::new(), len: 0 }
    }
    fn insert(&mut self, v: T) -> (usize, u32) {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            let slot = &mut self.items[i];
            slot.0 = slot.0.wrapping_add(1);
            slot.1 = Some(v);
            (i, slot.0)
        } else {
            self.items.push((0, Some(v)));
            (self.items.len() - 1, 0)
        }
    }
    fn get_mut(&mut self, i: usize, generation: u32) -> Option<&mut T> {
        self.items.get_mut(i).filter(|s| s.0 == generation).and_then(|s| s.1.as_mut())
    }
    fn remove(&mut self, i: usize, generation: u32) -> Option<T> {
        let s = self.items.get_mut(i).filter(|s| s.0 == generation)?;
        let v = s.1.take()?;
        self.free.push(i);
        self.len -= 1;
        Some(v)
    }
}

struct Engine {
    registry: mio::Registry,
    /// REGISTER's Expires value.
    expires_hdr: String,
    /// `sip:DOMAIN`, REGISTER's Request-URI.
    register_uri: Uri,
    index: usize,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    socks: Vec<Sock>,
    users: Vec<User>,
    ops: Slab<Op>,
    tx_ops: FastMap<(usize, TransactionId), (usize, u32)>,
    callees: Slab<CalleeDialog>,
    callee_by_call_id: FastMap<String, (usize, u32)>,
    subscriptions: FastMap<String, Subscription>,
    timers: BinaryHeap<Reverse<(Instant, TimerKey)>>,
    recorder: Recorder,
    response_latency: Histogram<u64>,
    rng: Rng,
    recv: RecvBatch,
    next_user: usize,
    call_counter: u64,
    run_inflight: usize,
    setup_inflight: usize,
    touched: Vec<bool>,
    out: Outcome,
    // presence
    presentity_users: Vec<usize>,
}

/// Binds a thread's UDP sockets or connects its TCP connections; then [`run`] moves them into the thread.
pub fn bind(
    local: std::net::IpAddr,
    first_port: Option<u16>,
    n: usize,
    transport: Transport,
    target: SocketAddr,
    tls: Option<&TlsClient>,
) -> anyhow::Result<Vec<Endpoint>> {
    let opts = vienna_netio::UdpOptions { reuse_port: false, recv_buffer: 4 << 20, send_buffer: 4 << 20 };
    (0..n)
        .map(|i| match transport {
            Transport::Tcp => stream::connect(target, None).map(Endpoint::Tcp),
            Transport::Tls => {
                let tls = tls.ok_or_else(|| anyhow::anyhow!("SIP over TLS without a TLS client configuration"))?;
                stream::connect(target, Some(tls)).map(Endpoint::Tcp)
            }
            _ => {
                let port = first_port.map_or(0, |p| p.saturating_add(i as u16));
                vienna_netio::bind_udp(SocketAddr::new(local, port), opts)
                    .map(Endpoint::Udp)
                    .map_err(|e| anyhow::anyhow!("binding a UDP socket on {local}:{port}: {e}"))
            }
        })
        .collect()
}

/// Runs thread `index` over `sockets` until the main thread says [`phase::EXIT`].
pub fn run(index: usize, sockets: Vec<Endpoint>, cfg: Arc<Config>, shared: Arc<Shared>) -> std::io::Result<Outcome> {
    let mut poll = Poll::new()?;
    let seed = shared.base.elapsed().as_nanos() as u64 ^ (u64::from(std::process::id()) << 32) ^ (index as u64 + 1);
    let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut socks = Vec::with_capacity(sockets.len());
    for (i, s) in sockets.into_iter().enumerate() {
        let (addr, io) = match s {
            Endpoint::Udp(s) => {
                let addr = s.local_addr()?;
                let mut io = mio::net::UdpSocket::from_std(s);
                poll.registry().register(&mut io, Token(i), Interest::READABLE)?;
                (addr, Io::Udp(io))
            }
            Endpoint::Tcp(c) => {
                let addr = c.local_addr()?;
                let conn = c.register(poll.registry(), Token(i))?;
                (addr, Io::Tcp(TcpConn { conn, framer: StreamFramer::new(Limits::default()) }))
            }
        };
        let mut layer_seed = [0u8; 32];
        for chunk in layer_seed.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_be_bytes());
        }
        let layer = TransactionLayer::new(cfg.timers, Limits::default(), layer_seed);
        let via_prefix = format!("SIP/2.0/{} {addr};branch=", via_proto(cfg.transport));
        socks.push(Sock { io, addr, via_prefix, layer, out: SendBatch::new(), armed: None });
    }
    let mut users = Vec::new();
    let nsock = socks.len().max(1);
    for g in (index..cfg.users.len()).step_by(cfg.threads) {
        let spec = &cfg.users[g];
        let sock = users.len() % nsock;
        let addr = socks[sock].addr;
        let tag = format!("{:016x}", rng.next_u64());
        let aor = format!("sip:{}@{}", spec.name, cfg.domain);
        let callee_name = match &cfg.callee {
            Callee::Fixed(name) => Some(name.as_str()),
            Callee::Offset(off) => cfg.users.get((g + off) % cfg.users.len()).map(|u| u.name.as_str()),
        };
        let callee = callee_name.and_then(|n| {
            let uri = format!("sip:{n}@{}", cfg.domain);
            Uri::parse(&uri).ok().map(|u| (u, format!("<{uri}>")))
        });
        let Ok(aor_uri) = Uri::parse(&aor) else {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad address {aor}")));
        };
        users.push(User {
            g,
            sock,
            from_hdr: format!("<{aor}>;tag={tag}"),
            aor_uri,
            callee,
            aor,
            contact: match cfg.transport {
                Transport::Tcp => format!("<sip:{}@{};transport=tcp>", spec.name, addr),
                Transport::Tls => format!("<sip:{}@{};transport=tls>", spec.name, addr),
                _ => format!("<sip:{}@{}>", spec.name, addr),
            },
            reg_call_id: format!("reg-{:016x}@vienna-load", rng.next_u64()),
            cseq: 0,
            www: None,
            proxy: None,
            busy: false,
            registered: false,
            etag: None,
            pub_seq: 0,
        });
    }
    let presentity_users = match &cfg.presence {
        Some(p) => users.iter().enumerate().filter(|(_, u)| u.g < p.presentities).map(|(i, _)| i).collect(),
        None => Vec::new(),
    };
    let nsocks = socks.len();
    let registry = poll.registry().try_clone()?;
    let Ok(register_uri) = Uri::parse(&format!("sip:{}", cfg.domain)) else {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad domain {}", cfg.domain)));
    };
    let mut e = Engine {
        expires_hdr: cfg.expires.to_string(),
        register_uri,
        registry,
        index,
        cfg,
        shared,
        socks,
        users,
        ops: Slab::new(),
        tx_ops: FastMap::default(),
        callees: Slab::new(),
        callee_by_call_id: FastMap::default(),
        subscriptions: FastMap::default(),
        timers: BinaryHeap::new(),
        recorder: Recorder::new(),
        response_latency: series::histogram(),
        rng,
        recv: RecvBatch::new(),
        next_user: 0,
        call_counter: 0,
        run_inflight: 0,
        setup_inflight: 0,
        touched: vec![false; nsocks],
        out: Outcome {
            setup_ok: 0,
            setup_failures: BTreeMap::new(),
            started: 0,
            ok: 0,
            failed: 0,
            unfinished: 0,
            not_started: 0,
            failures: BTreeMap::new(),
            latency: series::histogram(),
            response_latency: series::histogram(),
            transactions: 0,
            retransmissions: 0,
            challenges: 0,
            uas_2xx_retransmissions: 0,
            tally: Tally::default(),
            bins: Vec::new(),
            published: BTreeMap::new(),
            subscribed: BTreeMap::new(),
            notifies: 0,
            notifies_matched: 0,
            notifies_repeated: 0,
            notifies_reordered: 0,
            stray: 0,
            truncated: 0,
            send_dropped: 0,
            last_ok: None,
        },
        presentity_users,
    };
    e.main_loop(&mut poll)?;
    Ok(e.finish())
}

enum Local {
    Setup {
        next: usize,
        steps: Vec<(usize, OpKind, usize)>,
    },
    WaitRun,
    Run {
        pacer: Pacer,
        start: Instant,
        backlog: u64,
        started: u64,
        quota: u64,
        stop_at: Option<Instant>,
    },
    /// `presence --rounds`: rounds started so far.
    Rounds {
        done: u32,
        stop_at: Option<Instant>,
    },
    Done,
}

impl Engine {
    fn counters(&self) -> &Counters {
        &self.shared.counters[self.index]
    }

    fn setup_steps(&self) -> Vec<(usize, OpKind, usize)> {
        let mut steps = Vec::new();
        if self.cfg.register_first {
            steps.extend((0..self.users.len()).map(|u| (u, OpKind::Register, 0)));
        }
        if let Some(p) = &self.cfg.presence {
            for (u, user) in self.users.iter().enumerate() {
                if user.g >= p.presentities
                    && let Some(list) = p.subscriptions.get(user.g - p.presentities)
                {
                    steps.extend(list.iter().map(|&pres| (u, OpKind::Subscribe, pres)));
                }
            }
        }
        steps
    }

    fn main_loop(&mut self, poll: &mut Poll) -> std::io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut local = Local::Setup { next: 0, steps: self.setup_steps() };
        loop {
            let now = Instant::now();
            let global = self.shared.phase.load(Relaxed);
            if global == phase::EXIT {
                return Ok(());
            }
            let mut wake = now + MAX_SLEEP;
            self.run_timers(now);
            match &mut local {
                Local::Setup { next, steps } => {
                    // Registrations first, then subscriptions (a watcher must be registered before it
                    // subscribes when both are asked for).
                    while *next < steps.len() && self.setup_inflight < self.cfg.setup_window {
                        let (u, kind, peer) = steps[*next];
                        let after_registrations = *next > 0 && steps[*next - 1].1 == OpKind::Register;
                        if kind == OpKind::Subscribe && after_registrations && self.setup_inflight > 0 {
                            break;
                        }
                        *next += 1;
                        if kind == OpKind::Subscribe && self.cfg.register_first && !self.users[u].registered {
                            self.setup_failure("watcher not registered".into());
                            continue;
                        }
                        self.start_op(now, u, kind, peer, true);
                    }
                    if *next >= steps.len() && self.setup_inflight == 0 {
                        self.counters().setup_finished.store(true, Relaxed);
                        local = Local::WaitRun;
                    }
                }
                Local::WaitRun => {
                    if global == phase::RUN {
                        let start = self.shared.base + Duration::from_nanos(self.shared.start_ns.load(Relaxed));
                        self.recorder.start(start);
                        if self.cfg.presence.as_ref().is_some_and(|p| p.rounds.is_some()) {
                            local = Local::Rounds { done: 0, stop_at: None };
                            continue;
                        }
                        let t = self.cfg.threads as u64;
                        let quota = self.cfg.count / t + u64::from((self.index as u64) < self.cfg.count % t);
                        let pacer = Pacer::new(self.cfg.rate / t as f64, self.cfg.duration);
                        local = Local::Run { pacer, start, backlog: 0, started: 0, quota, stop_at: None };
                        continue;
                    }
                }
                Local::Run { pacer, start, backlog, started, quota, stop_at } => {
                    if stop_at.is_none() {
                        if now >= *start {
                            let elapsed = now - *start;
                            let due = pacer.due(elapsed, MAX_PER_WAKE);
                            *backlog += due.end - due.start;
                            let limit = self.cfg.concurrency.div_ceil(self.cfg.threads).max(1);
                            while *backlog > 0 && *started < *quota && self.run_inflight < limit {
                                if !self.start_run_op(now) {
                                    break;
                                }
                                *backlog -= 1;
                                *started += 1;
                            }
                            // Due operations that could not start wait, up to one second's worth.
                            let cap = (self.cfg.rate / self.cfg.threads as f64).ceil().max(1.0) as u64;
                            if *backlog > cap {
                                self.out.not_started += *backlog - cap;
                                *backlog = cap;
                            }
                            if pacer.done() && *backlog == 0
                                || *started >= *quota
                                || elapsed >= self.cfg.duration
                                || self.shared.cut.load(Relaxed)
                            {
                                self.out.not_started += *backlog;
                                *backlog = 0;
                                *stop_at = Some(now + self.cfg.drain);
                            }
                        }
                        if let Some(next) = pacer.next_due() {
                            wake = wake.min(*start + next);
                        }
                    }
                    if let Some(until) = *stop_at {
                        if self.run_inflight == 0 || now >= until {
                            self.out.unfinished = self.run_inflight as u64;
                            self.counters().run_done.store(true, Relaxed);
                            local = Local::Done;
                        } else {
                            wake = wake.min(until);
                        }
                    }
                }
                Local::Rounds { done, stop_at } => {
                    if stop_at.is_none() {
                        let asked = self.shared.rounds.round.load(Relaxed);
                        while *done < asked {
                            *done += 1;
                            // One PUBLISH per presentity; one still in flight from an earlier round
                            // skips this one.
                            for k in 0..self.presentity_users.len() {
                                let u = self.presentity_users[k];
                                if self.users[u].busy {
                                    self.out.not_started += 1;
                                } else {
                                    let g = self.users[u].g;
                                    self.start_op(now, u, OpKind::Publish, g, false);
                                }
                            }
                        }
                        if self.shared.cut.load(Relaxed) {
                            *stop_at = Some(now + self.cfg.drain);
                        }
                    }
                    if let Some(until) = *stop_at {
                        if self.run_inflight == 0 || now >= until {
                            self.out.unfinished = self.run_inflight as u64;
                            self.counters().run_done.store(true, Relaxed);
                            local = Local::Done;
                        } else {
                            wake = wake.min(until);
                        }
                    }
                }
                Local::Done => {}
            }
            self.pump_all(now);
            self.recorder.tick(&self.shared.collector, now);
            self.publish();
            if let Some(Reverse((t, _))) = self.timers.peek() {
                wake = wake.min(*t);
            }
            let timeout = wake.saturating_duration_since(Instant::now());
            if let Err(e) = poll.poll(&mut events, Some(timeout))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                return Err(e);
            }
            let now = Instant::now();
            for ev in events.iter() {
                if ev.is_writable() {
                    self.flush_tcp(ev.token().0);
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.drain_socket(ev.token().0, now);
                }
            }
            self.pump_all(now);
        }
    }

    fn publish(&self) {
        let c = self.counters();
        c.started.store(self.out.started, Relaxed);
        c.ok.store(self.out.ok, Relaxed);
        c.failed.store(self.out.failed, Relaxed);
        c.transactions.store(self.out.transactions, Relaxed);
        c.notifies.store(self.out.notifies_matched, Relaxed);
        c.notifies_received.store(self.out.notifies, Relaxed);
        c.subscribed.store(self.out.subscribed.values().sum(), Relaxed);
    }

    // ---- sockets and timers ----

    fn drain_socket(&mut self, s: usize, now: Instant) {
        if s >= self.socks.len() {
            return;
        }
        loop {
            let udp = match &self.socks[s].io {
                Io::Udp(u) => u,
                Io::Tcp(_) => return self.drain_tcp(s, now),
            };
            let n = match self.recv.recv(udp) {
                Ok(n) => n,
                Err(_) => return,
            };
            for k in 0..n {
                let (bytes, from) = self.recv.get(k);
                self.socks[s].layer.handle_bytes(now, Peer { transport: Transport::Udp, addr: from }, bytes);
            }
            self.touched[s] = true;
            self.pump(s, now);
            if n < BATCH {
                break;
            }
        }
        self.out.truncated = self.recv.truncated();
    }

    /// Reads what a TCP connection has, frames it (RFC 3261 §18.3) and hands the messages to the layer.
    fn drain_tcp(&mut self, s: usize, now: Instant) {
        let peer = Peer { transport: self.cfg.transport, addr: self.cfg.target };
        let mut buf = vec![0u8; 64 * 1024];
        let sock = &mut self.socks[s];
        let Io::Tcp(c) = &mut sock.io else { return };
        let mut lost = false;
        loop {
            match c.conn.read_plain(&mut buf) {
                Ok(0) => {
                    lost = true;
                    break;
                }
                Ok(n) => {
                    c.framer.push(now, &buf[..n]);
                    loop {
                        match c.framer.next_event() {
                            Ok(Some(FrameEvent::Message(m))) => sock.layer.handle_message(now, peer, m),
                            Ok(Some(FrameEvent::Invalid { error, bytes })) => {
                                sock.layer.handle_parse_error(peer, &bytes, &error);
                            }
                            Ok(Some(FrameEvent::Ping)) => c.conn.wbuf.extend_from_slice(PONG),
                            Ok(Some(FrameEvent::Pong)) => {}
                            Ok(None) => break,
                            Err(_) => {
                                lost = true;
                                break;
                            }
                        }
                    }
                    if lost {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    lost = true;
                    break;
                }
            }
        }
        if lost && !c.conn.is_closed() {
            c.conn.close(&self.registry);
            sock.layer.connection_lost(peer);
        }
        self.touched[s] = true;
        self.pump(s, now);
    }

    /// Writes what a TCP connection has buffered; asks for writability while something is left.
    fn flush_tcp(&mut self, s: usize) {
        let Some(sock) = self.socks.get_mut(s) else { return };
        let Io::Tcp(c) = &mut sock.io else { return };
        c.conn.flush(&self.registry);
    }

    fn pump_all(&mut self, now: Instant) {
        for s in 0..self.socks.len() {
            if self.touched[s] {
                self.pump(s, now);
            }
        }
    }

    /// Moves everything the layer of socket `s` has to say: datagrams into the send batch, events to the
    /// UA; then sends and re-arms the socket's timer.
    fn pump(&mut self, s: usize, now: Instant) {
        while let Some(o) = self.socks[s].layer.poll_output() {
            match o {
                Output::Transmit(t) => self.send_bytes(s, &t.bytes, t.peer.addr),
                Output::Event(ev) => self.on_event(now, s, ev),
            }
        }
        let sock = &mut self.socks[s];
        match &sock.io {
            Io::Udp(u) if !sock.out.is_empty() => {
                let o = sock.out.flush(u);
                self.out.send_dropped += o.dropped as u64;
            }
            Io::Tcp(c) if c.conn.has_output() => {
                self.flush_tcp(s);
            }
            _ => {}
        }
        let sock = &mut self.socks[s];
        if let Some(t) = sock.layer.poll_timeout()
            && sock.armed.is_none_or(|a| t < a || a <= now)
        {
            sock.armed = Some(t);
            self.timers.push(Reverse((t, TimerKey::Layer(s))));
        }
        self.touched[s] = false;
    }

    fn send_bytes(&mut self, s: usize, bytes: &[u8], to: SocketAddr) {
        let sock = &mut self.socks[s];
        match &mut sock.io {
            Io::Udp(u) => {
                if sock.out.is_full() {
                    let o = sock.out.flush(u);
                    self.out.send_dropped += o.dropped as u64;
                }
                if !sock.out.push(bytes, to) {
                    // Larger than a batch slot: send it alone.
                    if u.send_to(bytes, to).is_err() {
                        self.out.send_dropped += 1;
                    }
                }
            }
            // One connection, to the target: everything goes over it.
            Io::Tcp(c) => {
                if c.conn.is_closed() {
                    self.out.send_dropped += 1;
                } else {
                    c.conn.wbuf.extend_from_slice(bytes);
                }
            }
        }
        self.touched[s] = true;
    }

    fn run_timers(&mut self, now: Instant) {
        while let Some(&Reverse((t, key))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            match key {
                TimerKey::Layer(s) => {
                    if self.socks[s].armed.is_some_and(|a| a <= now) {
                        self.socks[s].armed = None;
                    }
                    self.socks[s].layer.handle_timeout(now);
                    self.touched[s] = true;
                    self.pump(s, now);
                }
                TimerKey::Bye(i, g) => self.send_bye(now, i, g),
                TimerKey::Callee(i, g) => self.retransmit_2xx(now, i, g),
            }
        }
    }

    // ---- operations (UAC) ----

    /// Picks a free user for the next run operation and starts it; `false` if none is free.
    fn start_run_op(&mut self, now: Instant) -> bool {
        let (kind, pool_len) = match self.cfg.scenario {
            Scenario::Register => (OpKind::Register, self.users.len()),
            Scenario::Message => (OpKind::Message, self.users.len()),
            Scenario::Call => (OpKind::Call, self.users.len()),
            Scenario::Presence => (OpKind::Publish, self.presentity_users.len()),
        };
        for _ in 0..pool_len {
            let k = self.next_user % pool_len.max(1);
            self.next_user = self.next_user.wrapping_add(1);
            let u = if kind == OpKind::Publish { self.presentity_users[k] } else { k };
            let user = &self.users[u];
            if user.busy || (self.cfg.register_first && !user.registered && kind != OpKind::Register) {
                continue;
            }
            let peer = match (&self.cfg.callee, kind) {
                (Callee::Offset(off), OpKind::Message | OpKind::Call) => (user.g + off) % self.cfg.users.len(),
                _ => user.g,
            };
            self.start_op(now, u, kind, peer, false);
            return true;
        }
        false
    }

    fn start_op(&mut self, now: Instant, u: usize, kind: OpKind, peer_user: usize, setup: bool) {
        let call_id = match kind {
            OpKind::Register => self.users[u].reg_call_id.clone(),
            _ => {
                self.call_counter += 1;
                format!("{}-{}-{:012x}@vienna-load", self.index, self.call_counter, self.rng.next_u64() >> 16)
            }
        };
        self.users[u].busy = true;
        let op = Op {
            kind,
            user: u,
            peer_user,
            setup,
            started: now,
            tx: None,
            invite_tx: None,
            tx_sent: now,
            auth_tries: 0,
            call_id,
            cseq: 0,
            dialog: None,
            bye_sent: false,
            retried_412: false,
        };
        if setup {
            self.setup_inflight += 1;
        } else {
            self.run_inflight += 1;
            self.out.started += 1;
            self.recorder.offered(now, 1);
        }
        if kind == OpKind::Subscribe {
            self.subscriptions.insert(op.call_id.clone(), Subscription { presentity: peer_user, highest: None });
        }
        let (i, g) = self.ops.insert(op);
        self.send_op_request(now, i, g);
    }

    /// Builds and sends the (next) request of operation `i`: the first one, or the one answering a
    /// challenge.
    fn send_op_request(&mut self, now: Instant, i: usize, g: u32) {
        let Some(op) = self.ops.get_mut(i, g) else { return };
        let (kind, u, peer_user) = (op.kind, op.user, op.peer_user);
        let call_id = op.call_id.clone();
        let user = &mut self.users[u];
        user.cseq += 1;
        let cseq = if kind == OpKind::Register { user.cseq } else { op.cseq + 1 };
        op.cseq = cseq;
        let s = user.sock;
        // Request-URI and To; the common ones were parsed when the users were made.
        let (method, uri, to) = match kind {
            OpKind::Register => (Method::Register, self.register_uri.clone(), format!("<{}>", user.aor)),
            OpKind::Message | OpKind::Call => {
                let method = if kind == OpKind::Call { Method::Invite } else { Method::Message };
                match &user.callee {
                    Some((uri, to)) => (method, uri.clone(), to.clone()),
                    None => return self.fail_op(now, i, g, "no callee".into()),
                }
            }
            OpKind::Subscribe => {
                let to = self_uri(&self.cfg, peer_user);
                let Ok(uri) = Uri::parse(&to) else { return self.fail_op(now, i, g, "bad uri".into()) };
                (Method::Subscribe, uri, format!("<{to}>"))
            }
            OpKind::Publish => (Method::Publish, user.aor_uri.clone(), format!("<{}>", user.aor)),
        };
        let sock_addr = self.socks[s].addr;
        let mut via = String::with_capacity(self.socks[s].via_prefix.len() + 32);
        via.push_str(&self.socks[s].via_prefix);
        push_branch(&mut via, &mut self.rng);
        via.push_str(";rport");
        let user = &mut self.users[u];
        let mut cseq_hdr = cseq.to_string();
        cseq_hdr.push(' ');
        cseq_hdr.push_str(method.as_str());
        let mut req = Request::new(method.clone(), uri);
        let h = &mut req.headers;
        h.0.reserve(12);
        h.push(HeaderName::Via, via);
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, user.from_hdr.clone());
        h.push(HeaderName::To, to);
        h.push(HeaderName::CallId, call_id);
        h.push(HeaderName::CSeq, cseq_hdr);
        let presence_expires = self.cfg.presence.as_ref().map_or(600, |p| p.expires);
        match kind {
            OpKind::Register => {
                h.push(HeaderName::Contact, user.contact.clone());
                h.push(HeaderName::Expires, self.expires_hdr.clone());
            }
            OpKind::Message => {
                h.push(HeaderName::ContentType, "text/plain");
                req.body = format!("vienna-load message {cseq}").into_bytes();
            }
            OpKind::Call => {
                h.push(HeaderName::Contact, user.contact.clone());
                h.push(HeaderName::ContentType, "application/sdp");
                req.body = sdp(sock_addr).into_bytes();
            }
            OpKind::Subscribe => {
                h.push(HeaderName::Contact, user.contact.clone());
                h.push(HeaderName::Event, "presence");
                h.push(HeaderName::parse("Accept"), "application/pidf+xml");
                h.push(HeaderName::Expires, presence_expires.to_string());
            }
            OpKind::Publish => {
                h.push(HeaderName::Event, "presence");
                h.push(HeaderName::Expires, presence_expires.to_string());
                if let Some(etag) = &user.etag {
                    h.push(HeaderName::parse("SIP-If-Match"), etag.clone());
                }
                h.push(HeaderName::ContentType, "application/pidf+xml");
                user.pub_seq += 1;
                let run_id = self.cfg.presence.as_ref().map_or(0, |p| p.run_id);
                let sent_ns = now.saturating_duration_since(self.shared.base).as_nanos() as u64;
                req.body = pidf(&user.aor, run_id, user.g, user.pub_seq, sent_ns).into_bytes();
                if !op.setup {
                    self.shared.rounds.first_publish_ns.fetch_min(sent_ns, Relaxed);
                }
            }
        }
        // Credentials: the cached challenge of this user (reuse mode, or the answer to a challenge).
        let proxy = !matches!(kind, OpKind::Register);
        let answer = self.cfg.auth == AuthMode::Reuse || op.auth_tries > 0;
        let cache = if proxy { &mut user.proxy } else { &mut user.www };
        if answer && let Some(c) = cache.as_mut() {
            c.nc += 1;
            let cnonce = format!("{:016x}", self.rng.next_u64());
            let spec = &self.cfg.users[user.g];
            let ruri = req.uri.to_string();
            let creds = respond(&c.challenge, &spec.name, &spec.password, method.as_str(), &ruri, &cnonce, c.nc);
            let name = if proxy { HeaderName::ProxyAuthorization } else { HeaderName::Authorization };
            req.headers.push(name, creds.to_string());
        }
        let peer = Peer { transport: self.cfg.transport, addr: self.cfg.target };
        match self.socks[s].layer.send_request(now, req, peer) {
            Ok(id) => {
                op.tx = Some((s, id));
                op.tx_sent = now;
                self.tx_ops.insert((s, id), (i, g));
                if !op.setup {
                    self.out.transactions += 1;
                }
                self.touched[s] = true;
            }
            Err(e) => self.fail_op(now, i, g, format!("request not sent: {e}")),
        }
    }

    fn on_event(&mut self, now: Instant, s: usize, ev: TransactionEvent) {
        match ev {
            TransactionEvent::Response { id, response } => self.on_response(now, s, id, response),
            TransactionEvent::Timeout { id, .. } => {
                if let Some((i, g)) = self.tx_ops.remove(&(s, id)) {
                    self.fail_op(now, i, g, "timeout".into());
                }
            }
            TransactionEvent::TransportError { id } => {
                if let Some((i, g)) = self.tx_ops.remove(&(s, id)) {
                    self.fail_op(now, i, g, "transport".into());
                }
            }
            TransactionEvent::Terminated { id } => {
                self.tx_ops.remove(&(s, id));
            }
            TransactionEvent::Request { id, request, peer } => self.on_request(now, s, id, request, peer),
            TransactionEvent::Cancel { id, request, .. } => {
                let r = request.make_response(200, None);
                let _ = self.socks[s].layer.send_response(now, id, r);
            }
            TransactionEvent::Ack { request, .. } => {
                *self.out.tally.uas_requests.entry("ACK".into()).or_insert(0) += 1;
                if let Ok(cid) = request.headers.call_id()
                    && let Some(&(i, g)) = self.callee_by_call_id.get(cid)
                    && let Some(d) = self.callees.get_mut(i, g)
                {
                    d.acked = true;
                }
            }
            TransactionEvent::StrayResponse { .. } => self.out.stray += 1,
        }
    }

    fn on_response(&mut self, now: Instant, s: usize, id: TransactionId, resp: Response) {
        let Some(&(i, g)) = self.tx_ops.get(&(s, id)) else { return };
        let Some(op) = self.ops.get_mut(i, g) else {
            self.tx_ops.remove(&(s, id));
            return;
        };
        if resp.status < 200 {
            return;
        }
        let is_invite = op.kind == OpKind::Call && !op.bye_sent;
        if is_invite && op.dialog.is_some() {
            // A retransmitted 2xx: the ACK got lost; send it again.
            if (200..300).contains(&resp.status)
                && let Some(d) = &op.dialog
            {
                let (ack, hop) = (d.ack.clone(), d.first_hop);
                self.send_bytes(s, &ack, hop);
            }
            return;
        }
        let first_final = op.tx == Some((s, id));
        if !first_final {
            return;
        }
        let setup = op.setup;
        *self.out.tally.responses.entry(resp.status).or_insert(0) += 1;
        let rtt = now.saturating_duration_since(op.tx_sent).as_micros() as u64;
        if !setup {
            self.response_latency.saturating_record(rtt.max(1));
        }
        if !is_invite {
            self.tx_ops.remove(&(s, id));
        }
        op.tx = None;
        match resp.status {
            401 | 407 if op.auth_tries < MAX_AUTH_TRIES => {
                let proxy = resp.status == 407;
                let name = if proxy { HeaderName::ProxyAuthenticate } else { HeaderName::WwwAuthenticate };
                let Some(ch) = pick_challenge(resp.headers.get_all(&name), self.cfg.algorithm) else {
                    return self.fail_op(now, i, g, format!("{} without a usable challenge", resp.status));
                };
                op.auth_tries += 1;
                if is_invite {
                    self.tx_ops.remove(&(s, id));
                }
                if !setup {
                    self.out.challenges += 1;
                }
                let user = &mut self.users[op.user];
                let c = Some(AuthCache { challenge: ch, nc: 0 });
                if proxy {
                    user.proxy = c;
                } else {
                    user.www = c;
                }
                self.send_op_request(now, i, g);
            }
            412 if op.kind == OpKind::Publish && !op.retried_412 => {
                op.retried_412 = true;
                self.users[op.user].etag = None;
                self.send_op_request(now, i, g);
            }
            200..=299 => self.op_success(now, s, id, i, g, resp),
            code => {
                if is_invite {
                    self.tx_ops.remove(&(s, id));
                }
                self.fail_op(now, i, g, code.to_string());
            }
        }
    }

    fn op_success(&mut self, now: Instant, s: usize, id: TransactionId, i: usize, g: u32, resp: Response) {
        let Some(op) = self.ops.get_mut(i, g) else { return };
        match op.kind {
            OpKind::Call if !op.bye_sent => {
                // 2xx to the INVITE: dialog, ACK, BYE after the hold time.
                let Some(dialog) = make_dialog(
                    &mut self.socks[s],
                    &self.users[op.user],
                    op,
                    &resp,
                    self.cfg.target,
                    self.cfg.transport,
                    branch(&mut self.rng),
                ) else {
                    self.tx_ops.remove(&(s, id));
                    return self.fail_op(now, i, g, "2xx without a usable Contact".into());
                };
                let (ack, hop) = (dialog.ack.clone(), dialog.first_hop);
                let setup_us = now.saturating_duration_since(op.started).as_micros() as u64;
                op.dialog = Some(dialog);
                op.invite_tx = Some((s, id));
                self.send_bytes(s, &ack, hop);
                self.recorder.latency(&self.shared.collector, now, setup_us);
                self.timers.push(Reverse((now + self.cfg.hold, TimerKey::Bye(i, g))));
            }
            OpKind::Publish => {
                if let Some(etag) = resp.headers.get(&HeaderName::parse("SIP-ETag")) {
                    self.users[op.user].etag = Some(etag.to_owned());
                }
                let g_user = self.users[op.user].g;
                *self.out.published.entry(g_user).or_insert(0) += 1;
                let ns = now.saturating_duration_since(self.shared.base).as_nanos() as u64;
                self.shared.rounds.last_publish_ns.fetch_max(ns, Relaxed);
                self.finish_op(now, i, g, None);
            }
            OpKind::Subscribe => {
                *self.out.subscribed.entry(op.peer_user).or_insert(0) += 1;
                self.finish_op(now, i, g, None);
            }
            OpKind::Register => {
                self.users[op.user].registered = true;
                let us = now.saturating_duration_since(op.started).as_micros() as u64;
                self.finish_op(now, i, g, Some(us));
            }
            OpKind::Message => {
                let us = now.saturating_duration_since(op.started).as_micros() as u64;
                self.finish_op(now, i, g, Some(us));
            }
            OpKind::Call => self.finish_op(now, i, g, None),
        }
    }

    fn send_bye(&mut self, now: Instant, i: usize, g: u32) {
        let Some(op) = self.ops.get_mut(i, g) else { return };
        let Some(d) = &op.dialog else { return };
        let (target, route, to, hop) = (d.remote_target.clone(), d.route.clone(), d.to.clone(), d.first_hop);
        let u = op.user;
        let s = self.users[u].sock;
        if let Some(tx) = op.tx.take() {
            self.tx_ops.remove(&tx);
        }
        // The INVITE transaction may still pass 2xx retransmissions here: forget it.
        if let Some(tx) = op.invite_tx.take() {
            self.tx_ops.remove(&tx);
        }
        let user = &self.users[u];
        let mut bye = Request::new(Method::Bye, target);
        let branch = branch(&mut self.rng);
        let h = &mut bye.headers;
        h.push(
            HeaderName::Via,
            format!("SIP/2.0/{} {};branch={branch};rport", via_proto(self.cfg.transport), self.socks[s].addr),
        );
        for r in route {
            h.push(HeaderName::Route, r);
        }
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, user.from_hdr.clone());
        h.push(HeaderName::To, to);
        h.push(HeaderName::CallId, op.call_id.clone());
        op.cseq += 1;
        h.push(HeaderName::CSeq, format!("{} BYE", op.cseq));
        h.push(HeaderName::UserAgent, "vienna-load");
        op.bye_sent = true;
        // Over TCP everything goes over the one connection to the target.
        let hop = if self.cfg.transport.is_reliable() { self.cfg.target } else { hop };
        let peer = Peer { transport: self.cfg.transport, addr: hop };
        match self.socks[s].layer.send_request(now, bye, peer) {
            Ok(id) => {
                op.tx = Some((s, id));
                op.tx_sent = now;
                self.tx_ops.insert((s, id), (i, g));
                self.out.transactions += 1;
                self.touched[s] = true;
            }
            Err(e) => self.fail_op(now, i, g, format!("BYE not sent: {e}")),
        }
        self.pump(s, now);
    }

    fn finish_op(&mut self, now: Instant, i: usize, g: u32, latency_us: Option<u64>) {
        let Some(op) = self.ops.remove(i, g) else { return };
        self.users[op.user].busy = false;
        if op.setup {
            self.setup_inflight -= 1;
            self.out.setup_ok += 1;
            let c = self.counters();
            c.setup_done.fetch_add(1, Relaxed);
            c.setup_ok.fetch_add(1, Relaxed);
        } else {
            self.run_inflight -= 1;
            self.out.ok += 1;
            self.out.last_ok = Some(now);
            self.recorder.ok(now, 1);
            if let Some(us) = latency_us {
                self.recorder.latency(&self.shared.collector, now, us);
            }
        }
    }

    fn fail_op(&mut self, now: Instant, i: usize, g: u32, reason: String) {
        let Some(op) = self.ops.remove(i, g) else { return };
        for tx in [op.tx, op.invite_tx].into_iter().flatten() {
            self.tx_ops.remove(&tx);
        }
        self.users[op.user].busy = false;
        if op.kind == OpKind::Subscribe {
            self.subscriptions.remove(&op.call_id);
        }
        if op.setup {
            self.setup_inflight -= 1;
            self.setup_failure(format!("{}: {reason}", kind_name(op.kind)));
        } else {
            self.run_inflight -= 1;
            self.out.failed += 1;
            self.recorder.failed(now, 1);
            let key = if op.kind == OpKind::Call && op.bye_sent { format!("bye {reason}") } else { reason };
            *self.out.failures.entry(key).or_insert(0) += 1;
        }
    }

    fn setup_failure(&mut self, reason: String) {
        *self.out.setup_failures.entry(reason).or_insert(0) += 1;
        self.counters().setup_done.fetch_add(1, Relaxed);
    }

    // ---- UAS ----

    fn on_request(&mut self, now: Instant, s: usize, id: TransactionId, req: Request, peer: Peer) {
        *self.out.tally.uas_requests.entry(req.method.as_str().to_owned()).or_insert(0) += 1;
        let tag = format!("{:016x}", self.rng.next_u64());
        let sock_addr = self.socks[s].addr;
        let layer = &mut self.socks[s].layer;
        match req.method {
            Method::Message | Method::Options => {
                let _ = layer.send_response(now, id, req.make_response_with_tag(200, None, &tag));
            }
            Method::Invite => {
                let ringing = with_record_route(&req, req.make_response_with_tag(180, None, &tag));
                let _ = layer.send_response(now, id, ringing);
                let mut ok = with_record_route(&req, req.make_response_with_tag(200, None, &tag));
                ok.headers.push(HeaderName::Contact, format!("<{}>", req.uri));
                ok.headers.push(HeaderName::ContentType, "application/sdp");
                ok.body = sdp(sock_addr).into_bytes();
                let bytes = ok.to_bytes();
                let _ = layer.send_response(now, id, ok);
                let dest = req
                    .headers
                    .top_via()
                    .map(|v| vienna_sip::transaction::response_destination(&v, peer).addr)
                    .unwrap_or(peer.addr);
                let Ok(call_id) = req.headers.call_id().map(str::to_owned) else { return };
                let t1 = self.cfg.timers.t1;
                let d = CalleeDialog {
                    sock: s,
                    dest,
                    bytes,
                    interval: t1,
                    next: now + t1,
                    give_up: now + 64 * t1,
                    acked: false,
                    call_id: call_id.clone(),
                };
                let (i, g) = self.callees.insert(d);
                if let Some(old) = self.callee_by_call_id.insert(call_id, (i, g)) {
                    self.callees.remove(old.0, old.1);
                }
                self.timers.push(Reverse((now + t1, TimerKey::Callee(i, g))));
            }
            Method::Bye => {
                let known = req
                    .headers
                    .call_id()
                    .ok()
                    .and_then(|c| self.callee_by_call_id.remove(c))
                    .and_then(|(i, g)| self.callees.remove(i, g))
                    .is_some();
                let status = if known { 200 } else { 481 };
                let _ = self.socks[s].layer.send_response(now, id, req.make_response(status, None));
            }
            Method::Notify => {
                let _ = layer.send_response(now, id, req.make_response(200, None));
                self.on_notify(now, &req);
            }
            _ => {
                let _ = layer.send_response(now, id, req.make_response_with_tag(501, None, &tag));
            }
        }
        self.touched[s] = true;
    }

    fn retransmit_2xx(&mut self, now: Instant, i: usize, g: u32) {
        let t2 = self.cfg.timers.t2;
        let Some(d) = self.callees.get_mut(i, g) else { return };
        if d.acked {
            // Confirmed; the BYE removes it, or it goes after 64*T1.
            if now >= d.give_up {
                let cid = d.call_id.clone();
                self.callees.remove(i, g);
                self.callee_by_call_id.remove(&cid);
            } else {
                let at = d.give_up;
                self.timers.push(Reverse((at, TimerKey::Callee(i, g))));
            }
            return;
        }
        if now >= d.give_up {
            let cid = d.call_id.clone();
            self.callees.remove(i, g);
            self.callee_by_call_id.remove(&cid);
            *self.out.failures.entry("uas: no ACK for 2xx".into()).or_insert(0) += 1;
            return;
        }
        let (s, dest, bytes) = (d.sock, d.dest, d.bytes.clone());
        d.interval = (d.interval * 2).min(t2);
        d.next = now + d.interval;
        let next = d.next;
        self.timers.push(Reverse((next, TimerKey::Callee(i, g))));
        self.out.uas_2xx_retransmissions += 1;
        self.send_bytes(s, &bytes, dest);
        self.pump(s, now);
    }

    fn on_notify(&mut self, now: Instant, req: &Request) {
        self.out.notifies += 1;
        let Some(p) = &self.cfg.presence else { return };
        let Ok(cid) = req.headers.call_id() else { return };
        let Some(sub) = self.subscriptions.get_mut(cid) else { return };
        let Some(m) = find_marker(&req.body) else { return };
        if m.run_id != p.run_id || m.presentity != sub.presentity {
            return;
        }
        match sub.highest {
            Some(h) if m.seq == h => self.out.notifies_repeated += 1,
            Some(h) if m.seq < h => self.out.notifies_reordered += 1,
            _ => {
                sub.highest = Some(m.seq);
                self.out.notifies_matched += 1;
                let now_ns = now.saturating_duration_since(self.shared.base).as_nanos() as u64;
                let us = now_ns.saturating_sub(m.sent_ns) / 1000;
                let rounds = &self.shared.rounds;
                if m.sent_ns >= rounds.start_ns.load(Relaxed) {
                    rounds.last_notify_ns.fetch_max(now_ns, Relaxed);
                    self.shared.counters[self.index].round_notifies.fetch_add(1, Relaxed);
                }
                if now_ns >= self.shared.start_ns.load(Relaxed) && self.shared.start_ns.load(Relaxed) > 0 {
                    self.recorder.latency(&self.shared.collector, now, us);
                }
            }
        }
    }

    fn finish(mut self) -> Outcome {
        self.recorder.flush(&self.shared.collector);
        let mut out = self.out;
        out.bins = self.recorder.take_bins();
        out.latency = self.recorder.total;
        out.response_latency = self.response_latency;
        out.retransmissions = self.socks.iter().map(|s| s.layer.counters().retransmissions_sent).sum();
        out
    }
}

/// The dialog of a call from its 2xx (RFC 3261 §12.1.2, §13.2.2.4): route set from Record-Route in
/// reverse, remote target from Contact, and the ACK ready to send.
fn make_dialog(
    sock: &mut Sock,
    user: &User,
    op: &Op,
    resp: &Response,
    target: SocketAddr,
    transport: Transport,
    branch: String,
) -> Option<Dialog> {
    let contact = match resp.headers.contacts().ok()? {
        vienna_sip::Contacts::List(list) => list.into_iter().next()?,
        vienna_sip::Contacts::Wildcard => return None,
    };
    let mut route: Vec<String> = resp.headers.values(&HeaderName::RecordRoute).map(str::to_owned).collect();
    route.reverse();
    let first_hop = match route.first() {
        Some(r) => NameAddr::parse(r).ok().and_then(|n| addr_of(&n.uri)).unwrap_or(target),
        None => addr_of(&contact.uri).unwrap_or(target),
    };
    let to = resp.headers.get(&HeaderName::To)?.to_owned();
    let mut ack = Request::new(Method::Ack, contact.uri.clone());
    let h = &mut ack.headers;
    h.push(HeaderName::Via, format!("SIP/2.0/{} {};branch={branch};rport", via_proto(transport), sock.addr));
    for r in &route {
        h.push(HeaderName::Route, r.clone());
    }
    h.push(HeaderName::MaxForwards, "70");
    h.push(HeaderName::From, user.from_hdr.clone());
    h.push(HeaderName::To, to.clone());
    h.push(HeaderName::CallId, op.call_id.clone());
    h.push(HeaderName::CSeq, format!("{} ACK", op.cseq));
    Some(Dialog { route, remote_target: contact.uri, first_hop, to, ack: ack.to_bytes() })
}

/// A fresh RFC 3261 branch: the magic cookie and 64 random bits.
fn branch(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(23);
    push_branch(&mut s, rng);
    s
}

/// Appends a fresh branch to `out`.
fn push_branch(out: &mut String, rng: &mut Rng) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("z9hG4bK");
    let x = rng.next_u64();
    for i in (0..16).rev() {
        out.push(char::from(HEX[((x >> (i * 4)) & 0xf) as usize]));
    }
}

fn via_proto(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => "TCP",
        Transport::Tls => "TLS",
        _ => "UDP",
    }
}

fn self_uri(cfg: &Config, g: usize) -> String {
    let name = cfg.users.get(g).map_or("", |u| u.name.as_str());
    format!("sip:{name}@{}", cfg.domain)
}

fn kind_name(k: OpKind) -> &'static str {
    match k {
        OpKind::Register => "register",
        OpKind::Message => "message",
        OpKind::Call => "call",
        OpKind::Subscribe => "subscribe",
        OpKind::Publish => "publish",
    }
}

/// The socket address of a SIP URI whose host is an IP address.
fn addr_of(uri: &Uri) -> Option<SocketAddr> {
    let u = uri.as_sip()?;
    let host = u.host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, u.port.unwrap_or(5060)))
}

fn with_record_route(req: &Request, mut resp: Response) -> Response {
    for h in req.headers.iter().filter(|h| h.name == HeaderName::RecordRoute) {
        resp.headers.0.push(h.clone());
    }
    resp
}

/// The challenge to answer among those offered.
fn pick_challenge<'a>(values: impl Iterator<Item = &'a str>, choice: AlgorithmChoice) -> Option<Challenge> {
    let offered: Vec<Challenge> = values.filter_map(|v| Challenge::parse(v).ok()).collect();
    let find = |a: Algorithm| offered.iter().find(|c| c.algorithm == a).cloned();
    match choice {
        AlgorithmChoice::Best => find(Algorithm::Sha256).or_else(|| find(Algorithm::Md5)),
        AlgorithmChoice::Md5 => find(Algorithm::Md5),
        AlgorithmChoice::Sha256 => find(Algorithm::Sha256),
    }
}

fn sdp(addr: SocketAddr) -> String {
    let ip = addr.ip();
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=vienna-load 1 1 IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        addr.port().wrapping_add(2) & 0xfffe
    )
}

/// A PIDF document (RFC 3863) whose note carries the marker `vl-RUN-PRESENTITY-SEQ-SENTNS`.
pub fn pidf(entity: &str, run_id: u32, presentity: usize, seq: u64, sent_ns: u64) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{entity}\">\n\
         <tuple id=\"vl\"><status><basic>open</basic></status>\
         <note>vl-{run_id}-{presentity}-{seq}-{sent_ns}</note></tuple>\n</presence>\n"
    )
}

/// A PUBLISH marker found in a NOTIFY body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Run tag.
    pub run_id: u32,
    /// Publishing user (global index).
    pub presentity: usize,
    /// Its PUBLISH number.
    pub seq: u64,
    /// Send time, ns after the clock origin.
    pub sent_ns: u64,
}

/// The last marker in `body` (a server may aggregate several tuples; the newest state wins by seq).
pub fn find_marker(body: &[u8]) -> Option<Marker> {
    let text = std::str::from_utf8(body).ok()?;
    let mut best: Option<Marker> = None;
    for (at, _) in text.match_indices("vl-") {
        let rest = &text[at + 3..];
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(rest.len());
        let mut f = rest[..end].split('-');
        let (Some(r), Some(p), Some(s), Some(t)) = (f.next(), f.next(), f.next(), f.next()) else { continue };
        let (Ok(run_id), Ok(presentity), Ok(seq), Ok(sent_ns)) = (r.parse(), p.parse(), s.parse(), t.parse()) else {
            continue;
        };
        let m = Marker { run_id, presentity, seq, sent_ns };
        if best.is_none_or(|b| m.seq > b.seq) {
            best = Some(m);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_roundtrip() {
        let body = pidf("sip:a@x", 7, 3, 42, 123_456_789);
        assert_eq!(
            find_marker(body.as_bytes()),
            Some(Marker { run_id: 7, presentity: 3, seq: 42, sent_ns: 123_456_789 })
        );
        let two = format!("{}{}", pidf("sip:a@x", 7, 3, 41, 1), pidf("sip:a@x", 7, 3, 43, 2));
        assert_eq!(find_marker(two.as_bytes()).map(|m| m.seq), Some(43));
        assert_eq!(find_marker(b"<note>vl-1-2</note>"), None);
        assert_eq!(find_marker(b"\xff\xfe"), None);
        assert_eq!(find_marker(b""), None);
    }

    #[test]
    fn challenge_choice() {
        let md5 = "Digest realm=\"r\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"";
        let sha = "Digest realm=\"r\", nonce=\"n2\", algorithm=SHA-256, qop=\"auth\"";
        let both = [md5, sha];
        assert_eq!(pick_challenge(both.iter().copied(), AlgorithmChoice::Best).unwrap().nonce, "n2");
        assert_eq!(pick_challenge(both.iter().copied(), AlgorithmChoice::Md5).unwrap().nonce, "n1");
        assert!(pick_challenge([md5].iter().copied(), AlgorithmChoice::Sha256).is_none());
        assert!(pick_challenge(["Basic realm=\"x\""].iter().copied(), AlgorithmChoice::Best).is_none());
    }

    #[test]
    fn slab_generations() {
        let mut s = Slab::new();
        let (i, g) = s.insert(1);
        assert_eq!(s.remove(i, g), Some(1));
        let (j, h) = s.insert(2);
        assert_eq!(i, j);
        assert_ne!(g, h);
        assert!(s.get_mut(i, g).is_none(), "stale reference");
        assert_eq!(s.get_mut(j, h), Some(&mut 2));
    }

    #[test]
    fn uri_addresses() {
        assert_eq!(addr_of(&Uri::parse("sip:a@127.0.0.1:5070").unwrap()), Some("127.0.0.1:5070".parse().unwrap()));
        assert_eq!(addr_of(&Uri::parse("sip:127.0.0.1;lr").unwrap()), Some("127.0.0.1:5060".parse().unwrap()));
        assert_eq!(addr_of(&Uri::parse("sip:[::1]:5080").unwrap()), Some("[::1]:5080".parse().unwrap()));
        assert_eq!(addr_of(&Uri::parse("sip:example.org").unwrap()), None);
    }
}
