//! `vienna-load turn` against a real `vienna serve` on loopback: data at a low rate, a wrong password,
//! and hold mode. The server binary is the one cargo built for this profile (`target/<profile>/vienna`;
//! build it first with `cargo build -p vienna`). Every run is bounded by its own `--duration` and the
//! tool's time limits; the tests assert behaviour, never wall time.

mod common;

use std::process::{Command, Output, Stdio};

use common::Relay;
use serde_json::Value;

/// Runs `vienna-load turn` against `server` with `args` and `--json`; returns the output and the JSON.
fn load(server: &Relay, args: &[&str]) -> (Output, Value) {
    load_at(server.turn, args)
}

/// [`load`] against the listener at `addr`.
fn load_at(addr: std::net::SocketAddr, args: &[&str]) -> (Output, Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("result.json");
    let out = Command::new(env!("CARGO_BIN_EXE_vienna-load"))
        .arg("turn")
        .args(["--server", &addr.to_string(), "--user", "alice"])
        .args(args)
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .output()
        .expect("run vienna-load");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}); stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, serde_json::from_str(&text).expect("valid JSON"))
}

/// The `key=value` pairs of the summary line starting with `topic`.
fn summary(out: &Output, topic: &str) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(topic))
        .unwrap_or_else(|| panic!("no {topic} line in:\n{text}"));
    line.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

fn value<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {key} in {pairs:?}"))
}

