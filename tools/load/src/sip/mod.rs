//! `vienna-load sip`: SIP registrar and proxy load over UDP or TCP (RFC 3261), against Vienna, Kamailio or any
//! server that registers users and routes between them.
//!
//! Scenarios: `register` (REGISTER, answering the Digest challenge), `message` (every user registers
//! first, then MESSAGE from user to user, answered 200 by the callee's UA inside this tool), `call`
//! (INVITE, 180, 200, ACK, BYE after `--hold-ms`, the callee answering inside this tool). The rate is
//! operations per second for all users together; `--count` and `--duration` both bound the run, and
//! `--concurrency` bounds operations in flight. The report counts operations, transactions, challenges,
//! retransmissions and responses by code, with the operation latency (to the final 2xx; for calls to the
//! 200 of the INVITE) and every transaction's response latency.
//!
//! The threads and their user agents are in [`ua`]; users come from a pattern or a file ([`users`]).

pub mod ua;
pub mod users;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use vienna_sip::transaction::TimerConfig;

use crate::framework::procstat::{ProcSampler, self_cpu_secs};
use crate::framework::progress::{Progress, RateMeter, human_us};
use crate::framework::series::{self, Collector, LatencyReport, Timeline, round3};
use crate::framework::tls::TlsArgs;
use crate::framework::{Common, Finished, OutputArgs, StepResult, plot};
use crate::sys;
use ua::{AlgorithmChoice, AuthMode, Callee, Config, Counters, Outcome, Scenario, Shared, phase};
use users::UserSpec;

/// Largest `--duration`.
pub const MAX_DURATION_SECS: u64 = 3600;

/// What `sip` loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SipScenario {
    /// REGISTER with Digest.
    Register,
    /// MESSAGE between registered users.
    Message,
    /// INVITE/200/ACK, then BYE.
    Call,
}

/// SIP transport of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SipTransport {
    /// UDP: retransmissions on timers, batched socket calls.
    Udp,
    /// TCP: one connection per socket (`--sockets`), RFC 3261 §18.3 framing.
    Tcp,
    /// TLS over TCP (RFC 3261 §26.3.1): as TCP, each connection with its own TLS session, the server's
    /// certificate checked against `--tls-ca` (or not, with `--tls-no-verify`).
    Tls,
}

