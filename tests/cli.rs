//! The command line: user accounts, configuration, help, and one-line errors for bad input.

use std::net::TcpListener;
use std::path::Path;

use vienna_e2e::{add_user, run, stderr, stdout, vienna};

/// Asserts a failed run with a one-line `vienna: error:` message containing `needle`.
fn assert_one_line_error(out: &std::process::Output, needle: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "expected failure, got success; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("vienna: error: ") && last.contains(needle), "want {needle:?} in {err:?}");
    assert_eq!(err.lines().filter(|l| l.contains("error")).count(), 1, "one error line: {err:?}");
}

#[test]
fn user_commands_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run(d, &["user", "add", "alice", "--display-name", "Alice A.", "--password-stdin"], "s3cret\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "added sip:alice@localhost (enabled)");
    add_user(d, "sip:bob@example.org", "pw2");
    let out = run(d, &["user", "add", "carol", "--disabled", "--password-stdin"], "pw3\n");
    assert_eq!(stdout(&out).trim(), "added sip:carol@localhost (disabled)");

    let table = stdout(&run(d, &["user", "list"], ""));
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("URI"), "{table}");
    assert!(rows[1].starts_with("sip:alice@localhost") && rows[1].contains("enabled") && rows[1].ends_with("Alice A."));
    assert!(rows[3].starts_with("sip:carol@localhost") && rows[3].contains("disabled"));

    let json: serde_json::Value = serde_json::from_str(&stdout(&run(d, &["user", "list", "--json"], ""))).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    assert_eq!(json[0]["display_name"], "Alice A.");
    assert_eq!(json[0]["realm"], "localhost");

    let out = run(d, &["user", "set", "carol", "--enabled", "true", "--display-name", "Carol"], "");
    assert_eq!(stdout(&out).trim(), "updated sip:carol@localhost (enabled)");
    let carol: serde_json::Value = serde_json::from_str(&stdout(&run(d, &["user", "show", "carol"], ""))).unwrap();
    assert_eq!((carol["display_name"].as_str(), carol["enabled"].as_bool()), (Some("Carol"), Some(true)));

    let out = run(d, &["user", "passwd", "alice", "--password-stdin"], "n3w\n");
    assert_eq!(stdout(&out).trim(), "password of sip:alice@localhost changed");

    let out = run(d, &["user", "remove", "sip:bob@example.org"], "");
    assert_eq!(stdout(&out).trim(), "removed sip:bob@example.org");
    let json: serde_json::Value = serde_json::from_str(&stdout(&run(d, &["user", "list", "--json"], ""))).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);

    // Nothing secret lands in the store file as text.
    let db = std::fs::read(d.join("vienna.db")).unwrap();
    let wal = std::fs::read(d.join("vienna.db-wal")).unwrap_or_default();
    for secret in [&b"s3cret"[..], b"n3w", b"pw3"] {
        assert!(!db.windows(secret.len()).any(|w| w == secret), "password stored in the clear");
        assert!(!wal.windows(secret.len()).any(|w| w == secret), "password in the WAL");
    }
}

#[test]
fn user_command_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "alice", "pw");
    assert_one_line_error(&run(d, &["user", "add", "alice", "--password-stdin"], "pw\n"), "already exists");
    assert_one_line_error(&run(d, &["user", "add", "dave", "--password-stdin"], "\n"), "empty password");
    assert_one_line_error(&run(d, &["user", "add", "dave"], ""), "--password-stdin");
    assert_one_line_error(&run(d, &["user", "add", "sip:a b@x", "--password-stdin"], "pw\n"), "not allowed");
    assert_one_line_error(&run(d, &["user", "remove", "ghost"], ""), "not found");
    assert_one_line_error(&run(d, &["user", "passwd", "ghost", "--password-stdin"], "pw\n"), "not found");
    assert_one_line_error(&run(d, &["user", "set", "alice"], ""), "nothing to change");
    let long = format!("{}\n", "x".repeat(2000));
    assert_one_line_error(&run(d, &["user", "add", "erin", "--password-stdin"], &long), "longer than");
}

#[test]
fn conference_commands_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "alice", "pw");
    let out = run(d, &["conference", "add", "alice", "--subject", "Daily", "--id", "DAILY0001"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let added: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(added["conference"]["organizer"], "sip:alice@localhost");
    assert_eq!(added["uris"]["dial_in"], "sip:conf-DAILY0001@localhost");
    assert_eq!(added["uris"]["focus"], "sip:alice@localhost;gruu;opaque=app:conf:focus:id:DAILY0001");
    let random = run(d, &["conference", "add", "alice"], "");
    assert!(random.status.success(), "{}", stderr(&random));
    let list: serde_json::Value = serde_json::from_str(&stdout(&run(d, &["conference", "list"], ""))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_one_line_error(&run(d, &["conference", "add", "alice", "--id", "DAILY0001"], ""), "exists");
    assert_one_line_error(&run(d, &["conference", "add", "alice", "--id", "no"], ""), "8 to 32");
    assert_one_line_error(&run(d, &["conference", "add", "ghost"], ""), "no account");
    assert!(run(d, &["conference", "remove", "DAILY0001"], "").status.success());
    assert_one_line_error(&run(d, &["conference", "remove", "DAILY0001"], ""), "no conference");
}

#[test]
fn config_default_is_complete_and_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["config", "default"], "");
    assert!(out.status.success());
    let text = stdout(&out);
    for section in ["[server]", "[log]", "[store]", "[tls]", "[admin]"] {
        assert!(text.contains(section), "{section} missing");
    }
    assert!(text.lines().filter(|l| l.starts_with('#')).count() > 20, "commented");
    let file = dir.path().join("vienna.toml");
    std::fs::write(&file, &text).unwrap();
    let shown = run(
        dir.path(),
        &["--config", file.to_str().unwrap(), "config", "show", "--set", "server.domain=example.net"],
        "",
    );
    assert!(shown.status.success(), "{}", stderr(&shown));
    let effective: toml_like::Doc = toml_like::parse(&stdout(&shown));
    assert_eq!(effective.get("server", "domain"), Some("\"example.net\""));
    assert_eq!(effective.get("admin", "listen"), Some("\"127.0.0.1:9464\""));
}

