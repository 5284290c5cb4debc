//! `vienna-load presence`: presence server load (RFC 3856 SUBSCRIBE/NOTIFY with `Event: presence`,
//! RFC 3903 PUBLISH of RFC 3863 PIDF documents), against Kamailio's presence modules, Vienna, or any
//! presence agent.
//!
//! Users `0..presentities` publish; the next `watchers` users subscribe in the set-up, each to
//! `--subscriptions-per-watcher` presentities (watcher `w` to presentities `w, w+1, ...` modulo their
//! number). In the run the presentities PUBLISH at `--rate` in all (one PUBLISH in flight per presentity,
//! SIP-If-Match with the entity tag of the previous one, a 412 answered with an initial PUBLISH). Every
//! PIDF note carries a marker `vl-RUN-PRESENTITY-SEQ-SENT`, so each NOTIFY a watcher receives is matched to
//! the PUBLISH whose state it carries: the publish-to-NOTIFY latency is measured in this one process, with
//! no clock synchronisation. NOTIFYs expected = successful PUBLISHes x the subscriptions of their
//! presentity; missing = expected - matched (a server that merges quick changes into one NOTIFY shows
//! them as missing). Subscriptions are not ended at the end: they expire after `--expires`.
//!
//! Two schedules: `--rate` spreads the PUBLISHes evenly over `--duration`; `--rounds R` sends them in
//! bursts instead: after `--interval-ms`, every presentity PUBLISHes once, all at once, and the round
//! lasts until every subscription got the NOTIFY carrying it (or `--round-timeout`). A round's NOTIFY
//! rate is its NOTIFYs over the time from its first PUBLISH to its last NOTIFY, which is how a fan-out
//! (one presentity, thousands of watchers) is measured. With `--pid`, the server's PSS is read before the
//! set-up and after it (once every initial NOTIFY came, plus half a second): the growth over the
//! subscriptions is the memory per subscription.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::framework::plot::{self, Line};
use crate::framework::procstat::self_cpu_secs;
use crate::framework::series::{LatencyReport, round3};
use crate::framework::{Common, Finished, OutputArgs, StepResult};
use crate::sip::ua::{Callee, Config, PresencePlan, RoundPlan, Scenario};
use crate::sip::{self, MessageReport, OperationReport, RoundResult, SetupReport, SipCommon, pairs};

/// Arguments of `vienna-load presence`.
#[derive(Debug, Clone, clap::Args)]
pub struct PresenceArgs {
    /// Shared SIP options (`--users` is ignored: users = presentities + watchers).
    #[command(flatten)]
    pub sip: SipCommon,
    /// Users that publish.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub presentities: u64,
    /// Users that subscribe.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub watchers: u64,
    /// Presentities each watcher subscribes to.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub subscriptions_per_watcher: u64,
    /// PUBLISHes per second, all presentities together (the rate schedule; not with --rounds).
    #[arg(long, default_value_t = 10.0, conflicts_with = "rounds")]
    pub rate: f64,
    /// Seconds of publishing, 1..=3600 (the rate schedule; not with --rounds).
    #[arg(long, required_unless_present = "rounds", conflicts_with = "rounds",
          value_parser = clap::value_parser!(u64).range(1..=sip::MAX_DURATION_SECS))]
    pub duration: Option<u64>,
    /// Most PUBLISHes in all [default: rate x duration] (not with --rounds).
    #[arg(long, conflicts_with = "rounds")]
    pub count: Option<u64>,
    /// Rounds instead of a rate: in each round every presentity PUBLISHes once, all at once, and the round
    /// lasts until every subscription got the NOTIFY carrying it (or --round-timeout). Reports each
    /// round's NOTIFY rate (NOTIFYs over the time from its first PUBLISH to its last NOTIFY).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rounds: Option<u32>,
    /// Pause before each round, milliseconds (--rounds).
    #[arg(long, default_value_t = 1000, requires = "rounds", value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub interval_ms: u64,
    /// Longest wait for the NOTIFYs of one round, seconds (--rounds).
    #[arg(long, default_value_t = 20, requires = "rounds", value_parser = clap::value_parser!(u64).range(1..=600))]
    pub round_timeout: u64,
    /// Register every user before subscribing (servers that route NOTIFY by registration).
    #[arg(long)]
    pub register: bool,
    /// Expires of SUBSCRIBE and PUBLISH, seconds [default: set-up timeout + duration + 120].
    #[arg(long)]
    pub expires: Option<u32>,
    /// Outputs.
    #[command(flatten)]
    pub out: OutputArgs,
}

