//! Demultiplexing and stream framing (RFC 8656 §12.5, RFC 7983 §7).
//!
//! [`classify`] looks at the first byte only (RFC 8656 §12.4): top two bits zero is STUN,
//! 0x40..=0x7F is ChannelData (channels 0x4000..=0x7FFF, the RFC 5766 range; see
//! [`channel_data`](crate::channel_data)), anything else (DTLS, RTP, garbage) is [`Kind::Other`]. [`frame_len`] tells
//! how long the next frame on a TCP/TLS stream is: STUN frames are 20 + length bytes, ChannelData
//! frames are padded to a multiple of 4 on streams.

use crate::Error;
use crate::channel_data;
use crate::message::HEADER_LEN;

/// What a datagram or frame is, by its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A STUN message (may still fail to decode).
    Stun,
    /// A ChannelData message.
    ChannelData,
    /// Anything else (DTLS, RTP, garbage).
    Other,
}

/// Classify `bytes` by its first byte (and length: STUN needs 20 bytes, ChannelData 4).
#[inline]
pub fn classify(bytes: &[u8]) -> Kind {
    match bytes.first() {
        Some(0..=0x3f) if bytes.len() >= HEADER_LEN => Kind::Stun,
        Some(0x40..=0x7f) if bytes.len() >= channel_data::HEADER_LEN => Kind::ChannelData,
        _ => Kind::Other,
    }
}

/// Length of the next frame at the start of a TCP/TLS stream buffer.
///
/// `Ok(None)`: not enough bytes to know yet (fewer than 4). `Ok(Some(n))`: the frame is `n`
/// bytes (which may exceed `buf.len()`: read more). `Err(UnknownFrame)`: the stream is out of
/// sync and should be closed.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, Error> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    match buf[0] {
        0..=0x3f => {
            if len % 4 != 0 {
                return Err(Error::BadLength);
            }
            Ok(Some(HEADER_LEN + len))
        }
        0x40..=0x7f => Ok(Some(channel_data::encoded_len(len, true))),
        _ => Err(Error::UnknownFrame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_and_frame() {
        assert_eq!(classify(&[0u8; 20]), Kind::Stun);
        assert_eq!(classify(&[0u8; 19]), Kind::Other);
        assert_eq!(classify(&[0x40, 0, 0, 0]), Kind::ChannelData);
        assert_eq!(classify(&[0x78, 0xe9, 0, 0]), Kind::ChannelData, "RFC 5766 range");
        assert_eq!(classify(&[0x80; 30]), Kind::Other);
        assert_eq!(classify(&[]), Kind::Other);
        assert_eq!(frame_len(&[0, 1, 0]), Ok(None));
        assert_eq!(frame_len(&[0, 1, 0, 8]), Ok(Some(28)));
        assert_eq!(frame_len(&[0, 1, 0, 7]), Err(Error::BadLength));
        assert_eq!(frame_len(&[0x40, 0, 0, 5]), Ok(Some(12)));
        assert_eq!(frame_len(&[0x40, 0, 0, 4]), Ok(Some(8)));
        assert_eq!(frame_len(&[0x80, 3, 1, 0]), Err(Error::UnknownFrame));
        assert_eq!(frame_len(&[0x7f, 0, 0, 1]), Ok(Some(8)));
    }
}
