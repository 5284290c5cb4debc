//! One conference load thread: owns some participants (one UDP socket each), sends each one's
//! pre-encoded frames as RTP at 50 packets/s on its own schedule, receives the mixes with `recvmmsg`, and
//! for the checked participants decodes them and reads the talkers' tones ([`super::tone`]): whether each
//! other talker is in the mix and the participant's own tone is not, second by second, and the
//! mouth-to-ear latency of every tone onset after a talker's gap.
//!
//! Received RTP is accounted per participant as RFC 3550 does: extended sequence numbers for loss,
//! duplicates and reordering, interarrival jitter from the RTP timestamps. RTCP from the bridge is counted
//! and otherwise ignored.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};
use vienna_media::codec::{CodecKind, Decoder};
use vienna_media::rtp::{HeaderFields, RtpPacket, SequenceCounter, TimestampExtender, is_rtcp, write_header};
use vienna_netio::{BATCH, RecvBatch};
use vienna_srtp::{MasterKey, ReceiverOptions, SrtpReceiver, SrtpSender, TRAILER_ROOM};

use super::tone::{Bin, Onset, PERIOD_MS, window};
use crate::framework::series::{self, BinCounts, Collector, Recorder};
use crate::stats::{Arrival, Jitter, SeqTracker};

/// Run phases, set by the main thread.
pub mod phase {
    /// Sending and receiving.
    pub const RUN: u8 = 0;
    /// Stop now.
    pub const EXIT: u8 = 1;
}

/// Longest sleep, so phase changes are seen quickly.
const MAX_SLEEP: Duration = Duration::from_millis(5);
/// A send this much after its time counts as late (the load generator fell behind).
const LATE: Duration = Duration::from_millis(5);
/// Frames encoded ahead per voice: 50 to start, then 50 played in a loop (one period).
pub const ENCODED_FRAMES: usize = 100;
/// Most lost frames concealed at once for the analysis (a longer gap restarts it).
const MAX_CONCEAL: u64 = 50;
/// One frame of the tones and of the mix (20 ms), in nanoseconds.
const FRAME_NS: u64 = 20_000_000;

/// A talker as a receiver needs to know it: its tone, gap and schedule.
#[derive(Debug, Clone, Copy)]
pub struct TalkerInfo {
    /// Tone frequency.
    pub hz: u32,
    /// Peak amplitude it sends.
    pub amplitude: f64,
    /// End of its gap within the period, ms.
    pub gap_end_ms: u32,
    /// Length of its gap, ms.
    pub gap_ms: u32,
    /// When its frame 0 was due, ns after the clock origin.
    pub t0_ns: u64,
    /// Participant index.
    pub participant: usize,
    /// Whether it joined (a talker that failed to join is not expected in any mix).
    pub joined: bool,
}

/// What every thread is told.
#[derive(Debug)]
pub struct Config {
    /// The codec of every participant.
    pub codec: CodecKind,
    /// Rate the checked participants decode at.
    pub decode_rate: u32,
    /// Frames each participant sends.
    pub frames: u64,
    /// Checks and latency start this long after the start.
    pub warmup: Duration,
    /// Sending time: checks end there.
    pub duration: Duration,
    /// After the last send, how long to go on receiving.
    pub drain: Duration,
    /// Per conference, its talkers.
    pub talkers: Vec<Vec<TalkerInfo>>,
}

/// One participant, handed to a thread: its socket and the rest.
#[derive(Debug)]
pub struct Member {
    /// Its socket.
    pub socket: UdpSocket,
    /// Everything else.
    pub info: MemberInfo,
}

/// One participant's settings.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    /// Index in the run.
    pub index: usize,
    /// Its conference.
    pub conference: usize,
    /// `Some(t)`: talker `t` of its conference.
    pub talker: Option<usize>,
    /// Its own tone and amplitude.
    pub own: (u32, f64),
    /// Where the bridge receives its media (and sends the mix from).
    pub bridge: SocketAddr,
    /// Negotiated payload type.
    pub payload_type: u8,
    /// Its SSRC.
    pub ssrc: u32,
    /// Encoded frames ([`ENCODED_FRAMES`]).
    pub frames: Arc<Vec<Vec<u8>>>,
    /// When frame 0 is due.
    pub t0: Instant,
    /// Decode and check what it hears.
    pub check: bool,
    /// SRTP: the key it sends with and the key the bridge sends with.
    pub srtp: Option<(MasterKey, MasterKey)>,
}

