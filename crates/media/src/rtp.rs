//! RTP packets (RFC 3550 §5.1): a borrowing view for the receive path, a header writer for the send
//! path, and the extended sequence number (RFC 3550 Appendix A.1).
//!
//! The receive path parses with [`RtpPacket::parse`], which borrows the datagram and never allocates:
//! the `rtp` crate's `Packet::unmarshal` copies every payload into a new `Bytes`, which is one allocation
//! per packet at 50 packets per second per participant. The send path writes headers with the `rtp`
//! crate's [`rtp::header::Header`] (`marshal_to` into a caller's buffer, no allocation; the header's CSRC
//! vector is reused). The `rtp` crate is also the reference the tests compare the view against.
//!
//! Left out: header extension parsing beyond locating the payload (RFC 8285 elements are skipped, so
//! RFC 6464 audio levels are not read yet).

use crate::Error;

/// Length of the fixed RTP header.
pub const HEADER_LEN: usize = 12;
/// Most CSRCs a header can carry.
pub const MAX_CSRC: usize = 15;

/// A parsed RTP packet borrowing the received bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// Marker bit (start of a talkspurt for audio).
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Number of CSRCs (their values are in [`RtpPacket::csrc`]).
    pub csrc_count: u8,
    raw: &'a [u8],
    payload_start: usize,
    payload_end: usize,
}

impl<'a> RtpPacket<'a> {
    /// Parses one RTP packet: version 2, CSRC list, header extension and padding all checked against
    /// the length. Never panics.
    pub fn parse(raw: &'a [u8]) -> Result<RtpPacket<'a>, Error> {
        if raw.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if raw[0] >> 6 != 2 {
            return Err(Error::BadVersion);
        }
        let padding = raw[0] & 0x20 != 0;
        let extension = raw[0] & 0x10 != 0;
        let csrc_count = raw[0] & 0x0f;
        let mut start = HEADER_LEN + 4 * usize::from(csrc_count);
        if raw.len() < start {
            return Err(Error::Truncated);
        }
        if extension {
            if raw.len() < start + 4 {
                return Err(Error::Truncated);
            }
            let words = usize::from(u16::from_be_bytes([raw[start + 2], raw[start + 3]]));
            start += 4 + 4 * words;
            if raw.len() < start {
                return Err(Error::Truncated);
            }
        }
        let mut end = raw.len();
        if padding {
            let pad = usize::from(raw[raw.len() - 1]);
            if pad == 0 || end - start < pad {
                return Err(Error::BadPadding);
            }
            end -= pad;
        }
        Ok(RtpPacket {
            marker: raw[1] & 0x80 != 0,
            payload_type: raw[1] & 0x7f,
            sequence: u16::from_be_bytes([raw[2], raw[3]]),
            timestamp: u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]),
            ssrc: u32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]),
            csrc_count,
            raw,
            payload_start: start,
            payload_end: end,
        })
    }

    /// The payload (after CSRCs and extension, before padding).
    pub fn payload(&self) -> &'a [u8] {
        &self.raw[self.payload_start..self.payload_end]
    }

    /// The `i`-th CSRC, if present.
    pub fn csrc(&self, i: usize) -> Option<u32> {
        if i >= usize::from(self.csrc_count) {
            return None;
        }
        let at = HEADER_LEN + 4 * i;
        Some(u32::from_be_bytes([self.raw[at], self.raw[at + 1], self.raw[at + 2], self.raw[at + 3]]))
    }

    /// The whole packet.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
}

/// RTP or RTCP, told apart on a multiplexed port by the second byte (RFC 5761 §4: RTCP packet types
/// 192..=223 fall where RTP would have marker + payload types 64..=95, which RTP must not use).
pub fn is_rtcp(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] >> 6 == 2 && (192..=223).contains(&bytes[1])
}

/// Writes an RTP header into `out` with the `rtp` crate (no allocation: `csrc` is copied into the
/// reused `header`). Returns the header length.
pub fn write_header(
    header: &mut rtp::header::Header,
    fields: HeaderFields,
    csrc: &[u32],
    out: &mut [u8],
) -> Result<usize, Error> {
    use webrtc_util::marshal::Marshal;
    header.version = 2;
    header.padding = false;
    header.extension = false;
    header.marker = fields.marker;
    header.payload_type = fields.payload_type;
    header.sequence_number = fields.sequence;
    header.timestamp = fields.timestamp;
    header.ssrc = fields.ssrc;
    header.csrc.clear();
    header.csrc.extend_from_slice(&csrc[..csrc.len().min(MAX_CSRC)]);
    header.marshal_to(out).map_err(|_| Error::BufferTooSmall)
}

/// The header fields of one outgoing packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderFields {
    /// Marker bit.
    pub marker: bool,
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// SSRC.
    pub ssrc: u32,
}

/// Extends 16-bit sequence numbers to 64 bits (RFC 3550 Appendix A.1, without probation: a new source
/// is accepted on its first packet; a jump of more than [`SequenceCounter::MAX_DROPOUT`] is taken as a
/// restart of the sender after two consecutive packets agree).
#[derive(Clone, Copy, Debug, Default)]
pub struct SequenceCounter {
    max: Option<u64>,
    bad: Option<u16>,
}

impl SequenceCounter {
    /// Largest forward jump taken as loss rather than a restart.
    pub const MAX_DROPOUT: u16 = 3000;
    /// Largest backward step taken as reordering.
    pub const MAX_MISORDER: u16 = 100;

