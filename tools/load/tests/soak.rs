//! A short reliability soak: one `vienna serve` with its TURN relay and its SIP role carries relayed media
//! (`vienna-load turn`), registrations (`sip --scenario register`) and proxied messages
//! (`sip --scenario message`) at the same time, in two rounds of the same load. Every run must finish
//! without a failure or a lost packet, and the second round must leave the server where the first did:
//! no allocation left behind, no more open files, resident memory within a small margin (a leak per
//! packet, transaction or allocation would show there). Bounded by each run's --duration; the tests
//! assert counts and sizes, never wall time.

mod common;

use common::{RELAY_SETTINGS, Run, add_user, http_get, serve, settings, vienna_load};
use serde_json::Value;

/// SIP users `user0..user{SIP_USERS-1}` (password `pw-user{i}`); TURN account alice/secret.
const SIP_USERS: usize = 20;
/// Seconds of load per run.
const SECONDS: &str = "6";
/// Resident memory the second round may add to the first (allocator and cache noise).
const RSS_MARGIN: u64 = 16 << 20;

/// Resident memory (bytes) and open file descriptors of process `pid`.
fn resources(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("VmRSS")
        * 1024;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("server fds").count();
    (rss, fds)
}

/// One round: the three loads at once; panics with a run's output when it failed.
fn round(turn: &str, sip: &str) -> [Run; 3] {
    let (turn, sip) = (turn.to_owned(), sip.to_owned());
    let relay = {
        let turn = turn.clone();
        std::thread::spawn(move || {
            let args = ["turn", "--server", &turn, "--user", "alice", "--password", "secret"];
            let rest = ["--clients", "20", "--rate", "50", "--duration", SECONDS, "--threads", "1"];
            vienna_load(&[&args[..], &rest[..]].concat(), None)
        })
    };
    let register = {
        let sip = sip.clone();
        std::thread::spawn(move || {
            let args = ["sip", "--target", &sip, "--users", "10", "--scenario", "register", "--rate", "100"];
            vienna_load(&[&args[..], &["--duration", SECONDS, "--threads", "1"][..]].concat(), None)
        })
    };
    let message = std::thread::spawn(move || {
        let args = ["sip", "--target", &sip, "--users", "10", "--first-user", "10", "--scenario", "message"];
        vienna_load(&[&args[..], &["--rate", "50", "--duration", SECONDS, "--threads", "1"][..]].concat(), None)
    });
    let runs = [relay.join().unwrap(), register.join().unwrap(), message.join().unwrap()];
    for run in &runs {
        run.assert_success();
    }
    runs
}

fn check(runs: &[Run; 3]) {
    let [relay, register, message] = runs;
    let r = &relay.json;
    assert_eq!(r["allocations"]["ok"], 20, "{r}");
    assert_eq!(r["loss_percent"].as_f64(), Some(0.0), "no loss at 1,000 packets/s on loopback: {r}");
    assert!(r["received"].as_u64().unwrap() >= 20 * 50 * 5, "echoes for every client: {r}");
    for (name, run) in [("register", register), ("message", message)] {
        let j = &run.json;
        assert_eq!(j["operations"]["failed"], 0, "{name}: {j}");
        assert_eq!(j["operations"]["unfinished"], 0, "{name}: {j}");
        assert!(j["operations"]["ok"].as_u64().unwrap() > 0, "{name}: {j}");
    }
}

/// The relay's live allocations in the admin API.
fn allocations(admin: std::net::SocketAddr) -> usize {
    let body = http_get(admin, "/api/v1/allocations");
    let v: Value = serde_json::from_str(&body).expect("allocations JSON");
    v.as_array().unwrap_or_else(|| panic!("/api/v1/allocations is a list: {v}")).len()
}

#[test]
fn two_rounds_of_relay_registration_and_message_load_leave_the_server_as_they_found_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    add_user(dir.path(), "alice", "secret");
    for i in 0..SIP_USERS {
        add_user(dir.path(), &format!("user{i}"), &format!("pw-user{i}"));
    }
    let args = settings(
        &[
            RELAY_SETTINGS,
            &["sip.udp_port=0", "sip.tcp=false", "sip.tls=false", "store.synchronous=normal", "mcu.enabled=false"],
        ]
        .concat(),
    );
    let (mut child, listeners) = serve(dir.path(), &args);
    let pid = child.id();
    let (turn, sip, admin) = (listeners["turn/udp"], listeners["sip/udp"], listeners["admin/http"]);

    let first = round(&turn.to_string(), &sip.to_string());
    check(&first);
    assert_eq!(allocations(admin), 0, "every allocation of the first round was deleted");
    let after_first = resources(pid);

    let second = round(&turn.to_string(), &sip.to_string());
    check(&second);
    assert_eq!(allocations(admin), 0, "every allocation of the second round was deleted");
    let after_second = resources(pid);

    assert!(
        after_second.1 <= after_first.1 + 2,
        "open files grew from {} to {} over the second round",
        after_first.1,
        after_second.1
    );
    assert!(
        after_second.0 <= after_first.0 + RSS_MARGIN,
        "resident memory grew from {} to {} bytes over the second round",
        after_first.0,
        after_second.0
    );
    assert!(http_get(admin, "/healthz").contains("ok"), "still healthy");
    let _ = child.kill();
    let _ = child.wait();
}
