//! The presence agent driven with a simulated clock: aggregation across endpoints, expiry, the per-watcher
//! rate limit, authorization states, watcher information and contact-list subscriptions. Each test reads
//! like the message flow; time moves only when a test says so.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vienna_presence::{
    Decision, Origin, Output, Policy, PresenceConfig, PresenceCore, PresenceState, State, SubId, WatcherState, pidf,
};
use vienna_sip::transaction::Peer;
use vienna_sip::{HeaderName, Message, Request, Response, Transport};

#[derive(Default)]
struct TestPolicy {
    decisions: RefCell<HashMap<(String, String), WatcherState>>,
    contacts: RefCell<HashMap<String, Vec<String>>>,
    manual: RefCell<HashMap<String, vienna_store::ManualPresence>>,
}

impl Policy for TestPolicy {
    fn authorize(&self, owner: &str, watcher: &str) -> Decision {
        match self.decisions.borrow().get(&(owner.to_owned(), watcher.to_owned())) {
            Some(&state) => Decision { state, recorded: true },
            None => Decision { state: WatcherState::Pending, recorded: false },
        }
    }
    fn contacts(&self, owner: &str) -> Vec<String> {
        self.contacts.borrow().get(owner).cloned().unwrap_or_default()
    }
    fn pending_watchers(&self, owner: &str) -> Vec<(String, Option<String>)> {
        let d = self.decisions.borrow();
        d.iter()
            .filter(|((o, _), s)| o == owner && **s == WatcherState::Pending)
            .map(|((_, w), _)| (w.clone(), None))
            .collect()
    }
    fn manual_state(&self, owner: &str) -> Option<vienna_store::ManualPresence> {
        self.manual.borrow().get(owner).cloned()
    }
}

struct Notify {
    sub: SubId,
    request: Request,
}

impl Notify {
    fn state(&self) -> Option<State> {
        (!self.request.body.is_empty()).then(|| pidf::parse(&self.request.body).unwrap().state.state())
    }
    fn subscription_state(&self) -> &str {
        self.request.headers.get(&HeaderName::SubscriptionState).unwrap()
    }
    fn to(&self) -> String {
        self.request.headers.to().unwrap().uri.to_string()
    }
}

struct H {
    core: PresenceCore,
    now: Instant,
    policy: TestPolicy,
    call: u32,
    /// The Via port of the next PUBLISHes (one device); `None`: a new device per PUBLISH.
    device: Option<u32>,
    persisted: Vec<(String, vienna_store::Watcher)>,
}

fn user(name: &str) -> String {
    format!("sip:{name}@example.com")
}

fn peer() -> Peer {
    Peer { transport: Transport::Udp, addr: "127.0.0.1:5099".parse::<SocketAddr>().unwrap() }
}

fn parse(text: &str) -> Request {
    let text = text.replace('\n', "\r\n");
    match Message::parse(text.as_bytes()).unwrap() {
        Message::Request(r) => r,
        _ => panic!("not a request"),
    }
}

impl H {
    fn new() -> H {
        let config = PresenceConfig { notify_interval: Duration::from_secs(1), ..PresenceConfig::default() };
        H::with(config)
    }

    fn with(config: PresenceConfig) -> H {
        let now = Instant::now();
        H {
            core: PresenceCore::new(config, [9; 32], now),
            now,
            policy: TestPolicy::default(),
            call: 0,
            device: None,
            persisted: vec![],
        }
    }

    fn allow(&self, owner: &str, watcher: &str, state: WatcherState) {
        self.policy.decisions.borrow_mut().insert((user(owner), user(watcher)), state);
    }

