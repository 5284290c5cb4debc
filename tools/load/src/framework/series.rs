//! Results over time: every load thread counts what it offered, what succeeded, what failed and the
//! latencies it measured, one bin per second since the run's origin. Counts stay with the thread until the
//! end (a few words per second of run); latency histograms leave the thread when its second is over and are
//! merged by the [`Collector`], which turns each finished second into percentiles and drops the histogram,
//! so memory does not grow with the run's length.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram records, microseconds (one minute); longer ones saturate.
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// A latency histogram in microseconds with three significant digits (whole-run totals).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds are valid")
}

/// The histogram of one second (same precision; only the seconds not yet closed are kept).
fn bin_histogram() -> Histogram<u64> {
    histogram()
}

/// Counts of one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BinCounts {
    /// Operations started or packets sent in this second.
    pub offered: u64,
    /// Operations that succeeded in this second, or packets sent in this second that came back.
    pub ok: u64,
    /// Operations that failed in this second.
    pub failed: u64,
}

impl BinCounts {
    fn add(&mut self, o: &BinCounts) {
        self.offered += o.offered;
        self.ok += o.ok;
        self.failed += o.failed;
    }
}

/// Latency percentiles in microseconds (all 0 when nothing was measured).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencyReport {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Smallest.
    pub min: u64,
    /// Mean.
    pub mean: f64,
}

impl LatencyReport {
    /// Percentiles of `h`.
    pub fn of(h: &Histogram<u64>) -> LatencyReport {
        if h.is_empty() {
            return LatencyReport::default();
        }
        LatencyReport {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            min: h.min(),
            mean: round3(h.mean()),
        }
    }

    /// The `latency_us` summary line: `p50=.. p90=.. p99=.. p99.9=.. max=.. min=.. mean=.. count=..`.
    pub fn line(&self) -> String {
        format!(
            "p50={} p90={} p99={} p99.9={} max={} min={} mean={} count={}",
            self.p50, self.p90, self.p99, self.p999, self.max, self.min, self.mean, self.count
        )
    }
}

/// Rounds to three decimals, so a summary and its JSON print the same value.
pub fn round3(x: f64) -> f64 {
    if x.is_finite() { (x * 1000.0).round() / 1000.0 } else { 0.0 }
}

/// One thread's recorder. Call [`Recorder::tick`] at least once per wake-up so a finished second leaves.
#[derive(Debug)]
pub struct Recorder {
    origin: Option<Instant>,
    bins: Vec<BinCounts>,
    hist_bin: usize,
    hist: Histogram<u64>,
    /// Whole-run latency.
    pub total: Histogram<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// Longest run the bins cover (bins past it fold into the last one).
const MAX_BINS: usize = 24 * 3600;

impl Recorder {
    /// A recorder whose origin is set later ([`Recorder::start`]).
    pub fn new() -> Recorder {
        Recorder { origin: None, bins: Vec::new(), hist_bin: 0, hist: bin_histogram(), total: histogram() }
    }

    /// Sets the origin (second 0 starts here). Before it, nothing is binned (whole-run latency still is).
    pub fn start(&mut self, origin: Instant) {
        self.origin = Some(origin);
    }

    /// Which second `at` falls in.
    pub fn bin_of(&self, at: Instant) -> Option<usize> {
        let o = self.origin?;
        Some(((at.saturating_duration_since(o).as_secs()) as usize).min(MAX_BINS - 1))
    }

    fn bin_mut(&mut self, bin: usize) -> &mut BinCounts {
        if self.bins.len() <= bin {
            self.bins.resize(bin + 1, BinCounts::default());
        }
        &mut self.bins[bin]
    }

    /// `n` operations started (packets sent) at `at`.
    pub fn offered(&mut self, at: Instant, n: u64) {
        if let Some(b) = self.bin_of(at) {
            self.bin_mut(b).offered += n;
        }
    }

    /// `n` operations succeeded at `at`.
    pub fn ok(&mut self, at: Instant, n: u64) {
        if let Some(b) = self.bin_of(at) {
            self.bin_mut(b).ok += n;
        }
    }