/// Just enough TOML reading for `config show` output (flat sections of `key = value`).
mod toml_like {
    pub struct Doc(Vec<(String, String, String)>);
    pub fn parse(text: &str) -> Doc {
        let mut section = String::new();
        let mut out = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.to_owned();
            } else if let Some((k, v)) = line.split_once(" = ") {
                out.push((section.clone(), k.to_owned(), v.to_owned()));
            }
        }
        Doc(out)
    }
    impl Doc {
        pub fn get(&self, section: &str, key: &str) -> Option<&str> {
            self.0.iter().find(|(s, k, _)| s == section && k == key).map(|(_, _, v)| v.as_str())
        }
    }
}

#[test]
fn version_and_help_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["--version"], "");
    assert_eq!(stdout(&out).trim(), format!("vienna {}", env!("CARGO_PKG_VERSION")));
    for cmd in [
        &["--help"][..],
        &["serve", "--help"],
        &["config", "--help"],
        &["config", "default", "--help"],
        &["config", "show", "--help"],
        &["user", "--help"],
        &["user", "add", "--help"],
        &["user", "list", "--help"],
        &["user", "show", "--help"],
        &["user", "set", "--help"],
        &["user", "passwd", "--help"],
        &["user", "remove", "--help"],
        &["conference", "--help"],
        &["conference", "add", "--help"],
    ] {
        let out = run(dir.path(), cmd, "");
        assert!(out.status.success() && stdout(&out).contains("Usage: vienna"), "{cmd:?}: {}", stderr(&out));
    }
    assert!(stdout(&run(dir.path(), &["serve", "--help"], "")).contains("--set <SECTION.KEY=VALUE>"));
}

#[test]
fn bad_configuration_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bad = d.join("bad.toml");
    std::fs::write(&bad, "[admin]\nlisten = \n").unwrap();
    let cfg = bad.to_str().unwrap();
    assert_one_line_error(&run(d, &["--config", cfg, "serve"], ""), "bad.toml: line 2");
    std::fs::write(&bad, "[admin]\nlisten = \"127.0.0.1:1\"\ncolour = \"blue\"\n").unwrap();
    assert_one_line_error(&run(d, &["--config", cfg, "serve"], ""), "unknown field `colour`");
    assert_one_line_error(&run(d, &["--config", "/nonexistent/v.toml", "serve"], ""), "cannot read config file");
    assert_one_line_error(&run(d, &["serve", "--set", "admin.lisen=127.0.0.1:0"], ""), "unknown field `lisen`");
    assert_one_line_error(&run(d, &["serve", "--set", "admin.listen=nowhere"], ""), "admin.listen=nowhere");
    assert_one_line_error(&run(d, &["serve", "--set", "admin.listen=0.0.0.0:0"], ""), "admin.token");
}

#[test]
fn port_in_use_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let args = [
        "serve",
        "--set",
        &format!("admin.listen={addr}"),
        "--set",
        "turn.enabled=false",
        "--set",
        "sip.enabled=false",
    ];
    let out = run(dir.path(), &args, "");
    assert_one_line_error(&out, &format!("admin: cannot bind http on {addr}"));
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
}

#[test]
fn unusable_data_dir_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where a directory should be: unwritable even for root.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let data = file.join("data");
    let out = vienna(&data).args(["serve", "--set", "admin.listen=127.0.0.1:0"]).output().unwrap();
    assert_one_line_error(&out, "cannot create data directory");
    let out = vienna(&data).args(["user", "list"]).output().unwrap();
    assert_one_line_error(&out, "cannot create data directory");
    // A store file that is not a database.
    let garbage = dir.path().join("garbage");
    std::fs::create_dir(&garbage).unwrap();
    std::fs::write(garbage.join("vienna.db"), vec![7u8; 4096]).unwrap();
    let out = vienna(Path::new(&garbage)).args(["user", "list"]).output().unwrap();
    assert_one_line_error(&out, "vienna.db");
}

#[test]
fn turn_port_in_use_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = run(
        dir.path(),
        &[
            "serve",
            "--set",
            "admin.listen=127.0.0.1:0",
            "--set",
            &format!("turn.udp_port={port}"),
            "--set",
            "turn.tcp_port=0",
            "--set",
            "turn.tls_port=0",
            "--set",
            "sip.enabled=false",
        ],
        "",
    );
    assert_one_line_error(&out, &format!("turn: cannot bind udp on 127.0.0.1:{port}"));
}

#[test]
fn sip_port_in_use_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let args = [
        "serve",
        "--set",
        "admin.listen=127.0.0.1:0",
        "--set",
        "turn.enabled=false",
        "--set",
        "sip.udp_port=0",
        "--set",
        &format!("sip.tcp_port={port}"),
        "--set",
        "sip.tls_port=0",
    ];
    let out = run(dir.path(), &args, "");
    assert_one_line_error(&out, &format!("sip: cannot bind tcp on 127.0.0.1:{port}"));
}
