//! The IM-session gateway driven through whole exchanges with a simulated network and clock: a Microsoft
//! client's IM-only INVITE (SDP `m=message ... sip null`, first message in `ms-text-format`) that the
//! standard callee refuses with 488 is answered 200 by the server after the first message reached the
//! callee as a page-mode MESSAGE; MESSAGEs in the dialog become page-mode MESSAGEs answered with the
//! callee's outcome; BYE ends the session; idle and unacknowledged sessions expire; an audio INVITE's 488
//! still goes to the caller.

mod harness;

use std::time::Duration;
use std::time::Instant;

use base64::Engine as _;
use vienna_signaling::{Account, Core, CoreConfig, Directory, LocalAddr};
use vienna_sip::digest::Ha1;
use vienna_sip::{HeaderName, Response, Transport};

use harness::{UNIX0, addr};

/// The core of these tests on the simulated network.
type Net = harness::Net<Users>;

const DOMAIN: &str = "example.com";
const SERVER: &str = "192.0.2.100:5060";
/// alice: a Microsoft client.
const ALICE: &str = "192.0.2.1:5070";
/// bob: a standard client, registered twice.
const BOB1: &str = "192.0.2.2:5070";
const BOB2: &str = "192.0.2.3:5070";
struct Users;

impl Directory for Users {
    fn account(&self, aor: &str) -> Option<Account> {
        let user = aor.strip_prefix("sip:")?.strip_suffix(&format!("@{DOMAIN}"))?;
        ["alice", "bob"].contains(&user).then(|| Account {
            aor: aor.to_owned(),
            enabled: true,
            ha1: Ha1::derive(user, DOMAIN, user),
        })
    }
    fn account_by_auth(&self, username: &str, _realm: &str) -> Option<Account> {
        self.account(&format!("sip:{username}@{DOMAIN}"))
    }
}

impl Net {
    /// A server without authentication (the gateway comes after routing, which the core tests cover),
    /// with bob registered from `bobs`.
    fn new(bobs: &[&str]) -> Self {
        Self::with(bobs, |_| {})
    }

    fn with(bobs: &[&str], tweak: impl FnOnce(&mut CoreConfig)) -> Self {
        let local = vec![LocalAddr { transport: Transport::Udp, addr: addr(SERVER) }];
        let mut config = CoreConfig::new(DOMAIN, local);
        config.authenticate = false;
        tweak(&mut config);
        let now = Instant::now();
        let core = Core::new(config, Users, [9; 32], vec![], now, UNIX0);
        let mut net = Net::around(core, now);
        for (i, b) in bobs.iter().enumerate() {
            let register = format!(
                "REGISTER sip:{DOMAIN} SIP/2.0\nVia: SIP/2.0/UDP {b};branch=z9hG4bK-reg{i}\nMax-Forwards: 70\n\
                 From: <sip:bob@{DOMAIN}>;tag=r{i}\nTo: <sip:bob@{DOMAIN}>\nCall-ID: reg-{i}\nCSeq: 1 REGISTER\n\
                 Contact: <sip:bob@{b}>;expires=3600\n"
            );
            assert_eq!(net.send(b, &register).only_to(b).response().status, 200);
        }
        net
    }
}

const IM_SDP: &str = "v=0\no=- 0 0 IN IP4 192.0.2.1\ns=session\nc=IN IP4 192.0.2.1\nt=0 0\nm=message 5070 sip null\n\
a=accept-types:text/plain text/html multipart/alternative application/im-iscomposing+xml\n";
const AUDIO_SDP: &str = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n";

/// SIPE's IM INVITE from alice to bob, its first message `first` in `ms-text-format`.
fn invite(call: &str, first: Option<&str>, sdp: &str) -> String {
    let text_format = first
        .map(|t| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(t);
            format!("ms-text-format: text/plain; charset=UTF-8;msgr=WAAtAE0ATQBTAC0ASQBNAC0ARgBvAHIAbQBhAHQAOgAgAEYATgA9AA;ms-body={b64}\n")
        })
        .unwrap_or_default();
    format!(
        "INVITE sip:bob@{DOMAIN} SIP/2.0
         Via: SIP/2.0/UDP {ALICE};branch=z9hG4bK-{call}
         Max-Forwards: 70
         From: <sip:alice@{DOMAIN}>;tag=a-{call};epid=0a1b2c3d4e
         To: <sip:bob@{DOMAIN}>
         Call-ID: {call}
         CSeq: 1 INVITE
         Supported: ms-sender
         Contact: <sip:alice@{DOMAIN};opaque=user:epid:abc;gruu>
         {text_format}Ms-Conversation-ID: 123456
         Content-Type: application/sdp

         {sdp}"
    )
}

