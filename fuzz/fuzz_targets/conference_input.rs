//! Arbitrary bytes into the signaling core's conference focus: as a whole SIP datagram, and as the body of
//! the requests it serves (SERVICE with C3P to the focus factory, INFO in a focus dialog, an INVITE to the
//! dial-in URI whose offer the "MCU" answers, SUBSCRIBE for the roster), with a conference, a focus
//! dialog and a roster subscription already in place, then the clock jumping. Nothing may panic, and
//! everything the core sends must parse.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use vienna_signaling::conference::{ConferenceConfig, ConferenceOutput, MediaEvent, MediaJoined};
use vienna_signaling::{Account, Core, CoreConfig, Directory, LocalAddr, Output};
use vienna_sip::digest::Ha1;
use vienna_sip::transaction::Peer;
use vienna_sip::{Message, Transport};

const DOMAIN: &str = "example.test";

struct Users;
impl Directory for Users {
    fn account(&self, aor: &str) -> Option<Account> {
        let user = aor.strip_prefix("sip:")?.split('@').next()?;
        Some(Account { aor: aor.to_owned(), enabled: true, ha1: Ha1::derive(user, DOMAIN, user) })
    }
    fn account_by_auth(&self, username: &str, _realm: &str) -> Option<Account> {
        self.account(&format!("sip:{username}@{DOMAIN}"))
    }
}

fn peer(port: u16) -> Peer {
    Peer { transport: Transport::Udp, addr: ([192, 0, 2, 1], port).into() }
}

/// Feeds `bytes` from `port`; answers the MCU's joins; returns the To tag of the last 2xx.
fn feed(core: &mut Core<Users>, now: Instant, port: u16, bytes: &[u8]) -> Option<String> {
    core.handle_datagram(now, peer(port), bytes);
    let mut tag = None;
    let mut joins = Vec::new();
    while let Some(o) = core.poll_output() {
        match o {
            Output::Transmit(t) => {
                let m = Message::parse(&t.bytes).expect("the core sends what it can parse");
                if let Message::Response(r) = m
                    && (200..300).contains(&r.status)
                {
                    tag = r.headers.to().ok().and_then(|t| t.tag().map(str::to_owned));
                }
            }
            Output::Conference(ConferenceOutput::Join { token, .. }) => joins.push(token),
            _ => {}
        }
    }
    for token in joins {
        let joined = MediaJoined { participant: format!("0-{token}"), answer: "v=0\r\n".into(), ssrc: Some(9) };
        core.media_answer(now, token, Ok(joined));
        while core.poll_output().is_some() {}
    }
    tag
}

fn request(method: &str, uri: &str, user: &str, call: &str, to_tag: Option<&str>, ctype: &str, body: &[u8]) -> Vec<u8> {
    let to = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let mut m = format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK{call}{method}\r\nMax-Forwards: 70\r\n\
         From: <sip:{user}@{DOMAIN}>;tag=f{user}\r\nTo: <{uri}>{to}\r\nCall-ID: {call}\r\nCSeq: 2 {method}\r\n\
         Contact: <sip:{user}@192.0.2.1:5070>\r\nEvent: conference\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    m.extend_from_slice(body);
    m
}

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut config = CoreConfig::new(DOMAIN, vec![LocalAddr { transport: Transport::Udp, addr: ([192, 0, 2, 100], 5060).into() }]);
    config.authenticate = false;
    let mut core = Core::new(config, Users, [1; 32], vec![], now, 1_800_000_000);
    let mut conf = ConferenceConfig::default();
    conf.focus.dial_in = Some(vienna_focus::DialIn { prefix: "conf-".into(), domain: DOMAIN.into() });
    core.enable_conferences(conf, [2; 32], None);
    let record = vienna_store::ConferenceRecord {
        id: "FUZZCONF1".into(),
        organizer: format!("sip:alice@{DOMAIN}"),
        subject: "fuzz".into(),
        locked: false,
        max_participants: None,
        created_at: 1_800_000_000,
        expires_at: Some(1_800_003_600),
    };
    core.restore_conference(&record);
    let focus = format!("sip:alice@{DOMAIN};gruu;opaque=app:conf:focus:id:FUZZCONF1");
    let factory = format!("sip:alice@{DOMAIN};gruu;opaque=app:conf:focusfactory");
    let add_user = format!(
        "<request xmlns=\"urn:ietf:params:xml:ns:cccp\" C3PVersion=\"1\" to=\"{focus}\" from=\"sip:alice@{DOMAIN}\" requestId=\"1\"><addUser><conferenceKeys confEntity=\"{focus}\"/><user xmlns=\"urn:ietf:params:xml:ns:conference-info\" entity=\"sip:alice@{DOMAIN}\"><roles><entry>attendee</entry></roles></user></addUser></request>"
    );
    let tag = feed(&mut core, now, 5070, &request("INVITE", &focus, "alice", "f1", None, "application/cccp+xml", add_user.as_bytes()));
    feed(&mut core, now, 5071, &request("SUBSCRIBE", &focus, "bob", "s1", None, "text/plain", b""));
    let dial = format!("sip:conf-FUZZCONF1@{DOMAIN}");
    feed(&mut core, now, 5072, &request("INVITE", &dial, "carol", "d1", None, "application/sdp", b"v=0\r\n"));

    feed(&mut core, now, 5073, data);
    feed(&mut core, now, 5070, &request("SERVICE", &factory, "alice", "x1", None, "application/cccp+xml", data));
    feed(&mut core, now, 5070, &request("SERVICE", &focus, "alice", "x2", None, "application/cccp+xml", data));
    if let Some(tag) = &tag {
        feed(&mut core, now, 5070, &request("INFO", &focus, "alice", "f1", Some(tag), "application/cccp+xml", data));
    }
    feed(&mut core, now, 5074, &request("INVITE", &dial, "dave", "d2", None, "application/sdp", data));
    feed(&mut core, now, 5075, &request("SUBSCRIBE", &dial, "erin", "s2", None, "text/plain", data));
    for participant in ["0-1", "0-2", "9-9"] {
        let conference = "FUZZCONF1".to_owned();
        for e in [
            MediaEvent::Source { conference: conference.clone(), participant: participant.into(), ssrc: 5 },
            MediaEvent::Dominant { conference: conference.clone(), participant: Some(participant.into()) },
            MediaEvent::Muted { conference: conference.clone(), participant: participant.into(), muted: true },
            MediaEvent::Left { conference, participant: participant.into() },
        ] {
            core.media_event(now, e);
        }
    }
    for secs in [1, 40, 4000] {
        let t = now + Duration::from_secs(secs);
        core.handle_timeout(t);
        while let Some(o) = core.poll_output() {
            if let Output::Transmit(t) = o {
                Message::parse(&t.bytes).expect("the core sends what it can parse");
            }
        }
    }
    let _ = core.conference_views();
});
