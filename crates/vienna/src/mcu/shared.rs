//! What the MCU workers publish for the admin API and `/metrics`.

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use vienna_mixer::conference::TICK;

/// How a worker's tick rounds kept to their 20 ms budget. A round is one wake-up that ran the conference
/// ticks then due (several conferences due together run in one round) and sent their packets; it overran
/// when that processing took longer than a tick, so the next tick could not start on time. Each round is
/// timed twice: on the wall clock (what participants get; it includes time the thread was preempted on a
/// busy machine) and in the worker thread's CPU time (what the work costs, whatever else runs on the core).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TickBudget {
    /// Tick rounds run.
    pub tick_rounds: u64,
    /// Rounds that took longer than a tick (20 ms) on the wall clock.
    pub tick_overruns: u64,
    /// Rounds that took longer than a tick in the worker thread's CPU time.
    pub tick_cpu_overruns: u64,
    /// Wall-clock time of all rounds, microseconds.
    pub tick_busy_us: u64,
    /// CPU time of all rounds, microseconds.
    pub tick_cpu_us: u64,
    /// Longest round on the wall clock, microseconds.
    pub tick_max_us: u64,
    /// Longest round in CPU time, microseconds.
    pub tick_cpu_max_us: u64,
}

impl TickBudget {
    /// Counts one round that took `wall` on the wall clock and `cpu` of the thread's CPU time.
    pub fn record(&mut self, wall: Duration, cpu: Duration) {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let (wall_us, cpu_us) = (micros(wall), micros(cpu));
        self.tick_rounds += 1;
        self.tick_busy_us = self.tick_busy_us.saturating_add(wall_us);
        self.tick_cpu_us = self.tick_cpu_us.saturating_add(cpu_us);
        self.tick_max_us = self.tick_max_us.max(wall_us);
        self.tick_cpu_max_us = self.tick_cpu_max_us.max(cpu_us);
        self.tick_overruns += u64::from(wall > TICK);
        self.tick_cpu_overruns += u64::from(cpu > TICK);
    }
}

/// A worker's counters, published once a second.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct WorkerStats {
    /// Conferences on the worker.
    pub conferences: usize,
    /// Participants on the worker.
    pub participants: usize,
    /// Datagrams received.
    pub datagrams_in: u64,
    /// From addresses no participant owns.
    pub unknown_source: u64,
    /// Malformed datagrams.
    pub malformed: u64,
    /// ICE checks answered.
    pub stun_answered: u64,
    /// ICE checks refused.
    pub stun_refused: u64,
    /// Conference ticks run.
    pub ticks: u64,
    /// Ticks late by more than a tick, or skipped.
    pub late_ticks: u64,
    /// RTP packets sent.
    pub rtp_out: u64,
    /// RTCP packets sent.
    pub rtcp_out: u64,
    /// Datagrams dropped at send.
    pub send_dropped: u64,
    /// Received SRTP/SRTCP packets that did not authenticate.
    pub unprotect_failed: u64,
    /// Frames encoded, in all (one per distinct mix and codec setting per tick).
    pub encodes: u64,
    /// Participants with SRTP now.
    pub srtp_participants: usize,
    /// Tick rounds and their overruns of the 20 ms budget.
    #[serde(flatten)]
    pub budget: TickBudget,
}

/// One participant, for the admin API.
#[derive(Clone, Debug, Serialize)]
pub struct ParticipantView {
    /// Id within the conference.
    pub id: String,
    /// Label.
    pub label: String,
    /// MSI (its CSRC in mixes).
    pub msi: u32,
    /// Codec.
    pub codec: String,
    /// Where its mix goes.
    pub remote: Option<String>,
    /// Muted.
    pub muted: bool,
    /// Speaking.
    pub speaking: bool,
    /// The dominant speaker.
    pub dominant: bool,
    /// RTP packets received and used.
    pub rtp_in: u64,
    /// RTP packets sent.
    pub rtp_out: u64,
    /// RTP packets dropped.
    pub rtp_dropped: u64,
    /// Packets stored in the jitter buffer.
    pub buffered: u64,
    /// Frames played from a packet.
    pub played: u64,
    /// Ticks where the jitter buffer ran dry and held (its delay grew by a frame).
    pub jitter_held: u64,
    /// Packets received twice.
    pub duplicate: u64,
    /// Frames concealed.
    pub concealed: u64,
    /// Frames dropped by the jitter buffer to bring its delay down.
    pub jitter_dropped: u64,
    /// Jitter buffer resynchronisations.
    pub jitter_resyncs: u64,
    /// Packets too late for their frame.
    pub late: u64,
    /// Jitter buffer target delay.
    pub jitter_target_ms: u32,
    /// Media is SRTP.
    pub srtp: bool,
    /// SRTP packets from it that did not authenticate.
    pub srtp_rejected: u64,
    /// Its SSRC, once known.
    pub ssrc: Option<u32>,
}

/// One conference, for the admin API.
#[derive(Clone, Debug, Serialize)]
pub struct ConferenceView {
    /// Name.
    pub name: String,
    /// Worker it lives on.
    pub worker: usize,
    /// The media address its participants send to.
    pub media_address: String,
    /// Participants.
    pub participants: Vec<ParticipantView>,
    /// Ticks mixed.
    pub ticks: u64,
    /// Frames encoded in all.
    pub encodes: u64,
    /// Frames encoded in the last tick (one per distinct mix and codec setting).
    pub encodes_last_tick: u32,
    /// Talkers mixed in the last tick.
    pub talkers_last_tick: u32,
}

/// Shared between the workers and the admin API.
pub struct McuShared {
    workers: Mutex<Vec<WorkerStats>>,
}

