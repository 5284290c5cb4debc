//! One participant's RTP session (RFC 3550): which source it sends from, what we receive and send, and
//! the RTCP reports both ways.
//!
//! * **SSRC handling** (§8): the first packet's SSRC (or the offer's `a=ssrc`) is the remote source. A
//!   packet from another SSRC is dropped while the current one is alive; after [`SOURCE_TIMEOUT`] of
//!   silence, or after its BYE, the new SSRC takes over (the caller resets its jitter buffer). Our
//!   own SSRC coming back is a loop and is dropped. Payload types other than the agreed codec and
//!   telephone-event are dropped.
//! * **Sending**: one SSRC per participant; timestamps follow the conference tick (a skipped tick
//!   leaves a gap in timestamps, not in sequence numbers), starting at a random offset (§5.1).
//! * **RTCP** (§6): a compound SR (after we sent) or RR with one report block, plus SDES CNAME, every
//!   5 s randomised over [0.5, 1.5] (§6.2 and §6.3.1 for a two-member session; the 5 s minimum is kept,
//!   no reduced minimum); BYE on leave; RTT from the peer's report blocks.

use std::time::{Duration, Instant};

use crate::Error;
use crate::codec::CodecKind;
use crate::dtmf::{DtmfEvent, DtmfReceiver};
use crate::report::{self, NtpClock, ReceiverStats, RtcpSummary, SenderCounters};
use crate::rtp::{self, HeaderFields, RtpPacket};

/// Silence after which another SSRC may take over.
pub const SOURCE_TIMEOUT: Duration = Duration::from_secs(2);
/// Mean RTCP interval.
pub const RTCP_INTERVAL: Duration = Duration::from_secs(5);

/// What a session is set up with.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Our SSRC towards this participant.
    pub local_ssrc: u32,
    /// Our CNAME.
    pub cname: String,
    /// Agreed codec.
    pub codec: CodecKind,
    /// Its payload type.
    pub payload_type: u8,
    /// telephone-event payload type.
    pub telephone_event: Option<u8>,
    /// The SSRC the offer announced, if any.
    pub remote_ssrc: Option<u32>,
    /// NTP time for sender reports.
    pub clock: NtpClock,
    /// Seeds the RTCP interval randomisation and the initial sequence number and timestamp.
    pub seed: u64,
}

/// Why a received RTP packet was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// From another SSRC than the participant's current one.
    OtherSsrc,
    /// Our own SSRC: a loop.
    Loop,
    /// A payload type that was not agreed.
    PayloadType,
    /// Too far off in sequence numbers to place.
    Sequence,
    /// A malformed telephone-event payload.
    BadEvent,
}

/// A received RTP packet, sorted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// Audio for the jitter buffer.
    Audio {
        /// RTP timestamp.
        timestamp: u32,
        /// Payload.
        payload: &'a [u8],
        /// A new SSRC took over: reset the jitter buffer first.
        new_source: bool,
    },
    /// A telephone-event packet; `Some` when it completed an event.
    Event(Option<DtmfEvent>),
    /// Not used.
    Dropped(DropReason),
}

/// Counters of one session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// RTP packets received and used.
    pub rtp_in: u64,
    /// RTP packets dropped.
    pub rtp_dropped: u64,
    /// RTCP packets received and parsed.
    pub rtcp_in: u64,
    /// RTCP packets that did not parse.
    pub rtcp_bad: u64,
    /// RTP packets sent.
    pub rtp_out: u64,
    /// RTCP packets sent.
    pub rtcp_out: u64,
}

/// One participant's RTP session.
pub struct RtpSession {
    config: SessionConfig,
    remote_ssrc: Option<u32>,
    remote_gone: bool,
    last_rtp: Option<Instant>,
    stats: ReceiverStats,
    dtmf: DtmfReceiver,
    sender: SenderCounters,
    header: ::rtp::header::Header,
    seq: u16,
    ts_base: u32,
    next_rtcp: Option<Instant>,
    rng: u64,
    rtt: Option<Duration>,
    remote_fraction_lost: Option<u8>,
    counters: SessionCounters,
    first_packet: bool,
}

impl RtpSession {
    /// A session with nothing received or sent yet.
    pub fn new(config: SessionConfig) -> RtpSession {
        let mut rng = config.seed | 1;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let seq = next() as u16;
        let ts_base = next() as u32;
        RtpSession {
            remote_ssrc: config.remote_ssrc,
            config,
            remote_gone: false,
            last_rtp: None,
            stats: ReceiverStats::default(),
            dtmf: DtmfReceiver::default(),
            sender: SenderCounters::default(),
            header: ::rtp::header::Header { csrc: Vec::with_capacity(rtp::MAX_CSRC), ..Default::default() },
            seq,
            ts_base,
            next_rtcp: None,
            rng,
            rtt: None,
            remote_fraction_lost: None,
            counters: SessionCounters::default(),
            first_packet: true,
        }
    }

