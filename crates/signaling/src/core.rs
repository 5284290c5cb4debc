//! The signaling core: registrar and stateful forking proxy as the transaction user of a
//! [`TransactionLayer`]. Sans-IO: the driver feeds bytes, framed messages, connection losses and the time,
//! and drains [`Output`]s.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use vienna_presence::{Origin, PresenceCore, SubId};
use vienna_sip::digest::{Credentials, DigestServer, Verdict};
use vienna_sip::transaction::{
    ClientOptions, Output as LayerOutput, Peer, Timer, TransactionEvent, TransactionId, TransactionLayer, Transmit,
};
use vienna_sip::{HeaderName, Message, Method, ParseError, Request, Response, SipUri, Uri, Via};
use vienna_store::{Binding, BindingChange, Watcher};

use crate::conference::{ConferenceOutput, State as ConferenceState};
use crate::config::CoreConfig;
use crate::counters::Counters;
use crate::directory::{Account, Directory, DirectoryPolicy};
use crate::location::{Location, binding_peer};
use crate::registrar::{self, Outcome};
use crate::routing::{loop_hash, uri_peer};

mod focus;
mod imgw;
mod ms;

/// How often expired bindings are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Methods this server handles or routes, for Allow.
const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, INFO, UPDATE, PRACK, REFER, SUBSCRIBE, NOTIFY, PUBLISH";
/// Option tags understood in Proxy-Require and Require of requests this server answers itself.
const SUPPORTED: &[&str] = &["path", "gruu", "outbound", "eventlist", "ms-benotify"];
/// [`SUPPORTED`] as a header value.
const SUPPORTED_VALUE: &str = "path, gruu, outbound, eventlist, ms-benotify";

/// What the driver must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Send bytes. On a stream, to the connection of `peer.addr`; a request to a peer without one opens one.
    Transmit(Transmit),
    /// Make these binding changes durable (in one write) before sending any later [`Output::Transmit`]: a
    /// REGISTER's 200 OK follows its changes.
    Persist(Vec<BindingChange>),
    /// Make these watcher records (owner, watcher) durable before sending any later [`Output::Transmit`]:
    /// a new watcher's SUBSCRIBE is answered once the watched user's list records it as pending.
    PersistWatchers(Vec<(String, Watcher)>),
    /// Something for the conference focus's driver: a store write (before later transmits) or a request
    /// to the MCU ([`crate::conference`]).
    Conference(ConferenceOutput),
}

/// One forwarded copy of a request.
#[derive(Debug)]
struct Branch {
    client: TransactionId,
    /// A final response was seen (or made up for a timeout or transport failure).
    done: bool,
    /// A provisional response was seen (a CANCEL may be sent).
    provisional: bool,
}

/// A request forwarded to one or more targets, answered upstream in server transaction `server`.
#[derive(Debug)]
struct Fork {
    /// The request as it arrived (after Route processing), to answer it when branches fail.
    request: Request,
    invite: bool,
    branches: Vec<Branch>,
    /// Best final non-2xx so far (RFC 3261 §16.7 step 6).
    best: Option<Response>,
    /// A final response went upstream.
    answered: bool,
    /// An out-of-dialog INVITE offering only an IM session: the IM gateway may take it when it fails.
    im_session: bool,
}

/// Where a request goes next.
struct Target {
    /// Request-URI of the forwarded copy.
    uri: Uri,
    /// Where to send it.
    peer: Peer,
}

/// Why authentication did not pass.
enum AuthFailure {
    /// Challenge (again); `stale` when only the nonce was too old.
    Challenge { stale: bool },
    /// Refuse with this status and reason.
    Refuse(u16, &'static str),
}

/// Maps the monotonic clock to Unix time for nonces and binding expiry.
#[derive(Clone, Copy, Debug)]
struct Clock {
    instant: Instant,
    unix: u64,
}

impl Clock {
    fn unix(&self, now: Instant) -> u64 {
        self.unix + now.saturating_duration_since(self.instant).as_secs()
    }
}

/// A request the server answers itself on behalf of one user name of its domain (the A/V Edge
/// credential service, MRAS: SERVICE to `sip:mras@domain`).
#[derive(Debug)]
pub struct ServiceRequest<'a> {
    /// Its Content-Type, if any.
    pub content_type: Option<&'a str>,
    /// Its body.
    pub body: &'a [u8],
    /// The address of record of the authenticated sender (`sip:alice@example.com`).
    pub requester: &'a str,
    /// Unix time, seconds.
    pub unix_now: u64,
}

