//! Presence through the signaling core with a simulated network and clock: a SUBSCRIBE and a PUBLISH
//! from local users reach the presence agent (challenged like any request from a local user), NOTIFYs go
//! out in client transactions to the subscriber's Contact with this server's Via, a pending watcher is
//! recorded before its SUBSCRIBE is answered, registrations feed aggregation, a NOTIFY answered 481 ends
//! the subscription, and a refresh of an unknown dialog gets 481.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vienna_presence::{Decision, WatcherState};
use vienna_signaling::{Account, Core, CoreConfig, Directory, LocalAddr, Output};
use vienna_sip::digest::Ha1;
use vienna_sip::transaction::Peer;
use vienna_sip::{HeaderName, Message, Request, Transport};

const DOMAIN: &str = "example.com";
const SERVER: &str = "192.0.2.100:5060";
const ALICE: &str = "192.0.2.1:5070";
const BOB: &str = "192.0.2.2:5070";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// alice and bob; alice allows bob; nobody else decided.
struct Users;

impl Directory for Users {
    fn account(&self, aor: &str) -> Option<Account> {
        ["alice", "bob", "carol"].into_iter().find(|u| aor == format!("sip:{u}@{DOMAIN}")).map(|u| Account {
            aor: aor.to_owned(),
            enabled: true,
            ha1: Ha1::derive(u, DOMAIN, "pw"),
        })
    }
    fn account_by_auth(&self, _username: &str, _realm: &str) -> Option<Account> {
        None
    }
    fn watcher_decision(&self, owner: &str, watcher: &str) -> Decision {
        let allowed = owner == format!("sip:alice@{DOMAIN}") && watcher == format!("sip:bob@{DOMAIN}");
        Decision { state: if allowed { WatcherState::Allowed } else { WatcherState::Pending }, recorded: allowed }
    }
}

struct Net {
    core: Core<Users>,
    now: Instant,
    seq: u32,
}

#[derive(Default)]
struct Step {
    sent: Vec<(SocketAddr, Message)>,
    watchers: usize,
    /// Transmits that left before the first watcher record was persisted.
    sent_before_persist: Option<usize>,
}

impl Net {
    fn new(authenticate: bool) -> Net {
        let local = vec![LocalAddr { transport: Transport::Udp, addr: addr(SERVER) }];
        let mut config = CoreConfig::new(DOMAIN, local);
        config.authenticate = authenticate;
        config.presence.notify_interval = Duration::ZERO;
        let now = Instant::now();
        Net { core: Core::new(config, Users, [3; 32], vec![], now, 1_800_000_000), now, seq: 0 }
    }

    fn drain(&mut self) -> Step {
        let mut step = Step::default();
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Transmit(t) => step.sent.push((t.peer.addr, Message::parse(&t.bytes).unwrap())),
                Output::PersistWatchers(w) => {
                    step.sent_before_persist.get_or_insert(step.sent.len());
                    step.watchers += w.len();
                }
                Output::Persist(_) | Output::Conference(_) => {}
            }
        }
        step
    }

    fn send(&mut self, from: &str, text: &str) -> Step {
        let bytes = if text.contains("\r\n") { text.to_owned() } else { text.replace('\n', "\r\n") };
        self.core.handle_datagram(self.now, Peer { transport: Transport::Udp, addr: addr(from) }, bytes.as_bytes());
        self.drain()
    }

    fn request(&mut self, method: &str, from_user: &str, from: &str, to_user: &str, extra: &str) -> String {
        self.seq += 1;
        let n = self.seq;
        format!(
            "{method} sip:{to_user}@{DOMAIN} SIP/2.0\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{n}\nMax-Forwards: 70\n\
             From: <sip:{from_user}@{DOMAIN}>;tag=f{n}\nTo: <sip:{to_user}@{DOMAIN}>\nCall-ID: c{n}\nCSeq: 1 {method}\n\
             Contact: <sip:{from_user}@{from}>\n{extra}Content-Length: 0\n\n"
        )
    }
}

fn response(m: &Message) -> &vienna_sip::Response {
    match m {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, got {}", r.method),
    }
}

fn request(m: &Message) -> &Request {
    match m {
        Message::Request(r) => r,
        Message::Response(r) => panic!("expected a request, got {}", r.status),
    }
}

/// The 200 OK answering a NOTIFY.
fn ok_for(notify: &Request) -> String {
    String::from_utf8(notify.make_response(200, None).to_bytes()).unwrap()
}