    /// Our SSRC.
    pub fn local_ssrc(&self) -> u32 {
        self.config.local_ssrc
    }

    /// The participant's current SSRC.
    pub fn remote_ssrc(&self) -> Option<u32> {
        self.remote_ssrc
    }

    /// The agreed codec.
    pub fn codec(&self) -> CodecKind {
        self.config.codec
    }

    /// Counters.
    pub fn counters(&self) -> SessionCounters {
        self.counters
    }

    /// Receiver statistics of the participant's stream.
    pub fn receiver_stats(&self) -> &ReceiverStats {
        &self.stats
    }

    /// Round-trip time from the last report block about us.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Loss the participant reported for our stream (fraction of 256).
    pub fn remote_fraction_lost(&self) -> Option<u8> {
        self.remote_fraction_lost
    }

    /// When the last RTP packet was used.
    pub fn last_rtp(&self) -> Option<Instant> {
        self.last_rtp
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn arrival_ticks(&self, now: Instant) -> u64 {
        let d = now.saturating_duration_since(self.config.clock_anchor());
        (d.as_nanos() * u128::from(self.config.codec.clock_rate()) / 1_000_000_000) as u64
    }

    /// Sorts one received RTP packet.
    pub fn receive_rtp<'a>(&mut self, now: Instant, packet: &RtpPacket<'a>) -> Received<'a> {
        let dropped = |s: &mut Self, r| {
            s.counters.rtp_dropped += 1;
            Received::Dropped(r)
        };
        if packet.ssrc == self.config.local_ssrc {
            return dropped(self, DropReason::Loop);
        }
        let is_event = Some(packet.payload_type) == self.config.telephone_event;
        if packet.payload_type != self.config.payload_type && !is_event {
            return dropped(self, DropReason::PayloadType);
        }
        let mut new_source = false;
        match self.remote_ssrc {
            Some(s) if s == packet.ssrc => {}
            Some(_) => {
                let alive = self.last_rtp.is_some_and(|t| now.saturating_duration_since(t) < SOURCE_TIMEOUT);
                if alive && !self.remote_gone {
                    return dropped(self, DropReason::OtherSsrc);
                }
                self.switch_source(packet.ssrc);
                new_source = true;
            }
            None => {
                self.remote_ssrc = Some(packet.ssrc);
            }
        }
        let arrival = self.arrival_ticks(now);
        if self.stats.record(packet.sequence, packet.timestamp, arrival).is_none() {
            return dropped(self, DropReason::Sequence);
        }
        self.last_rtp = Some(now);
        self.counters.rtp_in += 1;
        if is_event {
            return match self.dtmf.handle(packet.timestamp, packet.payload()) {
                Ok(e) => Received::Event(e),
                Err(_) => dropped(self, DropReason::BadEvent),
            };
        }
        Received::Audio { timestamp: packet.timestamp, payload: packet.payload(), new_source }
    }

    fn switch_source(&mut self, ssrc: u32) {
        self.remote_ssrc = Some(ssrc);
        self.remote_gone = false;
        self.stats = ReceiverStats::default();
        self.dtmf = DtmfReceiver::default();
    }

    /// Reads one received compound RTCP packet.
    pub fn receive_rtcp(&mut self, now: Instant, bytes: &[u8]) -> Result<RtcpSummary, Error> {
        let summary = match report::parse_compound(bytes, self.config.local_ssrc) {
            Ok(s) => s,
            Err(e) => {
                self.counters.rtcp_bad += 1;
                return Err(e);
            }
        };
        self.counters.rtcp_in += 1;
        if summary.sender_ssrc.is_some() && summary.sender_ssrc == self.remote_ssrc {
            if let Some(ntp) = summary.sr_ntp {
                self.stats.record_sr(ntp, now);
            }
            if summary.bye {
                self.remote_gone = true;
            }
        }
        if let Some(block) = &summary.about_us {
            self.remote_fraction_lost = Some(block.fraction_lost);
            if let Some(rtt) = report::round_trip(block, self.config.clock.ntp(now)) {
                self.rtt = Some(rtt);
            }
        }
        Ok(summary)
    }

    /// Writes one outgoing RTP packet for conference tick `tick` into `out`: header (with `csrc`,
    /// dominant speaker first) and `payload`. Returns its length.
    pub fn write_rtp(
        &mut self,
        now: Instant,
        tick: u64,
        payload: &[u8],
        csrc: &[u32],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let ticks = self.config.codec.frame_ticks();
        let timestamp = self.ts_base.wrapping_add((tick as u32).wrapping_mul(ticks));
        let fields = HeaderFields {
            marker: self.first_packet,
            payload_type: self.config.payload_type,
            sequence: self.seq,
            timestamp,
            ssrc: self.config.local_ssrc,
        };
        let n = rtp::write_header(&mut self.header, fields, csrc, out)?;
        let end = n + payload.len();
        out.get_mut(n..end).ok_or(Error::BufferTooSmall)?.copy_from_slice(payload);
        self.first_packet = false;
        self.seq = self.seq.wrapping_add(1);
        self.sender.packets = self.sender.packets.wrapping_add(1);
        self.sender.octets = self.sender.octets.wrapping_add(payload.len() as u32);
        self.sender.last = Some((timestamp, self.config.clock.ntp(now)));
        self.counters.rtp_out += 1;
        if self.next_rtcp.is_none() {
            self.schedule_rtcp(now);
        }
        Ok(end)
    }

    fn schedule_rtcp(&mut self, now: Instant) {
        // uniformly in [0.5, 1.5] × the interval
        let f = 500 + self.random() % 1001;
        self.next_rtcp = Some(now + RTCP_INTERVAL * f as u32 / 1000);
    }

    /// When [`RtpSession::poll_rtcp`] next has something.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_rtcp
    }

    /// The compound RTCP packet due at `now`, if one is; `bye` appends a BYE (send it now regardless).
    pub fn poll_rtcp(&mut self, now: Instant, bye: bool) -> Option<Vec<u8>> {
        if !bye {
            match self.next_rtcp {
                Some(t) if t <= now => {}
                None if self.last_rtp.is_some() => {
                    self.schedule_rtcp(now);
                    return None;
                }
                _ => return None,
            }
        }
        self.schedule_rtcp(now);
        let block = self.remote_ssrc.and_then(|s| self.stats.report_block(s, now));
        let ntp = self.config.clock.ntp(now);
        let sender = self.sender.last.map(|(ts, at)| {
            // the RTP time that corresponds to `now` (§6.4.1): extrapolated from the last packet
            let elapsed = ntp.wrapping_sub(at);
            let add = ((u128::from(elapsed) * u128::from(self.config.codec.clock_rate())) >> 32) as u32;
            (ts.wrapping_add(add), ntp)
        });
        let bytes = report::build_compound(
            self.config.local_ssrc,
            &self.config.cname,
            sender.map(|(rtp_time, ntp)| (&self.sender, ntp, rtp_time)),
            block,
            bye,
        )
        .ok()?;
        self.counters.rtcp_out += 1;
        Some(bytes.to_vec())
    }
}

