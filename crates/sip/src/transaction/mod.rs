//! RFC 3261 §17 transactions, sans-IO, with RFC 6026's Accepted state, and the §18 transport rules that sit
//! beside them (Via `received`/`rport` stamping per §18.2.1 and RFC 3581, response destinations per §18.2.2).
//!
//! A [`TransactionLayer`] owns every client and server transaction. The driver feeds it received messages
//! ([`TransactionLayer::handle_bytes`] for datagrams, [`TransactionLayer::handle_message`] for framed stream
//! messages) and the TU calls [`TransactionLayer::send_request`], [`TransactionLayer::send_response`],
//! [`TransactionLayer::cancel`] and [`TransactionLayer::send_stateless`]. Everything the layer wants done
//! comes out of [`TransactionLayer::poll_output`] as a [`Transmit`] or a [`TransactionEvent`];
//! [`TransactionLayer::poll_timeout`] says when to call [`TransactionLayer::handle_timeout`].
//!
//! Implemented: the four state machines (§17.1.1 INVITE client with timers A, B, D and proxy Timer C of
//! §16.8, §17.1.2 non-INVITE client with E, F, K, §17.2.1 INVITE server with G, H, I and the 200 ms
//! automatic 100 Trying, §17.2.2 non-INVITE server with J), RFC 6026 Accepted states (Timers L and M: 2xx
//! retransmissions pass to the TU, INVITE retransmissions are absorbed), reliable-transport timer rules,
//! ACK generation for non-2xx finals (§17.1.1.3), CANCEL construction (§9.1) and matching to the INVITE
//! server transaction (§9.2), matching by branch (§17.1.3, §17.2.3) with the RFC 2543 fallback (§17.2.3
//! last paragraph: Request-URI, From tag, Call-ID, CSeq number and top Via; ACK matches its INVITE).
//!
//! Left out: DNS failover to the next server on transport error (§4 of RFC 3263; the TU decides), the
//! RFC 3261 §17.1.1.2 "transport error" detection itself (the driver reports it with
//! [`TransactionLayer::transport_error`]), and statelessly forwarding anything (the proxy TU does).

mod completed;
mod state;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::header::HeaderName;
use crate::message::{Framing, Limits, Message, Request, Response, error_response};
use crate::types::{MAGIC_COOKIE, Method, Via};
use crate::{ParseError, Transport};

use completed::CompletedCache;
use state::{Kind, Transaction};
pub use state::{State, Timer};

/// Timer values (RFC 3261 Table 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, 500 ms by default.
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses, 4 s.
    pub t2: Duration,
    /// Longest time a message stays in the network, 5 s.
    pub t4: Duration,
    /// Proxy INVITE Timer C (§16.6 step 11), more than 3 minutes; 180 s here.
    pub timer_c: Duration,
    /// When an INVITE server transaction sends 100 Trying by itself if the TU has not sent a provisional
    /// response (§17.2.1: 200 ms). Zero sends it at once.
    pub trying_after: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(180),
            trying_after: Duration::from_millis(200),
        }
    }
}

/// The other end of a message: transport and address. On streams the driver maps it to its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Transport.
    pub transport: Transport,
    /// Remote address (source of a received message, destination of a sent one).
    pub addr: SocketAddr,
}

/// Identifies a transaction in events and API calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(pub u64);

/// Hashes [`TransactionId`]s, which this layer hands out in sequence (so nobody outside can aim at the
/// table): a multiplication spreads them over the whole `u64`, far cheaper than SipHash.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Bytes to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to (on a stream: the connection to this peer, opening one if needed for requests).
    pub peer: Peer,
    /// The serialized message.
    pub bytes: Vec<u8>,
}