/// Live counters of one thread.
#[derive(Debug, Default)]
pub struct Counters {
    /// RTP packets sent.
    pub sent: AtomicU64,
    /// RTP packets received.
    pub received: AtomicU64,
    /// Tone onsets timed.
    pub onsets: AtomicU64,
    /// Checked seconds that failed.
    pub check_failures: AtomicU64,
    /// Sending and draining are over.
    pub done: AtomicBool,
}

/// State shared by the main thread and the threads.
#[derive(Debug)]
pub struct Shared {
    /// Current [`phase`].
    pub phase: AtomicU8,
    /// Stop sending (Ctrl-C).
    pub cut: AtomicBool,
    /// Clock origin.
    pub base: Instant,
    /// Start of the run (timeline origin), ns after `base`.
    pub start_ns: u64,
    /// One per thread.
    pub counters: Vec<Counters>,
    /// Latency per second.
    pub collector: Collector,
}

/// What the mix checks of one thread found.
#[derive(Debug, Clone, Default)]
pub struct CheckTotals {
    /// Participants decoded and checked.
    pub participants: u64,
    /// Seconds checked (per participant).
    pub seconds: u64,
    /// Seconds with every other talker's tone and without the participant's own.
    pub seconds_ok: u64,
    /// Seconds where another talker's tone was missing (at least one).
    pub missing_tone: u64,
    /// Seconds where a talker heard its own tone.
    pub own_tone: u64,
    /// Gap ends (one per other talker per checked second).
    pub onsets_expected: u64,
    /// Of those, found and timed.
    pub onsets_found: u64,
    /// Rises of a talker's tone after a silence that was not its gap (a dropout or a stall of the bridge):
    /// not timed.
    pub onsets_rejected: u64,
    /// Frames concealed for the analysis (lost packets).
    pub concealed: u64,
    /// Packets that came after a later one: too late for a receiver that plays on arrival.
    pub late: u64,
    /// Packets that failed to decode.
    pub decode_errors: u64,
    /// The first failed second, described.
    pub first_failure: Option<String>,
}

/// What one thread measured.
#[derive(Debug)]
pub struct Outcome {
    /// RTP packets sent.
    pub sent: u64,
    /// Sends more than 5 ms after their time.
    pub send_late: u64,
    /// Sends the socket refused.
    pub send_errors: u64,
    /// RTP packets received (distinct).
    pub received: u64,
    /// Packets the sequence numbers say were sent to us (per participant: highest - first + 1).
    pub expected: u64,
    /// Duplicates.
    pub duplicates: u64,
    /// Reordered.
    pub reordered: u64,
    /// RTCP packets received.
    pub rtcp: u64,
    /// Datagrams not from the bridge or not RTP.
    pub foreign: u64,
    /// SRTP packets that failed authentication or were replays.
    pub srtp_rejected: u64,
    /// Participants that received no RTP at all.
    pub silent: u64,
    /// Final RFC 3550 jitter per participant with two packets or more, ns.
    pub jitter_ns: Vec<f64>,
    /// Mouth-to-ear latency, µs.
    pub latency: Histogram<u64>,
    /// Mix checks.
    pub checks: CheckTotals,
    /// Per second.
    pub bins: Vec<BinCounts>,
}

struct Track {
    bin: Bin,
    onset: Onset,
    /// `None`: the participant's own tone.
    talker: Option<TalkerInfo>,
    amplitude: f64,
    sum: f64,
    found: u32,
}

struct Checker {
    who: usize,
    dec: Box<dyn Decoder>,
    rate: u32,
    ring: Vec<f64>,
    pos: usize,
    n: u64,
    next_ext: Option<u64>,
    last_arrival_ns: u64,
    /// The bridge's sending schedule: the earliest `arrival - 20 ms x sequence` seen (ns), so a frame's
    /// place in time is `schedule + 20 ms x sequence` whatever delay it met on the way.
    schedule_ns: Option<i64>,
    frames: VecDeque<(u64, u64)>,
    tracks: Vec<Track>,
    block_start: Option<u64>,
    /// Seconds still to judge: as many as there are after the warm-up.
    blocks_left: u64,
    pcm: Vec<i16>,
}