#[test]
fn low_rate_has_no_loss_and_json_matches_the_summary() {
    let server = Relay::start(&[]);
    let (out, json) =
        load(&server, &["--password", "secret", "--clients", "4", "--rate", "50", "--duration", "2", "--size", "100"]);
    assert!(out.status.success(), "exit {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert_eq!(json["mode"], "data");
    assert_eq!(json["allocations"]["ok"], 4);
    assert_eq!(json["allocations"]["failed"], 0);
    assert_eq!(json["sent"], 400, "4 clients x 50 pps x 2 s");
    assert_eq!(json["received"], 400);
    assert_eq!(json["lost"], 0);
    assert_eq!(json["loss_percent"], 0.0);
    assert_eq!(json["duplicates"], 0);
    assert_eq!(json["peer_received"], 400);
    assert_eq!(json["teardown"]["deleted"], 4);
    assert!(json["latency_us"]["count"].as_u64() == Some(400));
    assert!(json["latency_us"]["p50"].as_u64().unwrap() <= json["latency_us"]["max"].as_u64().unwrap());
    assert!(json["achieved_rate_pps"].as_f64().unwrap() > 0.0);

    let traffic = summary(&out, "traffic");
    for key in ["sent", "received", "lost", "reordered", "duplicates", "send_dropped"] {
        assert_eq!(value(&traffic, key), json[key].to_string(), "{key}");
    }
    assert_eq!(value(&traffic, "loss_percent").parse::<f64>().unwrap(), json["loss_percent"].as_f64().unwrap());
    let rate = summary(&out, "rate");
    assert_eq!(value(&rate, "achieved_pps").parse::<f64>().unwrap(), json["achieved_rate_pps"].as_f64().unwrap());
    assert_eq!(
        value(&rate, "relayed_dps").parse::<f64>().unwrap(),
        json["relayed_datagrams_per_sec"].as_f64().unwrap()
    );
    let latency = summary(&out, "latency_us");
    for (text_key, json_key) in [("p50", "p50"), ("p99", "p99"), ("p99.9", "p999"), ("max", "max")] {
        assert_eq!(value(&latency, text_key), json["latency_us"][json_key].to_string(), "{text_key}");
    }
    let allocations = summary(&out, "allocations");
    assert_eq!(value(&allocations, "ok"), "4");
    // RFC 3550 jitter of every client's echoed stream
    assert_eq!(json["jitter_us"]["clients"], 4);
    let jitter = summary(&out, "jitter_us");
    assert_eq!(value(&jitter, "mean").parse::<f64>().unwrap(), json["jitter_us"]["mean"].as_f64().unwrap());
    assert!(json["jitter_us"]["max"].as_f64().unwrap() >= json["jitter_us"]["mean"].as_f64().unwrap());
}

#[test]
fn wrong_password_reports_401_and_fails() {
    let server = Relay::start(&[]);
    let (out, json) = load(&server, &["--password", "wrong", "--clients", "3", "--duration", "1"]);
    assert_eq!(out.status.code(), Some(1), "a failed allocation is a failed run");
    assert_eq!(json["allocations"]["ok"], 0);
    assert_eq!(json["allocations"]["failed"], 3);
    assert_eq!(json["allocations"]["failed_by_code"]["401"], 3);
    assert_eq!(json["allocations"]["failed_by_step"]["allocate"], 3);
    assert_eq!(json["sent"], 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("401=3"), "summary names the code:\n{text}");
}

#[test]
fn hold_reports_every_allocation() {
    let server = Relay::start(&[]);
    let (out, json) = load(&server, &["--password", "secret", "--clients", "50", "--duration", "1", "--hold"]);
    assert!(out.status.success(), "exit {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("HOLDING allocations=50 failed=0"), "hold line:\n{text}");
    assert_eq!(json["mode"], "hold");
    assert_eq!(json["allocations"]["ok"], 50);
    assert_eq!(json["allocations"]["failed"], 0);
    assert_eq!(json["sent"], 0);
    assert_eq!(json["teardown"]["deleted"], 50);
    assert_eq!(json["teardown"]["delete_failed"], 0);
}

#[test]
fn timeline_and_report_hold_the_run() {
    let server = Relay::start(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let svg = dir.path().join("turn.svg");
    let pid = server.pid().to_string();
    let (out, json) = load(
        &server,
        &[
            "--password",
            "secret",
            "--clients",
            "2",
            "--rate",
            "50",
            "--duration",
            "2",
            "--pid",
            &pid,
            "--report",
            svg.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "exit {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert_eq!(json["sent"], 200);
    let rows = json["timeline"]["rows"].as_array().expect("timeline rows");
    assert!(json["timeline"]["has_loss"].as_bool().unwrap());
    let sum = |f: &str| rows.iter().map(|r| r[f].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("offered"), 200, "packets sent per second add up to the total");
    assert_eq!(sum("ok"), json["received"].as_u64().unwrap());
    assert_eq!(sum("lost"), json["lost"].as_u64().unwrap());
    let latency_samples: u64 = rows.iter().map(|r| r["latency_us"]["count"].as_u64().unwrap()).sum();
    assert_eq!(latency_samples, 200, "every echo is in one second's percentiles");
    assert_eq!(json["server_process"]["pids"][0].as_u64(), Some(u64::from(server.pid())));
    assert!(json["loader_cpu_secs"].as_f64().unwrap() > 0.0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("server ")), "summary has the server line:\n{text}");
    let report = std::fs::read_to_string(&svg).expect("report written");
    assert!(report.contains("<svg") && report.contains("loss"));
    assert!(report.contains("sent=200"), "the report carries the summary");
}

#[test]
fn data_over_tcp_and_tls_connections_has_no_loss() {
    let server = Relay::start(&[
        "--set",
        "turn.tcp=true",
        "--set",
        "turn.tcp_port=0",
        "--set",
        "turn.tls=true",
        "--set",
        "turn.tls_port=0",
    ]);
    let ca = server.data_dir().join("tls").join("cert.pem").display().to_string();
    let tcp = server.turn_tcp.expect("TURN TCP listener");
    let tls = server.turn_tls.expect("TURN TLS listener");
    // 101 payload bytes: every ChannelData frame is padded on the stream (105 -> 108), both ways.
    let common = ["--password", "secret", "--clients", "4", "--rate", "50", "--duration", "2", "--size", "101"];
    for (transport, addr, extra) in [("tcp", tcp, vec![]), ("tls", tls, vec!["--tls-ca", ca.as_str()])] {
        let args: Vec<&str> = ["--transport", transport].into_iter().chain(common).chain(extra).collect();
        let (out, json) = load_at(addr, &args);
        assert!(out.status.success(), "{transport}: exit {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        assert_eq!(json["config"]["transport"], transport);
        assert_eq!(json["allocations"]["ok"], 4, "{transport}");
        assert_eq!(json["sent"], 400, "{transport}: 4 clients x 50 pps x 2 s");
        assert_eq!(json["received"], 400, "{transport}: every echo back over the connections");
        assert_eq!(json["foreign"], 0, "{transport}: every frame parsed");
    }
    // The relay's own count: 8 allocations made (over TCP and TLS, the only listeners these runs used).
    server.metric_at_least("vienna_turn_allocations_created_total", 8.0);
}