/// Options every SIP-based mode shares (target, users, credentials, timers, sockets, threads).
#[derive(Debug, Clone, clap::Args)]
pub struct SipCommon {
    /// SIP server, host:port.
    #[arg(long, visible_alias = "server")]
    pub target: String,
    /// Transport.
    #[arg(long, value_enum, default_value_t = SipTransport::Udp)]
    pub transport: SipTransport,
    /// TLS options (`--transport tls`).
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Domain of the users' addresses and of REGISTER's Request-URI.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Number of users, named by --user-pattern (with --users-file: at most this many) [sip default: 100;
    /// presence: presentities + watchers].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub users: Option<u64>,
    /// User name pattern; `{n}` is the user's number.
    #[arg(long, default_value = "user{n}")]
    pub user_pattern: String,
    /// Password pattern; `{n}` is the user's number.
    #[arg(long, default_value = "pw-user{n}")]
    pub password_pattern: String,
    /// Number of the first user.
    #[arg(long, default_value_t = 0)]
    pub first_user: u64,
    /// Users from a file: `name;password` per line (SIPp injection files work).
    #[arg(long, value_name = "FILE")]
    pub users_file: Option<PathBuf>,
    /// How credentials are sent: `challenge` answers a challenge in every operation (as SIPp scenarios
    /// do); `reuse` caches each user's nonce and counts nc up.
    #[arg(long, value_enum, default_value_t = AuthMode::Reuse)]
    pub auth: AuthMode,
    /// Digest algorithm to answer.
    #[arg(long, value_enum, default_value_t = AlgorithmChoice::Best)]
    pub algorithm: AlgorithmChoice,
    /// Local UDP sockets (or TCP connections) in all [default: one per thread]; users share them round
    /// robin, each has its own transaction layer.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=65_000))]
    pub sockets: Option<u64>,
    /// Local address of the sockets [default: 127.0.0.1, or ::1 for an IPv6 target].
    #[arg(long)]
    pub local_ip: Option<IpAddr>,
    /// First local UDP port: socket `i` binds PORT+i [default: ports the system picks]. Fixed ports keep
    /// the users' Contacts the same from run to run, so a registrar refreshes their bindings instead of
    /// adding new ones.
    #[arg(long, value_name = "PORT")]
    pub local_port: Option<u16>,
    /// RFC 3261 T1 in milliseconds (retransmission start; timeouts after 64*T1).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub t1_ms: u64,
    /// RFC 3261 T4 in milliseconds: how long a finished client transaction absorbs retransmitted
    /// responses (Timer K). 0 forgets it at once (late copies are counted as stray), which saves the
    /// load generator memory and CPU at high rates.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub t4_ms: u64,
    /// Load threads [default: one per 10,000 operations/s asked for, at most one per core and one per
    /// user].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Most set-up operations (REGISTER, SUBSCRIBE) in flight per thread.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub setup_window: u64,
    /// Seconds the set-up may take before the run goes on with what is ready.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub setup_timeout: u64,
    /// Milliseconds in-flight operations may take after the last one started; later ones are `unfinished`.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(0..=120_000))]
    pub drain_ms: u64,
}

/// Arguments of `vienna-load sip`.
#[derive(Debug, Clone, clap::Args)]
pub struct SipArgs {
    /// Shared SIP options.
    #[command(flatten)]
    pub sip: SipCommon,
    /// What to load.
    #[arg(long, value_enum, default_value_t = SipScenario::Register)]
    pub scenario: SipScenario,
    /// Operations per second (REGISTERs, MESSAGEs or calls), all users together.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of load, 1..=3600.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_SECS))]
    pub duration: u64,
    /// Most operations in all [default: rate x duration].
    #[arg(long)]
    pub count: Option<u64>,
    /// Most operations in flight [default: the number of users].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// REGISTER Expires, seconds.
    #[arg(long, default_value_t = 3600)]
    pub expires: u32,
    /// Call: milliseconds between the ACK and the BYE.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub hold_ms: u64,
    /// MESSAGE and call: send everything to this user (e.g. a SIPp UAS registered as `sink`) instead of
    /// the user halfway round the list.
    #[arg(long)]
    pub to_user: Option<String>,
    /// Do not register the users first (message and call: the callees must be registered otherwise).
    #[arg(long)]
    pub no_register: bool,
    /// Outputs.
    #[command(flatten)]
    pub out: OutputArgs,
}

/// What the engine run returns to a mode.
pub struct EngineRun {
    /// Per thread.
    pub outcomes: Vec<Outcome>,
    /// Set-up time.
    pub setup_secs: f64,
    /// Ctrl-C.
    pub interrupted: bool,
    /// Per-second latency.
    pub latency: BTreeMap<usize, series::BinLatency>,
    /// Process samples.
    pub sampler: ProcSampler,
    /// Threads used.
    pub threads: usize,
    /// Sockets used.
    pub sockets: usize,
    /// Start of the load.
    pub origin: Instant,
    /// End of the load (the last operation finished or the drain time ran out).
    pub end: Instant,
    /// Presence rounds (`presence --rounds`).
    pub rounds: Vec<RoundResult>,
    /// The server's memory around the set-up (with `--pid`).
    pub setup_memory: Option<SetupMemory>,
}

/// One round of `presence --rounds`: every presentity PUBLISHed once; how long until every watcher had it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoundResult {
    /// Round number, from 1.
    pub round: u32,
    /// NOTIFYs that carried a PUBLISH of this round.
    pub notifies: u64,
    /// NOTIFYs expected: one per subscription.
    pub expected: u64,
    /// From the first PUBLISH of the round to its last NOTIFY.
    pub secs: f64,
    /// `notifies / secs`.
    pub notify_rate: f64,
    /// From the first PUBLISH of the round to the last 2xx to one.
    pub publish_secs: f64,
    /// The round timed out before every NOTIFY came.
    pub timed_out: bool,
}

/// Proportional set size (PSS) of the `--pid` process trees before the set-up and after it (shared pages
/// counted once, so forked workers that share memory are not counted twice).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SetupMemory {
    /// Before the first set-up request.
    pub pss_before_bytes: u64,
    /// After the set-up, its initial NOTIFYs and half a second.
    pub pss_after_bytes: u64,
}

impl EngineRun {
    /// Seconds the successes are counted over: the planned schedule (`count` operations at `rate`, at
    /// most `duration`), or up to the last success if that came later.
    pub fn load_secs(&self, rate: f64, count: u64, duration: Duration) -> f64 {
        let planned = duration.as_secs_f64().min(count as f64 / rate);
        let last = self
            .outcomes
            .iter()
            .filter_map(|o| o.last_ok)
            .max()
            .map_or(0.0, |t| t.saturating_duration_since(self.origin).as_secs_f64());
        if self.interrupted { last.max(1e-3) } else { planned.max(last).max(1e-3) }
    }
}