struct Slot {
    m: MemberInfo,
    sock: mio::net::UdpSocket,
    next_k: u64,
    seq: SequenceCounter,
    first_ext: Option<u64>,
    tracker: SeqTracker,
    ts: TimestampExtender,
    jitter: Jitter,
    check: Option<Checker>,
    /// SRTP: what it sends, what it receives.
    srtp: Option<(SrtpSender, SrtpReceiver)>,
}

/// Runs one thread over its members until the main thread says [`phase::EXIT`].
pub fn run(index: usize, members: Vec<Member>, cfg: Arc<Config>, shared: Arc<Shared>) -> std::io::Result<Outcome> {
    let mut poll = Poll::new()?;
    let mut slots = Vec::with_capacity(members.len());
    for (i, Member { socket, info: m }) in members.into_iter().enumerate() {
        let mut sock = mio::net::UdpSocket::from_std(socket);
        poll.registry().register(&mut sock, Token(i), Interest::READABLE)?;
        let check = if m.check { Some(checker(&cfg, &m)?) } else { None };
        let srtp = match &m.srtp {
            Some((ours, theirs)) => {
                let fail = |e: vienna_srtp::Error| std::io::Error::other(format!("SRTP: {e}"));
                let sender = SrtpSender::new(ours, None, None).map_err(fail)?;
                let receiver = SrtpReceiver::new(theirs, None, None, ReceiverOptions::default()).map_err(fail)?;
                Some((sender, receiver))
            }
            None => None,
        };
        slots.push(Slot {
            m,
            sock,
            next_k: 0,
            seq: SequenceCounter::default(),
            first_ext: None,
            tracker: SeqTracker::default(),
            ts: TimestampExtender::default(),
            jitter: Jitter::default(),
            check,
            srtp,
        });
    }
    let mut w = Worker {
        index,
        cfg,
        shared,
        slots,
        recv: RecvBatch::new(),
        header: rtp::header::Header::default(),
        buf: vec![0u8; 1500],
        recorder: Recorder::new(),
        latency: series::histogram(),
        out: Outcome {
            sent: 0,
            send_late: 0,
            send_errors: 0,
            received: 0,
            expected: 0,
            duplicates: 0,
            reordered: 0,
            rtcp: 0,
            foreign: 0,
            srtp_rejected: 0,
            silent: 0,
            jitter_ns: Vec::new(),
            latency: series::histogram(),
            checks: CheckTotals::default(),
            bins: Vec::new(),
        },
    };
    w.main_loop(&mut poll)?;
    Ok(w.finish())
}

fn checker(cfg: &Config, m: &MemberInfo) -> std::io::Result<Checker> {
    let rate = cfg.decode_rate;
    let dec =
        vienna_media::codec::decoder(cfg.codec, rate).map_err(|e| std::io::Error::other(format!("decoder: {e}")))?;
    let mut tracks: Vec<Track> = cfg.talkers[m.conference]
        .iter()
        .enumerate()
        .filter(|(t, info)| Some(*t) != m.talker && info.joined)
        .map(|(_, info)| Track {
            bin: Bin::new(info.hz, rate),
            onset: Onset::default(),
            talker: Some(*info),
            amplitude: info.amplitude,
            sum: 0.0,
            found: 0,
        })
        .collect();
    // A talker must not hear itself (a listener's own tone is under the voice threshold: not checked).
    if m.talker.is_some() {
        tracks.push(Track {
            bin: Bin::new(m.own.0, rate),
            onset: Onset::default(),
            talker: None,
            amplitude: m.own.1,
            sum: 0.0,
            found: 0,
        });
    }
    Ok(Checker {
        who: m.index,
        dec,
        rate,
        ring: vec![0.0; window(rate)],
        pos: 0,
        n: 0,
        next_ext: None,
        last_arrival_ns: 0,
        schedule_ns: None,
        frames: VecDeque::new(),
        tracks,
        block_start: None,
        blocks_left: cfg.duration.saturating_sub(cfg.warmup).as_secs(),
        pcm: vec![0; vienna_media::codec::frame_samples(rate)],
    })
}

struct Worker {
    index: usize,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    recv: RecvBatch,
    header: rtp::header::Header,
    buf: Vec<u8>,
    recorder: Recorder,
    latency: Histogram<u64>,
    out: Outcome,
}