    /// One success credited to second `bin` (a packet sent then that came back later).
    pub fn ok_in_bin(&mut self, bin: usize) {
        self.bin_mut(bin.min(MAX_BINS - 1)).ok += 1;
    }

    /// `n` operations failed at `at`.
    pub fn failed(&mut self, at: Instant, n: u64) {
        if let Some(b) = self.bin_of(at) {
            self.bin_mut(b).failed += n;
        }
    }

    /// A latency sample of `us` microseconds measured at `at`.
    pub fn latency(&mut self, collector: &Collector, at: Instant, us: u64) {
        let us = us.max(1);
        self.total.saturating_record(us);
        if let Some(b) = self.bin_of(at) {
            if b != self.hist_bin {
                self.flush(collector);
                self.hist_bin = b;
            }
            self.hist.saturating_record(us);
        }
    }

    /// Hands the current second's histogram to `collector` once the clock has left it.
    pub fn tick(&mut self, collector: &Collector, now: Instant) {
        if self.bin_of(now).is_some_and(|b| b != self.hist_bin) {
            self.flush(collector);
        }
    }

    /// Hands the current histogram to `collector` now.
    pub fn flush(&mut self, collector: &Collector) {
        if !self.hist.is_empty() {
            collector.merge_hist(self.hist_bin, &self.hist);
            self.hist.reset();
        }
    }

    /// The counts per second (taken at the end of the run).
    pub fn take_bins(&mut self) -> Vec<BinCounts> {
        std::mem::take(&mut self.bins)
    }
}

/// Percentiles of one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BinLatency {
    /// Samples.
    pub count: u64,
    /// Median, µs.
    pub p50: u64,
    /// 90th percentile, µs.
    pub p90: u64,
    /// 99th percentile, µs.
    pub p99: u64,
    /// 99.9th percentile, µs.
    pub p999: u64,
    /// Largest, µs.
    pub max: u64,
}

/// Merges the threads' histograms per second; shared by the main thread and the load threads.
#[derive(Debug, Default)]
pub struct Collector {
    inner: Mutex<CollectorInner>,
}

#[derive(Debug, Default)]
struct CollectorInner {
    open: BTreeMap<usize, Histogram<u64>>,
    done: BTreeMap<usize, BinLatency>,
}

impl Collector {
    fn merge_hist(&self, bin: usize, h: &Histogram<u64>) {
        let Ok(mut g) = self.inner.lock() else { return };
        if g.done.contains_key(&bin) {
            // A thread that reports a second after it was closed: only the whole-run totals have it.
            return;
        }
        let entry = g.open.entry(bin).or_insert_with(bin_histogram);
        let _ = entry.add(h);
    }

    /// Turns every second before `bin` into percentiles.
    pub fn close_before(&self, bin: usize) {
        let Ok(mut g) = self.inner.lock() else { return };
        let keys: Vec<usize> = g.open.range(..bin).map(|(k, _)| *k).collect();
        for k in keys {
            if let Some(h) = g.open.remove(&k) {
                g.done.insert(k, bin_latency(&h));
            }
        }
    }

    /// The newest closed second and its percentiles.
    pub fn last_closed(&self) -> Option<(usize, BinLatency)> {
        let g = self.inner.lock().ok()?;
        g.done.iter().next_back().map(|(k, v)| (*k, *v))
    }

    /// Closes everything and returns the percentiles per second.
    pub fn finish(&self) -> BTreeMap<usize, BinLatency> {
        self.close_before(usize::MAX);
        self.inner.lock().map(|g| g.done.clone()).unwrap_or_default()
    }
}

fn bin_latency(h: &Histogram<u64>) -> BinLatency {
    BinLatency {
        count: h.len(),
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

/// One second of the timeline in a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Row {
    /// Second since the origin.
    pub t: u64,
    /// Offered in this second (operations started, packets sent).
    pub offered: u64,
    /// Succeeded in this second (packets: those sent in this second that came back).
    pub ok: u64,
    /// Failed in this second.
    pub failed: u64,
    /// Packets sent in this second that never came back (loss modes only).
    pub lost: u64,
    /// Latency measured in this second.
    pub latency_us: BinLatency,
    /// CPU of the sampled server processes, percent of one core (with `--pid`).
    pub server_cpu_percent: Option<f64>,
    /// Resident memory of the sampled server processes, bytes (with `--pid`).
    pub server_rss_bytes: Option<u64>,
}

/// What a run measured over time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timeline {
    /// Whether `lost` is meaningful (packet modes).
    pub has_loss: bool,
    /// One row per second.
    pub rows: Vec<Row>,
}