    fn notifies(&mut self) -> Vec<Notify> {
        let mut out = Vec::new();
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Notify { sub, request, .. } => out.push(Notify { sub, request }),
                Output::Persist(records) => self.persisted.extend(records),
            }
        }
        out
    }

    /// Answers every NOTIFY 200 and returns them.
    fn answered(&mut self) -> Vec<Notify> {
        let n = self.notifies();
        for x in &n {
            self.core.notify_result(self.now, x.sub, 200);
        }
        n
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.core.handle_timeout(self.now, &self.policy);
    }

    fn subscribe(&mut self, watcher: &str, resource: &str, extra: &str) -> Response {
        self.call += 1;
        let req = parse(&format!(
            "SUBSCRIBE sip:{resource}@example.com SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKs{c}\n\
             From: <sip:{watcher}@example.com>;tag=w{c}\nTo: <sip:{resource}@example.com>\nCall-ID: sub-{c}\n\
             CSeq: 1 SUBSCRIBE\nContact: <sip:{watcher}@127.0.0.1:5099>\n{extra}Content-Length: 0\n\n",
            c = self.call
        ));
        let (w, r) = (user(watcher), user(resource));
        let origin = Origin { watcher: &w, resource: &r, peer: peer(), contact: "<sip:127.0.0.1:5060>", unix: 1000 };
        self.core.subscribe(self.now, &req, origin, &self.policy)
    }

    fn refresh(&mut self, ok: &Response, expires: u32) -> Response {
        let to = ok.headers.get(&HeaderName::To).unwrap();
        let from = ok.headers.get(&HeaderName::From).unwrap();
        let call_id = ok.headers.call_id().unwrap();
        let req = parse(&format!(
            "SUBSCRIBE sip:127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKr{expires}\n\
             From: {from}\nTo: {to}\nCall-ID: {call_id}\nCSeq: 2 SUBSCRIBE\nEvent: presence\nExpires: {expires}\n\
             Contact: <sip:w@127.0.0.1:5099>\nContent-Length: 0\n\n"
        ));
        self.core.resubscribe(self.now, &req, peer())
    }

    fn publish(&mut self, who: &str, etag: Option<&str>, state: Option<State>, expires: u32) -> Response {
        self.call += 1;
        let body = state.map(|s| pidf::render(&user(who), &PresenceState::of(s))).unwrap_or_default();
        let mut headers = String::new();
        if let Some(e) = etag {
            headers.push_str(&format!("SIP-If-Match: {e}\n"));
        }
        if state.is_some() {
            headers.push_str("Content-Type: application/pidf+xml\n");
        }
        // Each publication from a device of its own (its own Via sent-by), unless `device` says otherwise.
        let port = self.device.unwrap_or(10_000 + self.call);
        let req = parse(&format!(
            "PUBLISH sip:{who}@example.com SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKp{c}\n\
             From: <sip:{who}@example.com>;tag=p{c}\nTo: <sip:{who}@example.com>\nCall-ID: pub-{c}\n\
             CSeq: 1 PUBLISH\nEvent: presence\nExpires: {expires}\n{headers}Content-Length: 0\n\n",
            c = self.call,
        ));
        let mut req = req;
        req.body = body.into_bytes();
        self.core.publish(self.now, &req, &user(who))
    }
}

fn etag(r: &Response) -> String {
    r.headers.get(&HeaderName::Other("SIP-ETag".into())).expect("SIP-ETag").to_owned()
}

#[test]
fn a_change_on_one_of_two_endpoints_gives_each_watcher_one_aggregated_notify() {
    let mut h = H::new();
    h.core.set_endpoints(h.now, &user("alice"), 2);
    let desk = etag(&h.publish("alice", None, Some(State::Online), 3600));
    let phone = etag(&h.publish("alice", None, Some(State::Online), 3600));
    h.allow("alice", "bob", WatcherState::Allowed);
    h.allow("alice", "carol", WatcherState::Allowed);
    assert_eq!(h.subscribe("bob", "alice", "Event: presence\n").status, 200);
    assert_eq!(h.subscribe("carol", "alice", "Event: presence\n").status, 200);
    let first = h.answered();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|n| n.state() == Some(State::Online) && n.subscription_state().starts_with("active")));
    h.advance(Duration::from_secs(2));

    // The desk sets Away by hand: one NOTIFY per watcher, with the aggregate.
    let desk = etag(&h.publish("alice", Some(&desk), Some(State::Away), 3600));
    let n = h.answered();
    assert_eq!(n.len(), 2, "one NOTIFY per watcher");
    assert!(n.iter().all(|n| n.state() == Some(State::Away)));
    let mut to: Vec<String> = n.iter().map(Notify::to).collect();
    to.sort();
    assert_eq!(to, [user("bob"), user("carol")]);
    h.advance(Duration::from_secs(2));

    // The phone changes an automatic state: the manual Away is kept, so watchers hear nothing.
    let mut idle = PresenceState::of(State::Online);
    idle.availability = 4500;
    let req_body = pidf::render(&user("alice"), &idle);
    assert!(req_body.contains("idle"));
    let _ = h.publish("alice", Some(&phone), Some(State::BeRightBack), 3600);
    let n = h.answered();
    assert_eq!(n.len(), 2, "a later manual state wins");
    assert!(n.iter().all(|n| n.state() == Some(State::BeRightBack)));
    h.advance(Duration::from_secs(2));

    // Both endpoints unregister: Offline, once per watcher.
    h.core.set_endpoints(h.now, &user("alice"), 1);
    assert!(h.answered().is_empty(), "one endpoint left: nothing changes");
    h.core.set_endpoints(h.now, &user("alice"), 0);
    let n = h.answered();
    assert_eq!(n.len(), 2);
    assert!(n.iter().all(|n| n.state() == Some(State::Offline)));
    let _ = desk;
}