impl Worker {
    fn counters(&self) -> &Counters {
        &self.shared.counters[self.index]
    }

    fn main_loop(&mut self, poll: &mut Poll) -> std::io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let origin = self.shared.base + Duration::from_nanos(self.shared.start_ns);
        self.recorder.start(origin);
        let mut drain_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if self.shared.phase.load(Relaxed) == phase::EXIT {
                return Ok(());
            }
            let mut wake = now + MAX_SLEEP;
            match drain_until {
                None => {
                    let cut = self.shared.cut.load(Relaxed);
                    let mut pending = false;
                    for i in 0..self.slots.len() {
                        while !cut && self.slots[i].next_k < self.cfg.frames {
                            let due = self.due(i, self.slots[i].next_k);
                            if due > now {
                                wake = wake.min(due);
                                break;
                            }
                            self.send(i, now, due);
                        }
                        pending |= self.slots[i].next_k < self.cfg.frames;
                    }
                    if cut || !pending {
                        drain_until = Some(now + self.cfg.drain);
                    }
                }
                Some(until) => {
                    if now >= until {
                        self.counters().done.store(true, Relaxed);
                    } else {
                        wake = wake.min(until);
                    }
                }
            }
            self.recorder.tick(&self.shared.collector, now);
            self.publish();
            let timeout = wake.saturating_duration_since(Instant::now());
            if let Err(e) = poll.poll(&mut events, Some(timeout))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                return Err(e);
            }
            let now = Instant::now();
            for ev in events.iter() {
                self.drain_socket(ev.token().0, now);
            }
        }
    }

    fn due(&self, i: usize, k: u64) -> Instant {
        self.slots[i].m.t0 + Duration::from_millis(20 * k)
    }

    fn publish(&self) {
        let c = self.counters();
        c.sent.store(self.out.sent, Relaxed);
        c.received.store(self.out.received, Relaxed);
        c.onsets.store(self.out.checks.onsets_found, Relaxed);
        c.check_failures.store(self.out.checks.missing_tone + self.out.checks.own_tone, Relaxed);
    }

    /// Sends frame `next_k` of participant `i`, due at `due`.
    fn send(&mut self, i: usize, now: Instant, due: Instant) {
        let slot = &mut self.slots[i];
        let k = slot.next_k;
        slot.next_k += 1;
        let frames = &slot.m.frames;
        let half = (ENCODED_FRAMES / 2) as u64;
        let idx = if k < half { k } else { half + (k - half) % half } as usize;
        let payload = &frames[idx.min(frames.len() - 1)];
        let fields = HeaderFields {
            marker: k == 0,
            payload_type: slot.m.payload_type,
            sequence: k as u16,
            timestamp: (k as u32).wrapping_mul(self.cfg.codec.frame_ticks()),
            ssrc: slot.m.ssrc,
        };
        let Ok(h) = write_header(&mut self.header, fields, &[], &mut self.buf) else { return };
        let mut len = h + payload.len();
        if len + TRAILER_ROOM > self.buf.len() {
            return;
        }
        self.buf[h..len].copy_from_slice(payload);
        if let Some((sender, _)) = &mut slot.srtp {
            match sender.protect_rtp(&mut self.buf, len) {
                Ok(n) => len = n,
                Err(_) => {
                    self.out.send_errors += 1;
                    return;
                }
            }
        }
        if now.saturating_duration_since(due) > LATE {
            self.out.send_late += 1;
        }
        match slot.sock.send_to(&self.buf[..len], slot.m.bridge) {
            Ok(_) => {
                self.out.sent += 1;
                self.recorder.offered(now, 1);
            }
            Err(_) => self.out.send_errors += 1,
        }
    }

    fn drain_socket(&mut self, i: usize, now: Instant) {
        if i >= self.slots.len() {
            return;
        }
        let now_ns = now.saturating_duration_since(self.shared.base).as_nanos() as u64;
        loop {
            let n = match self.recv.recv(&self.slots[i].sock) {
                Ok(n) => n,
                Err(_) => return,
            };
            for k in 0..n {
                let (bytes, from) = self.recv.get_mut(k);
                let slot = &mut self.slots[i];
                if from != slot.m.bridge {
                    self.out.foreign += 1;
                    continue;
                }
                if is_rtcp(bytes) {
                    self.out.rtcp += 1;
                    continue;
                }
                let bytes = match &mut slot.srtp {
                    Some((_, receiver)) => match receiver.unprotect_rtp(bytes) {
                        Ok(len) => &bytes[..len],
                        Err(_) => {
                            self.out.srtp_rejected += 1;
                            continue;
                        }
                    },
                    None => &bytes[..],
                };
                let Ok(p) = RtpPacket::parse(bytes) else {
                    self.out.foreign += 1;
                    continue;
                };
                if p.payload_type != slot.m.payload_type {
                    self.out.foreign += 1;
                    continue;
                }
                let Some(ext) = slot.seq.extend(p.sequence) else { continue };
                if slot.tracker.record(ext) == Arrival::Duplicate {
                    continue;
                }
                slot.first_ext = Some(slot.first_ext.map_or(ext, |f| f.min(ext)));
                let ts = slot.ts.extend(p.timestamp);
                let clock = u64::from(self.cfg.codec.clock_rate());
                slot.jitter.record(ts * 1_000_000_000 / clock, now_ns);
                self.out.received += 1;
                self.recorder.ok(now, 1);
                if let Some(c) = &mut slot.check {
                    let start = self.shared.start_ns;
                    let window =
                        (start + self.cfg.warmup.as_nanos() as u64, start + self.cfg.duration.as_nanos() as u64);
                    let lat = analyze(c, &mut self.out.checks, ext, p.payload(), now_ns, window);
                    for us in lat {
                        self.latency.saturating_record(us.max(1));
                        self.recorder.latency(&self.shared.collector, now, us);
                    }
                }
            }
            if n < BATCH {
                return;
            }
        }
    }

    fn finish(mut self) -> Outcome {
        self.recorder.flush(&self.shared.collector);
        let mut out = self.out;
        out.bins = self.recorder.take_bins();
        out.latency = self.latency;
        for s in &self.slots {
            if s.tracker.unique == 0 {
                out.silent += 1;
            }
            if let (Some(first), Some(max)) = (s.first_ext, s.seq.max()) {
                out.expected += max - first + 1;
            }
            out.duplicates += s.tracker.duplicates;
            out.reordered += s.tracker.reordered;
            if s.jitter.samples >= 2 {
                out.jitter_ns.push(s.jitter.jitter_ns);
            }
            if s.check.is_some() {
                out.checks.participants += 1;
            }
        }
        out
    }
}

