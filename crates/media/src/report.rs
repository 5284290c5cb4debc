//! RTCP (RFC 3550 §6): receiver statistics for one source (Appendix A.3 loss, A.8 interarrival jitter),
//! and the reports built from them and read back, through the `rtcp` crate.
//!
//! RTCP is a few packets per participant every five seconds, so building and parsing it through the
//! `rtcp` crate's owned packets (which allocate) is off the hot path. Parsing is defensive: anything the
//! crate cannot read is counted as malformed by the caller, never unwrapped.
//!
//! Implemented: SR and RR with one report block per received source, SDES CNAME, BYE; round-trip time
//! from LSR/DLSR (§6.4.1). Left out: the MS-RTP profile extensions after the report blocks (§6.3 of
//! research/media-protocols.md: estimated bandwidth, packet loss notification), XR, and feedback
//! messages (received ones are ignored).

use std::time::{Duration, Instant};

use bytes::Bytes;
use rtcp::goodbye::Goodbye;
use rtcp::packet::Packet;
use rtcp::receiver_report::ReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport;
use rtcp::source_description::{SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem};

use crate::Error;
use crate::rtp::SequenceCounter;

/// Maps the session's monotonic clock to NTP time (RFC 3550 §4): the caller gives the wall-clock time
/// of one instant, once.
#[derive(Clone, Copy, Debug)]
pub struct NtpClock {
    anchor: Instant,
    /// NTP time at `anchor`, 32.32 fixed point.
    ntp_at_anchor: u64,
}

/// Seconds from 1900 (NTP era 0) to 1970 (Unix epoch).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

impl NtpClock {
    /// `unix` is the wall-clock time since the Unix epoch at `anchor`.
    pub fn new(anchor: Instant, unix: Duration) -> NtpClock {
        let secs = unix.as_secs() + NTP_UNIX_OFFSET;
        let frac = (u64::from(unix.subsec_nanos()) << 32) / 1_000_000_000;
        NtpClock { anchor, ntp_at_anchor: (secs << 32) | frac }
    }

    /// The instant the clock is anchored at.
    pub fn anchor(&self) -> Instant {
        self.anchor
    }

    /// NTP time (32.32) at `now`.
    pub fn ntp(&self, now: Instant) -> u64 {
        let d = now.saturating_duration_since(self.anchor);
        let add = (d.as_secs() << 32) + ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000);
        self.ntp_at_anchor.wrapping_add(add)
    }
}

/// The middle 32 bits of an NTP timestamp (the LSR field).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// What we know about one source we receive (RFC 3550 Appendix A.3 and A.8).
#[derive(Clone, Debug, Default)]
pub struct ReceiverStats {
    seq: SequenceCounter,
    base: Option<u64>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Interarrival jitter in timestamp units, scaled by 16 (A.8).
    jitter16: u64,
    last_transit: Option<i64>,
    /// LSR of the last SR and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

impl ReceiverStats {
    /// Records a packet: its sequence number, its timestamp and its arrival in timestamp units.
    /// Returns the extended sequence number, or `None` if the packet is too far off to place.
    pub fn record(&mut self, seq: u16, timestamp: u32, arrival_ts: u64) -> Option<u64> {
        let ext = self.seq.extend(seq)?;
        if self.base.is_none() {
            self.base = Some(ext);
        }
        self.received += 1;
        let transit = arrival_ts as i64 - i64::from(timestamp);
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs() as u32 as u64;
            // J += (|D| - J) / 16, kept scaled by 16.
            self.jitter16 = self.jitter16 + d - ((self.jitter16 + 8) >> 4);
        }
        self.last_transit = Some(transit);
        Some(ext)
    }

    /// Records a sender report's NTP time, for the LSR/DLSR of our next report block.
    pub fn record_sr(&mut self, ntp: u64, now: Instant) {
        self.last_sr = Some((ntp_middle(ntp), now));
    }

    /// Packets received.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets expected from the first to the highest sequence number.
    pub fn expected(&self) -> u64 {
        match (self.base, self.seq.max()) {
            (Some(base), Some(max)) => max - base + 1,
            _ => 0,
        }
    }

