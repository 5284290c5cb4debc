//! A per-participant adaptive jitter buffer with a bounded delay that adapts down as well as up.
//!
//! Packets go in with their arrival time; the mixer takes one 20 ms frame out per tick with
//! [`JitterBuffer::pop`]. The design answers the complaints collected in research/anchors.md §6.2 (delay
//! that creeps after network swings and never comes back):
//!
//! * **Target delay** from the recent *relative delay* of packets (arrival time minus RTP timestamp,
//!   minus the smallest such value of the last [`WINDOW`] packets): its 95th percentile plus one frame,
//!   clamped to `[min_delay, max_delay]`. It is recomputed as packets arrive, so it falls when the
//!   jitter does.
//! * **Level**: frames between the playout point and the newest packet. When the smallest level of the
//!   last [`LEVEL_WINDOW`] ticks stays above the target by more than one frame, one frame is dropped
//!   (the delay comes down; at most one drop per window). When the buffer runs dry, the playout point
//!   holds and the frame is concealed (the delay goes up by one frame). Sender clock drift either way
//!   thus costs one drop or one concealment every now and then, never a growing delay.
//! * **Bounds**: a packet more than `max_delay` ahead of the playout point, or a source silent for
//!   longer than that, resynchronises the buffer at the target. Nothing is ever delayed by more than
//!   `max_delay` plus one frame.
//! * **Timestamp grid**: frames are expected one frame apart; when a sender's timestamps move off that
//!   grid (an encoder's look-ahead at the start, a sender restart), the playout point follows the newest
//!   packets by less than half a frame.
//! * **Loss**: a missing frame with later packets buffered is reported as [`Playout::Lost`] with the
//!   next packet (for Opus in-band FEC); the first frames of a dry buffer as lost without one; after
//!   `max_conceal` frames it is [`Playout::Silence`], so concealment never drones on.
//!
//! Storage is preallocated (`slots` × [`MAX_PACKET`] bytes); push and pop do not allocate. Only 20 ms
//! packets are expected (the SDP answer asks for `ptime:20`).

use std::time::{Duration, Instant};

use crate::rtp::TimestampExtender;

/// Packets whose relative delay sets the target.
pub const WINDOW: usize = 100;
/// Ticks over which the smallest level is watched before a frame is dropped.
pub const LEVEL_WINDOW: u32 = 25;
/// Largest payload kept (the largest Opus packet).
pub const MAX_PACKET: usize = 1275;

/// Jitter buffer settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate of the stream.
    pub clock_rate: u32,
    /// RTP timestamp units per frame (20 ms).
    pub frame_ticks: u32,
    /// Smallest target delay, in frames.
    pub min_delay: u32,
    /// Largest target delay, in frames.
    pub max_delay: u32,
    /// Delay aimed at before any jitter was measured, in frames.
    pub initial_delay: u32,
    /// Concealed frames before silence.
    pub max_conceal: u32,
}

impl JitterConfig {
    /// 20 ms frames at `clock_rate`, 20–200 ms of delay, 40 ms to start, 100 ms of concealment.
    pub fn new(clock_rate: u32) -> JitterConfig {
        JitterConfig {
            clock_rate,
            frame_ticks: clock_rate / 50,
            min_delay: 1,
            max_delay: 10,
            initial_delay: 2,
            max_conceal: 5,
        }
    }

    fn slots(&self) -> usize {
        (self.max_delay as usize + 6).next_power_of_two()
    }
}

/// What one tick plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Playout<'a> {
    /// The packet for this frame.
    Frame {
        /// Its payload.
        payload: &'a [u8],
        /// Its RTP timestamp.
        timestamp: u32,
    },
    /// This frame is missing: conceal it, or rebuild it from `next` (the packet after it) if the codec
    /// can.
    Lost {
        /// The next frame's payload, if it is here already.
        next: Option<&'a [u8]>,
    },
    /// Nothing to play (not started, or the source has been silent for a while).
    Silence,
}

/// Counters, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets stored.
    pub pushed: u64,
    /// Frames played from a packet.
    pub played: u64,
    /// Frames reported lost (concealed).
    pub lost: u64,
    /// Packets that came after their frame was played.
    pub late: u64,
    /// Packets seen twice.
    pub duplicate: u64,
    /// Frames dropped to bring the delay down.
    pub dropped: u64,
    /// Ticks where the buffer ran dry and the playout point held (delay up by a frame).
    pub held: u64,
    /// Resynchronisations (big jumps, long silences).
    pub resyncs: u64,
    /// Packets too large to keep.
    pub oversize: u64,
}