/// NOTIFY results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NotifyReport {
    /// NOTIFYs received (initial ones and others' included).
    pub received: u64,
    /// NOTIFYs carrying a PUBLISH of this run for the first time.
    pub matched: u64,
    /// NOTIFYs repeating a state the watcher already had.
    pub repeated: u64,
    /// NOTIFYs carrying an older state than one already received.
    pub reordered: u64,
    /// Successful PUBLISHes x subscriptions of their presentity.
    pub expected: u64,
    /// `expected - matched`.
    pub missing: u64,
    /// `missing / expected` in percent.
    pub missing_percent: f64,
    /// Matched NOTIFYs per second of load.
    pub matched_per_sec: f64,
}

/// The settings of a `presence` run.
#[derive(Debug, Clone, Serialize)]
pub struct PresenceConfigReport {
    /// Server.
    pub target: String,
    /// Domain.
    pub domain: String,
    /// Publishing users.
    pub presentities: u64,
    /// Subscribing users.
    pub watchers: u64,
    /// Subscriptions per watcher.
    pub subscriptions_per_watcher: u64,
    /// PUBLISHes per second asked for (`None` with rounds).
    pub rate: Option<f64>,
    /// Seconds asked for (`None` with rounds).
    pub duration_secs: Option<u64>,
    /// Most PUBLISHes.
    pub count: u64,
    /// Rounds asked for (`None`: the rate schedule).
    pub rounds: Option<u32>,
    /// Pause before each round, ms.
    pub interval_ms: Option<u64>,
    /// Longest wait for a round, s.
    pub round_timeout_secs: Option<u64>,
    /// Users registered first.
    pub register: bool,
    /// SUBSCRIBE/PUBLISH Expires.
    pub expires: u32,
    /// Threads.
    pub threads: usize,
    /// Sockets.
    pub sockets: usize,
}

/// The rounds of a `--rounds` run.
#[derive(Debug, Clone, Serialize)]
pub struct RoundsReport {
    /// Rounds run.
    pub count: usize,
    /// Median NOTIFY rate over the rounds, NOTIFYs per second.
    pub notify_rate_median: f64,
    /// Median round time (first PUBLISH to last NOTIFY), seconds.
    pub secs_median: f64,
    /// Rounds that timed out before every NOTIFY came.
    pub timed_out: u64,
    /// Every round.
    pub rounds: Vec<RoundResult>,
}

/// The server's memory for the subscriptions (with `--pid`): PSS growth over the set-up.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// PSS before the set-up, bytes.
    pub pss_before_bytes: u64,
    /// PSS after the set-up and the initial NOTIFYs, bytes.
    pub pss_after_bytes: u64,
    /// Growth divided by the subscriptions established. It includes the server transactions of the
    /// set-up still alive then and the allocator's slack (and registrations with --register), so it
    /// bounds the steady cost of a subscription from above.
    pub bytes_per_subscription: f64,
}

