//! Headless baresip 1.0 user agents (Debian package baresip, installed by the test command) for the
//! end-to-end tests: one configuration directory each under a test's temporary directory, loopback
//! ports only, a time limit on every process, killed when dropped.
//!
//! A test says what the agent needs ([`Builder`]: account line, contacts, extra modules, a tone, a SIP
//! trace in the log, a console, a number to dial) and then drives it over `ctrl_tcp`
//! ([`Baresip::command`], [`Control`]) and reads what it showed ([`Baresip::log_text`],
//! [`Baresip::presence_seen`]).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::PATIENCE;
use crate::ports::{free_port, free_udp_range};

/// Modules every agent loads (G.711, a sine source, file sinks, accounts, contacts, menu, `ctrl_tcp`).
const BASE_MODULES: &[&str] =
    &["g711.so", "ausine.so", "aufile.so", "uuid.so", "account.so", "contact.so", "menu.so", "ctrl_tcp.so"];
/// Modules loaded with `module_tmp` (used while starting, then unloaded).
const TMP_MODULES: &[&str] = &["uuid.so", "account.so"];
/// Modules loaded with `module_app` (applications, after the others).
const APP_MODULES: &[&str] = &["contact.so", "menu.so", "ctrl_tcp.so", "presence.so", "cons.so"];

/// What one agent is started with; see [`Baresip::builder`].
pub struct Builder {
    home: PathBuf,
    name: String,
    account: String,
    contacts: String,
    modules: Vec<&'static str>,
    tone: u32,
    seconds: u32,
    trace: bool,
    console: bool,
    dial: Option<String>,
}

