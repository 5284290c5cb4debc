//! Helpers of vienna-load's tests: a real `vienna serve` with SIP users on ephemeral loopback ports, a
//! Kamailio with its presence modules, running `vienna-load` with `--json` and reading its summary.
//! Servers are stopped on drop (by the PID these helpers started, never by name).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long waiting for a server may take.
pub const PATIENCE: Duration = Duration::from_secs(30);

fn target_dir() -> PathBuf {
    // target/<profile>/deps/<test> -> target/<profile>
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

/// The `vienna` binary of this profile.
pub fn vienna_binary() -> PathBuf {
    let path = target_dir().join("vienna");
    assert!(path.exists(), "{} is missing: run `cargo build -p vienna` before these tests", path.display());
    path
}

/// `--set KEY=VALUE` arguments for each of `settings`.
pub fn settings(settings: &[&str]) -> Vec<String> {
    settings.iter().flat_map(|kv| ["--set".to_owned(), (*kv).to_owned()]).collect()
}

/// The relay as these tests run it: UDP only, ephemeral port, loopback peers allowed, no user quota.
pub const RELAY_SETTINGS: &[&str] = &[
    "turn.udp_port=0",
    "turn.tcp=false",
    "turn.tls=false",
    "turn.ms_tcp=false",
    "turn.allowed_peers=[\"127.0.0.0/8\"]",
    "turn.user_quota=0",
];

/// Adds account `name` with `password` to the store in `dir`.
pub fn add_user(dir: &Path, name: &str, password: &str) {
    let mut add = Command::new(vienna_binary())
        .args(["user", "add", name, "--password-stdin", "--data-dir"])
        .arg(dir)
        .env_remove("VIENNA_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn vienna user add");
    add.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()).expect("password");
    assert!(add.wait().expect("user add").success(), "vienna user add {name} failed");
}

/// A `vienna serve` with SIP on UDP (TURN off), killed on drop.
pub struct Vienna {
    child: Child,
    /// SIP UDP listener.
    pub sip: SocketAddr,
    /// SIP TCP listener, when `extra` turned TCP on (`--set sip.tcp=true`).
    pub sip_tcp: Option<SocketAddr>,
    /// SIP TLS listener, when `extra` turned TLS on (`--set sip.tls=true`).
    pub sip_tls: Option<SocketAddr>,
    dir: tempfile::TempDir,
}

impl Vienna {
    /// Starts Vienna with users `user0..user{n-1}` (password `pw-user{i}`) and `extra` settings.
    pub fn start(users: usize, extra: &[&str]) -> Vienna {
        let dir = tempfile::tempdir().expect("temp dir");
        for i in 0..users {
            add_user(dir.path(), &format!("user{i}"), &format!("pw-user{i}"));
        }
        let mut args = settings(&[
            "turn.enabled=false",
            "sip.udp_port=0",
            "sip.tcp=false",
            "sip.tls=false",
            "store.synchronous=normal",
        ]);
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let (mut child, listeners) = serve(dir.path(), &args);
        let (sip, sip_tcp) = (listeners.get("sip/udp").copied(), listeners.get("sip/tcp").copied());
        let sip_tls = listeners.get("sip/tls").copied();
        let Some(sip) = sip else {
            let _ = child.kill();
            panic!("vienna serve has no SIP UDP listener: {listeners:?}");
        };
        Vienna { child, sip, sip_tcp, sip_tls, dir }
    }

