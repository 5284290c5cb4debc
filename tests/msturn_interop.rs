//! MS-TURN judged by a real client: libnice (Debian libnice-dev, installed by the test command) in its
//! OC2007R2 and OC2007 compatibility modes, driven headless by `tools/msturn-client/nice_relay_check.c`,
//! with credentials from Vienna's own MRAS service (`vienna relay-credentials`); and the MRAS service
//! over SIP, judged by SIPp (a Digest-authenticated SERVICE to the MRAS URI). Everything runs on
//! loopback, every run is bounded by a timeout inside the client and another around it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use vienna_e2e::{Server, add_user, run, stderr, stdout};

/// The driver, compiled once per test binary with gcc and pkg-config's flags for libnice.
fn driver() -> &'static Path {
    static DRIVER: OnceLock<PathBuf> = OnceLock::new();
    DRIVER.get_or_init(|| {
        let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/msturn-client/nice_relay_check.c");
        let out = std::env::temp_dir().join(format!("vienna-nice-relay-check-{}", std::process::id()));
        let flags = Command::new("pkg-config")
            .args(["--cflags", "--libs", "nice", "glib-2.0"])
            .output()
            .expect("pkg-config is installed by the test command");
        assert!(flags.status.success(), "libnice-dev is installed by the test command: {}", stderr(&flags));
        let flags = stdout(&flags);
        let status = Command::new("gcc")
            .args(["-Wall", "-o"])
            .arg(&out)
            .arg(&source)
            .args(flags.split_whitespace())
            .status()
            .expect("gcc is installed by the test command");
        assert!(status.success(), "cannot build {}", source.display());
        out
    })
}

/// The relay with loopback peers allowed (the peer agent is on 127.0.0.1), one worker.
fn start(dir: &Path) -> Server {
    Server::start(
        dir,
        &["--set", "turn.allowed_peers=[\"127.0.0.0/8\"]", "--set", "turn.workers=1", "--set", "sip.enabled=false"],
    )
}

/// MRAS credentials for alice, as the MRAS XML carries them (base64 username and password).
fn mras_credentials(dir: &Path) -> (String, String) {
    let out = run(dir, &["relay-credentials", "sip:alice@localhost", "--duration", "10"], "");
    assert!(out.status.success(), "relay-credentials: {}", stderr(&out));
    let xml = stdout(&out);
    let pick = |tag: &str| {
        let open = format!("<{tag}>");
        let start = xml.find(&open).unwrap_or_else(|| panic!("no {tag} in {xml}")) + open.len();
        let end = xml[start..].find('<').unwrap() + start;
        xml[start..end].to_string()
    };
    assert!(xml.contains("reasonPhrase=\"OK\""), "{xml}");
    assert_eq!(pick("duration"), "10");
    (pick("username"), pick("password"))
}

/// Runs the driver; returns (success, output).
fn nice(mode: &str, transport: &str, port: u16, creds: &(String, String), count: u32) -> (bool, String) {
    let out = Command::new("timeout")
        .arg("40")
        .arg(driver())
        .args([mode, transport, "127.0.0.1", &port.to_string(), &creds.0, &creds.1, &count.to_string(), "25"])
        .output()
        .expect("run the libnice driver");
    let text = format!("{}{}", stdout(&out), stderr(&out));
    (out.status.success(), text)
}

fn metric(server: &Server, name: &str) -> f64 {
    let body = server.get("/metrics").body;
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[test]
fn libnice_oc2007r2_relays_data_over_udp_with_mras_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let udp = server.listener("turn", "udp").port();
    let creds = mras_credentials(dir.path());
    let (ok, out) = nice("OC2007R2", "UDP", udp, &creds, 5);
    assert!(ok, "libnice did not relay through Vienna:\n{out}\n{}", server.log_text());
    assert!(out.contains("typ relay") && out.contains("### result ok: 5 of 5 echoes"), "{out}");
    server.wait_log(|l| l["message"] == "turn: allocation created" && l["transport"] == "udp");
    assert!(metric(&server, "vienna_turn_dialect_allocations_created_total{dialect=\"msturn\"}") >= 1.0);
    // ICE checks through the relay: Send requests out, Data Indications back.
    assert!(metric(&server, "vienna_turn_msturn_send_requests_total") >= 1.0);
    assert!(metric(&server, "vienna_turn_msturn_data_indications_total") >= 1.0);
    // The five pings and their echoes.
    assert!(
        metric(&server, "vienna_turn_dialect_relayed_packets_total{dialect=\"msturn\",direction=\"client_to_peer\"}")
            >= 5.0
    );
    assert!(
        metric(&server, "vienna_turn_dialect_relayed_packets_total{dialect=\"msturn\",direction=\"peer_to_client\"}")
            >= 5.0
    );
    assert_eq!(metric(&server, "vienna_turn_msturn_auth_failures_total"), 0.0);
}