/// Answers a [`ServiceRequest`]: `Ok((content type, body))` for a 200 OK, `Err(status)` otherwise.
pub type ServiceHandler = Box<dyn FnMut(ServiceRequest<'_>) -> Result<(String, Vec<u8>), u16> + Send>;

/// A service registered with [`Core::add_service`].
struct Service {
    method: String,
    user: String,
    handler: ServiceHandler,
}

/// The registrar and proxy. `D` looks accounts up.
pub struct Core<D> {
    config: CoreConfig,
    layer: TransactionLayer,
    digest: DigestServer,
    directory: D,
    location: Location,
    forks: HashMap<TransactionId, Fork>,
    /// Client transaction → the server transaction of its fork.
    branch_of: HashMap<TransactionId, TransactionId>,
    out: VecDeque<Output>,
    clock: Clock,
    counters: Counters,
    next_sweep: Instant,
    presence: PresenceCore,
    /// NOTIFY client transactions → their subscription.
    notifies: HashMap<TransactionId, SubId>,
    services: Vec<Service>,
    /// Microsoft clients (NTLM, provisioning, roaming lists, categories).
    ms: crate::msclient::MsClient,
    /// The conference focus, when enabled ([`Core::enable_conferences`]).
    conference: Option<Box<ConferenceState>>,
    /// Our addresses as a Via of ours spells them, when every one is IPv4 (dotted decimal has one
    /// spelling): a request whose Via lines hold none of them cannot have looped, and its Vias are not
    /// parsed. `None` with an IPv6 address (several spellings): every Via is parsed.
    via_hosts: Option<Vec<String>>,
}

impl<D: Directory> Core<D> {
    /// A core for `config`, looking accounts up in `directory`, with `bindings` loaded from the store.
    /// `secret` (random) keys nonces, branches and GRUUs; `now` and `unix_now` anchor its clock.
    pub fn new(
        config: CoreConfig,
        directory: D,
        secret: [u8; 32],
        bindings: Vec<Binding>,
        now: Instant,
        unix_now: u64,
    ) -> Self {
        let mut layer = TransactionLayer::new(config.timers, config.limits, secret);
        layer.set_max_transactions(config.max_transactions);
        let mut digest = DigestServer::new(secret, &config.realm, config.nonce_lifetime_secs, config.nonce_table);
        digest.set_algorithms(&config.digest_algorithms);
        let mut gruu_key = secret;
        gruu_key[0] ^= 0x5a;
        let mut location = Location::new(gruu_key);
        location.load(bindings.into_iter().filter(|b| b.expires_at > unix_now as i64).collect());
        let mut presence_key = secret;
        presence_key[0] ^= 0xa5;
        let mut presence = PresenceCore::new(config.presence.clone(), presence_key, now);
        let mut endpoints: HashMap<&str, usize> = HashMap::new();
        for b in location.iter() {
            *endpoints.entry(b.aor.as_str()).or_default() += 1;
        }
        for (aor, n) in endpoints {
            presence.set_endpoints(now, aor, n);
        }
        presence.set_track_changes(config.ms.enabled);
        let mut ms_key = secret;
        ms_key[0] ^= 0x3c;
        let ms = crate::msclient::MsClient::new(config.ms.clone(), &config.domain, ms_key);
        let via_hosts = config
            .local
            .iter()
            .map(|l| match l.addr.ip() {
                std::net::IpAddr::V4(ip) => Some(ip.to_string()),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        Core {
            config,
            layer,
            digest,
            directory,
            location,
            forks: HashMap::new(),
            branch_of: HashMap::new(),
            out: VecDeque::new(),
            clock: Clock { instant: now, unix: unix_now },
            counters: Counters::default(),
            next_sweep: now + SWEEP_EVERY,
            presence,
            notifies: HashMap::new(),
            services: Vec::new(),
            ms,
            conference: None,
            via_hosts,
        }
    }

    /// The presence agent (counters, presentities, subscriptions).
    pub fn presence(&self) -> &PresenceCore {
        &self.presence
    }

    /// Ends every presence subscription (`reason=deactivated`) before a graceful shutdown; the NOTIFYs
    /// come out of [`Core::poll_output`].
    pub fn shutdown(&mut self, now: Instant) {
        self.conference_shutdown(now);
        self.presence.shutdown(now);
        self.drain_presence(now);
        self.pump(now);
    }

    /// The configuration.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// Counters for metrics (the transaction layer's are in [`Core::transaction_counters`]).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The transaction layer's counters.
    pub fn transaction_counters(&self) -> &vienna_sip::transaction::Counters {
        self.layer.counters()
    }

    /// Transactions alive now.
    pub fn transactions(&self) -> usize {
        self.layer.len()
    }

    /// Completed non-INVITE server transactions over UDP kept as their final response for retransmissions
    /// (until Timer J); they count towards the transaction cap with [`Core::transactions`].
    pub fn completed_transactions(&self) -> usize {
        self.layer.completed_len()
    }

    /// The location service (live bindings).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Unix time at `now` by the core's clock.
    pub fn unix(&self, now: Instant) -> u64 {
        self.clock.unix(now)
    }

    /// Re-anchors the wall clock (call now and then; Unix time may step).
    pub fn set_unix_time(&mut self, now: Instant, unix_now: u64) {
        self.clock = Clock { instant: now, unix: unix_now };
    }

    /// A datagram arrived from `peer`.
    pub fn handle_datagram(&mut self, now: Instant, peer: Peer, bytes: &[u8]) {
        self.layer.handle_bytes(now, peer, bytes);
        self.pump(now);
    }

    /// A whole message framed from a stream arrived from `peer`.
    pub fn handle_message(&mut self, now: Instant, peer: Peer, message: Message) {
        self.layer.handle_message(now, peer, message);
        self.pump(now);
    }

    /// A stream frame from `peer` did not parse: answered 400 (or the like) when it was a request.
    pub fn handle_parse_error(&mut self, now: Instant, peer: Peer, bytes: &[u8], error: &ParseError) {
        self.layer.handle_parse_error(peer, bytes, error);
        self.pump(now);
    }

    /// The stream connection to `peer` closed: its transactions fail.
    pub fn connection_lost(&mut self, now: Instant, peer: Peer) {
        self.layer.connection_lost(peer);
        self.ms_connection_closed(now, peer);
        self.pump(now);
    }

    /// Sending to `peer` for this output failed (connection refused): the transaction that sent it fails.
    pub fn transport_error(&mut self, now: Instant, peer: Peer) {
        self.connection_lost(now, peer);
    }

    /// When [`Core::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.layer.poll_timeout().map_or(self.next_sweep, |t| t.min(self.next_sweep));
        let t = self.conference_timeout().map_or(t, |c| c.min(t));
        let t = self.imgw_poll_timeout().map_or(t, |c| c.min(t));
        Some(self.presence.poll_timeout().map_or(t, |p| p.min(t)))
    }

    /// Runs timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.layer.handle_timeout(now);
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_EVERY;
            let unix = self.clock.unix(now);
            let gone = self.location.sweep(unix);
            if !gone.is_empty() {
                self.counters.bindings_expired += gone.len() as u64;
                let mut aors: Vec<&str> = gone.iter().map(|b| b.aor.as_str()).collect();
                aors.sort_unstable();
                aors.dedup();
                for aor in aors {
                    let n = self.location.bindings(aor, unix).count();
                    self.presence.set_endpoints(now, aor, n);
                }
                let changes =
                    gone.into_iter().map(|b| BindingChange::Remove { aor: b.aor, contact: b.contact }).collect();
                self.out.push_back(Output::Persist(changes));
            }
        }
        if self.presence.poll_timeout().is_some_and(|t| t <= now) {
            self.presence.handle_timeout(now, &DirectoryPolicy(&self.directory));
        }
        if self.conference_timeout().is_some_and(|t| t <= now) {
            self.conference_timers(now);
        }
        self.drain_presence(now);
        self.ms_timeout(now);
        self.imgw_timeout(now);
        self.pump(now);
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Moves the layer's output to ours, handling its events (which may produce more).
    fn pump(&mut self, now: Instant) {
        loop {
            while let Some(o) = self.layer.poll_output() {
                match o {
                    LayerOutput::Transmit(mut t) => {
                        // MS-SIPAE: what goes to a connection with a security association is signed.
                        self.ms.auth.sign_transmit(self.clock.unix(now), &mut t);
                        self.out.push_back(Output::Transmit(t));
                    }
                    LayerOutput::Event(e) => self.on_event(now, e),
                }
            }
            if !self.ms_presence_changes(now) {
                break;
            }
        }
    }

    fn on_event(&mut self, now: Instant, event: TransactionEvent) {
        if self.conference_event(now, &event) || self.imgw_event(now, &event) {
            return;
        }
        if let Some(status) = self.notify_outcome(&event)
            && let Some(id) = event_transaction(&event)
            && let Some(sub) = self.notifies.remove(&id)
        {
            self.presence.notify_result(now, sub, status);
            self.drain_presence(now);
            return;
        }
        match event {
            TransactionEvent::Request { id, request, peer } => self.on_request(now, id, request, peer),
            TransactionEvent::Cancel { id, invite, request, .. } => self.on_cancel(now, id, invite, &request),
            TransactionEvent::Ack { request, .. } => self.on_ack(request),
            TransactionEvent::Response { id, response } => self.on_response(now, id, response),
            TransactionEvent::StrayResponse { response, .. } => self.on_stray_response(response),
            TransactionEvent::Timeout { id, timer } => self.on_timeout(now, id, timer),
            TransactionEvent::TransportError { id } => {
                if self.branch_of.contains_key(&id) {
                    self.counters.branch_transport_errors += 1;
                    self.branch_failed(now, id, 480, "Temporarily Unavailable (contact unreachable)");
                }
            }
            TransactionEvent::Terminated { id } => self.on_terminated(id),
        }
    }

    // ----- answering -------------------------------------------------------------------------------------

    /// Sends `response` in server transaction `id`, counting it.
    fn respond(&mut self, now: Instant, id: TransactionId, response: Response) {
        self.counters.count_response(response.status);
        if self.layer.send_response(now, id, response).is_err() {
            self.counters.send_errors += 1;
        }
    }

    /// Answers `req` ourselves with `status`; `extra` adds headers.
    fn reply(
        &mut self,
        now: Instant,
        id: TransactionId,
        req: &Request,
        status: u16,
        reason: Option<&str>,
        extra: impl FnOnce(&mut Response),
    ) {
        let tag = self.layer.new_tag();
        let mut r = req.make_response_with_tag(status, reason, &tag);
        r.headers.push(HeaderName::Server, self.config.server_name.clone());
        extra(&mut r);
        self.respond(now, id, r);
    }

    /// Answer out-of-dialog `method` requests to `sip:<user>@<domain>` with `handler`, after the usual
    /// authentication of the sender (407 challenge), instead of routing them to a user.
    pub fn add_service(&mut self, method: &str, user: &str, handler: ServiceHandler) {
        self.services.push(Service { method: method.to_owned(), user: user.to_owned(), handler });
    }

    // ----- requests --------------------------------------------------------------------------------------

    fn on_request(&mut self, now: Instant, id: TransactionId, mut req: Request, peer: Peer) {
        self.counters.requests += 1;
        if let Err(code) = req.check_uri_scheme(&["sip", "sips"]) {
            return self.reply(now, id, &req, code, None, |_| {});
        }
        match req.check_max_forwards() {
            Err(483) if req.method == Method::Options && self.request_is_for_us(&req) => {}
            Err(code) => return self.reply(now, id, &req, code, None, |_| {}),
            Ok(_) => {}
        }
        if self.is_loop(&req) {
            self.counters.loops += 1;
            return self.reply(now, id, &req, 482, None, |_| {});
        }
        let unsupported = req.unsupported_tags(&HeaderName::ProxyRequire, SUPPORTED);
        if !unsupported.is_empty() {
            return self.reply(now, id, &req, 420, None, |r| {
                r.headers.push(HeaderName::Unsupported, unsupported.join(", "));
            });
        }
        // MS-SIPAE: NTLM credentials are checked first (a challenge or a refusal answers the request).
        if !self.ms_authenticate(now, id, &req, peer) {
            return;
        }
        let routed_by_us = match self.preprocess_routes(&mut req) {
            Ok(v) => v,
            Err(()) => return self.reply(now, id, &req, 400, Some("Bad Route"), |_| {}),
        };
        if self.imgw_request(now, id, &req, peer) {
            return;
        }
        if !req.headers.contains(&HeaderName::Route) && self.conference_request(now, id, &req, peer) {
            self.conference_arm(now);
            return;
        }
        if self.config.ms.enabled && self.ms_request(now, id, &req, peer) {
            return;
        }
        if self.config.presence.enabled
            && matches!(req.method, Method::Subscribe | Method::Publish)
            && self.presence_request(now, id, &req, peer)
        {
            return;
        }
        let has_route = req.headers.contains(&HeaderName::Route);
        let local_uri = req.uri.as_sip().is_some_and(|u| self.config.is_local_uri(u));
        let local_domain = req.uri.as_sip().is_some_and(|u| self.config.is_local_domain(u));

        if routed_by_us && (has_route || !local_domain) {
            // In a dialog we record-routed (or loose-routed on): follow the route set or the remote target.
            return self.forward_routed(now, id, req);
        }
        if has_route {
            // Someone else's Route set through us, not one we recorded: no open relay.
            return self.reply(now, id, &req, 403, Some("Forbidden (relaying denied)"), |_| {});
        }
        if req.method == Method::Register {
            if local_domain {
                return self.on_register(now, id, req, peer);
            }
            return self.reply(now, id, &req, 403, Some("Forbidden (not a domain of this server)"), |_| {});
        }
        if !local_domain && !local_uri {
            return self.reply(now, id, &req, 403, Some("Forbidden (no federation with other domains)"), |_| {});
        }
        if req.uri.as_sip().is_none_or(|u| u.user.is_none()) {
            return self.answer_server_request(now, id, &req);
        }
        self.route_to_user(now, id, req)
    }

    /// A request whose Request-URI is this server itself (no user part).
    fn answer_server_request(&mut self, now: Instant, id: TransactionId, req: &Request) {
        match req.method {
            Method::Options => self.reply(now, id, req, 200, None, |r| {
                r.headers.push(HeaderName::Allow, ALLOW);
                r.headers.push(HeaderName::AllowEvents, vienna_presence::ALLOW_EVENTS);
                r.headers.push(HeaderName::Supported, SUPPORTED_VALUE);
                r.headers.push(HeaderName::Accept, "application/sdp");
            }),
            _ => self.reply(now, id, req, 404, Some("Not Found (no user in Request-URI)"), |_| {}),
        }
    }

    fn request_is_for_us(&self, req: &Request) -> bool {
        req.uri.as_sip().is_some_and(|u| u.user.is_none() && self.config.is_local_uri(u))
    }

    /// RFC 3261 §16.6 step 8 in reverse: a Via of ours whose branch carries this request's loop hash.
    fn is_loop(&self, req: &Request) -> bool {
        if let Some(hosts) = &self.via_hosts
            && !req.headers.get_all(&HeaderName::Via).any(|v| hosts.iter().any(|h| v.contains(h.as_str())))
        {
            return false;
        }
        let Ok(vias) = req.headers.vias() else { return false };
        let mine: Vec<&Via> = vias.iter().filter(|v| self.config.is_own_via(&v.host, v.port)).collect();
        if mine.is_empty() {
            return false;
        }
        let hash = loop_hash(req);
        mine.iter().any(|v| v.branch().is_some_and(|b| b.ends_with(&hash)))
    }

    /// RFC 3261 §16.4: removes our own Route values from the top (and undoes a strict router's rewrite).
    /// `Ok(true)` when one was ours: we recorded this route.
    fn preprocess_routes(&mut self, req: &mut Request) -> Result<bool, ()> {
        let mut ours = false;
        // A strict router put our Record-Route URI into the Request-URI: the real one is the last Route.
        if let Some(u) = req.uri.as_sip()
            && u.is_loose_route()
            && self.config.is_local_uri(u)
        {
            let mut routes = req.headers.routes().map_err(|_| ())?;
            if let Some(last) = routes.pop() {
                req.uri = last.uri;
                req.headers.remove(&HeaderName::Route);
                for r in routes {
                    req.headers.push(HeaderName::Route, r.to_string());
                }
                ours = true;
            }
        }
        loop {
            let top = match req.headers.values(&HeaderName::Route).next() {
                Some(v) => vienna_sip::NameAddr::parse(v).map_err(|_| ())?,
                None => break,
            };
            if top.uri.as_sip().is_some_and(|u| self.config.is_local_uri(u)) {
                req.headers.pop_first_value(&HeaderName::Route);
                ours = true;
            } else {
                break;
            }
        }
        Ok(ours)
    }

    fn on_register(&mut self, now: Instant, id: TransactionId, req: Request, peer: Peer) {
        let unix = self.clock.unix(now);
        let aor = match req
            .headers
            .to()
            .ok()
            .and_then(|t| t.uri.as_sip().map(|u| (self.config.aor_of(u), self.config.is_local_domain(u))))
        {
            Some((aor, true)) => aor,
            Some((_, false)) => {
                return self.reply(now, id, &req, 403, Some("Forbidden (not a domain of this server)"), |_| {});
            }
            None => return self.reply(now, id, &req, 400, Some("Bad To header"), |_| {}),
        };
        let Some(account) = self.directory.account(&aor) else {
            self.counters.registrations_rejected += 1;
            return self.reply(now, id, &req, 404, Some("Not Found (no such user)"), |_| {});
        };
        if !account.enabled {
            self.counters.registrations_rejected += 1;
            return self.reply(now, id, &req, 403, Some("Forbidden (account disabled)"), |_| {});
        }
        if self.config.authenticate {
            match self.authenticate(&req, false, unix) {
                Ok(who) if who.aor == aor => {}
                Ok(_) => {
                    self.counters.auth_failures += 1;
                    return self.reply(
                        now,
                        id,
                        &req,
                        403,
                        Some("Forbidden (credentials are not for this user)"),
                        |_| {},
                    );
                }
                Err(failure) => return self.auth_failed(now, id, &req, failure, false, unix),
            }
        }
        let outcome = registrar::register(&self.config, &aor, &req, peer, self.location.all_of(&aor), unix);
        match outcome {
            Outcome::Rejected { status, reason, min_expires } => {
                self.counters.registrations_rejected += 1;
                self.reply(now, id, &req, status, Some(reason), |r| {
                    if let Some(m) = min_expires {
                        r.headers.push(HeaderName::MinExpires, m.to_string());
                    }
                });
            }
            Outcome::Accepted { bindings, changes } => {
                self.counters.registrations_accepted += 1;
                self.location.replace(&aor, bindings);
                if !changes.is_empty() {
                    self.out.push_back(Output::Persist(changes));
                }
                let contacts = self.contact_values(&aor, &req, unix);
                let keep_alive = req.headers.get(&HeaderName::Other("ms-keep-alive".into())).is_some();
                let outbound = req.headers.has_option_tag(&HeaderName::Supported, "outbound")
                    && contacts.iter().any(|(_, reg_id)| *reg_id);
                let keep_alive_secs = self.config.ms_keep_alive_secs;
                let ms_headers = self.ms_register_headers(&aor, &req, peer, unix);
                self.reply(now, id, &req, 200, None, |r| {
                    for (c, _) in contacts {
                        r.headers.push(HeaderName::Contact, c);
                    }
                    if keep_alive {
                        r.headers.push(
                            HeaderName::Other("ms-keep-alive".into()),
                            format!("UAS; tcp=no; hop-hop=yes; end-end=no; timeout={keep_alive_secs}"),
                        );
                    }
                    if outbound {
                        r.headers.push(HeaderName::Require, "outbound");
                        r.headers.push(HeaderName::Other("Flow-Timer".into()), keep_alive_secs.to_string());
                    }
                    r.headers.push(HeaderName::Supported, SUPPORTED_VALUE);
                    for (name, value) in ms_headers {
                        r.headers.push(name, value);
                    }
                });
                // Watchers hear of it after the 200 OK (which waits for the binding write).
                let endpoints = self.location.bindings(&aor, unix).count();
                self.presence.set_endpoints(now, &aor, endpoints);
                self.drain_presence(now);
            }
        }
    }

    /// The Contact values of a REGISTER 200 OK (with GRUUs for clients that support them), and whether each
    /// binding uses outbound (a reg-id).
    fn contact_values(&self, aor: &str, req: &Request, unix: u64) -> Vec<(String, bool)> {
        let gruu = req.headers.has_option_tag(&HeaderName::Supported, "gruu");
        let gruu10 = req.headers.has_option_tag(&HeaderName::Supported, "gruu-10");
        self.location
            .bindings(aor, unix)
            .map(|b| {
                let gruus = match (&b.instance_id, gruu) {
                    (Some(instance), true) => {
                        let token = self.location.temp_gruu_token(aor, instance, &b.call_id);
                        Some((
                            registrar::public_gruu(aor, instance),
                            registrar::temporary_gruu(&token, &self.config.domain),
                        ))
                    }
                    _ => None,
                };
                let mut value =
                    registrar::contact_value(b, unix, gruus.as_ref().map(|(p, t)| (p.as_str(), t.as_str())));
                // gruu-10 (MS-SIPREGE): the endpoint's GRUU in a `gruu` parameter.
                if gruu10 && let Some(g) = b.instance_id.as_deref().and_then(|i| crate::msclient::epid::gruu(aor, i)) {
                    value.push_str(&format!(";gruu={}", vienna_sip::header::quote(&g)));
                }
                (value, b.reg_id.is_some())
            })
            .collect()
    }

    /// Checks Digest credentials (RFC 8760). `proxy` uses Proxy-Authorization.
    fn authenticate(&mut self, req: &Request, proxy: bool, unix: u64) -> Result<Account, AuthFailure> {
        if let Some(aor) = self.ms.identity.clone() {
            // Authenticated by NTLM on this connection (MS-SIPAE).
            return match self.directory.account(&aor) {
                Some(a) if a.enabled => Ok(a),
                Some(_) => Err(AuthFailure::Refuse(403, "Forbidden (account disabled)")),
                None => Err(AuthFailure::Challenge { stale: false }),
            };
        }
        let Some(creds) = Credentials::find(&req.headers, proxy, &self.config.realm) else {
            return Err(AuthFailure::Challenge { stale: false });
        };
        if !creds.uri_matches(&req.uri) && !self.names_this_server(&creds.uri) {
            return Err(AuthFailure::Refuse(400, "Bad Request (digest uri does not match Request-URI)"));
        }
        let Some(account) = self.directory.account_by_auth(&creds.username, &self.config.realm) else {
            self.counters.auth_failures += 1;
            return Err(AuthFailure::Challenge { stale: false });
        };
        if !account.enabled {
            self.counters.auth_failures += 1;
            return Err(AuthFailure::Refuse(403, "Forbidden (account disabled)"));
        }
        match self.digest.verify(unix, req.method.as_str(), &creds, &account.ha1) {
            Verdict::Ok => Ok(account),
            Verdict::Stale => Err(AuthFailure::Challenge { stale: true }),
            Verdict::Replay => {
                self.counters.auth_replays += 1;
                Err(AuthFailure::Challenge { stale: false })
            }
            Verdict::Rejected(_) => {
                self.counters.auth_failures += 1;
                Err(AuthFailure::Challenge { stale: false })
            }
        }
    }

    /// A digest `uri` that names this server (its address or domain, no user) is accepted as well as the
    /// Request-URI: some clients (SIPp among them) put the server they send to there. The response digest
    /// covers it either way, and nonce counts stop replays.
    fn names_this_server(&self, uri: &str) -> bool {
        match Uri::parse(uri) {
            Ok(Uri::Sip(u)) => u.user.is_none() && (self.config.is_local_uri(&u) || self.config.is_local_domain(&u)),
            _ => false,
        }
    }

    fn auth_failed(&mut self, now: Instant, id: TransactionId, req: &Request, f: AuthFailure, proxy: bool, unix: u64) {
        match f {
            AuthFailure::Challenge { stale } => {
                self.counters.auth_challenges += 1;
                let status = if proxy { 407 } else { 401 };
                let mut r = req.make_response_with_tag(status, None, &self.layer.new_tag());
                r.headers.push(HeaderName::Server, self.config.server_name.clone());
                self.digest.add_challenge(&mut r, unix, stale, proxy);
                self.ms_offer(&mut r, proxy);
                self.respond(now, id, r);
            }
            AuthFailure::Refuse(status, reason) => self.reply(now, id, req, status, Some(reason), |_| {}),
        }
    }

    /// Who sent an out-of-dialog request, by its From: with authentication on, a local user who proved it
    /// (407 challenge otherwise; there is no federation for others yet). `None` when the request has been
    /// answered (challenged or refused).
    fn authenticate_sender(&mut self, now: Instant, id: TransactionId, req: &Request, unix: u64) -> Option<String> {
        let from = req
            .headers
            .from()
            .ok()
            .and_then(|f| f.uri.as_sip().map(|u| (self.config.aor_of(u), self.config.is_local_domain(u))));
        match from {
            Some((from_aor, _)) if !self.config.authenticate => Some(from_aor),
            Some((from_aor, true)) => match self.authenticate(req, true, unix) {
                Ok(who) if who.aor == from_aor => Some(from_aor),
                Ok(_) => {
                    self.counters.auth_failures += 1;
                    self.reply(now, id, req, 403, Some("Forbidden (From does not match credentials)"), |_| {});
                    None
                }
                Err(f) => {
                    self.auth_failed(now, id, req, f, true, unix);
                    None
                }
            },
            Some((_, false)) => {
                self.reply(now, id, req, 403, Some("Forbidden (no federation with other domains)"), |_| {});
                None
            }
            None => {
                self.reply(now, id, req, 400, Some("Bad From header"), |_| {});
                None
            }
        }
    }

    /// An out-of-dialog request (or one not routed by us) for a user of our domain.
    fn route_to_user(&mut self, now: Instant, id: TransactionId, req: Request) {
        let unix = self.clock.unix(now);
        let in_dialog = req.headers.to().ok().is_some_and(|t| t.tag().is_some());
        let mut requester = None;
        // Senders: local users prove who they are; there is no federation for others yet.
        if self.config.authenticate && !in_dialog {
            match self.authenticate_sender(now, id, &req, unix) {
                Some(aor) => requester = Some(aor),
                None => return,
            }
        }
        let Some(uri) = req.uri.as_sip().cloned() else {
            return self.reply(now, id, &req, 416, None, |_| {});
        };
        if let Some(i) = self.services.iter().position(|s| {
            s.method == req.method.as_str() && uri.user.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(&s.user))
        }) {
            return self.answer_service(now, id, &req, i, requester, in_dialog, unix);
        }
        let (aor, instance) = match self.gruu_target(&uri) {
            Some(Ok(t)) => t,
            Some(Err(())) => return self.reply(now, id, &req, 404, Some("Not Found (unknown GRUU)"), |_| {}),
            None => (self.config.aor_of(&uri), None),
        };
        match self.directory.account(&aor) {
            Some(a) if a.enabled => {}
            _ => return self.reply(now, id, &req, 404, Some("Not Found (no such user)"), |_| {}),
        }
        let targets = self.user_targets(&aor, instance.as_deref(), unix);
        if targets.is_empty() {
            return self.reply(now, id, &req, 480, Some("Temporarily Unavailable (not registered)"), |_| {});
        }
        self.counters.routed += 1;
        self.fork(now, id, req, targets, !in_dialog);
    }

    /// Where requests to `aor` (or to its endpoint `instance`) go: every registered contact, higher q first
    /// (parallel forking; q only orders the branches).
    fn user_targets(&self, aor: &str, instance: Option<&str>, unix: u64) -> Vec<Target> {
        let mut targets: Vec<(Option<u16>, Target)> = self
            .location
            .bindings(aor, unix)
            .filter(|b| instance.is_none_or(|i| b.instance_id.as_deref() == Some(i)))
            .filter_map(|b| {
                let uri = Uri::parse(&b.contact).ok()?;
                let peer = binding_peer(b)?;
                Some((b.q, Target { uri, peer }))
            })
            .collect();
        targets.sort_by_key(|(q, _)| std::cmp::Reverse(q.unwrap_or(1000)));
        targets.into_iter().map(|(_, t)| t).collect()
    }

    /// A request for a service of [`Core::add_service`].
    #[allow(clippy::too_many_arguments)]
    fn answer_service(
        &mut self,
        now: Instant,
        id: TransactionId,
        req: &Request,
        i: usize,
        requester: Option<String>,
        in_dialog: bool,
        unix: u64,
    ) {
        let requester = match requester {
            Some(r) => r,
            // Only without authentication (a benchmark set-up): the From address is taken at its word.
            None if !self.config.authenticate && !in_dialog => {
                match req.headers.from().ok().and_then(|f| f.uri.as_sip().map(|u| self.config.aor_of(u))) {
                    Some(aor) => aor,
                    None => return self.reply(now, id, req, 400, Some("Bad From header"), |_| {}),
                }
            }
            None => return self.reply(now, id, req, 403, Some("Forbidden (services are out of dialog)"), |_| {}),
        };
        let service = ServiceRequest {
            content_type: req.headers.get(&HeaderName::ContentType),
            body: &req.body,
            requester: &requester,
            unix_now: unix,
        };
        match (self.services[i].handler)(service) {
            Ok((content_type, body)) => self.reply(now, id, req, 200, None, |r| {
                r.headers.push(HeaderName::ContentType, content_type);
                r.body = body;
            }),
            Err(status) => self.reply(now, id, req, status, None, |_| {}),
        }
    }

    /// For a GRUU Request-URI (RFC 5627 §5.4): `Some(Ok((aor, Some(instance))))`, or `Some(Err(()))` when
    /// it names no current registration; `None` when the URI is not a GRUU.
    #[allow(clippy::type_complexity)]
    fn gruu_target(&self, uri: &SipUri) -> Option<Result<(String, Option<String>), ()>> {
        // gruu-10 (MS-SIPRE): `;opaque=user:epid:<token>;gruu` names one endpoint; `opaque=app:...` names a
        // server application of the user (the conference focus factory, a focus), never its devices: with no
        // application serving it, it is not found.
        if uri.params.contains("gruu")
            && let Some(Some(opaque)) = uri.params.get("opaque")
        {
            if opaque.starts_with("user:epid:") {
                return Some(
                    crate::msclient::epid::instance_of_opaque(opaque)
                        .map(|instance| (self.config.aor_of(uri), Some(instance)))
                        .ok_or(()),
                );
            }
            if opaque.starts_with("app:") {
                return Some(Err(()));
            }
        }
        let gr = uri.params.get("gr")?;
        match gr {
            Some(urn) => Some(Ok((self.config.aor_of(uri), Some(format!("<{urn}>"))))),
            None => {
                let token = uri.user.as_deref().and_then(|u| u.strip_prefix("tgruu."))?;
                Some(
                    self.location
                        .resolve_temp_gruu(token)
                        .map(|(aor, instance)| (aor.to_owned(), Some(instance.to_owned())))
                        .ok_or(()),
                )
            }
        }
    }

    /// A request in a dialog we record-routed: to the next Route or the remote target.
    fn forward_routed(&mut self, now: Instant, id: TransactionId, req: Request) {
        let next = match req.headers.routes() {
            Ok(routes) => routes.into_iter().next().map(|r| r.uri),
            Err(_) => return self.reply(now, id, &req, 400, Some("Bad Route"), |_| {}),
        };
        let dest = next.as_ref().unwrap_or(&req.uri);
        let Some(sip) = dest.as_sip() else {
            return self.reply(now, id, &req, 416, None, |_| {});
        };
        let peer = self.location.flow_for(sip).or_else(|| self.gruu_peer(sip)).or_else(|| uri_peer(sip));
        let Some(peer) = peer else {
            return self.reply(now, id, &req, 503, Some("Service Unavailable (cannot resolve next hop)"), |_| {});
        };
        self.counters.routed += 1;
        let target = Target { uri: req.uri.clone(), peer };
        self.fork(now, id, req, vec![target], false);
    }

    /// Forwards `req` to every target in parallel (RFC 3261 §16.6), answering upstream in `server`.
    fn fork(&mut self, now: Instant, server: TransactionId, req: Request, targets: Vec<Target>, record_route: bool) {
        let invite = req.method == Method::Invite;
        if invite {
            // §16.2: a stateful proxy answers an INVITE with 100 at once, stopping retransmissions.
            let trying = req.make_response(100, None);
            self.respond(now, server, trying);
        }
        let hash = loop_hash(&req);
        let record_route = record_route
            && matches!(req.method, Method::Invite | Method::Subscribe | Method::Refer)
            && req.headers.to().ok().is_none_or(|t| t.tag().is_none());
        let in_transport = self.server_transport(server);
        let im_session = self.imgw_candidate(&req);
        let mut fork = Fork {
            request: req,
            invite,
            branches: Vec::with_capacity(targets.len()),
            best: None,
            answered: false,
            im_session,
        };
        let req = &fork.request;
        for target in targets {
            let mut copy = req.clone();
            self.strip_own_credentials(&mut copy);
            copy.uri = target.uri;
            copy.decrement_max_forwards();
            if record_route {
                let out_rr = self.config.record_route(target.peer.transport);
                let in_rr = in_transport.and_then(|t| self.config.record_route(t));
                // RFC 5658 double Record-Route when the request changes transport.
                if let Some(in_rr) = &in_rr {
                    copy.headers.push_front(HeaderName::RecordRoute, in_rr.clone());
                }
                if let Some(out_rr) = out_rr
                    && Some(&out_rr) != in_rr.as_ref()
                {
                    copy.headers.push_front(HeaderName::RecordRoute, out_rr);
                }
            }
            let branch = format!("{}.{hash}", self.layer.new_branch());
            let Some(via) = self.config.via(target.peer.transport, &branch) else {
                fork.best = Some(better(
                    fork.best.take(),
                    req.make_response(503, Some("Service Unavailable (no listener for the contact's transport)")),
                ));
                continue;
            };
            copy.headers.push_front(HeaderName::Via, via);
            let options = ClientOptions { timer_c: invite };
            match self.layer.send_request_with(now, copy, target.peer, options) {
                Ok(client) => {
                    self.counters.branches += 1;
                    self.branch_of.insert(client, server);
                    fork.branches.push(Branch { client, done: false, provisional: false });
                }
                Err(_) => {
                    self.counters.send_errors += 1;
                }
            }
        }
        if fork.branches.is_empty() {
            let best = fork.best.take().unwrap_or_else(|| {
                fork.request.make_response(500, Some("Server Internal Error (no branch could be sent)"))
            });
            return self.send_best(now, server, best);
        }
        self.forks.insert(server, fork);
    }

    /// The transport a server transaction's request arrived over.
    fn server_transport(&self, id: TransactionId) -> Option<vienna_sip::Transport> {
        let req = self.layer.request(id)?;
        let via = req.headers.top_via().ok()?;
        vienna_sip::Transport::from_via(&via.transport)
    }

    /// Sends the chosen final response of a fork upstream (503 becomes 500, §16.7 step 6).
    fn send_best(&mut self, now: Instant, server: TransactionId, mut best: Response) {
        if best.status == 503 {
            best.status = 500;
            best.reason = "Server Internal Error (next hop unavailable)".into();
        }
        if best.headers.to().ok().is_some_and(|t| t.tag().is_none()) {
            best.set_to_tag(&self.layer.new_tag());
        }
        self.respond(now, server, best);
    }

    fn on_cancel(&mut self, now: Instant, id: TransactionId, invite: Option<TransactionId>, req: &Request) {
        let Some(invite) = invite else {
            return self.reply(now, id, req, 481, None, |_| {});
        };
        self.reply(now, id, req, 200, None, |_| {});
        if self.imgw_cancel(now, invite) {
            return;
        }
        let pending: Vec<TransactionId> = match self.forks.get(&invite) {
            Some(f) if !f.answered => f.branches.iter().filter(|b| !b.done).map(|b| b.client).collect(),
            _ => return,
        };
        for client in pending {
            self.cancel_branch(now, client);
        }
    }

    /// The ACK of a 2xx: forwarded statelessly along the route set (§16.11 does not apply to it).
    fn on_ack(&mut self, mut req: Request) {
        let Ok(routed_by_us) = self.preprocess_routes(&mut req) else { return };
        let has_route = req.headers.contains(&HeaderName::Route);
        let local = req.uri.as_sip().is_some_and(|u| self.config.is_local_uri(u));
        if !routed_by_us || (local && !has_route) {
            return; // not ours to forward
        }
        let next = req.headers.routes().ok().and_then(|r| r.into_iter().next()).map(|r| r.uri);
        let dest = next.as_ref().unwrap_or(&req.uri);
        let Some(peer) =
            dest.as_sip().and_then(|u| self.location.flow_for(u).or_else(|| self.gruu_peer(u)).or_else(|| uri_peer(u)))
        else {
            return;
        };
        // A branch derived from the incoming one, so a retransmitted ACK goes out identical.
        let incoming = req.headers.top_via().ok().and_then(|v| v.branch().map(str::to_owned)).unwrap_or_default();
        let branch =
            format!("z9hG4bK{}", hex::encode(&vienna_crypto::hmac_sha256(b"vienna-ack", &[incoming.as_bytes()])[..8]));
        let Some(via) = self.config.via(peer.transport, &branch) else { return };
        req.decrement_max_forwards();
        req.headers.push_front(HeaderName::Via, via);
        self.counters.acks_forwarded += 1;
        self.layer.send_stateless(&Message::Request(req), peer);
    }

    // ----- responses -------------------------------------------------------------------------------------

    fn on_response(&mut self, now: Instant, client: TransactionId, mut response: Response) {
        let Some(&server) = self.branch_of.get(&client) else { return };
        response.headers.pop_first_value(&HeaderName::Via);
        if !response.headers.contains(&HeaderName::Via) {
            return;
        }
        let status = response.status;
        let Some(fork) = self.forks.get_mut(&server) else { return };
        let Some(branch) = fork.branches.iter_mut().find(|b| b.client == client) else { return };
        if status < 200 {
            branch.provisional = true;
            if status > 100 && !fork.answered {
                self.respond(now, server, response);
            }
            return;
        }
        if (200..300).contains(&status) {
            branch.done = true;
            let first = !fork.answered;
            fork.answered = true;
            let invite = fork.invite;
            let forked = fork.branches.len() > 1;
            let others: Vec<TransactionId> =
                fork.branches.iter().filter(|b| !b.done && b.client != client).map(|b| b.client).collect();
            // Every 2xx goes upstream (§16.7 step 5), retransmissions included.
            self.respond(now, server, response);
            if first && forked {
                self.counters.forks_won += 1;
            }
            if first && invite {
                for other in others {
                    self.cancel_branch(now, other);
                }
            }
            return;
        }
        if branch.done {
            return;
        }
        self.branch_final(now, server, client, response);
    }

    /// A non-2xx final response (real or made up) on a branch.
    fn branch_final(&mut self, now: Instant, server: TransactionId, client: TransactionId, response: Response) {
        let Some(fork) = self.forks.get_mut(&server) else { return };
        let Some(branch) = fork.branches.iter_mut().find(|b| b.client == client) else { return };
        branch.done = true;
        let global_failure = response.status >= 600;
        fork.best = Some(better(fork.best.take(), response));
        let invite = fork.invite;
        if global_failure && invite && !fork.answered {
            let others: Vec<TransactionId> = fork.branches.iter().filter(|b| !b.done).map(|b| b.client).collect();
            for other in others {
                self.cancel_branch(now, other);
            }
        }
        let Some(fork) = self.forks.get_mut(&server) else { return };
        if !fork.answered && fork.branches.iter().all(|b| b.done) {
            fork.answered = true;
            let Some(best) = fork.best.take() else { return };
            let best = if fork.im_session {
                let request = fork.request.clone();
                match self.imgw_take(now, server, &request, best) {
                    Some(best) => best,
                    None => return,
                }
            } else {
                best
            };
            self.send_best(now, server, best);
        }
    }

    /// Cancels a pending branch (the layer sends the CANCEL once the branch has had a provisional response).
    fn cancel_branch(&mut self, now: Instant, client: TransactionId) {
        if self.layer.cancel(now, client).is_ok() {
            self.counters.cancels += 1;
        }
    }

    /// A branch ended without a response: answer it as `status` for the choice of the best response.
    fn branch_failed(&mut self, now: Instant, client: TransactionId, status: u16, reason: &str) {
        let Some(&server) = self.branch_of.get(&client) else { return };
        let Some(fork) = self.forks.get(&server) else { return };
        let response = fork.request.make_response(status, Some(reason));
        self.branch_final(now, server, client, response);
    }

    fn on_timeout(&mut self, now: Instant, id: TransactionId, timer: Timer) {
        if !self.branch_of.contains_key(&id) {
            return;
        }
        match timer {
            Timer::C => {
                let provisional = self
                    .branch_of
                    .get(&id)
                    .and_then(|s| self.forks.get(s))
                    .and_then(|f| f.branches.iter().find(|b| b.client == id))
                    .is_some_and(|b| b.provisional);
                if provisional {
                    self.cancel_branch(now, id);
                } else {
                    self.counters.branch_timeouts += 1;
                    self.branch_failed(now, id, 408, "Request Timeout");
                }
            }
            _ => {
                self.counters.branch_timeouts += 1;
                self.branch_failed(now, id, 408, "Request Timeout");
            }
        }
    }

    /// Responses to nobody's transaction: a 2xx retransmission after the client transaction ended is
    /// forwarded along its Via (§16.7 in RFC 6026's wording); everything else is dropped.
    fn on_stray_response(&mut self, mut response: Response) {
        if !(200..300).contains(&response.status) {
            return;
        }
        let Ok(top) = response.headers.top_via() else { return };
        if !self.config.is_own_via(&top.host, top.port) {
            return;
        }
        response.headers.pop_first_value(&HeaderName::Via);
        let Ok(next) = response.headers.top_via() else { return };
        let Some(transport) = vienna_sip::Transport::from_via(&next.transport) else { return };
        let host = next.received().unwrap_or(next.host.as_str()).trim_start_matches('[').trim_end_matches(']');
        let Ok(ip) = host.parse() else { return };
        let port = next.rport().flatten().or(next.port).unwrap_or_else(|| crate::routing::default_port(transport));
        let peer = Peer { transport, addr: std::net::SocketAddr::new(ip, port) };
        self.counters.stray_2xx_forwarded += 1;
        self.layer.send_stateless(&Message::Response(response), peer);
    }

    fn on_terminated(&mut self, id: TransactionId) {
        if let Some(server) = self.branch_of.remove(&id)
            && let Some(fork) = self.forks.get_mut(&server)
        {
            fork.branches.retain(|b| b.client != id);
            if fork.branches.is_empty() {
                self.forks.remove(&server);
            }
        }
    }
}

