//! `vienna-load msturn` against Vienna's MS-TURN relay (`vienna serve`) on loopback: Send requests with
//! MRAS tokens minted from the relay's secret, raw data after Set Active Destination with the credentials
//! `vienna relay-credentials` prints, TURN REST with MS-Version 3, a store account and a wrong password,
//! and hold mode. The relay's own counters (`/metrics`) confirm which path the data took. Every run is
//! bounded by `--duration`; the tests assert counts, never wall time.

mod common;

use std::process::{Command, Stdio};

use common::{Relay, vienna_load};

fn server_args(relay: &Relay) -> Vec<String> {
    vec!["msturn".into(), "--server".into(), relay.turn.to_string()]
}

fn run(relay: &Relay, args: &[&str], report: Option<&str>) -> common::Run {
    let mut all = server_args(relay);
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    vienna_load(&refs, report)
}

#[test]
fn send_requests_with_mras_tokens_reach_the_peer_and_come_back() {
    let relay = Relay::start(&[]);
    let pid = relay.pid().to_string();
    let args =
        ["--mras-secret", Relay::MRAS_SECRET, "--clients", "4", "--rate", "50", "--duration", "2", "--pid", &pid];
    let r = run(&relay, &args, Some("svg"));
    r.assert_success();
    let j = &r.json;
    assert_eq!(j["config"]["dialect"], "msturn");
    assert_eq!(j["config"]["msturn_data"], "send");
    assert_eq!(j["config"]["credentials"], "mras");
    assert_eq!(j["allocations"]["ok"], 4);
    assert_eq!(j["sent"], 400, "4 clients x 50 pps x 2 s");
    assert_eq!(j["received"], 400);
    assert_eq!(j["lost"], 0);
    assert_eq!(j["peer_received"], 400);
    assert_eq!(j["latency_us"]["count"], 400);
    assert_eq!(j["jitter_us"]["clients"], 4);
    assert_eq!(j["teardown"]["deleted"], 4);
    assert_eq!(r.timeline_sum("offered"), 400);
    for (topic, key, path) in [
        ("traffic", "sent", "/sent"),
        ("traffic", "received", "/received"),
        ("traffic", "loss_percent", "/loss_percent"),
        ("latency_us", "p99", "/latency_us/p99"),
        ("rate", "relayed_dps", "/relayed_datagrams_per_sec"),
    ] {
        r.same(topic, key, path);
    }
    assert!(r.stdout().starts_with("vienna-load msturn send data:"), "{}", r.stdout());
    // The relay took them as MS-TURN Send requests and answered with Data Indications.
    assert_eq!(relay.metric_at_least("vienna_turn_msturn_send_requests_total", 400.0), 400.0);
    assert!(relay.metric_at_least("vienna_turn_msturn_data_indications_total", 400.0) >= 400.0);
    assert_eq!(relay.metric("vienna_turn_msturn_raw_client_to_peer_total"), 0.0);
    assert_eq!(relay.metric("vienna_turn_msturn_auth_failures_total"), 0.0);
    assert_eq!(relay.metric("vienna_turn_dialect_allocations_created_total{dialect=\"msturn\"}"), 4.0);
    let svg = r.report.as_deref().unwrap();
    assert!(svg.contains("<svg") && svg.contains("sent=400"));
}