#[test]
fn a_device_publishing_its_tuple_again_replaces_its_older_publication() {
    // baresip 1.0 sends two initial PUBLISHes with the same tuple at start and then refreshes only the
    // second: its closed state must not lose to its own first, still open, publication.
    let mut h = H::new();
    h.core.set_endpoints(h.now, &user("alice"), 1);
    h.device = Some(5062);
    let _first = etag(&h.publish("alice", None, Some(State::Online), 60));
    let second = etag(&h.publish("alice", None, Some(State::Online), 60));
    assert_eq!(h.core.publications(), 1, "the second replaced the first");
    h.publish("alice", Some(&second), Some(State::Offline), 60);
    assert_eq!(h.core.state_of(&user("alice")).state(), State::Offline);
    // Another device with the same tuple id keeps its own publication.
    h.device = Some(5064);
    h.publish("alice", None, Some(State::Online), 60);
    assert_eq!(h.core.publications(), 2);
    assert_eq!(h.core.state_of(&user("alice")).state(), State::Online, "the most available device wins");
}

#[test]
fn the_most_available_automatic_state_wins_and_publications_expire() {
    let mut h = H::new();
    h.core.set_endpoints(h.now, &user("alice"), 2);
    assert_eq!(h.core.state_of(&user("alice")).state(), State::Online, "registered, nothing published");
    let desk = h.publish("alice", None, Some(State::Offline), 60);
    assert_eq!(h.core.state_of(&user("alice")).state(), State::Offline, "its only publication says closed");
    let phone = h.publish("alice", None, Some(State::Online), 120);
    assert_eq!(h.core.state_of(&user("alice")).state(), State::Online, "the most available endpoint wins");
    h.allow("alice", "bob", WatcherState::Allowed);
    h.subscribe("bob", "alice", "Event: presence\nExpires: 3600\n");
    h.answered();
    // The phone's publication expires first... no: the desk's (60 s) does, which changes nothing visible.
    h.advance(Duration::from_secs(61));
    assert!(h.answered().is_empty());
    assert_eq!(h.core.publications(), 1);
    // Then the phone's: back to "registered, nothing published" = Online again, still nothing to say.
    h.advance(Duration::from_secs(60));
    assert!(h.answered().is_empty());
    assert_eq!(h.core.publications(), 0);
    assert_eq!(h.core.counters().publications_expired, 2);
    // A refresh of an expired entity tag fails (RFC 3903 §6: 412).
    assert_eq!(h.publish("alice", Some(&etag(&phone)), None, 60).status, 412);
    let _ = desk;
}

#[test]
fn changes_within_the_interval_are_coalesced_into_one_notify_with_the_latest_state() {
    let mut h = H::new();
    h.core.set_endpoints(h.now, &user("alice"), 1);
    h.allow("alice", "bob", WatcherState::Allowed);
    h.subscribe("bob", "alice", "Event: presence\n");
    assert_eq!(h.answered().len(), 1);
    // Right after the first NOTIFY: Busy, Away, Do not disturb within 300 ms.
    let mut tag = etag(&h.publish("alice", None, Some(State::Busy), 3600));
    for s in [State::Away, State::DoNotDisturb] {
        h.advance(Duration::from_millis(100));
        tag = etag(&h.publish("alice", Some(&tag), Some(s), 3600));
    }
    assert!(h.answered().is_empty(), "held by the rate limit");
    h.advance(Duration::from_millis(800));
    let n = h.answered();
    assert_eq!(n.len(), 1, "one NOTIFY after the interval");
    assert_eq!(n[0].state(), Some(State::DoNotDisturb), "with the latest state");
    assert!(h.core.counters().notifies_coalesced >= 1);

    // At most one NOTIFY in flight: a change while one is unanswered waits for its response.
    h.advance(Duration::from_secs(2));
    let tag = etag(&h.publish("alice", Some(&tag), Some(State::Online), 3600));
    let pending = h.notifies();
    assert_eq!(pending.len(), 1);
    h.advance(Duration::from_secs(2));
    let _ = h.publish("alice", Some(&tag), Some(State::InAMeeting), 3600);
    assert!(h.notifies().is_empty(), "the first NOTIFY is not answered yet");
    h.core.notify_result(h.now, pending[0].sub, 200);
    let n = h.answered();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].state(), Some(State::InAMeeting));
}