/// Resolves `host:port`.
pub fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("cannot resolve {addr:?} (host:port)"))?
        .next()
        .with_context(|| format!("{addr:?} resolves to no address"))
}

/// The users of a run: `--users`, else `default` of them.
pub fn load_users(c: &SipCommon, default: u64) -> anyhow::Result<Vec<UserSpec>> {
    let n = c.users.unwrap_or(default);
    match &c.users_file {
        Some(f) => users::from_file(f, Some(n)),
        None => users::from_pattern(&c.user_pattern, &c.password_pattern, c.first_user, n),
    }
}

/// Operations per second one load thread is given before another joins (a thread carries several times
/// this; fewer threads batch more datagrams per system call and wake up less).
pub const RATE_PER_THREAD: f64 = 10_000.0;

/// Threads and sockets for `users` users at `rate` operations per second.
pub fn layout(c: &SipCommon, users: usize, rate: f64) -> (usize, usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = (rate / RATE_PER_THREAD).ceil().max(1.0) as usize;
    let threads = c.threads.unwrap_or(wanted.min(cores)).clamp(1, users);
    let sockets = c.sockets.map_or(threads, |s| s as usize).max(threads);
    (threads, sockets)
}

/// The transport of a run.
pub fn transport(c: &SipCommon) -> vienna_sip::Transport {
    match c.transport {
        SipTransport::Udp => vienna_sip::Transport::Udp,
        SipTransport::Tcp => vienna_sip::Transport::Tcp,
        SipTransport::Tls => vienna_sip::Transport::Tls,
    }
}

/// The SIP timers of a run.
pub fn timers(c: &SipCommon) -> TimerConfig {
    let t1 = Duration::from_millis(c.t1_ms);
    TimerConfig {
        t1,
        t2: (t1 * 8).max(Duration::from_secs(4)),
        t4: Duration::from_millis(c.t4_ms),
        ..TimerConfig::default()
    }
}

/// A load thread.
type Handle = JoinHandle<std::io::Result<Outcome>>;

