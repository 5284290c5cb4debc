//! The SIP registrar and proxy judged by SIPp (Debian package sip-tester, installed by the test command):
//! Digest REGISTER (right and wrong password), MESSAGE between two registered
//! users, and an INVITE forked to two contacts where one answers and the other is cancelled; plus a
//! registration over TCP that receives a MESSAGE sent over UDP, and registrations kept durable across kill -9
//! (the default) or written back on an interval and at shutdown (`sip.bindings_write_back_ms`). Scenarios are in tests/sipp/. Every SIPp
//! run makes one call and is bounded by `-timeout` and a `timeout` around it; everything stays on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use vienna_e2e::{Server, add_user, sipp};

/// A SIPp UAS on `port` running `file` for one call, in the background.
fn uas(dir: &Path, sip: SocketAddr, file: &str, port: u16, user: &str) -> Child {
    sipp::spawn(&mut sipp::command(dir, sip, file, port, &["-s", user]))
}

fn start(dir: &Path, extra: &[&str]) -> (Server, SocketAddr) {
    let data = dir.join("data");
    add_user(&data, "alice", "alice-secret");
    add_user(&data, "bob", "bob-secret");
    // SIPp answers only MD5 and reads the first challenge: offer MD5 first, SHA-256 second.
    let mut args = vec!["--set", "turn.enabled=false", "--set", "sip.digest_algorithms=[\"MD5\", \"SHA-256\"]"];
    args.extend_from_slice(extra);
    let mut server = Server::start(&data, &args);
    let sip = server.listener("sip", "udp");
    (server, sip)
}

#[test]
fn sipp_registers_with_digest_and_a_wrong_password_is_challenged_again() {
    let dir = tempfile::tempdir().unwrap();
    let (server, sip) = start(dir.path(), &[]);
    sipp::register(&server, dir.path(), sip, "alice", "alice-secret", 5999);
    let regs = server.get("/api/v1/registrations").json();
    let regs = regs.as_array().unwrap();
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert_eq!(regs[0]["aor"], "sip:alice@localhost");
    assert_eq!(regs[0]["contact"], "sip:alice@127.0.0.1:5999");

    let out = sipp::command(
        dir.path(),
        sip,
        "register-refused.xml",
        sipp::free_port(),
        &["-s", "bob", "-au", "bob", "-ap", "wrong"],
    )
    .args(["-key", "contact_port", "5998"])
    .output();
    sipp::expect_success(&server, dir.path(), out, "REGISTER with a wrong password is challenged again");
    assert_eq!(server.metric("vienna_sip_auth_failures_total"), 1.0);
    assert_eq!(server.metric("vienna_sip_registrations_accepted_total"), 1.0);
    // The refused one is not stored.
    let regs = server.get("/api/v1/registrations").json();
    assert_eq!(regs.as_array().unwrap().len(), 1, "{regs}");
}

#[test]
fn sipp_message_reaches_the_registered_user() {
    let dir = tempfile::tempdir().unwrap();
    let (server, sip) = start(dir.path(), &[]);
    let bob_port = sipp::free_port();
    let mut bob = uas(dir.path(), sip, "message-uas.xml", bob_port, "bob");
    sipp::register(&server, dir.path(), sip, "bob", "bob-secret", bob_port);
    let out = sipp::command(
        dir.path(),
        sip,
        "message-uac.xml",
        sipp::free_port(),
        &["-s", "alice", "-au", "alice", "-ap", "alice-secret"],
    )
    .args(["-key", "to_user", "bob"])
    .output();
    sipp::expect_success(&server, dir.path(), out, "MESSAGE alice -> bob");
    let status = bob.wait().unwrap();
    assert!(status.success(), "bob's UAS did not get its MESSAGE: {status}\n{}", sipp::errors(dir.path()));
}

#[test]
fn sipp_invite_forks_to_two_contacts_and_the_loser_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let (server, sip) = start(dir.path(), &[]);
    let (answer_port, ring_port) = (sipp::free_port(), sipp::free_port());
    let mut answers = uas(dir.path(), sip, "invite-uas-answer.xml", answer_port, "bob");
    let mut rings = uas(dir.path(), sip, "invite-uas-cancelled.xml", ring_port, "bob");
    sipp::register(&server, dir.path(), sip, "bob", "bob-secret", answer_port);
    sipp::register(&server, dir.path(), sip, "bob", "bob-secret", ring_port);
    let out = sipp::command(
        dir.path(),
        sip,
        "invite-uac.xml",
        sipp::free_port(),
        &["-s", "alice", "-au", "alice", "-ap", "alice-secret"],
    )
    .args(["-key", "to_user", "bob"])
    .output();
    sipp::expect_success(&server, dir.path(), out, "INVITE alice -> bob (two contacts)");
    let answered = answers.wait().unwrap();
    let cancelled = rings.wait().unwrap();
    assert!(
        answered.success() && cancelled.success(),
        "UAS runs: {answered} {cancelled}\n{}",
        sipp::errors(dir.path())
    );
    assert_eq!(server.metric("vienna_sip_cancels_total"), 1.0);
    assert_eq!(server.metric("vienna_sip_forks_won_total"), 1.0);
    let stats = server.get("/api/v1/sip").json();
    assert_eq!(stats["routing"]["cancels"], 1, "{stats}");
    assert!(stats["responses_by_class"]["2xx"].as_u64().unwrap() >= 4, "{stats}");
    assert_eq!(stats["bindings"], 2, "{stats}");
}