impl McuShared {
    /// Room for `workers` workers' figures.
    pub fn new(workers: usize) -> McuShared {
        McuShared { workers: Mutex::new(vec![WorkerStats::default(); workers]) }
    }

    /// A worker's latest figures.
    pub fn publish(&self, worker: usize, stats: WorkerStats) {
        if let Ok(mut w) = self.workers.lock()
            && let Some(slot) = w.get_mut(worker)
        {
            *slot = stats;
        }
    }

    /// Every worker's latest figures.
    pub fn workers(&self) -> Vec<WorkerStats> {
        self.workers.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Sets the `vienna_mcu_*` metrics from the latest figures.
    pub fn export_metrics(&self) {
        let w = self.workers();
        let sum = |f: fn(&WorkerStats) -> u64| w.iter().map(f).sum::<u64>();
        metrics::gauge!("vienna_mcu_conferences").set(w.iter().map(|s| s.conferences).sum::<usize>() as f64);
        metrics::gauge!("vienna_mcu_participants").set(w.iter().map(|s| s.participants).sum::<usize>() as f64);
        metrics::counter!("vienna_mcu_datagrams_in_total").absolute(sum(|s| s.datagrams_in));
        metrics::counter!("vienna_mcu_dropped_total", "reason" => "unknown_source").absolute(sum(|s| s.unknown_source));
        metrics::counter!("vienna_mcu_dropped_total", "reason" => "malformed").absolute(sum(|s| s.malformed));
        metrics::counter!("vienna_mcu_dropped_total", "reason" => "send").absolute(sum(|s| s.send_dropped));
        metrics::counter!("vienna_mcu_ice_checks_total", "result" => "answered").absolute(sum(|s| s.stun_answered));
        metrics::counter!("vienna_mcu_ice_checks_total", "result" => "refused").absolute(sum(|s| s.stun_refused));
        metrics::counter!("vienna_mcu_ticks_total").absolute(sum(|s| s.ticks));
        metrics::counter!("vienna_mcu_late_ticks_total").absolute(sum(|s| s.late_ticks));
        metrics::counter!("vienna_mcu_rtp_out_total").absolute(sum(|s| s.rtp_out));
        metrics::counter!("vienna_mcu_rtcp_out_total").absolute(sum(|s| s.rtcp_out));
        metrics::counter!("vienna_mcu_encodes_total").absolute(sum(|s| s.encodes));
        metrics::counter!("vienna_mcu_dropped_total", "reason" => "srtp").absolute(sum(|s| s.unprotect_failed));
        metrics::gauge!("vienna_mcu_srtp_participants")
            .set(w.iter().map(|s| s.srtp_participants).sum::<usize>() as f64);
        for (i, s) in w.iter().enumerate() {
            let worker = || i.to_string();
            let b = &s.budget;
            metrics::counter!("vienna_mcu_tick_rounds_total", "worker" => worker()).absolute(b.tick_rounds);
            metrics::counter!("vienna_mcu_tick_overruns_total", "worker" => worker(), "clock" => "wall")
                .absolute(b.tick_overruns);
            metrics::counter!("vienna_mcu_tick_overruns_total", "worker" => worker(), "clock" => "cpu")
                .absolute(b.tick_cpu_overruns);
            metrics::gauge!("vienna_mcu_tick_busy_seconds", "worker" => worker(), "clock" => "wall")
                .set(b.tick_busy_us as f64 / 1e6);
            metrics::gauge!("vienna_mcu_tick_busy_seconds", "worker" => worker(), "clock" => "cpu")
                .set(b.tick_cpu_us as f64 / 1e6);
            metrics::gauge!("vienna_mcu_tick_max_seconds", "worker" => worker(), "clock" => "wall")
                .set(b.tick_max_us as f64 / 1e6);
            metrics::gauge!("vienna_mcu_tick_max_seconds", "worker" => worker(), "clock" => "cpu")
                .set(b.tick_cpu_max_us as f64 / 1e6);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{McuShared, TickBudget, WorkerStats};

    #[test]
    fn a_round_over_twenty_ms_is_an_overrun() {
        let ms = Duration::from_millis;
        let mut b = TickBudget::default();
        b.record(ms(3), ms(2));
        b.record(ms(20), ms(20));
        b.record(Duration::from_micros(20_001), ms(19));
        // Preempted on a busy core: late on the wall clock, not in CPU time.
        b.record(ms(45), ms(5));
        b.record(ms(30), ms(25));
        assert_eq!(b.tick_rounds, 5);
        assert_eq!(b.tick_overruns, 3, "exactly 20 ms is within budget");
        assert_eq!(b.tick_cpu_overruns, 1);
        assert_eq!(b.tick_busy_us, 3_000 + 20_000 + 20_001 + 45_000 + 30_000);
        assert_eq!(b.tick_cpu_us, 2_000 + 20_000 + 19_000 + 5_000 + 25_000);
        assert_eq!((b.tick_max_us, b.tick_cpu_max_us), (45_000, 25_000));
    }

    #[test]
    fn the_budget_is_published_per_worker() {
        let shared = McuShared::new(2);
        let mut budget = TickBudget::default();
        budget.record(Duration::from_millis(30), Duration::from_millis(21));
        shared.publish(1, WorkerStats { ticks: 1, budget, ..WorkerStats::default() });
        let workers = shared.workers();
        assert_eq!(workers[0].budget.tick_overruns, 0);
        assert_eq!(workers[1].budget.tick_overruns, 1);
        // The admin API's JSON names the counters beside the worker's other figures.
        let json = serde_json::to_value(workers[1]).unwrap();
        assert_eq!(json["tick_rounds"], 1);
        assert_eq!(json["tick_overruns"], 1);
        assert_eq!(json["tick_cpu_overruns"], 1);
        assert_eq!(json["ticks"], 1);
    }
}