impl SessionConfig {
    fn clock_anchor(&self) -> Instant {
        self.clock.anchor()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use webrtc_util::marshal::Marshal;

    fn session(t0: Instant) -> RtpSession {
        RtpSession::new(SessionConfig {
            local_ssrc: 0x1000,
            cname: "mcu".into(),
            codec: CodecKind::Pcmu,
            payload_type: 0,
            telephone_event: Some(101),
            remote_ssrc: None,
            clock: NtpClock::new(t0, Duration::from_secs(1_700_000_000)),
            seed: 1,
        })
    }

    fn rtp(ssrc: u32, pt: u8, seq: u16, ts: u32, payload: &'static [u8]) -> Vec<u8> {
        let header = ::rtp::header::Header {
            version: 2,
            payload_type: pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            ..Default::default()
        };
        ::rtp::packet::Packet { header, payload: Bytes::from_static(payload) }.marshal().unwrap().to_vec()
    }

    #[test]
    fn learns_the_source_and_drops_others_until_it_times_out() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let a = rtp(7, 0, 1, 160, b"aa");
        let p = RtpPacket::parse(&a).unwrap();
        assert!(matches!(s.receive_rtp(t0, &p), Received::Audio { new_source: false, .. }));
        assert_eq!(s.remote_ssrc(), Some(7));
        let b = rtp(8, 0, 50, 0, b"bb");
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(s.receive_rtp(t0 + Duration::from_millis(20), &p), Received::Dropped(DropReason::OtherSsrc));
        assert!(matches!(s.receive_rtp(t0 + Duration::from_secs(3), &p), Received::Audio { new_source: true, .. }));
        assert_eq!(s.remote_ssrc(), Some(8));
        let own = rtp(0x1000, 0, 1, 1, b"x");
        assert_eq!(s.receive_rtp(t0, &RtpPacket::parse(&own).unwrap()), Received::Dropped(DropReason::Loop));
        let video = rtp(8, 96, 51, 1, b"x");
        assert_eq!(s.receive_rtp(t0, &RtpPacket::parse(&video).unwrap()), Received::Dropped(DropReason::PayloadType));
        assert_eq!(s.counters().rtp_dropped, 3);
    }

