//! Microsoft-dialect clients through Vienna: SIPE 1.25 (Debian package pidgin-sipe, the libpurple plug-in
//! that speaks the OCS/Lync dialect) run headless by `tools/sipe-client/sipe_driver.c`, and baresip 1.0 for
//! the SIMPLE side. Everything on loopback with ephemeral ports; every process quits by itself within
//! 90 seconds and the test kills what it started when it ends.
//!
//! - alice (SIPE over TLS) and bob (SIPE over TCP) sign in with NTLM (MS-SIPAE); SIPE checks the signature
//!   of every message Vienna sends and ignores unsigned ones, so everything after sign-in proves the
//!   signing too;
//! - alice receives her roaming contact list (bob in group Team, carol) and provisioning;
//! - bob goes Busy, Away and Available by category publishing, and alice sees each state;
//! - carol (baresip, SIMPLE) sees alice go Busy and back (a category publication reaches PIDF watchers),
//!   and alice sees carol go offline (a PIDF publication reaches category watchers);
//! - carol's page-mode MESSAGE reaches alice, and alice's IM session to carol (refused by baresip with
//!   488) is answered by Vienna's IM gateway, which hands both of alice's messages to carol as page-mode
//!   MESSAGEs;
//! - alice and bob exchange instant messages (INVITE-based sessions, in-dialog MESSAGE to the GRUU);
//! - a disabled account is signed out by the server (registration-notify).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vienna_e2e::baresip::Baresip;
use vienna_e2e::{PATIENCE, Server, run};

const DOMAIN: &str = "example.test";

/// Builds the SIPE driver into `dir` (gcc against libpurple, GLib and libxml2).
fn build_driver(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/sipe-client/sipe_driver.c");
    let out = dir.join("sipe_driver");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gcc -Wall -rdynamic -o '{}' '{}' $(pkg-config --cflags --libs purple glib-2.0 libxml-2.0) -ldl",
            out.display(),
            source.display()
        ))
        .status()
        .expect("gcc and pkg-config (tools/install-deps.sh installs them)");
    assert!(status.success(), "the SIPE driver does not build: run tools/install-deps.sh (pidgin-sipe, libpurple-dev)");
    out
}

/// One SIPE instance: its events (stderr lines starting with `###`) and its command input.
struct Sipe {
    name: String,
    child: Child,
    stdin: ChildStdin,
    events: Arc<Mutex<Vec<String>>>,
    debug: PathBuf,
}

impl Sipe {
    fn start(driver: &Path, dir: &Path, user: &str, server: SocketAddr, transport: &str) -> Sipe {
        let home = dir.join(format!("purple-{user}"));
        std::fs::create_dir_all(&home).unwrap();
        let debug = dir.join(format!("sipe-{user}.log"));
        let mut child = Command::new("timeout")
            .args(["90"])
            .arg(driver)
            .args([&format!("{user}@{DOMAIN}"), &format!("{user}-secret"), &server.to_string(), transport, "80"])
            .env("PURPLE_HOME", &home)
            .env("SIPE_DEBUG", "1")
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&debug).unwrap())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the SIPE driver");
        let events = Arc::new(Mutex::new(Vec::new()));
        let keep = events.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(e) = line.strip_prefix("### ") {
                    keep.lock().unwrap().push(e.to_owned());
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        Sipe { name: user.to_owned(), child, stdin, events, debug }
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    /// The states this SIPE showed for `buddy`, in order (`BUDDY sip:bob@example.test Team busy`).
    fn states_of(&self, buddy: &str) -> Vec<String> {
        let prefix = format!("BUDDY sip:{buddy}@{DOMAIN} ");
        self.events()
            .iter()
            .filter_map(|e| e.strip_prefix(&prefix))
            .filter_map(|rest| rest.rsplit(' ').next().map(str::to_owned))
            .collect()
    }

    fn group_of(&self, buddy: &str) -> Option<String> {
        let prefix = format!("BUDDY sip:{buddy}@{DOMAIN} ");
        self.events().iter().find_map(|e| {
            let rest = e.strip_prefix(&prefix)?;
            let (group, _) = rest.rsplit_once(' ')?;
            Some(group.to_owned())
        })
    }

    fn debug_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.debug).unwrap_or_default()).into_owned()
    }
}

