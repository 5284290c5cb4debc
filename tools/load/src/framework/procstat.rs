//! CPU and memory of server processes from `/proc` (Linux), sampled by the main thread once per second
//! with `--pid`, and this process's own CPU time (so a run can say what the load itself cost).
//!
//! A sampled process counts with all its descendants (Kamailio forks its workers; Vienna is one process
//! with threads): CPU is user + system time of every live process of the tree, memory the sum of their
//! resident sets. A child that exits between two samples takes its CPU time with it, so the figures are a
//! lower bound for servers that fork per request (none of the ones measured here do).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// One sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Second of the run's timeline.
    pub t: u64,
    /// CPU used since the previous sample, percent of one core.
    pub cpu_percent: f64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
}

/// What the sampled processes used over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProcessReport {
    /// The PIDs given with `--pid`.
    pub pids: Vec<u32>,
    /// Processes in their trees at the last sample.
    pub processes: usize,
    /// CPU seconds (user + system) used between the first and the last sample.
    pub cpu_secs: f64,
    /// Mean CPU over that time, percent of one core.
    pub cpu_percent_mean: f64,
    /// Highest one-second CPU, percent of one core.
    pub cpu_percent_peak: f64,
    /// Resident memory at the first sample, bytes.
    pub rss_start_bytes: u64,
    /// Highest resident memory, bytes.
    pub rss_peak_bytes: u64,
    /// Resident memory at the last sample, bytes.
    pub rss_end_bytes: u64,
}

/// Samples the trees of some PIDs.
#[derive(Debug)]
pub struct ProcSampler {
    pids: Vec<u32>,
    tick_hz: f64,
    page: u64,
    origin: Option<Instant>,
    first: Option<(Instant, f64, u64)>,
    last: Option<(Instant, f64)>,
    next: u64,
    processes: usize,
    /// Samples so far.
    pub samples: Vec<Sample>,
    rss_peak: u64,
    rss_last: u64,
}

impl ProcSampler {
    /// A sampler of `pids` and their descendants; fails if one of them does not exist.
    pub fn new(pids: &[u32]) -> anyhow::Result<ProcSampler> {
        for &p in pids {
            if !std::path::Path::new(&format!("/proc/{p}/stat")).exists() {
                anyhow::bail!("--pid {p}: no such process");
            }
        }
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Ok(ProcSampler {
            pids: pids.to_vec(),
            tick_hz: if hz > 0 { hz as f64 } else { 100.0 },
            page: if page > 0 { page as u64 } else { 4096 },
            origin: None,
            first: None,
            last: None,
            next: 0,
            processes: 0,
            samples: Vec::new(),
            rss_peak: 0,
            rss_last: 0,
        })
    }

    /// Whether there is anything to sample.
    pub fn is_active(&self) -> bool {
        !self.pids.is_empty()
    }

    /// Starts the timeline at `origin` and takes the first reading.
    pub fn start(&mut self, origin: Instant) {
        if !self.is_active() {
            return;
        }
        self.origin = Some(origin);
        let (cpu, rss, n) = self.read();
        self.first = Some((origin, cpu, rss));
        self.last = Some((origin, cpu));
        self.processes = n;
        self.rss_peak = rss;
        self.rss_last = rss;
        self.next = 1;
    }

    /// Takes a sample if a second of the timeline ended since the last one.
    pub fn poll(&mut self, now: Instant) {
        let Some(origin) = self.origin else { return };
        if now < origin + Duration::from_secs(self.next) {
            return;
        }
        self.take(now);
    }

    /// Takes a last sample (end of the run).
    pub fn finish(&mut self, now: Instant) {
        if self.origin.is_some() {
            self.take(now);
        }
    }

    fn take(&mut self, now: Instant) {
        let (Some(origin), Some((t_prev, cpu_prev))) = (self.origin, self.last) else { return };
        let dt = now.saturating_duration_since(t_prev).as_secs_f64();
        if dt <= 0.0 {
            return;
        }
        let (cpu, rss, n) = self.read();
        let t = self.next - 1;
        let cpu_percent = ((cpu - cpu_prev).max(0.0) / dt * 1000.0).round() / 10.0;
        self.samples.push(Sample { t, cpu_percent, rss_bytes: rss });
        self.last = Some((now, cpu));
        self.rss_peak = self.rss_peak.max(rss);
        self.rss_last = rss;
        self.processes = n;
        self.next = now.saturating_duration_since(origin).as_secs() + 1;
    }

    /// CPU seconds, resident bytes and process count of the trees now.
    fn read(&self) -> (f64, u64, usize) {
        let procs = tree(&self.pids);
        let (mut ticks, mut pages) = (0u64, 0u64);
        for p in &procs {
            if let Some((t, rss)) = stat(*p) {
                ticks += t;
                pages += rss;
            }
        }
        (ticks as f64 / self.tick_hz, pages * self.page, procs.len())
    }