    #[test]
    fn telephone_events_come_out_once() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let mut events = Vec::new();
        for (seq, end) in [(1u16, false), (2, true), (3, true), (4, true)] {
            let payload: &'static [u8] = if end { &[3, 0x8a, 0x01, 0x40] } else { &[3, 0x0a, 0x00, 0xa0] };
            let b = rtp(7, 101, seq, 8000, payload);
            if let Received::Event(Some(e)) = s.receive_rtp(t0, &RtpPacket::parse(&b).unwrap()) {
                events.push(e.digit());
            }
        }
        assert_eq!(events, vec![Some('3')]);
    }

    #[test]
    fn sends_numbered_packets_and_reports_them() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let mut out = [0u8; 256];
        let mut seqs = Vec::new();
        let mut stamps = Vec::new();
        for tick in [0u64, 1, 2, 4] {
            let n =
                s.write_rtp(t0 + Duration::from_millis(20 * tick), tick, &[0xff; 160], &[11, 22], &mut out).unwrap();
            assert_eq!(n, 12 + 8 + 160);
            let p = RtpPacket::parse(&out[..n]).unwrap();
            assert_eq!((p.csrc(0), p.csrc(1)), (Some(11), Some(22)));
            assert_eq!(p.marker, tick == 0);
            seqs.push(p.sequence);
            stamps.push(p.timestamp);
        }
        assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
        assert_eq!(stamps[3].wrapping_sub(stamps[2]), 320, "a skipped tick shows in the timestamp");
        assert!(s.poll_rtcp(t0 + Duration::from_millis(100), false).is_none(), "not due yet");
        let due = s.poll_timeout().unwrap();
        assert!(due >= t0 + Duration::from_millis(2500) && due <= t0 + Duration::from_millis(7600));
        let sr = s.poll_rtcp(due, false).unwrap();
        // our SR as the peer reads it
        let summary = report::parse_compound(&sr, 0x9999).unwrap();
        assert_eq!(summary.sender_ssrc, Some(0x1000));
        assert!(summary.sr_ntp.is_some());
        let bye = s.poll_rtcp(due, true).unwrap();
        assert!(report::parse_compound(&bye, 0).unwrap().bye);
    }

    #[test]
    fn rtcp_from_the_participant_gives_rtt_and_bye_frees_the_ssrc() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let a = rtp(7, 0, 1, 160, b"aa");
        s.receive_rtp(t0, &RtpPacket::parse(&a).unwrap());
        let mut out = [0u8; 256];
        s.write_rtp(t0, 0, &[0; 160], &[], &mut out).unwrap();
        let due = s.poll_timeout().unwrap();
        let our_sr = s.poll_rtcp(due, false).unwrap();
        // the participant answers 30 ms later with an RR about us (LSR from our SR, DLSR 10 ms)
        let sr_ntp = report::parse_compound(&our_sr, 0).unwrap().sr_ntp.unwrap();
        let block = rtcp::reception_report::ReceptionReport {
            ssrc: 0x1000,
            last_sender_report: report::ntp_middle(sr_ntp),
            delay: 655, // 10 ms in 1/65536 s
            ..Default::default()
        };
        let rr = rtcp::receiver_report::ReceiverReport { ssrc: 7, reports: vec![block], ..Default::default() };
        let bye = rtcp::goodbye::Goodbye { sources: vec![7], reason: Bytes::new() };
        let pkts: Vec<Box<dyn rtcp::packet::Packet + Send + Sync>> = vec![Box::new(rr), Box::new(bye)];
        let bytes = rtcp::packet::marshal(&pkts).unwrap();
        s.receive_rtcp(due + Duration::from_millis(30), &bytes).unwrap();
        let rtt = s.rtt().unwrap();
        assert!((19..=21).contains(&rtt.as_millis()), "{rtt:?}");
        // after BYE another SSRC may take over at once
        let b = rtp(8, 0, 1, 160, b"bb");
        assert!(matches!(s.receive_rtp(due, &RtpPacket::parse(&b).unwrap()), Received::Audio { new_source: true, .. }));
        assert!(s.receive_rtcp(due, &[1, 2, 3]).is_err());
        assert_eq!(s.counters().rtcp_bad, 1);
    }
}
