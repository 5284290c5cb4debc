//! The result of a `vienna-load turn` or `msturn` run: the human summary on standard output and the JSON object
//! written with `--json`. Both print the same rounded numbers.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::framework::Common;
pub use crate::framework::series::{LatencyReport, round3};

/// The run's settings, as given or derived.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    /// The TURN server.
    pub server: String,
    /// The peer every client binds a channel to.
    pub peer: String,
    /// Whether the peer is the built-in echo peer.
    pub builtin_peer: bool,
    /// `turn` (RFC 8656) or `msturn`.
    pub dialect: &'static str,
    /// Client transport: `udp`, `tcp` or `tls`.
    pub transport: &'static str,
    /// USERNAME sent (for REST credentials, `expiry:user`; an MRAS token in base64).
    pub username: String,
    /// `long-term` (RFC 8656), `account` (MS-TURN with a store account), `rest` or `mras`.
    pub credentials: &'static str,
    /// Whether TURN REST credentials were used.
    pub rest_credentials: bool,
    /// MS-TURN data path: `send` (Send requests out, Data Indications back) or `raw` (after Set Active
    /// Destination); `null` for RFC 8656.
    pub msturn_data: Option<&'static str>,
    /// MS-VERSION sent (MS-TURN).
    pub ms_version: Option<u32>,
    /// Clients (allocations).
    pub clients: u64,
    /// Packets per second per client.
    pub rate_per_client_pps: f64,
    /// Requested sending (data) or holding time.
    pub duration_secs: u64,
    /// Payload bytes per packet (ChannelData adds 4).
    pub size: usize,
    /// Load threads.
    pub threads: usize,
    /// Hold mode.
    pub hold: bool,
    /// Soft RLIMIT_NOFILE after raising it.
    pub nofile_limit: u64,
}

/// Set-up results.
#[derive(Debug, Clone, Serialize)]
pub struct AllocationReport {
    /// Clients.
    pub requested: u64,
    /// Allocations with permission and channel in place.
    pub ok: u64,
    /// Clients that did not get there.
    pub failed: u64,
    /// Failures by STUN error code, `timeout` (no answer after 5 tries) or `unfinished` (set-up time
    /// ran out or the run was interrupted first).
    pub failed_by_code: BTreeMap<String, u64>,
    /// Failures by step: `allocate`, `create_permission`, `channel_bind`, `set_active_destination`,
    /// `setup`.
    pub failed_by_step: BTreeMap<String, u64>,
    /// Time from the first request until every client was ready or failed.
    pub setup_secs: f64,
}

/// Jitter over the clients, microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JitterReport {
    /// Clients with at least two echoes.
    pub clients: u64,
    /// Mean of the clients' jitter.
    pub mean: f64,
    /// Largest client jitter.
    pub max: f64,
}

/// Deletion results.
#[derive(Debug, Clone, Serialize)]
pub struct TeardownReport {
    /// Allocations deleted with Refresh LIFETIME 0.
    pub deleted: u64,
    /// Allocations whose deletion failed or was not answered (they expire on the server).
    pub delete_failed: u64,
    /// Failed deletions by STUN error code, `timeout` or `unfinished` (teardown time ran out).
    pub delete_failed_by_code: BTreeMap<String, u64>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `data` or `hold`.
    pub mode: &'static str,
    /// Settings.
    pub config: ConfigReport,
    /// Set-up results.
    pub allocations: AllocationReport,
    /// Data packets the kernel accepted for sending.
    pub sent: u64,
    /// Distinct data packets that came back.
    pub received: u64,
    /// Sent and not back by the end of the drain time.
    pub lost: u64,
    /// `lost / sent` in percent.
    pub loss_percent: f64,
    /// Packets that came back after a later one.
    pub reordered: u64,
    /// Extra copies received.
    pub duplicates: u64,
    /// Packets this machine's sockets refused (a load-generator limit, not relay loss).
    pub send_dropped: u64,
    /// Scheduled packets not sent because their client had no channel.
    pub skipped_not_ready: u64,
    /// Datagrams received that were not this run's (wrong source, channel, client or format).
    pub foreign: u64,
    /// Planned aggregate rate: clients × rate.
    pub requested_rate_pps: f64,
    /// Packets sent per second over the sending time.
    pub achieved_rate_pps: f64,
    /// Packets received per second over the sending time.
    pub received_rate_pps: f64,
    /// Datagrams the relay forwarded per second, both directions (client→peer as counted by the
    /// built-in peer, peer→client as received; with an external peer, twice the received rate: a lower
    /// bound).
    pub relayed_datagrams_per_sec: f64,
    /// Datagrams the built-in echo peer received (`null` with `--peer`).
    pub peer_received: Option<u64>,
    /// Round-trip latency client → relay → peer → relay → client.
    pub latency_us: LatencyReport,
    /// RFC 3550 interarrival jitter of the echoed streams (round trip), per client at the end of the run.
    pub jitter_us: JitterReport,
    /// Sending time measured (data mode) or holding time (hold mode).
    pub duration_secs: f64,
    /// Deletion results.
    pub teardown: TeardownReport,
    /// Refreshes that failed during the run.
    pub refresh_failures: u64,
    /// Receive errors on client sockets.
    pub recv_errors: u64,
    /// Ended early by Ctrl-C / SIGTERM.
    pub interrupted: bool,
    /// Timeline, server process and load generator CPU.
    #[serde(flatten)]
    pub common: Common,
}

