//! Two baresip user agents (Debian package baresip, installed by the test command) register with their
//! passwords through Vienna, exchange a MESSAGE, and hold an Opus call with SRTP (SDES,
//! `mediaenc=srtp-mand`) routed by Vienna's proxy. baresip is driven headless: commands go in over its
//! `ctrl_tcp` module (netstrings of JSON), and what it shows the user comes out of its `cons` console.
//! Everything stays on loopback; each baresip runs with `-t` (a time limit) and is killed at the end.
//!
//! baresip 1.0 (libre) gives up on a REGISTER when any challenge names an algorithm it does not know, so
//! Vienna offers MD5 only here (`sip.digest_algorithms = ["MD5"]`).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vienna_e2e::{PATIENCE, Server, add_user};

/// A port free on loopback for both UDP and TCP (baresip binds both for SIP).
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The first port of `n` consecutive UDP ports that are free on loopback (for baresip's RTP).
fn free_udp_range(n: u16) -> u16 {
    loop {
        let first = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if first > u16::MAX - n {
            continue;
        }
        if (first..first + n).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok()) {
            return first;
        }
    }
}

/// One headless baresip user agent with its own configuration directory.
struct Agent {
    name: String,
    dir: PathBuf,
    child: Child,
    ctrl: SocketAddr,
    console: SocketAddr,
}

impl Agent {
    /// Writes the configuration of `user` (password `password`, proxy `proxy`) and starts baresip.
    fn start(root: &Path, user: &str, password: &str, proxy: SocketAddr, peer: &str) -> Agent {
        let dir = root.join(user);
        std::fs::create_dir_all(&dir).unwrap();
        let (sip, ctrl, console) = (free_port(), free_port(), free_port());
        let rtp = free_udp_range(10);
        let config = format!(
            "sip_listen 127.0.0.1:{sip}\nnet_interface 127.0.0.1\ndns_server 127.0.0.1:53\n\
             audio_player aufile,/dev/null\naudio_source ausine,440\naudio_alert aufile,/dev/null\n\
             rtp_ports {rtp}-{}\nmodule_path /usr/lib/baresip/modules\n\
             module g711.so\nmodule opus.so\nmodule ausine.so\nmodule aufile.so\nmodule srtp.so\n\
             module_tmp uuid.so\nmodule_tmp account.so\n\
             module_app contact.so\nmodule_app menu.so\nmodule_app ctrl_tcp.so\nmodule_app cons.so\n\
             ctrl_tcp_listen 127.0.0.1:{ctrl}\ncons_listen 127.0.0.1:{console}\n",
            rtp + 9
        );
        std::fs::write(dir.join("config"), config).unwrap();
        let account = format!(
            "<sip:{user}@localhost>;auth_pass={password};outbound=\"sip:{proxy};transport=udp\";regint=600;\
             answermode=auto;mediaenc=srtp-mand;audio_codecs=opus/48000/2\n"
        );
        std::fs::write(dir.join("accounts"), account).unwrap();
        std::fs::write(dir.join("contacts"), format!("\"{peer}\" <sip:{peer}@localhost>\n")).unwrap();
        let log = std::fs::File::create(dir.join("stdout.log")).unwrap();
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .args(["-t", "60"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("baresip (package baresip) is installed by the test command");
        Agent {
            name: user.into(),
            dir,
            child,
            ctrl: SocketAddr::from(([127, 0, 0, 1], ctrl)),
            console: SocketAddr::from(([127, 0, 0, 1], console)),
        }
    }

    /// What baresip printed so far.
    fn output(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.join("stdout.log")).unwrap_or_default()).into_owned()
    }

    /// Connects to `addr` of this agent, retrying while baresip starts.
    fn connect(&self, addr: SocketAddr) -> TcpStream {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match TcpStream::connect(addr) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                    return s;
                }
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => panic!("{}: cannot reach baresip at {addr}: {e}\n{}", self.name, self.output()),
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// baresip's `ctrl_tcp` connection: commands out, responses and events in (netstrings of JSON).
struct Control {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Control {
    fn send(&mut self, command: &str, params: &str) {
        let json = serde_json::json!({ "command": command, "params": params, "token": command }).to_string();
        self.stream.write_all(format!("{}:{json},", json.len()).as_bytes()).unwrap();
    }

    /// Reads messages until one matches `want`; panics with `context()` after [`PATIENCE`].
    fn wait(&mut self, want: impl Fn(&Value) -> bool, context: impl Fn() -> String) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            while let Some(message) = self.next_message() {
                if want(&message) {
                    return message;
                }
            }
            assert!(Instant::now() < deadline, "no matching baresip control message in time\n{}", context());
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("baresip closed its control connection\n{}", context()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("baresip control connection: {e}\n{}", context()),
            }
        }
    }

