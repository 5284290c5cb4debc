//! What every mode shares: the output options (`--json`, `--report`, `--pid`), results over time
//! ([`series`]), server process sampling ([`procstat`]), the live progress line ([`progress`]), the plots
//! ([`plot`]), stream connections ([`stream`]) with TLS ([`tls`]) and the few numbers `sweep` compares between steps ([`StepResult`]).
//!
//! A mode runs in three parts: it checks its arguments and the outputs ([`OutputArgs::check`]) before any
//! traffic, runs bounded in time and count with its threads recording into a [`series::Recorder`] each, and
//! ends by building its report (which embeds a [`Common`]) and calling [`OutputArgs::write`].

pub mod plot;
pub mod procstat;
pub mod progress;
pub mod series;
pub mod stream;
pub mod tls;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use procstat::ProcessReport;
use series::{LatencyReport, Timeline};

/// Output options of every mode.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutputArgs {
    /// Write the results as a JSON object to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a report with plots over time (rate, latency percentiles, loss or failures, server CPU and
    /// memory): FILE.svg, FILE.png, or FILE.html (the SVG, the summary and a per-second table in one page).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Sample CPU and memory of this server process and its descendants from /proc every second
    /// (repeatable).
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
}

impl OutputArgs {
    /// Checks the outputs before the run: report name and font, PIDs.
    pub fn check(&self) -> anyhow::Result<procstat::ProcSampler> {
        if let Some(r) = &self.report {
            plot::check_path(r)?;
        }
        procstat::ProcSampler::new(&self.pid)
    }

    /// Writes the JSON and the report.
    pub fn write(
        &self,
        json: &impl Serialize,
        figure: impl FnOnce() -> plot::Figure,
        tl: &Timeline,
    ) -> anyhow::Result<()> {
        if let Some(path) = &self.json {
            let text = serde_json::to_string_pretty(json)?;
            std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(path) = &self.report {
            plot::write(path, &figure(), Some(plot::timeline_table(tl)))?;
        }
        Ok(())
    }
}

/// The part of every report that is the same for all modes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Common {
    /// Results per second since the start of the measured phase.
    pub timeline: Timeline,
    /// CPU and memory of the `--pid` processes over the measured phase.
    pub server_process: Option<ProcessReport>,
    /// CPU seconds this load generator used (all threads, whole run including set-up).
    pub loader_cpu_secs: f64,
}

impl Common {
    /// The summary lines about processes (`server ...`, `loader ...`), with per-unit costs over `units`
    /// units of work named `unit`.
    pub fn lines(&self, units: u64, unit: &str) -> Vec<String> {
        let mut v = Vec::new();
        let per = |secs: f64| if units > 0 { series::round3(secs * 1e6 / units as f64) } else { 0.0 };
        if let Some(p) = &self.server_process {
            v.push(format!(
                "server       cpu_secs={} cpu_percent_mean={} cpu_percent_peak={} cpu_us_per_{unit}={} rss_start_bytes={} \
                 rss_peak_bytes={} rss_end_bytes={} processes={}",
                p.cpu_secs,
                p.cpu_percent_mean,
                p.cpu_percent_peak,
                per(p.cpu_secs),
                p.rss_start_bytes,
                p.rss_peak_bytes,
                p.rss_end_bytes,
                p.processes
            ));
        }
        v.push(format!(
            "loader       cpu_secs={} cpu_us_per_{unit}={}",
            self.loader_cpu_secs,
            per(self.loader_cpu_secs)
        ));
        v
    }
}

/// The numbers `sweep` reads from one run of a mode.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepResult {
    /// The rate asked for (the mode's unit per second, all clients together).
    pub offered_rate: f64,
    /// The rate reached (successes per second).
    pub achieved_rate: f64,
    /// Loss in percent (packet modes; 0 elsewhere).
    pub loss_percent: f64,
    /// Failed operations in percent of those finished.
    pub failure_percent: f64,
    /// Latency of the run.
    pub latency_us: LatencyReport,
    /// CPU of the `--pid` processes, seconds.
    pub server_cpu_secs: Option<f64>,
    /// Whether the run ended by Ctrl-C.
    pub interrupted: bool,
}

/// What a mode returns: its exit code, the step numbers and its whole JSON report.
pub struct Finished {
    /// Exit code of the run alone.
    pub exit: ExitCode,
    /// Numbers for `sweep`.
    pub step: StepResult,
    /// The report as JSON.
    pub json: serde_json::Value,
}
