//! `vienna serve` as a user runs it: listeners, admin API, metrics, signals, restarts and crashes.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use vienna_e2e::{Server, add_user, http_get, run, stderr};

#[test]
fn fresh_data_dir_serves_health_metrics_and_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vienna-data");
    let server = Server::start(&data, &[]);

    // What the first start creates.
    assert!(data.join("vienna.db").exists(), "store file");
    let key = data.join("tls/key.pem");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600, "private key mode");
    assert!(std::fs::read_to_string(data.join("tls/cert.pem")).unwrap().contains("BEGIN CERTIFICATE"));
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700, "data dir mode");

    let health = server.get("/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));

    assert_eq!(server.get("/healthz").status, 200);
    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain"));
    for needle in [
        "vienna_build_info{version=\"",
        "vienna_uptime_seconds ",
        "vienna_accounts 0",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        // The /healthz requests above were counted.
        "vienna_admin_requests_total{route=\"/healthz\",status=\"200\"} 2",
    ] {
        assert!(metrics.body.contains(needle), "{needle:?} missing from /metrics:\n{}", metrics.body);
    }

    let status = server.get("/api/v1/status").json();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["domain"], "localhost");
    let listeners: Vec<(String, String)> = status["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["role"].as_str().unwrap().to_owned(), l["protocol"].as_str().unwrap().to_owned()))
        .collect();
    let expected = [
        ("sip", "udp"),
        ("sip", "tcp"),
        ("sip", "tls"),
        ("turn", "udp"),
        ("turn", "tcp"),
        ("turn", "ms-tcp"),
        ("turn", "tls"),
        ("mcu", "udp"),
        ("admin", "http"),
    ];
    assert_eq!(listeners, expected.map(|(r, p)| (r.to_owned(), p.to_owned())));
    assert_eq!(status["listeners"][8]["address"], server.admin.to_string());
    assert!(!status["not_built"].as_array().unwrap().is_empty(), "unbuilt roles are listed as such");

    let missing = server.get("/api/v1/nothing-here");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].is_string());
    assert_eq!(server.get("/api/v1/accounts/sip:ghost@localhost").status, 404);
    assert_eq!(server.get("/api/v1/accounts/not%20a%20uri").status, 400);
    assert_eq!(server.get("/api/v1/registrations").json(), serde_json::json!([]));
    assert_eq!(server.get("/api/v1/conferences").json(), serde_json::json!([]));
    assert_eq!(server.get("/api/v1/allocations").json(), serde_json::json!([]));
    assert!(metrics.body.contains("vienna_turn_allocations 0"), "TURN metrics exported");
}

#[test]
fn accounts_added_while_running_are_served_and_never_expose_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    add_user(dir.path(), "alice", "correct horse");
    add_user(dir.path(), "sip:bob@example.org", "battery staple");

    let accounts = server.get("/api/v1/accounts");
    assert_eq!(accounts.status, 200);
    let list = accounts.json();
    let uris: Vec<&str> = list.as_array().unwrap().iter().map(|a| a["uri"].as_str().unwrap()).collect();
    assert_eq!(uris, ["sip:alice@localhost", "sip:bob@example.org"]);
    let one = server.get("/api/v1/accounts/alice").json();
    assert_eq!(one["account"]["uri"], "sip:alice@localhost");
    for text in [&accounts.body, &server.get("/api/v1/accounts/alice").body] {
        for secret in ["ha1", "nt_hash", "password", "correct horse"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
    assert!(server.get("/metrics").body.contains("vienna_accounts 2"));
}

#[test]
fn sigterm_and_sigint_shut_down_cleanly() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path(), &[]);
        let status = server.stop_with(sig);
        assert!(status.success(), "signal {sig}: exit {status}");
        // The WAL was checkpointed into the main file at shutdown.
        let wal = dir.path().join("vienna.db-wal");
        assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0, "WAL left behind after signal {sig}");
    }
}

#[test]
fn shutdown_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let pid = server.pid();
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let line = server.wait_log(|l| l["message"] == "shutting down");
    assert_eq!(line["signal"], "SIGTERM");
    server.wait_log(|l| l["message"] == "stopped");
}

