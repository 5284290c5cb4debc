//! What the relay workers publish for the admin API and `/metrics`: written on the control path (events,
//! once-a-second snapshots), never per packet.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;
use vienna_turn::{Counters, DropReason};

/// Counters of one worker: the core's plus the driver's own.
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    /// The relay core's counters.
    pub relay: Counters,
    /// Datagrams dropped at receive: longer than the buffer, or no usable source address.
    pub truncated: u64,
    /// Datagrams dropped at send: socket buffer full or send error.
    pub send_dropped: u64,
    /// Frames dropped because a stream client's writer was too far behind or gone.
    pub stream_dropped: u64,
    /// Relayed sockets open.
    pub relay_sockets: u64,
    /// Stream (TCP/TLS) clients connected to this worker.
    pub stream_clients: u64,
}

/// An allocation as the admin API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AllocationView {
    /// `worker-id`.
    pub id: String,
    /// Client transport.
    pub transport: &'static str,
    /// `standard` (RFC 8656) or `msturn`.
    pub dialect: &'static str,
    /// Client address.
    pub client: SocketAddr,
    /// Server address the client used.
    pub server: SocketAddr,
    /// Authenticated user name.
    pub username: String,
    /// Relayed transport addresses.
    pub relayed: Vec<SocketAddr>,
    /// Seconds until it expires unless refreshed.
    pub expires_in_secs: u64,
    /// Permissions installed.
    pub permissions: usize,
    /// Channels bound.
    pub channels: usize,
}

/// State shared by the workers, the admin API and the metrics endpoint.
pub struct TurnShared {
    /// Latest snapshot per worker.
    pub stats: Vec<Mutex<WorkerStats>>,
    /// Live allocations per worker, as of the last snapshot that asked for them.
    pub allocations: Vec<Mutex<Vec<AllocationView>>>,
    /// Stream connections closed because their bytes were not STUN/ChannelData framing or a frame was
    /// too long.
    pub stream_framing_errors: AtomicU64,
    /// Stream connections refused because the relay had its maximum.
    pub stream_refused: AtomicU64,
    /// Stream connections open now (accepted and not yet closed by their worker), for the limit.
    pub stream_open: AtomicUsize,
    /// MS-TURN pseudo-TLS handshakes answered.
    pub pseudo_tls_handshakes: AtomicU64,
    /// Stream connections that used MS-TURN framing.
    pub ms_stream_clients: AtomicU64,
}

impl TurnShared {
    /// Empty state for `workers` workers.
    pub fn new(workers: usize) -> Self {
        Self {
            stats: (0..workers).map(|_| Mutex::new(WorkerStats::default())).collect(),
            allocations: (0..workers).map(|_| Mutex::new(Vec::new())).collect(),
            stream_framing_errors: AtomicU64::new(0),
            stream_refused: AtomicU64::new(0),
            stream_open: AtomicUsize::new(0),
            pseudo_tls_handshakes: AtomicU64::new(0),
            ms_stream_clients: AtomicU64::new(0),
        }
    }

