//! Presence through the real binary: PUBLISH, SUBSCRIBE and NOTIFY judged by SIPp (scenarios in
//! tests/sipp/presence-*.xml), watcher information and a pending watcher, durability of the watcher list
//! across kill -9, and the contact list as one resource-list subscription. Loopback and ephemeral ports
//! only; every SIPp run is bounded.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use vienna_e2e::sipp::{self, command, expect_child_success, expect_success, free_port, register};
use vienna_e2e::{Server, add_user, run};
use vienna_sip::{HeaderName, Message};

fn cli(data: &Path, args: &[&str]) {
    let out = run(data, args, "");
    assert!(out.status.success(), "vienna {args:?}: {}", vienna_e2e::stderr(&out));
}

fn start(dir: &Path, extra: &[&str]) -> (Server, SocketAddr) {
    let data = dir.join("data");
    let mut args = vec![
        "--set",
        "turn.enabled=false",
        "--set",
        "sip.digest_algorithms=[\"MD5\", \"SHA-256\"]",
        "--set",
        "presence.notify_interval_ms=200",
    ];
    args.extend_from_slice(extra);
    let mut server = Server::start(&data, &args);
    let sip = server.listener("sip", "udp");
    (server, sip)
}

fn presentity<'a>(presence: &'a serde_json::Value, aor: &str) -> Option<&'a serde_json::Value> {
    presence["presentities"].as_array()?.iter().find(|p| p["aor"] == aor)
}

#[test]
fn sipp_publish_subscribe_notify_watcher_info_and_a_pending_watcher() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    for u in ["alice", "bob", "carol"] {
        add_user(&data, u, &format!("{u}-secret"));
    }
    // Alice lets Bob see her; Carol has not been decided about.
    cli(&data, &["watcher", "allow", "alice", "bob"]);
    let (server, sip) = start(d, &[]);

    register(&server, d, sip, "alice", "alice-secret", free_port());
    let alice = "sip:alice@localhost";
    server.wait_json("/api/v1/presence", |p| presentity(p, alice).is_some_and(|a| a["state"] == "online"));

    // Bob subscribes: he is told Online, then Away once Alice publishes it, then unsubscribes.
    let bob_args =
        ["-s", "bob", "-au", "bob", "-ap", "bob-secret", "-key", "to_user", "alice", "-key", "activity", "away"];
    let mut bob = sipp::spawn(&mut command(d, sip, "presence-subscribe.xml", free_port(), &bob_args));
    server.wait_json("/api/v1/presence", |p| p["subscriptions"] == 1 && p["notify"]["sent"] == 1);
    let publish = ["-s", "alice", "-au", "alice", "-ap", "alice-secret", "-key", "activity", "away"];
    let out =
        command(d, sip, "presence-publish.xml", free_port(), &publish).args(["-key", "note", "gone-fishing"]).output();
    expect_success(&server, d, out, "PUBLISH (initial, refresh, unknown entity tag, malformed body)");
    expect_child_success(&server, d, &mut bob, "Bob's SUBSCRIBE / NOTIFY online, away / unSUBSCRIBE");

    // The admin view of presentities is refreshed about once a second.
    let p = server.wait_json("/api/v1/presence", |p| {
        p["subscriptions"] == 0 && presentity(p, alice).is_some_and(|a| a["state"] == "away")
    });
    let a = presentity(&p, alice).unwrap();
    assert_eq!(
        (a["state"].as_str(), a["availability"].as_u64(), a["note"].as_str()),
        (Some("away"), Some(15500), Some("gone-fishing")),
        "{p}"
    );
    assert_eq!(p["publish"]["accepted"], 2, "{p}");
    assert_eq!(p["publish"]["rejected"], 2, "{p}");
    assert_eq!(p["publish"]["bad_bodies"], 1, "{p}");

    // Alice watches her watcher list; Carol asks to watch her and is pending; Alice is told.
    let mut winfo = sipp::spawn(&mut command(
        d,
        sip,
        "presence-winfo.xml",
        free_port(),
        &["-s", "alice", "-au", "alice", "-ap", "alice-secret"],
    ));
    server.wait_json("/api/v1/presence", |p| p["subscriptions"] == 1);
    let carol = ["-s", "carol", "-au", "carol", "-ap", "carol-secret", "-key", "to_user", "alice"];
    let out = command(d, sip, "presence-subscribe-pending.xml", free_port(), &carol).output();
    expect_success(&server, d, out, "Carol's SUBSCRIBE, pending");
    expect_child_success(&server, d, &mut winfo, "Alice's watcher info shows Carol pending");

    assert!(server.metric("vienna_presence_notifies_total") >= 6.0);
    assert_eq!(server.metric("vienna_presence_watchers_recorded_total"), 1.0);
    let view = server.get("/api/v1/presence/alice").json();
    let watchers = view["watchers"].as_array().unwrap();
    let state = |uri: &str| watchers.iter().find(|w| w["uri"] == uri).map(|w| w["state"].clone());
    assert_eq!(state("sip:carol@localhost"), Some("pending".into()), "{view}");
    assert_eq!(state("sip:bob@localhost"), Some("allowed".into()), "{view}");
    assert_eq!(watchers.iter().find(|w| w["uri"] == "sip:carol@localhost").unwrap()["display_name"], "Carol");

    // The pending record was written before Carol's 200 OK: it survives kill -9.
    assert!(!server.stop_with(libc::SIGKILL).success());
    let again = Server::start(&data, &["--set", "turn.enabled=false"]);
    let view = again.get("/api/v1/presence/alice").json();
    assert!(
        view["watchers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["uri"] == "sip:carol@localhost" && w["state"] == "pending"),
        "{view}"
    );
}