#[test]
fn subscribe_publish_and_notify_through_the_core() {
    let mut net = Net::new(true);
    // A SUBSCRIBE from a local user is challenged like any request from a local user.
    let sub = net.request("SUBSCRIBE", "bob", BOB, "alice", "Event: presence\n");
    let step = net.send(BOB, &sub);
    assert_eq!(response(&step.sent[0].1).status, 407);

    // Without authentication (the rest of this test): 200, then a NOTIFY to Bob's Contact.
    let mut net = Net::new(false);
    let sub = net.request("SUBSCRIBE", "bob", BOB, "alice", "Event: presence\nExpires: 600\n");
    let step = net.send(BOB, &sub);
    assert_eq!(step.sent.len(), 2, "{:#?}", step.sent);
    let ok = response(&step.sent[0].1);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers.get(&HeaderName::Contact), Some("<sip:192.0.2.100:5060>"));
    let (to, notify) = (&step.sent[1].0, request(&step.sent[1].1));
    assert_eq!(*to, addr(BOB));
    assert_eq!(notify.method.as_str(), "NOTIFY");
    assert!(notify.headers.top_via().unwrap().sent_by().contains("192.0.2.100:5060"), "our Via");
    let body = String::from_utf8_lossy(&notify.body);
    assert!(body.contains("<basic>closed</basic>"), "alice is not registered: {body}");
    let notify = notify.clone();
    assert!(net.send(BOB, &ok_for(&notify)).sent.is_empty());

    // Alice registers: Bob hears Online; she publishes Away: Bob hears Away.
    let reg = net.request("REGISTER", "alice", ALICE, "alice", "Expires: 600\n");
    let step = net.send(ALICE, &reg);
    assert_eq!(response(&step.sent[0].1).status, 200);
    let n = request(&step.sent.iter().find(|(to, _)| *to == addr(BOB)).expect("a NOTIFY to bob").1).clone();
    assert!(String::from_utf8_lossy(&n.body).contains("<basic>open</basic>"));
    net.send(BOB, &ok_for(&n));
    let away = "<presence xmlns='urn:ietf:params:xml:ns:pidf' xmlns:r='urn:ietf:params:xml:ns:pidf:rpid'><tuple id='a'><status><basic>open</basic></status></tuple><r:activities><r:away/></r:activities></presence>";
    let publish = net
        .request("PUBLISH", "alice", ALICE, "alice", "Event: presence\nContent-Type: application/pidf+xml\n")
        .replace("Content-Length: 0\n\n", &format!("Content-Length: {}\n\n{away}", away.len()));
    let step = net.send(ALICE, &publish);
    let ok = response(&step.sent.iter().find(|(to, _)| *to == addr(ALICE)).unwrap().1);
    assert_eq!(ok.status, 200);
    assert!(ok.headers.get(&HeaderName::Other("SIP-ETag".into())).is_some());
    let n = request(&step.sent.iter().find(|(to, _)| *to == addr(BOB)).unwrap().1).clone();
    assert!(String::from_utf8_lossy(&n.body).contains("<rpid:away/>"));

    // Bob's client forgot the subscription: 481 ends it.
    let gone = String::from_utf8(n.make_response(481, None).to_bytes()).unwrap();
    net.send(BOB, &gone);
    assert_eq!(net.core.presence().subscriptions(), 0);
    assert_eq!(net.core.presence().counters().subscriptions_failed, 1);

    // A refresh of a dialog the server does not have: 481.
    let refresh = "SUBSCRIBE sip:192.0.2.100:5060 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.2:5070;branch=z9hG4bKr1\n\
        Max-Forwards: 70\nFrom: <sip:bob@example.com>;tag=x\nTo: <sip:alice@example.com>;tag=nope\n\
        Call-ID: unknown\nCSeq: 5 SUBSCRIBE\nEvent: presence\nContact: <sip:bob@192.0.2.2:5070>\nContent-Length: 0\n\n";
    assert_eq!(response(&net.send(BOB, refresh).sent[0].1).status, 481);
}

#[test]
fn a_new_watcher_is_recorded_before_its_subscribe_is_answered() {
    let mut net = Net::new(false);
    let sub = net.request("SUBSCRIBE", "carol", "192.0.2.3:5070", "alice", "Event: presence\n");
    let step = net.send("192.0.2.3:5070", &sub);
    assert_eq!(step.watchers, 1);
    assert_eq!(step.sent_before_persist, Some(0), "nothing left before the record");
    let ok = response(&step.sent[0].1);
    assert_eq!(ok.status, 200);
    let n = request(&step.sent[1].1);
    assert!(n.headers.get(&HeaderName::SubscriptionState).unwrap().starts_with("pending"));
    assert!(n.body.is_empty());
    // PUBLISH for someone else is refused.
    let publish = net.request("PUBLISH", "carol", "192.0.2.3:5070", "alice", "Event: presence\n");
    assert_eq!(response(&net.send("192.0.2.3:5070", &publish).sent[0].1).status, 403);
}