/// A request of alice in the dialog the gateway's 200 OK `ok` set up.
fn in_dialog(ok: &Response, method: &str, cseq: u32, ctype: &str, body: &str) -> String {
    let target = ok.headers.contacts().ok().and_then(|c| match c {
        vienna_sip::Contacts::List(l) => l.into_iter().next().map(|c| c.uri.to_string()),
        _ => None,
    });
    let target = target.expect("a Contact in the 200 OK");
    let to = ok.headers.get(&HeaderName::To).unwrap();
    let from = ok.headers.get(&HeaderName::From).unwrap();
    let call = ok.headers.call_id().unwrap();
    let ctype = if ctype.is_empty() { String::new() } else { format!("Content-Type: {ctype}\n") };
    format!(
        "{method} {target} SIP/2.0
         Via: SIP/2.0/UDP {ALICE};branch=z9hG4bK-{call}-{cseq}
         Max-Forwards: 70
         From: {from}
         To: {to}
         Call-ID: {call}
         CSeq: {cseq} {method}
         Contact: <sip:alice@{DOMAIN};opaque=user:epid:abc;gruu>
         {ctype}
         {body}"
    )
}

/// The ACK of the 2xx `ok`.
fn ack(ok: &Response) -> String {
    in_dialog(ok, "ACK", 1, "", "")
}

/// alice invites bob (registered at BOB1), bob's client refuses with 488, bob's client takes the first
/// message: returns the 200 OK alice got.
fn open_session(net: &mut Net, call: &str) -> Response {
    let step = net.send(ALICE, &invite(call, Some("hello bob"), IM_SDP));
    assert_eq!(step.only_to(ALICE).response().status, 100);
    let inv = step.only_to(BOB1).request().clone();
    assert_eq!(inv.method.as_str(), "INVITE");
    let step = net.reply(BOB1, &inv, 488);
    assert!(step.finals(ALICE).is_empty(), "the 488 is not sent upstream: {:#?}", step.sent);
    assert_eq!(step.requests_to(BOB1, "ACK").len(), 1, "the 488 is acknowledged");
    let page = step.requests_to(BOB1, "MESSAGE");
    assert_eq!(page.len(), 1, "{:#?}", step.sent);
    let page = page[0].clone();
    assert_eq!(page.body, b"hello bob");
    assert_eq!(page.uri.to_string(), format!("sip:bob@{BOB1}"));
    assert_eq!(page.headers.from().unwrap().uri.to_string(), format!("sip:alice@{DOMAIN}"));
    assert!(page.headers.from().unwrap().tag().is_some());
    assert_eq!(page.headers.to().unwrap().uri.to_string(), format!("sip:bob@{DOMAIN}"));
    assert!(page.headers.to().unwrap().tag().is_none(), "page mode: out of any dialog");
    assert_eq!(page.headers.get(&HeaderName::ContentType), Some("text/plain; charset=UTF-8"));
    assert_ne!(page.headers.call_id().unwrap(), call, "a request of its own, not the session's");
    let step = net.reply(BOB1, &page, 200);
    let ok = step.only_to(ALICE).response().clone();
    assert_eq!(ok.status, 200);
    ok
}

#[test]
fn a_refused_im_invite_is_answered_by_the_gateway_after_its_first_message_arrived() {
    let mut net = Net::new(&[BOB1]);
    let ok = open_session(&mut net, "im1");
    let tag = ok.headers.to().unwrap().tag().map(str::to_owned).expect("a To tag");
    assert!(!tag.is_empty());
    assert_eq!(ok.headers.get(&HeaderName::Supported), Some("ms-text-format"), "the first message was taken");
    let contact = ok.headers.get(&HeaderName::Contact).unwrap();
    assert!(contact.contains(SERVER) && contact.contains("ms-imgw"), "{contact}");
    assert_eq!(ok.headers.get(&HeaderName::ContentType), Some("application/sdp"));
    let sdp = String::from_utf8(ok.body.clone()).unwrap();
    assert!(sdp.contains(&format!("m=message 5060 sip sip:bob@{DOMAIN}")), "{sdp}");
    // The ACK is taken (nothing forwarded); no 2xx retransmission follows.
    assert!(net.send(ALICE, &ack(&ok)).sent.is_empty());
    assert!(net.advance(Duration::from_secs(10)).to(ALICE).is_empty());
    let c = net.core.ms_counters().im_gateway;
    assert_eq!((c.sessions, c.delivered, c.live), (1, 1, 1), "{c:?}");
}

