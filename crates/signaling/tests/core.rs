//! The registrar and proxy driven through whole exchanges with a simulated network and clock: Digest
//! REGISTER (MD5 and SHA-256, wrong password, replayed nonce), binding rules (423, wildcard, expiry,
//! reload after restart), and routing (parallel forking with CANCEL of the losers, MESSAGE to every
//! contact, 404/480/403/407, branch timeout).

mod harness;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use vienna_signaling::{Account, Core, CoreConfig, Directory, LocalAddr};
use vienna_sip::digest::{Challenge, Ha1, respond};
use vienna_sip::{HeaderName, Message, Request, Response, Transport};
use vienna_store::{Binding, BindingChange};

use harness::{Step, UNIX0, addr, sip};

/// The core of these tests on the simulated network.
type Net = harness::Net<Users>;

const DOMAIN: &str = "example.com";
const SERVER: &str = "192.0.2.100:5060";
const ALICE: &str = "192.0.2.1:5070";
const BOB1: &str = "192.0.2.2:5070";
const BOB2: &str = "192.0.2.3:5070";

/// Accounts alice, bob and carol (disabled), password = user name reversed.
struct Users(HashMap<String, Account>);

impl Users {
    fn new() -> Self {
        let mut m = HashMap::new();
        for (user, enabled) in [("alice", true), ("bob", true), ("carol", false)] {
            let password: String = user.chars().rev().collect();
            let aor = format!("sip:{user}@{DOMAIN}");
            m.insert(user.to_owned(), Account { aor, enabled, ha1: Ha1::derive(user, DOMAIN, &password) });
        }
        Users(m)
    }
}

impl Directory for Users {
    fn account(&self, aor: &str) -> Option<Account> {
        self.0.values().find(|a| a.aor == aor).cloned()
    }
    fn account_by_auth(&self, username: &str, realm: &str) -> Option<Account> {
        (realm == DOMAIN).then(|| self.0.get(username).cloned()).flatten()
    }
}

impl Net {
    fn new() -> Self {
        Self::with(|_| {}, vec![])
    }

    fn with(tweak: impl FnOnce(&mut CoreConfig), bindings: Vec<Binding>) -> Self {
        let local = vec![LocalAddr { transport: Transport::Udp, addr: addr(SERVER) }];
        let mut config = CoreConfig::new(DOMAIN, local);
        tweak(&mut config);
        let start = Instant::now();
        let core = Core::new(config, Users::new(), [7; 32], bindings, start, UNIX0);
        Net::around(core, start)
    }

    /// REGISTER of `user` from `from` with `extra` header lines, answered to the challenge with `password`
    /// using the challenge of `algorithm`. Returns the final step.
    fn register(&mut self, user: &str, from: &str, extra: &str, password: &str, algorithm: &str, cseq: u32) -> Step {
        let unauthenticated = register_text(user, from, extra, cseq, "");
        let step = self.send(from, &unauthenticated);
        let r = step.only_to(from).response();
        assert_eq!(r.status, 401, "{r:?}");
        let challenge = pick_challenge(r, HeaderName::WwwAuthenticate, algorithm);
        let creds = respond(&challenge, user, password, "REGISTER", &format!("sip:{DOMAIN}"), "c0ffee", 1);
        let auth = format!("Authorization: {creds}\r\n");
        self.send(from, &register_text(user, from, extra, cseq + 1, &auth))
    }

    fn register_ok(&mut self, user: &str, from: &str, extra: &str) -> Step {
        let password: String = user.chars().rev().collect();
        let step = self.register(user, from, extra, &password, "SHA-256", 1);
        assert_eq!(step.only_to(from).response().status, 200, "{:#?}", step.sent);
        step
    }
}

fn register_text(user: &str, from: &str, extra: &str, cseq: u32, auth: &str) -> String {
    format!(
        "REGISTER sip:{DOMAIN} SIP/2.0
Via: SIP/2.0/UDP {from};branch=z9hG4bK-reg-{user}-{cseq}-{}
Max-Forwards: 70
From: <sip:{user}@{DOMAIN}>;tag=r{cseq}
To: <sip:{user}@{DOMAIN}>
Call-ID: reg-{user}-{from}
CSeq: {cseq} REGISTER
{auth}{extra}
",
        from.replace([':', '.'], "-")
    )
}

