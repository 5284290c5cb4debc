//! `vienna-load turn`: TURN relay load (RFC 8656 over UDP, long-term or TURN REST credentials).
//!
//! Every client has its own UDP socket and allocation, a permission and a channel to one peer (the
//! built-in echo peer by default). In data mode each client sends ChannelData at a fixed rate; the
//! echo comes back through the relay and is matched by sequence number for loss, reordering,
//! duplicates and round-trip latency. In hold mode the allocations are only held (and refreshed),
//! so the relay's memory per allocation can be read. Allocations are deleted at the end.
//!
//! The same machinery (sockets, workers, pacing, echo peer, phases, report) loads an MS-TURN relay for
//! `vienna-load msturn` ([`crate::msturn`]): only the control plane ([`msclient`]) and the framing of the
//! data differ ([`worker::Dialect`]); [`RelayArgs`] are the options both modes share.
//!
//! Clients reach the server over UDP, TCP or TLS (`--transport`; one connection per client, RFC 8656
//! §10.1, relaying to UDP peers as always).
//!
//! Left out for now: DTLS (and MS-TURN's TCP framing and pseudo-TLS: `msturn` is UDP only), RFC 8656
//! Send/Data indications (ChannelData only), IPv6 relays for IPv4 clients (REQUESTED-ADDRESS-FAMILY),
//! MESSAGE-INTEGRITY-SHA256, verification of response integrity.

pub mod client;
pub mod lifecycle;
pub mod msclient;
pub mod report;
pub mod worker;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use vienna_netio::{UdpOptions, bind_udp};

use crate::echo::EchoPeer;
use crate::framework::procstat::{ProcSampler, self_cpu_secs};
use crate::framework::progress::{Progress, RateMeter, human_us};
use crate::framework::series::{self, Collector, LatencyReport};
use crate::framework::stream;
use crate::framework::tls::TlsArgs;
use crate::framework::{Common, Finished, OutputArgs, StepResult, plot};
use crate::payload;
use crate::stats::Totals;
use crate::sys;
use client::Settings;
use msclient::MsSettings;
use report::{AllocationReport, ConfigReport, JitterReport, Report, TeardownReport, round3};
use worker::{ClientSocket, Counters, DataPlan, Dialect, Outcome, Shared, phase};

/// Largest `--duration`.
pub const MAX_DURATION_SECS: u64 = 3600;
/// Largest `--size`: the ChannelData frame must fit one batch slot and a 1500-byte path comfortably.
pub const MAX_SIZE: usize = 1400;

/// How the clients reach the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RelayTransport {
    /// A UDP socket per client; datagrams in `sendmmsg`/`recvmmsg` batches.
    Udp,
    /// A TCP connection per client (RFC 8656 §10.1); ChannelData padded to 4 bytes.
    Tcp,
    /// TLS over a TCP connection per client (the TURN server's TLS port, 5349 by default).
    Tls,
}

impl RelayTransport {
    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            RelayTransport::Udp => "udp",
            RelayTransport::Tcp => "tcp",
            RelayTransport::Tls => "tls",
        }
    }
}