/// The MRAS answer of `vienna relay-credentials` for alice: base64 username and password.
fn relay_credentials(relay: &Relay) -> (String, String) {
    let out = Command::new(common::vienna_binary())
        .arg("--data-dir")
        .arg(relay.data_dir())
        .args(["--set", &format!("mras.secret={}", Relay::MRAS_SECRET), "relay-credentials", "alice"])
        .env_remove("VIENNA_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("vienna relay-credentials");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let xml = String::from_utf8_lossy(&out.stdout).into_owned();
    let pick = |tag: &str| {
        let open = format!("<{tag}>");
        let start = xml.find(&open).unwrap_or_else(|| panic!("no {tag} in {xml}")) + open.len();
        xml[start..start + xml[start..].find('<').unwrap()].to_owned()
    };
    (pick("username"), pick("password"))
}

#[test]
fn raw_data_after_set_active_destination_with_relay_credentials() {
    let relay = Relay::start(&[]);
    let (user, password) = relay_credentials(&relay);
    let args = [
        "--mras-username",
        &user,
        "--mras-password",
        &password,
        "--data",
        "raw",
        "--ms-version",
        "2",
        "--clients",
        "3",
        "--rate",
        "50",
        "--duration",
        "2",
    ];
    let r = run(&relay, &args, None);
    r.assert_success();
    let j = &r.json;
    assert_eq!(j["config"]["msturn_data"], "raw");
    assert_eq!(j["config"]["ms_version"], 2);
    assert_eq!(j["config"]["username"], user.as_str());
    assert_eq!((j["sent"].as_u64(), j["received"].as_u64(), j["lost"].as_u64()), (Some(300), Some(300), Some(0)));
    assert_eq!(j["teardown"]["deleted"], 3);
    assert_eq!(relay.metric_at_least("vienna_turn_msturn_raw_client_to_peer_total", 300.0), 300.0);
    assert_eq!(relay.metric_at_least("vienna_turn_msturn_raw_peer_to_client_total", 300.0), 300.0);
    assert_eq!(relay.metric("vienna_turn_msturn_send_requests_total"), 0.0);
    assert_eq!(relay.metric("vienna_turn_msturn_active_destinations_total"), 3.0);
}

#[test]
fn rest_credentials_with_version_3_an_account_and_a_wrong_password() {
    let relay = Relay::start(&[]);
    let rest = [
        "--rest-secret",
        Relay::REST_SECRET,
        "--user",
        "carol",
        "--ms-version",
        "3",
        "--clients",
        "2",
        "--rate",
        "20",
        "--duration",
        "1",
    ];
    let r = run(&relay, &rest, None);
    r.assert_success();
    assert_eq!(r.json["config"]["credentials"], "rest");
    assert_eq!((r.json["sent"].as_u64(), r.json["received"].as_u64()), (Some(40), Some(40)));
    let account = ["--user", "alice", "--password", "secret", "--clients", "2", "--rate", "20", "--duration", "1"];
    let r = run(&relay, &account, None);
    r.assert_success();
    assert_eq!(r.json["config"]["credentials"], "account");
    assert_eq!(r.json["received"], 40);
    let wrong = ["--user", "alice", "--password", "wrong", "--clients", "3", "--duration", "1"];
    let r = run(&relay, &wrong, None);
    assert_eq!(r.out.status.code(), Some(1), "failed allocations fail the run");
    assert_eq!(r.json["allocations"]["failed"], 3);
    assert_eq!(r.json["allocations"]["failed_by_code"]["431"], 3, "MS-TURN's integrity failure");
    assert_eq!(r.json["sent"], 0);
    assert!(relay.metric_at_least("vienna_turn_msturn_auth_failures_total", 3.0) >= 3.0);
}

#[test]
fn hold_keeps_every_allocation_and_deletes_it() {
    let relay = Relay::start(&[]);
    let pid = relay.pid().to_string();
    let args = [
        "--mras-secret",
        Relay::MRAS_SECRET,
        "--data",
        "raw",
        "--clients",
        "30",
        "--duration",
        "1",
        "--hold",
        "--pid",
        &pid,
    ];
    let r = run(&relay, &args, None);
    r.assert_success();
    assert_eq!(r.json["mode"], "hold");
    assert_eq!(r.json["allocations"]["ok"], 30);
    assert_eq!(r.json["teardown"]["deleted"], 30);
    assert!(r.stdout().contains("HOLDING allocations=30 failed=0"));
    assert!(r.json["server_process"]["rss_peak_bytes"].as_u64().unwrap() > 0);
    assert_eq!(relay.metric_at_least("vienna_turn_msturn_active_destinations_total", 30.0), 30.0);
}