/// Starts the threads, runs set-up and load with a progress line, and joins them.
pub fn drive(
    cfg: Config,
    common: &SipCommon,
    sockets: usize,
    mut sampler: ProcSampler,
    label: &str,
) -> anyhow::Result<EngineRun> {
    sys::catch_signals();
    let threads = cfg.threads;
    let target = cfg.target;
    let local = common.local_ip.unwrap_or(match target {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    });
    let nofile = sys::raise_nofile_limit().context("reading RLIMIT_NOFILE")?;
    if sockets as u64 + 64 > nofile {
        bail!("--sockets {sockets} needs more file descriptors than the open-file limit {nofile}");
    }
    let tls = common.tls.client(common.transport == SipTransport::Tls, &common.target)?;
    let pss_before = sampler.pss_bytes();
    let presence = cfg.presence.is_some();
    let round_plan = cfg.presence.as_ref().and_then(|p| p.rounds);
    let duration = cfg.duration;
    let drain = cfg.drain;
    let cfg = Arc::new(cfg);
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(phase::SETUP),
        base: Instant::now(),
        start_ns: AtomicU64::new(0),
        cut: AtomicBool::new(false),
        counters: (0..threads).map(|_| Counters::default()).collect(),
        collector: Collector::default(),
        rounds: ua::Rounds::default(),
    });
    let mut handles: Vec<JoinHandle<std::io::Result<Outcome>>> = Vec::with_capacity(threads);
    let mut next_port = common.local_port;
    for t in 0..threads {
        let n = sockets / threads + usize::from(t < sockets % threads);
        let socks = ua::bind(local, next_port, n, cfg.transport, target, tls.as_ref())?;
        next_port = next_port.map(|p| p.saturating_add(n as u16));
        let (cfg, shared) = (cfg.clone(), shared.clone());
        handles
            .push(std::thread::Builder::new().name(format!("sip-{t}")).spawn(move || ua::run(t, socks, cfg, shared))?);
    }
    let sum = |f: &dyn Fn(&Counters) -> u64| shared.counters.iter().map(f).sum::<u64>();
    let mut progress = Progress::new();
    let mut interrupted = false;
    let setup_timeout = Duration::from_secs(common.setup_timeout);
    let hard_deadline = Instant::now() + setup_timeout + duration + drain + Duration::from_secs(30);
    let check = |handles: &[JoinHandle<std::io::Result<Outcome>>], interrupted: &mut bool| -> anyhow::Result<()> {
        std::thread::sleep(Duration::from_millis(50));
        if sys::stop_requested() {
            *interrupted = true;
        }
        if Instant::now() > hard_deadline {
            bail!("hard time limit reached; the run did not end by itself");
        }
        if let Some(i) = handles.iter().position(|h| h.is_finished()) {
            bail!("load thread {i} stopped early");
        }
        Ok(())
    };
    let abort = |shared: &Shared, handles: Vec<JoinHandle<std::io::Result<Outcome>>>, e: anyhow::Error| {
        shared.phase.store(phase::EXIT, Relaxed);
        for h in handles {
            if let Ok(Err(io)) = h.join() {
                return anyhow::Error::from(io).context(e.to_string());
            }
        }
        e
    };
    // Set-up.
    let t0 = Instant::now();
    loop {
        if let Err(e) = check(&handles, &mut interrupted) {
            progress.finish();
            return Err(abort(&shared, handles, e));
        }
        let (done, ok) = (sum(&|c| c.setup_done.load(Relaxed)), sum(&|c| c.setup_ok.load(Relaxed)));
        progress.show(format!("{label} set-up: {done} done, {ok} ok, {} failed", done - ok.min(done)));
        if shared.counters.iter().all(|c| c.setup_finished.load(Relaxed)) || interrupted || t0.elapsed() > setup_timeout
        {
            break;
        }
    }
    let setup_secs = t0.elapsed().as_secs_f64();
    if presence {
        // The initial NOTIFY of every subscription, so it is neither in the memory reading nor in the load.
        let until = Instant::now() + Duration::from_secs(5);
        while sum(&|c| c.notifies_received.load(Relaxed)) < sum(&|c| c.subscribed.load(Relaxed))
            && Instant::now() < until
            && !interrupted
        {
            if let Err(e) = check(&handles, &mut interrupted) {
                progress.finish();
                return Err(abort(&shared, handles, e));
            }
        }
    }
    let setup_memory = match pss_before {
        Some(before) => {
            // Let the server finish with the last answers it got.
            std::thread::sleep(Duration::from_millis(500));
            sampler.pss_bytes().map(|after| SetupMemory { pss_before_bytes: before, pss_after_bytes: after })
        }
        None => None,
    };
    // Load.
    let start_ns = (shared.base.elapsed() + Duration::from_millis(20)).as_nanos() as u64;
    shared.start_ns.store(start_ns, Relaxed);
    let origin = shared.base + Duration::from_nanos(start_ns);
    sampler.start(origin);
    shared.phase.store(phase::RUN, Relaxed);
    let mut rounds = Vec::new();
    if let Some(plan) = round_plan {
        let r = drive_rounds(&shared, &handles, plan, &mut progress, &mut sampler, &check, &mut interrupted);
        match r {
            Ok(done) => rounds = done,
            Err(e) => {
                progress.finish();
                return Err(abort(&shared, handles, e));
            }
        }
        // The threads drain what is in flight and stop.
        shared.cut.store(true, Relaxed);
    }
    let (mut ok_rate, mut started_rate) = (RateMeter::default(), RateMeter::default());
    let mut sampled_end = round_plan.is_some();
    if sampled_end {
        sampler.finish(Instant::now());
    }
    while !shared.counters.iter().all(|c| c.run_done.load(Relaxed)) {
        if let Err(e) = check(&handles, &mut interrupted) {
            progress.finish();
            return Err(abort(&shared, handles, e));
        }
        if interrupted {
            shared.cut.store(true, Relaxed);
        }
        let now = Instant::now();
        let secs = now.saturating_duration_since(origin).as_secs_f64();
        sampler.poll(now);
        if secs >= duration.as_secs_f64() && !sampled_end {
            sampled_end = true;
            sampler.finish(now);
        }
        shared.collector.close_before(secs as usize);
        let (started, ok, failed) =
            (sum(&|c| c.started.load(Relaxed)), sum(&|c| c.ok.load(Relaxed)), sum(&|c| c.failed.load(Relaxed)));
        let notifies = sum(&|c| c.notifies.load(Relaxed));
        let last = shared.collector.last_closed().map_or_else(
            || "-".to_owned(),
            |(_, l)| format!("p50 {} p99 {} max {}", human_us(l.p50), human_us(l.p99), human_us(l.max)),
        );
        let extra = if notifies > 0 { format!(", {notifies} notifies") } else { String::new() };
        progress.show(format!(
            "{label}: {:.0}/{} s, {:.0}/s started, {:.0}/s ok, ok {ok} failed {failed} in flight {}{extra}, latency {last}",
            secs.min(duration.as_secs_f64()),
            duration.as_secs(),
            started_rate.update(started, now),
            ok_rate.update(ok, now),
            started.saturating_sub(ok + failed),
        ));
    }
    if !sampled_end {
        sampler.finish(Instant::now());
    }
    let end = Instant::now();
    // NOTIFYs and BYEs for other threads' operations may still be on the way: a short linger.
    std::thread::sleep(Duration::from_millis(200));
    shared.phase.store(phase::EXIT, Relaxed);
    progress.finish();
    let mut outcomes = Vec::with_capacity(threads);
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(o)) => outcomes.push(o),
            Ok(Err(e)) => return Err(anyhow::Error::from(e).context(format!("load thread {i}"))),
            Err(_) => bail!("load thread {i} panicked"),
        }
    }
    Ok(EngineRun {
        outcomes,
        setup_secs,
        interrupted,
        latency: shared.collector.finish(),
        sampler,
        threads,
        sockets,
        origin,
        end,
        rounds,
        setup_memory,
    })
}