    /// Packets lost so far (expected minus received; duplicates can make it negative).
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        (self.jitter16 >> 4) as u32
    }

    /// A report block about `ssrc`, and the interval counters advanced (A.3).
    pub fn report_block(&mut self, ssrc: u32, now: Instant) -> Option<ReceptionReport> {
        let max = self.seq.max()?;
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8).checked_div(expected_interval).map_or(0, |f| f.min(255) as u8);
        let total_lost = self.lost().clamp(-0x80_0000, 0x7f_ffff) as i32 as u32 & 0x00ff_ffff;
        let (lsr, dlsr) = match self.last_sr {
            Some((lsr, at)) => {
                let d = now.saturating_duration_since(at);
                (lsr, ((d.as_secs() << 16) + ((u64::from(d.subsec_nanos()) << 16) / 1_000_000_000)) as u32)
            }
            None => (0, 0),
        };
        Some(ReceptionReport {
            ssrc,
            fraction_lost,
            total_lost,
            last_sequence_number: max as u32,
            jitter: self.jitter(),
            last_sender_report: lsr,
            delay: dlsr,
        })
    }
}

/// What we sent, for our sender report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderCounters {
    /// RTP packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
    /// Timestamp of the last packet sent, and its NTP time.
    pub last: Option<(u32, u64)>,
}

/// Builds one compound RTCP packet: SR (if we sent) or RR, then SDES CNAME (RFC 3550 §6.1), then BYE if
/// `bye`. Returns its bytes.
pub fn build_compound(
    ssrc: u32,
    cname: &str,
    sender: Option<(&SenderCounters, u64, u32)>,
    block: Option<ReceptionReport>,
    bye: bool,
) -> Result<Bytes, Error> {
    let reports: Vec<ReceptionReport> = block.into_iter().collect();
    let mut packets: Vec<Box<dyn Packet + Send + Sync>> = Vec::with_capacity(3);
    match sender {
        Some((counters, ntp, rtp_time)) => packets.push(Box::new(SenderReport {
            ssrc,
            ntp_time: ntp,
            rtp_time,
            packet_count: counters.packets,
            octet_count: counters.octets,
            reports,
            profile_extensions: Bytes::new(),
        })),
        None => packets.push(Box::new(ReceiverReport { ssrc, reports, profile_extensions: Bytes::new() })),
    }
    packets.push(Box::new(SourceDescription {
        chunks: vec![SourceDescriptionChunk {
            source: ssrc,
            items: vec![SourceDescriptionItem {
                sdes_type: SdesType::SdesCname,
                text: Bytes::copy_from_slice(cname.as_bytes()),
            }],
        }],
    }));
    if bye {
        packets.push(Box::new(Goodbye { sources: vec![ssrc], reason: Bytes::new() }));
    }
    rtcp::packet::marshal(&packets).map_err(|_| Error::BadRtcp)
}

/// What a received compound RTCP packet said that a session acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtcpSummary {
    /// The sender's SSRC (of its SR or RR).
    pub sender_ssrc: Option<u32>,
    /// NTP time of its SR, if it sent one.
    pub sr_ntp: Option<u64>,
    /// Its report block about `our_ssrc`: fraction lost (/256), cumulative lost, jitter, LSR, DLSR.
    pub about_us: Option<ReceptionReport>,
    /// It said BYE.
    pub bye: bool,
}

/// Parses a compound RTCP packet and keeps what concerns a session whose SSRC is `our_ssrc`.
///
/// The packets are walked and their lengths checked here first (RFC 3550 §6.1): only SR and RR packets
/// whose report blocks fit go to the `rtcp` crate, one at a time; BYE is read here; other packet
/// types (SDES, APP, feedback, XR) are skipped. The `rtcp` crate's own compound parser panics on some
/// malformed feedback packets (found by the `media_input` fuzz target), and network input must not.
pub fn parse_compound(bytes: &[u8], our_ssrc: u32) -> Result<RtcpSummary, Error> {
    use webrtc_util::marshal::Unmarshal;
    if bytes.len() < 4 {
        return Err(Error::BadRtcp);
    }
    let mut summary = RtcpSummary::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 4 || rest[0] >> 6 != 2 {
            return Err(Error::BadRtcp);
        }
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        let packet = rest.get(..len).ok_or(Error::BadRtcp)?;
        rest = &rest[len..];
        let count = usize::from(packet[0] & 0x1f);
        match packet[1] {
            200 if len >= 28 + 24 * count => {
                let sr = SenderReport::unmarshal(&mut Bytes::copy_from_slice(packet)).map_err(|_| Error::BadRtcp)?;
                summary.sender_ssrc = Some(sr.ssrc);
                summary.sr_ntp = Some(sr.ntp_time);
                summary.about_us = sr.reports.iter().find(|r| r.ssrc == our_ssrc).cloned().or(summary.about_us);
            }
            201 if len >= 8 + 24 * count => {
                let rr = ReceiverReport::unmarshal(&mut Bytes::copy_from_slice(packet)).map_err(|_| Error::BadRtcp)?;
                summary.sender_ssrc = Some(rr.ssrc);
                summary.about_us = rr.reports.iter().find(|r| r.ssrc == our_ssrc).cloned().or(summary.about_us);
            }
            200 | 201 => return Err(Error::BadRtcp),
            203 if len >= 4 + 4 * count => summary.bye = true,
            203 => return Err(Error::BadRtcp),
            _ => {}
        }
    }
    if summary.sender_ssrc.is_none() && !summary.bye {
        // RFC 3550 §6.1: a compound packet starts with an SR or RR
        return Err(Error::BadRtcp);
    }
    Ok(summary)
}

