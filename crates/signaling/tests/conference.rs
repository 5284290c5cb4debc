//! The conference focus over SIP, driven with a simulated network and clock: C3P addConference by
//! SERVICE, the focus dialog (INVITE addUser, INFO commands, BYE), dial-in with SDP through a simulated
//! MCU, roster subscriptions with full and partial NOTIFYs and increasing versions, ejection, media
//! timeout, 2xx retransmission, CANCEL, the end of a conference, and malformed C3P.

#![allow(clippy::too_many_arguments)]

mod harness;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use vienna_signaling::conference::{ConferenceConfig, ConferenceOutput, MediaEvent, MediaJoined, MediaRefused};
use vienna_signaling::{Account, Core, CoreConfig, Directory, LocalAddr};
use vienna_sip::digest::{Challenge, Ha1, respond};
use vienna_sip::{HeaderName, Message, Request, Response, Transport};
use vienna_xml::{Element, Limits};

use harness::{Step, UNIX0, addr};

/// The core of these tests on the simulated network.
type Net = harness::Net<Users>;

const DOMAIN: &str = "example.com";
const SERVER: &str = "192.0.2.100:5060";
const ALICE: &str = "192.0.2.1:5070";
const BOB: &str = "192.0.2.2:5070";
const CAROL: &str = "192.0.2.3:5070";
const CI: &str = "urn:ietf:params:xml:ns:conference-info";

struct Users(HashMap<String, Account>);

impl Directory for Users {
    fn account(&self, aor: &str) -> Option<Account> {
        self.0.values().find(|a| a.aor == aor).cloned()
    }
    fn account_by_auth(&self, username: &str, realm: &str) -> Option<Account> {
        (realm == DOMAIN).then(|| self.0.get(username).cloned()).flatten()
    }
}

fn users() -> Users {
    let mut m = HashMap::new();
    for user in ["alice", "bob", "carol"] {
        let aor = format!("sip:{user}@{DOMAIN}");
        m.insert(user.to_owned(), Account { aor, enabled: true, ha1: Ha1::derive(user, DOMAIN, user) });
    }
    Users(m)
}

