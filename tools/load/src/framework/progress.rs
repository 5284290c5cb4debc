//! The live progress line: an indicatif spinner on a terminal, else a plain line per second on stderr
//! (so logs of unattended runs show progress too, without control characters).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// The progress line of a run.
pub struct Progress {
    bar: Option<ProgressBar>,
    last: Option<Instant>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    /// A spinner if stderr is a terminal.
    pub fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress { bar, last: None }
    }

    /// Shows `msg` (on a plain stderr at most once per second).
    pub fn show(&mut self, msg: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg);
        } else if self.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            self.last = Some(Instant::now());
            eprintln!("vienna-load: {msg}");
        }
    }

    /// Runs `f` (which prints) with the spinner out of the way.
    pub fn suspend(&self, f: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Removes the spinner.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// A rate over the last interval from a running total: `update(total, now)` returns units per second.
#[derive(Debug, Default)]
pub struct RateMeter {
    last: Option<(Instant, u64)>,
    rate: f64,
}

impl RateMeter {
    /// Feeds the running total; the rate is recomputed at most every half second.
    pub fn update(&mut self, total: u64, now: Instant) -> f64 {
        match self.last {
            None => self.last = Some((now, total)),
            Some((t, n)) => {
                let dt = now.saturating_duration_since(t).as_secs_f64();
                if dt >= 0.5 {
                    self.rate = total.saturating_sub(n) as f64 / dt;
                    self.last = Some((now, total));
                }
            }
        }
        self.rate
    }
}

/// Microseconds as a short human figure: `850us`, `12.3ms`, `1.20s`.
pub fn human_us(us: u64) -> String {
    if us < 1000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_meter_and_units() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        assert_eq!(m.update(0, t0), 0.0);
        assert_eq!(m.update(10, t0 + Duration::from_millis(100)), 0.0, "too soon");
        assert_eq!(m.update(500, t0 + Duration::from_secs(1)), 500.0);
        assert_eq!(
            (human_us(850), human_us(12_340), human_us(1_200_000)),
            ("850us".into(), "12.3ms".into(), "1.20s".into())
        );
    }
}