/// Round-trip time from a report block (RFC 3550 §6.4.1): arrival − LSR − DLSR, in NTP middle-32 units.
pub fn round_trip(block: &ReceptionReport, arrival_ntp: u64) -> Option<Duration> {
    if block.last_sender_report == 0 {
        return None;
    }
    let a = ntp_middle(arrival_ntp);
    let rtt = a.wrapping_sub(block.last_sender_report).wrapping_sub(block.delay);
    if rtt > 0x8000_0000 {
        return None;
    }
    Some(Duration::from_nanos((u64::from(rtt) * 1_000_000_000) >> 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_and_jitter_follow_rfc3550() {
        let mut s = ReceiverStats::default();
        let t0 = Instant::now();
        for i in 0u16..100 {
            if i % 10 == 3 {
                continue; // 10 % loss
            }
            // perfectly paced: transit constant, jitter 0
            s.record(i, u32::from(i) * 160, 1000 + u64::from(i) * 160);
        }
        assert_eq!(s.expected(), 100);
        assert_eq!(s.lost(), 10);
        assert_eq!(s.jitter(), 0);
        let block = s.report_block(7, t0).unwrap();
        assert_eq!(block.fraction_lost, (10 * 256 / 100) as u8);
        assert_eq!(block.total_lost, 10);
        // the next interval saw nothing new
        assert_eq!(s.report_block(7, t0).unwrap().fraction_lost, 0);

        let mut j = ReceiverStats::default();
        for i in 0u16..2000 {
            let wobble = if i % 2 == 0 { 0 } else { 80 };
            j.record(i, u32::from(i) * 160, u64::from(i) * 160 + wobble);
        }
        // |D| = 80 every packet: J converges to 80
        assert!((78..=80).contains(&j.jitter()), "{}", j.jitter());
    }

    #[test]
    fn compound_reports_round_trip_and_give_rtt() {
        let t0 = Instant::now();
        let clock = NtpClock::new(t0, Duration::from_secs(1_800_000_000));
        let mut stats = ReceiverStats::default();
        stats.record(1, 0, 0);
        // they sent an SR at t0; we answer 250 ms later
        stats.record_sr(clock.ntp(t0), t0);
        let block = stats.report_block(0xaaaa, t0 + Duration::from_millis(250)).unwrap();
        let counters = SenderCounters { packets: 10, octets: 1000, last: None };
        let bytes =
            build_compound(0xbbbb, "mcu@vienna", Some((&counters, clock.ntp(t0), 960)), Some(block), true).unwrap();
        let summary = parse_compound(&bytes, 0xaaaa).unwrap();
        assert_eq!(summary.sender_ssrc, Some(0xbbbb));
        assert!(summary.bye);
        let about = summary.about_us.unwrap();
        // it arrives back at them 100 ms after we sent it: RTT = 100 ms
        let rtt = round_trip(&about, clock.ntp(t0 + Duration::from_millis(350))).unwrap();
        assert!((rtt.as_millis() as i64 - 100).abs() <= 1, "{rtt:?}");
    }

    #[test]
    fn garbage_rtcp_is_an_error() {
        assert!(parse_compound(&[0x81, 201, 0, 9, 1, 2], 1).is_err());
        assert!(parse_compound(&[], 1).is_err());
        // a transport-layer NACK with no FCI: the rtcp crate's compound parser panics on it
        assert!(parse_compound(&[0x81, 0xcd, 0x00, 0x01, 0xff, 0x07, 0xc6, 0x00], 1).is_err());
        // an RR announcing more report blocks than it has
        assert!(
            parse_compound(
                &[0x82, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                1
            )
            .is_err()
        );
    }
}