impl Report {
    /// `turn data`, `msturn send data`, `msturn raw hold`...: the mode as the summary names it.
    pub fn label(&self) -> String {
        match self.config.msturn_data {
            Some(path) => format!("msturn {path} {}", self.mode),
            None => format!("turn {}", self.mode),
        }
    }

    /// The human summary: one `key=value` line per topic, the same numbers as the JSON.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let a = &self.allocations;
        let mut s = String::new();
        let peer = if c.builtin_peer { "built-in echo peer" } else { "external peer" };
        let _ = writeln!(
            s,
            "vienna-load {}: {} clients x {} pps x {} s, {} B payload -> {} over {} ({} {}), {} threads",
            self.label(),
            c.clients,
            c.rate_per_client_pps,
            c.duration_secs,
            c.size,
            c.server,
            c.transport,
            peer,
            c.peer,
            c.threads
        );
        let _ = writeln!(s, "allocations  ok={} failed={} setup_secs={}", a.ok, a.failed, a.setup_secs);
        if a.failed > 0 {
            let codes: Vec<String> = a.failed_by_code.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let steps: Vec<String> = a.failed_by_step.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(s, "failed_by    code: {}  step: {}", codes.join(" "), steps.join(" "));
        }
        if self.mode == "data" {
            let _ = writeln!(
                s,
                "traffic      sent={} received={} lost={} loss_percent={} reordered={} duplicates={} send_dropped={} \
                 skipped_not_ready={} foreign={}",
                self.sent,
                self.received,
                self.lost,
                self.loss_percent,
                self.reordered,
                self.duplicates,
                self.send_dropped,
                self.skipped_not_ready,
                self.foreign
            );
            let peer_received = self.peer_received.map_or_else(|| "n/a".to_owned(), |n| n.to_string());
            let _ = writeln!(
                s,
                "rate         requested_pps={} achieved_pps={} received_pps={} relayed_dps={} peer_received={} \
                 duration_secs={}",
                self.requested_rate_pps,
                self.achieved_rate_pps,
                self.received_rate_pps,
                self.relayed_datagrams_per_sec,
                peer_received,
                self.duration_secs
            );
            let _ = writeln!(s, "latency_us   {}", self.latency_us.line());
            let j = &self.jitter_us;
            let _ = writeln!(s, "jitter_us    mean={} max={} clients={}", j.mean, j.max, j.clients);
        } else {
            let _ = writeln!(s, "hold         duration_secs={}", self.duration_secs);
        }
        let _ = writeln!(
            s,
            "teardown     deleted={} delete_failed={} refresh_failures={} interrupted={}",
            self.teardown.deleted, self.teardown.delete_failed, self.refresh_failures, self.interrupted
        );
        if self.teardown.delete_failed > 0 {
            let codes: Vec<String> =
                self.teardown.delete_failed_by_code.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(s, "delete_failed_by code: {}", codes.join(" "));
        }
        let relayed = self.peer_received.unwrap_or(self.received) + self.received;
        for line in self.common.lines(relayed, "relayed") {
            let _ = writeln!(s, "{line}");
        }
        s
    }
}
