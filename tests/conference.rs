//! The conference focus in the real binary over SIP/UDP on loopback, driven by a small SIP user agent of
//! this test (Digest-authenticated like any client): Alice creates a conference with C3P addConference
//! (SERVICE to her focus factory) and joins it with addUser (INVITE to the focus); Bob subscribes to the
//! roster (`Event: conference`) and sees, with versions increasing by one and partial documents, Alice
//! join, Carol dial in with SDP (her audio in the MCU, its SSRC as `src-id`), Carol muted by Alice
//! (INFO modifyEndpointMedia: the MCU mutes her), Carol ejected (INFO deleteUser: she gets a BYE), Alice
//! join the audio the Microsoft way (INVITE with SDP to the AV MCU URI the roster lists) and leave the
//! focus (BYE: her audio dialog gets a BYE). Malformed C3P gets 400. After a restart the conference is still
//! there (the store).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use vienna_e2e::ua::Ua;
use vienna_e2e::{Server, add_user};
use vienna_sip::{HeaderName, Request};
use vienna_xml::{Element, Limits};

const CI: &str = "urn:ietf:params:xml:ns:conference-info";
const C3P: &str = "application/cccp+xml";

fn xml(body: &[u8]) -> Element {
    vienna_xml::parse(body, Limits::default()).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// A roster NOTIFY: (state, version, users as (entity, state), document).
fn roster(n: &Request) -> (String, u32, Vec<(String, String)>, Element) {
    assert_eq!(n.headers.get(&HeaderName::Event), Some("conference"));
    assert_eq!(n.headers.get(&HeaderName::ContentType), Some("application/conference-info+xml"));
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

fn c3p(to: &str, from: &str, id: u32, command: &str) -> String {
    format!(
        r#"<request xmlns="urn:ietf:params:xml:ns:cccp" C3PVersion="1" to="{to}" from="{from}" requestId="{id}">{command}</request>"#
    )
}

/// Bob's next roster NOTIFY, which must have version `version`.
fn next_roster(bob: &mut Ua, version: u32) -> (String, Vec<(String, String)>, Element) {
    let n = bob.expect("NOTIFY");
    let (state, v, users, doc) = roster(&n);
    assert_eq!(v, version, "versions increase by one: {}", String::from_utf8_lossy(&n.body));
    (state, users, doc)
}

#[test]
fn c3p_focus_roster_subscription_mute_eject_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for user in ["alice", "bob", "carol"] {
        add_user(&data, user, &format!("{user}-secret"));
    }
    let args = ["--set", "turn.enabled=false", "--set", "sip.digest_algorithms=[\"MD5\"]"];
    let mut server = Server::start(&data, &args);
    let sip = server.listener("sip", "udp");
    let domain = "localhost";
    let mut alice = Ua::new(sip, "alice", "alice-secret", domain);
    let mut bob = Ua::new(sip, "bob", "bob-secret", domain);
    let mut carol = Ua::new(sip, "carol", "carol-secret", domain);

    // addConference by SERVICE to Alice's focus factory (challenged with 407 like any request).
    let factory = format!("sip:alice@{domain};gruu;opaque=app:conf:focusfactory");
    let add = c3p(
        &factory,
        "sip:alice@localhost",
        1,
        "<addConference><ci:conference-info xmlns:ci=\"urn:ietf:params:xml:ns:conference-info\" entity=\"\"><ci:conference-description><ci:subject>Weekly sync</ci:subject></ci:conference-description></ci:conference-info></addConference>",
    );
    let (r, _) = alice.request("SERVICE", &factory, "", Some((C3P, &add)));
    assert_eq!(r.status, 200, "{r:?}");
    let answer = xml(&r.body);
    assert_eq!(answer.attr("code"), Some("success"), "{}", String::from_utf8_lossy(&r.body));
    let focus = answer.children[0].children[0].attr("entity").unwrap().to_owned();
    let id = focus.rsplit(':').next().unwrap().to_owned();
    let stored = server.get("/api/v1/conferences").json();
    assert_eq!(stored[0]["id"], id.as_str(), "stored before the 200 OK: {stored}");
    assert_eq!(stored[0]["subject"], "Weekly sync");

    // Bob subscribes: 200, then the full roster, version 1, nobody yet.
    let (r, _) = bob.request(
        "SUBSCRIBE",
        &focus,
        "Event: conference\r\nAccept: application/conference-info+xml\r\nExpires: 600\r\n",
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let (state, users, doc) = next_roster(&mut bob, 1);
    assert_eq!((state.as_str(), users.len()), ("full", 0));
    assert_eq!(doc.attr("entity"), Some(focus.as_str()));
    let description = doc.child(CI, "conference-description").unwrap();
    assert_eq!(description.child(CI, "subject").unwrap().text, "Weekly sync");

    // Alice joins with addUser in an INVITE to the focus: 200 with the addUser response, a focus dialog.
    let join = c3p(
        &focus,
        "sip:alice@localhost",
        2,
        &format!(
            "<addUser><conferenceKeys confEntity=\"{focus}\"/><ci:user xmlns:ci=\"{CI}\" entity=\"sip:alice@localhost\"><ci:roles><ci:entry>attendee</ci:entry></ci:roles><ci:endpoint entity=\"{{A1-GUID}}\"/></ci:user></addUser>"
        ),
    );
    let (r, dialog) = alice.request("INVITE", &focus, "Supported: ms-sender\r\n", Some((C3P, &join)));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(String::from_utf8_lossy(&r.body).contains("<entry>presenter</entry>"), "the organizer presents");
    let mut alice_focus = dialog.unwrap();
    let (state, users, _) = next_roster(&mut bob, 2);
    assert_eq!(state, "partial");
    assert_eq!(users, [("sip:alice@localhost".to_owned(), "full".to_owned())]);

    // Carol dials sip:conf-<id>@localhost with an SDP offer: her audio goes to the MCU.
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = media.local_addr().unwrap().port();
    let ssrc: u32 = 0x0c0a_1234;
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtcp-mux\r\n"
    );
    let dial = format!("sip:conf-{id}@{domain}");
    let (r, dialog) = carol.request("INVITE", &dial, "", Some(("application/sdp", &offer)));
    assert_eq!(r.status, 200, "{r:?}");
    let _carol_call = dialog.unwrap();
    let answer = String::from_utf8_lossy(&r.body).into_owned();
    let mcu_port: u16 = answer
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(SocketAddr::from(([127, 0, 0, 1], mcu_port)), server.listener("mcu", "udp"));
    let (_, users, doc) = next_roster(&mut bob, 3);
    assert_eq!(users, [("sip:carol@localhost".to_owned(), "full".to_owned())]);
    let endpoint = doc.child(CI, "users").unwrap().child(CI, "user").unwrap().child(CI, "endpoint").unwrap();
    assert_eq!(endpoint.attr("session-type"), Some("audio-video"));

    // Her RTP reaches the MCU: the roster gets her SSRC as src-id.
    let mut packet = vec![0x80, 0, 0, 1, 0, 0, 0, 160];
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend(std::iter::repeat_n(0xffu8, 160));
    for seq in 0..5u16 {
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        media.send_to(&packet, ("127.0.0.1", mcu_port)).unwrap();
    }
    let (_, _, doc) = next_roster(&mut bob, 4);
    let m = doc.child(CI, "users").unwrap().child(CI, "user").unwrap().child(CI, "endpoint").unwrap();
    assert_eq!(m.child(CI, "media").unwrap().child(CI, "src-id").unwrap().text, ssrc.to_string());

    // Alice mutes Carol (modifyEndpointMedia, INFO in her focus dialog): 202, the mixer mutes her.
    let mute = c3p(
        &focus,
        "sip:alice@localhost",
        3,
        &format!(
            "<modifyEndpointMedia mscp:mcuUri=\"{}\" xmlns:mscp=\"http://schemas.microsoft.com/rtc/2005/08/cccpextensions\"><mediaKeys confEntity=\"{focus}\" userEntity=\"sip:carol@localhost\" mediaId=\"1\"/><ci:media xmlns:ci=\"{CI}\" id=\"1\"><ci:type>audio</ci:type><ci:status>recvonly</ci:status><media-ingress-filter xmlns=\"http://schemas.microsoft.com/rtc/2005/08/confinfoextensions\">block</media-ingress-filter></ci:media></modifyEndpointMedia>",
            focus.replace("app:conf:focus:", "app:conf:audio-video:")
        ),
    );
    let r = alice.in_dialog(&mut alice_focus, "INFO", "", Some((C3P, &mute)));
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(xml(&r.body).attr("code"), Some("success"));
    let (_, users, doc) = next_roster(&mut bob, 5);
    assert_eq!(users[0].0, "sip:carol@localhost");
    let status = doc.child(CI, "users").unwrap().child(CI, "user").unwrap().child(CI, "endpoint").unwrap();
    assert_eq!(status.child(CI, "media").unwrap().child(CI, "status").unwrap().text, "recvonly");
    server.wait_json("/api/v1/mcu/conferences", |v| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|c| c["name"] == id.as_str() && c["participants"][0]["muted"] == true))
    });

    // Alice ejects Carol (deleteUser): 202, Carol gets a BYE, the roster deletes her, the MCU lets her go.
    let eject = c3p(
        &focus,
        "sip:alice@localhost",
        4,
        &format!("<deleteUser><userKeys confEntity=\"{focus}\" userEntity=\"sip:carol@localhost\"/></deleteUser>"),
    );
    let r = alice.in_dialog(&mut alice_focus, "INFO", "", Some((C3P, &eject)));
    assert_eq!(r.status, 202, "{r:?}");
    let bye = carol.expect("BYE");
    assert!(bye.headers.call_id().unwrap().starts_with("carol-INVITE"));
    let (_, users, _) = next_roster(&mut bob, 6);
    assert_eq!(users, [("sip:carol@localhost".to_owned(), "deleted".to_owned())]);
    server.wait_json("/api/v1/mcu/conferences", |v| {
        v.as_array().is_some_and(|a| {
            a.iter().all(|c| c["name"] != id.as_str() || c["participants"].as_array().unwrap().is_empty())
        })
    });

    // Malformed C3P: 400, no C3P body.
    let r = alice.in_dialog(&mut alice_focus, "INFO", "", Some((C3P, "<request><unclosed>")));
    assert_eq!(r.status, 400);
    assert!(r.body.is_empty());

    // The live roster in the admin API.
    let live = server.wait_json(&format!("/api/v1/conferences/{id}"), |v| {
        v["roster"]["users"].as_array().is_some_and(|u| u.len() == 1)
    });
    assert_eq!(live["roster"]["users"][0]["entity"], "sip:alice@localhost");
    assert_eq!(live["roster"]["users"][0]["role"], "presenter");
    assert_eq!(live["roster"]["subscribers"][0]["subscriber"], "sip:bob@localhost");
    assert_eq!(live["uris"]["dial_in"], dial.as_str());

    // The Microsoft way into the audio: Alice INVITEs the AV MCU URI of the roster's conf-uris with SDP.
    // Her user then has two endpoints, the focus session and the audio.
    let av = description
        .child(CI, "conf-uris")
        .unwrap()
        .children_named(CI, "entry")
        .find(|e| e.child(CI, "purpose").is_some_and(|p| p.text == "audio-video"))
        .unwrap()
        .child(CI, "uri")
        .unwrap()
        .text
        .clone();
    assert!(av.ends_with(&format!("opaque=app:conf:audio-video:id:{id}")), "{av}");
    let alice_media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtcp-mux\r\n",
        alice_media.local_addr().unwrap().port()
    );
    let (r, dialog) = alice.request("INVITE", &av, "", Some(("application/sdp", &offer)));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(String::from_utf8_lossy(&r.body).contains("m=audio "));
    let alice_av = dialog.unwrap();
    let (_, users, doc) = next_roster(&mut bob, 7);
    assert_eq!(users, [("sip:alice@localhost".to_owned(), "full".to_owned())]);
    let kinds: Vec<&str> = doc
        .child(CI, "users")
        .unwrap()
        .child(CI, "user")
        .unwrap()
        .children_named(CI, "endpoint")
        .filter_map(|e| e.attr("session-type"))
        .collect();
    assert_eq!(kinds, ["focus", "audio-video"]);

    // Alice leaves the focus with BYE: she leaves the conference, and her audio dialog gets a BYE.
    let r = alice.in_dialog(&mut alice_focus, "BYE", "", None);
    assert_eq!(r.status, 200);
    let bye = alice.expect("BYE");
    assert_eq!(bye.headers.call_id().unwrap(), alice_av.call_id);
    let (_, users, _) = next_roster(&mut bob, 8);
    assert_eq!(users, [("sip:alice@localhost".to_owned(), "deleted".to_owned())]);
    let metrics = server.get("/metrics").body;
    for needle in
        ["vienna_conference_notifies_total", "vienna_conference_c3p_malformed_total 1", "vienna_mcu_encodes_total"]
    {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }

    // A restart keeps the conference (the roster starts empty): Alice joins it again.
    let status = server.stop_with(libc::SIGTERM);
    assert!(status.success());
    server = Server::start(&data, &args);
    let sip = server.listener("sip", "udp");
    let mut alice = Ua::new(sip, "alice", "alice-secret", domain);
    let (r, dialog) = alice.request("INVITE", &focus, "", Some((C3P, &join)));
    assert_eq!(r.status, 200, "after a restart: {r:?}\n{}", server.log_text());
    let mut d = dialog.unwrap();
    let mut bob = Ua::new(sip, "bob", "bob-secret", domain);
    let (r, _) = bob.request("SUBSCRIBE", &dial, "Event: conference\r\nExpires: 60\r\n", None);
    assert_eq!(r.status, 200);
    let (state, users, _) = next_roster(&mut bob, 1);
    assert_eq!((state.as_str(), users), ("full", vec![("sip:alice@localhost".to_owned(), "full".to_owned())]));
    assert_eq!(alice.in_dialog(&mut d, "BYE", "", None).status, 200);
    bob.idle(Duration::from_millis(100));
}
