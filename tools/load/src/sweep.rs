//! `vienna-load sweep`: runs a mode again and again with a higher rate each step (`--start`, then
//! `--step` more or `--factor` times more, up to `--max`) until a step crosses a threshold: loss,
//! failures, a latency percentile, or an achieved rate below `--min-achieved` percent of the offered one.
//! The knee is the last step that stayed within every threshold. Every step is bounded by the mode's own
//! `--duration` (and `--count`); the sweep is bounded by its number of steps.
//!
//! The mode's `--json` and `--report` are ignored (the sweep writes its own, with every step's full JSON);
//! its `--pid` sampling is kept, so each step also reports the server's CPU.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::Mode;
use crate::framework::StepResult;
use crate::framework::plot::{self, Figure, Line, Panel};
use crate::framework::series::round3;

/// Most steps of one sweep.
pub const MAX_STEPS: usize = 200;

/// The latency percentile a sweep watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Percentile {
    /// Median.
    P50,
    /// 90th.
    P90,
    /// 99th.
    P99,
    /// 99.9th.
    P999,
    /// Largest.
    Max,
}

/// Arguments of `vienna-load sweep`.
#[derive(Debug, Clone, clap::Args)]
#[command(subcommand_value_name = "MODE", subcommand_help_heading = "Modes")]
pub struct SweepArgs {
    /// First rate (the mode's --rate: per client for turn, in all for sip and presence).
    #[arg(long)]
    pub start: f64,
    /// Add this much each step.
    #[arg(long, conflicts_with = "factor")]
    pub step: Option<f64>,
    /// Multiply by this each step (> 1).
    #[arg(long)]
    pub factor: Option<f64>,
    /// Highest rate tried.
    #[arg(long)]
    pub max: f64,
    /// Highest loss in percent a good step may have (packets lost; presence: NOTIFYs missing).
    #[arg(long, default_value_t = 1.0)]
    pub max_loss: f64,
    /// Highest failure rate in percent (failed and unfinished operations, failed allocations).
    #[arg(long, default_value_t = 1.0)]
    pub max_failures: f64,
    /// Highest latency in milliseconds at --percentile (no latency threshold without it).
    #[arg(long)]
    pub max_latency_ms: Option<f64>,
    /// Which latency percentile --max-latency-ms applies to.
    #[arg(long, value_enum, default_value_t = Percentile::P99)]
    pub percentile: Percentile,
    /// Lowest achieved rate, in percent of the offered rate.
    #[arg(long, default_value_t = 95.0)]
    pub min_achieved: f64,
    /// Milliseconds of rest between steps.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub pause_ms: u64,
    /// Write the steps and the knee as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a plot of the steps (achieved rate, latency, loss and failures against the offered rate):
    /// FILE.svg, FILE.png or FILE.html.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// The mode to sweep, with its arguments (its --rate is replaced at each step).
    #[command(subcommand)]
    pub mode: Mode,
}

/// One step of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The mode's --rate.
    pub rate: f64,
    /// What the step measured.
    pub result: StepResult,
    /// Within every threshold.
    pub good: bool,
    /// Which thresholds it crossed.
    pub crossed: Vec<String>,
    /// The mode's whole JSON report.
    pub report: serde_json::Value,
}

/// The result of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// `sweep`.
    pub mode: &'static str,
    /// The mode swept.
    pub swept: &'static str,
    /// Thresholds.
    pub thresholds: Thresholds,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// The last good step's rate, if any step was good.
    pub knee_rate: Option<f64>,
    /// Its results.
    pub knee: Option<StepResult>,
    /// Why the sweep stopped.
    pub stopped: String,
}

/// The thresholds of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    /// Loss, percent.
    pub max_loss_percent: f64,
    /// Failures, percent.
    pub max_failure_percent: f64,
    /// Latency, ms, at `percentile`.
    pub max_latency_ms: Option<f64>,
    /// `p50`, `p90`, `p99`, `p999` or `max`.
    pub percentile: &'static str,
    /// Achieved rate, percent of offered.
    pub min_achieved_percent: f64,
}

impl Mode {
    fn name(&self) -> &'static str {
        match self {
            Mode::Turn(_) => "turn",
            Mode::Msturn(_) => "msturn",
            Mode::Sip(_) => "sip",
            Mode::Presence(_) => "presence",
            Mode::Conference(_) => "conference",
        }
    }

    /// This mode with `--rate` set and its own JSON and report turned off.
    fn at_rate(&self, rate: f64) -> Mode {
        let mut m = self.clone();
        match &mut m {
            Mode::Turn(a) => {
                a.relay.rate = rate;
                a.relay.out.json = None;
                a.relay.out.report = None;
            }
            Mode::Msturn(a) => {
                a.relay.rate = rate;
                a.relay.out.json = None;
                a.relay.out.report = None;
            }
            Mode::Sip(a) => {
                a.rate = rate;
                a.count = None;
                a.out.json = None;
                a.out.report = None;
            }
            Mode::Presence(a) => {
                a.rate = rate;
                a.count = None;
                a.out.json = None;
                a.out.report = None;
            }
            // Refused by `run`: a conference has no rate to raise.
            Mode::Conference(a) => {
                a.out.json = None;
                a.out.report = None;
            }
        }
        m
    }
}

