//! Two baresip user agents (Debian package baresip, installed by the test command) register with their
//! passwords through Vienna, exchange a MESSAGE, and hold an Opus call with SRTP (SDES,
//! `mediaenc=srtp-mand`) routed by Vienna's proxy. baresip is driven headless: commands go in over its
//! `ctrl_tcp` module (netstrings of JSON), and what it shows the user comes out of its `cons` console.
//! Everything stays on loopback; each baresip runs with `-t` (a time limit) and is killed at the end.
//!
//! baresip 1.0 (libre) gives up on a REGISTER when any challenge names an algorithm it does not know, so
//! Vienna offers MD5 only here (`sip.digest_algorithms = ["MD5"]`).

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use vienna_e2e::baresip::Baresip;
use vienna_e2e::{PATIENCE, Server, add_user};

/// `user` (password `password`) registering through `proxy`, calls answered automatically, Opus and
/// mandatory SRTP, with a console.
fn agent(root: &Path, user: &str, password: &str, proxy: SocketAddr, peer: &str) -> Baresip {
    let account = format!(
        "<sip:{user}@localhost>;auth_pass={password};outbound=\"sip:{proxy};transport=udp\";regint=600;\
         answermode=auto;mediaenc=srtp-mand;audio_codecs=opus/48000/2"
    );
    Baresip::builder(root, user, account)
        .modules(&["opus.so", "srtp.so"])
        .contacts(format!("\"{peer}\" <sip:{peer}@localhost>\n"))
        .console()
        .start()
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

    let bob = agent(dir.path(), "bob", "bob-secret", proxy, "alice");
    let alice = agent(dir.path(), "alice", "alice-secret", proxy, "bob");
    let context = || {
        format!(
            "--- alice ---\n{}\n--- bob ---\n{}\n--- vienna ---\n{}",
            alice.log_text(),
            bob.log_text(),
            server.log_text()
        )
    };
    let mut bob_console = bob.connect(bob.console.unwrap());
    let mut control = alice.control();
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
    let media = |agent: &Baresip| {
        let out = agent.log_text();
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