/// What the layer tells the TU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransactionEvent {
    /// A new request (not ACK, not CANCEL) created server transaction `id`. Answer with
    /// [`TransactionLayer::send_response`].
    Request {
        /// The new server transaction.
        id: TransactionId,
        /// The request, top Via stamped with `received`/`rport`.
        request: Request,
        /// Where it came from.
        peer: Peer,
    },
    /// A CANCEL created its own server transaction `id`; `invite` is the INVITE server transaction it
    /// matches, or `None` (answer 481, §9.2). Answer the CANCEL 200; if the INVITE transaction is still
    /// [`State::Proceeding`] a UAS answers it 487 and a proxy cancels its branches (§16.10), otherwise the
    /// CANCEL has no further effect.
    Cancel {
        /// The CANCEL's server transaction.
        id: TransactionId,
        /// The matching INVITE server transaction, if it is still proceeding.
        invite: Option<TransactionId>,
        /// The CANCEL.
        request: Request,
        /// Where it came from.
        peer: Peer,
    },
    /// An ACK that is not part of a transaction: the ACK for a 2xx (end to end; a proxy forwards it), or
    /// one for a transaction that no longer exists. ACKs for non-2xx responses are absorbed.
    Ack {
        /// The ACK.
        request: Request,
        /// Where it came from.
        peer: Peer,
    },
    /// A response for client transaction `id`: every provisional, every 2xx (including retransmissions
    /// absorbed in the Accepted state), and the first non-2xx final.
    Response {
        /// The client transaction.
        id: TransactionId,
        /// The response.
        response: Response,
    },
    /// A response that matches no client transaction (a 2xx retransmission after Timer M, or junk).
    StrayResponse {
        /// The response.
        response: Response,
        /// Where it came from.
        peer: Peer,
    },
    /// A timer expired: Timer B or F (client: treat as 408), Timer H (server: the ACK never came), or
    /// Timer C (proxy INVITE: CANCEL the branch if it had a provisional, else treat as 408).
    Timeout {
        /// The transaction.
        id: TransactionId,
        /// Which timer.
        timer: Timer,
    },
    /// The driver reported a transport failure for this transaction (§17.1.4, §17.2.4).
    TransportError {
        /// The transaction.
        id: TransactionId,
    },
    /// The transaction is gone; forget its id.
    Terminated {
        /// The transaction.
        id: TransactionId,
    },
}

/// One item of output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send bytes.
    Transmit(Transmit),
    /// Tell the TU.
    Event(TransactionEvent),
}

/// Options of a client transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// Run proxy Timer C on an INVITE client transaction (§16.6 step 11).
    pub timer_c: bool,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Client transactions created.
    pub client_created: u64,
    /// Server transactions created.
    pub server_created: u64,
    /// Retransmitted requests absorbed by server transactions.
    pub retransmissions_absorbed: u64,
    /// Messages sent again by timers.
    pub retransmissions_sent: u64,
    /// Received messages that failed to parse.
    pub parse_errors: u64,
    /// Timeouts (B, F, H, C).
    pub timeouts: u64,
    /// New requests refused with 503 because the transaction table was full.
    pub overload_rejected: u64,
}

/// A server transaction's key (§17.2.3) as bytes: the fields that match a request to its transaction,
/// each after its length, so that no two keys run together. Built into a reused buffer, so matching a
/// request allocates nothing.
type ServerKey = Box<[u8]>;

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_le_bytes());
    out.extend_from_slice(field);
}

/// Writes the key of server transaction `method` for `req` with top Via `via` into `out` (cleared first):
/// branch, sent-by and method for an RFC 3261 branch; Request-URI, From tag, Call-ID, CSeq number, top Via
/// and method otherwise (ACK is matched as its INVITE: pass [`Method::Invite`]). `false` when the request
/// lacks what the key needs.
fn server_key(req: &Request, via: &Via, method: &Method, out: &mut Vec<u8>) -> bool {
    out.clear();
    if via.is_rfc3261() {
        let Some(branch) = via.branch() else { return false };
        out.push(b'3');
        push_field(out, method.as_str().as_bytes());
        push_field(out, branch.as_bytes());
        // sent-by, case-insensitively: host[:port] in lower case.
        let start = out.len();
        push_field(out, via.host.as_bytes());
        out[start + 4..].make_ascii_lowercase();
        out.extend_from_slice(&via.port.map_or(0, |p| u32::from(p) + 1).to_le_bytes());
        return true;
    }
    let (Ok(from), Ok(call_id), Ok(cseq)) = (req.headers.from(), req.headers.call_id(), req.headers.cseq()) else {
        return false;
    };
    out.push(b'2');
    push_field(out, method.as_str().as_bytes());
    push_field(out, req.uri.to_string().as_bytes());
    push_field(out, from.tag().unwrap_or("").as_bytes());
    push_field(out, call_id.as_bytes());
    out.extend_from_slice(&cseq.seq.to_le_bytes());
    push_field(out, via.to_string().as_bytes());
    true
}

/// The method a request's server transaction is keyed under: an ACK matches its INVITE.
fn key_method(method: &Method) -> &Method {
    match method {
        Method::Ack => &Method::Invite,
        m => m,
    }
}

