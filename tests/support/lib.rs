//! Helpers for the end-to-end tests: start the real `vienna` binary on ephemeral loopback ports, read its
//! JSON log, talk HTTP to it, stop it with a signal or kill it.
//!
//! The binary is the one cargo built for this profile (`target/<profile>/vienna`); the README's test
//! command builds it before the tests run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod baresip;
pub mod media;
pub mod ua;

/// How long any wait in these tests may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Path of the `vienna` binary of the profile these tests were built with.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/vienna
    let path = exe.parent().and_then(Path::parent).expect("target dir").join("vienna");
    assert!(path.exists(), "{} is missing: run `cargo build --bins` before the tests", path.display());
    path
}

/// A `vienna` command with `--data-dir dir`.
pub fn vienna(data_dir: &Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.arg("--data-dir").arg(data_dir).env_remove("VIENNA_CONFIG").env_remove("RUST_LOG");
    cmd
}

/// Runs a `vienna` command to completion with `stdin` as its standard input.
pub fn run(data_dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = vienna(data_dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vienna");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    wait_output(child)
}

fn wait_output(child: Child) -> Output {
    let pid = child.id();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(output) => output.expect("wait for vienna"),
        Err(_) => {
            signal(pid, libc::SIGKILL);
            panic!("vienna (pid {pid}) did not finish within {PATIENCE:?}");
        }
    }
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a pid we spawned; at worst it fails with ESRCH.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// A running `vienna serve`.
pub struct Server {
    child: Option<Child>,
    lines: Receiver<Value>,
    log: Arc<Mutex<Vec<String>>>,
    /// Address of the admin HTTP listener.
    pub admin: SocketAddr,
}

impl Server {
    /// Starts `vienna serve` on `data_dir` with JSON logs, every listener on an ephemeral port, and
    /// `extra` arguments; returns once the server logged that it is ready.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        let mut child = vienna(data_dir)
            .args(["serve", "--set", "log.format=json", "--set", "admin.listen=127.0.0.1:0"])
            // Every listener on a free port, so tests run in parallel.
            .args(["--set", "turn.udp_port=0", "--set", "turn.tcp_port=0", "--set", "turn.tls_port=0"])
            .args(["--set", "turn.ms_tcp_port=0"])
            .args(["--set", "sip.udp_port=0", "--set", "sip.tcp_port=0", "--set", "sip.tls_port=0"])
            // One MCU worker (its port is free already): one listener line, whatever the core count.
            .args(["--set", "mcu.workers=1"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vienna serve");
        let (tx, lines) = channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line.clone());
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(value);
                }
            }
        });
        let mut server = Server { child: Some(child), lines, log, admin: "0.0.0.0:0".parse().unwrap() };
        let line = server.wait_log(|l| l["message"] == "listening" && l["role"] == "admin");
        server.admin = line["address"].as_str().expect("address").parse().expect("socket address");
        server.wait_log(|l| l["message"] == "ready");
        server
    }

    /// Waits for a log line matching `matches`; panics with the log so far after [`PATIENCE`].
    pub fn wait_log(&mut self, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if matches(&line) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("log line not seen; log so far:\n{}", self.log_text())
                }
            }
        }
    }

    /// The address of the listener of `role` and `protocol`, from the start-up log.
    pub fn listener(&mut self, role: &str, protocol: &str) -> SocketAddr {
        let line = self.log.lock().unwrap().iter().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["message"] == "listening" && v["role"] == role && v["protocol"] == protocol).then_some(v)
        });
        let line = line.unwrap_or_else(|| panic!("no {role}/{protocol} listener in log:\n{}", self.log_text()));
        line["address"].as_str().expect("address").parse().expect("socket address")
    }

    /// Everything the server logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `sig` and waits for the process to exit.
    pub fn stop_with(mut self, sig: libc::c_int) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id(), sig);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("vienna did not exit after signal {sig}; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET over plain HTTP/1.1 on the admin listener.
    pub fn get(&self, path: &str) -> HttpResponse {
        http_get(self.admin, path, &[])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// Body as text.
    pub body: String,
}

impl HttpResponse {
    /// The body parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// GET `path` from `addr` with HTTP/1.1 and `Connection: close`; extra header lines in `headers`.
pub fn http_get(addr: SocketAddr, path: &str, headers: &[&str]) -> HttpResponse {
    let mut stream = TcpStream::connect_timeout(&addr, PATIENCE).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&String::from_utf8_lossy(&raw))
}

/// Sends `method path` with `body` to `addr` (HTTP/1.1, `Connection: close`) and reads the response.
pub fn http_request(addr: SocketAddr, method: &str, path: &str, content_type: &str, body: &str) -> HttpResponse {
    let mut stream = TcpStream::connect_timeout(&addr, PATIENCE).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&String::from_utf8_lossy(&raw))
}