#[test]
fn libnice_oc2007_relays_data_over_udp() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let udp = server.listener("turn", "udp").port();
    let creds = mras_credentials(dir.path());
    let (ok, out) = nice("OC2007", "UDP", udp, &creds, 3);
    assert!(ok, "{out}\n{}", server.log_text());
    assert!(out.contains("### result ok: 3 of 3 echoes"), "{out}");
}

#[test]
fn libnice_oc2007r2_relays_data_over_tcp_and_pseudo_tls() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let tcp = server.listener("turn", "tcp").port();
    let ms_tcp = server.listener("turn", "ms-tcp").port();
    let creds = mras_credentials(dir.path());
    // TCP with the MS-TURN framing (02/03 00 len16) on the ordinary TCP port. libnice then offers TCP
    // relayed candidates: the relay accepts the peer's ICE-TCP connection on the relayed address and
    // opens one to the peer's passive candidate.
    let (ok, out) = nice("OC2007R2", "TCP", tcp, &creds, 3);
    assert!(ok, "no relaying over TCP:\n{out}\n{}", server.log_text());
    assert!(out.contains("TCP") && out.contains("typ relay") && out.contains("### result ok: 3 of 3 echoes"), "{out}");
    server.wait_log(|l| l["message"] == "turn: allocation created" && l["transport"] == "tcp");
    // libnice's "TLS" relay: the pseudo-TLS hello on the MS-TURN TCP port, then the same framing.
    let (ok, out) = nice("OC2007R2", "TLS", ms_tcp, &creds, 3);
    assert!(ok, "no relaying over pseudo-TLS:\n{out}\n{}", server.log_text());
    assert!(out.contains("### result ok: 3 of 3 echoes"), "{out}");
    assert!(metric(&server, "vienna_turn_msturn_pseudo_tls_handshakes_total") >= 1.0);
    assert!(metric(&server, "vienna_turn_msturn_stream_clients_total") >= 2.0);
    assert!(metric(&server, "vienna_turn_dialect_allocations_created_total{dialect=\"msturn\"}") >= 2.0);
    assert!(metric(&server, "vienna_turn_msturn_active_destinations_total") >= 2.0);
}

#[test]
fn libnice_allocates_with_pseudo_tls_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let ms_tcp = server.listener("turn", "ms-tcp").port();
    let creds = mras_credentials(dir.path());
    let (ok, out) = nice("OC2007", "TLS", ms_tcp, &creds, 0);
    assert!(ok && out.contains("### relayed"), "no allocation over pseudo-TLS (OC2007):\n{out}\n{}", server.log_text());
}

#[test]
fn libnice_with_a_wrong_password_gets_no_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let udp = server.listener("turn", "udp").port();
    let (user, _) = mras_credentials(dir.path());
    let (ok, out) = nice("OC2007R2", "UDP", udp, &(user, "c2VjcmV0LXBhc3N3b3Jk".into()), 0);
    assert!(!ok && !out.contains("### relayed"), "{out}");
    assert!(metric(&server, "vienna_turn_msturn_auth_failures_total") >= 1.0);
    assert_eq!(metric(&server, "vienna_turn_dialect_allocations_created_total{dialect=\"msturn\"}"), 0.0);
}

#[test]
fn sipp_gets_mras_credentials_with_a_service_request() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "alice", "alice-secret");
    // SIPp answers only MD5 and reads the first challenge.
    let mut server = Server::start(dir.path(), &["--set", "sip.digest_algorithms=[\"MD5\", \"SHA-256\"]"]);
    let sip = server.listener("sip", "udp");
    let port = vienna_e2e::ports::free_port();
    let scenario = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sipp/mras-service.xml");
    let errors = dir.path().join("mras-errors.log");
    let out = Command::new("timeout")
        .arg("40")
        .arg("sipp")
        .arg(sip.to_string())
        .arg("-sf")
        .arg(&scenario)
        .args(["-m", "1", "-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin", "-timeout", "30"])
        .args(["-key", "domain", "localhost", "-s", "alice", "-au", "alice", "-ap", "alice-secret"])
        .arg("-trace_err")
        .arg("-error_file")
        .arg(&errors)
        .current_dir(dir.path())
        .output()
        .expect("sipp (package sip-tester) is installed by the test command");
    assert!(
        out.status.success(),
        "MRAS over SIP failed: {}\n{}\n{}",
        std::fs::read_to_string(&errors).unwrap_or_default(),
        stdout(&out),
        server.log_text()
    );
    server.wait_log(|l| l["message"] == "mras: credentials issued" && l["requester"] == "sip:alice@localhost");
}