    /// The next complete netstring in the buffer, parsed.
    fn next_message(&mut self) -> Option<Value> {
        let colon = self.buf.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&self.buf[..colon]).ok()?.parse().ok()?;
        if self.buf.len() < colon + 1 + len + 1 {
            return None;
        }
        let value = serde_json::from_slice(&self.buf[colon + 1..colon + 1 + len]).unwrap_or(Value::Null);
        self.buf.drain(..colon + 1 + len + 1);
        Some(value)
    }
}

/// Reads baresip's console until it holds `needle`; panics with `context()` after [`PATIENCE`].
fn wait_console(console: &mut TcpStream, needle: &str, context: impl Fn() -> String) -> String {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "console never showed {needle:?}; it showed {text:?}\n{}", context());
        let mut chunk = [0u8; 4096];
        match console.read(&mut chunk) {
            Ok(0) => panic!("baresip closed its console\n{}", context()),
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("baresip console: {e}\n{}", context()),
        }
    }
}

/// Waits until `n` registrations are in Vienna's admin API.
fn wait_registrations(server: &Server, n: usize, context: impl Fn() -> String) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let regs = server.get("/api/v1/registrations").json();
        if regs.as_array().is_some_and(|r| r.len() == n) {
            return;
        }
        assert!(Instant::now() < deadline, "expected {n} registrations, have {regs}\n{}", context());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_baresip_agents_register_exchange_a_message_and_hold_an_srtp_opus_call() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    add_user(&data, "alice", "alice-secret");
    add_user(&data, "bob", "bob-secret");
    let mut server = Server::start(&data, &["--set", "turn.enabled=false", "--set", "sip.digest_algorithms=[\"MD5\"]"]);
    let proxy = server.listener("sip", "udp");

    let bob = Agent::start(dir.path(), "bob", "bob-secret", proxy, "alice");
    let alice = Agent::start(dir.path(), "alice", "alice-secret", proxy, "bob");
    let context = || {
        format!(
            "--- alice ---\n{}\n--- bob ---\n{}\n--- vienna ---\n{}",
            alice.output(),
            bob.output(),
            server.log_text()
        )
    };
    let mut bob_console = bob.connect(bob.console);
    let mut control = Control { stream: alice.connect(alice.ctrl), buf: Vec::new() };
    // Both registered with Digest (the 401 round trip is in the registrar's counters).
    wait_registrations(&server, 2, context);
    let accounts = server.get("/api/v1/registrations").json();
    let mut aors: Vec<&str> = accounts.as_array().unwrap().iter().map(|r| r["aor"].as_str().unwrap()).collect();
    aors.sort_unstable();
    assert_eq!(aors, ["sip:alice@localhost", "sip:bob@localhost"]);

    // MESSAGE to the current contact (bob): challenged with 407, sent again with credentials, routed to
    // bob's registered contact, shown on bob's console.
    control.send("message", "hello-from-alice");
    control.wait(|m| m["response"] == true && m["token"] == "message", context);
    let shown = wait_console(&mut bob_console, "hello-from-alice", context);
    assert!(shown.contains("sip:alice@localhost"), "{shown}");

    // A call: bob answers by itself; SDES-keyed SRTP and Opus on both sides, media flowing.
    control.send("dial", "sip:bob@localhost");
    control.wait(|m| m["event"] == true && m["type"] == "CALL_ESTABLISHED", context);
    let deadline = Instant::now() + PATIENCE;
    let media = |agent: &Agent| {
        let out = agent.output();
        out.contains("SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)")
            && out.contains("Set audio decoder: opus 48000Hz 2ch")
            && out.contains("incoming rtp for 'audio' established")
            && received_audio(&out)
    };
    while !(media(&alice) && media(&bob)) {
        assert!(Instant::now() < deadline, "no SRTP Opus media both ways\n{}", context());
        std::thread::sleep(Duration::from_millis(200));
    }
    control.send("hangup", "");
    control.wait(|m| m["event"] == true && m["type"] == "CALL_CLOSED", context);

    let sip = server.get("/api/v1/sip").json();
    assert!(sip["auth"]["challenges"].as_u64().unwrap() >= 3, "REGISTER x2 and MESSAGE challenged: {sip}");
    assert_eq!(sip["auth"]["failures"], 0, "{sip}");
    assert!(sip["routing"]["routed"].as_u64().unwrap() >= 3, "MESSAGE, INVITE, BYE routed: {sip}");
}

/// Whether baresip's call status line shows audio coming in (`audio=TX/RX (bit/s)` with RX above zero).
fn received_audio(output: &str) -> bool {
    output.split("audio=").skip(1).any(|rest| {
        rest.split_once(" (bit/s)")
            .and_then(|(rates, _)| rates.split_once('/'))
            .and_then(|(_, rx)| rx.trim().parse::<u64>().ok())
            .is_some_and(|rx| rx > 0)
    })
}