/// Everything a `presence` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct PresenceReport {
    /// `presence`.
    pub mode: &'static str,
    /// Settings.
    pub config: PresenceConfigReport,
    /// Registrations and subscriptions of the set-up.
    pub setup: SetupReport,
    /// Subscriptions established.
    pub subscriptions: u64,
    /// PUBLISH operations.
    pub publishes: OperationReport,
    /// NOTIFYs.
    pub notifies: NotifyReport,
    /// Messages.
    pub messages: MessageReport,
    /// The rounds (`--rounds`).
    pub rounds: Option<RoundsReport>,
    /// Server memory per subscription (`--pid`).
    pub server_memory: Option<MemoryReport>,
    /// PUBLISHes asked for per second (`None` with rounds).
    pub requested_rate: Option<f64>,
    /// PUBLISHes that succeeded per second.
    pub achieved_rate: f64,
    /// Seconds of load.
    pub duration_secs: f64,
    /// PUBLISH sent to the NOTIFY carrying it, at the watcher.
    pub latency_us: LatencyReport,
    /// Every client transaction of the run (PUBLISH): first transmission to the final response.
    pub response_latency_us: LatencyReport,
    /// Ctrl-C.
    pub interrupted: bool,
    /// Timeline, server process, load generator CPU.
    #[serde(flatten)]
    pub common: Common,
}

