//! Two baresip 1.0 instances (Debian package baresip, presence module) register with passwords through
//! Vienna, watch each other, and each sees the other go online, away and offline. Everything on loopback
//! with ephemeral ports; each baresip quits by itself after at most 60 seconds, and the test kills what it
//! started when it ends.
//!
//! What each one "sees" is read from its SIP trace (`-s`): the PIDF of every NOTIFY it received about the
//! other, in order. baresip's own status line is checked too, with one caveat of baresip 1.0: its
//! subscriber shows `<rpid:away/>` as "Offline" (it knows Online, Offline and Busy only), and its publisher
//! publishes only open or closed, so the Away step is set for the user with `vienna presence set` (the
//! durable manual state), and the Offline step is baresip's own `/presence_offline`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use vienna_e2e::baresip::Baresip;
use vienna_e2e::{PATIENCE, Server, run};

/// `user` (password `USER-secret`) registering at `sip`, watching `peer`, with its SIP trace in the log.
fn agent(dir: &Path, user: &str, peer: &str, sip: SocketAddr) -> Baresip {
    Baresip::builder(dir, user, format!("<sip:{user}@{sip}>;auth_pass={user}-secret;regint=60;pubint=60"))
        .modules(&["presence.so"])
        .contacts(format!("\"{peer}\" <sip:{peer}@{sip}>;presence=p2p\n"))
        .trace()
        .start()
}

/// Whether `wanted` appears in `seen` in this order (other entries may come between).
fn in_order(seen: &[&str], wanted: &[&str]) -> bool {
    let mut it = seen.iter();
    wanted.iter().all(|w| it.any(|s| s == w))
}

fn wait(what: &str, server: &Server, parties: &[&Baresip], ok: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ok() {
        if Instant::now() > deadline {
            let logs: Vec<String> = parties.iter().map(|b| b.log_text()).collect();
            let api = server.get("/api/v1/presence").body;
            panic!(
                "{what}: not seen in time\n--- presence ---\n{api}\n--- baresip logs ---\n{}\n--- server log ---\n{}",
                logs.join("\n-----\n"),
                server.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_baresips_see_each_other_go_online_away_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let domain = ["--set", "server.domain=127.0.0.1"];
    for u in ["alice", "bob"] {
        let out = run(&data, &["user", "add", u, "--password-stdin", domain[0], domain[1]], &format!("{u}-secret\n"));
        assert!(out.status.success(), "{}", vienna_e2e::stderr(&out));
    }
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&domain);
        let out = run(&data, &all, "");
        assert!(out.status.success(), "vienna {args:?}: {}", vienna_e2e::stderr(&out));
    };
    // Each has the other in its contact list: that allows each to watch the other.
    cli(&["contact", "add", "alice", "bob"]);
    cli(&["contact", "add", "bob", "alice"]);
    let mut server = Server::start(
        &data,
        &[
            "--set",
            "server.domain=127.0.0.1",
            "--set",
            "turn.enabled=false",
            // baresip 1.0 (libre) answers MD5 challenges only.
            "--set",
            "sip.digest_algorithms=[\"MD5\"]",
            "--set",
            "presence.notify_interval_ms=200",
            "--set",
            "presence.reauthorize_secs=1",
        ],
    );
    let sip = server.listener("sip", "udp");
    let state = |aor: &str| {
        let v = server.get(&format!("/api/v1/presence/{aor}")).json();
        v["presence"]["state"].as_str().unwrap_or_default().to_owned()
    };

    // Online: Alice starts first, so she sees Bob come from Offline to Online; Bob sees her Online.
    let alice = agent(d, "alice", "bob", sip);
    wait("alice registered", &server, &[&alice], || state("alice") == "online");
    let bob = agent(d, "bob", "alice", sip);
    let both = [&alice, &bob];
    wait("each sees the other online", &server, &both, || {
        alice.presence_seen("bob").contains(&"online") && bob.presence_seen("alice").contains(&"online")
    });
    assert!(in_order(&alice.presence_seen("bob"), &["offline", "online"]), "{:?}", alice.presence_seen("bob"));

    // Away: both set Away by hand (baresip 1.0 cannot publish it).
    cli(&["presence", "set", "bob", "away"]);
    cli(&["presence", "set", "alice", "away"]);
    wait("each sees the other away", &server, &both, || {
        in_order(&alice.presence_seen("bob"), &["online", "away"])
            && in_order(&bob.presence_seen("alice"), &["online", "away"])
    });

    // Offline: each clears the manual state and goes offline in baresip (it publishes closed).
    cli(&["presence", "clear", "bob"]);
    wait("bob's manual state cleared", &server, &both, || state("bob") == "online");
    bob.command("presence_offline");
    wait("alice sees bob offline", &server, &both, || {
        in_order(&alice.presence_seen("bob"), &["online", "away", "offline"])
    });
    cli(&["presence", "clear", "alice"]);
    wait("alice's manual state cleared", &server, &both, || state("alice") == "online");
    alice.command("presence_offline");
    wait("bob sees alice offline", &server, &both, || {
        in_order(&bob.presence_seen("alice"), &["online", "away", "offline"])
    });

    // baresip's own view agrees (it shows Away as Offline, see above).
    let alice_log = alice.log_text();
    assert!(alice_log.contains("<sip:bob@") && alice_log.contains("changed status from"), "{alice_log}");
    let p = server.wait_json("/api/v1/presence", |p| p["subscriptions"] == 2);
    assert!(p["notify"]["sent"].as_u64().unwrap() >= 6, "{p}");
    assert_eq!(p["subscribe"]["rejected"], 0, "{p}");
    drop(alice);
    drop(bob);
}