impl Drop for Sipe {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let deadline = Instant::now() + Duration::from_secs(5);
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

/// baresip 1.0 as `user@example.test`, registering through Vienna's UDP listener (outbound proxy) and
/// watching `peer`, with its SIP trace in the log.
fn baresip(dir: &Path, user: &str, peer: &str, sip: SocketAddr) -> Baresip {
    let account = format!("<sip:{user}@{DOMAIN}>;auth_pass={user}-secret;outbound=\"sip:{sip}\";regint=60;pubint=60");
    Baresip::builder(dir, user, account)
        .modules(&["presence.so"])
        .contacts(format!("\"{peer}\" <sip:{peer}@{DOMAIN}>;presence=p2p\n"))
        .trace()
        .seconds(85)
        .start()
}

/// Whether `wanted` appears in `seen` in this order (other entries may come between).
fn in_order<S: AsRef<str>>(seen: &[S], wanted: &[&str]) -> bool {
    let mut it = seen.iter();
    wanted.iter().all(|w| it.any(|s| s.as_ref() == *w))
}

fn wait(what: &str, server: &Server, sipes: &[&Sipe], baresips: &[&Baresip], ok: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ok() {
        if Instant::now() > deadline {
            let mut report = String::new();
            for s in sipes {
                report.push_str(&format!(
                    "--- {} events ---\n{}\n--- {} debug (tail) ---\n{}\n",
                    s.name,
                    s.events().join("\n"),
                    s.name,
                    tail(&s.debug_text(), 20_000)
                ));
            }
            for b in baresips {
                report.push_str(&format!("--- baresip ---\n{}\n", tail(&b.log_text(), 20_000)));
            }
            panic!("{what}: not seen in time\n{report}--- server log ---\n{}", tail(&server.log_text(), 20_000));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `vienna ARGS` on `data` for this test's domain; fails the test unless it succeeds.
fn vienna_cli(data: &Path, args: &[&str], stdin: &str) {
    let dom = format!("server.domain={DOMAIN}");
    let mut all = args.to_vec();
    all.extend_from_slice(&["--set", &dom]);
    let out = run(data, &all, stdin);
    assert!(out.status.success(), "vienna {args:?}: {}", vienna_e2e::stderr(&out));
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
    &s[start..]
}

#[test]
fn sipe_signs_in_with_ntlm_and_sees_sipe_and_baresip_through_one_presence_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let driver = build_driver(d);
    let data = d.join("data");
    let dom = format!("server.domain={DOMAIN}");
    let cli = |args: &[&str], stdin: &str| vienna_cli(&data, args, stdin);
    for u in ["alice", "bob", "carol"] {
        cli(&["user", "add", u, "--password-stdin"], &format!("{u}-secret\n"));
    }
    cli(&["contact", "add", "alice", "bob", "--group", "Team"], "");
    cli(&["contact", "add", "alice", "carol"], "");
    cli(&["contact", "add", "bob", "alice"], "");
    cli(&["contact", "add", "carol", "alice"], "");
    let mut server = Server::start(
        &data,
        &[
            "--set",
            &dom,
            "--set",
            "turn.enabled=false",
            // baresip 1.0 (libre) answers MD5 challenges only; SIPE ignores Digest and picks NTLM.
            "--set",
            "sip.digest_algorithms=[\"MD5\"]",
            "--set",
            "presence.notify_interval_ms=200",
            "--set",
            "presence.reauthorize_secs=1",
        ],
    );
    let (tls, tcp, udp) = (server.listener("sip", "tls"), server.listener("sip", "tcp"), server.listener("sip", "udp"));

    // Sign-in: NTLM over TLS (alice) and over TCP (bob); the roaming contact list arrives.
    let mut alice = Sipe::start(&driver, d, "alice", tls, "tls");
    let mut bob = Sipe::start(&driver, d, "bob", tcp, "tcp");
    wait("both SIPEs signed on", &server, &[&alice, &bob], &[], || {
        alice.events().iter().any(|e| e == "SIGNED ON") && bob.events().iter().any(|e| e == "SIGNED ON")
    });
    wait("alice's contact list (bob in Team, carol)", &server, &[&alice], &[], || {
        alice.group_of("bob").as_deref() == Some("Team") && alice.group_of("carol").is_some()
    });
    wait("alice sees bob available", &server, &[&alice, &bob], &[], || {
        alice.states_of("bob").iter().any(|s| s == "available")
    });
    assert!(!alice.events().iter().any(|e| e.starts_with("CONNECTION ERROR")), "{:?}", alice.events());

    // Enhanced presence between two Microsoft clients: bob publishes states by category.
    for state in ["busy", "away", "available"] {
        bob.send(&format!("status {state}"));
        wait(&format!("alice sees bob {state}"), &server, &[&alice, &bob], &[], || {
            alice.states_of("bob").last().map(String::as_str) == Some(state)
        });
    }
    assert!(in_order(&alice.states_of("bob"), &["available", "busy", "away", "available"]));

    // Across dialects: carol (baresip, SIMPLE) watches alice, alice watches carol.
    let carol = baresip(d, "carol", "alice", udp);
    wait("alice sees carol available", &server, &[&alice], &[&carol], || {
        alice.states_of("carol").iter().any(|s| s == "available")
    });
    wait("carol sees alice online", &server, &[&alice], &[&carol], || carol.presence_seen("alice").contains(&"online"));
    alice.send("status busy");
    wait("carol sees alice busy", &server, &[&alice], &[&carol], || {
        in_order(&carol.presence_seen("alice"), &["online", "busy"])
    });
    alice.send("status away");
    wait("carol sees alice away", &server, &[&alice], &[&carol], || {
        in_order(&carol.presence_seen("alice"), &["online", "busy", "away"])
    });
    alice.send("status available");
    wait("carol sees alice online again", &server, &[&alice], &[&carol], || {
        in_order(&carol.presence_seen("alice"), &["online", "busy", "away", "online"])
    });
    // A page-mode MESSAGE from the SIMPLE client reaches the Microsoft client.
    carol.command_with("message", "hello from carol");
    wait("alice receives carol's message", &server, &[&alice], &[&carol], || {
        alice.events().iter().any(|e| e == &format!("IM sip:carol@{DOMAIN} hello from carol"))
    });
    // And the other way: SIPE opens an IM session (INVITE, m=message, first message in ms-text-format),
    // baresip refuses it (488), the IM gateway answers SIPE and hands each message to baresip as a
    // page-mode MESSAGE: the first one from the INVITE, the next one from the MESSAGE in the dialog.
    alice.send(&format!("im sip:carol@{DOMAIN} hello carol"));
    wait("carol receives alice's first message", &server, &[&alice], &[&carol], || {
        carol.received_message("alice", "hello carol")
    });
    alice.send(&format!("im sip:carol@{DOMAIN} how are you"));
    wait("carol receives alice's message in the session", &server, &[&alice], &[&carol], || {
        carol.received_message("alice", "how are you")
    });
    assert!(!alice.events().iter().any(|e| e.contains("ERROR") || e.contains("not delivered")), "{:?}", alice.events());
    let gw = &server.get("/api/v1/sip").json()["microsoft"]["im_gateway"];
    assert_eq!(gw["sessions"], 1, "{gw}");
    assert_eq!(gw["delivered"], 2, "{gw}");
    assert_eq!(gw["live"], 1, "{gw}");
    carol.command("presence_offline");
    wait("alice sees carol offline", &server, &[&alice], &[&carol], || {
        in_order(&alice.states_of("carol"), &["available", "offline"])
    });

    // Instant messages between the two Microsoft clients (INVITE session, MESSAGE in the dialog).
    alice.send(&format!("im sip:bob@{DOMAIN} hello bob"));
    wait("bob receives alice's message", &server, &[&alice, &bob], &[], || {
        bob.events().iter().any(|e| e == &format!("IM sip:alice@{DOMAIN} hello bob"))
    });
    bob.send(&format!("im sip:alice@{DOMAIN} hello alice"));
    wait("alice receives bob's answer", &server, &[&alice, &bob], &[], || {
        alice.events().iter().any(|e| e == &format!("IM sip:bob@{DOMAIN} hello alice"))
    });

    // What the server counted: two associations, signatures checked and made, no refusal, BENOTIFY used.
    let sip = server.get("/api/v1/sip").json();
    let ms = &sip["microsoft"];
    assert_eq!(ms["ntlm"]["associations"], 2, "{sip}");
    assert!(ms["ntlm"]["established"].as_u64().unwrap() >= 2, "{sip}");
    assert!(ms["ntlm"]["verified"].as_u64().unwrap() >= 10, "{sip}");
    assert!(ms["ntlm"]["signed"].as_u64().unwrap() >= 10, "{sip}");
    assert!(ms["benotifies"].as_u64().unwrap() >= 4, "{sip}");
    assert!(ms["publications"].as_u64().unwrap() >= 3, "{sip}");
    for (reason, n) in ms["ntlm"]["refused"].as_object().unwrap() {
        assert_eq!(n, 0, "refused for {reason}: {sip}");
    }

    // Server-initiated deregistration: bob's account is disabled; the server signs him out.
    cli(&["user", "set", "bob", "--enabled", "false"], "");
    wait("bob is signed out by the server", &server, &[&bob], &[], || {
        bob.events().iter().any(|e| e.starts_with("CONNECTION ERROR") && e.contains("rejected by the server"))
    });
    wait("alice sees bob offline", &server, &[&alice, &bob], &[], || {
        alice.states_of("bob").last().map(String::as_str) == Some("offline")
    });
    alice.send("quit");
    wait("alice signs out", &server, &[&alice], &[], || alice.events().iter().any(|e| e == "EXIT"));
    drop(carol);
}

/// The LCS 2005 dialect (`sip.ms_dialect = "2005"`): without `msrtc-event-categories` in the REGISTER
/// answer SIPE uses roaming ACL, pending watchers, `setPresence` by SOAP and `text/xml+msrtc.pidf`
/// batched (`adrl`) subscriptions, and the two SIPEs still see each other's states.
#[test]
fn sipes_in_the_lcs_2005_dialect_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let driver = build_driver(d);
    let data = d.join("data");
    let dom = format!("server.domain={DOMAIN}");
    let cli = |args: &[&str], stdin: &str| vienna_cli(&data, args, stdin);
    for u in ["alice", "bob"] {
        cli(&["user", "add", u, "--password-stdin"], &format!("{u}-secret\n"));
    }
    cli(&["contact", "add", "alice", "bob"], "");
    cli(&["contact", "add", "bob", "alice"], "");
    let mut server = Server::start(
        &data,
        &[
            "--set",
            &dom,
            "--set",
            "turn.enabled=false",
            "--set",
            "sip.ms_dialect=\"2005\"",
            "--set",
            "presence.notify_interval_ms=200",
        ],
    );
    let (tls, tcp) = (server.listener("sip", "tls"), server.listener("sip", "tcp"));
    let alice = Sipe::start(&driver, d, "alice", tls, "tls");
    let mut bob = Sipe::start(&driver, d, "bob", tcp, "tcp");
    wait("alice sees bob available", &server, &[&alice, &bob], &[], || {
        alice.states_of("bob").iter().any(|s| s == "available")
    });
    for state in ["busy", "away", "available"] {
        bob.send(&format!("status {state}"));
        wait(&format!("alice sees bob {state}"), &server, &[&alice, &bob], &[], || {
            alice.states_of("bob").last().map(String::as_str) == Some(state)
        });
    }
    assert!(alice.debug_text().contains("process_incoming_notify_msrtc"), "legacy documents were used");
    let sip = server.get("/api/v1/sip").json();
    assert!(sip["microsoft"]["publications"].as_u64().unwrap() >= 3, "setPresence by SOAP: {sip}");
    assert_eq!(sip["microsoft"]["ntlm"]["associations"], 2, "{sip}");
}