fn pick_challenge(r: &Response, header: HeaderName, algorithm: &str) -> Challenge {
    r.headers
        .get_all(&header)
        .map(|v| Challenge::parse(v).unwrap())
        .find(|c| c.algorithm.as_str() == algorithm)
        .unwrap_or_else(|| panic!("no {algorithm} challenge in {r:?}"))
}

fn contact(from: &str, user: &str, expires: u32) -> String {
    format!("Contact: <sip:{user}@{from}>;expires={expires}")
}

/// An INVITE or MESSAGE from alice to `target`, with Proxy-Authorization answering `challenge` if given.
fn request_text(method: &str, target: &str, branch: &str, cseq: u32, proxy_auth: &str) -> String {
    let body = if method == "INVITE" {
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n"
    } else {
        "hello"
    };
    let ctype = if method == "INVITE" { "application/sdp" } else { "text/plain" };
    format!(
        "{method} {target} SIP/2.0
Via: SIP/2.0/UDP {ALICE};branch={branch}
Max-Forwards: 70
From: <sip:alice@{DOMAIN}>;tag=a1
To: <{target}>
Call-ID: call-{branch}
CSeq: {cseq} {method}
Contact: <sip:alice@{ALICE}>
Content-Type: {ctype}
{proxy_auth}

{body}"
    )
}

/// Sends `method` from alice to `target` through the 407 challenge; returns the step after the
/// authenticated request.
fn authenticated(net: &mut Net, method: &str, target: &str, branch: &str) -> Step {
    let step = net.send(ALICE, &request_text(method, target, &format!("{branch}-0"), 1, ""));
    let r = step.only_to(ALICE).response();
    assert_eq!(r.status, 407, "{r:?}");
    if method == "INVITE" {
        // The 407 is acknowledged (hop by hop).
        let ack = format!(
            "ACK {target} SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch={branch}-0\nMax-Forwards: 70\nFrom: <sip:alice@{DOMAIN}>;tag=a1\nTo: <{target}>;tag={}\nCall-ID: call-{branch}-0\nCSeq: 1 ACK\n",
            r.headers.to().unwrap().tag().unwrap()
        );
        assert!(net.send(ALICE, &ack).sent.is_empty());
    }
    let challenge = pick_challenge(r, HeaderName::ProxyAuthenticate, "MD5");
    let creds = respond(&challenge, "alice", "ecila", method, target, "beef", 1);
    net.send(ALICE, &request_text(method, target, branch, 2, &format!("Proxy-Authorization: {creds}")))
}

fn count(m: &Request, name: HeaderName) -> usize {
    m.headers.get_all(&name).count()
}

/// A response of `status` to a forwarded request, as the UAS at `tag` would send it.
fn answer(req: &Request, status: u16, tag: &str) -> Message {
    let mut r = req.make_response_with_tag(status, None, tag);
    if (200..300).contains(&status) {
        r.headers.push(HeaderName::Contact, "<sip:bob@192.0.2.9:5070>");
    }
    Message::Response(r)
}

// ----- registrar ----------------------------------------------------------------------------------------

#[test]
fn register_with_sha256_and_md5_persists_before_answering() {
    let mut net = Net::new();
    for (algorithm, cseq) in [("SHA-256", 1), ("MD5", 10)] {
        let step = net.register("alice", ALICE, &contact(ALICE, "alice", 600), "ecila", algorithm, cseq);
        let r = step.only_to(ALICE).response();
        assert_eq!(r.status, 200, "{algorithm}: {r:?}");
        let contacts = r.headers.get_all(&HeaderName::Contact).collect::<Vec<_>>();
        assert_eq!(contacts.len(), 1, "{contacts:?}");
        assert!(contacts[0].contains(&format!("sip:alice@{ALICE}")) && contacts[0].contains("expires=600"));
        assert_eq!(step.first_sent_after_persist, Some(0), "the 200 must follow its Persist");
        match &step.persisted[..] {
            [BindingChange::Put(b)] => {
                assert_eq!(b.aor, format!("sip:alice@{DOMAIN}"));
                assert_eq!(b.expires_at, (net.unix() + 600) as i64);
                assert_eq!(b.cseq, cseq + 1);
            }
            other => panic!("expected one Put, got {other:?}"),
        }
    }
    assert_eq!(net.core.location().len(), 1);
    assert_eq!(net.core.counters().registrations_accepted, 2);
}