/// Runs `vienna-load presence`.
pub fn run(args: PresenceArgs) -> anyhow::Result<Finished> {
    let round_plan = args.rounds.map(|count| RoundPlan {
        count,
        interval: Duration::from_millis(args.interval_ms),
        timeout: Duration::from_secs(args.round_timeout),
    });
    if round_plan.is_none() && !(args.rate > 0.0 && args.rate <= 1_000_000.0) {
        bail!("--rate must be above 0 and at most 1000000 PUBLISH/s");
    }
    let target = sip::resolve(&args.sip.target).context("--target")?;
    let sampler = args.out.check()?;
    let (p, w, k) = (args.presentities, args.watchers, args.subscriptions_per_watcher.min(args.presentities));
    let mut common = args.sip.clone();
    common.users = Some(p + w);
    let users = sip::load_users(&common, p + w)?;
    if (users.len() as u64) < p + w {
        bail!("--users-file has {} users; presentities + watchers need {}", users.len(), p + w);
    }
    // Rounds: every presentity at once, all rounds within the time bound below.
    let (rate, duration, count) = match (round_plan, args.duration) {
        (Some(r), _) => (p as f64, (r.interval + r.timeout) * r.count, p * u64::from(r.count)),
        (None, Some(d)) => {
            (args.rate, Duration::from_secs(d), args.count.unwrap_or((args.rate * d as f64).ceil() as u64))
        }
        (None, None) => bail!("give --duration or --rounds"),
    };
    let (threads, sockets) = sip::layout(&common, p as usize, rate);
    let expires = args.expires.unwrap_or((args.sip.setup_timeout + duration.as_secs() + 120) as u32);
    let subscriptions: Vec<Vec<usize>> =
        (0..w as usize).map(|wi| (0..k as usize).map(|j| (wi + j) % p as usize).collect()).collect();
    let run_id = (std::process::id()
        ^ (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos()))
        & 0x7fff_ffff;
    let cfg = Config {
        scenario: Scenario::Presence,
        target,
        transport: sip::transport(&args.sip),
        domain: args.sip.domain.clone(),
        users,
        threads,
        auth: args.sip.auth,
        algorithm: args.sip.algorithm,
        expires,
        timers: sip::timers(&args.sip),
        rate,
        duration,
        count,
        concurrency: p as usize,
        hold: Duration::ZERO,
        drain: Duration::from_millis(args.sip.drain_ms),
        setup_window: args.sip.setup_window as usize,
        register_first: args.register,
        callee: Callee::Offset(0),
        presence: Some(PresencePlan { presentities: p as usize, subscriptions, expires, run_id, rounds: round_plan }),
    };
    let run = sip::drive(cfg, &common, sockets, sampler, "presence")?;
    let secs = match round_plan {
        Some(_) => run.end.saturating_duration_since(run.origin).as_secs_f64().max(1e-3),
        None => run.load_secs(rate, count, duration),
    };
    let merged = sip::merge(&run, Duration::from_secs_f64(secs.min(duration.as_secs_f64())));
    let mut published: BTreeMap<usize, u64> = BTreeMap::new();
    let mut subscribed = 0u64;
    let mut subs_by_pres: BTreeMap<usize, u64> = BTreeMap::new();
    let mut n = NotifyReport::default();
    for o in &run.outcomes {
        for (pres, c) in &o.published {
            *published.entry(*pres).or_insert(0) += c;
        }
        for (pres, c) in &o.subscribed {
            *subs_by_pres.entry(*pres).or_insert(0) += c;
            subscribed += c;
        }
        n.received += o.notifies;
        n.matched += o.notifies_matched;
        n.repeated += o.notifies_repeated;
        n.reordered += o.notifies_reordered;
    }
    n.expected = published.iter().map(|(pres, c)| c * subs_by_pres.get(pres).copied().unwrap_or(0)).sum();
    n.missing = n.expected.saturating_sub(n.matched);
    n.missing_percent = if n.expected > 0 { round3(n.missing as f64 * 100.0 / n.expected as f64) } else { 0.0 };
    n.matched_per_sec = round3(n.matched as f64 / secs);
    let report = PresenceReport {
        mode: "presence",
        config: PresenceConfigReport {
            target: target.to_string(),
            domain: args.sip.domain.clone(),
            presentities: p,
            watchers: w,
            subscriptions_per_watcher: k,
            rate: round_plan.is_none().then_some(args.rate),
            duration_secs: args.duration.filter(|_| round_plan.is_none()),
            count,
            rounds: args.rounds,
            interval_ms: round_plan.map(|r| r.interval.as_millis() as u64),
            round_timeout_secs: round_plan.map(|r| r.timeout.as_secs()),
            register: args.register,
            expires,
            threads: run.threads,
            sockets: run.sockets,
        },
        setup: merged.setup,
        subscriptions: subscribed,
        achieved_rate: round3(merged.ops.ok as f64 / secs),
        publishes: merged.ops,
        notifies: n,
        messages: merged.messages,
        rounds: round_plan.map(|_| rounds_report(&run.rounds)),
        server_memory: run.setup_memory.map(|m| MemoryReport {
            pss_before_bytes: m.pss_before_bytes,
            pss_after_bytes: m.pss_after_bytes,
            bytes_per_subscription: if subscribed > 0 {
                round3(m.pss_after_bytes.saturating_sub(m.pss_before_bytes) as f64 / subscribed as f64)
            } else {
                0.0
            },
        }),
        requested_rate: round_plan.is_none().then_some(args.rate),
        duration_secs: round3(secs),
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
        let c = &report.config;
        let load = match (c.rounds, c.rate, c.duration_secs) {
            (Some(r), _, _) => format!("{r} rounds"),
            (None, Some(rate), Some(d)) => format!("{rate} PUBLISH/s x {d} s"),
            _ => String::new(),
        };
        let title = format!("vienna-load presence: {load}, {p} presentities, {w} watchers -> {}", report.config.target);
        let tl = &report.common.timeline;
        let mut f = plot::timeline_figure(title, summary.lines().skip(1).map(str::to_owned).collect(), tl, "published");
        if let Some(rate) = f.panels.first_mut() {
            rate.lines.push(Line {
                name: "notified",
                color: plotters::style::RGBColor(255, 127, 14),
                points: tl.rows.iter().map(|r| (r.t as f64 + 0.5, r.latency_us.count as f64)).collect(),
            });
        }
        f
    };
    args.out.write(&report, figure, &report.common.timeline)?;
    let o = &report.publishes;
    let exit = if report.interrupted {
        ExitCode::from(130)
    } else if o.failed > 0
        || o.unfinished > 0
        || (report.rounds.is_some() && o.not_started > 0)
        || !report.setup.failed_by.is_empty()
        || report.notifies.missing > 0
        || report.rounds.as_ref().is_some_and(|r| r.timed_out > 0)
    {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };
    let step = StepResult {
        offered_rate: report.requested_rate.unwrap_or(report.achieved_rate),
        achieved_rate: report.achieved_rate,
        loss_percent: report.notifies.missing_percent,
        failure_percent: o.step_failure_percent(),
        latency_us: report.latency_us.clone(),
        server_cpu_secs: report.common.server_process.as_ref().map(|p| p.cpu_secs),
        interrupted: report.interrupted,
    };
    Ok(Finished { exit, step, json: serde_json::to_value(&report)? })
}