#[test]
fn sipp_im_session_carries_messages_both_ways_inside_the_dialog() {
    // LCS clients start a conversation with an INVITE whose SDP is `m=message`; the MESSAGEs and the BYE
    // then follow the recorded route through the proxy.
    let dir = tempfile::tempdir().unwrap();
    let (server, sip) = start(dir.path(), &[]);
    let bob_port = sipp::free_port();
    let mut bob =
        sipp::command(dir.path(), sip, "im-session-uas.xml", bob_port, &["-s", "bob", "-key", "to_user", "alice"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp");
    sipp::register(&server, dir.path(), sip, "bob", "bob-secret", bob_port);
    let out = sipp::command(
        dir.path(),
        sip,
        "im-session-uac.xml",
        sipp::free_port(),
        &["-s", "alice", "-au", "alice", "-ap", "alice-secret", "-key", "to_user", "bob"],
    )
    .output();
    sipp::expect_success(&server, dir.path(), out, "IM session alice -> bob");
    let status = bob.wait().unwrap();
    assert!(status.success(), "bob's side of the IM session failed: {status}\n{}", sipp::errors(dir.path()));
    let stats = server.get("/api/v1/sip").json();
    // INVITE routed by the registrar's binding; ACK, both MESSAGEs and the BYE by the route set.
    assert_eq!(stats["routing"]["acks_forwarded"], 1, "{stats}");
    assert!(stats["routing"]["routed"].as_u64().unwrap() >= 4, "{stats}");
}

/// Reads one SIP message (headers and Content-Length body) from a stream.
fn read_message(reader: &mut BufReader<TcpStream>) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "connection closed; got {head:?}");
        if line == "\r\n" && head.is_empty() {
            continue; // keep-alive
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
        .unwrap_or_else(|| panic!("no {name} in {message}"))
}

#[test]
fn a_tcp_registration_receives_a_message_sent_over_udp() {
    let dir = tempfile::tempdir().unwrap();
    // Without authentication, so this hand-written client needs no Digest code.
    let (mut server, sip) = start(dir.path(), &["--set", "sip.authenticate=false"]);
    let tcp = server.listener("sip", "tcp");
    let stream = TcpStream::connect(tcp).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let local = stream.local_addr().unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    // A CRLF CRLF ping first (RFC 5626): answered with CRLF, skipped by read_message.
    writer.write_all(b"\r\n\r\n").unwrap();
    let register = format!(
        "REGISTER sip:localhost SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-tcp-reg-1\r\nMax-Forwards: 70\r\n\
         From: <sip:bob@localhost>;tag=t1\r\nTo: <sip:bob@localhost>\r\nCall-ID: tcp-reg-1\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:bob@{local};transport=tcp>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    );
    writer.write_all(register.as_bytes()).unwrap();
    let ok = read_message(&mut reader);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");

    let sender = std::thread::spawn({
        let dir = dir.path().to_owned();
        move || {
            sipp::command(
                &dir,
                sip,
                "message-uac-noauth.xml",
                sipp::free_port(),
                &["-s", "alice", "-key", "to_user", "bob"],
            )
            .output()
        }
    });
    let message = read_message(&mut reader);
    assert!(message.starts_with("MESSAGE sip:bob@"), "{message}");
    assert!(message.contains("hello from alice"), "{message}");
    let vias: Vec<&str> = message.lines().filter(|l| l.to_ascii_lowercase().starts_with("via:")).collect();
    assert_eq!(vias.len(), 2, "the proxy's Via over alice's: {vias:?}");
    assert!(vias[0].contains("SIP/2.0/TCP"), "{vias:?}");
    let reply = format!(
        "SIP/2.0 200 OK\r\n{}\r\n{}\r\nFrom: {}\r\nTo: {};tag=b1\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        vias[0],
        vias[1],
        header(&message, "From"),
        header(&message, "To"),
        header(&message, "Call-ID"),
        header(&message, "CSeq"),
    );
    writer.write_all(reply.as_bytes()).unwrap();
    sipp::expect_success(&server, dir.path(), sender.join().unwrap(), "MESSAGE over UDP to a TCP registration");
}

#[test]
fn an_acknowledged_registration_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (server, sip) = start(dir.path(), &[]);
    sipp::register(&server, dir.path(), sip, "alice", "alice-secret", 5999);
    // The 200 OK went out after the binding was written: a crash now must not lose it.
    let status = server.stop_with(libc::SIGKILL);
    assert!(!status.success());
    let args = ["--set", "turn.enabled=false"];
    let again = Server::start(&dir.path().join("data"), &args);
    assert!(again.log_text().contains("\"registrations_loaded\":1"), "{}", again.log_text());
    let regs = again.get("/api/v1/registrations").json();
    assert_eq!(regs[0]["contact"], "sip:alice@127.0.0.1:5999", "{regs}");
}

#[test]
fn write_back_stores_registrations_at_shutdown_and_on_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    // A long interval: the 200 OK goes out, the binding is in memory only until the server stops.
    let (server, sip) = start(dir.path(), &["--set", "sip.bindings_write_back_ms=60000"]);
    sipp::register(&server, dir.path(), sip, "alice", "alice-secret", 5999);
    assert_eq!(server.metric("vienna_sip_registrations_accepted_total"), 1.0);
    let regs = server.get("/api/v1/registrations").json();
    assert_eq!(regs.as_array().unwrap().len(), 0, "written before the interval: {regs}");
    // A graceful stop writes it.
    assert!(server.stop_with(libc::SIGTERM).success());
    let data = dir.path().join("data");
    let mut again = Server::start(
        &data,
        &[
            "--set",
            "turn.enabled=false",
            "--set",
            "sip.digest_algorithms=[\"MD5\"]",
            "--set",
            "sip.bindings_write_back_ms=200",
        ],
    );
    assert!(again.log_text().contains("\"registrations_loaded\":1"), "{}", again.log_text());

    // A short interval: a new registration reaches the store within it, so it survives kill -9.
    let sip = again.listener("sip", "udp");
    sipp::register(&again, dir.path(), sip, "bob", "bob-secret", 5998);
    let regs = again.wait_json("/api/v1/registrations", |v| v.as_array().is_some_and(|a| a.len() == 2));
    assert_eq!(regs.as_array().unwrap().len(), 2, "{regs}");
    assert!(!again.stop_with(libc::SIGKILL).success());
    let last = Server::start(&data, &["--set", "turn.enabled=false"]);
    assert!(last.log_text().contains("\"registrations_loaded\":2"), "{}", last.log_text());
}