#[test]
fn wrong_password_and_replayed_nonce_are_challenged_again() {
    let mut net = Net::new();
    let step = net.register("alice", ALICE, &contact(ALICE, "alice", 600), "wrong", "MD5", 1);
    assert_eq!(step.only_to(ALICE).response().status, 401);
    assert!(step.persisted.is_empty());
    assert_eq!(net.core.counters().auth_failures, 1);
    assert_eq!(net.core.location().len(), 0);

    // A good answer, then the very same Authorization (nonce and nc) in a new request.
    let step = net.register("alice", ALICE, &contact(ALICE, "alice", 600), "ecila", "MD5", 5);
    assert_eq!(step.only_to(ALICE).response().status, 200);
    let replay = net.send(ALICE, &register_text("alice", ALICE, &contact(ALICE, "alice", 600), 9, ""));
    let challenge = pick_challenge(replay.only_to(ALICE).response(), HeaderName::WwwAuthenticate, "MD5");
    let creds = respond(&challenge, "alice", "ecila", "REGISTER", &format!("sip:{DOMAIN}"), "c", 1);
    let auth = format!("Authorization: {creds}\r\n");
    let first = net.send(ALICE, &register_text("alice", ALICE, &contact(ALICE, "alice", 600), 10, &auth));
    assert_eq!(first.only_to(ALICE).response().status, 200);
    let again = net.send(ALICE, &register_text("alice", ALICE, &contact(ALICE, "alice", 600), 11, &auth));
    assert_eq!(again.only_to(ALICE).response().status, 401);
    assert_eq!(net.core.counters().auth_replays, 1);
}

#[test]
fn credentials_of_another_user_and_unknown_or_disabled_users() {
    let mut net = Net::new();
    // bob's credentials for alice's AOR.
    let step = net.send(ALICE, &register_text("alice", ALICE, &contact(ALICE, "alice", 600), 1, ""));
    let challenge = pick_challenge(step.only_to(ALICE).response(), HeaderName::WwwAuthenticate, "MD5");
    let creds = respond(&challenge, "bob", "bob", "REGISTER", &format!("sip:{DOMAIN}"), "c", 1);
    let step = net.send(
        ALICE,
        &register_text("alice", ALICE, &contact(ALICE, "alice", 600), 2, &format!("Authorization: {creds}\r\n")),
    );
    assert_eq!(step.only_to(ALICE).response().status, 403);

    let step = net.send(ALICE, &register_text("nobody", ALICE, &contact(ALICE, "nobody", 600), 1, ""));
    assert_eq!(step.only_to(ALICE).response().status, 404);
    let step = net.send(ALICE, &register_text("carol", ALICE, &contact(ALICE, "carol", 600), 1, ""));
    assert_eq!(step.only_to(ALICE).response().status, 403);
    assert_eq!(net.core.location().len(), 0);
}

#[test]
fn too_brief_interval_gets_423_with_min_expires() {
    let mut net = Net::new();
    let step = net.register("alice", ALICE, &contact(ALICE, "alice", 10), "ecila", "MD5", 1);
    let r = step.only_to(ALICE).response();
    assert_eq!(r.status, 423);
    assert_eq!(r.headers.get(&HeaderName::MinExpires), Some("60"));
    assert!(step.persisted.is_empty());
}