/// Options of every relay mode (`turn`, `msturn`): server, clients, rate, payload, peer, threads, outputs.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// TURN server, host:port (its UDP, TCP or TLS port, by --transport).
    #[arg(long, visible_alias = "target")]
    pub server: String,
    /// Client transport (`turn` only; `msturn` is UDP).
    #[arg(long, value_enum, default_value_t = RelayTransport::Udp)]
    pub transport: RelayTransport,
    /// TLS options (`--transport tls`).
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Clients: one UDP socket (or TCP/TLS connection) and one allocation each.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=200_000))]
    pub clients: u64,
    /// Data packets per second per client.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Seconds of sending (data mode) or holding (--hold), 1..=3600.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_SECS))]
    pub duration: u64,
    /// Payload bytes per packet (24..=1400); ChannelData adds 4 bytes, an MS-TURN Send request about 80.
    #[arg(long, default_value_t = 172)]
    pub size: usize,
    /// Peer to relay to (it must echo every datagram to its source); default: the built-in echo peer.
    #[arg(long)]
    pub peer: Option<String>,
    /// Address of the built-in echo peer [default: 127.0.0.1:0, or [::1]:0 for an IPv6 server].
    #[arg(long, conflicts_with = "peer")]
    pub echo_bind: Option<SocketAddr>,
    /// Threads of the built-in echo peer (sharing its port with SO_REUSEPORT).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub echo_threads: u64,
    /// Local address of the client sockets [default: 0.0.0.0 or ::].
    #[arg(long)]
    pub local_ip: Option<IpAddr>,
    /// Allocate (with permission and channel, or active destination), hold for --duration without data,
    /// then delete.
    #[arg(long)]
    pub hold: bool,
    /// Outputs.
    #[command(flatten)]
    pub out: OutputArgs,
    /// Load threads [default: one per core, at most one per client].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Most set-ups (Allocate, CreatePermission, ChannelBind chains) in flight per thread.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub setup_window: u64,
    /// Seconds set-up may take before the run goes on with the clients that are ready.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub setup_timeout: u64,
    /// Milliseconds to wait for echoes after the last send; later ones count as lost.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=30_000))]
    pub drain_ms: u64,
}

/// Arguments of `vienna-load turn`.
#[derive(Debug, Clone, clap::Args)]
pub struct TurnArgs {
    /// Server, clients, rate, payload, peer, outputs.
    #[command(flatten)]
    pub relay: RelayArgs,
    /// Username; with --rest-secret the user part of the REST username `expiry:user` (optional there).
    #[arg(long)]
    pub user: Option<String>,
    /// Password for the long-term credential mechanism.
    #[arg(long, required_unless_present = "rest_secret")]
    pub password: Option<String>,
    /// TURN REST shared secret: derive username `expiry:user` and password base64(HMAC-SHA1(secret, username)).
    #[arg(long, conflicts_with = "password")]
    pub rest_secret: Option<String>,
}

/// The dialect of a relay run before the peer is known, and how its credentials are named in the report.
pub struct Plan {
    /// Standard TURN (`username`, `password`) or MS-TURN settings without the peer.
    pub dialect: PlanDialect,
    /// Username for the report (MRAS tokens are binary: base64).
    pub username: String,
    /// `long-term`, `rest`, `mras` or `account`.
    pub credentials: &'static str,
}

/// See [`Plan`].
pub enum PlanDialect {
    /// RFC 8656.
    Standard {
        /// USERNAME.
        username: String,
        /// Password.
        password: String,
    },
    /// MS-TURN (the peer is filled in by [`run_relay`]).
    Ms(MsSettings),
}

/// Runs `vienna-load turn`.
pub fn run(args: TurnArgs) -> anyhow::Result<Finished> {
    let run_time = Duration::from_secs(args.relay.setup_timeout + args.relay.duration);
    let (username, password) = credentials(&args, run_time)?;
    let plan = Plan {
        username: username.clone(),
        credentials: if args.rest_secret.is_some() { "rest" } else { "long-term" },
        dialect: PlanDialect::Standard { username, password },
    };
    run_relay(&args.relay, plan)
}