impl Step {
    fn join(&self) -> (u64, String, String) {
        self.conference
            .iter()
            .find_map(|o| match o {
                ConferenceOutput::Join { token, conference, offer, .. } => {
                    Some((*token, conference.clone(), offer.clone()))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Join in {:#?}", self.conference))
    }
}

impl Net {
    fn new(authenticate: bool) -> Net {
        let local = vec![LocalAddr { transport: Transport::Udp, addr: addr(SERVER) }];
        let mut config = CoreConfig::new(DOMAIN, local);
        config.authenticate = authenticate;
        let now = Instant::now();
        let mut core = Core::new(config, users(), [7; 32], vec![], now, UNIX0);
        let mut conf = ConferenceConfig::default();
        conf.focus.dial_in = Some(vienna_focus::DialIn { prefix: "conf-".into(), domain: DOMAIN.into() });
        core.enable_conferences(conf, [9; 32], None);
        Net::around(core, now)
    }

    /// Answers every request in `step` sent to `to` with 200 (the client side of NOTIFY and BYE).
    fn ok_all(&mut self, step: &Step, to: &str) -> Step {
        let mut all = Step::default();
        for s in step.sent.iter().filter(|s| s.to == addr(to)) {
            if let Message::Request(r) = &s.message {
                let resp = r.make_response(200, None);
                let next = self.send_bytes(to, &resp.to_bytes());
                all.sent.extend(next.sent);
                all.conference.extend(next.conference);
            }
        }
        all
    }
}

/// An out-of-dialog request from `user` at `from`.
fn request(method: &str, uri: &str, user: &str, from: &str, call: &str, cseq: u32, extra: &str, body: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0
Via: SIP/2.0/UDP {from};branch=z9hG4bK-{call}-{cseq}-{method}
Max-Forwards: 70
From: \"{user}\" <sip:{user}@{DOMAIN}>;tag=t-{user}
To: <{uri}>
Call-ID: {call}
CSeq: {cseq} {method}
Contact: <sip:{user}@{from}>
{extra}
{body}"
    )
}

/// A request in dialog `to_tag` (the focus's tag).
fn in_dialog(
    method: &str,
    user: &str,
    from: &str,
    call: &str,
    to_tag: &str,
    cseq: u32,
    extra: &str,
    body: &str,
) -> String {
    format!(
        "{method} sip:focus@{SERVER} SIP/2.0
Via: SIP/2.0/UDP {from};branch=z9hG4bK-{call}-{cseq}-{method}-d
Max-Forwards: 70
From: <sip:{user}@{DOMAIN}>;tag=t-{user}
To: <sip:focus@{DOMAIN}>;tag={to_tag}
Call-ID: {call}
CSeq: {cseq} {method}
Contact: <sip:{user}@{from}>
{extra}
{body}"
    )
}

fn c3p(to: &str, from: &str, id: u32, command: &str) -> String {
    format!(
        r#"<request xmlns="urn:ietf:params:xml:ns:cccp" C3PVersion="1" to="{to}" from="{from}" requestId="{id}">{command}</request>"#
    )
}

fn xml(body: &[u8]) -> Element {
    vienna_xml::parse(body, Limits::default()).unwrap()
}

fn to_tag(r: &Response) -> String {
    r.headers.to().unwrap().tag().unwrap().to_owned()
}

/// A NOTIFY's document: (state, version, users as (entity, state)).
fn roster(n: &Request) -> (String, u32, Vec<(String, String)>, Element) {
    let doc = xml(&n.body);
    let users = doc
        .child(CI, "users")
        .map(|u| {
            u.children_named(CI, "user")
                .map(|u| (u.attr("entity").unwrap().to_owned(), u.attr("state").unwrap_or("full").to_owned()))
                .collect()
        })
        .unwrap_or_default();
    (doc.attr("state").unwrap().to_owned(), doc.attr("version").unwrap().parse().unwrap(), users, doc)
}

const SDP: &str = "v=0\no=- 1 1 IN IP4 192.0.2.3\ns=-\nc=IN IP4 192.0.2.3\nt=0 0\nm=audio 4000 RTP/AVP 0\n";

/// Alice creates a conference on her focus factory; returns its focus URI.
fn create(net: &mut Net) -> String {
    let factory = format!("sip:alice@{DOMAIN};gruu;opaque=app:conf:focusfactory");
    let body = c3p(
        &factory,
        &format!("sip:alice@{DOMAIN}"),
        1,
        "<addConference><conference-info xmlns=\"urn:ietf:params:xml:ns:conference-info\"><conference-description><subject>Standup</subject></conference-description></conference-info></addConference>",
    );
    let text = request("SERVICE", &factory, "alice", ALICE, "svc-1", 1, "Content-Type: application/cccp+xml\n", &body);
    let step = net.send(ALICE, &text);
    let r = step.response_to(ALICE);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.headers.get(&HeaderName::ContentType), Some("application/cccp+xml"));
    assert!(matches!(&step.conference[..], [ConferenceOutput::Save(c)] if c.subject == "Standup"), "{step:?}");
    assert_eq!(step.saved_before, Some(0), "stored before the 200 OK");
    let root = xml(&r.body);
    assert_eq!(root.attr("code"), Some("success"));
    root.children[0].children[0].attr("entity").unwrap().to_owned()
}

#[test]
fn roster_follows_join_mute_eject_lock_and_leave_with_increasing_versions() {
    let mut net = Net::new(false);
    let focus = create(&mut net);
    let id = focus.rsplit(':').next().unwrap().to_owned();
    assert!(focus.ends_with(&format!("app:conf:focus:id:{id}")));

    // Bob subscribes to the roster: 200, then a full document with version 1 and nobody in it.
    let sub = request(
        "SUBSCRIBE",
        &focus,
        "bob",
        BOB,
        "sub-1",
        1,
        "Event: conference\nAccept: application/conference-info+xml\nExpires: 600\n",
        "",
    );
    let step = net.send(BOB, &sub);
    let ok = step.response_to(BOB);
    assert_eq!((ok.status, ok.headers.get(&HeaderName::Expires)), (200, Some("600")));
    let notify = step.requests_to(BOB, "NOTIFY");
    assert_eq!(notify.len(), 1);
    assert_eq!(notify[0].headers.get(&HeaderName::ContentType), Some("application/conference-info+xml"));
    assert!(notify[0].headers.get(&HeaderName::SubscriptionState).unwrap().starts_with("active;expires="));
    let (state, version, users, doc) = roster(notify[0]);
    assert_eq!((state.as_str(), version, users.len()), ("full", 1, 0));
    assert_eq!(doc.attr("entity"), Some(focus.as_str()));
    let uris: Vec<String> = doc
        .child(CI, "conference-description")
        .unwrap()
        .child(CI, "conf-uris")
        .unwrap()
        .children_named(CI, "entry")
        .map(|e| e.child(CI, "uri").unwrap().text.clone())
        .collect();
    assert_eq!(uris[1], format!("sip:conf-{id}@{DOMAIN}"), "the dial-in URI is listed");
    net.ok_all(&step, BOB);

    // Alice joins the focus with addUser: a presenter, in a dialog.
    let add = c3p(
        &focus,
        &format!("sip:alice@{DOMAIN}"),
        2,
        &format!(
            "<addUser><conferenceKeys confEntity=\"{focus}\"/><ci:user xmlns:ci=\"{CI}\" entity=\"sip:alice@{DOMAIN}\"><ci:roles><ci:entry>attendee</ci:entry></ci:roles><ci:endpoint entity=\"{{ALICE-GUID}}\"/></ci:user></addUser>"
        ),
    );
    let step = net.send(
        ALICE,
        &request("INVITE", &focus, "alice", ALICE, "focus-a", 1, "Content-Type: application/cccp+xml\n", &add),
    );
    let ok = step.responses_to(ALICE).into_iter().find(|r| r.status == 200).expect("200 to the focus INVITE");
    assert!(ok.headers.get(&HeaderName::Contact).unwrap().contains("opaque=app:conf:focus:id:"), "{ok:?}");
    let alice_tag = to_tag(ok);
    assert!(String::from_utf8_lossy(&ok.body).contains("<entry>presenter</entry>"));
    let notify = step.requests_to(BOB, "NOTIFY");
    let (state, version, users, _) = roster(notify[0]);
    assert_eq!((state.as_str(), version), ("partial", 2));
    assert_eq!(users, [(format!("sip:alice@{DOMAIN}"), "full".to_owned())]);
    net.ok_all(&step, BOB);
    let ack = in_dialog("ACK", "alice", ALICE, "focus-a", &alice_tag, 1, "", "");
    assert!(net.send(ALICE, &ack).sent.is_empty());

    // Carol dials in with SDP: the offer goes to the MCU, the answer to her.
    let step = net.send(
        CAROL,
        &request(
            "INVITE",
            &format!("sip:conf-{id}@{DOMAIN}"),
            "carol",
            CAROL,
            "dial-c",
            1,
            "Content-Type: application/sdp\n",
            SDP,
        ),
    );
    let (token, conference, offer) = step.join();
    assert_eq!((conference.as_str(), offer.replace("\r\n", "\n").as_str()), (id.as_str(), SDP));
    net.core.media_answer(
        net.now,
        token,
        Ok(MediaJoined { participant: "0-0".into(), answer: "v=0\r\nm=audio 40000 RTP/AVP 0\r\n".into(), ssrc: None }),
    );
    let step = net.drain();
    let ok = step.response_to(CAROL);
    assert_eq!((ok.status, ok.headers.get(&HeaderName::ContentType)), (200, Some("application/sdp")));
    let carol_tag = to_tag(ok);
    let notify = step.requests_to(BOB, "NOTIFY");
    let (_, version, users, doc) = roster(notify[0]);
    assert_eq!((version, users.len()), (3, 1));
    let carol = doc.child(CI, "users").unwrap().child(CI, "user").unwrap();
    assert_eq!(carol.child(CI, "display-text").unwrap().text, "carol");
    let av = carol.child(CI, "endpoint").unwrap();
    assert_eq!(av.attr("session-type"), Some("audio-video"));
    net.ok_all(&step, BOB);
    net.send(CAROL, &in_dialog("ACK", "carol", CAROL, "dial-c", &carol_tag, 1, "", ""));

    // The MCU learns her SSRC: it shows as src-id.
    net.core.media_event(net.now, MediaEvent::Source { conference: id.clone(), participant: "0-0".into(), ssrc: 4242 });
    let step = net.drain();
    let n = step.requests_to(BOB, "NOTIFY");
    assert_eq!(roster(n[0]).1, 4);
    assert!(String::from_utf8_lossy(&n[0].body).contains("<src-id>4242</src-id>"));
    net.ok_all(&step, BOB);

    // Alice mutes Carol with modifyEndpointMedia in her focus dialog: 202, the MCU is told, the roster shows it.
    let mute = c3p(
        &focus,
        &format!("sip:alice@{DOMAIN}"),
        3,
        &format!(
            "<modifyEndpointMedia><mediaKeys confEntity=\"{focus}\" userEntity=\"sip:carol@{DOMAIN}\" mediaId=\"1\"/><ci:media xmlns:ci=\"{CI}\" id=\"1\"><ci:type>audio</ci:type><ci:status>recvonly</ci:status></ci:media></modifyEndpointMedia>"
        ),
    );
    let step = net.send(
        ALICE,
        &in_dialog("INFO", "alice", ALICE, "focus-a", &alice_tag, 2, "Content-Type: application/cccp+xml\n", &mute),
    );
    let r = step.response_to(ALICE);
    assert_eq!(r.status, 202);
    assert_eq!(xml(&r.body).attr("code"), Some("success"));
    assert!(
        step.conference.contains(&ConferenceOutput::Mute {
            conference: id.clone(),
            participant: "0-0".into(),
            muted: true
        }),
        "{step:?}"
    );
    let n = step.requests_to(BOB, "NOTIFY");
    let (state, version, _, doc) = roster(n[0]);
    assert_eq!((state.as_str(), version), ("partial", 5));
    let media = doc.child(CI, "users").unwrap().child(CI, "user").unwrap().child(CI, "endpoint").unwrap();
    assert_eq!(media.child(CI, "media").unwrap().child(CI, "status").unwrap().text, "recvonly");
    net.ok_all(&step, BOB);

    // Two changes while a NOTIFY is in flight are merged into the next one.
    net.core.media_event(net.now, MediaEvent::Dominant { conference: id.clone(), participant: Some("0-0".into()) });
    let first = net.drain();
    assert_eq!(roster(first.requests_to(BOB, "NOTIFY")[0]).1, 6);
    assert!(String::from_utf8_lossy(&first.requests_to(BOB, "NOTIFY")[0].body).contains("dominant-speaker"));
    let lock = c3p(
        &focus,
        &format!("sip:alice@{DOMAIN}"),
        4,
        &format!(
            "<modifyConferenceLock><conferenceKeys confEntity=\"{focus}\"/><locked>true</locked></modifyConferenceLock>"
        ),
    );
    let step = net.send(
        ALICE,
        &in_dialog("INFO", "alice", ALICE, "focus-a", &alice_tag, 3, "Content-Type: application/cccp+xml\n", &lock),
    );
    assert_eq!(step.response_to(ALICE).status, 202);
    assert!(step.requests_to(BOB, "NOTIFY").is_empty(), "one NOTIFY in flight at a time");
    assert!(step.conference.iter().any(|c| matches!(c, ConferenceOutput::Save(r) if r.locked)));
    let next = net.ok_all(&first, BOB);
    let n = next.requests_to(BOB, "NOTIFY");
    assert_eq!(n.len(), 1);
    let (_, version, _, doc) = roster(n[0]);
    assert_eq!(version, 7);
    assert_eq!(doc.child(CI, "conference-state").unwrap().child(CI, "locked").unwrap().text, "true");
    net.ok_all(&next, BOB);
    // Locked: Bob cannot dial in.
    let step =
        net.send(BOB, &request("INVITE", &focus, "bob", BOB, "dial-b", 1, "Content-Type: application/sdp\n", SDP));
    assert_eq!(step.responses_to(BOB).last().unwrap().status, 403);

    // Alice ejects Carol: 202, a BYE to Carol, the MCU lets her go, the roster deletes her.
    let eject = c3p(
        &focus,
        &format!("sip:alice@{DOMAIN}"),
        5,
        &format!("<deleteUser><userKeys confEntity=\"{focus}\" userEntity=\"sip:carol@{DOMAIN}\"/></deleteUser>"),
    );
    let step = net.send(
        ALICE,
        &in_dialog("INFO", "alice", ALICE, "focus-a", &alice_tag, 4, "Content-Type: application/cccp+xml\n", &eject),
    );
    assert_eq!(step.response_to(ALICE).status, 202);
    let bye = step.requests_to(CAROL, "BYE");
    assert_eq!(bye.len(), 1);
    assert_eq!(bye[0].headers.call_id().unwrap(), "dial-c");
    assert!(step.conference.contains(&ConferenceOutput::Leave { conference: id.clone(), participant: "0-0".into() }));
    let (_, version, users, _) = roster(step.requests_to(BOB, "NOTIFY")[0]);
    assert_eq!((version, users), (8, vec![(format!("sip:carol@{DOMAIN}"), "deleted".to_owned())]));
    net.ok_all(&step, BOB);
    net.ok_all(&step, CAROL);

    // Malformed C3P gets 400, without a C3P body.
    let step = net.send(
        ALICE,
        &in_dialog(
            "INFO",
            "alice",
            ALICE,
            "focus-a",
            &alice_tag,
            5,
            "Content-Type: application/cccp+xml\n",
            "<request><a/>",
        ),
    );
    let r = step.response_to(ALICE);
    assert_eq!(r.status, 400);
    assert!(r.body.is_empty());

    // Alice leaves with BYE: deleted from the roster.
    let step = net.send(ALICE, &in_dialog("BYE", "alice", ALICE, "focus-a", &alice_tag, 6, "", ""));
    assert_eq!(step.response_to(ALICE).status, 200);
    let (_, version, users, _) = roster(step.requests_to(BOB, "NOTIFY")[0]);
    assert_eq!((version, users), (9, vec![(format!("sip:alice@{DOMAIN}"), "deleted".to_owned())]));
    net.ok_all(&step, BOB);

    // Alice ends the conference: removed from the store, the subscription ends, the MCU conference goes.
    let end = c3p(
        &focus,
        &format!("sip:alice@{DOMAIN}"),
        6,
        &format!("<deleteConference><conferenceKeys confEntity=\"{focus}\"/></deleteConference>"),
    );
    let step = net.send(
        ALICE,
        &request("SERVICE", &focus, "alice", ALICE, "svc-2", 1, "Content-Type: application/cccp+xml\n", &end),
    );
    assert_eq!(step.response_to(ALICE).status, 200);
    assert!(step.conference.contains(&ConferenceOutput::Remove(id.clone())));
    assert!(step.conference.contains(&ConferenceOutput::End { conference: id.clone() }));
    let n = step.requests_to(BOB, "NOTIFY");
    assert_eq!(n[0].headers.get(&HeaderName::SubscriptionState), Some("terminated;reason=noresource"));
    net.ok_all(&step, BOB);
    let views = net.core.conference_views();
    assert!(views.is_empty(), "{views:?}");
    let c = net.core.conference_counters();
    assert_eq!((c.focus_joins, c.media_joins, c.c3p_malformed, c.conferences_ended), (1, 1, 1, 1));
}

#[test]
fn media_timeouts_retransmissions_cancel_and_refusals() {
    let mut net = Net::new(false);
    let focus = create(&mut net);
    let id = focus.rsplit(':').next().unwrap().to_owned();
    let dial = format!("sip:conf-{id}@{DOMAIN}");
    let av = focus.replace("app:conf:focus:", "app:conf:audio-video:");

    // The Microsoft way to the audio: INVITE the AV MCU URI with SDP. No ACK comes: the 200 OK is
    // retransmitted (T1, 2T1, ...) and after 64*T1 the dialog is torn down with a BYE.
    let step =
        net.send(CAROL, &request("INVITE", &av, "carol", CAROL, "av-c", 1, "Content-Type: application/sdp\n", SDP));
    let (token, ..) = step.join();
    net.core.media_answer(
        net.now,
        token,
        Ok(MediaJoined { participant: "0-1".into(), answer: "v=0\r\n".into(), ssrc: Some(7) }),
    );
    let first = net.drain();
    assert_eq!(first.response_to(CAROL).status, 200);
    let later = net.advance(Duration::from_millis(1600));
    assert_eq!(later.responses_to(CAROL).iter().filter(|r| r.status == 200).count(), 2, "at 0.5 s and 1.5 s");
    let later = net.advance(Duration::from_secs(40));
    let byes = later.requests_to(CAROL, "BYE");
    assert!(!byes.is_empty(), "{later:?}");
    assert!(
        byes.iter().all(|b| b.headers.top_via().unwrap().branch() == byes[0].headers.top_via().unwrap().branch()),
        "one BYE, retransmitted"
    );
    assert!(later.conference.contains(&ConferenceOutput::Leave { conference: id.clone(), participant: "0-1".into() }));

    // Media timeout: the MCU drops a participant; the focus sends her a BYE.
    let step = net
        .send(CAROL, &request("INVITE", &dial, "carol", CAROL, "dial-c2", 1, "Content-Type: application/sdp\n", SDP));
    let (token, ..) = step.join();
    net.core.media_answer(
        net.now,
        token,
        Ok(MediaJoined { participant: "0-2".into(), answer: "v=0\r\n".into(), ssrc: None }),
    );
    let ok = net.drain();
    let tag = to_tag(ok.response_to(CAROL));
    net.send(CAROL, &in_dialog("ACK", "carol", CAROL, "dial-c2", &tag, 1, "", ""));
    assert_eq!(net.core.conference_views()[0].users.len(), 1);
    net.core.media_event(net.now, MediaEvent::Left { conference: id.clone(), participant: "0-2".into() });
    let step = net.drain();
    assert_eq!(step.requests_to(CAROL, "BYE").len(), 1);
    assert!(net.core.conference_views()[0].users.is_empty());

    // CANCEL while the MCU is answering: 487; the late answer is undone.
    let invite = request("INVITE", &dial, "bob", BOB, "dial-b", 1, "Content-Type: application/sdp\n", SDP);
    let step = net.send(BOB, &invite);
    let (token, ..) = step.join();
    let cancel = format!(
        "CANCEL {dial} SIP/2.0\nVia: SIP/2.0/UDP {BOB};branch=z9hG4bK-dial-b-1-INVITE\nMax-Forwards: 70\n\
         From: \"bob\" <sip:bob@{DOMAIN}>;tag=t-bob\nTo: <{dial}>\nCall-ID: dial-b\nCSeq: 1 CANCEL\n\n"
    );
    let step = net.send(BOB, &cancel);
    let statuses: Vec<u16> = step.responses_to(BOB).iter().map(|r| r.status).collect();
    assert!(statuses.contains(&200) && statuses.contains(&487), "{statuses:?}");
    net.core.media_answer(
        net.now,
        token,
        Ok(MediaJoined { participant: "0-3".into(), answer: "v=0\r\n".into(), ssrc: None }),
    );
    let step = net.drain();
    assert!(step.conference.contains(&ConferenceOutput::Leave { conference: id.clone(), participant: "0-3".into() }));

    // The MCU refuses an offer: 488.
    let step =
        net.send(BOB, &request("INVITE", &dial, "bob", BOB, "dial-b2", 1, "Content-Type: application/sdp\n", SDP));
    let (token, ..) = step.join();
    net.core.media_answer(net.now, token, Err(MediaRefused::NotAcceptable("encryption required".into())));
    assert_eq!(net.drain().responses_to(BOB).last().unwrap().status, 488);

    // Unknown conferences, wrong bodies, bad events, fetch with Expires: 0.
    let ghost = format!("sip:conf-NOSUCHCONF@{DOMAIN}");
    let step = net.send(BOB, &request("INVITE", &ghost, "bob", BOB, "g", 1, "Content-Type: application/sdp\n", SDP));
    assert_eq!(step.responses_to(BOB).last().unwrap().status, 404);
    let step = net.send(BOB, &request("INVITE", &dial, "bob", BOB, "t", 1, "Content-Type: text/plain\n", "hi"));
    assert_eq!(step.responses_to(BOB).last().unwrap().status, 415);
    let step = net.send(BOB, &request("SUBSCRIBE", &dial, "bob", BOB, "s", 1, "Event: presence\n", ""));
    assert_eq!(step.response_to(BOB).status, 489);
    let step = net.send(BOB, &request("SUBSCRIBE", &dial, "bob", BOB, "s0", 1, "Event: conference\nExpires: 0\n", ""));
    assert_eq!(step.response_to(BOB).status, 200);
    let n = step.requests_to(BOB, "NOTIFY");
    assert_eq!(n[0].headers.get(&HeaderName::SubscriptionState), Some("terminated;reason=timeout"));
    assert_eq!(roster(n[0]).0, "full");
    net.ok_all(&step, BOB);
    let factory = format!("sip:alice@{DOMAIN};gruu;opaque=app:conf:focusfactory");
    let step = net.send(
        ALICE,
        &request("SERVICE", &factory, "alice", ALICE, "bad", 1, "Content-Type: application/cccp+xml\n", "not xml"),
    );
    assert_eq!(step.response_to(ALICE).status, 400);
    // Only the organizer creates on her factory: a C3P failure in a 200.
    let add = c3p(&factory, &format!("sip:bob@{DOMAIN}"), 9, "<addConference/>");
    let step =
        net.send(BOB, &request("SERVICE", &factory, "bob", BOB, "b", 1, "Content-Type: application/cccp+xml\n", &add));
    let r = step.response_to(BOB);
    assert_eq!((r.status, xml(&r.body).children[0].attr("reason")), (200, Some("unauthorized")));
}

#[test]
fn conference_requests_are_authenticated() {
    let mut net = Net::new(true);
    let factory = format!("sip:alice@{DOMAIN};gruu;opaque=app:conf:focusfactory");
    let body = c3p(&factory, &format!("sip:alice@{DOMAIN}"), 1, "<getConferencingCapabilities/>");
    let text = request("SERVICE", &factory, "alice", ALICE, "cap", 1, "Content-Type: application/cccp+xml\n", &body);
    let step = net.send(ALICE, &text);
    let r = step.response_to(ALICE);
    assert_eq!(r.status, 407);
    let challenge = r
        .headers
        .get_all(&HeaderName::ProxyAuthenticate)
        .map(|v| Challenge::parse(v).unwrap())
        .find(|c| c.algorithm.as_str() == "MD5")
        .unwrap();
    let creds = respond(&challenge, "alice", "alice", "SERVICE", &factory, "c0ffee", 1);
    let text = request(
        "SERVICE",
        &factory,
        "alice",
        ALICE,
        "cap",
        2,
        &format!("Content-Type: application/cccp+xml\nProxy-Authorization: {creds}\n"),
        &body,
    );
    let step = net.send(ALICE, &text);
    let r = step.response_to(ALICE);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(String::from_utf8_lossy(&r.body).contains("<mcuType>audio-video</mcuType>"));
}