/// Decodes packet `ext` (concealing what was lost before it), runs the tone analysis over the samples;
/// returns the mouth-to-ear latencies (µs) of the onsets found.
fn analyze(
    c: &mut Checker,
    t: &mut CheckTotals,
    ext: u64,
    payload: &[u8],
    arrival_ns: u64,
    window: (u64, u64),
) -> Vec<u64> {
    let mut found = Vec::new();
    let offset = arrival_ns as i64 - FRAME_NS as i64 * ext as i64;
    let restart = c.next_ext.is_some_and(|next| ext > next + MAX_CONCEAL);
    let schedule = match c.schedule_ns {
        Some(s) if !restart => s.min(offset),
        // The first frame, or a gap the analysis restarts after: the bridge's sequence may have jumped.
        _ => offset,
    };
    c.schedule_ns = Some(schedule);
    // When the bridge sent frame `e`, by its schedule (not skewed by late arrivals).
    let sent = |e: u64| (schedule + FRAME_NS as i64 * e as i64).max(0) as u64;
    match c.next_ext {
        Some(next) if ext < next => {
            // Too late for its place in the stream (a receiver without a jitter buffer).
            t.late += 1;
            return found;
        }
        Some(next) if ext > next => {
            let lost = ext - next;
            if lost > MAX_CONCEAL {
                c.block_start = None;
            }
            for j in 0..lost.min(MAX_CONCEAL) {
                let n = c.dec.conceal(&mut c.pcm).unwrap_or(0);
                t.concealed += 1;
                let at = c.last_arrival_ns + FRAME_NS * (j + 1);
                feed(c, t, n, (at, sent(next + j)), window, &mut found);
            }
        }
        _ => {}
    }
    c.next_ext = Some(ext + 1);
    let n = match c.dec.decode(payload, &mut c.pcm) {
        Ok(n) => n,
        Err(_) => {
            t.decode_errors += 1;
            c.dec.conceal(&mut c.pcm).unwrap_or(0)
        }
    };
    c.last_arrival_ns = arrival_ns;
    feed(c, t, n, (arrival_ns, sent(ext)), window, &mut found);
    found
}