/// Medians and counts of the rounds.
fn rounds_report(rounds: &[RoundResult]) -> RoundsReport {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    RoundsReport {
        count: rounds.len(),
        notify_rate_median: median(rounds.iter().map(|r| r.notify_rate).collect()),
        secs_median: median(rounds.iter().map(|r| r.secs).collect()),
        timed_out: rounds.iter().filter(|r| r.timed_out).count() as u64,
        rounds: rounds.to_vec(),
    }
}

impl PresenceReport {
    /// The human summary, the same numbers as the JSON.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let o = &self.publishes;
        let n = &self.notifies;
        let m = &self.messages;
        let mut s = String::new();
        let load = match (c.rounds, c.rate, c.duration_secs) {
            (Some(r), _, _) => format!("{r} rounds every {} ms", c.interval_ms.unwrap_or(0)),
            (None, Some(rate), Some(d)) => format!("{rate} PUBLISH/s x {d} s"),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "vienna-load presence: {load} (count {}), {} presentities, {} watchers x {} -> {}, {} threads, {} sockets",
            c.count, c.presentities, c.watchers, c.subscriptions_per_watcher, c.target, c.threads, c.sockets
        );
        let _ = writeln!(
            s,
            "setup        ok={} subscriptions={} failed={} secs={}",
            self.setup.ok,
            self.subscriptions,
            self.setup.failed_by.values().sum::<u64>(),
            self.setup.secs
        );
        if !self.setup.failed_by.is_empty() {
            let _ = writeln!(s, "setup_failed {}", pairs(&self.setup.failed_by));
        }
        o.write_summary(&mut s, "publishes");
        let _ = writeln!(
            s,
            "notifies     received={} matched={} repeated={} reordered={} expected={} missing={} missing_percent={} \
             matched_per_sec={}",
            n.received, n.matched, n.repeated, n.reordered, n.expected, n.missing, n.missing_percent, n.matched_per_sec
        );
        if let Some(r) = &self.rounds {
            let _ = writeln!(
                s,
                "rounds       count={} notify_rate_median={} secs_median={} timed_out={}",
                r.count, r.notify_rate_median, r.secs_median, r.timed_out
            );
            for o in &r.rounds {
                let _ = writeln!(
                    s,
                    "round        n={} notifies={} expected={} secs={} notify_rate={} publish_secs={} timed_out={}",
                    o.round, o.notifies, o.expected, o.secs, o.notify_rate, o.publish_secs, o.timed_out
                );
            }
        }
        let requested = self.requested_rate.map_or_else(|| "-".to_owned(), |r| r.to_string());
        let _ = writeln!(
            s,
            "rate         requested={requested} achieved={} duration_secs={}",
            self.achieved_rate, self.duration_secs
        );
        if let Some(m) = &self.server_memory {
            let _ = writeln!(
                s,
                "memory       pss_before_bytes={} pss_after_bytes={} bytes_per_subscription={}",
                m.pss_before_bytes, m.pss_after_bytes, m.bytes_per_subscription
            );
        }
        let _ = writeln!(
            s,
            "messages     transactions={} retransmissions={} challenges={} stray={} send_dropped={}",
            m.transactions, m.retransmissions, m.challenges, m.stray, m.send_dropped
        );
        let _ = writeln!(s, "responses    {}", pairs(&m.responses));
        let _ = writeln!(s, "latency_us   {}", self.latency_us.line());
        let _ = writeln!(s, "response_us  {}", self.response_latency_us.line());
        for line in self.common.lines(n.matched, "notify") {
            let _ = writeln!(s, "{line}");
        }
        s
    }
}