    /// The self-signed certificate Vienna generated for its TLS listeners (PEM).
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("tls").join("cert.pem")
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Vienna {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `vienna serve` with its TURN relay on UDP (SIP off), one account alice/secret, loopback peers
/// allowed, no per-user quota, and MRAS tokens minted with [`Relay::MRAS_SECRET`]; killed on drop.
pub struct Relay {
    child: Child,
    /// TURN UDP listener.
    pub turn: SocketAddr,
    /// TURN TCP listener, when `extra` turned it on (`turn.tcp=true`).
    pub turn_tcp: Option<SocketAddr>,
    /// TURN TLS listener, when `extra` turned it on (`turn.tls=true`).
    pub turn_tls: Option<SocketAddr>,
    /// Admin HTTP listener.
    pub admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl Relay {
    /// The `mras.secret` of every relay of these tests.
    pub const MRAS_SECRET: &'static str = "vienna-load test secret, 32 bytes or more";
    /// Its `turn.rest_secrets`.
    pub const REST_SECRET: &'static str = "vienna-load rest secret";

    /// Starts the relay with `extra` settings.
    pub fn start(extra: &[&str]) -> Relay {
        let dir = tempfile::tempdir().expect("temp dir");
        add_user(dir.path(), "alice", "secret");
        let mut args = settings(&[RELAY_SETTINGS, &["sip.enabled=false"]].concat());
        args.extend(["--set".into(), format!("mras.secret={}", Self::MRAS_SECRET)]);
        args.extend(["--set".into(), format!("turn.rest_secrets=[\"{}\"]", Self::REST_SECRET)]);
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let (child, listeners) = serve(dir.path(), &args);
        let (turn, admin) = (listeners.get("turn/udp").copied(), listeners.get("admin/http").copied());
        let (Some(turn), Some(admin)) = (turn, admin) else {
            let mut child = child;
            let _ = child.kill();
            panic!("vienna serve did not log its TURN UDP and admin listeners: {listeners:?}");
        };
        let (turn_tcp, turn_tls) = (listeners.get("turn/tcp").copied(), listeners.get("turn/tls").copied());
        Relay { child, turn, turn_tcp, turn_tls, admin, dir }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The data directory (for `vienna relay-credentials`).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The value of one `/metrics` sample, e.g. `vienna_turn_msturn_send_requests_total`.
    pub fn metric(&self, name: &str) -> f64 {
        let body = http_get(self.admin, "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} not in /metrics"))
    }
}

impl Relay {
    /// Waits until a `/metrics` sample reaches `want` (the workers publish their counters now and
    /// then); returns its last value.
    pub fn metric_at_least(&self, name: &str, want: f64) -> f64 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let v = self.metric(name);
            if v >= want || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `vienna serve` on `dir` with `args` (after an ephemeral admin listener and JSON logs); returns
/// it once it logged "ready", with its listeners by `role/protocol` (the first of each).
pub fn serve(dir: &Path, args: &[String]) -> (Child, std::collections::HashMap<String, SocketAddr>) {
    let mut child = Command::new(vienna_binary())
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .args(["--set", "admin.listen=127.0.0.1:0", "--set", "log.format=json"])
        .args(args)
        .env_remove("VIENNA_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vienna serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
            if v["message"] == "listening" {
                let key = format!(
                    "{}/{}",
                    v["role"].as_str().unwrap_or_default(),
                    v["protocol"].as_str().unwrap_or_default()
                );
                let _ = tx.send((key, v["address"].as_str().unwrap_or_default().to_owned()));
            }
            if v["message"] == "ready" {
                let _ = tx.send(("ready".to_owned(), String::new()));
            }
            // keep reading so the server never blocks on a full pipe
        }
    });
    let mut listeners = std::collections::HashMap::new();
    loop {
        match rx.recv_timeout(PATIENCE) {
            Ok((k, _)) if k == "ready" => break,
            Ok((k, a)) => {
                if let Ok(addr) = a.parse() {
                    listeners.entry(k).or_insert(addr);
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("vienna serve did not log that it is ready; listeners so far: {listeners:?}");
            }
        }
    }
    (child, listeners)
}

/// A `vienna serve` with only the audio MCU (one worker) and the admin API; killed on drop.
pub struct Mcu {
    child: Child,
    /// Admin HTTP listener (the join step).
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Mcu {
    /// Starts the MCU with `extra` settings.
    pub fn start(extra: &[&str]) -> Mcu {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut args = settings(&["sip.enabled=false", "turn.enabled=false", "mcu.enabled=true", "mcu.workers=1"]);
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let (mut child, listeners) = serve(dir.path(), &args);
        let Some(admin) = listeners.get("admin/http").copied() else {
            let _ = child.kill();
            panic!("vienna serve did not log its admin listener: {listeners:?}");
        };
        Mcu { child, admin, _dir: dir }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Mcu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of `GET path` (HTTP/1.1, `Connection: close`).
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect_timeout(&addr, PATIENCE).expect("connect to the admin listener");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    assert!(text.starts_with("HTTP/1.1 200"), "GET {path}: {text}");
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

/// Kamailio 5.6 with `bench/kamailio/load-presence.cfg`, stopped with SIGTERM on drop.
pub struct Kamailio {
    child: Child,
    /// Its UDP address.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Kamailio {
    /// Starts Kamailio on a free port; panics if it is not installed (tools/install-deps.sh installs it).
    pub fn start() -> Kamailio {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("db");
        let status = Command::new("cp")
            .args(["-r", "/usr/share/kamailio/dbtext/kamailio"])
            .arg(&db)
            .status()
            .expect("cp (is kamailio installed? tools/install-deps.sh installs it)");
        assert!(status.success(), "copying Kamailio's db_text tables failed");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let cfg = std::fs::read_to_string(manifest.join("../../bench/kamailio/load-presence.cfg")).expect("cfg");
        let port = vienna_e2e::ports::free_port();
        let cfg = cfg.replace("BENCH_PORT", &port.to_string()).replace("DBDIR", db.to_str().expect("utf-8 path"));
        let cfg_path = dir.path().join("kamailio.cfg");
        std::fs::write(&cfg_path, cfg).expect("write cfg");
        let run = dir.path().join("run");
        std::fs::create_dir(&run).expect("run dir");
        // Debian puts it in /usr/sbin, which a non-login PATH may lack.
        let bin = if Path::new("/usr/sbin/kamailio").exists() { "/usr/sbin/kamailio" } else { "kamailio" };
        let mut child = Command::new(bin)
            .arg("-f")
            .arg(&cfg_path)
            .args(["-DD", "-E", "-m", "64", "-Y"])
            .arg(&run)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kamailio (tools/install-deps.sh installs it)");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Listening on") || line.contains("udp: 127.0.0.1") {
                    let _ = tx.send(());
                }
            }
        });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let _ = rx.recv_timeout(PATIENCE);
        // Wait until it answers OPTIONS (its children are up).
        let probe = UdpSocket::bind("127.0.0.1:0").expect("bind");
        probe.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let me = probe.local_addr().expect("addr");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let opt = format!(
                "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-probe;rport\r\nMax-Forwards: 70\r\n\
                 From: <sip:probe@localhost>;tag=p\r\nTo: <sip:{addr}>\r\nCall-ID: probe@test\r\nCSeq: 1 OPTIONS\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            let _ = probe.send_to(opt.as_bytes(), addr);
            let mut buf = [0u8; 2048];
            if probe.recv_from(&mut buf).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("kamailio exited: {status}");
            }
            assert!(Instant::now() < deadline, "kamailio did not answer on {addr}");
        }
        Kamailio { child, addr, _dir: dir }
    }

    /// Process id of the main process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid we spawned.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a `vienna-load` run left.
pub struct Run {
    /// Exit status and output.
    pub out: Output,
    /// The `--json` result.
    pub json: Value,
    /// The `--report` file's text (SVG or HTML), if asked for.
    pub report: Option<String>,
    _dir: tempfile::TempDir,
}

/// Runs `vienna-load ARGS --json FILE` (and `--report FILE.<ext>` when `report` is given).
pub fn vienna_load(args: &[&str], report: Option<&str>) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("result.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vienna-load"));
    // A sweep's own outputs go before its mode's arguments.
    let split = usize::from(args.first() == Some(&"sweep"));
    let (head, tail) = if split == 1 { args.split_at(1) } else { args.split_at(args.len()) };
    cmd.args(head).arg("--json").arg(&json);
    let report_path = report.map(|ext| dir.path().join(format!("report.{ext}")));
    if let Some(p) = &report_path {
        cmd.arg("--report").arg(p);
    }
    cmd.args(tail);
    let out = cmd.stdin(Stdio::null()).output().expect("run vienna-load");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}); exit {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let report = report_path.map(|p| match p.extension().and_then(|e| e.to_str()) {
        Some("png") => String::from_utf8_lossy(&std::fs::read(&p).expect("report")[..8]).into_owned(),
        _ => std::fs::read_to_string(&p).expect("report"),
    });
    Run { out, json: serde_json::from_str(&text).expect("valid JSON"), report, _dir: dir }
}