/// Runs `c.pcm[..n]`, which arrived at `arrival_ns` and which the bridge sent at `sent_ns` by its schedule,
/// through the bins; seconds are judged and onsets timed from the first frame sent within `window`, for as
/// many seconds as the participant has left to judge. The window follows the sending time, so a frame
/// that arrives a little late still counts for the second it belongs to.
fn feed(
    c: &mut Checker,
    t: &mut CheckTotals,
    n: usize,
    (arrival_ns, sent_ns): (u64, u64),
    window: (u64, u64),
    found: &mut Vec<u64>,
) {
    c.frames.push_back((c.n, arrival_ns));
    if c.frames.len() > 16 {
        c.frames.pop_front();
    }
    let warm = sent_ns >= window.0 && sent_ns < window.1 && c.blocks_left > 0;
    if !warm {
        // Before the warm-up ends, or after the talkers stopped: no judging (a partial second is dropped).
        c.block_start = None;
    } else if c.block_start.is_none() {
        c.block_start = Some(c.n);
        for tr in &mut c.tracks {
            tr.sum = 0.0;
            tr.found = 0;
        }
    }
    let rate = c.rate;
    let per_ns = 1e9 / f64::from(rate);
    for k in 0..n {
        let x = f64::from(c.pcm[k]);
        let old = std::mem::replace(&mut c.ring[c.pos], x);
        c.pos = (c.pos + 1) % c.ring.len();
        let sample = c.n;
        c.n += 1;
        for tr in &mut c.tracks {
            tr.bin.push(x, old);
            let a = tr.bin.amplitude();
            tr.sum += a;
            let Some(info) = tr.talker else { continue };
            let Some(rise) = tr.onset.push(sample, a, rate) else { continue };
            if !warm {
                continue;
            }
            if !rise.ends_gap(info.gap_ms, rate) {
                t.onsets_rejected += 1;
                continue;
            }
            let at = rise.at;
            // Ear time: the arrival of the frame holding the onset, plus its place in that frame.
            let Some(&(first, frame_ns)) = c.frames.iter().rev().find(|(f, _)| (*f as f64) <= at) else { continue };
            let ear_ns = frame_ns as f64 + (at - first as f64) * per_ns;
            // Mouth time: the talker captured the gap's last sample 20 ms before sending its frame.
            let first_end = info.t0_ns as f64 - 20e6 + f64::from(info.gap_end_ms) * 1e6;
            if ear_ns < first_end {
                continue;
            }
            let period = PERIOD_MS as f64 * 1e6;
            let m = ((ear_ns - first_end) / period).floor();
            let latency_ns = ear_ns - (first_end + m * period);
            found.push((latency_ns / 1000.0) as u64);
            tr.found += 1;
        }
        if let Some(start) = c.block_start
            && c.n - start >= u64::from(rate)
        {
            close_block(c, t, rate);
            c.blocks_left -= 1;
            if c.blocks_left == 0 {
                c.block_start = None;
                return;
            }
        }
    }
}

/// Judges one checked second.
fn close_block(c: &mut Checker, t: &mut CheckTotals, rate: u32) {
    t.seconds += 1;
    let (mut missing, mut own) = (false, false);
    for tr in &mut c.tracks {
        let mean = tr.sum / f64::from(rate);
        match tr.talker {
            Some(info) => {
                t.onsets_expected += 1;
                t.onsets_found += u64::from(tr.found.min(1));
                if mean < 0.25 * tr.amplitude {
                    missing = true;
                    t.first_failure.get_or_insert_with(|| {
                        format!(
                            "participant {} heard talker {} ({} Hz) at {:.0} of {:.0}, second ending at sample {}",
                            c.who, info.participant, info.hz, mean, tr.amplitude, c.n
                        )
                    });
                }
            }
            None => {
                if mean >= 0.05 * tr.amplitude {
                    own = true;
                    t.first_failure.get_or_insert_with(|| {
                        format!(
                            "participant {} heard its own tone ({} Hz) at {:.0} of {:.0}, second ending at sample {}",
                            c.who, tr.bin.hz, mean, tr.amplitude, c.n
                        )
                    });
                }
            }
        }
        tr.sum = 0.0;
        tr.found = 0;
    }
    t.missing_tone += u64::from(missing);
    t.own_tone += u64::from(own);
    t.seconds_ok += u64::from(!missing && !own);
    c.block_start = Some(c.n);
}