    /// The extended number of `seq`, or `None` for a packet too far off to place (the first of a
    /// possible restart).
    pub fn extend(&mut self, seq: u16) -> Option<u64> {
        let Some(max) = self.max else {
            self.max = Some(u64::from(seq) + (1 << 16));
            return self.max;
        };
        let max16 = max as u16;
        let delta = seq.wrapping_sub(max16);
        if delta == 0 {
            return Some(max);
        }
        if delta < Self::MAX_DROPOUT {
            let ext = max + u64::from(delta);
            self.max = Some(ext);
            self.bad = None;
            return Some(ext);
        }
        let back = max16.wrapping_sub(seq);
        if back <= Self::MAX_MISORDER {
            return max.checked_sub(u64::from(back));
        }
        // A big jump: accept it as a restart if the next packet follows it.
        if self.bad == Some(seq) {
            let ext = (max & !0xffff) + (1 << 16) + u64::from(seq);
            self.max = Some(ext);
            self.bad = None;
            return Some(ext);
        }
        self.bad = Some(seq.wrapping_add(1));
        None
    }

    /// The highest extended sequence number seen.
    pub fn max(&self) -> Option<u64> {
        self.max
    }
}

/// Extends 32-bit RTP timestamps to 64 bits around a reference (the last extended value).
#[derive(Clone, Copy, Debug, Default)]
pub struct TimestampExtender {
    last: Option<u64>,
}

impl TimestampExtender {
    /// The extended value of `ts`: the 64-bit value nearest to the last one with these low 32 bits.
    pub fn extend(&mut self, ts: u32) -> u64 {
        let Some(last) = self.last else {
            let ext = u64::from(ts) + (1 << 32);
            self.last = Some(ext);
            return ext;
        };
        let diff = ts.wrapping_sub(last as u32) as i32;
        let ext = (last as i64 + i64::from(diff)).max(0) as u64;
        if diff > 0 {
            self.last = Some(ext);
        }
        ext
    }

    /// Forgets the reference (a new source).
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use webrtc_util::marshal::Marshal;

    #[test]
    fn parses_what_the_rtp_crate_writes() {
        let mut header = rtp::header::Header {
            version: 2,
            marker: true,
            payload_type: 111,
            sequence_number: 65535,
            timestamp: 0xdead_beef,
            ssrc: 0x1122_3344,
            csrc: vec![7, 8],
            ..Default::default()
        };
        header.set_extension(1, Bytes::from_static(&[0x30])).unwrap();
        let packet = rtp::packet::Packet { header, payload: Bytes::from_static(b"opus-frame") };
        let raw = packet.marshal().unwrap();
        let view = RtpPacket::parse(&raw).unwrap();
        assert!(view.marker);
        assert_eq!(view.payload_type, 111);
        assert_eq!(view.sequence, 65535);
        assert_eq!(view.timestamp, 0xdead_beef);
        assert_eq!(view.ssrc, 0x1122_3344);
        assert_eq!((view.csrc(0), view.csrc(1), view.csrc(2)), (Some(7), Some(8), None));
        assert_eq!(view.payload(), b"opus-frame");
        assert!(!is_rtcp(&raw));
    }

    #[test]
    fn writes_headers_the_rtp_crate_reads() {
        use webrtc_util::marshal::Unmarshal;
        let mut header = rtp::header::Header::default();
        let mut out = [0u8; 128];
        let fields = HeaderFields { marker: false, payload_type: 0, sequence: 9, timestamp: 160, ssrc: 42 };
        let n = write_header(&mut header, fields, &[5, 6, 7], &mut out).unwrap();
        assert_eq!(n, 24);
        let back = rtp::header::Header::unmarshal(&mut &out[..n]).unwrap();
        assert_eq!(back.csrc, vec![5, 6, 7]);
        assert_eq!((back.sequence_number, back.timestamp, back.ssrc), (9, 160, 42));
    }

    #[test]
    fn rejects_malformed_packets() {
        assert_eq!(RtpPacket::parse(&[0x80; 11]), Err(Error::Truncated));
        assert_eq!(RtpPacket::parse(&[0x40; 12]), Err(Error::BadVersion));
        let mut p = [0u8; 12];
        p[0] = 0x8f; // 15 CSRCs announced, none present
        assert_eq!(RtpPacket::parse(&p), Err(Error::Truncated));
        let mut p = [0u8; 13];
        p[0] = 0xa0;
        p[12] = 9; // padding longer than the payload
        assert_eq!(RtpPacket::parse(&p), Err(Error::BadPadding));
    }

    #[test]
    fn sequence_numbers_extend_across_wrap_reorder_and_restart() {
        let mut c = SequenceCounter::default();
        assert_eq!(c.extend(65534), Some(65536 + 65534));
        assert_eq!(c.extend(65535), Some(65536 + 65535));
        assert_eq!(c.extend(1), Some(2 * 65536 + 1));
        assert_eq!(c.extend(0), Some(2 * 65536)); // late
        assert_eq!(c.extend(30000), None); // far jump: held
        assert_eq!(c.extend(30001), Some(3 * 65536 + 30001)); // confirmed restart
    }

    #[test]
    fn timestamps_extend_across_wrap() {
        let mut t = TimestampExtender::default();
        let a = t.extend(u32::MAX - 959);
        let b = t.extend(0);
        assert_eq!(b - a, 960);
        assert_eq!(t.extend(u32::MAX - 959), a); // late packet
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = RtpPacket::parse(&bytes).map(|p| (p.payload().len(), p.csrc(3)));
        }
    }
}