/// A hand-written UDP client (authentication off, so it needs no Digest code).
struct Ua {
    socket: UdpSocket,
    server: SocketAddr,
    me: SocketAddr,
    user: &'static str,
    seq: u32,
}

impl Ua {
    fn new(user: &'static str, server: SocketAddr) -> Ua {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let me = socket.local_addr().unwrap();
        Ua { socket, server, me, user, seq: 0 }
    }

    fn request(&mut self, method: &str, to: &str, extra: &str, body: &str) -> String {
        self.seq += 1;
        let (me, user, n) = (self.me, self.user, self.seq);
        format!(
            "{method} sip:{to}@localhost SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{user}-{n}\r\nMax-Forwards: 70\r\n\
             From: <sip:{user}@localhost>;tag={user}\r\nTo: <sip:{to}@localhost>\r\nCall-ID: {user}-{method}-{n}\r\n\
             CSeq: {n} {method}\r\nContact: <sip:{user}@{me}>\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    fn send(&self, text: &str) {
        self.socket.send_to(text.as_bytes(), self.server).unwrap();
    }

    /// The next message; requests (NOTIFY) are answered 200.
    fn recv(&self) -> Message {
        let mut buf = vec![0; 65_536];
        let (n, _) = self.socket.recv_from(&mut buf).expect("a message within the read timeout");
        let m = Message::parse(&buf[..n]).unwrap();
        if let Message::Request(r) = &m {
            let ok = r.make_response(200, None);
            self.socket.send_to(&ok.to_bytes(), self.server).unwrap();
        }
        m
    }

    fn register(&mut self) {
        let r = self.request("REGISTER", self.user, "Expires: 600\r\n", "");
        self.send(&r);
        assert!(matches!(self.recv(), Message::Response(r) if r.status == 200));
    }
}

#[test]
fn the_contact_list_is_one_subscription_and_a_blocked_watcher_sees_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for u in ["alice", "bob", "carol", "dave"] {
        add_user(&data, u, "pw");
    }
    // Alice's list: Bob (who has Alice in his list: allowed), Carol (undecided: pending), Dave (who blocks her).
    cli(&data, &["contact", "add", "alice", "bob", "--group", "Team"]);
    cli(&data, &["contact", "add", "alice", "carol", "--group", "Team"]);
    cli(&data, &["contact", "add", "alice", "dave", "--group", "Friends"]);
    cli(&data, &["contact", "add", "bob", "alice"]);
    cli(&data, &["watcher", "block", "dave", "alice"]);
    let (server, sip) = start(dir.path(), &["--set", "sip.authenticate=false"]);
    let mut bob = Ua::new("bob", sip);
    bob.register();
    let mut dave = Ua::new("dave", sip);
    dave.register();

    let mut alice = Ua::new("alice", sip);
    let sub = alice.request(
        "SUBSCRIBE",
        "alice",
        "Event: presence\r\nSupported: eventlist\r\nAccept: application/pidf+xml, application/rlmi+xml, multipart/related\r\n",
        "",
    );
    alice.send(&sub);
    let Message::Response(ok) = alice.recv() else { panic!("expected the 200") };
    assert_eq!(ok.status, 200);
    assert!(ok.headers.has_option_tag(&HeaderName::Require, "eventlist"));
    let Message::Request(notify) = alice.recv() else { panic!("expected a NOTIFY") };
    let ctype = notify.headers.get(&HeaderName::ContentType).unwrap().to_owned();
    let body = String::from_utf8_lossy(&notify.body).into_owned();
    assert!(ctype.starts_with("multipart/related"), "{ctype}");
    assert!(body.contains("fullState=\"true\""), "{body}");
    let part_of = |who: &str| {
        body.split("--")
            .find(|p| p.contains("<presence") && p.contains(&format!("entity=\"sip:{who}@localhost\"")))
            .map(str::to_owned)
    };
    assert!(part_of("bob").unwrap().contains("<basic>open</basic>"), "Bob is registered and allows Alice: {body}");
    assert!(
        part_of("dave").unwrap().contains("<basic>closed</basic>"),
        "Dave blocks Alice: Offline although registered: {body}"
    );
    assert!(part_of("carol").is_none(), "Carol has not decided: no state");
    assert!(body.contains("uri=\"sip:carol@localhost\"><instance") && body.contains("state=\"pending\""), "{body}");

    // Bob goes busy: Alice gets one partial NOTIFY about Bob alone.
    let busy = "<?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:r=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"sip:bob@localhost\"><tuple id=\"a\"><status><basic>open</basic></status></tuple><r:activities><r:busy/></r:activities></presence>";
    let publish = bob.request("PUBLISH", "bob", "Event: presence\r\nContent-Type: application/pidf+xml\r\n", busy);
    bob.send(&publish);
    assert!(matches!(bob.recv(), Message::Response(r) if r.status == 200));
    let Message::Request(update) = alice.recv() else { panic!("expected a NOTIFY") };
    let body = String::from_utf8_lossy(&update.body);
    assert!(
        body.contains("fullState=\"false\"") && body.contains("sip:bob@localhost") && body.contains("busy"),
        "{body}"
    );
    assert!(!body.contains("sip:dave@localhost"), "{body}");
    let p = server.wait_json("/api/v1/presence/bob", |p| p["presence"]["state"] == "busy");
    assert_eq!(p["contact_list"]["contacts"][0]["uri"], "sip:alice@localhost", "{p}");
}