#[cfg(test)]
mod tests {
    use vienna_media::codec::{CodecSetting, encoder};

    use super::*;

    /// A listener's checker with one talker of 440 Hz at `amplitude`, a second of warm-up and 4 s of
    /// sending (3 seconds to judge); G.711 at 8 kHz.
    fn listener(amplitude: f64) -> (Config, Checker) {
        let talker =
            TalkerInfo { hz: 440, amplitude, gap_end_ms: 100, gap_ms: 100, t0_ns: 0, participant: 0, joined: true };
        let cfg = Config {
            codec: CodecKind::Pcmu,
            decode_rate: 8_000,
            frames: 200,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(4),
            drain: Duration::from_millis(500),
            talkers: vec![vec![talker]],
        };
        let m = MemberInfo {
            index: 1,
            conference: 0,
            talker: None,
            own: (0, 0.0),
            bridge: SocketAddr::from(([127, 0, 0, 1], 9)),
            payload_type: 0,
            ssrc: 1,
            frames: Arc::new(Vec::new()),
            t0: Instant::now(),
            check: true,
            srtp: None,
        };
        let c = checker(&cfg, &m).unwrap();
        (cfg, c)
    }

    /// Feeds a steady 440 Hz mix, frame `k` sent at `k x 20 ms + 10 ms` and arriving `delay(k)` later.
    fn run(delay: impl Fn(u64) -> u64) -> CheckTotals {
        let amplitude = 8_000.0;
        let (cfg, mut c) = listener(amplitude);
        let mut enc = encoder(CodecSetting::g711(CodecKind::Pcmu), 8_000, 0).unwrap();
        let mut totals = CheckTotals::default();
        let window = (cfg.warmup.as_nanos() as u64, cfg.duration.as_nanos() as u64);
        let mut payload = [0u8; 400];
        let first_seq = 40_000u64;
        for k in 0..(cfg.duration.as_millis() as u64 / 20 + 10) {
            let pcm: Vec<i16> = (0..160)
                .map(|i| {
                    let t = (k * 160 + i) as f64 / 8_000.0;
                    (amplitude * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                })
                .collect();
            let n = enc.encode(&pcm, &mut payload).unwrap();
            let arrival = k * FRAME_NS + 10_000_000 + delay(k);
            analyze(&mut c, &mut totals, first_seq + k, &payload[..n], arrival, window);
        }
        totals
    }

    #[test]
    fn every_second_after_the_warm_up_is_judged_when_frames_arrive_on_time() {
        let t = run(|_| 0);
        assert_eq!((t.seconds, t.seconds_ok), (3, 3), "{t:?}");
    }

    #[test]
    fn a_last_frame_that_arrives_late_still_counts_for_its_second() {
        // The frames of the last 100 ms arrive 15 ms late: after the end of sending for the last of them.
        let t = run(|k| if (195..).contains(&k) { 15_000_000 } else { 0 });
        assert_eq!((t.seconds, t.seconds_ok), (3, 3), "{t:?}");
    }

    #[test]
    fn a_missing_talker_fails_its_seconds() {
        let (cfg, mut c) = listener(8_000.0);
        let mut enc = encoder(CodecSetting::g711(CodecKind::Pcmu), 8_000, 0).unwrap();
        let mut totals = CheckTotals::default();
        let window = (cfg.warmup.as_nanos() as u64, cfg.duration.as_nanos() as u64);
        let mut payload = [0u8; 400];
        for k in 0..210u64 {
            let n = enc.encode(&[0i16; 160], &mut payload).unwrap();
            analyze(&mut c, &mut totals, k, &payload[..n], k * FRAME_NS + 10_000_000, window);
        }
        assert_eq!((totals.seconds, totals.seconds_ok, totals.missing_tone), (3, 0, 3), "{totals:?}");
    }
}