/// Runs a relay mode: `turn` or `msturn`, by `plan`.
pub fn run_relay(args: &RelayArgs, plan: Plan) -> anyhow::Result<Finished> {
    let rate_ok = args.rate > 0.0 && args.rate <= 1_000_000.0;
    if !args.hold && !rate_ok {
        bail!("--rate must be above 0 and at most 1000000 packets/s per client");
    }
    if !(payload::HEADER_LEN..=MAX_SIZE).contains(&args.size) {
        bail!("--size must be {}..={MAX_SIZE} bytes", payload::HEADER_LEN);
    }
    let server = resolve(&args.server).context("--server")?;
    if args.transport != RelayTransport::Udp && matches!(plan.dialect, PlanDialect::Ms(_)) {
        bail!("msturn runs over UDP only for now (MS-TURN's TCP framing and pseudo-TLS are not built)");
    }
    let tls = args.tls.client(args.transport == RelayTransport::Tls, &args.server)?;
    let sampler = args.out.check()?;
    let clients = usize::try_from(args.clients)?;
    let threads =
        args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).clamp(1, clients);

    sys::catch_signals();
    let nofile = sys::raise_nofile_limit().context("reading RLIMIT_NOFILE")?;
    let needed = args.clients + 2 * threads as u64 + 2 * args.echo_threads + 64;
    if needed > nofile {
        bail!(
            "--clients {} needs about {needed} file descriptors (one socket per client) but the open-file limit \
             is {nofile} even after raising the soft limit to the hard limit; raise the hard limit \
             (ulimit -Hn, LimitNOFILE=) or use fewer clients",
            args.clients
        );
    }

    let echo = match &args.peer {
        Some(_) => None,
        None => {
            let bind = args.echo_bind.unwrap_or(match server {
                SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
            });
            Some(EchoPeer::start(bind, args.echo_threads as usize)?)
        }
    };
    let peer = match (&args.peer, &echo) {
        (Some(p), _) => resolve(p).context("--peer")?,
        (None, Some(e)) => e.addr,
        (None, None) => unreachable!("the echo peer runs when --peer is absent"),
    };

    let local_ip = args.local_ip.unwrap_or(match server {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let options = UdpOptions { reuse_port: false, recv_buffer: if args.hold { 0 } else { 1 << 20 }, send_buffer: 0 };
    let mut sockets = Vec::with_capacity(clients);
    for i in 0..clients {
        let s = match args.transport {
            RelayTransport::Udp => bind_udp(SocketAddr::new(local_ip, 0), options)
                .map(ClientSocket::Udp)
                .with_context(|| format!("creating the socket of client {i} on {local_ip}"))?,
            RelayTransport::Tcp | RelayTransport::Tls => stream::connect(server, tls.as_ref())
                .map(ClientSocket::Stream)
                .with_context(|| format!("connecting client {i}"))?,
        };
        sockets.push(s);
    }

    let data = (!args.hold).then_some(DataPlan {
        rate: args.rate,
        duration: Duration::from_secs(args.duration),
        size: args.size,
        drain: Duration::from_millis(args.drain_ms),
    });
    let ms = match &plan.dialect {
        PlanDialect::Ms(m) => Some((m.active_destination, m.version)),
        PlanDialect::Standard { .. } => None,
    };
    let dialect = match plan.dialect {
        PlanDialect::Standard { username, password } => Dialect::Standard(Settings { username, password, peer }),
        PlanDialect::Ms(m) => Dialect::Ms(MsSettings { peer, ..m }),
    };
    let cfg = Arc::new(worker::Config { dialect, server, data, setup_window: args.setup_window as usize });
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(phase::SETUP),
        base: Instant::now(),
        start_ns: AtomicU64::new(0),
        cut: AtomicBool::new(false),
        counters: (0..threads).map(|_| Counters::default()).collect(),
        collector: Collector::default(),
    });

    // Contiguous client ranges, the first `clients % threads` one longer.
    let mut handles = Vec::with_capacity(threads);
    let mut first = 0usize;
    for t in 0..threads {
        let n = clients / threads + usize::from(t < clients % threads);
        let socks: Vec<_> = sockets.drain(..n).collect();
        let (cfg, shared) = (cfg.clone(), shared.clone());
        let first_client = u32::try_from(first)?;
        let h = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || worker::run(t, socks, first_client, cfg, shared))?;
        handles.push(h);
        first += n;
    }

    let config = ConfigReport {
        server: server.to_string(),
        peer: peer.to_string(),
        builtin_peer: echo.is_some(),
        dialect: if ms.is_some() { "msturn" } else { "turn" },
        transport: args.transport.name(),
        username: plan.username,
        credentials: plan.credentials,
        rest_credentials: plan.credentials == "rest",
        msturn_data: ms.map(|(active, _)| if active { "raw" } else { "send" }),
        ms_version: ms.map(|(_, v)| v),
        clients: args.clients,
        rate_per_client_pps: args.rate,
        duration_secs: args.duration,
        size: args.size,
        threads,
        hold: args.hold,
        nofile_limit: nofile,
    };
    let run = Conductor::new(args, shared.clone(), handles, sampler).conduct()?;
    let peer_received = echo.as_ref().map(|e| e.counters.received.load(Relaxed));
    drop(echo);
    let report = build_report(args, config, &run, peer_received, &shared.collector);
    let summary = report.summary();
    print!("{summary}");
    let _ = std::io::stdout().flush();
    let figure = || {
        let title = format!(
            "vienna-load {}: {} clients x {} pps -> {}",
            report.label(),
            report.config.clients,
            report.config.rate_per_client_pps,
            report.config.server
        );
        plot::timeline_figure(
            title,
            summary.lines().skip(1).map(str::to_owned).collect(),
            &report.common.timeline,
            "echoed",
        )
    };
    args.out.write(&report, figure, &report.common.timeline)?;
    let exit = if report.interrupted {
        ExitCode::from(130)
    } else if report.allocations.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };
    let step = StepResult {
        offered_rate: report.requested_rate_pps,
        achieved_rate: report.received_rate_pps,
        loss_percent: report.loss_percent,
        failure_percent: if args.clients > 0 {
            round3(report.allocations.failed as f64 * 100.0 / args.clients as f64)
        } else {
            0.0
        },
        latency_us: report.latency_us.clone(),
        server_cpu_secs: report.common.server_process.as_ref().map(|p| p.cpu_secs),
        interrupted: report.interrupted,
    };
    Ok(Finished { exit, step, json: serde_json::to_value(&report)? })
}

fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("cannot resolve {addr:?} (host:port)"))?
        .next()
        .with_context(|| format!("{addr:?} resolves to no address"))
}

fn credentials(args: &TurnArgs, run_time: Duration) -> anyhow::Result<(String, String)> {
    match (&args.rest_secret, &args.password) {
        (Some(secret), _) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
            // Valid for the whole run and an hour more.
            let expiry = now + run_time.as_secs() + 3600;
            let username = match &args.user {
                Some(u) => format!("{expiry}:{u}"),
                None => expiry.to_string(),
            };
            let password = vienna_turn::credentials::rest_password(secret.as_bytes(), &username);
            Ok((username, password))
        }
        (None, Some(password)) => match &args.user {
            Some(u) => Ok((u.clone(), password.clone())),
            None => bail!("--user is required with --password"),
        },
        (None, None) => bail!("give --password or --rest-secret"),
    }
}

/// What the main thread collected.
struct RunResult {
    outcomes: Vec<Outcome>,
    setup_secs: f64,
    hold_secs: f64,
    start_ns: u64,
    interrupted: bool,
    sampler: ProcSampler,
}

/// The main thread: moves the workers through the phases, shows progress, enforces the time limits.
struct Conductor {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<std::io::Result<Outcome>>>,
    clients: u64,
    hold: bool,
    duration: Duration,
    setup_timeout: Duration,
    hard_deadline: Instant,
    progress: Progress,
    interrupted: bool,
    sampler: Option<ProcSampler>,
}

