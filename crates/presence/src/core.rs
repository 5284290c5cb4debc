//! The presence agent: PUBLISH (RFC 3903), SUBSCRIBE/NOTIFY (RFC 6665) for the presence event package
//! (RFC 3856), watcher information (RFC 3857, `presence.winfo`) and the user's contact list as a resource
//! list (RFC 4662), sans-IO.
//!
//! The SIP core in front of it authenticates requests, decides where NOTIFYs go and owns the transaction
//! layer: it hands SUBSCRIBE and PUBLISH requests in ([`PresenceCore::subscribe`],
//! [`PresenceCore::publish`]) and gets the response back, tells registration counts
//! ([`PresenceCore::set_endpoints`]), sends the [`Output::Notify`] requests (adding its Via) and reports
//! their outcome ([`PresenceCore::notify_result`]). [`Output::Persist`] carries watcher records to make
//! durable before the responses that follow.
//!
//! Notification: every subscription has at most one NOTIFY in flight, and at most one NOTIFY per
//! [`PresenceConfig::notify_interval`]; changes in between are coalesced into one NOTIFY with the latest
//! state. A change that leaves the aggregate as it was sends nothing. Authorization comes from a
//! [`Policy`]: an allowed watcher sees the aggregate, a blocked one sees Offline (polite blocking, RFC 3856
//! §6.6), a pending one gets `Subscription-State: pending` without a body until the presentity decides.
//!
//! The contact list subscription: the owner subscribes to its own address of record with
//! `Supported: eventlist`; the resources are its subscribed contacts ([`Policy::contacts`]), each
//! authorized on its own. Left out: list URIs other than the owner's own, nested lists, XCAP, the
//! `presence` filters (RFC 4660) and partial PIDF (RFC 5263); route sets (Vienna answers as the edge).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use vienna_crypto::hmac_sha256;
use vienna_sip::transaction::Peer;
use vienna_sip::{HeaderName, Method, Request, Response, Uri};
use vienna_store::{Watcher, WatcherState};

use crate::availability::PresenceState;
use crate::config::PresenceConfig;
use crate::counters::Counters;
use crate::documents::{self, InstanceState, WatcherEntry, WatcherStatus};
use crate::pidf;
use crate::policy::Policy;
use crate::presentity::{Presentity, Publication};

/// Event packages served.
pub const ALLOW_EVENTS: &str = "presence, presence.winfo";

/// Identifies a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubId(pub u64);

/// What the driver must do.
// Notify is the common case by far; boxing it would cost an allocation per NOTIFY.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Output {
    /// Send this NOTIFY (add a Via) in a client transaction to `peer`; report its outcome with
    /// [`PresenceCore::notify_result`].
    Notify {
        /// The subscription.
        sub: SubId,
        /// The request, without Via.
        request: Request,
        /// Where to send it.
        peer: Peer,
    },
    /// Make these watcher records durable before sending anything queued after this output.
    Persist(Vec<(String, Watcher)>),
}

/// Where an out-of-dialog SUBSCRIBE comes from and where its NOTIFYs go, as the SIP core decided.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    /// The authenticated subscriber (address of record).
    pub watcher: &'a str,
    /// The watched resource: the Request-URI's address of record.
    pub resource: &'a str,
    /// Where NOTIFYs go.
    pub peer: Peer,
    /// This server's Contact for the dialog (a `<sip:...>` value).
    pub contact: &'a str,
    /// Unix time now (for records).
    pub unix: i64,
}

#[derive(Debug)]
enum Kind {
    Presence,
    /// With the recorded watchers still waiting for a decision (URI, display name).
    Winfo(Vec<(String, Option<String>)>),
    List(Vec<Member>),
}

#[derive(Debug)]
struct Member {
    uri: String,
    auth: WatcherState,
    instance: String,
    dirty: bool,
}

#[derive(Debug)]
struct Dialog {
    call_id: String,
    local_tag: String,
    /// From of our NOTIFYs (the SUBSCRIBE's To, without tag).
    local: String,
    /// To of our NOTIFYs (the SUBSCRIBE's From, with its tag).
    remote: String,
    remote_target: Uri,
    cseq: u32,
    remote_cseq: u32,
    event: String,
    contact: String,
    peer: Peer,
}

#[derive(Debug)]
struct Subscription {
    kind: Kind,
    resource: String,
    watcher: String,
    display: Option<String>,
    dialog: Dialog,
    auth: WatcherState,
    expires_at: Instant,
    last_notify: Option<Instant>,
    in_flight: bool,
    dirty: bool,
    deferred: Option<Instant>,
    /// A final NOTIFY is due with this reason.
    terminating: Option<&'static str>,
    final_sent: bool,
    version: u32,
    full_sent: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Expire(SubId),
    Deferred(SubId),
    Publication(String, String),
    Reauthorize,
}

/// A snapshot of one presentity for the admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresentityView {
    /// Address of record.
    pub aor: String,
    /// What watchers see.
    pub state: PresenceState,
    /// Registered endpoints.
    pub endpoints: usize,
    /// Live publications.
    pub publications: usize,
    /// Subscriptions watching it (presence and list).
    pub watchers: usize,
}