#[test]
fn accounts_survive_restart_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path(), &[]);
    for i in 0..20 {
        add_user(dir.path(), &format!("user{i}"), "pw");
    }
    let out = run(dir.path(), &["user", "set", "user3", "--display-name", "Three", "--enabled", "false"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    // SIGKILL: no shutdown, no flush, no checkpoint.
    let status = first.stop_with(libc::SIGKILL);
    assert!(!status.success());

    let second = Server::start(dir.path(), &[]);
    let list = second.get("/api/v1/accounts").json();
    assert_eq!(list.as_array().unwrap().len(), 20, "{list}");
    let three = second.get("/api/v1/accounts/user3").json();
    assert_eq!(
        (three["account"]["display_name"].as_str(), three["account"]["enabled"].as_bool()),
        (Some("Three"), Some(false))
    );
    let status = second.stop_with(libc::SIGTERM);
    assert!(status.success());

    let third = Server::start(dir.path(), &[]);
    assert_eq!(third.get("/api/v1/accounts").json().as_array().unwrap().len(), 20);
}

#[test]
fn admin_over_tls_uses_the_generated_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--set", "admin.tls=true"]);
    let cert = dir.path().join("tls/cert.pem");
    // curl verifies the chain and the 127.0.0.1 name against the generated certificate.
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20", "--cacert"])
        .arg(&cert)
        .arg(format!("https://127.0.0.1:{}/healthz", server.admin.port()))
        .output()
        .expect("curl is installed by the test command");
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = std::panic::catch_unwind(|| http_get(server.admin, "/healthz", &[]));
    assert!(plain.is_err() || plain.unwrap().status != 200);
}

#[test]
fn api_token_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--set", "admin.token=t0ken"]);
    let denied = server.get("/api/v1/accounts");
    assert_eq!(denied.status, 401);
    assert_eq!(denied.header("www-authenticate"), Some("Bearer"));
    assert_eq!(http_get(server.admin, "/api/v1/accounts", &["Authorization: Bearer wrong"]).status, 401);
    assert_eq!(http_get(server.admin, "/api/v1/accounts", &["Authorization: Bearer t0ken"]).status, 200);
    assert_eq!(server.get("/healthz").status, 200, "health stays open");
    assert_eq!(server.get("/metrics").status, 200, "metrics stay open");
}

#[test]
fn configured_certificate_is_used_instead_of_generating_one() {
    let dir = tempfile::tempdir().unwrap();
    // Make a certificate with a first run, move it out, and point the config at it.
    let seed = dir.path().join("seed");
    Server::start(&seed, &[]).stop_with(libc::SIGTERM);
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::rename(seed.join("tls/cert.pem"), &cert).unwrap();
    std::fs::rename(seed.join("tls/key.pem"), &key).unwrap();
    let data = dir.path().join("data");
    let set_cert = format!("tls.certificate={}", cert.display());
    let set_key = format!("tls.private_key={}", key.display());
    let server = Server::start(&data, &["--set", &set_cert, "--set", &set_key, "--set", "admin.tls=true"]);
    assert!(!data.join("tls").exists(), "no certificate generated when one is configured");
    let out = Command::new("curl")
        .args(["--silent", "--max-time", "20", "--cacert"])
        .arg(&cert)
        .arg(format!("https://127.0.0.1:{}/healthz", server.admin.port()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

#[test]
fn turn_sip_and_mcu_can_be_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--set", "turn.enabled=false", "--set", "sip.enabled=false", "--set", "mcu.enabled=false"],
    );
    let status = server.get("/api/v1/status").json();
    assert_eq!(status["listeners"].as_array().unwrap().len(), 1, "admin only: {status}");
    assert_eq!(server.get("/api/v1/allocations").status, 404);
    assert_eq!(server.get("/api/v1/sip").status, 404);
    assert!(server.log_text().contains("turn relay disabled by configuration"));
    assert!(server.log_text().contains("sip registrar and proxy disabled by configuration"));
    assert!(server.log_text().contains("audio mcu disabled by configuration"));
}