/// Builds the timeline from the threads' bins, the collector's percentiles and process samples.
pub fn timeline(
    bins: &[Vec<BinCounts>],
    latency: &BTreeMap<usize, BinLatency>,
    samples: &[crate::framework::procstat::Sample],
    has_loss: bool,
    length: Duration,
) -> Timeline {
    let mut merged: Vec<BinCounts> = Vec::new();
    for b in bins {
        if merged.len() < b.len() {
            merged.resize(b.len(), BinCounts::default());
        }
        for (m, x) in merged.iter_mut().zip(b) {
            m.add(x);
        }
    }
    // At least the run's length, so idle seconds show as zeros.
    let secs =
        (length.as_secs_f64().ceil() as usize).max(merged.len()).max(latency.keys().next_back().map_or(0, |k| k + 1));
    let rows = (0..secs.min(MAX_BINS))
        .map(|t| {
            let c = merged.get(t).copied().unwrap_or_default();
            let s = samples.iter().find(|s| s.t == t as u64);
            Row {
                t: t as u64,
                offered: c.offered,
                ok: c.ok,
                failed: c.failed,
                lost: if has_loss { c.offered.saturating_sub(c.ok) } else { 0 },
                latency_us: latency.get(&t).copied().unwrap_or_default(),
                server_cpu_percent: s.map(|s| s.cpu_percent),
                server_rss_bytes: s.map(|s| s.rss_bytes),
            }
        })
        .collect();
    Timeline { has_loss, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_and_percentiles() {
        let c = Collector::default();
        let t0 = Instant::now();
        let mut r = Recorder::new();
        r.latency(&c, t0, 5); // before the origin: whole run only
        r.start(t0);
        r.offered(t0, 3);
        r.ok(t0 + Duration::from_millis(10), 2);
        r.failed(t0 + Duration::from_millis(1500), 1);
        r.ok_in_bin(0);
        for us in 1..=100 {
            r.latency(&c, t0 + Duration::from_millis(100), us);
        }
        r.latency(&c, t0 + Duration::from_millis(1100), 1000);
        r.tick(&c, t0 + Duration::from_millis(2100));
        c.close_before(2);
        let (k, l) = c.last_closed().unwrap();
        assert_eq!((k, l.count, l.max), (1, 1, 1000));
        let lat = c.finish();
        assert_eq!(lat[&0].count, 100);
        assert_eq!(lat[&0].p50, 50);
        assert_eq!(r.total.len(), 102);
        let bins = r.take_bins();
        assert_eq!(bins[0], BinCounts { offered: 3, ok: 3, failed: 0 });
        assert_eq!(bins[1], BinCounts { offered: 0, ok: 0, failed: 1 });
        let tl = timeline(&[bins.clone(), bins], &lat, &[], true, Duration::from_secs(3));
        assert_eq!(tl.rows.len(), 3);
        assert_eq!((tl.rows[0].offered, tl.rows[0].ok, tl.rows[0].lost), (6, 6, 0));
        assert_eq!(tl.rows[1].failed, 2);
        assert_eq!(tl.rows[2], Row { t: 2, ..Row::default() });
    }

    #[test]
    fn late_reports_do_not_reopen_a_second() {
        let c = Collector::default();
        let mut h = bin_histogram();
        h.record(10).unwrap();
        c.merge_hist(0, &h);
        c.close_before(1);
        c.merge_hist(0, &h);
        assert_eq!(c.finish()[&0].count, 1);
    }

    #[test]
    fn latency_report_of_a_histogram() {
        let mut h = histogram();
        assert_eq!(LatencyReport::of(&h), LatencyReport::default());
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let l = LatencyReport::of(&h);
        assert_eq!((l.count, l.p50, l.p90, l.max), (1000, 500, 900, 1000));
        assert!(l.line().starts_with("p50=500 p90=900 p99=990"));
    }
}