impl<D: Directory> Core<D> {
    // ----- presence --------------------------------------------------------------------------------------

    /// Hands a SUBSCRIBE or PUBLISH to the presence agent when it is one: an in-dialog SUBSCRIBE of one of
    /// its dialogs, or an out-of-dialog SUBSCRIBE (`presence`, `presence.winfo`) or PUBLISH for a user of
    /// our domain. Returns whether the request was taken (and answered).
    fn presence_request(&mut self, now: Instant, id: TransactionId, req: &Request, peer: Peer) -> bool {
        let to_tag = req.headers.to_tag();
        let presence_event = req.headers.event().ok().flatten().is_some_and(|e| {
            e.package.eq_ignore_ascii_case("presence") || e.package.eq_ignore_ascii_case("presence.winfo")
        });
        if req.method == Method::Subscribe {
            if let Some(tag) = &to_tag {
                let call_id = req.headers.call_id().unwrap_or_default();
                if self.presence.has_dialog(call_id, tag) {
                    let target = self.notify_peer(req, peer);
                    let r = self.presence.resubscribe(now, req, target);
                    self.presence_respond(now, id, r);
                    return true;
                }
                // A refresh of a subscription this server no longer has (it restarted): 481 tells the
                // subscriber to subscribe again (RFC 6665 §4.1.2.2).
                let to_us = req.uri.as_sip().is_some_and(|u| u.user.is_none() && self.config.is_local_uri(u));
                if to_us && presence_event {
                    self.reply(
                        now,
                        id,
                        req,
                        481,
                        Some("Call/Transaction Does Not Exist (no such subscription)"),
                        |_| {},
                    );
                    return true;
                }
                return false;
            }
            if !presence_event {
                return false;
            }
        } else if to_tag.is_some() {
            return false;
        }
        let Some(uri) = req.uri.as_sip() else { return false };
        if uri.user.is_none() || !self.config.is_local_domain(uri) {
            return false;
        }
        let resource = self.config.aor_of(uri);
        let unix = self.clock.unix(now);
        let Some(sender) = self.authenticate_sender(now, id, req, unix) else { return true };
        match self.directory.account(&resource) {
            Some(a) if a.enabled => {}
            _ => {
                self.reply(now, id, req, 404, Some("Not Found (no such user)"), |_| {});
                return true;
            }
        }
        let response = if req.method == Method::Publish {
            if sender != resource {
                self.reply(now, id, req, 403, Some("Forbidden (users publish only their own presence)"), |_| {});
                return true;
            }
            self.presence.publish(now, req, &resource)
        } else {
            let Some(contact) = self.config.contact(peer.transport) else {
                self.reply(now, id, req, 500, Some("Server Internal Error (no listener)"), |_| {});
                return true;
            };
            let origin = Origin {
                watcher: &sender,
                resource: &resource,
                peer: self.notify_peer(req, peer),
                contact: &contact,
                unix: unix as i64,
            };
            self.presence.subscribe(now, req, origin, &DirectoryPolicy(&self.directory))
        };
        self.presence_respond(now, id, response);
        true
    }

