//! Two baresip 1.0 instances (Debian package baresip, presence module) register with passwords through
//! Vienna, watch each other, and each sees the other go online, away and offline. Everything on loopback
//! with ephemeral ports; each baresip quits by itself after at most 60 seconds, and the test kills what it
//! started when it ends.
//!
//! What each one "sees" is read from its SIP trace (`-s`): the PIDF of every NOTIFY it received about the
//! other, in order. baresip's own status line is checked too, with one caveat of baresip 1.0: its
//! subscriber shows `<rpid:away/>` as "Offline" (it knows Online, Offline and Busy only), and its publisher
//! publishes only open or closed, so the Away step is set for the user with `vienna presence set` (the
//! durable manual state), and the Offline step is baresip's own `/presence_offline`.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vienna_e2e::{PATIENCE, Server, run};

/// A port free on loopback for both UDP and TCP (baresip listens on both).
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Baresip {
    child: Child,
    log: PathBuf,
    ctrl: u16,
}

impl Baresip {
    /// Starts `user` (password `USER-secret`) registering at `sip`, watching `peer`.
    fn start(dir: &Path, user: &str, peer: &str, sip: SocketAddr) -> Baresip {
        let home = dir.join(user);
        std::fs::create_dir_all(&home).unwrap();
        let (listen, ctrl) = (free_port(), free_tcp_port());
        let rtp = 30_000 + (listen % 1000) * 20;
        let config = format!(
            "sip_listen 127.0.0.1:{listen}\nnet_interface 127.0.0.1\ndns_server 127.0.0.1:53\n\
             audio_player aufile,/dev/null\naudio_source ausine,440\naudio_alert aufile,/dev/null\n\
             rtp_ports {rtp}-{}\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\nmodule ausine.so\n\
             module aufile.so\nmodule ctrl_tcp.so\nmodule_tmp uuid.so\nmodule_tmp account.so\n\
             module_app contact.so\nmodule_app menu.so\nmodule_app presence.so\nctrl_tcp_listen 127.0.0.1:{ctrl}\n",
            rtp + 19
        );
        std::fs::write(home.join("config"), config).unwrap();
        std::fs::write(
            home.join("accounts"),
            format!("<sip:{user}@{sip}>;auth_pass={user}-secret;regint=60;pubint=60\n"),
        )
        .unwrap();
        std::fs::write(home.join("contacts"), format!("\"{peer}\" <sip:{peer}@{sip}>;presence=p2p\n")).unwrap();
        let log = dir.join(format!("{user}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("timeout")
            // Line-buffered output: the trace is read while baresip runs.
            .args(["70", "stdbuf", "-oL", "-eL", "baresip", "-f"])
            .arg(&home)
            .args(["-s", "-v", "-t", "60"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("baresip (packages baresip, baresip-core) is installed by the test command");
        Baresip { child, log, ctrl }
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// What this baresip was told about `peer`, in order: one of "online", "away", "offline" per NOTIFY.
    fn seen(&self, peer: &str) -> Vec<&'static str> {
        let text = self.log_text();
        text.split("\nNOTIFY sip:")
            .skip(1)
            .filter(|m| m.lines().any(|l| l.starts_with("From:") && l.contains(&format!("sip:{peer}@"))))
            .filter_map(|m| {
                // The trace marks the next message with a coloured "#" line.
                let m = m.split("\n\u{1b}").next().unwrap_or(m);
                if m.contains("<basic>closed</basic>") {
                    Some("offline")
                } else if m.contains("<rpid:away/>") {
                    Some("away")
                } else if m.contains("<basic>open</basic>") {
                    Some("online")
                } else {
                    None
                }
            })
            .collect()
    }

    /// Sends a command over ctrl_tcp (a JSON netstring).
    fn command(&self, command: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.ctrl)).expect("baresip ctrl_tcp");
        let body = format!("{{\"command\":\"{command}\",\"params\":\"\",\"token\":\"t\"}}");
        s.write_all(format!("{}:{body},", body.len()).as_bytes()).unwrap();
        // Wait for the answer, so the command ran before the connection closes.
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = [0u8; 512];
        let n = std::io::Read::read(&mut s, &mut answer).unwrap_or(0);
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.contains("\"ok\":true"), "baresip {command}: {answer}");
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `wanted` appears in `seen` in this order (other entries may come between).
fn in_order(seen: &[&str], wanted: &[&str]) -> bool {
    let mut it = seen.iter();
    wanted.iter().all(|w| it.any(|s| s == w))
}

fn wait(what: &str, server: &Server, parties: &[&Baresip], ok: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ok() {
        if Instant::now() > deadline {
            let logs: Vec<String> = parties.iter().map(|b| b.log_text()).collect();
            let api = server.get("/api/v1/presence").body;
            panic!(
                "{what}: not seen in time\n--- presence ---\n{api}\n--- baresip logs ---\n{}\n--- server log ---\n{}",
                logs.join("\n-----\n"),
                server.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_baresips_see_each_other_go_online_away_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let domain = ["--set", "server.domain=127.0.0.1"];
    for u in ["alice", "bob"] {
        let out = run(&data, &["user", "add", u, "--password-stdin", domain[0], domain[1]], &format!("{u}-secret\n"));
        assert!(out.status.success(), "{}", vienna_e2e::stderr(&out));
    }
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&domain);
        let out = run(&data, &all, "");
        assert!(out.status.success(), "vienna {args:?}: {}", vienna_e2e::stderr(&out));
    };
    // Each has the other in its contact list: that allows each to watch the other.
    cli(&["contact", "add", "alice", "bob"]);
    cli(&["contact", "add", "bob", "alice"]);
    let mut server = Server::start(
        &data,
        &[
            "--set",
            "server.domain=127.0.0.1",
            "--set",
            "turn.enabled=false",
            // baresip 1.0 (libre) answers MD5 challenges only.
            "--set",
            "sip.digest_algorithms=[\"MD5\"]",
            "--set",
            "presence.notify_interval_ms=200",
            "--set",
            "presence.reauthorize_secs=1",
        ],
    );
    let sip = server.listener("sip", "udp");
    let state = |aor: &str| {
        let v = server.get(&format!("/api/v1/presence/{aor}")).json();
        v["presence"]["state"].as_str().unwrap_or_default().to_owned()
    };

    // Online: Alice starts first, so she sees Bob come from Offline to Online; Bob sees her Online.
    let alice = Baresip::start(d, "alice", "bob", sip);
    wait("alice registered", &server, &[&alice], || state("alice") == "online");
    let bob = Baresip::start(d, "bob", "alice", sip);
    let both = [&alice, &bob];
    wait("each sees the other online", &server, &both, || {
        alice.seen("bob").contains(&"online") && bob.seen("alice").contains(&"online")
    });
    assert!(in_order(&alice.seen("bob"), &["offline", "online"]), "{:?}", alice.seen("bob"));

    // Away: both set Away by hand (baresip 1.0 cannot publish it).
    cli(&["presence", "set", "bob", "away"]);
    cli(&["presence", "set", "alice", "away"]);
    wait("each sees the other away", &server, &both, || {
        in_order(&alice.seen("bob"), &["online", "away"]) && in_order(&bob.seen("alice"), &["online", "away"])
    });

    // Offline: each clears the manual state and goes offline in baresip (it publishes closed).
    cli(&["presence", "clear", "bob"]);
    wait("bob's manual state cleared", &server, &both, || state("bob") == "online");
    bob.command("presence_offline");
    wait("alice sees bob offline", &server, &both, || in_order(&alice.seen("bob"), &["online", "away", "offline"]));
    cli(&["presence", "clear", "alice"]);
    wait("alice's manual state cleared", &server, &both, || state("alice") == "online");
    alice.command("presence_offline");
    wait("bob sees alice offline", &server, &both, || in_order(&bob.seen("alice"), &["online", "away", "offline"]));

    // baresip's own view agrees (it shows Away as Offline, see above).
    let alice_log = alice.log_text();
    assert!(alice_log.contains("<sip:bob@") && alice_log.contains("changed status from"), "{alice_log}");
    let p = server.wait_json("/api/v1/presence", |p| p["subscriptions"] == 2);
    assert!(p["notify"]["sent"].as_u64().unwrap() >= 6, "{p}");
    assert_eq!(p["subscribe"]["rejected"], 0, "{p}");
    drop(alice);
    drop(bob);
}
