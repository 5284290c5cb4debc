//! The TURN relay judged by coturn's own client, `turnutils_uclient`, relaying to `turnutils_peer`
//! (Debian package coturn, installed by the test command). Every load is bounded by message count and a
//! timeout; everything stays on loopback.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vienna_e2e::{Server, add_user};

/// `turnutils_peer`, an echo peer on loopback, killed on drop.
struct EchoPeer(Child, u16);

impl EchoPeer {
    fn start() -> EchoPeer {
        EchoPeer::on("127.0.0.1")
    }

    fn on(ip: &str) -> EchoPeer {
        let port = UdpSocket::bind((ip, 0)).unwrap().local_addr().unwrap().port();
        let child = Command::new("timeout")
            .args(["120", "turnutils_peer", "-L", ip, "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnutils_peer (package coturn) is installed by the test command");
        std::thread::sleep(Duration::from_millis(300));
        EchoPeer(child, port)
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        // SIGTERM to `timeout`, which passes it on to turnutils_peer; SIGKILL would leave the peer behind.
        // SAFETY: kill(2) on a child we spawned and have not reaped; at worst it fails with ESRCH.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

/// Totals turnutils_uclient printed at the end of a run.
#[derive(Debug, Default, PartialEq)]
struct Run {
    sent: u64,
    received: u64,
    lost_line: bool,
    lost: u64,
    allocation_failed: bool,
    /// The last lines uclient printed, for failure messages.
    tail: String,
}

/// Runs `turnutils_uclient` with `args` against `server_port`; returns its totals.
fn uclient(args: &[&str]) -> Run {
    let out = Command::new("timeout")
        .arg("60")
        .arg("turnutils_uclient")
        .args(args)
        .arg("127.0.0.1")
        .output()
        .expect("turnutils_uclient (package coturn) is installed by the test command");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().collect();
    let mut run = Run { tail: lines[lines.len().saturating_sub(8)..].join("\n"), ..Run::default() };
    for line in text.lines() {
        if let Some(rest) = line.split("start_mclient: tot_send_msgs=").nth(1) {
            let mut parts = rest.split(", tot_recv_msgs=");
            run.sent = parts.next().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
            run.received = parts.next().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        }
        if let Some(rest) = line.split("Total lost packets ").nth(1) {
            run.lost_line = true;
            run.lost = rest.split(' ').next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
        }
        if line.contains("Cannot complete Allocation") {
            run.allocation_failed = true;
        }
    }
    run
}

/// `turnutils_uclient` as `creds` (e.g. `["-u", "alice", "-w", "wonderland"]`) through the relay's `port` to the
/// echo peer at `peer_ip`:`peer_port`, one message per client unless `extra` says otherwise.
fn through(port: u16, peer_ip: &str, peer_port: u16, creds: &[&str], extra: &[&str]) -> Run {
    let (port, peer_port) = (port.to_string(), peer_port.to_string());
    let mut args: Vec<&str> = creds.to_vec();
    args.extend(["-p", &port, "-e", peer_ip, "-r", &peer_port, "-c"]);
    args.extend(extra);
    uclient(&args)
}

const ALICE: &[&str] = &["-u", "alice", "-w", "wonderland"];

fn start_relay(dir: &std::path::Path, extra: &[&str]) -> (Server, u16, u16, u16) {
    add_user(dir, "alice", "wonderland");
    let mut args = vec!["--set", "turn.min_port=40000", "--set", "turn.max_port=40999", "--set", "turn.workers=2"];
    // uclient leaves its UDP allocations to expire, so many runs as one user would pass the default quota.
    args.extend(["--set", "turn.user_quota=0"]);
    args.extend_from_slice(extra);
    let mut server = Server::start(dir, &args);
    let port = |server: &mut Server, protocol: &str| server.listener("turn", protocol).port();
    let (udp, tcp, tls) = (port(&mut server, "udp"), port(&mut server, "tcp"), port(&mut server, "tls"));
    (server, udp, tcp, tls)
}

const ALLOW_LOOPBACK: &[&str] = &["--set", "turn.allowed_peers=[\"127.0.0.0/8\"]"];

#[test]
fn uclient_relays_over_udp_tcp_and_tls_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (server, udp, tcp, tls) = start_relay(dir.path(), ALLOW_LOOPBACK);
    let peer = EchoPeer::start();
    for (name, extra, port) in [
        ("udp channels", &[][..], udp),
        ("udp send indications", &["-s"], udp),
        ("tcp channels", &["-t"], tcp),
        ("tls channels", &["-t", "-S"], tls),
    ] {
        let mut args = vec!["-n", "100", "-m", "4", "-l", "172"];
        args.extend(extra);
        let run = through(port, "127.0.0.1", peer.1, ALICE, &args);
        assert!(!run.allocation_failed, "{name}: allocation failed; log:\n{}", server.log_text());
        assert_eq!((run.sent, run.received, run.lost_line, run.lost), (400, 400, true, 0), "{name}: {run:?}");
    }
    // Client to client through the relay (each client's relayed address is the other's peer).
    let port = udp.to_string();
    let run =
        uclient(&["-u", "alice", "-w", "wonderland", "-y", "-n", "50", "-m", "2", "-l", "172", "-c", "-p", &port]);
    assert_eq!((run.sent, run.received, run.lost), (100, 100, 0), "client to client: {run:?}");

    let metrics = server.get("/metrics").body;
    let relayed = metric(&metrics, "vienna_turn_relayed_packets_total{direction=\"client_to_peer\"}");
    assert!(relayed >= 1_700.0, "client_to_peer {relayed} in\n{metrics}");
    assert!(metric(&metrics, "vienna_turn_allocations_created_total") >= 18.0);
}

#[test]
fn wrong_password_and_unknown_user_cannot_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let (server, udp, _, _) = start_relay(dir.path(), ALLOW_LOOPBACK);
    let peer = EchoPeer::start();
    for (user, password) in [("alice", "not-it"), ("mallory", "wonderland")] {
        let run = through(udp, "127.0.0.1", peer.1, &["-u", user, "-w", password], &["-n", "3"]);
        assert!(run.allocation_failed, "{user}/{password} allocated: {run:?}");
    }
    let metrics = server.get("/metrics").body;
    assert!(metric(&metrics, "vienna_turn_auth_failures_total") >= 2.0, "{metrics}");
    assert_eq!(metric(&metrics, "vienna_turn_allocations_created_total"), 0.0);
}

#[test]
fn loopback_peers_are_denied_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (server, udp, _, _) = start_relay(dir.path(), &[]);
    let peer = EchoPeer::start();
    let run = through(udp, "127.0.0.1", peer.1, ALICE, &["-n", "5"]);
    assert_eq!(run.received, 0, "relayed to a loopback peer by default: {run:?}");
    let metrics = server.get("/metrics").body;
    assert!(metric(&metrics, "vienna_turn_responses_total{code=\"403\"}") >= 1.0, "{metrics}");
    assert_eq!(metric(&metrics, "vienna_turn_relayed_packets_total{direction=\"client_to_peer\"}"), 0.0);
}