#[test]
fn long_interval_is_shortened_and_wildcard_removes_everything() {
    let mut net = Net::new();
    let two = format!("{}\r\n{}", contact(ALICE, "alice", 99_999), contact("192.0.2.1:5080", "alice", 300));
    let step = net.register_ok("alice", ALICE, &two);
    let contacts: Vec<&str> = step.only_to(ALICE).response().headers.get_all(&HeaderName::Contact).collect();
    assert_eq!(contacts.len(), 2);
    assert!(contacts.iter().any(|c| c.contains("expires=3600")), "{contacts:?}");
    assert!(contacts.iter().any(|c| c.contains("expires=300")), "{contacts:?}");
    assert_eq!(net.core.location().len(), 2);

    let step = net.register("alice", ALICE, "Contact: *\r\nExpires: 0", "ecila", "MD5", 20);
    let r = step.only_to(ALICE).response();
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get(&HeaderName::Contact), None);
    assert_eq!(step.persisted.iter().filter(|c| matches!(c, BindingChange::Remove { .. })).count(), 2);
    assert_eq!(net.core.location().len(), 0);
}

#[test]
fn bindings_expire_and_survive_a_restart() {
    let mut net = Net::new();
    let step = net.register_ok("bob", BOB1, &contact(BOB1, "bob", 60));
    let saved: Vec<Binding> = step
        .persisted
        .iter()
        .filter_map(|c| match c {
            BindingChange::Put(b) => Some(b.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(saved.len(), 1);

    // A new core loaded from the store routes to bob at once.
    let mut restarted = Net::with(|_| {}, saved.clone());
    let step = authenticated(&mut restarted, "MESSAGE", &format!("sip:bob@{DOMAIN}"), "z9hG4bK-m1");
    assert_eq!(step.only_to(BOB1).request().method.as_str(), "MESSAGE");

    // After 60 s the binding is swept and its removal persisted.
    let step = net.advance(Duration::from_secs(66));
    assert!(
        matches!(&step.persisted[..], [BindingChange::Remove { aor, .. }] if aor == &format!("sip:bob@{DOMAIN}")),
        "{:?}",
        step.persisted
    );
    assert_eq!(net.core.location().len(), 0);
    assert_eq!(net.core.counters().bindings_expired, 1);
    // And one loaded after its expiry is not used.
    let mut late = Net::with(|_| {}, vec![]);
    late.core = Core::new(CoreConfig::new(DOMAIN, vec![]), Users::new(), [1; 32], saved, late.now, UNIX0 + 61);
    assert_eq!(late.core.location().len(), 0);
}

// ----- routing ------------------------------------------------------------------------------------------

#[test]
fn invite_forks_to_every_contact_and_cancels_the_loser() {
    let mut net = Net::new();
    net.register_ok("bob", BOB1, &contact(BOB1, "bob", 600));
    net.register("bob", BOB2, &contact(BOB2, "bob", 600), "bob", "MD5", 7);
    assert_eq!(net.core.location().len(), 2);

    let step = authenticated(&mut net, "INVITE", &format!("sip:bob@{DOMAIN}"), "z9hG4bK-inv1");
    assert_eq!(step.only_to(ALICE).response().status, 100);
    let inv1 = step.only_to(BOB1).request().clone();
    let inv2 = step.only_to(BOB2).request().clone();
    for inv in [&inv1, &inv2] {
        assert_eq!(inv.headers.vias().unwrap().len(), 2, "our Via on top of alice's");
        assert_eq!(count(inv, HeaderName::RecordRoute), 1);
        assert_eq!(inv.headers.get(&HeaderName::MaxForwards), Some("69"));
        assert!(
            inv.headers.get(&HeaderName::ProxyAuthorization).is_none(),
            "credentials for our realm stay here (RFC 3261 §22.3)"
        );
    }
    assert_eq!(inv1.uri.to_string(), format!("sip:bob@{BOB1}"));

    // BOB1 rings, BOB2 answers.
    let ringing = net.send_message(BOB1, &answer(&inv1, 180, "b1"));
    let r = ringing.only_to(ALICE).response();
    assert_eq!((r.status, r.headers.vias().unwrap().len()), (180, 1), "our Via popped");
    let ok = net.send_message(BOB2, &answer(&inv2, 200, "b2"));
    assert_eq!(ok.only_to(ALICE).response().status, 200);
    let cancel = ok.only_to(BOB1).request();
    assert_eq!(cancel.method.as_str(), "CANCEL");
    assert_eq!(cancel.headers.top_via().unwrap().branch(), inv1.headers.top_via().unwrap().branch());
    // BOB1 answers the CANCEL and the INVITE with 487; the proxy acknowledges the 487 and keeps it.
    let step = net.send_message(BOB1, &Message::Response(cancel.make_response(200, None)));
    assert!(step.sent.is_empty(), "{:#?}", step.sent);
    let step = net.send_message(BOB1, &answer(&inv1, 487, "b1"));
    assert_eq!(step.only_to(BOB1).request().method.as_str(), "ACK");
    assert!(step.to(ALICE).is_empty());
    assert_eq!(net.core.counters().forks_won, 1);
    assert_eq!(net.core.counters().cancels, 1);
}

#[test]
fn cancel_from_the_caller_cancels_every_branch() {
    let mut net = Net::new();
    net.register_ok("bob", BOB1, &contact(BOB1, "bob", 600));
    net.register("bob", BOB2, &contact(BOB2, "bob", 600), "bob", "MD5", 7);
    let target = format!("sip:bob@{DOMAIN}");
    let step = authenticated(&mut net, "INVITE", &target, "z9hG4bK-inv2");
    let inv1 = step.only_to(BOB1).request().clone();
    let inv2 = step.only_to(BOB2).request().clone();
    net.send_message(BOB1, &answer(&inv1, 180, "b1"));
    net.send_message(BOB2, &answer(&inv2, 180, "b2"));

    let cancel = format!(
        "CANCEL {target} SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bK-inv2\nMax-Forwards: 70\nFrom: <sip:alice@{DOMAIN}>;tag=a1\nTo: <{target}>\nCall-ID: call-z9hG4bK-inv2\nCSeq: 2 CANCEL\n"
    );
    let step = net.send(ALICE, &cancel);
    assert_eq!(step.only_to(ALICE).response().status, 200);
    assert_eq!(step.only_to(BOB1).request().method.as_str(), "CANCEL");
    assert_eq!(step.only_to(BOB2).request().method.as_str(), "CANCEL");
    // Both branches end 487: alice gets one 487.
    let a = net.send_message(BOB1, &answer(&inv1, 487, "b1"));
    assert!(a.to(ALICE).is_empty(), "waits for the other branch");
    let b = net.send_message(BOB2, &answer(&inv2, 487, "b2"));
    assert_eq!(b.only_to(ALICE).response().status, 487);
}

#[test]
fn message_goes_to_every_contact_and_one_answer_returns() {
    let mut net = Net::new();
    net.register_ok("bob", BOB1, &contact(BOB1, "bob", 600));
    net.register("bob", BOB2, &contact(BOB2, "bob", 600), "bob", "MD5", 7);
    let step = authenticated(&mut net, "MESSAGE", &format!("sip:bob@{DOMAIN}"), "z9hG4bK-msg1");
    assert!(step.to(ALICE).is_empty(), "no 100 Trying for a non-INVITE");
    let m1 = step.only_to(BOB1).request().clone();
    let m2 = step.only_to(BOB2).request().clone();
    assert_eq!(m1.body, b"hello");
    assert!(count(&m1, HeaderName::RecordRoute) == 0, "MESSAGE creates no dialog");
    let first = net.send_message(BOB1, &answer(&m1, 200, "b1"));
    assert_eq!(first.only_to(ALICE).response().status, 200);
    let second = net.send_message(BOB2, &answer(&m2, 200, "b2"));
    assert!(second.to(ALICE).is_empty(), "one final response per non-INVITE transaction");
}

#[test]
fn unknown_unregistered_foreign_and_unauthenticated() {
    let mut net = Net::new();
    let cases = [
        (format!("sip:nobody@{DOMAIN}"), 404),
        (format!("sip:bob@{DOMAIN}"), 480),
        ("sip:bob@elsewhere.example.org".to_owned(), 403),
    ];
    for (i, (target, status)) in cases.into_iter().enumerate() {
        let branch = format!("z9hG4bK-c{i}");
        let step = if status == 403 {
            net.send(ALICE, &request_text("MESSAGE", &target, &branch, 1, ""))
        } else {
            authenticated(&mut net, "MESSAGE", &target, &branch)
        };
        assert_eq!(step.only_to(ALICE).response().status, status, "{target}: {:?}", step.only_to(ALICE).response());
    }
    // A wrong password for the proxy challenge is challenged again, not forwarded.
    net.register_ok("bob", BOB1, &contact(BOB1, "bob", 600));
    let target = format!("sip:bob@{DOMAIN}");
    let step = net.send(ALICE, &request_text("MESSAGE", &target, "z9hG4bK-w0", 1, ""));
    let challenge = pick_challenge(step.only_to(ALICE).response(), HeaderName::ProxyAuthenticate, "MD5");
    let creds = respond(&challenge, "alice", "nope", "MESSAGE", &target, "c", 1);
    let step =
        net.send(ALICE, &request_text("MESSAGE", &target, "z9hG4bK-w1", 2, &format!("Proxy-Authorization: {creds}")));
    assert_eq!(step.only_to(ALICE).response().status, 407);
    assert!(step.to(BOB1).is_empty());
}

#[test]
fn options_to_the_server_and_too_many_hops() {
    let mut net = Net::new();
    let options = format!(
        "OPTIONS sip:{SERVER} SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bK-o1\nMax-Forwards: 70\nFrom: <sip:alice@{DOMAIN}>;tag=o\nTo: <sip:{SERVER}>\nCall-ID: o1\nCSeq: 1 OPTIONS\n"
    );
    let step = net.send(ALICE, &options);
    let r = step.only_to(ALICE).response();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.headers.get(&HeaderName::Allow).unwrap().contains("REGISTER"));
    let hops = options
        .replace("Max-Forwards: 70", "Max-Forwards: 0")
        .replace("z9hG4bK-o1", "z9hG4bK-o2")
        .replace(&format!("sip:{SERVER} SIP"), &format!("sip:bob@{DOMAIN} SIP"));
    assert_eq!(net.send(ALICE, &hops).only_to(ALICE).response().status, 483);
}

#[test]
fn a_silent_branch_times_out_to_408() {
    let mut net = Net::new();
    net.register_ok("bob", BOB1, &contact(BOB1, "bob", 600));
    let step = authenticated(&mut net, "MESSAGE", &format!("sip:bob@{DOMAIN}"), "z9hG4bK-t1");
    step.only_to(BOB1);
    let later = net.advance(Duration::from_secs(40));
    let retransmits = later.to(BOB1).len();
    assert!(retransmits >= 5, "UDP retransmissions (Timer E), got {retransmits}");
    assert_eq!(later.only_to(ALICE).response().status, 408);
    assert_eq!(net.core.counters().branch_timeouts, 1);
}

#[test]
fn authentication_off_lets_anyone_register_and_send() {
    let mut net = Net::with(|c| c.authenticate = false, vec![]);
    let step = net.send(BOB1, &register_text("bob", BOB1, &contact(BOB1, "bob", 600), 1, ""));
    assert_eq!(step.only_to(BOB1).response().status, 200);
    let step = net.send(ALICE, &request_text("MESSAGE", &format!("sip:bob@{DOMAIN}"), "z9hG4bK-n1", 1, ""));
    assert_eq!(step.only_to(BOB1).request().method.as_str(), "MESSAGE");
}

#[test]
fn a_retransmitted_register_gets_the_same_answer_until_timer_j() {
    let mut net = Net::with(|c| c.authenticate = false, vec![]);
    let register = sip(&register_text("bob", BOB1, &contact(BOB1, "bob", 600), 1, ""));
    let first = net.send_bytes(BOB1, &register);
    assert_eq!(first.only_to(BOB1).response().status, 200);
    assert_eq!(first.persisted.len(), 1);
    // The transaction is over at once: its 200 stays in the completed cache for retransmissions.
    assert_eq!((net.core.transactions(), net.core.completed_transactions()), (0, 1));
    for wait in [Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(30)] {
        net.advance(wait);
        let again = net.send_bytes(BOB1, &register);
        // The same bytes again, nothing re-processed: no binding write, no out-of-order 500.
        assert_eq!(again.only_to(BOB1).message, first.only_to(BOB1).message, "after {wait:?}");
        assert!(again.persisted.is_empty());
    }
    assert_eq!(net.core.counters().registrations_accepted, 1);
    assert_eq!(net.core.transaction_counters().retransmissions_absorbed, 3);
    assert_eq!(net.core.counters().requests, 1);
    // After Timer J (64*T1 = 32 s after the answer) the request is new to the server again, and the
    // registrar refuses the old CSeq of the same Call-ID (RFC 3261 §10.3 step 7).
    net.advance(Duration::from_millis(600));
    assert_eq!(net.core.completed_transactions(), 0);
    let late = net.send_bytes(BOB1, &register);
    assert_eq!(late.only_to(BOB1).response().status, 500);
}

#[test]
fn a_request_that_comes_back_unchanged_is_a_loop() {
    let mut net = Net::with(|c| c.authenticate = false, vec![]);
    // bob's contact is this server itself: a MESSAGE to bob spirals back to us, then loops.
    let step = net.send(BOB1, &register_text("bob", BOB1, &contact(SERVER, "bob", 600), 1, ""));
    assert_eq!(step.only_to(BOB1).response().status, 200);
    let step = net.send(ALICE, &request_text("MESSAGE", &format!("sip:bob@{DOMAIN}"), "z9hG4bK-loop", 1, ""));
    let first = step.only_to(SERVER).message.clone();
    // Back to us with another Request-URI (the contact): a spiral, forwarded again.
    let step = net.send_message(SERVER, &first);
    let second = step.only_to(SERVER).message.clone();
    assert_eq!(net.core.counters().loops, 0);
    // Back again unchanged: our Via with this request's loop hash is on it.
    let step = net.send_message(SERVER, &second);
    assert_eq!(step.only_to(SERVER).response().status, 482);
    assert_eq!(net.core.counters().loops, 1);
}

#[test]
fn udp_contacts_are_reached_at_their_contact_address() {
    let mut net = Net::new();
    // bob registers from BOB1 a Contact on another port (a separate receiving socket, as SIPp does).
    net.register_ok("bob", BOB1, &contact("192.0.2.2:5099", "bob", 600));
    let step = authenticated(&mut net, "MESSAGE", &format!("sip:bob@{DOMAIN}"), "z9hG4bK-u1");
    assert_eq!(step.only_to("192.0.2.2:5099").request().method.as_str(), "MESSAGE");
    assert!(step.to(BOB1).is_empty());
}

#[test]
fn a_service_answers_authenticated_requests_for_its_user() {
    use std::sync::{Arc, Mutex};
    let mut net = Net::new();
    type Seen = Vec<(String, Option<String>, Vec<u8>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let record = seen.clone();
    net.core.add_service(
        "SERVICE",
        "mras",
        Box::new(move |req: vienna_signaling::ServiceRequest<'_>| {
            record.lock().unwrap().push((
                req.requester.to_owned(),
                req.content_type.map(str::to_owned),
                req.body.to_vec(),
            ));
            if req.body == b"hello" { Ok(("application/x-test".into(), b"answer".to_vec())) } else { Err(415) }
        }),
    );
    let step = authenticated(&mut net, "SERVICE", &format!("sip:mras@{DOMAIN}"), "z9hG4bK-svc1");
    let r = step.only_to(ALICE).response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, b"answer");
    assert_eq!(r.headers.get(&HeaderName::ContentType), Some("application/x-test"));
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls, [(format!("sip:alice@{DOMAIN}"), Some("text/plain".to_owned()), b"hello".to_vec())]);
    // Other methods to that user are not the service's (no such account: 404).
    let other = authenticated(&mut net, "MESSAGE", &format!("sip:mras@{DOMAIN}"), "z9hG4bK-svc2");
    assert_eq!(other.only_to(ALICE).response().status, 404);
    assert_eq!(seen.lock().unwrap().len(), 1, "the 407 round and the MESSAGE never reached the service");
}
