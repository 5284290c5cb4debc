//! Prometheus metrics: the global `metrics` recorder, rendered by `/metrics`, plus process figures read
//! from `/proc` at scrape time.

use std::time::{SystemTime, UNIX_EPOCH};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the global recorder and describes Vienna's own metrics. Call once, before any metric is used.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
    metrics::describe_gauge!("vienna_build_info", "Always 1; labels carry the version.");
    metrics::describe_gauge!("vienna_uptime_seconds", "Seconds since the server started.");
    metrics::describe_gauge!("vienna_accounts", "User accounts in the store.");
    metrics::describe_gauge!("vienna_registrations", "Registered contacts (SIP bindings) that have not expired.");
    metrics::describe_counter!("vienna_admin_requests_total", "Admin HTTP requests by route and status.");
    metrics::describe_counter!("vienna_store_errors_total", "Store operations that failed.");
    metrics::gauge!("vienna_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

/// `process_*` metrics in the Prometheus client-library convention, read from `/proc/self`.
pub fn process_metrics(started_unix: f64) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
    };
    metric("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch.", started_unix);
    if let Some(cpu) = cpu_seconds() {
        metric("process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.", cpu);
    }
    if let Some(rss) = resident_bytes() {
        metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metric("process_open_fds", "gauge", "Open file descriptors.", fds.count() as f64);
    }
    out
}

/// Now, in seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may itself hold spaces: utime and stime are the
    // 14th and 15th fields of the whole line, so the 12th and 13th after ") ".
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions and only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some((utime + stime) / ticks as f64)
}

fn resident_bytes() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split(' ').nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions and only reads a constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page > 0).then_some(pages * page as f64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn process_metrics_are_read() {
        let text = super::process_metrics(1.0);
        for name in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"] {
            assert!(text.contains(&format!("\n{name} ")), "{name} missing in {text}");
        }
        assert!(super::resident_bytes().unwrap() > 1e5);
    }
}