impl Conductor {
    fn new(
        args: &RelayArgs,
        shared: Arc<Shared>,
        handles: Vec<JoinHandle<std::io::Result<Outcome>>>,
        sampler: ProcSampler,
    ) -> Conductor {
        let duration = Duration::from_secs(args.duration);
        let setup_timeout = Duration::from_secs(args.setup_timeout);
        let slack = Duration::from_millis(args.drain_ms) + worker::TEARDOWN_LIMIT + Duration::from_secs(15);
        Conductor {
            shared,
            handles,
            clients: args.clients,
            hold: args.hold,
            duration,
            setup_timeout,
            hard_deadline: Instant::now() + setup_timeout + duration + slack,
            progress: Progress::new(),
            interrupted: false,
            sampler: Some(sampler),
        }
    }

    fn sum(&self, f: impl Fn(&Counters) -> u64) -> u64 {
        self.shared.counters.iter().map(f).sum()
    }

    fn all(&self, f: impl Fn(&Counters) -> bool) -> bool {
        self.shared.counters.iter().all(f)
    }

    /// Sleeps a tick; `Err` if a worker died or the hard deadline passed.
    fn tick(&mut self) -> anyhow::Result<()> {
        std::thread::sleep(Duration::from_millis(50));
        if sys::stop_requested() {
            self.interrupted = true;
        }
        if let Some(s) = &mut self.sampler {
            s.poll(Instant::now());
        }
        if Instant::now() > self.hard_deadline {
            bail!("hard time limit reached; the run did not end by itself");
        }
        if let Some(i) = self.handles.iter().position(|h| h.is_finished())
            && !self.shared.counters[i].finished.load(Relaxed)
        {
            bail!("load thread {i} stopped early");
        }
        Ok(())
    }

    fn conduct(mut self) -> anyhow::Result<RunResult> {
        match self.phases() {
            Ok((setup_secs, hold_secs, start_ns)) => {
                let outcomes = self.join()?;
                let sampler = self.sampler.take().expect("the sampler is taken once");
                Ok(RunResult { outcomes, setup_secs, hold_secs, start_ns, interrupted: self.interrupted, sampler })
            }
            Err(e) => {
                self.shared.phase.store(phase::EXIT, Relaxed);
                self.progress.finish();
                // Report the worker's own error if it has one.
                for h in self.handles.drain(..) {
                    if h.is_finished()
                        && let Ok(Err(io)) = h.join()
                    {
                        return Err(anyhow::Error::from(io).context(e.to_string()));
                    }
                }
                Err(e)
            }
        }
    }