/// The jitter buffer of one received stream.
pub struct JitterBuffer {
    config: JitterConfig,
    slots: usize,
    /// Extended timestamp held by each slot (`u64::MAX`: empty).
    slot_ts: Vec<u64>,
    slot_len: Vec<u16>,
    data: Vec<u8>,
    ts: TimestampExtender,
    base: Option<Instant>,
    /// Next extended timestamp to play.
    playout: Option<u64>,
    newest: Option<u64>,
    /// Frames before this timestamp are the prebuffer of a (re)start: silence, not loss.
    started_at: u64,
    /// Relative transit of recent packets (ticks), a ring.
    transit: Vec<i64>,
    transit_len: usize,
    transit_pos: usize,
    scratch: Vec<i64>,
    since_target: u32,
    target: u32,
    level_min: u32,
    level_ticks: u32,
    dry: u32,
    stats: JitterStats,
}

const EMPTY: u64 = u64::MAX;

impl JitterBuffer {
    /// An empty buffer.
    pub fn new(config: JitterConfig) -> JitterBuffer {
        let slots = config.slots();
        JitterBuffer {
            config,
            slots,
            slot_ts: vec![EMPTY; slots],
            slot_len: vec![0; slots],
            data: vec![0; slots * MAX_PACKET],
            ts: TimestampExtender::default(),
            base: None,
            playout: None,
            newest: None,
            started_at: 0,
            transit: vec![0; WINDOW],
            transit_len: 0,
            transit_pos: 0,
            scratch: vec![0; WINDOW],
            since_target: 0,
            target: config.initial_delay.clamp(config.min_delay, config.max_delay),
            level_min: u32::MAX,
            level_ticks: 0,
            dry: 0,
            stats: JitterStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The current target delay, in frames.
    pub fn target(&self) -> u32 {
        self.target
    }

    /// Frames between the playout point and the newest packet (the delay the buffer holds now).
    pub fn level(&self) -> u32 {
        match (self.playout, self.newest) {
            (Some(p), Some(n)) if n >= p => ((n - p) / u64::from(self.config.frame_ticks)) as u32 + 1,
            _ => 0,
        }
    }

    /// Forgets the stream (a new source): the next packet starts it again.
    pub fn reset(&mut self) {
        self.slot_ts.fill(EMPTY);
        self.ts.reset();
        self.playout = None;
        self.newest = None;
        self.transit_len = 0;
        self.transit_pos = 0;
        self.dry = 0;
        self.target = self.config.initial_delay.clamp(self.config.min_delay, self.config.max_delay);
    }

    fn ticks(&self, now: Instant) -> i64 {
        let base = self.base.unwrap_or(now);
        let d = now.saturating_duration_since(base);
        (d.as_nanos() * u128::from(self.config.clock_rate) / 1_000_000_000) as i64
    }

    fn frame(&self) -> u64 {
        u64::from(self.config.frame_ticks)
    }

    fn slot_of(&self, ts: u64) -> usize {
        ((ts / self.frame()) % self.slots as u64) as usize
    }

    /// Stores one packet that arrived at `now`.
    pub fn push(&mut self, now: Instant, timestamp: u32, payload: &[u8]) {
        if payload.len() > MAX_PACKET {
            self.stats.oversize += 1;
            return;
        }
        if self.base.is_none() {
            self.base = Some(now);
        }
        let ts = self.ts.extend(timestamp);
        let frame = self.frame();
        self.record_transit(self.ticks(now) - ts as i64);
        match self.playout {
            None => {
                self.playout = Some(ts.saturating_sub(u64::from(self.target - 1) * frame));
                self.started_at = ts;
            }
            Some(p) if ts < p => {
                self.stats.late += 1;
                return;
            }
            Some(p) if ts >= p + u64::from(self.config.max_delay) * frame || self.dry > self.config.max_delay => {
                // Too far ahead to wait for, or the first packet after a long silence: start again here.
                self.slot_ts.fill(EMPTY);
                self.newest = None;
                self.playout = Some(ts.saturating_sub(u64::from(self.target - 1) * frame));
                self.started_at = ts;
                self.stats.resyncs += 1;
            }
            Some(p) => {
                let off = (ts - p) % frame;
                if off != 0 {
                    // The sender's timestamps left our frame grid (GStreamer's second Opus packet comes
                    // 648 ticks after its first, the encoder's look-ahead): follow the newest packets,
                    // drop stragglers of the old grid.
                    if self.newest.is_some_and(|n| ts < n) {
                        self.stats.late += 1;
                        return;
                    }
                    let shift = if off > frame / 2 { off as i64 - frame as i64 } else { off as i64 };
                    self.playout = Some((p as i64 + shift) as u64);
                    self.slot_ts.fill(EMPTY);
                    self.newest = None;
                    self.stats.resyncs += 1;
                }
            }
        }
        self.dry = 0;
        let slot = self.slot_of(ts);
        if self.slot_ts[slot] == ts {
            self.stats.duplicate += 1;
            return;
        }
        self.slot_ts[slot] = ts;
        self.slot_len[slot] = payload.len() as u16;
        self.data[slot * MAX_PACKET..slot * MAX_PACKET + payload.len()].copy_from_slice(payload);
        self.newest = Some(self.newest.map_or(ts, |n| n.max(ts)));
        self.stats.pushed += 1;
    }

    fn record_transit(&mut self, transit: i64) {
        self.transit[self.transit_pos] = transit;
        self.transit_pos = (self.transit_pos + 1) % WINDOW;
        self.transit_len = (self.transit_len + 1).min(WINDOW);
        self.since_target += 1;
        if self.since_target >= 10 {
            self.since_target = 0;
            self.update_target();
        }
    }

    fn update_target(&mut self) {
        let n = self.transit_len;
        let s = &mut self.scratch[..n];
        s.copy_from_slice(&self.transit[..n]);
        let min = s.iter().copied().min().unwrap_or(0);
        let k = (n * 95 / 100).min(n - 1);
        let (_, p95, _) = s.select_nth_unstable(k);
        let spread = (*p95 - min).max(0) as u64;
        let frames = spread.div_ceil(self.frame()) as u32 + 1;
        self.target = frames.clamp(self.config.min_delay, self.config.max_delay);
    }

    fn take(&self, ts: u64) -> Option<&[u8]> {
        let slot = self.slot_of(ts);
        (self.slot_ts[slot] == ts)
            .then(|| &self.data[slot * MAX_PACKET..slot * MAX_PACKET + usize::from(self.slot_len[slot])])
    }

    /// The frame to play at this tick.
    pub fn pop(&mut self) -> Playout<'_> {
        let Some(mut p) = self.playout else { return Playout::Silence };
        let frame = self.frame();
        let level = self.level();
        self.level_min = self.level_min.min(level);
        self.level_ticks += 1;
        if self.level_ticks >= LEVEL_WINDOW {
            if self.level_min > self.target + 1 && self.take(p).is_some() {
                // Steadily more buffered than needed: drop one frame.
                let slot = self.slot_of(p);
                self.slot_ts[slot] = EMPTY;
                p += frame;
                self.stats.dropped += 1;
            }
            self.level_min = u32::MAX;
            self.level_ticks = 0;
        }
        match self.newest {
            Some(n) if n >= p => {
                self.dry = 0;
                self.playout = Some(p + frame);
                let slot = self.slot_of(p);
                if self.slot_ts[slot] == p {
                    self.slot_ts[slot] = EMPTY;
                    self.stats.played += 1;
                    let len = usize::from(self.slot_len[slot]);
                    return Playout::Frame {
                        payload: &self.data[slot * MAX_PACKET..slot * MAX_PACKET + len],
                        timestamp: p as u32,
                    };
                }
                if p < self.started_at {
                    return Playout::Silence;
                }
                self.stats.lost += 1;
                Playout::Lost { next: self.take(p + frame) }
            }
            _ => {
                // Dry: hold the playout point, so the delay grows by this frame.
                self.playout = Some(p);
                self.dry += 1;
                self.stats.held += 1;
                if self.dry <= self.config.max_conceal && self.stats.played > 0 {
                    self.stats.lost += 1;
                    Playout::Lost { next: None }
                } else {
                    Playout::Silence
                }
            }
        }
    }

    /// The delay the buffer holds now ([`JitterBuffer::level`] frames of 20 ms).
    pub fn delay(&self) -> Duration {
        Duration::from_millis(u64::from(self.level()) * 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random sequence (xorshift), so tests repeat.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Sends `frames` packets (one per 20 ms of *sender* time, `drift_ppm` fast or slow), delayed by
    /// `delay(i)` ms, dropping those `lose(i)` says; the mixer pops every 20 ms. Returns for each popped
    /// packet its frame index and the time it waited (pop time minus send time), plus the buffer.
    fn run(
        frames: u32,
        drift_ppm: i64,
        mut delay: impl FnMut(u32) -> u64,
        mut lose: impl FnMut(u32) -> bool,
    ) -> (Vec<(u32, Duration)>, JitterBuffer, Vec<bool>) {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        // arrivals sorted by time
        let mut arrivals: Vec<(Duration, u32)> = Vec::new();
        let sent_at = |i: u32| {
            let us = i64::from(i) * 20_000 * (1_000_000 - drift_ppm) / 1_000_000;
            Duration::from_micros(us as u64)
        };
        for i in 0..frames {
            if !lose(i) {
                arrivals.push((sent_at(i) + Duration::from_millis(delay(i)), i));
            }
        }
        arrivals.sort();
        let mut played = Vec::new();
        let mut kinds = Vec::new();
        let mut next = 0;
        let ticks = frames + 40;
        for tick in 0..ticks {
            let now = Duration::from_micros(u64::from(tick) * 20_000 + 5_000);
            while next < arrivals.len() && arrivals[next].0 <= now {
                let (_, i) = arrivals[next];
                jb.push(t0 + arrivals[next].0, i.wrapping_mul(960).wrapping_add(0xffff_0000), &[i as u8; 40]);
                next += 1;
            }
            match jb.pop() {
                Playout::Frame { timestamp, .. } => {
                    let i = timestamp.wrapping_sub(0xffff_0000) / 960;
                    played.push((i, now.saturating_sub(sent_at(i))));
                    kinds.push(true);
                }
                Playout::Lost { .. } => kinds.push(false),
                Playout::Silence => kinds.push(false),
            }
        }
        (played, jb, kinds)
    }

    #[test]
    fn steady_stream_plays_everything_with_a_small_delay() {
        let (played, jb, _) = run(500, 0, |_| 10, |_| false);
        assert_eq!(played.len(), 500);
        assert!(played.windows(2).all(|w| w[1].0 == w[0].0 + 1), "in order, nothing skipped");
        let worst = played.iter().map(|p| p.1).max().unwrap();
        assert!(worst <= Duration::from_millis(60), "{worst:?}");
        // only the tail, after the stream stopped, was concealed (max_conceal frames)
        assert_eq!(jb.stats().lost, 5);
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn reordering_within_the_target_is_absorbed() {
        let mut rng = Rng(7);
        // every packet 0..30 ms late: packets overtake each other
        let delays: Vec<u64> = (0..1000).map(|_| rng.below(30)).collect();
        let (played, jb, _) = run(1000, 0, |i| delays[i as usize], |_| false);
        assert!(played.windows(2).all(|w| w[1].0 > w[0].0), "played in order");
        let s = jb.stats();
        assert!(s.late + s.lost < 20, "{s:?}");
        assert!(jb.target() <= 3, "target {}", jb.target());
    }

    #[test]
    fn loss_is_reported_with_the_next_packet_for_fec() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(8_000));
        for i in 0..3u32 {
            if i != 1 {
                jb.push(t0, i * 160, &[i as u8]);
            }
        }
        assert!(matches!(jb.pop(), Playout::Silence)); // prebuffer (initial delay 2 frames)
        assert!(matches!(jb.pop(), Playout::Frame { payload: [0], .. }));
        assert_eq!(jb.pop(), Playout::Lost { next: Some(&[2][..]) });
        assert!(matches!(jb.pop(), Playout::Frame { payload: [2], .. }));
        // dry: concealed for max_conceal frames, then silence
        for _ in 0..5 {
            assert_eq!(jb.pop(), Playout::Lost { next: None });
        }
        assert_eq!(jb.pop(), Playout::Silence);
    }

    #[test]
    fn delay_adapts_up_under_jitter_and_back_down_after() {
        let mut rng = Rng(99);
        // 20 s calm, 20 s of jitter up to 120 ms, 40 s calm again
        let delays: Vec<u64> =
            (0..4000).map(|i| if (1000..2000).contains(&i) { 10 + rng.below(120) } else { 10 }).collect();
        let (played, jb, _) = run(4000, 0, |i| delays[i as usize], |_| false);
        let during: Vec<_> = played.iter().filter(|p| (1500..2000).contains(&p.0)).collect();
        let after: Vec<_> = played.iter().filter(|p| p.0 >= 3500).collect();
        let max_during = during.iter().map(|p| p.1).max().unwrap();
        let max_after = after.iter().map(|p| p.1).max().unwrap();
        assert!(max_during >= Duration::from_millis(100), "it adapted up: {max_during:?}");
        assert!(max_during <= Duration::from_millis(240), "bounded: {max_during:?}");
        assert!(max_after <= Duration::from_millis(60), "and back down: {max_after:?}");
        // during the jitter most packets still made it
        assert!(during.len() > 450, "{} of 500", during.len());
        assert!(jb.stats().dropped > 0);
    }

    #[test]
    fn clock_drift_either_way_does_not_creep() {
        for drift in [10_000i64, -10_000] {
            // 1 % fast or slow for 120 s
            let (played, jb, _) = run(6000, drift, |_| 15, |_| false);
            let last: Vec<_> = played.iter().filter(|p| p.0 >= 5500).collect();
            let worst = last.iter().map(|p| p.1).max().unwrap();
            assert!(worst <= Duration::from_millis(100), "drift {drift}: delay crept to {worst:?}");
            let s = jb.stats();
            if drift > 0 {
                assert!(s.dropped >= 40, "fast sender: frames dropped {s:?}");
            } else {
                assert!(s.held >= 40, "slow sender: frames stretched {s:?}");
            }
        }
    }

    #[test]
    fn loss_and_jitter_together_leave_no_long_gap() {
        let mut rng = Rng(3);
        let delays: Vec<u64> = (0..3000).map(|_| 5 + rng.below(40)).collect();
        let lost: Vec<bool> = (0..3000).map(|_| rng.below(100) < 5).collect();
        let (_, jb, kinds) = run(3000, 0, |i| delays[i as usize], |i| lost[i as usize]);
        // the longest run of ticks without a real frame, after the start
        let mut run_len = 0;
        let mut worst = 0;
        for k in &kinds[10..3000] {
            run_len = if *k { 0 } else { run_len + 1 };
            worst = worst.max(run_len);
        }
        assert!(worst <= 4, "longest concealed run {worst} frames; {:?}", jb.stats());
    }

    #[test]
    fn silence_then_resume_resyncs_at_the_target() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(8_000));
        let ms = |m: u64| t0 + Duration::from_millis(m);
        for i in 0..50u32 {
            jb.push(ms(u64::from(i) * 20), i * 160, &[1]);
            let _ = jb.pop();
        }
        // 10 s of silence (DTX), the mixer keeps popping
        for _ in 0..500 {
            let _ = jb.pop();
        }
        assert_eq!(jb.pop(), Playout::Silence);
        // the talker resumes 10 s later in its timestamps
        let resume = 50 + 500;
        jb.push(ms(u64::from(resume) * 20), resume * 160, &[2]);
        let mut waited = 0;
        while !matches!(jb.pop(), Playout::Frame { .. }) {
            waited += 1;
            assert!(waited <= 10, "resumed without waiting the silence out");
        }
        assert!(jb.stats().resyncs >= 1);
    }

    #[test]
    fn timestamps_that_leave_the_frame_grid_are_followed() {
        // GStreamer's opusenc: the second packet is 648 ticks after the first, then 960 each.
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        let base: u32 = 4_162_401_516;
        let mut played = 0;
        for i in 0..200u32 {
            let ts = if i == 0 { base } else { base.wrapping_add(648 + (i - 1) * 960) };
            jb.push(t0 + Duration::from_millis(u64::from(i) * 20), ts, &[1; 80]);
            if matches!(jb.pop(), Playout::Frame { .. }) {
                played += 1;
            }
        }
        assert!(played >= 195, "{played} {:?}", jb.stats());
        assert_eq!(jb.stats().resyncs, 1);
    }

    #[test]
    fn garbage_timestamps_never_panic() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        let mut rng = Rng(5);
        for i in 0..5000u64 {
            let ts = rng.next() as u32;
            jb.push(t0 + Duration::from_micros(i * 137), ts, &[0; 10]);
            let _ = jb.pop();
        }
        jb.push(t0, 0, &[0; MAX_PACKET + 1]);
        assert_eq!(jb.stats().oversize, 1);
    }
}