/// The presence agent. See the module docs.
pub struct PresenceCore {
    config: PresenceConfig,
    secret: [u8; 32],
    counter: u64,
    presentities: HashMap<String, Presentity>,
    subs: HashMap<SubId, Subscription>,
    next_sub: u64,
    /// Resource → subscriptions watching it (presence kind, and list kind through a member).
    watching: HashMap<String, HashSet<SubId>>,
    /// Owner → its watcher-info subscriptions.
    winfo: HashMap<String, HashSet<SubId>>,
    dialogs: HashMap<(String, String), SubId>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    out: VecDeque<Output>,
    counters: Counters,
    publication_seq: u64,
    /// Watchers recorded as pending by this process (so a stale policy cache does not record twice).
    recorded: HashSet<(String, String)>,
    /// The last PIDF rendered (entity, state, document): a fan-out renders it once for all watchers.
    rendered: Option<(String, PresenceState, Vec<u8>)>,
    /// NOTIFYs sent at one `now` (see [`PresenceConfig::notify_burst`]).
    burst: (Option<Instant>, usize),
    /// Presentities whose aggregate changed, when tracked ([`PresenceCore::set_track_changes`]).
    changed: Option<Vec<String>>,
}

fn other(name: &str) -> HeaderName {
    HeaderName::Other(name.to_owned())
}

impl PresenceCore {
    /// A core with `config`; `secret` (random) keys tags and entity tags; `now` starts its timers.
    pub fn new(config: PresenceConfig, secret: [u8; 32], now: Instant) -> Self {
        let mut timers = BinaryHeap::new();
        timers.push(Reverse((now + config.reauthorize_every, Timer::Reauthorize)));
        PresenceCore {
            config,
            secret,
            counter: 0,
            presentities: HashMap::new(),
            subs: HashMap::new(),
            next_sub: 1,
            watching: HashMap::new(),
            winfo: HashMap::new(),
            dialogs: HashMap::new(),
            timers,
            out: VecDeque::new(),
            counters: Counters::default(),
            publication_seq: 0,
            recorded: HashSet::new(),
            rendered: None,
            burst: (None, 0),
            changed: None,
        }
    }

    /// Records the presentities whose aggregate changes, for [`PresenceCore::take_changed`] (watchers the
    /// SIP core serves itself: Microsoft clients' category subscriptions).
    pub fn set_track_changes(&mut self, on: bool) {
        self.changed = on.then(Vec::new);
    }

    /// The presentities whose aggregate changed since the last call, in order, without repeats.
    pub fn take_changed(&mut self) -> Vec<String> {
        let mut out = self.changed.as_mut().map(std::mem::take).unwrap_or_default();
        let mut seen = HashSet::new();
        out.retain(|a| seen.insert(a.clone()));
        out
    }

    /// A state published by other means than PUBLISH (Microsoft clients' category publications, LCS 2005
    /// `setPresence`), one per `key` (a device or the user's manual state): replaces the earlier state of
    /// that key for `expires`; `None` removes it. The aggregate and every watcher follow, whatever their
    /// dialect.
    pub fn publish_state(
        &mut self,
        now: Instant,
        aor: &str,
        key: &str,
        state: Option<(PresenceState, bool)>,
        expires: std::time::Duration,
    ) {
        let etag = format!("ext:{key}");
        match state {
            None => {
                let removed = self.presentities.get_mut(aor).and_then(|p| p.publications.remove(&etag));
                if removed.is_none() {
                    return;
                }
            }
            Some((state, manual)) => {
                self.publication_seq += 1;
                let seq = self.publication_seq;
                let expires_at = now + expires;
                let p = self.presentities.entry(aor.to_owned()).or_default();
                let publication = Publication {
                    state,
                    manual,
                    informative: true,
                    expires_at,
                    seq,
                    tuples: Vec::new(),
                    source: key.to_owned(),
                };
                p.publications.insert(etag.clone(), publication);
                self.arm(expires_at, Timer::Publication(aor.to_owned(), etag));
            }
        }
        self.after_change(now, aor);
    }

    /// The configuration.
    pub fn config(&self) -> &PresenceConfig {
        &self.config
    }

    /// Counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Live subscriptions.
    pub fn subscriptions(&self) -> usize {
        self.subs.len()
    }

    /// Presentities with a publication or a registered endpoint.
    pub fn presentities(&self) -> usize {
        self.presentities.len()
    }

    /// Live publications, all presentities together.
    pub fn publications(&self) -> usize {
        self.presentities.values().map(|p| p.publications.len()).sum()
    }

    /// What watchers of `aor` see now (Offline when nothing is known).
    pub fn state_of(&self, aor: &str) -> PresenceState {
        self.presentities.get(aor).map_or_else(PresenceState::offline, |p| p.current.clone())
    }

    /// Up to `limit` presentities (with a publication, an endpoint or a watcher), by address of record.
    pub fn views(&self, limit: usize) -> Vec<PresentityView> {
        let mut aors: Vec<&String> = self.presentities.keys().chain(self.watching.keys()).collect();
        aors.sort();
        aors.dedup();
        aors.into_iter()
            .take(limit)
            .map(|aor| {
                let p = self.presentities.get(aor);
                PresentityView {
                    aor: aor.clone(),
                    state: self.state_of(aor),
                    endpoints: p.map_or(0, |p| p.endpoints),
                    publications: p.map_or(0, |p| p.publications.len()),
                    watchers: self.watching.get(aor).map_or(0, HashSet::len),
                }
            })
            .collect()
    }