    fn phases(&mut self) -> anyhow::Result<(f64, f64, u64)> {
        let t0 = Instant::now();
        // Set-up.
        loop {
            self.tick()?;
            let (settled, ready) = (self.sum(|c| c.settled.load(Relaxed)), self.sum(|c| c.ready.load(Relaxed)));
            self.progress.show(format!(
                "setup: {settled}/{} done, {ready} ready, {} failed",
                self.clients,
                settled - ready.min(settled)
            ));
            if settled >= self.clients || self.interrupted || t0.elapsed() > self.setup_timeout {
                break;
            }
        }
        let setup_secs = t0.elapsed().as_secs_f64();
        let mut hold_secs = 0.0;
        let mut start_ns = 0;
        let ready = self.sum(|c| c.ready.load(Relaxed));
        // With no client ready there is nothing to send: straight to teardown.
        if !self.interrupted && (self.hold || ready > 0) {
            if self.hold {
                self.shared.phase.store(phase::HOLD, Relaxed);
                self.progress.suspend(|| {
                    println!(
                        "HOLDING allocations={ready} failed={} seconds={}",
                        self.clients - ready,
                        self.duration.as_secs()
                    );
                    let _ = std::io::stdout().flush();
                });
                let h0 = Instant::now();
                if let Some(s) = &mut self.sampler {
                    s.start(h0);
                }
                while h0.elapsed() < self.duration && !self.interrupted {
                    self.tick()?;
                    let secs = h0.elapsed().as_secs();
                    let ready = self.sum(|c| c.ready.load(Relaxed));
                    self.progress.show(format!("hold: {secs}/{} s, {ready} allocations", self.duration.as_secs()));
                }
                hold_secs = h0.elapsed().as_secs_f64();
                if let Some(s) = &mut self.sampler {
                    s.finish(Instant::now());
                }
            } else {
                start_ns = (self.shared.base.elapsed() + Duration::from_millis(20)).as_nanos() as u64;
                self.shared.start_ns.store(start_ns, Relaxed);
                let origin = self.shared.base + Duration::from_nanos(start_ns);
                if let Some(s) = &mut self.sampler {
                    s.start(origin);
                }
                self.shared.phase.store(phase::RUN, Relaxed);
                let (mut sent_rate, mut recv_rate) = (RateMeter::default(), RateMeter::default());
                let mut stopped_sending = None;
                while !self.all(|c| c.data_done.load(Relaxed)) {
                    self.tick()?;
                    if self.interrupted {
                        self.shared.cut.store(true, Relaxed);
                    }
                    let now = Instant::now();
                    let secs = now.saturating_duration_since(origin).as_secs_f64();
                    if secs >= self.duration.as_secs_f64() && stopped_sending.is_none() {
                        stopped_sending = Some(now);
                        if let Some(s) = &mut self.sampler {
                            s.finish(now);
                        }
                    }
                    let (sent, recv) = (self.sum(|c| c.sent.load(Relaxed)), self.sum(|c| c.received.load(Relaxed)));
                    self.shared.collector.close_before(secs as usize);
                    let last = self.shared.collector.last_closed().map_or_else(
                        || "-".to_owned(),
                        |(_, l)| format!("p50 {} p99 {} max {}", human_us(l.p50), human_us(l.p99), human_us(l.max)),
                    );
                    let lost = sent.saturating_sub(recv);
                    self.progress.show(format!(
                        "run: {:.0}/{} s, {:.0} pps sent, {:.0} pps back, unanswered {lost} ({:.2}%), latency {last}",
                        secs.min(self.duration.as_secs_f64()),
                        self.duration.as_secs(),
                        sent_rate.update(sent, now),
                        recv_rate.update(recv, now),
                        if sent > 0 { lost as f64 * 100.0 / sent as f64 } else { 0.0 }
                    ));
                }
                if stopped_sending.is_none()
                    && let Some(s) = &mut self.sampler
                {
                    s.finish(Instant::now());
                }
            }
        }
        // Teardown.
        self.shared.phase.store(phase::TEARDOWN, Relaxed);
        let d0 = Instant::now();
        while !self.all(|c| c.finished.load(Relaxed)) {
            self.tick()?;
            let deleted = self.sum(|c| c.deleted.load(Relaxed));
            self.progress.show(format!("teardown: {deleted} deleted"));
            if d0.elapsed() > worker::TEARDOWN_LIMIT + Duration::from_secs(5) {
                bail!("load threads did not finish deleting allocations");
            }
        }
        self.progress.finish();
        Ok((setup_secs, hold_secs, start_ns))
    }

    fn join(&mut self) -> anyhow::Result<Vec<Outcome>> {
        self.shared.phase.store(phase::EXIT, Relaxed);
        let mut outcomes = Vec::new();
        for (i, h) in self.handles.drain(..).enumerate() {
            match h.join() {
                Ok(Ok(o)) => outcomes.push(o),
                Ok(Err(e)) => return Err(anyhow::Error::from(e).context(format!("load thread {i}"))),
                Err(_) => bail!("load thread {i} panicked"),
            }
        }
        Ok(outcomes)
    }
}