#[test]
fn subscriptions_refresh_expire_and_end() {
    let mut h = H::new();
    h.allow("alice", "bob", WatcherState::Allowed);
    let ok = h.subscribe("bob", "alice", "Event: presence\nExpires: 60\n");
    assert_eq!(ok.headers.expires().unwrap(), Some(60));
    assert_eq!(h.answered().len(), 1);
    h.advance(Duration::from_secs(50));
    let r = h.refresh(&ok, 120);
    assert_eq!(r.status, 200);
    assert_eq!(h.answered().len(), 1, "a refresh is followed by a NOTIFY");
    h.advance(Duration::from_secs(100));
    assert!(h.answered().is_empty(), "the refresh moved the expiry");
    h.advance(Duration::from_secs(21));
    let n = h.answered();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].subscription_state(), "terminated;reason=timeout");
    assert_eq!(h.core.subscriptions(), 0);
    assert_eq!(h.refresh(&ok, 60).status, 481, "an expired subscription is gone");

    // Expires: 0 ends a subscription with a final NOTIFY; a NOTIFY answered 481 drops it.
    let ok = h.subscribe("bob", "alice", "Event: presence\n");
    h.answered();
    h.advance(Duration::from_secs(5));
    assert_eq!(h.refresh(&ok, 0).status, 200);
    let n = h.answered();
    assert_eq!(n[0].subscription_state(), "terminated;reason=timeout");
    assert_eq!(h.core.subscriptions(), 0);
    h.subscribe("bob", "alice", "Event: presence\n");
    let n = h.notifies();
    h.core.notify_result(h.now, n[0].sub, 481);
    assert_eq!(h.core.subscriptions(), 0);
    assert_eq!(h.core.counters().subscriptions_failed, 1);

    assert_eq!(h.subscribe("bob", "alice", "Event: presence\nExpires: 10\n").status, 423);
    assert_eq!(h.subscribe("bob", "alice", "Event: dialog\n").status, 489);
    assert_eq!(h.subscribe("bob", "alice", "Event: presence\nAccept: text/plain\n").status, 406);
}

#[test]
fn pending_allowed_and_blocked_watchers() {
    let mut h = H::new();
    h.core.set_endpoints(h.now, &user("alice"), 1);
    // Alice watches her watcher list.
    assert_eq!(h.subscribe("alice", "alice", "Event: presence.winfo\n").status, 200);
    let n = h.answered();
    assert_eq!(n.len(), 1);
    assert!(String::from_utf8_lossy(&n[0].request.body).contains("<watcher-list"));

    // Bob is new: his subscription is pending (no state), recorded, and Alice is told.
    assert_eq!(h.subscribe("bob", "alice", "Event: presence\n").status, 200);
    let mut n = h.answered();
    assert_eq!(n.len(), 1, "bob's pending NOTIFY; alice's watcher info waits for the rate limit");
    h.advance(Duration::from_secs(1));
    n.extend(h.answered());
    let bob = n.iter().find(|n| n.to() == user("bob")).unwrap();
    assert!(bob.subscription_state().starts_with("pending"));
    assert!(bob.request.body.is_empty());
    let winfo = n.iter().find(|n| n.to() == user("alice")).unwrap();
    let text = String::from_utf8_lossy(&winfo.request.body);
    assert!(text.contains("status=\"pending\"") && text.contains("sip:bob@example.com"), "{text}");
    assert_eq!(h.persisted.len(), 1);
    assert_eq!(h.persisted[0].0, user("alice"));
    assert_eq!((h.persisted[0].1.uri.as_str(), h.persisted[0].1.state), (user("bob").as_str(), WatcherState::Pending));

    // Alice allows Bob (in the store): at the next re-read Bob sees her, and her watcher info says active.
    h.allow("alice", "bob", WatcherState::Allowed);
    h.advance(Duration::from_secs(6));
    let n = h.answered();
    let bob = n.iter().find(|n| n.to() == user("bob")).unwrap();
    assert!(bob.subscription_state().starts_with("active"));
    assert_eq!(bob.state(), Some(State::Online));
    let winfo = n.iter().find(|n| n.to() == user("alice")).unwrap();
    assert!(String::from_utf8_lossy(&winfo.request.body).contains("status=\"active\""));

    // Blocked: Bob sees Offline while Alice is online (polite blocking).
    h.allow("alice", "bob", WatcherState::Blocked);
    h.advance(Duration::from_secs(6));
    let n = h.answered();
    let bob = n.iter().find(|n| n.to() == user("bob")).unwrap();
    assert!(bob.subscription_state().starts_with("active"));
    assert_eq!(bob.state(), Some(State::Offline));
    assert_eq!(h.core.state_of(&user("alice")).state(), State::Online);
    // And changes of Alice's state stay hidden from him... but he still gets the Offline view, only once.
    h.advance(Duration::from_secs(2));
    let _ = h.publish("alice", None, Some(State::Busy), 3600);
    let n = h.answered();
    assert!(n.iter().all(|n| n.state() == Some(State::Offline)));

    // Watcher info is only for its owner.
    assert_eq!(h.subscribe("bob", "alice", "Event: presence.winfo\n").status, 403);
}