/// Where a response to a request received from `peer` with top Via `via` goes (RFC 3261 §18.2.2, RFC 3581
/// §4): back to the source on reliable transports and when `rport` was requested; otherwise to the source
/// address at the sent-by port (5060 by default). `maddr` is not honoured.
pub fn response_destination(via: &Via, peer: Peer) -> Peer {
    if peer.transport.is_reliable() || via.rport().is_some() {
        return peer;
    }
    let port = via.port.unwrap_or(5060);
    Peer { transport: peer.transport, addr: SocketAddr::new(peer.addr.ip(), port) }
}

/// Stamps `received` and `rport` on the top Via of a received request (§18.2.1, RFC 3581 §4).
pub fn stamp_via(req: &mut Request, peer: Peer) {
    if let Ok(via) = req.headers.top_via() {
        stamp_parsed_via(req, via, peer);
    }
}

/// [`stamp_via`] with the top Via already parsed; returns the Via as stamped.
fn stamp_parsed_via(req: &mut Request, mut via: Via, peer: Peer) -> Via {
    let ip = peer.addr.ip().to_string();
    let host = via.host.trim_start_matches('[').trim_end_matches(']');
    let wants_rport = via.rport().is_some();
    if host == ip && !wants_rport {
        return via; // nothing to add: keep the Via exactly as received
    }
    let Some(h) = req.headers.0.iter_mut().find(|h| h.name == HeaderName::Via) else { return via };
    let first = crate::header::split_comma(&h.value).next().unwrap_or("").to_owned();
    if host != ip || wants_rport {
        via.params.set("received", Some(ip));
    }
    if wants_rport {
        via.params.set("rport", Some(peer.addr.port().to_string()));
    }
    let rest = h.value[h.value.find(&first).map_or(h.value.len(), |i| i + first.len())..].to_owned();
    h.value = format!("{via}{rest}");
    via
}

/// Builds the CANCEL for an INVITE (§9.1): same Request-URI, Call-ID, From, To, CSeq number, the top Via
/// only, the Route headers, Max-Forwards 70.
pub fn make_cancel(invite: &Request) -> Request {
    let mut c = Request::new(Method::Cancel, invite.uri.clone());
    if let Some(v) = invite.headers.values(&HeaderName::Via).next() {
        c.headers.push(HeaderName::Via, v);
    }
    for h in invite.headers.iter() {
        if matches!(h.name, HeaderName::Route | HeaderName::From | HeaderName::To | HeaderName::CallId) {
            c.headers.0.push(h.clone());
        }
    }
    c.headers.push(HeaderName::MaxForwards, "70");
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
    c.headers.push(HeaderName::CSeq, format!("{seq} CANCEL"));
    c
}

/// Builds the ACK for a non-2xx final response to `invite` (§17.1.1.3).
pub fn make_ack(invite: &Request, response: &Response) -> Request {
    let mut a = Request::new(Method::Ack, invite.uri.clone());
    if let Some(v) = invite.headers.values(&HeaderName::Via).next() {
        a.headers.push(HeaderName::Via, v);
    }
    for h in invite.headers.iter() {
        if matches!(h.name, HeaderName::Route | HeaderName::From | HeaderName::CallId) {
            a.headers.0.push(h.clone());
        }
    }
    if let Some(to) = response.headers.get(&HeaderName::To) {
        a.headers.push(HeaderName::To, to);
    }
    a.headers.push(HeaderName::MaxForwards, "70");
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
    a.headers.push(HeaderName::CSeq, format!("{seq} ACK"));
    a
}

/// Owns every transaction. See the module docs.
#[derive(Debug)]
pub struct TransactionLayer {
    config: TimerConfig,
    limits: Limits,
    seed: [u8; 32],
    counter: u64,
    next_id: u64,
    /// Boxed, so the table stays small (a non-INVITE server transaction lives 64*T1 over UDP: tens of
    /// thousands of them under load) and growing or rehashing it moves pointers, not transactions.
    txs: HashMap<TransactionId, Box<Transaction>, BuildHasherDefault<IdHasher>>,
    server_keys: HashMap<ServerKey, TransactionId>,
    client_keys: HashMap<(String, Method), TransactionId>,
    timers: BinaryHeap<Reverse<(Instant, TransactionId, Timer)>>,
    /// Completed non-INVITE server transactions over unreliable transports, as their final response only.
    completed: CompletedCache,
    /// Reused to build the key of each request received.
    key_buf: Vec<u8>,
    out: VecDeque<Output>,
    counters: Counters,
    max_transactions: usize,
}