#[test]
fn messages_in_the_session_become_page_mode_messages_answered_with_the_callees_outcome() {
    let mut net = Net::new(&[BOB1, BOB2]);
    // bob has two contacts: the INVITE and the page-mode MESSAGEs go to both.
    let step = net.send(ALICE, &invite("im2", Some("first"), IM_SDP));
    let (inv1, inv2) = (step.only_to(BOB1).request().clone(), step.only_to(BOB2).request().clone());
    assert!(net.reply(BOB1, &inv1, 488).sent.iter().all(|s| s.to != addr(ALICE)));
    let step = net.reply(BOB2, &inv2, 488);
    let (p1, p2) = (step.requests_to(BOB1, "MESSAGE")[0].clone(), step.requests_to(BOB2, "MESSAGE")[0].clone());
    assert_eq!((p1.body.as_slice(), p2.body.as_slice()), (&b"first"[..], &b"first"[..]));
    let ok = net.reply(BOB2, &p2, 200).only_to(ALICE).response().clone();
    assert_eq!(ok.status, 200);
    assert!(net.reply(BOB1, &p1, 200).sent.is_empty(), "one answer per INVITE");
    net.send(ALICE, &ack(&ok));

    // A MESSAGE in the dialog (SIPE's own Content-Type, with msgr): delivered to both, answered 200 once.
    let msg = in_dialog(&ok, "MESSAGE", 2, "text/plain; charset=UTF-8;msgr=WAAtAE0A", "second one");
    let step = net.send(ALICE, &msg);
    assert!(step.to(ALICE).is_empty(), "the answer waits for the callee");
    let (m1, m2) = (step.requests_to(BOB1, "MESSAGE")[0].clone(), step.requests_to(BOB2, "MESSAGE")[0].clone());
    assert_eq!(m1.body, b"second one");
    assert_eq!(m1.headers.get(&HeaderName::ContentType), Some("text/plain; charset=UTF-8"));
    assert_eq!(m1.headers.from().unwrap().uri.to_string(), format!("sip:alice@{DOMAIN}"));
    assert!(net.reply(BOB1, &m1, 486).to(ALICE).is_empty(), "a failure waits for the other contact");
    let r = net.reply(BOB2, &m2, 200);
    let r = r.only_to(ALICE).response();
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.to().unwrap().tag(), ok.headers.to().unwrap().tag(), "in the dialog");

    // Nobody takes the next one: alice gets the best failure.
    let step = net.send(ALICE, &in_dialog(&ok, "MESSAGE", 3, "text/plain", "third"));
    let (m1, m2) = (step.requests_to(BOB1, "MESSAGE")[0].clone(), step.requests_to(BOB2, "MESSAGE")[0].clone());
    net.reply(BOB1, &m1, 480);
    assert_eq!(net.reply(BOB2, &m2, 486).only_to(ALICE).response().status, 486);

    // What is not plain text is refused; typing notifications by INFO are answered and go nowhere.
    let html = net.send(ALICE, &in_dialog(&ok, "MESSAGE", 4, "text/html", "<b>x</b>"));
    assert_eq!(html.only_to(ALICE).response().status, 415);
    assert!(html.to(BOB1).is_empty());
    let info = net.send(ALICE, &in_dialog(&ok, "INFO", 5, "application/xml", "<KeyboardActivity/>"));
    assert_eq!(info.only_to(ALICE).response().status, 200);
    assert!(info.to(BOB1).is_empty() && info.to(BOB2).is_empty());
    // From elsewhere, the dialog is not open to it.
    let forged = net.send(BOB1, &in_dialog(&ok, "MESSAGE", 6, "text/plain", "forged"));
    assert_eq!(forged.only_to(BOB1).response().status, 403);

    let c = net.core.ms_counters().im_gateway;
    assert_eq!((c.delivered, c.delivery_failures, c.refused), (2, 1, 2), "{c:?}");
}