fn parse_response(text: &str) -> HttpResponse {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    HttpResponse { status, headers, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// Adds an account through the CLI, asserting success.
pub fn add_user(data_dir: &Path, uri: &str, password: &str) {
    let out = run(data_dir, &["user", "add", uri, "--password-stdin"], &format!("{password}\n"));
    assert!(out.status.success(), "user add {uri} failed: {}", stderr(&out));
}

/// Running SIPp (Debian package sip-tester) against a server: one call of a scenario in tests/sipp/,
/// bounded by `-timeout` and a `timeout` around it, on loopback.
pub mod sipp {
    use std::net::{SocketAddr, UdpSocket};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Output, Stdio};

    use super::Server;

    /// The scenario file `name` in tests/sipp/.
    pub fn scenario(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp").join(name)
    }

    /// A free UDP port on loopback (free when asked; SIPp binds it right after).
    pub fn free_port() -> u16 {
        UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    /// A SIPp command making one call of `file` against `server` from local port `port`, with `args`;
    /// errors go to `DIR/FILE-PORT-errors.log`.
    pub fn command(dir: &Path, server: SocketAddr, file: &str, port: u16, args: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.arg("40")
            .arg("sipp")
            .arg(server.to_string())
            .arg("-sf")
            .arg(scenario(file))
            .args(["-m", "1", "-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin", "-timeout", "30"])
            .args(["-key", "domain", "localhost", "-trace_err", "-error_file"])
            .arg(dir.join(format!("{file}-{port}-errors.log")))
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null());
        cmd
    }

    /// Starts `command` in the background.
    pub fn spawn(command: &mut Command) -> Child {
        command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("sipp (package sip-tester)")
    }

    /// Every SIPp error log in `dir`.
    pub fn errors(dir: &Path) -> String {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with("errors.log"))
            .map(|e| {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                format!("{}:\n{text}\n", e.file_name().to_string_lossy())
            })
            .collect()
    }

    /// Panics with SIPp's errors and the server log unless the SIPp run succeeded.
    pub fn expect_success(server: &Server, dir: &Path, output: std::io::Result<Output>, what: &str) {
        let output = output.expect("sipp (package sip-tester) is installed by the test command");
        if !output.status.success() {
            let stdout = String::from_utf8_lossy(&output.stdout);
            let lines: Vec<&str> = stdout.lines().collect();
            panic!(
                "{what}: sipp exited with {}\n--- sipp errors ---\n{}\n--- sipp output (tail) ---\n{}\n--- server log ---\n{}",
                output.status,
                errors(dir),
                lines[lines.len().saturating_sub(15)..].join("\n"),
                server.log_text()
            );
        }
    }

    /// Waits for a background SIPp run and panics unless it succeeded.
    pub fn expect_child_success(server: &Server, dir: &Path, child: &mut Child, what: &str) {
        let status = child.wait().expect("wait for sipp");
        assert!(
            status.success(),
            "{what}: sipp exited with {status}\n{}\n--- server log ---\n{}",
            errors(dir),
            server.log_text()
        );
    }

    /// Registers `user` (password `password`) with its Contact at `contact_port` (tests/sipp/register.xml).
    pub fn register(server: &Server, dir: &Path, sip: SocketAddr, user: &str, password: &str, contact_port: u16) {
        let out = command(dir, sip, "register.xml", free_port(), &["-s", user, "-au", user, "-ap", password])
            .args(["-key", "contact_port", &contact_port.to_string()])
            .output();
        expect_success(server, dir, out, &format!("REGISTER {user}"));
    }
}

impl Server {
    /// The value of metric `name` (a line `name value`) in `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let body = self.get("/metrics").body;
        body.lines()
            .find_map(|l| {
                l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{body}"))
    }

    /// Polls `path` on the admin API until `ok` holds for its JSON; panics with the last answer after
    /// [`PATIENCE`].
    pub fn wait_json(&self, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let v = self.get(path).json();
            if ok(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{path} never satisfied the condition; last: {v}\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