impl Builder {
    /// Loads `modules` (file names such as `opus.so`, `srtp.so`, `presence.so`, `sndfile.so`) beside the
    /// base set. `sndfile.so` dumps what the agent sends and decodes into its directory.
    pub fn modules(mut self, modules: &[&'static str]) -> Builder {
        self.modules.extend_from_slice(modules);
        self
    }

    /// The `contacts` file (empty by default).
    pub fn contacts(mut self, contacts: impl Into<String>) -> Builder {
        self.contacts = contacts.into();
        self
    }

    /// The frequency of the sine the agent sends as its microphone (440 Hz by default).
    pub fn tone(mut self, hz: u32) -> Builder {
        self.tone = hz;
        self
    }

    /// baresip's own time limit (`-t`, 60 s by default); the process is also wrapped in `timeout`.
    pub fn seconds(mut self, seconds: u32) -> Builder {
        self.seconds = seconds;
        self
    }

    /// Writes the SIP trace (`-s -v`) to the log, line-buffered, for [`Baresip::presence_seen`] (without it
    /// the log is what baresip prints, block-buffered).
    pub fn trace(mut self) -> Builder {
        self.trace = true;
        self
    }

    /// Loads `cons.so` on a port of its own ([`Baresip::console`]): what baresip shows its user.
    pub fn console(mut self) -> Builder {
        self.console = true;
        self.modules.push("cons.so");
        self
    }

    /// Dials `uri` as soon as baresip has started.
    pub fn dial(mut self, uri: &str) -> Builder {
        self.dial = Some(uri.to_owned());
        self
    }

    /// Writes the configuration and starts baresip.
    pub fn start(self) -> Baresip {
        std::fs::create_dir_all(&self.home).unwrap();
        let (sip, ctrl) = (free_port(), free_port());
        let console = self.console.then(free_port);
        let rtp = free_udp_range(10);
        let mut config = format!(
            "sip_listen 127.0.0.1:{sip}\nnet_interface 127.0.0.1\ndns_server 127.0.0.1:53\n\
             audio_player aufile,/dev/null\naudio_source ausine,{}\nausrc_srate 48000\nausrc_channels 2\naudio_alert aufile,/dev/null\n\
             rtp_ports {rtp}-{}\nmodule_path /usr/lib/baresip/modules\nctrl_tcp_listen 127.0.0.1:{ctrl}\n",
            self.tone,
            rtp + 9
        );
        if let Some(port) = console {
            config.push_str(&format!("cons_listen 127.0.0.1:{port}\n"));
        }
        let mut modules: Vec<&str> = Vec::new();
        for m in BASE_MODULES.iter().chain(&self.modules) {
            if !modules.contains(m) {
                modules.push(m);
            }
        }
        // Codecs and media first, then the temporary modules, then the applications.
        modules.sort_by_key(|m| u8::from(TMP_MODULES.contains(m)) + 2 * u8::from(APP_MODULES.contains(m)));
        for m in modules {
            let kind = if TMP_MODULES.contains(&m) {
                "module_tmp"
            } else if APP_MODULES.contains(&m) {
                "module_app"
            } else {
                "module"
            };
            config.push_str(&format!("{kind} {m}\n"));
            if m == "sndfile.so" {
                config.push_str(&format!("snd_path {}\n", self.home.display()));
            }
        }
        std::fs::write(self.home.join("config"), config).unwrap();
        std::fs::write(self.home.join("accounts"), format!("{}\n", self.account)).unwrap();
        std::fs::write(self.home.join("contacts"), &self.contacts).unwrap();
        let log = self.home.join("stdout.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut command = Command::new("timeout");
        command.arg((self.seconds + 10).to_string());
        if self.trace {
            // Line-buffered output: the trace is read while baresip runs.
            command.args(["stdbuf", "-oL", "-eL"]);
        }
        command.args(["baresip", "-f"]).arg(&self.home);
        if self.trace {
            command.args(["-s", "-v"]);
        }
        if let Some(uri) = &self.dial {
            command.args(["-e", &format!("/dial {uri}")]);
        }
        let child = command
            .args(["-t", &self.seconds.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("baresip (package baresip) is installed by the test command");
        let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Baresip { name: self.name, home: self.home, child, log, ctrl: local(ctrl), console: console.map(local) }
    }
}

/// One running baresip.
pub struct Baresip {
    /// The name it was built with (for messages).
    pub name: String,
    /// Its configuration directory (also where `sndfile` dumps).
    pub home: PathBuf,
    child: Child,
    log: PathBuf,
    /// Its `ctrl_tcp` address.
    pub ctrl: SocketAddr,
    /// Its console (`cons`) address, with [`Builder::console`].
    pub console: Option<SocketAddr>,
}

impl Baresip {
    /// An agent named `name` with its directory under `root` and the `accounts` line `account` (for
    /// example `<sip:alice@localhost>;auth_pass=secret;outbound="sip:127.0.0.1:5060";regint=600`).
    pub fn builder(root: &Path, name: &str, account: impl Into<String>) -> Builder {
        Builder {
            home: root.join(format!("baresip-{name}")),
            name: name.to_owned(),
            account: account.into(),
            contacts: String::new(),
            modules: Vec::new(),
            tone: 440,
            seconds: 60,
            trace: false,
            console: false,
            dial: None,
        }
    }

    /// What baresip printed so far.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// What this agent was told about `peer`, NOTIFY by NOTIFY (one of online, busy, away, offline),
    /// read from the SIP trace ([`Builder::trace`]).
    pub fn presence_seen(&self, peer: &str) -> Vec<&'static str> {
        self.log_text()
            .split("\nNOTIFY sip:")
            .skip(1)
            .filter(|m| m.lines().any(|l| l.starts_with("From:") && l.contains(&format!("sip:{peer}@"))))
            .filter_map(|m| {
                // The trace marks the next message with a coloured "#" line.
                let m = m.split("\n\u{1b}").next().unwrap_or(m);
                if m.contains("<basic>closed</basic>") {
                    Some("offline")
                } else if m.contains("<rpid:busy/>") {
                    Some("busy")
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

    /// Whether this agent received a page-mode MESSAGE from `peer` with `text` as its body, read from the
    /// SIP trace ([`Builder::trace`]; the colour reset follows the body on its line).
    pub fn received_message(&self, peer: &str, text: &str) -> bool {
        self.log_text().split("\nMESSAGE sip:").skip(1).any(|m| {
            let m = m.split("\n\u{1b}").next().unwrap_or(m);
            m.lines().any(|l| l.starts_with("From:") && l.contains(&format!("sip:{peer}@")))
                && m.lines().any(|l| l.split('\u{1b}').next().unwrap_or(l).trim_end() == text)
        })
    }

    /// Runs one `ctrl_tcp` command without parameters and checks that baresip answered ok.
    pub fn command(&self, command: &str) {
        self.command_with(command, "");
    }

    /// Runs one `ctrl_tcp` command with `params` and checks that baresip answered ok.
    pub fn command_with(&self, command: &str, params: &str) {
        let mut control = self.control();
        control.send(command, params);
        let answer = control.wait(|m| m["response"] == true, || self.log_text());
        assert_eq!(answer["ok"], true, "baresip {command}: {answer}\n{}", self.log_text());
    }

    /// A `ctrl_tcp` connection for commands with parameters and for events.
    pub fn control(&self) -> Control {
        Control { stream: self.connect(self.ctrl), buf: Vec::new() }
    }

    /// Connects to `addr` of this agent (its control or console port), retrying while baresip starts.
    pub fn connect(&self, addr: SocketAddr) -> TcpStream {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match TcpStream::connect(addr) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                    return s;
                }
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => panic!("{}: cannot reach baresip at {addr}: {e}\n{}", self.name, self.log_text()),
            }
        }
    }

    /// Waits until baresip has exited (its time limit), at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("baresip {} did not finish within {limit:?}\n{}", self.name, self.log_text());
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        // SIGTERM to `timeout`, which passes it on to baresip; SIGKILL would leave baresip running.
        // SAFETY: kill(2) on a child we spawned and have not reaped; at worst it fails with ESRCH.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `ctrl_tcp` connection: commands out, responses and events in (netstrings of JSON).
pub struct Control {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Control {
    /// Sends `command` with `params`.
    pub fn send(&mut self, command: &str, params: &str) {
        let json = serde_json::json!({ "command": command, "params": params, "token": command }).to_string();
        self.stream.write_all(format!("{}:{json},", json.len()).as_bytes()).unwrap();
    }

    /// Reads messages until one matches `want`; panics with `context()` after [`PATIENCE`].
    pub fn wait(&mut self, want: impl Fn(&Value) -> bool, context: impl Fn() -> String) -> Value {
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