impl Run {
    /// Standard output.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    /// Panics with the output unless the run exited 0.
    pub fn assert_success(&self) {
        assert!(
            self.out.status.success(),
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.out.status,
            self.stdout(),
            String::from_utf8_lossy(&self.out.stderr)
        );
    }

    /// The `key=value` pairs of the summary line starting with `topic`.
    pub fn line(&self, topic: &str) -> Vec<(String, String)> {
        let text = self.stdout();
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(topic))
            .unwrap_or_else(|| panic!("no {topic} line in:\n{text}"));
        line.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    /// Value of `key` on the summary line `topic`.
    pub fn value(&self, topic: &str, key: &str) -> String {
        let pairs = self.line(topic);
        pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("no {key} in {pairs:?}"))
    }

    /// Asserts that the summary's numbers equal the JSON's (`json_path` a `/`-separated pointer).
    pub fn same(&self, topic: &str, key: &str, json_path: &str) {
        let text = self.value(topic, key);
        let v = self.json.pointer(json_path).unwrap_or_else(|| panic!("no {json_path} in JSON"));
        let (a, b) = (text.parse::<f64>().expect("number"), v.as_f64().expect("JSON number"));
        assert_eq!(a, b, "{topic} {key} vs {json_path}");
    }

    /// Sum of a timeline field over all rows.
    pub fn timeline_sum(&self, field: &str) -> u64 {
        self.json["timeline"]["rows"].as_array().expect("rows").iter().map(|r| r[field].as_u64().unwrap_or(0)).sum()
    }
}