/// Runs the rounds of `presence --rounds`: before each, a pause; then every presentity PUBLISHes once and
/// the round lasts until every subscription got the NOTIFY carrying it, or the round timeout.
fn drive_rounds(
    shared: &Shared,
    handles: &[Handle],
    plan: ua::RoundPlan,
    progress: &mut Progress,
    sampler: &mut ProcSampler,
    check: &dyn Fn(&[Handle], &mut bool) -> anyhow::Result<()>,
    interrupted: &mut bool,
) -> anyhow::Result<Vec<RoundResult>> {
    let sum = |f: &dyn Fn(&Counters) -> u64| shared.counters.iter().map(f).sum::<u64>();
    let expected = sum(&|c| c.subscribed.load(Relaxed));
    let r = &shared.rounds;
    let mut out = Vec::new();
    for round in 1..=plan.count {
        let pause = Instant::now() + plan.interval;
        while Instant::now() < pause && !*interrupted {
            check(handles, interrupted)?;
            sampler.poll(Instant::now());
            progress.show(format!(
                "presence: round {round}/{} in {:.1} s",
                plan.count,
                (pause - Instant::now()).as_secs_f64()
            ));
        }
        if *interrupted {
            break;
        }
        let before = sum(&|c| c.round_notifies.load(Relaxed));
        r.first_publish_ns.store(u64::MAX, Relaxed);
        r.last_publish_ns.store(0, Relaxed);
        r.last_notify_ns.store(0, Relaxed);
        r.start_ns.store(shared.base.elapsed().as_nanos() as u64, Relaxed);
        r.round.store(round, Relaxed);
        let deadline = Instant::now() + plan.timeout;
        let mut got;
        let timed_out = loop {
            check(handles, interrupted)?;
            sampler.poll(Instant::now());
            got = sum(&|c| c.round_notifies.load(Relaxed)) - before;
            progress.show(format!("presence: round {round}/{}: {got}/{expected} NOTIFYs", plan.count));
            if got >= expected || *interrupted {
                break false;
            }
            if Instant::now() >= deadline {
                break true;
            }
        };
        let first = r.first_publish_ns.load(Relaxed);
        let secs = |t: u64| if first == u64::MAX { 0.0 } else { t.saturating_sub(first) as f64 / 1e9 };
        let secs_notify = secs(r.last_notify_ns.load(Relaxed));
        out.push(RoundResult {
            round,
            notifies: got,
            expected,
            secs: round3(secs_notify),
            notify_rate: if secs_notify > 0.0 { round3(got as f64 / secs_notify) } else { 0.0 },
            publish_secs: round3(secs(r.last_publish_ns.load(Relaxed))),
            timed_out,
        });
    }
    Ok(out)
}

/// The settings of a `sip` run.
#[derive(Debug, Clone, Serialize)]
pub struct SipConfigReport {
    /// Server.
    pub target: String,
    /// Scenario.
    pub scenario: &'static str,
    /// Domain.
    pub domain: String,
    /// Users.
    pub users: usize,
    /// Operations per second asked for.
    pub rate: f64,
    /// Seconds of load asked for.
    pub duration_secs: u64,
    /// Most operations.
    pub count: u64,
    /// Most in flight.
    pub concurrency: usize,
    /// Credentials mode.
    pub auth: &'static str,
    /// Load threads.
    pub threads: usize,
    /// Local sockets (TCP: connections).
    pub sockets: usize,
    /// `udp` or `tcp`.
    pub transport: &'static str,
    /// T1, ms.
    pub t1_ms: u64,
    /// T4, ms.
    pub t4_ms: u64,
    /// Call hold, ms.
    pub hold_ms: u64,
}