impl TransactionLayer {
    /// A layer with these timers and limits. `seed` must be random: branches and tags derive from it.
    pub fn new(config: TimerConfig, limits: Limits, seed: [u8; 32]) -> Self {
        TransactionLayer {
            config,
            limits,
            seed,
            counter: 0,
            next_id: 1,
            txs: HashMap::default(),
            server_keys: HashMap::new(),
            client_keys: HashMap::new(),
            timers: BinaryHeap::new(),
            completed: CompletedCache::new(),
            key_buf: Vec::new(),
            out: VecDeque::new(),
            counters: Counters::default(),
            max_transactions: usize::MAX,
        }
    }

    /// Caps the number of live transactions and completed non-INVITE ones whose response is kept for
    /// retransmissions ([`TransactionLayer::completed_len`]) together: beyond it, new requests are answered
    /// `503 Service Unavailable` with `Retry-After` statelessly and counted in [`Counters::overload_rejected`].
    pub fn set_max_transactions(&mut self, max: usize) {
        self.max_transactions = max;
    }

    /// The timer configuration.
    pub fn config(&self) -> &TimerConfig {
        &self.config
    }

    /// Counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Number of live transactions (not counting [`TransactionLayer::completed_len`]).
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Completed non-INVITE server transactions over unreliable transports still answering retransmissions
    /// (until their Timer J). They are kept as their final response alone: their ids are gone (the TU heard
    /// [`TransactionEvent::Terminated`] when the final response was sent).
    pub fn completed_len(&self) -> usize {
        self.completed.len()
    }

    /// Whether there are no live transactions.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// The state of a transaction, if it exists.
    pub fn state(&self, id: TransactionId) -> Option<State> {
        self.txs.get(&id).map(|t| t.state)
    }

    /// The request that created a client or INVITE server transaction (non-INVITE server transactions do not
    /// keep it).
    pub fn request(&self, id: TransactionId) -> Option<&Request> {
        self.txs.get(&id).and_then(|t| t.request.as_deref())
    }

    fn random_hex(&mut self, bytes: usize) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.counter += 1;
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(self.counter.to_be_bytes());
        let d = h.finalize();
        let mut s = String::with_capacity(2 * bytes);
        for b in &d[..bytes] {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }

    /// A fresh RFC 3261 branch (`z9hG4bK` + 20 hex digits).
    pub fn new_branch(&mut self) -> String {
        format!("{MAGIC_COOKIE}{}", self.random_hex(10))
    }