#[test]
fn publish_rules() {
    let mut h = H::new();
    let ok = h.publish("alice", None, Some(State::Busy), 600);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers.expires().unwrap(), Some(600));
    let first = etag(&ok);
    // A refresh (no body) gets a new entity tag; the old one is then unknown.
    let refreshed = h.publish("alice", Some(&first), None, 600);
    assert_eq!(refreshed.status, 200);
    assert_ne!(etag(&refreshed), first);
    assert_eq!(h.publish("alice", Some(&first), None, 600).status, 412);
    assert_eq!(h.core.state_of(&user("alice")).state(), State::Offline, "not registered");
    assert_eq!(h.publish("alice", None, None, 600).status, 400);
    assert_eq!(h.publish("alice", None, Some(State::Busy), 5).status, 423);
    // Removal.
    let gone = h.publish("alice", Some(&etag(&refreshed)), None, 0);
    assert_eq!((gone.status, gone.headers.expires().unwrap()), (200, Some(0)));
    assert_eq!(h.core.publications(), 0);

    // A malformed body is refused with the reason.
    let bad = parse(
        "PUBLISH sip:alice@example.com SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKbad\n\
         From: <sip:alice@example.com>;tag=1\nTo: <sip:alice@example.com>\nCall-ID: bad\nCSeq: 1 PUBLISH\n\
         Event: presence\nContent-Type: application/pidf+xml\nContent-Length: 17\n\n<presence><tuple>",
    );
    let r = h.core.publish(h.now, &bad, &user("alice"));
    assert_eq!(r.status, 400);
    assert!(r.reason.contains("malformed") || r.reason.contains("PIDF"), "{}", r.reason);
    assert_eq!(h.core.counters().bad_bodies, 1);
}

#[test]
fn the_contact_list_in_one_subscription() {
    let mut h = H::new();
    h.policy.contacts.borrow_mut().insert(user("alice"), vec![user("bob"), user("carol"), user("dave")]);
    h.allow("bob", "alice", WatcherState::Allowed);
    h.allow("carol", "alice", WatcherState::Blocked);
    h.core.set_endpoints(h.now, &user("bob"), 1);
    h.core.set_endpoints(h.now, &user("carol"), 1);
    let ok = h.subscribe("alice", "alice", "Event: presence\nSupported: eventlist\nAccept: multipart/related, application/rlmi+xml, application/pidf+xml\n");
    assert_eq!(ok.status, 200);
    assert!(ok.headers.has_option_tag(&HeaderName::Require, "eventlist"));
    let n = h.answered();
    assert_eq!(n.len(), 1);
    let body = String::from_utf8_lossy(&n[0].request.body).into_owned();
    let ctype = n[0].request.headers.get(&HeaderName::ContentType).unwrap();
    assert!(ctype.starts_with("multipart/related") && ctype.contains("application/rlmi+xml"), "{ctype}");
    assert!(body.contains("fullState=\"true\""));
    assert!(body.contains("uri=\"sip:dave@example.com\"><instance") && body.contains("state=\"pending\""));
    assert_eq!(body.matches("application/pidf+xml").count(), 2, "bob (online) and carol (blocked: offline)");
    assert!(body.contains("<basic>open</basic>") && body.contains("<basic>closed</basic>"));

    // Bob goes busy: a partial NOTIFY with Bob alone.
    h.advance(Duration::from_secs(2));
    h.core.set_endpoints(h.now, &user("bob"), 1);
    let _ = h.publish("bob", None, Some(State::Busy), 3600);
    let n = h.answered();
    assert_eq!(n.len(), 1);
    let body = String::from_utf8_lossy(&n[0].request.body).into_owned();
    assert!(body.contains("fullState=\"false\"") && body.contains("sip:bob@example.com"));
    assert!(!body.contains("sip:carol@example.com"));
    assert!(body.contains("<rpid:busy/>"));
    // Carol changes: Alice is blocked by her, so her view (Offline) does not change... it is still sent
    // as a resource update, with the Offline view.
    h.advance(Duration::from_secs(2));
    let _ = h.publish("carol", None, Some(State::Away), 3600);
    let n = h.answered();
    let body = String::from_utf8_lossy(&n[0].request.body).into_owned();
    assert!(!body.contains("<rpid:away/>"), "a blocking contact's state stays hidden");
}