fn build_report(
    args: &RelayArgs,
    config: ConfigReport,
    run: &RunResult,
    peer_received: Option<u64>,
    collector: &Collector,
) -> Report {
    let mut totals = Totals::default();
    let mut hist = series::histogram();
    let (mut ready, mut deleted, mut delete_failed, mut refresh_failures, mut skipped, mut recv_errors) =
        (0, 0, 0, 0, 0, 0);
    let mut by_code = BTreeMap::new();
    let mut by_step = BTreeMap::new();
    let mut delete_by_code = BTreeMap::new();
    let mut last_send: Option<u64> = None;
    for o in &run.outcomes {
        totals.merge(&o.totals);
        let _ = hist.add(&o.latency);
        ready += o.ready;
        deleted += o.deleted;
        delete_failed += o.delete_failed;
        refresh_failures += o.refresh_failures;
        skipped += o.skipped;
        recv_errors += o.recv_errors;
        for ((step, code), n) in &o.failures {
            *by_code.entry(code.clone()).or_insert(0) += n;
            *by_step.entry(step.clone()).or_insert(0) += n;
        }
        for (code, n) in &o.delete_failures {
            *delete_by_code.entry(code.clone()).or_insert(0) += n;
        }
        if let Some((_, last)) = o.send_window {
            last_send = Some(last_send.map_or(last, |l| l.max(last)));
        }
    }
    let requested_rate = args.rate * args.clients as f64;
    // From the planned start to the last send, plus that last packet's own interval.
    let duration = if args.hold {
        run.hold_secs
    } else {
        last_send.map_or(0.0, |l| l.saturating_sub(run.start_ns) as f64 / 1e9 + config.threads as f64 / requested_rate)
    };
    let per_sec = |n: u64| if duration > 0.0 { n as f64 / duration } else { 0.0 };
    let relayed = match peer_received {
        Some(p) => per_sec(p + totals.received),
        None => per_sec(2 * totals.received),
    };
    let latency = LatencyReport::of(&hist);
    let jitters: Vec<f64> = run.outcomes.iter().flat_map(|o| o.jitter_ns.iter().copied()).collect();
    let jitter = JitterReport {
        clients: jitters.len() as u64,
        mean: round3(if jitters.is_empty() {
            0.0
        } else {
            jitters.iter().sum::<f64>() / jitters.len() as f64 / 1000.0
        }),
        max: round3(jitters.iter().copied().fold(0.0, f64::max) / 1000.0),
    };
    let bins: Vec<_> = run.outcomes.iter().map(|o| o.bins.clone()).collect();
    let length = if args.hold { Duration::from_secs_f64(run.hold_secs) } else { Duration::from_secs(args.duration) };
    let common = Common {
        timeline: series::timeline(&bins, &collector.finish(), &run.sampler.samples, !args.hold, length),
        server_process: run.sampler.report(),
        loader_cpu_secs: round3(self_cpu_secs()),
    };
    Report {
        mode: if args.hold { "hold" } else { "data" },
        config,
        allocations: AllocationReport {
            requested: args.clients,
            ok: ready,
            failed: args.clients - ready,
            failed_by_code: by_code,
            failed_by_step: by_step,
            setup_secs: round3(run.setup_secs),
        },
        sent: totals.sent,
        received: totals.received,
        lost: totals.lost,
        loss_percent: round3(totals.loss_percent()),
        reordered: totals.reordered,
        duplicates: totals.duplicates,
        send_dropped: totals.send_dropped,
        skipped_not_ready: skipped,
        foreign: totals.foreign,
        requested_rate_pps: if args.hold { 0.0 } else { round3(requested_rate) },
        achieved_rate_pps: round3(per_sec(totals.sent)),
        received_rate_pps: round3(per_sec(totals.received)),
        relayed_datagrams_per_sec: round3(relayed),
        peer_received,
        latency_us: latency,
        jitter_us: jitter,
        duration_secs: round3(duration),
        teardown: TeardownReport { deleted, delete_failed, delete_failed_by_code: delete_by_code },
        refresh_failures,
        recv_errors,
        interrupted: run.interrupted,
        common,
    }
}