#[test]
fn rest_api_credentials_from_a_shared_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "north-wind";
    let mut extra = ALLOW_LOOPBACK.to_vec();
    let set = format!("turn.rest_secrets=[\"old-secret\", \"{secret}\"]");
    extra.extend(["--set", &set]);
    let (_server, udp, _, _) = start_relay(dir.path(), &extra);
    let peer = EchoPeer::start();
    // uclient makes "expiry:user" and its HMAC itself from -W; a rotated-out secret still works.
    let run = through(udp, "127.0.0.1", peer.1, &["-u", "bob", "-W", secret], &["-n", "20", "-m", "2"]);
    assert_eq!((run.sent, run.received, run.lost), (40, 40, 0), "REST credentials: {run:?}");
    let run = through(udp, "127.0.0.1", peer.1, &["-u", "bob", "-W", "guessed"], &["-n", "3"]);
    assert!(run.allocation_failed, "wrong secret allocated: {run:?}");
}

#[test]
fn allocations_are_listed_by_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let (server, udp, _, _) = start_relay(dir.path(), ALLOW_LOOPBACK);
    let peer = EchoPeer::start();
    let run = through(udp, "127.0.0.1", peer.1, ALICE, &["-n", "5", "-m", "3"]);
    assert_eq!(run.lost, 0);
    // uclient leaves its UDP allocations to expire; the API lists them until then.
    let list = server.get("/api/v1/allocations").json();
    let list = list.as_array().unwrap();
    assert!(list.len() >= 3, "{list:?}");
    for a in list {
        assert_eq!((a["username"].as_str(), a["transport"].as_str()), (Some("alice"), Some("udp")));
        let relayed: std::net::SocketAddr = a["relayed"][0].as_str().unwrap().parse().unwrap();
        assert!((40000..=40999).contains(&relayed.port()), "relay port range: {relayed}");
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn stunclient_gets_its_reflexive_address() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, udp, _, _) = start_relay(dir.path(), &[]);
    let out = Command::new("timeout")
        .args(["20", "turnutils_stunclient", "-p", &udp.to_string(), "-L", "127.0.0.1", "127.0.0.1"])
        .output()
        .expect("turnutils_stunclient (package coturn) is installed by the test command");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let addr = text
        .lines()
        .find_map(|l| l.split("UDP reflexive addr: ").nth(1))
        .unwrap_or_else(|| panic!("no reflexive address in:\n{text}"));
    let addr: std::net::SocketAddr = addr.trim().parse().unwrap();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
}