/// Operation results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OperationReport {
    /// Started.
    pub started: u64,
    /// Succeeded.
    pub ok: u64,
    /// Failed.
    pub failed: u64,
    /// Still in flight when the drain time ran out.
    pub unfinished: u64,
    /// Due but not started (all users busy or the concurrency limit reached): the load generator's limit.
    pub not_started: u64,
    /// Failures by status code, `timeout`, `transport` (for calls, `bye CODE` when the BYE failed).
    pub failed_by: BTreeMap<String, u64>,
    /// `failed / (ok + failed)` in percent.
    pub failure_percent: f64,
}

impl OperationReport {
    /// Failed and unfinished operations in percent of all that ended or were in flight (a sweep step's
    /// failure figure).
    pub fn step_failure_percent(&self) -> f64 {
        let all = self.ok + self.failed + self.unfinished;
        if all > 0 { round3((self.failed + self.unfinished) as f64 * 100.0 / all as f64) } else { 0.0 }
    }

    /// The summary's `TOPIC started=... ok=...` line, and its `failed_by` line when something failed.
    pub fn write_summary(&self, s: &mut String, topic: &str) {
        use std::fmt::Write as _;
        let _ = writeln!(
            s,
            "{topic:<12} started={} ok={} failed={} unfinished={} not_started={} failure_percent={}",
            self.started, self.ok, self.failed, self.unfinished, self.not_started, self.failure_percent
        );
        if !self.failed_by.is_empty() {
            let _ = writeln!(s, "failed_by    {}", pairs(&self.failed_by));
        }
    }
}

/// Set-up results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SetupReport {
    /// Set-up operations that succeeded.
    pub ok: u64,
    /// Failed, by reason.
    pub failed_by: BTreeMap<String, u64>,
    /// Seconds.
    pub secs: f64,
}

/// Message counts of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MessageReport {
    /// Client transactions in the run.
    pub transactions: u64,
    /// Requests retransmitted by timers (set-up included).
    pub retransmissions: u64,
    /// Digest challenges answered in the run.
    pub challenges: u64,
    /// Final responses to our requests by status code (set-up included).
    pub responses: BTreeMap<u16, u64>,
    /// Requests our user agents received, by method.
    pub uas_requests: BTreeMap<String, u64>,
    /// INVITE 2xx retransmitted by our user agents before the ACK came.
    pub uas_2xx_retransmissions: u64,
    /// Datagrams that matched nothing.
    pub stray: u64,
    /// Datagrams cut at 2048 bytes.
    pub truncated: u64,
    /// Datagrams this machine's sockets refused.
    pub send_dropped: u64,
}

/// Everything a `sip` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct SipReport {
    /// `sip`.
    pub mode: &'static str,
    /// Settings.
    pub config: SipConfigReport,
    /// Registration of every user before the load (message, call).
    pub setup: SetupReport,
    /// Operations.
    pub operations: OperationReport,
    /// Messages.
    pub messages: MessageReport,
    /// Operations asked for per second.
    pub requested_rate: f64,
    /// Operations that succeeded per second of load.
    pub achieved_rate: f64,
    /// Client transactions per second of load.
    pub transactions_per_sec: f64,
    /// Seconds the rates are counted over: the planned schedule, or up to the last success if later.
    pub duration_secs: f64,
    /// Operation latency (REGISTER or MESSAGE to its 2xx; call: INVITE to its 200).
    pub latency_us: LatencyReport,
    /// Every client transaction of the run: first transmission to the final response.
    pub response_latency_us: LatencyReport,
    /// Ctrl-C.
    pub interrupted: bool,
    /// Timeline, server process, load generator CPU.
    #[serde(flatten)]
    pub common: Common,
}

/// Sums what the threads measured.
pub struct Merged {
    /// Operations.
    pub ops: OperationReport,
    /// Set-up.
    pub setup: SetupReport,
    /// Messages.
    pub messages: MessageReport,
    /// Latency.
    pub latency: LatencyReport,
    /// Response latency.
    pub response: LatencyReport,
    /// Timeline.
    pub timeline: Timeline,
}