fn percentile_of(r: &StepResult, p: Percentile) -> u64 {
    let l = &r.latency_us;
    match p {
        Percentile::P50 => l.p50,
        Percentile::P90 => l.p90,
        Percentile::P99 => l.p99,
        Percentile::P999 => l.p999,
        Percentile::Max => l.max,
    }
}

fn percentile_name(p: Percentile) -> &'static str {
    match p {
        Percentile::P50 => "p50",
        Percentile::P90 => "p90",
        Percentile::P99 => "p99",
        Percentile::P999 => "p999",
        Percentile::Max => "max",
    }
}

/// The thresholds `r` crosses.
pub fn judge(args: &SweepArgs, r: &StepResult) -> Vec<String> {
    let mut v = Vec::new();
    if r.interrupted {
        v.push("interrupted".to_owned());
    }
    if r.loss_percent > args.max_loss {
        v.push(format!("loss {}% > {}%", r.loss_percent, args.max_loss));
    }
    if r.failure_percent > args.max_failures {
        v.push(format!("failures {}% > {}%", r.failure_percent, args.max_failures));
    }
    if let Some(ms) = args.max_latency_ms {
        let us = percentile_of(r, args.percentile);
        if us as f64 > ms * 1000.0 {
            v.push(format!("{} {} ms > {ms} ms", percentile_name(args.percentile), us as f64 / 1000.0));
        }
    }
    if r.offered_rate > 0.0 && r.achieved_rate < r.offered_rate * args.min_achieved / 100.0 {
        v.push(format!("achieved {}/s < {}% of {}/s", r.achieved_rate, args.min_achieved, round3(r.offered_rate)));
    }
    v
}

/// The rates of a sweep.
pub fn rates(args: &SweepArgs) -> anyhow::Result<Vec<f64>> {
    if !(args.start > 0.0 && args.max >= args.start) {
        bail!("sweep needs 0 < --start <= --max");
    }
    let mut out = vec![args.start];
    let mut r = args.start;
    loop {
        r = match (args.step, args.factor) {
            (Some(s), None) if s > 0.0 => r + s,
            (None, Some(f)) if f > 1.0 => r * f,
            (None, None) => bail!("give --step or --factor"),
            _ => bail!("--step must be above 0, --factor above 1"),
        };
        if r > args.max * (1.0 + 1e-9) {
            break;
        }
        out.push(round3(r));
        if out.len() > MAX_STEPS {
            bail!("more than {MAX_STEPS} steps: use a larger --step or --factor");
        }
    }
    Ok(out)
}