    /// A fresh tag for From/To (16 hex digits).
    pub fn new_tag(&mut self) -> String {
        self.random_hex(8)
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`TransactionLayer::handle_timeout`] is next due (may be early, never late).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
        match (timer, self.completed.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn alloc_id(&mut self) -> TransactionId {
        let id = TransactionId(self.next_id);
        self.next_id += 1;
        id
    }

    fn event(&mut self, e: TransactionEvent) {
        self.out.push_back(Output::Event(e));
    }

    fn transmit(&mut self, peer: Peer, bytes: Vec<u8>) {
        self.out.push_back(Output::Transmit(Transmit { peer, bytes }));
    }

    fn arm(&mut self, id: TransactionId, timer: Timer, at: Instant) {
        if let Some(t) = self.txs.get_mut(&id) {
            t.set_timer(timer, at);
            self.timers.push(Reverse((at, id, timer)));
        }
    }

    /// A datagram arrived. Unparseable requests are answered (400/413/505) when possible and counted;
    /// unparseable responses are dropped.
    pub fn handle_bytes(&mut self, now: Instant, peer: Peer, bytes: &[u8]) {
        match Message::parse_validated(bytes, &self.limits, Framing::Datagram) {
            Ok((Message::Request(r), via)) => self.handle_request(now, peer, r, Some(via)),
            Ok((Message::Response(r), via)) => self.handle_response(now, peer, r, Some(via)),
            Err(e) => self.handle_parse_error(peer, bytes, &e),
        }
    }

    /// Answers a message that failed to parse if it was a request (and counts it).
    pub fn handle_parse_error(&mut self, peer: Peer, bytes: &[u8], error: &ParseError) {
        self.counters.parse_errors += 1;
        if let Some(resp) = error_response(bytes, error) {
            let dest = match resp.headers.top_via() {
                Ok(v) => response_destination(&v, peer),
                Err(_) => peer,
            };
            self.transmit(dest, resp.to_bytes());
        }
    }

    /// A parsed message arrived (a datagram, or a frame from [`crate::framing::StreamFramer`]).
    pub fn handle_message(&mut self, now: Instant, peer: Peer, msg: Message) {
        match msg {
            Message::Request(r) => self.handle_request(now, peer, r, None),
            Message::Response(r) => self.handle_response(now, peer, r, None),
        }
    }

    /// A request arrived; `via` is its top Via when the parser already has it.
    fn handle_request(&mut self, now: Instant, peer: Peer, req: Request, via: Option<Via>) {
        let mut key = std::mem::take(&mut self.key_buf);
        self.match_request(now, peer, req, via, &mut key);
        self.key_buf = key;
    }

    /// [`TransactionLayer::handle_request`] with `key` as the buffer for the request's transaction key.
    fn match_request(&mut self, now: Instant, peer: Peer, mut req: Request, via: Option<Via>, key: &mut Vec<u8>) {
        let Some(via) = via.or_else(|| req.headers.top_via().ok()) else {
            self.counters.parse_errors += 1;
            return;
        };
        if !server_key(&req, &via, key_method(&req.method), key) {
            self.counters.parse_errors += 1;
            return;
        }
        // A CANCEL names the INVITE transaction it cancels by the same fields (§9.2), before stamping.
        let mut invite_key = Vec::new();
        if req.method == Method::Cancel {
            server_key(&req, &via, &Method::Invite, &mut invite_key);
        }
        let via = stamp_parsed_via(&mut req, via, peer);
        let dest = response_destination(&via, peer);
        if let Some(&id) = self.server_keys.get(key.as_slice()) {
            self.server_retransmission(now, id, req, peer);
            return;
        }
        if req.method != Method::Ack
            && let Some((to, bytes)) = self.completed.get(now, key)
        {
            // A retransmission of a request answered in a completed non-INVITE transaction: the same answer.
            self.counters.retransmissions_absorbed += 1;
            let bytes = bytes.to_vec();
            self.transmit(to, bytes);
            return;
        }
        if req.method != Method::Ack && self.txs.len() + self.completed.len() >= self.max_transactions {
            self.counters.overload_rejected += 1;
            let mut resp = req.make_response(503, None);
            resp.headers.push(HeaderName::RetryAfter, "5");
            self.transmit(dest, resp.to_bytes());
            return;
        }
        match req.method {
            Method::Ack => self.event(TransactionEvent::Ack { request: req, peer }),
            Method::Cancel => {
                let id = self.new_server(now, key.as_slice().into(), &req, dest);
                let invite = self.server_keys.get(invite_key.as_slice()).copied();
                self.event(TransactionEvent::Cancel { id, invite, request: req, peer });
            }
            _ => {
                let id = self.new_server(now, key.as_slice().into(), &req, dest);
                self.event(TransactionEvent::Request { id, request: req, peer });
            }
        }
    }

    /// A server transaction answering to `dest`. Only INVITE transactions keep the request (for 100 Trying).
    fn new_server(&mut self, now: Instant, key: ServerKey, req: &Request, dest: Peer) -> TransactionId {
        let id = self.alloc_id();
        self.counters.server_created += 1;
        let invite = req.method == Method::Invite;
        let kind = if invite { Kind::ServerInvite } else { Kind::ServerNonInvite };
        let state = if invite { State::Proceeding } else { State::Trying };
        let kept = invite.then(|| req.clone());
        self.txs.insert(id, Box::new(Transaction::new(id, kind, state, dest, kept, Vec::new(), Some(key.clone()))));
        self.server_keys.insert(key, id);
        if invite {
            if self.config.trying_after.is_zero() {
                self.send_trying(id);
            } else {
                self.arm(id, Timer::Trying, now + self.config.trying_after);
            }
        }
        id
    }

    fn send_trying(&mut self, id: TransactionId) {
        let Some(t) = self.txs.get_mut(&id) else { return };
        let Some(req) = &t.request else { return };
        if t.last_response.is_some() {
            return;
        }
        let bytes = req.make_response(100, None).to_bytes();
        t.last_response = Some(bytes.clone());
        let peer = t.peer;
        self.transmit(peer, bytes);
    }

    fn server_retransmission(&mut self, now: Instant, id: TransactionId, req: Request, peer: Peer) {
        let Some(t) = self.txs.get_mut(&id) else { return };
        let reliable = t.peer.transport.is_reliable();
        match (t.kind, t.state, &req.method) {
            (Kind::ServerInvite, State::Completed, Method::Ack) => {
                t.state = State::Confirmed;
                t.clear_timers();
                let wait = if reliable { Duration::ZERO } else { self.config.t4 };
                self.arm(id, Timer::I, now + wait);
            }
            (Kind::ServerInvite, _, Method::Ack) => {
                // ACK in Accepted (RFC 2543-style 2xx ACK matching the INVITE) goes to the TU; others absorbed.
                if t.state == State::Accepted {
                    self.event(TransactionEvent::Ack { request: req, peer });
                } else {
                    self.counters.retransmissions_absorbed += 1;
                }
            }
            (kind, State::Proceeding | State::Completed, _) => {
                self.counters.retransmissions_absorbed += 1;
                if let Some(b) = t.last_response.clone() {
                    let p = t.peer;
                    self.transmit(p, b);
                } else if kind == Kind::ServerInvite {
                    // The client retransmits before our 200 ms: answer 100 Trying now.
                    t.clear_timer(Timer::Trying);
                    self.send_trying(id);
                }
            }
            _ => self.counters.retransmissions_absorbed += 1,
        }
    }

    /// A response arrived; `via` is its top Via when the parser already has it.
    fn handle_response(&mut self, now: Instant, peer: Peer, resp: Response, via: Option<Via>) {
        let via = via.map_or_else(|| resp.headers.top_via(), Ok);
        let key = match (via, resp.headers.cseq()) {
            (Ok(v), Ok(c)) => v.branch().map(|b| (b.to_owned(), c.method)),
            _ => None,
        };
        let Some(&id) = key.as_ref().and_then(|k| self.client_keys.get(k)) else {
            self.event(TransactionEvent::StrayResponse { response: resp, peer });
            return;
        };
        let Some(t) = self.txs.get_mut(&id) else { return };
        let reliable = t.peer.transport.is_reliable();
        let status = resp.status;
        let c = self.config;
        match (t.kind, t.state) {
            (Kind::ClientInvite, State::Calling | State::Proceeding) => {
                if status < 200 {
                    if t.state == State::Calling {
                        t.clear_timer(Timer::A);
                        t.clear_timer(Timer::B);
                    }
                    t.state = State::Proceeding;
                    t.got_provisional = true;
                    let timer_c = t.timer_c;
                    let cancel = std::mem::take(&mut t.cancel_pending);
                    if timer_c {
                        self.arm(id, Timer::C, now + c.timer_c);
                    }
                    self.event(TransactionEvent::Response { id, response: resp });
                    if cancel {
                        let _ = self.cancel(now, id);
                    }
                } else if status < 300 {
                    t.state = State::Accepted;
                    t.clear_timers();
                    self.arm(id, Timer::M, now + 64 * c.t1);
                    self.event(TransactionEvent::Response { id, response: resp });
                } else {
                    t.state = State::Completed;
                    t.clear_timers();
                    let ack = t.request.as_ref().map(|r| make_ack(r, &resp).to_bytes()).unwrap_or_default();
                    t.ack = Some(ack.clone());
                    let p = t.peer;
                    self.transmit(p, ack);
                    let wait = if reliable { Duration::ZERO } else { Duration::from_secs(32).max(64 * c.t1) };
                    self.arm(id, Timer::D, now + wait);
                    self.event(TransactionEvent::Response { id, response: resp });
                }
            }
            (Kind::ClientInvite, State::Accepted) if (200..300).contains(&status) => {
                self.event(TransactionEvent::Response { id, response: resp });
            }
            (Kind::ClientInvite, State::Completed) if status >= 300 => {
                if let Some(a) = t.ack.clone() {
                    let p = t.peer;
                    self.transmit(p, a);
                }
            }
            (Kind::ClientNonInvite, State::Trying | State::Proceeding) => {
                if status < 200 {
                    t.state = State::Proceeding;
                } else {
                    t.state = State::Completed;
                    t.clear_timers();
                    let wait = if reliable { Duration::ZERO } else { c.t4 };
                    self.arm(id, Timer::K, now + wait);
                }
                self.event(TransactionEvent::Response { id, response: resp });
            }
            _ => self.counters.retransmissions_absorbed += 1,
        }
    }

    /// Starts a client transaction for `request` (not ACK) towards `peer`. The request must carry its own
    /// top Via with an RFC 3261 branch ([`TransactionLayer::new_branch`]).
    pub fn send_request(&mut self, now: Instant, request: Request, peer: Peer) -> Result<TransactionId, Error> {
        self.send_request_with(now, request, peer, ClientOptions::default())
    }

    /// [`TransactionLayer::send_request`] with options (proxy Timer C).
    pub fn send_request_with(
        &mut self,
        now: Instant,
        request: Request,
        peer: Peer,
        opts: ClientOptions,
    ) -> Result<TransactionId, Error> {
        if request.method == Method::Ack {
            return Err(Error::AckNeedsNoTransaction);
        }
        let via = request.headers.top_via().map_err(|_| Error::MissingBranch)?;
        if !via.is_rfc3261() {
            return Err(Error::MissingBranch);
        }
        let key = (via.branch().unwrap_or_default().to_owned(), request.method.clone());
        if self.client_keys.contains_key(&key) {
            return Err(Error::DuplicateTransaction);
        }
        let id = self.alloc_id();
        self.counters.client_created += 1;
        let bytes = request.to_bytes();
        let invite = request.method == Method::Invite;
        let (kind, state) =
            if invite { (Kind::ClientInvite, State::Calling) } else { (Kind::ClientNonInvite, State::Trying) };
        let mut t = Box::new(Transaction::new(id, kind, state, peer, Some(request), bytes.clone(), None));
        t.timer_c = invite && opts.timer_c;
        t.interval = self.config.t1;
        self.txs.insert(id, t);
        self.client_keys.insert(key, id);
        self.transmit(peer, bytes);
        let c = self.config;
        if invite {
            if !peer.transport.is_reliable() {
                self.arm(id, Timer::A, now + c.t1);
            }
            self.arm(id, Timer::B, now + 64 * c.t1);
            if opts.timer_c {
                self.arm(id, Timer::C, now + c.timer_c);
            }
        } else {
            if !peer.transport.is_reliable() {
                self.arm(id, Timer::E, now + c.t1);
            }
            self.arm(id, Timer::F, now + 64 * c.t1);
        }
        Ok(id)
    }

    /// Cancels INVITE client transaction `id` (§9.1): sends a CANCEL in its own client transaction, whose id
    /// is returned. Before a provisional response arrived, the CANCEL waits for one (returns `Ok(None)`).
    pub fn cancel(&mut self, now: Instant, id: TransactionId) -> Result<Option<TransactionId>, Error> {
        let t = self.txs.get_mut(&id).ok_or(Error::NoTransaction)?;
        if t.kind != Kind::ClientInvite {
            return Err(Error::InvalidState);
        }
        match t.state {
            State::Calling => {
                t.cancel_pending = true;
                Ok(None)
            }
            State::Proceeding => {
                let Some(cancel) = t.request.as_deref().map(make_cancel) else { return Err(Error::InvalidState) };
                let peer = t.peer;
                // §9.1: without a final response 64*T1 after the CANCEL, the INVITE transaction is destroyed
                // (reported as a Timer B timeout).
                let guard = now + 64 * self.config.t1;
                self.arm(id, Timer::B, guard);
                self.send_request(now, cancel, peer).map(Some)
            }
            _ => Err(Error::InvalidState),
        }
    }

    /// Sends a message outside any transaction: the ACK for a 2xx, a stateless response, or a request a
    /// proxy forwards statelessly.
    pub fn send_stateless(&mut self, message: &Message, peer: Peer) {
        self.transmit(peer, message.to_bytes());
    }

    /// Sends a response in server transaction `id`.
    pub fn send_response(&mut self, now: Instant, id: TransactionId, response: Response) -> Result<(), Error> {
        let c = self.config;
        let t = self.txs.get_mut(&id).ok_or(Error::NoTransaction)?;
        let status = response.status;
        let reliable = t.peer.transport.is_reliable();
        let bytes = response.to_bytes();
        match (t.kind, t.state) {
            (Kind::ServerInvite, State::Proceeding) => {
                t.clear_timer(Timer::Trying);
                t.last_response = Some(bytes.clone());
                if (200..300).contains(&status) {
                    t.state = State::Accepted;
                    t.clear_timers();
                    self.arm(id, Timer::L, now + 64 * c.t1);
                } else if status >= 300 {
                    t.state = State::Completed;
                    t.clear_timers();
                    t.interval = c.t1;
                    if !reliable {
                        self.arm(id, Timer::G, now + c.t1);
                    }
                    self.arm(id, Timer::H, now + 64 * c.t1);
                }
            }
            (Kind::ServerInvite, State::Accepted) if (200..300).contains(&status) => {}
            (Kind::ServerNonInvite, State::Trying | State::Proceeding) if status >= 200 && !reliable => {
                // Completed (§17.2.2) over UDP only answers retransmissions with this response until Timer
                // J: the response is kept in the completed cache and the transaction itself ends now.
                let peer = t.peer;
                if let Some(t) = self.txs.remove(&id)
                    && let Some(key) = &t.server_key
                {
                    self.server_keys.remove(key);
                    self.completed.insert(now, now + 64 * c.t1, key, peer, &bytes);
                }
                self.transmit(peer, bytes);
                self.event(TransactionEvent::Terminated { id });
                return Ok(());
            }
            (Kind::ServerNonInvite, State::Trying | State::Proceeding) => {
                t.last_response = Some(bytes.clone());
                if status < 200 {
                    t.state = State::Proceeding;
                } else {
                    t.state = State::Completed;
                    let wait = if reliable { Duration::ZERO } else { 64 * c.t1 };
                    self.arm(id, Timer::J, now + wait);
                }
            }
            _ => return Err(Error::InvalidState),
        }
        let peer = self.txs.get(&id).map(|t| t.peer).ok_or(Error::NoTransaction)?;
        self.transmit(peer, bytes);
        Ok(())
    }

    /// The driver could not send for transaction `id` (connection refused or lost, ICMP error): the
    /// transaction ends and the TU hears [`TransactionEvent::TransportError`].
    pub fn transport_error(&mut self, id: TransactionId) {
        if self.txs.contains_key(&id) {
            self.event(TransactionEvent::TransportError { id });
            self.terminate(id);
        }
    }

    /// A stream connection to `peer` closed: every transaction bound to it fails with a transport error.
    pub fn connection_lost(&mut self, peer: Peer) {
        let mut ids: Vec<_> = self.txs.values().filter(|t| t.peer == peer).map(|t| t.id).collect();
        ids.sort();
        for id in ids {
            self.transport_error(id);
        }
    }

    fn terminate(&mut self, id: TransactionId) {
        if let Some(t) = self.txs.remove(&id) {
            if let Some(k) = &t.server_key {
                self.server_keys.remove(k);
            }
            if let Some(r) = &t.request
                && t.kind.is_client()
                && let Ok(v) = r.headers.top_via()
            {
                self.client_keys.remove(&(v.branch().unwrap_or_default().to_owned(), r.method.clone()));
            }
            self.event(TransactionEvent::Terminated { id });
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.completed.expire(now);
        while let Some(&Reverse((at, id, timer))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(t) = self.txs.get_mut(&id) else { continue };
            if t.timer(timer) != Some(at) {
                continue;
            }
            t.clear_timer(timer);
            self.fire(now, id, timer);
        }
    }

    fn fire(&mut self, now: Instant, id: TransactionId, timer: Timer) {
        let c = self.config;
        let Some(t) = self.txs.get_mut(&id) else { return };
        match timer {
            Timer::A | Timer::E | Timer::G => {
                let bytes = if timer == Timer::G { t.last_response.clone() } else { Some(t.request_bytes.clone()) };
                // Timer A doubles without bound; E and G cap at T2; E in Proceeding fires every T2.
                t.interval = match (timer, t.state) {
                    (Timer::A, _) => t.interval * 2,
                    (Timer::E, State::Proceeding) => c.t2,
                    _ => (t.interval * 2).min(c.t2),
                };
                let next = t.interval;
                let peer = t.peer;
                self.counters.retransmissions_sent += 1;
                if let Some(b) = bytes {
                    self.transmit(peer, b);
                }
                self.arm(id, timer, now + next);
            }
            Timer::B | Timer::F | Timer::H => {
                self.counters.timeouts += 1;
                self.event(TransactionEvent::Timeout { id, timer });
                self.terminate(id);
            }
            Timer::C => {
                self.counters.timeouts += 1;
                self.event(TransactionEvent::Timeout { id, timer });
            }
            Timer::Trying => self.send_trying(id),
            Timer::D | Timer::I | Timer::J | Timer::K | Timer::L | Timer::M => self.terminate(id),
        }
    }
}

#[cfg(test)]
mod tests;