/// Merges the outcomes of an engine run.
pub fn merge(run: &EngineRun, length: Duration) -> Merged {
    let mut ops = OperationReport::default();
    let mut setup = SetupReport { secs: round3(run.setup_secs), ..SetupReport::default() };
    let mut m = MessageReport::default();
    let (mut lat, mut resp) = (series::histogram(), series::histogram());
    for o in &run.outcomes {
        ops.started += o.started;
        ops.ok += o.ok;
        ops.failed += o.failed;
        ops.unfinished += o.unfinished;
        ops.not_started += o.not_started;
        for (k, v) in &o.failures {
            *ops.failed_by.entry(k.clone()).or_insert(0) += v;
        }
        setup.ok += o.setup_ok;
        for (k, v) in &o.setup_failures {
            *setup.failed_by.entry(k.clone()).or_insert(0) += v;
        }
        m.transactions += o.transactions;
        m.retransmissions += o.retransmissions;
        m.challenges += o.challenges;
        m.uas_2xx_retransmissions += o.uas_2xx_retransmissions;
        m.stray += o.stray;
        m.truncated += o.truncated;
        m.send_dropped += o.send_dropped;
        for (k, v) in &o.tally.responses {
            *m.responses.entry(*k).or_insert(0) += v;
        }
        for (k, v) in &o.tally.uas_requests {
            *m.uas_requests.entry(k.clone()).or_insert(0) += v;
        }
        let _ = lat.add(&o.latency);
        let _ = resp.add(&o.response_latency);
    }
    let finished = ops.ok + ops.failed;
    ops.failure_percent = if finished > 0 { round3(ops.failed as f64 * 100.0 / finished as f64) } else { 0.0 };
    let bins: Vec<_> = run.outcomes.iter().map(|o| o.bins.clone()).collect();
    let timeline = series::timeline(&bins, &run.latency, &run.sampler.samples, false, length);
    Merged { ops, setup, messages: m, latency: LatencyReport::of(&lat), response: LatencyReport::of(&resp), timeline }
}

/// Runs `vienna-load sip`.
pub fn run(args: SipArgs) -> anyhow::Result<Finished> {
    if !(args.rate > 0.0 && args.rate <= 1_000_000.0) {
        bail!("--rate must be above 0 and at most 1000000 operations/s");
    }
    let target = resolve(&args.sip.target).context("--target")?;
    let sampler = args.out.check()?;
    let users = load_users(&args.sip, 100)?;
    let (threads, sockets) = layout(&args.sip, users.len(), args.rate);
    let count = args.count.unwrap_or((args.rate * args.duration as f64).ceil() as u64);
    let concurrency = args.concurrency.unwrap_or(users.len()).max(1);
    let scenario = match args.scenario {
        SipScenario::Register => Scenario::Register,
        SipScenario::Message => Scenario::Message,
        SipScenario::Call => Scenario::Call,
    };
    let register_first = !args.no_register && scenario != Scenario::Register;
    let n_users = users.len();
    let cfg = Config {
        scenario,
        target,
        transport: transport(&args.sip),
        domain: args.sip.domain.clone(),
        users,
        threads,
        auth: args.sip.auth,
        algorithm: args.sip.algorithm,
        expires: args.expires,
        timers: timers(&args.sip),
        rate: args.rate,
        duration: Duration::from_secs(args.duration),
        count,
        concurrency,
        hold: Duration::from_millis(args.hold_ms),
        drain: Duration::from_millis(args.sip.drain_ms),
        setup_window: args.sip.setup_window as usize,
        register_first,
        callee: match &args.to_user {
            Some(u) => Callee::Fixed(u.clone()),
            None => Callee::Offset(n_users / 2),
        },
        presence: None,
    };
    let scenario_name = match args.scenario {
        SipScenario::Register => "register",
        SipScenario::Message => "message",
        SipScenario::Call => "call",
    };
    let run = drive(cfg, &args.sip, sockets, sampler, &format!("sip {scenario_name}"))?;
    let merged = merge(&run, Duration::from_secs(args.duration));
    let secs = run.load_secs(args.rate, count, Duration::from_secs(args.duration));
    let report = SipReport {
        mode: "sip",
        config: SipConfigReport {
            target: target.to_string(),
            scenario: scenario_name,
            domain: args.sip.domain.clone(),
            users: n_users,
            rate: args.rate,
            duration_secs: args.duration,
            count,
            concurrency,
            auth: match args.sip.auth {
                AuthMode::Challenge => "challenge",
                AuthMode::Reuse => "reuse",
            },
            threads: run.threads,
            sockets: run.sockets,
            transport: match args.sip.transport {
                SipTransport::Udp => "udp",
                SipTransport::Tcp => "tcp",
                SipTransport::Tls => "tls",
            },
            t1_ms: args.sip.t1_ms,
            t4_ms: args.sip.t4_ms,
            hold_ms: args.hold_ms,
        },
        setup: merged.setup,
        requested_rate: args.rate,
        achieved_rate: round3(merged.ops.ok as f64 / secs),
        transactions_per_sec: round3(merged.messages.transactions as f64 / secs),
        duration_secs: round3(secs),
        operations: merged.ops,
        messages: merged.messages,
        latency_us: merged.latency,
        response_latency_us: merged.response,
        interrupted: run.interrupted,
        common: Common {
            timeline: merged.timeline,
            server_process: run.sampler.report(),
            loader_cpu_secs: round3(self_cpu_secs()),
        },
    };
    let summary = report.summary();
    print!("{summary}");
    let _ = std::io::stdout().flush();
    let figure = || {
        let title = format!(
            "vienna-load sip {}: {} ops/s x {} s, {} users -> {}",
            report.config.scenario,
            report.config.rate,
            report.config.duration_secs,
            report.config.users,
            report.config.target
        );
        plot::timeline_figure(
            title,
            summary.lines().skip(1).map(str::to_owned).collect(),
            &report.common.timeline,
            "ok",
        )
    };
    args.out.write(&report, figure, &report.common.timeline)?;
    let o = &report.operations;
    let exit = if report.interrupted {
        ExitCode::from(130)
    } else if o.failed > 0 || o.unfinished > 0 || !report.setup.failed_by.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };
    let step = StepResult {
        offered_rate: args.rate,
        achieved_rate: report.achieved_rate,
        loss_percent: 0.0,
        failure_percent: o.step_failure_percent(),
        latency_us: report.latency_us.clone(),
        server_cpu_secs: report.common.server_process.as_ref().map(|p| p.cpu_secs),
        interrupted: report.interrupted,
    };
    Ok(Finished { exit, step, json: serde_json::to_value(&report)? })
}