#[test]
fn bye_ends_the_session_and_later_requests_get_481() {
    let mut net = Net::new(&[BOB1]);
    let ok = open_session(&mut net, "im3");
    net.send(ALICE, &ack(&ok));
    let bye = net.send(ALICE, &in_dialog(&ok, "BYE", 2, "", ""));
    assert_eq!(bye.only_to(ALICE).response().status, 200);
    assert!(bye.to(BOB1).is_empty(), "bob never knew of a session");
    let late = net.send(ALICE, &in_dialog(&ok, "MESSAGE", 3, "text/plain", "too late"));
    assert_eq!(late.only_to(ALICE).response().status, 481);
    assert!(late.to(BOB1).is_empty());
    let c = net.core.ms_counters().im_gateway;
    assert_eq!((c.byes, c.live), (1, 0), "{c:?}");
}

#[test]
fn idle_and_unacknowledged_sessions_expire_with_a_bye() {
    let mut net = Net::new(&[BOB1]);
    // Acknowledged, then idle for longer than the idle timeout (15 minutes by default).
    let ok = open_session(&mut net, "im4");
    net.send(ALICE, &ack(&ok));
    let step = net.advance(Duration::from_secs(10 * 60));
    assert!(step.to(ALICE).is_empty());
    // Activity keeps it: a MESSAGE at 10 minutes.
    let step = net.send(ALICE, &in_dialog(&ok, "MESSAGE", 2, "text/plain", "still here"));
    let m = step.requests_to(BOB1, "MESSAGE")[0].clone();
    net.reply(BOB1, &m, 200);
    assert!(net.advance(Duration::from_secs(10 * 60)).requests_to(ALICE, "BYE").is_empty());
    let step = net.advance(Duration::from_secs(6 * 60));
    let bye = step.requests_to(ALICE, "BYE");
    assert!(!bye.is_empty(), "{:#?}", step.sent);
    assert!(bye.iter().all(|b| b.headers.top_via().unwrap().branch() == bye[0].headers.top_via().unwrap().branch()));
    assert_eq!(bye[0].uri.to_string(), format!("sip:alice@{DOMAIN};opaque=user:epid:abc;gruu"));
    assert_eq!(bye[0].headers.from().unwrap().tag(), ok.headers.to().unwrap().tag());
    assert_eq!(bye[0].headers.call_id().unwrap(), "im4");
    let late = net.send(ALICE, &in_dialog(&ok, "MESSAGE", 3, "text/plain", "gone"));
    assert_eq!(late.only_to(ALICE).response().status, 481);

    // Never acknowledged: the 2xx is retransmitted over UDP, then the session is dropped.
    let ok = open_session(&mut net, "im5");
    let step = net.advance(Duration::from_secs(40));
    let resent = step.finals(ALICE).iter().filter(|r| r.status == 200).count();
    assert!(resent >= 5, "2xx retransmissions until the ACK, got {resent}");
    assert!(!step.requests_to(ALICE, "BYE").is_empty(), "a BYE for the session never acknowledged");
    let late = net.send(ALICE, &in_dialog(&ok, "MESSAGE", 2, "text/plain", "gone"));
    assert_eq!(late.only_to(ALICE).response().status, 481);
    let c = net.core.ms_counters().im_gateway;
    assert_eq!((c.expired, c.live), (2, 0), "{c:?}");
}

#[test]
fn the_session_table_is_bounded() {
    let mut net = Net::with(&[BOB1], |c| c.ms.im_gateway.max_sessions = 1);
    let ok = open_session(&mut net, "im6");
    net.send(ALICE, &ack(&ok));
    // A second session does not fit: the refusal goes to the caller as before.
    let step = net.send(ALICE, &invite("im7", Some("again"), IM_SDP));
    let inv = step.only_to(BOB1).request().clone();
    let step = net.reply(BOB1, &inv, 488);
    assert_eq!(step.finals(ALICE)[0].status, 488);
    assert!(step.requests_to(BOB1, "MESSAGE").is_empty());
    assert_eq!(net.core.ms_counters().im_gateway.sessions_refused_full, 1);
}