/// Runs `vienna-load sweep`.
pub fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let rates = rates(&args)?;
    if let Mode::Presence(a) = &args.mode
        && a.rounds.is_some()
    {
        bail!("sweep raises --rate: presence --rounds has no rate to raise");
    }
    if let Mode::Conference(_) = &args.mode {
        bail!("sweep raises --rate: a conference sends 50 packets/s per participant; run it at several --participants");
    }
    if let Some(r) = &args.report {
        plot::check_path(r)?;
    }
    let mut steps: Vec<Step> = Vec::new();
    let mut stopped = "every step was good up to --max".to_owned();
    for (i, &rate) in rates.iter().enumerate() {
        eprintln!("vienna-load sweep: step {}/{}: {} --rate {rate}", i + 1, rates.len(), args.mode.name());
        let finished = args.mode.at_rate(rate).run().with_context(|| format!("sweep step at --rate {rate}"))?;
        let crossed = judge(&args, &finished.step);
        let good = crossed.is_empty();
        let line = step_line(rate, &finished.step, good, &crossed);
        println!("{line}");
        steps.push(Step { rate, result: finished.step, good, crossed: crossed.clone(), report: finished.json });
        if !good {
            stopped = format!("step at --rate {rate} crossed: {}", crossed.join("; "));
            break;
        }
        if crate::sys::stop_requested() {
            stopped = "interrupted".to_owned();
            break;
        }
        if i + 1 < rates.len() {
            std::thread::sleep(Duration::from_millis(args.pause_ms));
        }
    }
    let knee = steps.iter().rev().find(|s| s.good);
    let report = SweepReport {
        mode: "sweep",
        swept: args.mode.name(),
        thresholds: Thresholds {
            max_loss_percent: args.max_loss,
            max_failure_percent: args.max_failures,
            max_latency_ms: args.max_latency_ms,
            percentile: percentile_name(args.percentile),
            min_achieved_percent: args.min_achieved,
        },
        knee_rate: knee.map(|s| s.rate),
        knee: knee.map(|s| s.result.clone()),
        steps: steps.clone(),
        stopped,
    };
    let text = summary(&report);
    print!("{text}");
    if let Some(path) = &args.json {
        let t = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, t + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.report {
        plot::write(path, &figure(&report, &text), None)?;
    }
    Ok(if report.knee.is_some() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn step_line(rate: f64, r: &StepResult, good: bool, crossed: &[String]) -> String {
    let l = &r.latency_us;
    format!(
        "step         rate={rate} offered={} achieved={} loss_percent={} failure_percent={} p50_us={} p99_us={} max_us={} \
         server_cpu_secs={} good={good}{}",
        round3(r.offered_rate),
        r.achieved_rate,
        r.loss_percent,
        r.failure_percent,
        l.p50,
        l.p99,
        l.max,
        r.server_cpu_secs.map_or_else(|| "n/a".to_owned(), |c| c.to_string()),
        if crossed.is_empty() { String::new() } else { format!(" crossed=\"{}\"", crossed.join("; ")) }
    )
}

/// The closing lines: the knee.
pub fn summary(r: &SweepReport) -> String {
    let mut s = String::new();
    match &r.knee {
        Some(k) => {
            let _ = writeln!(
                s,
                "knee         rate={} offered={} achieved={} loss_percent={} failure_percent={} p99_us={}",
                r.knee_rate.unwrap_or(0.0),
                round3(k.offered_rate),
                k.achieved_rate,
                k.loss_percent,
                k.failure_percent,
                k.latency_us.p99
            );
        }
        None => {
            let _ = writeln!(s, "knee         none (the first step already crossed a threshold)");
        }
    }
    let _ = writeln!(s, "stopped      {}", r.stopped);
    s
}

fn figure(r: &SweepReport, text: &str) -> Figure {
    let pts = |f: &dyn Fn(&StepResult) -> f64| -> Vec<(f64, f64)> {
        r.steps.iter().map(|s| (s.result.offered_rate, f(&s.result))).collect()
    };
    let c = |i: usize| {
        [
            plotters::style::RGBColor(31, 119, 180),
            plotters::style::RGBColor(44, 160, 44),
            plotters::style::RGBColor(255, 127, 14),
            plotters::style::RGBColor(214, 39, 40),
        ][i]
    };
    Figure {
        title: format!("vienna-load sweep of {}: {} steps", r.swept, r.steps.len()),
        summary: text.lines().map(str::to_owned).collect(),
        x_desc: "offered rate (per second)",
        panels: vec![
            Panel {
                title: "achieved rate".into(),
                y_desc: "per second",
                lines: vec![
                    Line { name: "offered", color: c(0), points: pts(&|s| s.offered_rate) },
                    Line { name: "achieved", color: c(1), points: pts(&|s| s.achieved_rate) },
                ],
            },
            Panel {
                title: "latency".into(),
                y_desc: "ms",
                lines: vec![
                    Line { name: "p50", color: c(0), points: pts(&|s| s.latency_us.p50 as f64 / 1000.0) },
                    Line { name: "p99", color: c(2), points: pts(&|s| s.latency_us.p99 as f64 / 1000.0) },
                    Line { name: "max", color: c(3), points: pts(&|s| s.latency_us.max as f64 / 1000.0) },
                ],
            },
            Panel {
                title: "loss and failures".into(),
                y_desc: "percent",
                lines: vec![
                    Line { name: "loss", color: c(3), points: pts(&|s| s.loss_percent) },
                    Line { name: "failures", color: c(2), points: pts(&|s| s.failure_percent) },
                ],
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        a: SweepArgs,
    }

    fn args(extra: &[&str]) -> SweepArgs {
        let mut v = vec!["x"];
        v.extend_from_slice(extra);
        v.extend_from_slice(&["sip", "--target", "127.0.0.1:5060", "--duration", "1"]);
        Wrap::parse_from(v).a
    }

    #[test]
    fn step_rates() {
        assert_eq!(
            rates(&args(&["--start", "100", "--step", "100", "--max", "350"])).unwrap(),
            vec![100.0, 200.0, 300.0]
        );
        assert_eq!(
            rates(&args(&["--start", "100", "--factor", "2", "--max", "800"])).unwrap(),
            vec![100.0, 200.0, 400.0, 800.0]
        );
        assert!(rates(&args(&["--start", "100", "--max", "800"])).is_err(), "needs --step or --factor");
        assert!(rates(&args(&["--start", "100", "--factor", "1", "--max", "800"])).is_err());
        assert!(rates(&args(&["--start", "1", "--step", "0.001", "--max", "1000"])).is_err(), "too many steps");
    }

    #[test]
    fn thresholds() {
        let a = args(&["--start", "1", "--step", "1", "--max", "2", "--max-latency-ms", "10"]);
        let mut r = StepResult { offered_rate: 100.0, achieved_rate: 99.0, ..StepResult::default() };
        r.latency_us.p99 = 9_000;
        assert!(judge(&a, &r).is_empty());
        r.latency_us.p99 = 11_000;
        assert_eq!(judge(&a, &r), vec!["p99 11 ms > 10 ms".to_owned()]);
        r.latency_us.p99 = 0;
        r.achieved_rate = 50.0;
        r.loss_percent = 2.0;
        r.failure_percent = 0.5;
        let crossed = judge(&a, &r);
        assert_eq!(crossed.len(), 2, "{crossed:?}");
        assert!(crossed[0].starts_with("loss") && crossed[1].starts_with("achieved"));
    }
}
