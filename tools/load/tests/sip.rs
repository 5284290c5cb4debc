//! `vienna-load sip` against a real `vienna serve` on loopback: REGISTER with Digest (challenge and
//! reuse, MD5 and SHA-256), MESSAGE and calls between registered users, a wrong password, and `sweep`.
//! Every run is bounded by its own --duration and --count; the tests assert counts, never wall time.

mod common;

use common::{Vienna, vienna_load};

fn sip(server: &Vienna, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> =
        ["sip", "--target", &server.sip.to_string(), "--users", "4"].iter().map(|s| s.to_string()).collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn register_with_challenges_reaches_the_rate_and_the_outputs_agree() {
    let server = Vienna::start(4, &[]);
    let pid = server.pid().to_string();
    let args = sip(&server, &["--rate", "20", "--duration", "2", "--auth", "challenge", "--pid", &pid]);
    let run = vienna_load(&strs(&args), Some("svg"));
    run.assert_success();
    let j = &run.json;
    assert_eq!(j["mode"], "sip");
    assert_eq!(j["operations"]["started"], 40, "20/s x 2 s");
    assert_eq!(j["operations"]["ok"], 40);
    assert_eq!(j["operations"]["failed"], 0);
    assert_eq!(j["operations"]["unfinished"], 0);
    assert_eq!(j["operations"]["not_started"], 0);
    // challenge mode: every REGISTER is challenged, then authenticated
    assert_eq!(j["messages"]["transactions"], 80);
    assert_eq!(j["messages"]["challenges"], 40);
    assert_eq!(j["messages"]["responses"]["401"], 40);
    assert_eq!(j["messages"]["responses"]["200"], 40);
    assert_eq!(j["latency_us"]["count"], 40);
    assert_eq!(j["response_latency_us"]["count"], 80);
    // the timeline holds the same operations; the sampled server used some CPU
    assert_eq!(run.timeline_sum("offered"), 40);
    assert_eq!(run.timeline_sum("ok"), 40);
    assert!(j["server_process"]["rss_peak_bytes"].as_u64().unwrap() > 0);
    assert_eq!(j["server_process"]["pids"][0].as_u64().unwrap(), server.pid() as u64);
    // the summary prints the JSON's numbers
    for (topic, key, path) in [
        ("operations", "ok", "/operations/ok"),
        ("operations", "failed", "/operations/failed"),
        ("rate", "achieved", "/achieved_rate"),
        ("rate", "transactions_per_sec", "/transactions_per_sec"),
        ("messages", "challenges", "/messages/challenges"),
        ("latency_us", "p50", "/latency_us/p50"),
        ("latency_us", "p99", "/latency_us/p99"),
        ("latency_us", "p99.9", "/latency_us/p999"),
        ("latency_us", "max", "/latency_us/max"),
        ("response_us", "p90", "/response_latency_us/p90"),
        ("server", "cpu_secs", "/server_process/cpu_secs"),
        ("loader", "cpu_secs", "/loader_cpu_secs"),
    ] {
        run.same(topic, key, path);
    }
    // requested rate reached: the successes over the planned two seconds
    assert!(j["achieved_rate"].as_f64().unwrap() > 0.0);
    assert!(j["achieved_rate"].as_f64().unwrap() <= 20.0 + 1e-9);
    let svg = run.report.as_deref().unwrap();
    assert!(svg.contains("<svg") && svg.contains("latency per second") && svg.contains("server CPU"));
    assert!(svg.contains("ok=40"), "the report carries the summary");
}

#[test]
fn register_reusing_nonces_with_sha256_and_md5() {
    let server = Vienna::start(4, &[]);
    for alg in ["sha256", "md5"] {
        let args = sip(&server, &["--rate", "20", "--duration", "1", "--algorithm", alg]);
        let run = vienna_load(&strs(&args), None);
        run.assert_success();
        let j = &run.json;
        assert_eq!(j["operations"]["ok"], 20, "{alg}");
        // one challenge per user, then the cached nonce with a rising nonce count
        assert_eq!(j["messages"]["challenges"], 4, "{alg}");
        assert_eq!(j["messages"]["transactions"], 24, "{alg}");
    }
}

#[test]
fn message_between_registered_users() {
    let server = Vienna::start(4, &[]);
    let args = sip(&server, &["--scenario", "message", "--rate", "25", "--duration", "2"]);
    let run = vienna_load(&strs(&args), Some("html"));
    run.assert_success();
    let j = &run.json;
    assert_eq!(j["setup"]["ok"], 4, "every user registered first");
    assert_eq!(j["operations"]["ok"], 50);
    assert_eq!(j["operations"]["failed"], 0);
    assert_eq!(j["messages"]["uas_requests"]["MESSAGE"], 50, "the callees answered every MESSAGE");
    assert_eq!(j["messages"]["responses"]["407"], 4, "one proxy challenge per sender, then reused");
    run.same("setup", "registered", "/setup/ok");
    let html = run.report.as_deref().unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg") && html.contains("<table>"));
}

#[test]
fn calls_with_ack_and_bye() {
    let server = Vienna::start(4, &[]);
    let args = sip(&server, &["--scenario", "call", "--rate", "10", "--duration", "2", "--hold-ms", "100"]);
    let run = vienna_load(&strs(&args), Some("png"));
    run.assert_success();
    let j = &run.json;
    assert_eq!(j["operations"]["ok"], 20);
    assert_eq!(j["operations"]["failed"], 0);
    let uas = &j["messages"]["uas_requests"];
    assert_eq!((uas["INVITE"].as_u64(), uas["ACK"].as_u64(), uas["BYE"].as_u64()), (Some(20), Some(20), Some(20)));
    // INVITE (after its proxy challenge: 4 users, one challenge each) and BYE per call
    assert_eq!(j["messages"]["transactions"], 44);
    assert_eq!(j["latency_us"]["count"], 20, "call set-up latency per call");
    assert!(run.report.as_deref().unwrap().ends_with("PNG\r\n\u{1a}\n"));
}

#[test]
fn wrong_password_fails_with_the_code() {
    let server = Vienna::start(2, &[]);
    let args = ["sip", "--target", &server.sip.to_string(), "--users", "2", "--password-pattern", "wrong"];
    let mut v: Vec<&str> = args.to_vec();
    v.extend(["--rate", "4", "--duration", "1"]);
    let run = vienna_load(&v, None);
    assert_eq!(run.out.status.code(), Some(1), "failed operations fail the run");
    let j = &run.json;
    assert_eq!(j["operations"]["ok"], 0);
    assert_eq!(j["operations"]["failed"], 4);
    let by = j["operations"]["failed_by"].as_object().unwrap();
    assert_eq!(by.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 4);
    assert!(by.keys().all(|k| k == "401" || k == "403"), "{by:?}");
    assert!(run.stdout().contains("failed_by"));
}

#[test]
fn sweep_finds_the_knee() {
    let server = Vienna::start(4, &[]);
    let target = server.sip.to_string();
    // two good steps: the knee is the last one
    let args = [
        "sweep",
        "--start",
        "10",
        "--step",
        "10",
        "--max",
        "20",
        "--pause-ms",
        "0",
        "sip",
        "--target",
        &target,
        "--users",
        "4",
        "--duration",
        "1",
    ];
    let run = vienna_load(&args, None);
    run.assert_success();
    let j = &run.json;
    assert_eq!(j["steps"].as_array().unwrap().len(), 2);
    assert_eq!(j["steps"][0]["rate"], 10.0);
    assert_eq!(j["steps"][0]["report"]["operations"]["ok"], 10);
    assert_eq!(j["steps"][1]["report"]["operations"]["ok"], 20);
    assert_eq!(j["knee_rate"], 20.0);
    assert_eq!(run.value("knee", "rate"), "20");
    // an impossible latency threshold: the first step crosses it, there is no knee
    let args = [
        "sweep",
        "--start",
        "10",
        "--factor",
        "2",
        "--max",
        "40",
        "--max-latency-ms",
        "0.001",
        "--pause-ms",
        "0",
        "sip",
        "--target",
        &target,
        "--users",
        "4",
        "--duration",
        "1",
    ];
    let run = vienna_load(&args, Some("svg"));
    assert_eq!(run.out.status.code(), Some(1));
    assert_eq!(run.json["steps"].as_array().unwrap().len(), 1, "stops at the first bad step");
    assert!(run.json["knee_rate"].is_null());
    assert!(run.json["steps"][0]["crossed"][0].as_str().unwrap().starts_with("p99"));
    assert!(run.report.as_deref().unwrap().contains("<svg"));
}

#[test]
fn message_and_call_over_tcp() {
    let server = Vienna::start(4, &["--set", "sip.tcp=true", "--set", "sip.tcp_port=0"]);
    let target = server.sip_tcp.expect("TCP listener").to_string();
    for (scenario, uas) in [("message", "MESSAGE"), ("call", "BYE")] {
        let run = over_a_stream(&target, &["--transport", "tcp"], scenario);
        let j = &run.json;
        assert_eq!(j["config"]["transport"], "tcp");
        assert_eq!(j["operations"]["ok"], 10, "{scenario}");
        assert_eq!(j["messages"]["uas_requests"][uas], 10, "{scenario}: callees reached over their connections");
        assert_eq!(j["messages"]["retransmissions"], 0, "no retransmission over TCP");
    }
}

#[test]
fn register_and_message_over_tls_checking_the_servers_certificate() {
    let server = Vienna::start(4, &["--set", "sip.tls=true", "--set", "sip.tls_port=0"]);
    let target = server.sip_tls.expect("TLS listener").to_string();
    let ca = server.certificate().display().to_string();
    for (scenario, uas) in [("register", None), ("message", Some("MESSAGE"))] {
        let run = over_a_stream(&target, &["--transport", "tls", "--tls-ca", &ca], scenario);
        let j = &run.json;
        assert_eq!(j["config"]["transport"], "tls");
        assert_eq!(j["operations"]["ok"], 10, "{scenario}: {j}");
        assert_eq!(j["operations"]["failed"], 0, "{scenario}");
        if let Some(method) = uas {
            assert_eq!(j["messages"]["uas_requests"][method], 10, "callees reached over their TLS connections");
        }
    }

    // --tls-no-verify takes the self-signed certificate without a CA.
    let run = over_a_stream(&target, &["--transport", "tls", "--tls-no-verify"], "register");
    assert_eq!(run.json["operations"]["ok"], 10);

    // A certificate authority that did not sign the server's certificate: the handshake fails, nothing runs.
    let other = tempfile::tempdir().expect("temp dir");
    let wrong = other.path().join("other.pem");
    let stranger = Vienna::start(1, &["--set", "sip.tls=true", "--set", "sip.tls_port=0"]);
    std::fs::copy(stranger.certificate(), &wrong).expect("copy a foreign certificate");
    let args = [
        "sip",
        "--target",
        &target,
        "--transport",
        "tls",
        "--tls-ca",
        wrong.to_str().unwrap(),
        "--users",
        "1",
        "--rate",
        "1",
        "--duration",
        "1",
    ];
    let stderr = refused(&args);
    assert!(stderr.contains("TLS handshake"), "the error says why: {stderr}");

    // TLS options without TLS are a mistake, said before any traffic.
    let udp = server.sip.to_string();
    let stderr =
        refused(&["sip", "--target", &udp, "--tls-no-verify", "--users", "1", "--rate", "1", "--duration", "1"]);
    assert!(stderr.contains("need --transport tls"), "{stderr}");
}

/// Runs `scenario` for 4 users at 10/s for a second against `target` with `transport` options; it must
/// succeed.
fn over_a_stream(target: &str, transport: &[&str], scenario: &str) -> common::Run {
    let mut args = vec!["sip", "--target", target];
    args.extend_from_slice(transport);
    args.extend(["--users", "4", "--scenario", scenario, "--rate", "10", "--duration", "1"]);
    let run = vienna_load(&args, None);
    run.assert_success();
    run
}

/// Runs vienna-load expecting it to fail; returns what it wrote to stderr.
fn refused(args: &[&str]) -> String {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_vienna-load")).args(args).output().expect("run vienna-load");
    assert!(!out.status.success(), "vienna-load {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}