    /// Where the NOTIFYs of a subscription made by `req` from `peer` go: back over the connection on TCP
    /// and TLS, to the Contact address on UDP (like requests to a registered contact), else to the source.
    fn notify_peer(&self, req: &Request, peer: Peer) -> Peer {
        if peer.transport.is_reliable() {
            return peer;
        }
        let contact = match req.headers.contacts() {
            Ok(vienna_sip::Contacts::List(l)) => l.into_iter().next(),
            _ => None,
        };
        contact
            .and_then(|c| c.uri.as_sip().and_then(uri_peer))
            .filter(|p| p.transport == peer.transport)
            .unwrap_or(peer)
    }

    /// Sends a presence response: watcher records first (the response waits for their write), then the
    /// response, then the NOTIFYs it caused.
    fn presence_respond(&mut self, now: Instant, id: TransactionId, mut response: Response) {
        response.headers.push(HeaderName::Server, self.config.server_name.clone());
        let outputs = self.presence.drain_outputs();
        let mut notifies = Vec::new();
        for o in outputs {
            match o {
                vienna_presence::Output::Persist(records) => self.out.push_back(Output::PersistWatchers(records)),
                n @ vienna_presence::Output::Notify { .. } => notifies.push(n),
            }
        }
        self.respond(now, id, response);
        for n in notifies {
            self.presence_output(now, n);
        }
        self.drain_presence(now);
    }