#[test]
fn a_first_message_nobody_takes_fails_the_invite_and_no_first_message_answers_at_once() {
    let mut net = Net::new(&[BOB1]);
    let step = net.send(ALICE, &invite("im8", Some("anyone?"), IM_SDP));
    let inv = step.only_to(BOB1).request().clone();
    let step = net.reply(BOB1, &inv, 488);
    let page = step.requests_to(BOB1, "MESSAGE")[0].clone();
    let step = net.reply(BOB1, &page, 480);
    let r = step.only_to(ALICE).response();
    assert_eq!(r.status, 480, "the caller learns the message was not delivered");
    assert!(r.headers.to().unwrap().tag().is_some());
    assert_eq!(net.core.ms_counters().im_gateway.live, 0);

    // Without ms-text-format the session opens with the 488, without `Supported: ms-text-format`
    // (the client then sends its first message in the dialog).
    let step = net.send(ALICE, &invite("im9", None, IM_SDP));
    let inv = step.only_to(BOB1).request().clone();
    let step = net.reply(BOB1, &inv, 488);
    let ok = step.finals(ALICE)[0].clone();
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers.get(&HeaderName::Supported), None);
    assert!(step.requests_to(BOB1, "MESSAGE").is_empty());
}

#[test]
fn a_refused_audio_invite_is_not_gatewayed() {
    let mut net = Net::new(&[BOB1]);
    let step = net.send(ALICE, &invite("av1", Some("hello"), AUDIO_SDP));
    let inv = step.only_to(BOB1).request().clone();
    let step = net.reply(BOB1, &inv, 488);
    assert_eq!(step.finals(ALICE)[0].status, 488);
    assert!(step.requests_to(BOB1, "MESSAGE").is_empty());
    // Nor an IM INVITE refused for another reason (busy), nor with the gateway off.
    let step = net.send(ALICE, &invite("im10", Some("hello"), IM_SDP));
    let inv = step.only_to(BOB1).request().clone();
    assert_eq!(net.reply(BOB1, &inv, 486).finals(ALICE)[0].status, 486);
    // Nor one whose caller's address would not fit a header once unescaped.
    let evil = invite("im12", Some("hello"), IM_SDP).replace("From: <sip:alice@", "From: <sip:al%0D%0AX-Evil:%201ice@");
    let step = net.send(ALICE, &evil);
    let inv = step.only_to(BOB1).request().clone();
    let step = net.reply(BOB1, &inv, 488);
    assert_eq!(step.finals(ALICE)[0].status, 488);
    assert!(step.requests_to(BOB1, "MESSAGE").is_empty());
    let mut off = Net::with(&[BOB1], |c| c.ms.im_gateway.enabled = false);
    let step = off.send(ALICE, &invite("im11", Some("hello"), IM_SDP));
    let inv = step.only_to(BOB1).request().clone();
    assert_eq!(off.reply(BOB1, &inv, 488).finals(ALICE)[0].status, 488);
    assert_eq!(net.core.ms_counters().im_gateway.sessions, 0);
}

#[test]
fn a_cancel_while_the_first_message_is_on_its_way_ends_the_invite_with_487() {
    let mut net = Net::new(&[BOB1]);
    let step = net.send(ALICE, &invite("im13", Some("are you there?"), IM_SDP));
    let inv = step.only_to(BOB1).request().clone();
    let step = net.reply(BOB1, &inv, 488);
    let page = step.requests_to(BOB1, "MESSAGE")[0].clone();
    // alice gives up before bob's client answered the page-mode MESSAGE.
    let cancel = format!(
        "CANCEL sip:bob@{DOMAIN} SIP/2.0
         Via: SIP/2.0/UDP {ALICE};branch=z9hG4bK-im13
         Max-Forwards: 70
         From: <sip:alice@{DOMAIN}>;tag=a-im13;epid=0a1b2c3d4e
         To: <sip:bob@{DOMAIN}>
         Call-ID: im13
         CSeq: 1 CANCEL

         "
    );
    let step = net.send(ALICE, &cancel);
    let mut statuses: Vec<(u16, String)> = step
        .responses_to(ALICE)
        .iter()
        .map(|r| (r.status, r.headers.cseq().map(|c| c.method.as_str().to_owned()).unwrap_or_default()))
        .collect();
    statuses.sort();
    assert_eq!(statuses, [(200, "CANCEL".to_owned()), (487, "INVITE".to_owned())], "{:#?}", step.sent);
    let terminated = step.finals(ALICE).into_iter().find(|r| r.status == 487).unwrap().clone();
    assert!(terminated.headers.to().unwrap().tag().is_some(), "a final response to an INVITE has a To tag");
    // bob's client takes the message afterwards: nothing more goes to alice, no session opens.
    let step = net.reply(BOB1, &page, 200);
    assert!(step.finals(ALICE).is_empty(), "the INVITE was answered once: {:#?}", step.sent);
    let c = net.core.ms_counters().im_gateway;
    assert_eq!((c.live, c.delivered), (0, 1), "{c:?}");
}