    /// Proportional set size of the trees now, bytes (`/proc/PID/smaps_rollup`: a page shared by several
    /// processes counts as its share in each, so forked workers sharing memory are counted once in
    /// all); `None` without `--pid` or when no process of the trees could be read.
    pub fn pss_bytes(&self) -> Option<u64> {
        if !self.is_active() {
            return None;
        }
        let kib: Vec<u64> = tree(&self.pids).into_iter().filter_map(pss_kib).collect();
        (!kib.is_empty()).then(|| kib.iter().sum::<u64>() * 1024)
    }

    /// The summary over the run.
    pub fn report(&self) -> Option<ProcessReport> {
        let (t0, cpu0, rss0) = self.first?;
        let (t1, cpu1) = self.last?;
        let secs = t1.saturating_duration_since(t0).as_secs_f64();
        let cpu = (cpu1 - cpu0).max(0.0);
        Some(ProcessReport {
            pids: self.pids.clone(),
            processes: self.processes,
            cpu_secs: super::series::round3(cpu),
            cpu_percent_mean: super::series::round3(if secs > 0.0 { cpu / secs * 100.0 } else { 0.0 }),
            cpu_percent_peak: self.samples.iter().map(|s| s.cpu_percent).fold(0.0, f64::max),
            rss_start_bytes: rss0,
            rss_peak_bytes: self.rss_peak,
            rss_end_bytes: self.rss_last,
        })
    }
}

/// `pids` and all their live descendants.
fn tree(pids: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if let Some(ppid) = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| field(&s, 1)) {
                children.entry(ppid as u32).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut todo: Vec<u32> = pids.to_vec();
    while let Some(p) = todo.pop() {
        if out.contains(&p) {
            continue;
        }
        out.push(p);
        if let Some(c) = children.get(&p) {
            todo.extend(c);
        }
    }
    out
}

/// Field `i` (0 = state) after the command name of a `/proc/PID/stat` line.
fn field(stat: &str, i: usize) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f = rest.split_whitespace().nth(i)?;
    if i == 0 { None } else { f.parse().ok() }
}

/// utime + stime in clock ticks and RSS in pages of one process.
fn stat(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After ")": state(0) ppid(1) ... utime(11) stime(12) ... rss(21)
    Some((field(&s, 11)? + field(&s, 12)?, field(&s, 21)?))
}

/// The `Pss:` line of `/proc/PID/smaps_rollup`, KiB.
fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    parse_pss(&text)
}

fn parse_pss(smaps_rollup: &str) -> Option<u64> {
    smaps_rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU seconds (user + system) this process used so far, all threads.
pub fn self_cpu_secs() -> f64 {
    let mut u = libc::rusage {
        ru_utime: libc::timeval { tv_sec: 0, tv_usec: 0 },
        ru_stime: libc::timeval { tv_sec: 0, tv_usec: 0 },
        ru_maxrss: 0,
        ru_ixrss: 0,
        ru_idrss: 0,
        ru_isrss: 0,
        ru_minflt: 0,
        ru_majflt: 0,
        ru_nswap: 0,
        ru_inblock: 0,
        ru_oublock: 0,
        ru_msgsnd: 0,
        ru_msgrcv: 0,
        ru_nsignals: 0,
        ru_nvcsw: 0,
        ru_nivcsw: 0,
    };
    // SAFETY: getrusage writes into the struct we own.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let me = std::process::id();
        let mut s = ProcSampler::new(&[me]).unwrap();
        let t0 = Instant::now();
        s.start(t0);
        // Burn a little CPU so the sample is not all zero.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        s.finish(t0 + Duration::from_secs(1));
        let r = s.report().unwrap();
        assert_eq!(r.pids, vec![me]);
        assert!(r.processes >= 1);
        assert!(r.rss_peak_bytes > 0);
        assert!(s.pss_bytes().is_some_and(|b| b > 0), "PSS of this process");
        assert_eq!(s.samples.len(), 1);
        assert_eq!(s.samples[0].t, 0);
        assert!(self_cpu_secs() > 0.0);
    }

    #[test]
    fn unknown_pid_is_an_error() {
        assert!(ProcSampler::new(&[u32::MAX - 1]).is_err());
    }

    #[test]
    fn pss_line() {
        let text = "55d0-7ffc ---p 00000000 00:00 0 [rollup]\nRss:    9000 kB\nPss:    4321 kB\nPss_Anon: 12 kB\n";
        assert_eq!(parse_pss(text), Some(4321));
        assert_eq!(parse_pss("Rss: 1 kB\n"), None);
    }

    #[test]
    fn stat_fields() {
        let line = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 111 222 0 0 0 0 1 0 100 2000 77";
        assert_eq!(field(line, 1), Some(1));
        assert_eq!(field(line, 11), Some(111));
        assert_eq!(field(line, 12), Some(222));
        assert_eq!(field(line, 21), Some(77));
    }
}