    /// Carries out everything the presence agent queued.
    fn drain_presence(&mut self, now: Instant) {
        while let Some(o) = self.presence.poll_output() {
            self.presence_output(now, o);
        }
    }

    fn presence_output(&mut self, now: Instant, output: vienna_presence::Output) {
        match output {
            vienna_presence::Output::Persist(records) => self.out.push_back(Output::PersistWatchers(records)),
            vienna_presence::Output::Notify { sub, mut request, peer } => {
                let branch = self.layer.new_branch();
                let Some(via) = self.config.via(peer.transport, &branch) else {
                    self.counters.send_errors += 1;
                    self.presence.notify_result(now, sub, 503);
                    return;
                };
                request.headers.push_front(HeaderName::Via, via);
                match self.layer.send_request(now, request, peer) {
                    Ok(tx) => {
                        self.notifies.insert(tx, sub);
                    }
                    Err(_) => {
                        self.counters.send_errors += 1;
                        self.presence.notify_result(now, sub, 500);
                    }
                }
            }
        }
    }

    /// The final outcome of a NOTIFY transaction this event reports, if it is one of ours.
    fn notify_outcome(&self, event: &TransactionEvent) -> Option<u16> {
        let (id, status) = match event {
            TransactionEvent::Response { id, response } if response.status >= 200 => (id, response.status),
            TransactionEvent::Timeout { id, .. } | TransactionEvent::TransportError { id } => (id, 408),
            TransactionEvent::Terminated { id } => (id, 408),
            _ => return None,
        };
        self.notifies.contains_key(id).then_some(status)
    }
}

/// The transaction an event is about.
fn event_transaction(event: &TransactionEvent) -> Option<TransactionId> {
    match event {
        TransactionEvent::Response { id, .. }
        | TransactionEvent::Timeout { id, .. }
        | TransactionEvent::TransportError { id }
        | TransactionEvent::Terminated { id } => Some(*id),
        _ => None,
    }
}

/// The better of two final non-2xx responses for upstream (RFC 3261 §16.7 step 6): a 6xx wins, then the
/// lowest status, but timeouts, unreachable contacts and 487 only when nothing more telling came back.
fn better(a: Option<Response>, b: Response) -> Response {
    fn rank(status: u16) -> u32 {
        match status {
            600..=699 => 0,
            408 | 480 | 487 | 503 => 10_000 + u32::from(status),
            s => u32::from(s),
        }
    }
    match a {
        Some(a) if rank(a.status) <= rank(b.status) => a,
        _ => b,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_supported_header_value_lists_every_supported_tag() {
        assert_eq!(super::SUPPORTED_VALUE, super::SUPPORTED.join(", "));
    }
}