    /// Takes one of the [`MAX_CONNECTIONS`](super::stream::MAX_CONNECTIONS) places of a stream client;
    /// `false` when all are taken.
    pub fn take_stream_place(&self) -> bool {
        if self.stream_open.fetch_add(1, Ordering::Relaxed) >= super::stream::MAX_CONNECTIONS {
            self.stream_open.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Gives back a place taken with [`TurnShared::take_stream_place`] (the connection is gone).
    pub fn free_stream_place(&self) {
        self.stream_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Every live allocation as of the last snapshot.
    pub fn allocations(&self) -> Vec<AllocationView> {
        self.allocations.iter().flat_map(|a| a.lock().unwrap_or_else(|p| p.into_inner()).clone()).collect()
    }

    /// Sums the workers' snapshots into the `metrics` registry (absolute values), for `/metrics`.
    pub fn export_metrics(&self) {
        let mut total = WorkerStats::default();
        for stats in &self.stats {
            let s = stats.lock().unwrap_or_else(|p| p.into_inner());
            add(&mut total, &s);
        }
        let c = &total.relay;
        let counter = |name: &'static str, value: u64| metrics::counter!(name).absolute(value);
        for (direction, packets, bytes) in [
            ("client_to_peer", c.client_to_peer_packets, c.client_to_peer_bytes),
            ("peer_to_client", c.peer_to_client_packets, c.peer_to_client_bytes),
        ] {
            metrics::counter!("vienna_turn_relayed_packets_total", "direction" => direction).absolute(packets);
            metrics::counter!("vienna_turn_relayed_bytes_total", "direction" => direction).absolute(bytes);
        }
        for reason in DropReason::ALL {
            metrics::counter!("vienna_turn_dropped_packets_total", "reason" => reason.name()).absolute(c.drops(reason));
        }
        for (reason, value) in [
            ("truncated", total.truncated),
            ("send_failed", total.send_dropped),
            ("stream_backlog", total.stream_dropped),
            ("stream_framing", self.stream_framing_errors.load(Ordering::Relaxed)),
        ] {
            metrics::counter!("vienna_turn_dropped_packets_total", "reason" => reason).absolute(value);
        }
        metrics::gauge!("vienna_turn_allocations").set(c.allocations_active as f64);
        metrics::gauge!("vienna_turn_relay_sockets").set(total.relay_sockets as f64);
        metrics::gauge!("vienna_turn_stream_clients").set(total.stream_clients as f64);
        counter("vienna_turn_stream_refused_total", self.stream_refused.load(Ordering::Relaxed));
        counter("vienna_turn_allocations_created_total", c.allocations_created);
        counter("vienna_turn_allocations_expired_total", c.allocations_expired);
        counter("vienna_turn_allocations_deleted_total", c.allocations_deleted);
        counter("vienna_turn_auth_failures_total", c.auth_failures);
        counter("vienna_turn_auth_challenges_total", c.auth_challenges);
        metrics::counter!("vienna_turn_quota_rejections_total", "quota" => "user").absolute(c.user_quota_hits);
        metrics::counter!("vienna_turn_quota_rejections_total", "quota" => "total").absolute(c.total_quota_hits);
        metrics::counter!("vienna_turn_responses_total", "code" => "success").absolute(c.success_responses);
        // Per dialect: MS-TURN's share, and the standard dialect as the rest.
        let ms = &c.ms;
        for (dialect, c2p, c2p_bytes, p2c, p2c_bytes, active, created) in [
            (
                "standard",
                c.client_to_peer_packets.saturating_sub(ms.client_to_peer_packets),
                c.client_to_peer_bytes.saturating_sub(ms.client_to_peer_bytes),
                c.peer_to_client_packets.saturating_sub(ms.peer_to_client_packets),
                c.peer_to_client_bytes.saturating_sub(ms.peer_to_client_bytes),
                c.allocations_active.saturating_sub(ms.allocations_active),
                c.allocations_created.saturating_sub(ms.allocations_created),
            ),
            (
                "msturn",
                ms.client_to_peer_packets,
                ms.client_to_peer_bytes,
                ms.peer_to_client_packets,
                ms.peer_to_client_bytes,
                ms.allocations_active,
                ms.allocations_created,
            ),
        ] {
            for (direction, packets, bytes) in [("client_to_peer", c2p, c2p_bytes), ("peer_to_client", p2c, p2c_bytes)]
            {
                metrics::counter!("vienna_turn_dialect_relayed_packets_total", "dialect" => dialect, "direction" => direction)
                    .absolute(packets);
                metrics::counter!("vienna_turn_dialect_relayed_bytes_total", "dialect" => dialect, "direction" => direction)
                    .absolute(bytes);
            }
            metrics::gauge!("vienna_turn_dialect_allocations", "dialect" => dialect).set(active as f64);
            metrics::counter!("vienna_turn_dialect_allocations_created_total", "dialect" => dialect).absolute(created);
        }
        for (name, value) in [
            ("vienna_turn_msturn_requests_total", ms.requests),
            ("vienna_turn_msturn_send_requests_total", ms.send_requests),
            ("vienna_turn_msturn_data_indications_total", ms.data_indications),
            ("vienna_turn_msturn_raw_client_to_peer_total", ms.raw_client_to_peer),
            ("vienna_turn_msturn_raw_peer_to_client_total", ms.raw_peer_to_client),
            ("vienna_turn_msturn_active_destinations_total", ms.active_destinations),
            ("vienna_turn_msturn_auth_failures_total", ms.auth_failures),
            ("vienna_turn_msturn_replays_total", ms.replays),
            ("vienna_turn_msturn_retransmissions_total", ms.retransmissions),
            ("vienna_turn_msturn_success_responses_total", ms.success_responses),
            ("vienna_turn_msturn_error_responses_total", ms.error_responses),
            ("vienna_turn_msturn_bandwidth_checks_total", ms.bandwidth_checks),
            ("vienna_turn_msturn_bandwidth_commits_total", ms.bandwidth_commits),
            ("vienna_turn_msturn_bandwidth_updates_total", ms.bandwidth_updates),
            ("vienna_turn_msturn_pseudo_tls_handshakes_total", self.pseudo_tls_handshakes.load(Ordering::Relaxed)),
            ("vienna_turn_msturn_stream_clients_total", self.ms_stream_clients.load(Ordering::Relaxed)),
        ] {
            metrics::counter!(name).absolute(value);
        }
        for (i, code) in vienna_turn::counters::ERROR_CODES.iter().enumerate() {
            metrics::counter!("vienna_turn_responses_total", "code" => code.to_string()).absolute(c.error_responses[i]);
        }
    }
}

fn add(total: &mut WorkerStats, s: &WorkerStats) {
    total.relay.add(&s.relay);
    total.truncated += s.truncated;
    total.send_dropped += s.send_dropped;
    total.stream_dropped += s.stream_dropped;
    total.relay_sockets += s.relay_sockets;
    total.stream_clients += s.stream_clients;
}