/// Sends `bytes` from `socket` to `to` and returns the next response.
fn exchange(socket: &UdpSocket, to: SocketAddr, bytes: &[u8]) -> vienna_sip::Response {
    socket.send_to(bytes, to).unwrap();
    let mut buf = vec![0; 65_536];
    let (n, _) = socket.recv_from(&mut buf).expect("an answer within the read timeout");
    match vienna_sip::Message::parse(&buf[..n]) {
        Ok(vienna_sip::Message::Response(r)) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

#[test]
fn sha256_digest_registers_and_a_replayed_nonce_count_is_challenged() {
    // SIPp answers only MD5 and counts nonces up by itself, so this client is written here, with the
    // Digest client side of crates/sip, against the real binary over UDP.
    use vienna_sip::HeaderName;
    use vienna_sip::digest::{Algorithm, Challenge, respond};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    add_user(&data, "alice", "alice-secret");
    let mut server = Server::start(&data, &["--set", "turn.enabled=false"]);
    let sip = server.listener("sip", "udp");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let me = socket.local_addr().unwrap();
    let request = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:localhost SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-sha-{cseq}\r\nMax-Forwards: 70\r\n\
             From: <sip:alice@localhost>;tag=s\r\nTo: <sip:alice@localhost>\r\nCall-ID: sha-reg\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <sip:alice@{me}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    let challenge = exchange(&socket, sip, &request(1, ""));
    assert_eq!(challenge.status, 401);
    let offered: Vec<Challenge> =
        challenge.headers.get_all(&HeaderName::WwwAuthenticate).map(|v| Challenge::parse(v).unwrap()).collect();
    assert_eq!(offered.iter().map(|c| c.algorithm).collect::<Vec<_>>(), [Algorithm::Sha256, Algorithm::Md5]);
    let creds = respond(&offered[0], "alice", "alice-secret", "REGISTER", "sip:localhost", "c1", 1);
    let auth = format!("Authorization: {creds}\r\n");
    let ok = exchange(&socket, sip, &request(2, &auth));
    assert_eq!(ok.status, 200, "{ok:?}");
    // The same nonce and nonce count in a new request: a replay.
    let replay = exchange(&socket, sip, &request(3, &auth));
    assert_eq!(replay.status, 401, "{replay:?}");
    assert_eq!(server.metric("vienna_sip_auth_replays_total"), 1.0);
    // A wrong password with SHA-256 is challenged again.
    let wrong = respond(&offered[0], "alice", "nope", "REGISTER", "sip:localhost", "c2", 2);
    let again = exchange(&socket, sip, &request(4, &format!("Authorization: {wrong}\r\n")));
    assert_eq!(again.status, 401);
    assert_eq!(server.metric("vienna_sip_auth_failures_total"), 1.0);
    assert_eq!(server.get("/api/v1/registrations").json().as_array().unwrap().len(), 1);
}