    /// Whether `(call_id, local_tag)` is one of our subscription dialogs (an in-dialog SUBSCRIBE for us).
    pub fn has_dialog(&self, call_id: &str, local_tag: &str) -> bool {
        self.dialogs.contains_key(&(call_id.to_owned(), local_tag.to_owned()))
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Every output queued, in order.
    pub fn drain_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out).into()
    }

    /// When [`PresenceCore::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    fn random_hex(&mut self, bytes: usize) -> String {
        self.counter += 1;
        hex::encode(&hmac_sha256(&self.secret, &[b"presence", &self.counter.to_be_bytes()])[..bytes])
    }

    fn arm(&mut self, at: Instant, timer: Timer) {
        self.timers.push(Reverse((at, timer)));
    }

    /// Granted expiry for a request asking `asked` (None: default): `Err(())` when below the minimum.
    fn grant(&self, asked: Option<u32>) -> Result<u32, ()> {
        match asked {
            None => Ok(self.config.default_expires),
            Some(0) => Ok(0),
            Some(e) if e < self.config.min_expires => Err(()),
            Some(e) => Ok(e.min(self.config.max_expires)),
        }
    }

    fn reject(&self, req: &Request, status: u16, reason: &str, tag: &str) -> Response {
        let mut r = req.make_response_with_tag(status, Some(reason), tag);
        match status {
            423 => r.headers.push(HeaderName::MinExpires, self.config.min_expires.to_string()),
            489 => r.headers.push(HeaderName::AllowEvents, ALLOW_EVENTS),
            415 => r.headers.push(HeaderName::Accept, pidf::CONTENT_TYPE),
            503 => r.headers.push(HeaderName::RetryAfter, "30"),
            _ => {}
        }
        r
    }

    // ----- PUBLISH ---------------------------------------------------------------------------------------

    /// A PUBLISH (RFC 3903) by `presentity` (the authenticated Request-URI user) at `now`.
    pub fn publish(&mut self, now: Instant, req: &Request, presentity: &str) -> Response {
        let tag = self.random_hex(8);
        let r = self.publish_inner(now, req, presentity, &tag);
        if r.status >= 300 {
            self.counters.publishes_rejected += 1;
        } else {
            self.counters.publishes += 1;
        }
        r
    }

    fn publish_inner(&mut self, now: Instant, req: &Request, aor: &str, tag: &str) -> Response {
        match req.headers.event() {
            Ok(Some(e)) if e.package.eq_ignore_ascii_case("presence") => {}
            Ok(_) => return self.reject(req, 489, "Bad Event (only presence is published here)", tag),
            Err(_) => return self.reject(req, 400, "Bad Request (malformed Event header)", tag),
        }
        let Ok(asked) = req.headers.expires() else {
            return self.reject(req, 400, "Bad Request (malformed Expires header)", tag);
        };
        let Ok(expires) = self.grant(asked) else {
            return self.reject(req, 423, "Interval Too Brief", tag);
        };
        let if_match = req.headers.get(&other("SIP-If-Match")).map(str::trim).map(str::to_owned);
        let published = if req.body.is_empty() {
            None
        } else {
            let ctype = req.headers.get(&HeaderName::ContentType).unwrap_or("");
            let mime = ctype.split(';').next().unwrap_or("").trim();
            if !mime.eq_ignore_ascii_case(pidf::CONTENT_TYPE) {
                return self.reject(req, 415, "Unsupported Media Type (PIDF only)", tag);
            }
            if req.body.len() > self.config.max_body {
                self.counters.bad_bodies += 1;
                return self.reject(req, 413, "Request Entity Too Large (PIDF body)", tag);
            }
            match pidf::parse(&req.body) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.counters.bad_bodies += 1;
                    return self.reject(req, 400, &format!("Bad Request ({e})"), tag);
                }
            }
        };
        let max_pubs = self.config.max_publications;
        let p = self.presentities.entry(aor.to_owned()).or_default();
        let old = match &if_match {
            Some(etag) => match p.publications.remove(etag) {
                Some(old) => Some(old),
                None => {
                    let idle = p.is_idle();
                    if idle {
                        self.presentities.remove(aor);
                    }
                    return self.reject(req, 412, "Conditional Request Failed (unknown entity tag)", tag);
                }
            },
            None => None,
        };
        let etag = self.random_hex(10);
        let mut response = req.make_response_with_tag(200, None, tag);
        let p = self.presentities.get_mut(aor).expect("entry made above");
        match (old, published) {
            (None, None) => {
                if p.is_idle() {
                    self.presentities.remove(aor);
                }
                return self.reject(req, 400, "Bad Request (PUBLISH without a body or SIP-If-Match)", tag);
            }
            (_, _) if expires == 0 => {
                // Removal (RFC 3903 §4.5); an initial PUBLISH with Expires 0 publishes nothing.
                response.headers.push(HeaderName::Expires, "0");
                self.after_change(now, aor);
                return response;
            }
            (old, published) => {
                if p.publications.len() >= max_pubs {
                    if p.is_idle() {
                        self.presentities.remove(aor);
                    }
                    return self.reject(req, 403, "Forbidden (too many publications for this user)", tag);
                }
                self.publication_seq += 1;
                let (state, manual, informative, seq, tuples) = match (published, old) {
                    (Some(new), _) => (new.state, new.manual, new.informative, self.publication_seq, new.tuples),
                    (None, Some(old)) => (old.state, old.manual, old.informative, old.seq, old.tuples),
                    (None, None) => unreachable!("handled above"),
                };
                let expires_at = now + std::time::Duration::from_secs(u64::from(expires));
                let source = req.headers.top_via().map(|v| v.sent_by()).unwrap_or_default();
                p.supersede(&etag, &source, &tuples);
                let publication = Publication { state, manual, informative, expires_at, seq, tuples, source };
                p.publications.insert(etag.clone(), publication);
                self.arm(expires_at, Timer::Publication(aor.to_owned(), etag.clone()));
            }
        }
        response.headers.push(other("SIP-ETag"), etag);
        response.headers.push(HeaderName::Expires, expires.to_string());
        self.after_change(now, aor);
        response
    }

    /// The number of registered endpoints of `aor` changed to `endpoints`.
    pub fn set_endpoints(&mut self, now: Instant, aor: &str, endpoints: usize) {
        match self.presentities.get_mut(aor) {
            Some(p) if p.endpoints == endpoints => return,
            Some(p) => p.endpoints = endpoints,
            None if endpoints == 0 => return,
            None => {
                self.presentities.insert(aor.to_owned(), Presentity { endpoints, ..Presentity::default() });
            }
        }
        self.after_change(now, aor);
    }

    /// Recomputes `aor`'s aggregate and notifies its watchers when it changed.
    fn after_change(&mut self, now: Instant, aor: &str) {
        let require = self.config.require_registration;
        let Some(p) = self.presentities.get_mut(aor) else { return };
        let changed = p.refresh(require);
        if p.is_idle() {
            self.presentities.remove(aor);
        }
        if !changed {
            return;
        }
        self.counters.state_changes += 1;
        if let Some(c) = &mut self.changed {
            c.push(aor.to_owned());
        }
        let ids: Vec<SubId> = self.watching.get(aor).map(|s| s.iter().copied().collect()).unwrap_or_default();
        for id in ids {
            if let Some(sub) = self.subs.get_mut(&id)
                && let Kind::List(members) = &mut sub.kind
            {
                for m in members.iter_mut().filter(|m| m.uri == aor) {
                    m.dirty = true;
                }
            }
            self.mark_dirty(now, id);
        }
    }

    // ----- SUBSCRIBE -------------------------------------------------------------------------------------

    /// An out-of-dialog SUBSCRIBE from an authenticated watcher.
    pub fn subscribe(&mut self, now: Instant, req: &Request, origin: Origin<'_>, policy: &dyn Policy) -> Response {
        let tag = self.random_hex(8);
        let r = self.subscribe_new(now, req, origin, policy, &tag);
        if r.status >= 300 {
            self.counters.subscribes_rejected += 1;
        }
        r
    }

    /// The event package of a SUBSCRIBE, if it is one served here.
    fn package(req: &Request) -> Result<&'static str, ()> {
        match req.headers.event() {
            Ok(Some(e)) if e.package.eq_ignore_ascii_case("presence") => Ok("presence"),
            Ok(Some(e)) if e.package.eq_ignore_ascii_case("presence.winfo") => Ok("presence.winfo"),
            _ => Err(()),
        }
    }

    /// Whether the request's Accept (if any) admits one of `types`.
    fn accepts(req: &Request, types: &[&str]) -> bool {
        let mut any = false;
        for v in req.headers.values(&HeaderName::Accept) {
            any = true;
            let mime = v.split(';').next().unwrap_or("").trim();
            if mime == "*/*"
                || mime.eq_ignore_ascii_case("application/*")
                || types.iter().any(|t| mime.eq_ignore_ascii_case(t))
            {
                return true;
            }
        }
        !any
    }

    fn subscribe_new(
        &mut self,
        now: Instant,
        req: &Request,
        o: Origin<'_>,
        policy: &dyn Policy,
        tag: &str,
    ) -> Response {
        let Ok(package) = Self::package(req) else {
            return self.reject(req, 489, "Bad Event", tag);
        };
        let Ok(asked) = req.headers.expires() else {
            return self.reject(req, 400, "Bad Request (malformed Expires header)", tag);
        };
        let Ok(expires) = self.grant(asked) else {
            return self.reject(req, 423, "Interval Too Brief", tag);
        };
        let (Ok(from), Ok(to), Ok(call_id), Ok(cseq)) =
            (req.headers.from(), req.headers.to(), req.headers.call_id(), req.headers.cseq())
        else {
            return self.reject(req, 400, "Bad Request", tag);
        };
        let Some(target) = req.headers.contacts().ok().and_then(|c| match c {
            vienna_sip::Contacts::List(l) => l.into_iter().next(),
            vienna_sip::Contacts::Wildcard => None,
        }) else {
            return self.reject(req, 400, "Bad Request (SUBSCRIBE without Contact)", tag);
        };
        if from.tag().is_none() {
            return self.reject(req, 400, "Bad Request (From without tag)", tag);
        }
        let list = package == "presence"
            && o.watcher == o.resource
            && req.headers.has_option_tag(&HeaderName::Supported, "eventlist");
        let kind = match package {
            "presence.winfo" if o.watcher != o.resource => {
                return self.reject(req, 403, "Forbidden (watcher information is for its owner only)", tag);
            }
            "presence.winfo" => {
                if !Self::accepts(req, &[documents::WINFO_CONTENT_TYPE]) {
                    return self.reject(req, 406, "Not Acceptable (application/watcherinfo+xml)", tag);
                }
                Kind::Winfo(policy.pending_watchers(o.resource))
            }
            _ if list => Kind::List(Vec::new()),
            _ => {
                if !Self::accepts(req, &[pidf::CONTENT_TYPE]) {
                    return self.reject(req, 406, "Not Acceptable (application/pidf+xml)", tag);
                }
                Kind::Presence
            }
        };
        if expires > 0 && self.subs.len() >= self.config.max_subscriptions {
            return self.reject(req, 503, "Service Unavailable (too many subscriptions)", tag);
        }
        let mut local = to.clone();
        local.params.remove("tag");
        let dialog = Dialog {
            call_id: call_id.to_owned(),
            local_tag: tag.to_owned(),
            local: local.to_string(),
            remote: req.headers.get(&HeaderName::From).unwrap_or_default().to_owned(),
            remote_target: target.uri,
            cseq: 0,
            remote_cseq: cseq.seq,
            event: req.headers.get(&HeaderName::Event).unwrap_or(package).to_owned(),
            contact: o.contact.to_owned(),
            peer: o.peer,
        };
        let id = SubId(self.next_sub);
        self.next_sub += 1;
        let auth = match kind {
            Kind::Presence => {
                self.refresh_durable(now, o.resource, policy);
                self.authorize(o.resource, o.watcher, from.display_name().as_deref(), o.unix, policy)
            }
            _ => WatcherState::Allowed,
        };
        let mut sub = Subscription {
            kind,
            resource: o.resource.to_owned(),
            watcher: o.watcher.to_owned(),
            display: from.display_name().map(|d| d.into_owned()),
            dialog,
            auth,
            expires_at: now + std::time::Duration::from_secs(u64::from(expires)),
            last_notify: None,
            in_flight: false,
            dirty: true,
            deferred: None,
            terminating: (expires == 0).then_some("timeout"),
            final_sent: false,
            version: 0,
            full_sent: false,
        };
        if let Kind::List(members) = &mut sub.kind {
            *members = self.list_members(o.resource, policy);
            let uris: Vec<String> = members.iter().map(|m| m.uri.clone()).collect();
            for uri in uris {
                self.refresh_durable(now, &uri, policy);
            }
        }
        let mut response = req.make_response_with_tag(200, None, tag);
        response.headers.push(HeaderName::Expires, expires.to_string());
        response.headers.push(HeaderName::Contact, o.contact);
        if matches!(sub.kind, Kind::List(_)) {
            response.headers.push(HeaderName::Require, "eventlist");
        }
        self.counters.subscriptions_created += 1;
        self.insert(id, sub);
        if expires > 0 {
            let at = self.subs[&id].expires_at;
            self.arm(at, Timer::Expire(id));
        }
        self.winfo_changed(now, o.resource);
        self.kick(now, id);
        response
    }

    /// The members of `owner`'s list subscription, each authorized by its own presentity.
    fn list_members(&mut self, owner: &str, policy: &dyn Policy) -> Vec<Member> {
        let mut contacts = policy.contacts(owner);
        contacts.sort();
        contacts.dedup();
        if contacts.len() > self.config.max_list_resources {
            self.counters.list_resources_dropped += (contacts.len() - self.config.max_list_resources) as u64;
            contacts.truncate(self.config.max_list_resources);
        }
        contacts
            .into_iter()
            .map(|uri| {
                let auth = self.decision(&uri, owner, policy).state;
                let instance = hex::encode(&hmac_sha256(&self.secret, &[b"instance", uri.as_bytes()])[..6]);
                Member { uri, auth, instance, dirty: true }
            })
            .collect()
    }

    /// `owner`'s decision about `watcher`; a new undecided watcher is recorded as pending.
    fn authorize(
        &mut self,
        owner: &str,
        watcher: &str,
        display: Option<&str>,
        unix: i64,
        policy: &dyn Policy,
    ) -> WatcherState {
        if owner == watcher {
            return WatcherState::Allowed;
        }
        let d = self.decision(owner, watcher, policy);
        if d.state == WatcherState::Pending
            && !d.recorded
            && self.recorded.insert((owner.to_owned(), watcher.to_owned()))
        {
            self.counters.watchers_recorded += 1;
            let record = Watcher {
                uri: watcher.to_owned(),
                display_name: display.map(str::to_owned),
                state: WatcherState::Pending,
                first_seen: unix,
                updated_at: unix,
            };
            self.out.push_back(Output::Persist(vec![(owner.to_owned(), record)]));
        }
        d.state
    }

    /// The policy's decision, with [`PresenceConfig::allow_unknown_watchers`] applied.
    fn decision(&self, owner: &str, watcher: &str, policy: &dyn Policy) -> crate::policy::Decision {
        let mut d = policy.authorize(owner, watcher);
        if self.config.allow_unknown_watchers && d.state == WatcherState::Pending {
            d.state = WatcherState::Allowed;
            d.recorded = true;
        }
        d
    }

    fn insert(&mut self, id: SubId, sub: Subscription) {
        self.dialogs.insert((sub.dialog.call_id.clone(), sub.dialog.local_tag.clone()), id);
        match &sub.kind {
            Kind::Presence => {
                self.watching.entry(sub.resource.clone()).or_default().insert(id);
            }
            Kind::Winfo(_) => {
                self.winfo.entry(sub.resource.clone()).or_default().insert(id);
            }
            Kind::List(members) => {
                for m in members {
                    self.watching.entry(m.uri.clone()).or_default().insert(id);
                }
            }
        }
        self.subs.insert(id, sub);
    }

    fn remove(&mut self, now: Instant, id: SubId) {
        let Some(sub) = self.subs.remove(&id) else { return };
        self.dialogs.remove(&(sub.dialog.call_id.clone(), sub.dialog.local_tag.clone()));
        let unindex = |map: &mut HashMap<String, HashSet<SubId>>, key: &str| {
            if let Some(set) = map.get_mut(key) {
                set.remove(&id);
                if set.is_empty() {
                    map.remove(key);
                }
            }
        };
        match &sub.kind {
            Kind::Presence => {
                unindex(&mut self.watching, &sub.resource);
                self.winfo_changed(now, &sub.resource);
            }
            Kind::Winfo(_) => unindex(&mut self.winfo, &sub.resource),
            Kind::List(members) => {
                for m in members {
                    unindex(&mut self.watching, &m.uri);
                }
            }
        }
    }

    /// An in-dialog SUBSCRIBE (refresh or unsubscribe, RFC 6665 §4.1.2.2 and §4.2.1.2).
    pub fn resubscribe(&mut self, now: Instant, req: &Request, peer: Peer) -> Response {
        let tag = req.headers.to().ok().and_then(|t| t.tag().map(str::to_owned)).unwrap_or_default();
        let key = (req.headers.call_id().unwrap_or_default().to_owned(), tag.clone());
        let Some(&id) = self.dialogs.get(&key) else {
            self.counters.subscribes_rejected += 1;
            return self.reject(req, 481, "Call/Transaction Does Not Exist (no such subscription)", &tag);
        };
        let asked = req.headers.expires();
        let granted = match asked {
            Ok(a) => self.grant(a),
            Err(_) => {
                self.counters.subscribes_rejected += 1;
                return self.reject(req, 400, "Bad Request (malformed Expires header)", &tag);
            }
        };
        let Ok(expires) = granted else {
            self.counters.subscribes_rejected += 1;
            return self.reject(req, 423, "Interval Too Brief", &tag);
        };
        let Some(sub) = self.subs.get_mut(&id) else {
            return self.reject(req, 481, "Call/Transaction Does Not Exist", &tag);
        };
        let cseq = req.headers.cseq().map(|c| c.seq).unwrap_or(0);
        if cseq <= sub.dialog.remote_cseq && cseq != 0 {
            return self.reject(req, 500, "Server Internal Error (CSeq out of order)", &tag);
        }
        if Self::package(req).is_err() {
            return self.reject(req, 489, "Bad Event", &tag);
        }
        sub.dialog.remote_cseq = cseq;
        if let Ok(vienna_sip::Contacts::List(l)) = req.headers.contacts()
            && let Some(c) = l.into_iter().next()
        {
            sub.dialog.remote_target = c.uri;
        }
        sub.dialog.peer = peer;
        if sub.terminating.is_none() {
            if expires == 0 {
                sub.terminating = Some("timeout");
                self.counters.subscriptions_terminated += 1;
            } else {
                sub.expires_at = now + std::time::Duration::from_secs(u64::from(expires));
                let at = sub.expires_at;
                self.counters.subscriptions_refreshed += 1;
                self.timers.push(Reverse((at, Timer::Expire(id))));
            }
        }
        let mut response = req.make_response_with_tag(200, None, &tag);
        response.headers.push(HeaderName::Expires, expires.to_string());
        response.headers.push(HeaderName::Contact, sub.dialog.contact.clone());
        if matches!(sub.kind, Kind::List(_)) {
            response.headers.push(HeaderName::Require, "eventlist");
            if let Kind::List(members) = &mut sub.kind {
                for m in members.iter_mut() {
                    m.dirty = true;
                }
            }
            sub.full_sent = false;
        }
        self.mark_dirty(now, id);
        response
    }

    /// The watcher-info subscriptions of `owner` must say something new.
    fn winfo_changed(&mut self, now: Instant, owner: &str) {
        let ids: Vec<SubId> = self.winfo.get(owner).map(|s| s.iter().copied().collect()).unwrap_or_default();
        for id in ids {
            self.mark_dirty(now, id);
        }
    }

    // ----- NOTIFY ----------------------------------------------------------------------------------------

    fn mark_dirty(&mut self, now: Instant, id: SubId) {
        let Some(sub) = self.subs.get_mut(&id) else { return };
        if sub.final_sent {
            return;
        }
        if sub.dirty && (sub.in_flight || sub.deferred.is_some()) {
            self.counters.notifies_coalesced += 1;
        }
        sub.dirty = true;
        self.kick(now, id);
    }

    /// Sends the pending NOTIFY of `id` now if it may go, or schedules it (rate limit).
    fn kick(&mut self, now: Instant, id: SubId) {
        let interval = self.config.notify_interval;
        let Some(sub) = self.subs.get_mut(&id) else { return };
        if sub.in_flight || !sub.dirty || sub.final_sent {
            return;
        }
        let due = match (sub.terminating, sub.last_notify) {
            (Some(_), _) | (None, None) => now,
            (None, Some(last)) => last + interval,
        };
        let due = if due <= now && !self.take_burst(now) {
            // Over this call's burst: the next call (a fresh `now`) sends it.
            now + std::time::Duration::from_micros(1)
        } else {
            due
        };
        if due <= now {
            self.send_notify(now, id);
            return;
        }
        let Some(sub) = self.subs.get_mut(&id) else { return };
        if sub.deferred.is_none() {
            sub.deferred = Some(due);
            self.arm(due, Timer::Deferred(id));
        }
    }

    /// Takes one NOTIFY from the burst allowed at `now` ([`PresenceConfig::notify_burst`]).
    fn take_burst(&mut self, now: Instant) -> bool {
        let max = self.config.notify_burst;
        if max == 0 {
            return true;
        }
        if self.burst.0 != Some(now) {
            self.burst = (Some(now), 0);
        }
        if self.burst.1 >= max {
            return false;
        }
        self.burst.1 += 1;
        true
    }

    fn send_notify(&mut self, now: Instant, id: SubId) {
        let mut body = Vec::new();
        let mut content_type = None;
        let list_boundary = match self.subs.get(&id) {
            Some(Subscription { kind: Kind::List(_), .. }) => self.random_hex(8),
            _ => String::new(),
        };
        let Some(sub) = self.subs.get(&id) else { return };
        let remaining = sub.expires_at.saturating_duration_since(now).as_secs();
        let state = match (sub.terminating, &sub.kind, sub.auth) {
            (Some(reason), _, _) => format!("terminated;reason={reason}"),
            (None, Kind::Presence, WatcherState::Pending) => format!("pending;expires={remaining}"),
            (None, _, _) => format!("active;expires={remaining}"),
        };
        let mut require_eventlist = false;
        match &sub.kind {
            Kind::Presence => {
                let view = match sub.auth {
                    WatcherState::Allowed => Some(self.state_of(&sub.resource)),
                    WatcherState::Blocked => Some(PresenceState::offline()),
                    WatcherState::Pending => None,
                };
                if let Some(view) = view {
                    match &self.rendered {
                        Some((entity, state, doc)) if *entity == sub.resource && *state == view => body = doc.clone(),
                        _ => {
                            body = pidf::render(&sub.resource, &view).into_bytes();
                            self.rendered = Some((sub.resource.clone(), view, body.clone()));
                        }
                    }
                    content_type = Some(pidf::CONTENT_TYPE.to_owned());
                }
            }
            Kind::Winfo(waiting) => {
                let entries = self.watcher_entries(&sub.resource, waiting);
                body = documents::watcherinfo(&sub.resource, sub.version, &entries).into_bytes();
                content_type = Some(documents::WINFO_CONTENT_TYPE.to_owned());
            }
            Kind::List(members) => {
                require_eventlist = true;
                let full = !sub.full_sent;
                let host = sub.resource.rsplit('@').next().unwrap_or("vienna");
                let mut resources = Vec::new();
                let mut parts = Vec::new();
                for m in members.iter().filter(|m| full || m.dirty) {
                    let state = match m.auth {
                        WatcherState::Pending => InstanceState::Pending,
                        auth => {
                            let cid = format!("{}.{}@{host}", m.instance, sub.version);
                            let view = if auth == WatcherState::Allowed {
                                self.state_of(&m.uri)
                            } else {
                                PresenceState::offline()
                            };
                            parts.push((cid.clone(), pidf::CONTENT_TYPE, pidf::render(&m.uri, &view)));
                            InstanceState::Active(cid)
                        }
                    };
                    resources.push(documents::Resource { uri: &m.uri, instance: m.instance.clone(), state });
                }
                let rlmi = documents::rlmi(&sub.resource, sub.version, full, &resources);
                let root = format!("rlmi.{}@{host}", sub.version);
                let (b, ctype) = documents::multipart_related(&list_boundary, &root, &rlmi, &parts);
                body = b;
                content_type = Some(ctype);
            }
        }
        let Some(sub) = self.subs.get_mut(&id) else { return };
        sub.dialog.cseq += 1;
        let d = &sub.dialog;
        let mut request = Request::new(Method::Notify, d.remote_target.clone());
        let h = &mut request.headers;
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, format!("{};tag={}", d.local, d.local_tag));
        h.push(HeaderName::To, d.remote.clone());
        h.push(HeaderName::CallId, d.call_id.clone());
        h.push(HeaderName::CSeq, format!("{} NOTIFY", d.cseq));
        h.push(HeaderName::Contact, d.contact.clone());
        h.push(HeaderName::Event, d.event.clone());
        h.push(HeaderName::SubscriptionState, state);
        if require_eventlist {
            h.push(HeaderName::Require, "eventlist");
        }
        if let Some(ct) = content_type {
            h.push(HeaderName::ContentType, ct);
        }
        request.body = body;
        let peer = d.peer;
        sub.in_flight = true;
        sub.dirty = false;
        sub.deferred = None;
        sub.last_notify = Some(now);
        sub.version += 1;
        sub.full_sent = true;
        if sub.terminating.is_some() {
            sub.final_sent = true;
        }
        if let Kind::List(members) = &mut sub.kind {
            for m in members.iter_mut() {
                m.dirty = false;
            }
        }
        self.counters.notifies += 1;
        self.out.push_back(Output::Notify { sub: id, request, peer });
    }

    /// The watcher list of `owner` (RFC 3857): live subscriptions to its presence (and list subscriptions
    /// that include it), then recorded watchers still waiting for a decision (`waiting`).
    fn watcher_entries(&self, owner: &str, waiting: &[(String, Option<String>)]) -> Vec<WatcherEntry> {
        let mut entries: Vec<WatcherEntry> = Vec::new();
        let ids = self.watching.get(owner).into_iter().flatten();
        for id in ids {
            let Some(sub) = self.subs.get(id) else { continue };
            let auth = match &sub.kind {
                Kind::Presence => sub.auth,
                Kind::List(members) => members.iter().find(|m| m.uri == owner).map_or(sub.auth, |m| m.auth),
                Kind::Winfo(_) => continue,
            };
            if sub.watcher == owner {
                continue;
            }
            let status = match auth {
                WatcherState::Pending => WatcherStatus::Pending,
                WatcherState::Allowed => WatcherStatus::Active,
                WatcherState::Blocked => WatcherStatus::Terminated,
            };
            entries.push(WatcherEntry {
                uri: sub.watcher.clone(),
                id: format!("s{}", id.0),
                status,
                display_name: sub.display.clone(),
            });
        }
        for (uri, display) in waiting {
            if !entries.iter().any(|e| e.uri == *uri) {
                let id = format!("w{}", hex::encode(&hmac_sha256(&self.secret, &[b"watcher", uri.as_bytes()])[..4]));
                entries.push(WatcherEntry {
                    uri: uri.clone(),
                    id,
                    status: WatcherStatus::Waiting,
                    display_name: display.clone(),
                });
            }
        }
        entries.sort_by(|a, b| a.uri.cmp(&b.uri).then(a.id.cmp(&b.id)));
        entries
    }

    /// A NOTIFY's final outcome: `status` of its final response, or 408 for a timeout or transport error.
    pub fn notify_result(&mut self, now: Instant, id: SubId, status: u16) {
        if status < 200 {
            return;
        }
        let Some(sub) = self.subs.get_mut(&id) else { return };
        sub.in_flight = false;
        if (200..300).contains(&status) {
            if sub.final_sent {
                self.remove(now, id);
            } else {
                self.kick(now, id);
            }
        } else {
            if !sub.final_sent {
                self.counters.subscriptions_failed += 1;
            }
            self.remove(now, id);
        }
    }

    // ----- timers ----------------------------------------------------------------------------------------

    /// Runs timers due at `now`: subscription and publication expiry, deferred NOTIFYs, and the periodic
    /// re-reading of authorizations from `policy`.
    pub fn handle_timeout(&mut self, now: Instant, policy: &dyn Policy) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, timer))) = self.timers.pop() else { break };
            match timer {
                Timer::Expire(id) => {
                    if let Some(sub) = self.subs.get_mut(&id)
                        && sub.expires_at == at
                        && sub.terminating.is_none()
                    {
                        sub.terminating = Some("timeout");
                        self.counters.subscriptions_expired += 1;
                        self.mark_dirty(now, id);
                    }
                }
                Timer::Deferred(id) => {
                    if let Some(sub) = self.subs.get_mut(&id)
                        && sub.deferred == Some(at)
                    {
                        sub.deferred = None;
                        self.kick(now, id);
                    }
                }
                Timer::Publication(aor, etag) => {
                    let expired = match self.presentities.get_mut(&aor) {
                        Some(p) if p.publications.get(&etag).is_some_and(|x| x.expires_at == at) => {
                            p.publications.remove(&etag);
                            true
                        }
                        _ => false,
                    };
                    if expired {
                        self.counters.publications_expired += 1;
                        self.after_change(now, &aor);
                    }
                }
                Timer::Reauthorize => {
                    self.reauthorize(now, policy);
                    let next = now + self.config.reauthorize_every;
                    self.arm(next, Timer::Reauthorize);
                }
            }
        }
    }

    /// Re-reads `aor`'s durable manual state from `policy`; a change re-aggregates and notifies.
    fn refresh_durable(&mut self, now: Instant, aor: &str, policy: &dyn Policy) {
        let stored = policy.manual_state(aor);
        let known = self.presentities.get(aor).and_then(|p| p.durable.as_ref().map(|d| d.1));
        if stored.as_ref().map(|m| m.updated_at) == known {
            return;
        }
        let durable = stored.map(|m| {
            self.publication_seq += 1;
            let state = PresenceState { availability: m.availability, activity: m.activity, note: m.note };
            (state, m.updated_at, self.publication_seq)
        });
        match self.presentities.get_mut(aor) {
            Some(p) => p.durable = durable,
            None if durable.is_none() => return,
            None => {
                self.presentities.insert(aor.to_owned(), Presentity { durable, ..Presentity::default() });
            }
        }
        self.after_change(now, aor);
    }

    /// Re-reads every live subscription's authorization (and list membership) from `policy`, and the
    /// durable manual state of every watched presentity.
    pub fn reauthorize(&mut self, now: Instant, policy: &dyn Policy) {
        let watched: Vec<String> = self.watching.keys().cloned().collect();
        for aor in watched {
            self.refresh_durable(now, &aor, policy);
        }
        let ids: Vec<SubId> = self.subs.keys().copied().collect();
        for id in ids {
            let Some(sub) = self.subs.get(&id) else { continue };
            if sub.terminating.is_some() {
                continue;
            }
            match &sub.kind {
                Kind::Winfo(waiting) => {
                    let mut fresh = policy.pending_watchers(&sub.resource);
                    fresh.sort();
                    let mut old = waiting.clone();
                    old.sort();
                    if fresh != old {
                        if let Some(sub) = self.subs.get_mut(&id) {
                            sub.kind = Kind::Winfo(fresh);
                        }
                        self.mark_dirty(now, id);
                    }
                }
                Kind::Presence if sub.watcher != sub.resource => {
                    let d = self.decision(&sub.resource, &sub.watcher, policy).state;
                    if d != sub.auth {
                        let resource = sub.resource.clone();
                        if let Some(sub) = self.subs.get_mut(&id) {
                            sub.auth = d;
                        }
                        self.winfo_changed(now, &resource);
                        self.mark_dirty(now, id);
                    }
                }
                Kind::List(members) => {
                    let owner = sub.resource.clone();
                    let current: Vec<(String, WatcherState)> =
                        members.iter().map(|m| (m.uri.clone(), m.auth)).collect();
                    let mut fresh = self.list_members(&owner, policy);
                    let same_set =
                        fresh.len() == current.len() && fresh.iter().zip(&current).all(|(a, b)| a.uri == b.0);
                    let changed: Vec<String> = if same_set {
                        fresh.iter().zip(&current).filter(|(a, b)| a.auth != b.1).map(|(a, _)| a.uri.clone()).collect()
                    } else {
                        Vec::new()
                    };
                    if same_set && changed.is_empty() {
                        continue;
                    }
                    let Some(sub) = self.subs.get_mut(&id) else { continue };
                    let Kind::List(members) = &mut sub.kind else { continue };
                    if same_set {
                        for (m, f) in members.iter_mut().zip(&fresh) {
                            if m.auth != f.auth {
                                m.auth = f.auth;
                                m.dirty = true;
                            }
                        }
                        for uri in &changed {
                            self.winfo_changed(now, uri);
                        }
                    } else {
                        // Membership changed: re-index and send the full list.
                        let old: Vec<String> = members.iter().map(|m| m.uri.clone()).collect();
                        std::mem::swap(members, &mut fresh);
                        sub.full_sent = false;
                        let new: Vec<String> = members.iter().map(|m| m.uri.clone()).collect();
                        for uri in &old {
                            if let Some(set) = self.watching.get_mut(uri) {
                                set.remove(&id);
                                if set.is_empty() {
                                    self.watching.remove(uri);
                                }
                            }
                        }
                        for uri in new {
                            self.watching.entry(uri).or_default().insert(id);
                        }
                    }
                    self.mark_dirty(now, id);
                }
                _ => {}
            }
        }
    }

    /// Ends every subscription with `terminated;reason=deactivated` (RFC 6665 §4.2.2: the subscriber may
    /// subscribe again at once), for a graceful shutdown. The NOTIFYs come out of [`PresenceCore::poll_output`].
    pub fn shutdown(&mut self, now: Instant) {
        let ids: Vec<SubId> = self.subs.keys().copied().collect();
        for id in ids {
            if let Some(sub) = self.subs.get_mut(&id)
                && !sub.final_sent
            {
                sub.terminating = Some("deactivated");
                sub.in_flight = false;
                sub.dirty = true;
                self.send_notify(now, id);
            }
        }
    }
}