#[test]
fn a_durable_manual_state_is_kept_until_a_device_sets_another_and_never_shows_an_unregistered_user() {
    let mut h = H::new();
    h.core.set_endpoints(h.now, &user("alice"), 1);
    h.allow("alice", "bob", WatcherState::Allowed);
    let manual = |availability, at| vienna_store::ManualPresence {
        availability,
        activity: None,
        note: Some("set by hand".into()),
        updated_at: at,
    };
    h.policy.manual.borrow_mut().insert(user("alice"), manual(12500, 1));
    h.subscribe("bob", "alice", "Event: presence\n");
    let n = h.answered();
    assert_eq!(n[0].state(), Some(State::BeRightBack), "read when the watcher subscribes");
    // An automatic publication does not replace it.
    h.advance(Duration::from_secs(2));
    let tag = etag(&h.publish("alice", None, Some(State::Online), 3600));
    assert!(h.answered().is_empty());
    // Changed in the store: seen at the next re-read.
    h.policy.manual.borrow_mut().insert(user("alice"), manual(15500, 2));
    h.advance(Duration::from_secs(5));
    assert_eq!(h.answered()[0].state(), Some(State::Away));
    // A device sets a manual state later: it wins.
    h.advance(Duration::from_secs(2));
    let _ = h.publish("alice", Some(&tag), Some(State::Busy), 3600);
    assert_eq!(h.answered()[0].state(), Some(State::Busy));
    // No endpoint: Offline, whatever was set by hand.
    h.advance(Duration::from_secs(2));
    h.core.set_endpoints(h.now, &user("alice"), 0);
    assert_eq!(h.answered()[0].state(), Some(State::Offline));
}

#[test]
fn a_watcher_who_asked_while_nobody_listened_is_listed_as_waiting() {
    let mut h = H::new();
    h.policy.decisions.borrow_mut().insert((user("alice"), user("zoe")), WatcherState::Pending);
    h.subscribe("alice", "alice", "Event: presence.winfo\n");
    let n = h.answered();
    let text = String::from_utf8_lossy(&n[0].request.body).into_owned();
    assert!(text.contains("status=\"waiting\"") && text.contains("sip:zoe@example.com"), "{text}");
}

#[test]
fn a_large_fan_out_goes_out_in_bursts() {
    let config = PresenceConfig { notify_interval: Duration::ZERO, notify_burst: 2, ..PresenceConfig::default() };
    let mut h = H::with(config);
    h.core.set_endpoints(h.now, &user("alice"), 1);
    for w in ["b1", "b2", "b3", "b4", "b5"] {
        h.allow("alice", w, WatcherState::Allowed);
        h.subscribe(w, "alice", "Event: presence\n");
        h.advance(Duration::from_millis(1));
        h.answered();
    }
    h.advance(Duration::from_millis(1));
    let _ = h.publish("alice", None, Some(State::Busy), 3600);
    assert_eq!(h.answered().len(), 2, "the first burst");
    h.advance(Duration::from_millis(1));
    assert_eq!(h.answered().len(), 2, "the next call sends the next burst");
    h.advance(Duration::from_millis(1));
    let last = h.answered();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].state(), Some(State::Busy));
}
