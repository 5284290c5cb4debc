//! The payload every data packet carries: a magic, the sending client's index, a sequence number and
//! the send time, so the echo that comes back through the relay can be matched, ordered and timed.
//!
//! Layout (big-endian), then zero filler up to the requested size:
//! ```text
//! 0      4        8            16           24
//! | VLD1 | client | sequence   | sent (ns)  | filler...
//! ```
//! The send time is nanoseconds since the run's common clock origin (an `Instant` of this process);
//! only this process reads it back, so no clock synchronisation is involved.

/// First four bytes of every payload.
pub const MAGIC: [u8; 4] = *b"VLD1";
/// Bytes of the header; the smallest payload size.
pub const HEADER_LEN: usize = 24;

/// The fields of a payload header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Index of the sending client in the run.
    pub client: u32,
    /// Per-client sequence number, from 0.
    pub seq: u64,
    /// Send time in nanoseconds since the run's clock origin.
    pub sent_ns: u64,
}

/// Writes `h` into `out[..HEADER_LEN]` and zeroes `out[HEADER_LEN..]`; `out` must be at least
/// [`HEADER_LEN`] long (the CLI enforces the minimum size).
pub fn write(out: &mut [u8], h: &Header) {
    out[..4].copy_from_slice(&MAGIC);
    out[4..8].copy_from_slice(&h.client.to_be_bytes());
    out[8..16].copy_from_slice(&h.seq.to_be_bytes());
    out[16..24].copy_from_slice(&h.sent_ns.to_be_bytes());
    out[HEADER_LEN..].fill(0);
}

/// Reads a header; `None` if `bytes` is too short or lacks the magic.
pub fn read(bytes: &[u8]) -> Option<Header> {
    let h = bytes.get(..HEADER_LEN)?;
    if h[..4] != MAGIC {
        return None;
    }
    let u64_at = |i: usize| u64::from_be_bytes(h[i..i + 8].try_into().unwrap_or([0; 8]));
    Some(Header {
        client: u32::from_be_bytes(h[4..8].try_into().unwrap_or([0; 4])),
        seq: u64_at(8),
        sent_ns: u64_at(16),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_with_filler() {
        let h = Header { client: 7, seq: 0x0102_0304_0506_0708, sent_ns: u64::MAX - 1 };
        let mut buf = [0xAAu8; 100];
        write(&mut buf, &h);
        assert_eq!(&buf[..4], b"VLD1");
        assert_eq!(&buf[4..8], &[0, 0, 0, 7]);
        assert!(buf[HEADER_LEN..].iter().all(|&b| b == 0), "filler is zeroed");
        assert_eq!(read(&buf), Some(h));
        assert_eq!(read(&buf[..HEADER_LEN]), Some(h), "minimum size");
    }

    #[test]
    fn rejects_short_or_foreign() {
        let mut buf = [0u8; HEADER_LEN];
        write(&mut buf, &Header { client: 1, seq: 2, sent_ns: 3 });
        assert_eq!(read(&buf[..HEADER_LEN - 1]), None);
        buf[0] = b'X';
        assert_eq!(read(&buf), None);
        assert_eq!(read(&[]), None);
    }
}