/// A small deterministic generator for garbage.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn binding_request(txid: u8) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    m.extend([txid; 12]);
    m
}

#[test]
fn garbage_is_dropped_counted_and_harmless() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let (server, udp, tcp, _) = start_relay(dir.path(), &[]);
    let target: std::net::SocketAddr = format!("127.0.0.1:{udp}").parse().unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut sent = 0;
    for i in 0..300 {
        let len = match i % 6 {
            0 => 1,
            1 => 19,
            2 => 20,
            3 => 4000, // longer than the receive buffer: truncated
            _ => (rng.next() % 1500) as usize,
        };
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        match i % 4 {
            0 if len >= 20 => bytes[..8].copy_from_slice(&[0x00, 0x01, 0xff, 0xf0, 0x21, 0x12, 0xa4, 0x42]), // STUN, bad length
            1 if len >= 4 => bytes[..2].copy_from_slice(&[0x40, 0x01]), // ChannelData on no allocation
            _ => {}
        }
        socket.send_to(&bytes, target).unwrap();
        sent += 1;
    }
    assert_eq!(sent, 300);

    // A stream that is not STUN framing is closed; the relay counts it.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.write_all(&[0xff; 64]).unwrap();
    let mut buf = [0u8; 64];
    assert!(matches!(stream.read(&mut buf), Ok(0) | Err(_)), "connection with garbage framing stays open");

    // Still serving: a Binding request over UDP and over TCP gets its answer.
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answered = false;
    for attempt in 0..10 {
        socket.send_to(&binding_request(attempt), target).unwrap();
        let mut response = [0u8; 1500];
        while let Ok((n, _)) = socket.recv_from(&mut response) {
            if n >= 20 && response[..2] == [0x01, 0x01] && response[8..20] == [attempt; 12] {
                answered = true;
                break;
            }
        }
        if answered {
            break;
        }
    }
    assert!(answered, "no Binding success over UDP after garbage");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.write_all(&binding_request(9)).unwrap();
    let mut header = [0u8; 20];
    stream.read_exact(&mut header).unwrap();
    assert_eq!((&header[..2], &header[8..20]), (&[0x01, 0x01][..], &[9u8; 12][..]), "Binding over TCP");

    let metrics = server.get("/metrics").body;
    let drops = |reason: &str| metric(&metrics, &format!("vienna_turn_dropped_packets_total{{reason=\"{reason}\"}}"));
    assert!(drops("truncated") >= 40.0, "truncated: {metrics}");
    assert!(drops("malformed") + drops("not_stun") + drops("no_allocation") >= 200.0, "{metrics}");
    assert_eq!(drops("stream_framing"), 1.0, "{metrics}");
}

#[test]
fn ipv6_relay_for_an_ipv4_client() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--set", "turn.relay_ipv6=::1", "--set", "turn.allowed_peers=[\"127.0.0.0/8\", \"::1/128\"]"];
    let (server, udp, _, _) = start_relay(dir.path(), &extra);
    let peer = EchoPeer::on("::1");
    // -x: REQUESTED-ADDRESS-FAMILY IPv6.
    let run = through(udp, "::1", peer.1, ALICE, &["-x", "-n", "30", "-m", "2"]);
    assert_eq!((run.sent, run.received, run.lost), (60, 60, 0), "IPv6 relay: {run:?}");
    let list = server.get("/api/v1/allocations").json();
    assert!(list.as_array().unwrap().iter().any(|a| a["relayed"][0].as_str().unwrap().starts_with("[::1]")), "{list}");
}