/// `k=v` pairs of a map.
pub fn pairs<K: std::fmt::Display, V: std::fmt::Display>(m: &BTreeMap<K, V>) -> String {
    m.iter().map(|(k, v)| format!("{}={v}", k.to_string().replace(' ', "_"))).collect::<Vec<_>>().join(" ")
}

impl SipReport {
    /// The human summary: one `topic key=value ...` line per topic, the same numbers as the JSON.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let o = &self.operations;
        let m = &self.messages;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "vienna-load sip {}: {} ops/s x {} s (count {}, concurrency {}), {} users, auth {} -> {}, {} threads, {} sockets",
            c.scenario,
            c.rate,
            c.duration_secs,
            c.count,
            c.concurrency,
            c.users,
            c.auth,
            c.target,
            c.threads,
            c.sockets
        );
        if c.scenario != "register" {
            let _ = writeln!(
                s,
                "setup        registered={} failed={} secs={}",
                self.setup.ok,
                self.setup.failed_by.values().sum::<u64>(),
                self.setup.secs
            );
            if !self.setup.failed_by.is_empty() {
                let _ = writeln!(s, "setup_failed {}", pairs(&self.setup.failed_by));
            }
        }
        o.write_summary(&mut s, "operations");
        let _ = writeln!(
            s,
            "rate         requested={} achieved={} transactions_per_sec={} duration_secs={}",
            self.requested_rate, self.achieved_rate, self.transactions_per_sec, self.duration_secs
        );
        let _ = writeln!(
            s,
            "messages     transactions={} retransmissions={} challenges={} uas_2xx_retransmissions={} stray={} \
             send_dropped={}",
            m.transactions, m.retransmissions, m.challenges, m.uas_2xx_retransmissions, m.stray, m.send_dropped
        );
        let _ = writeln!(s, "responses    {}", pairs(&m.responses));
        if !m.uas_requests.is_empty() {
            let _ = writeln!(s, "uas          {}", pairs(&m.uas_requests));
        }
        let _ = writeln!(s, "latency_us   {}", self.latency_us.line());
        let _ = writeln!(s, "response_us  {}", self.response_latency_us.line());
        for line in self.common.lines(m.transactions, "transaction") {
            let _ = writeln!(s, "{line}");
        }
        s
    }
}
