//! ChannelData messages (RFC 8656 §12.4, §12.5): a 4-byte header (channel number, length)
//! followed by the application data. Parsing and building never allocate.
//!
//! Channel numbers are 0x4000..=0x7FFF: RFC 8656 narrowed the range to 0x4000..=0x4FFF, but
//! RFC 5766 clients still pick numbers up to 0x7FFF (coturn's own `turnutils_uclient` does), and a
//! TURN listener carries nothing else that starts with 0x50..=0x7F, so the relay accepts the
//! RFC 5766 range. On UDP trailing padding is accepted; on TCP/TLS the frame is padded to
//! a multiple of 4 ([`write()`] with `pad = true`).

use crate::Error;

/// Lowest valid channel number.
pub const MIN_CHANNEL: u16 = 0x4000;
/// Highest valid channel number.
pub const MAX_CHANNEL: u16 = 0x7FFF;
/// Length of the ChannelData header.
pub const HEADER_LEN: usize = 4;

/// Whether `n` is a valid channel number.
pub fn is_valid_channel(n: u16) -> bool {
    (MIN_CHANNEL..=MAX_CHANNEL).contains(&n)
}

/// A borrowed ChannelData message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// Channel number.
    pub channel: u16,
    /// Application data (without padding).
    pub data: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Parse a ChannelData message; bytes after the announced length (padding) are ignored.
    #[inline]
    pub fn parse(bytes: &'a [u8]) -> Result<ChannelData<'a>, Error> {
        if bytes.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let channel = u16::from_be_bytes([bytes[0], bytes[1]]);
        if !is_valid_channel(channel) {
            return Err(Error::BadChannelNumber);
        }
        let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        let data = bytes.get(HEADER_LEN..HEADER_LEN + len).ok_or(Error::Truncated)?;
        Ok(ChannelData { channel, data })
    }

    /// Encoded length, optionally padded to a multiple of 4.
    pub fn encoded_len(&self, pad: bool) -> usize {
        encoded_len(self.data.len(), pad)
    }

    /// Write into `out`; see [`write()`].
    pub fn write(&self, out: &mut [u8], pad: bool) -> Result<usize, Error> {
        write(self.channel, self.data, out, pad)
    }
}

/// Length of a ChannelData frame carrying `data_len` bytes.
#[inline]
pub fn encoded_len(data_len: usize, pad: bool) -> usize {
    let n = HEADER_LEN + data_len;
    if pad { (n + 3) & !3 } else { n }
}

/// Write the 4-byte header for `channel`/`data_len` into `out[..4]`.
#[inline]
pub fn write_header(channel: u16, data_len: usize, out: &mut [u8]) -> Result<(), Error> {
    let len = u16::try_from(data_len).map_err(|_| Error::TooLong)?;
    let h = out.get_mut(..HEADER_LEN).ok_or(Error::BufferTooSmall)?;
    h[..2].copy_from_slice(&channel.to_be_bytes());
    h[2..].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Write a ChannelData frame into `out`, padded to 4 bytes if `pad` (TCP/TLS); returns the
/// number of bytes written.
#[inline]
pub fn write(channel: u16, data: &[u8], out: &mut [u8], pad: bool) -> Result<usize, Error> {
    if !is_valid_channel(channel) {
        return Err(Error::BadChannelNumber);
    }
    let total = encoded_len(data.len(), pad);
    let out = out.get_mut(..total).ok_or(Error::BufferTooSmall)?;
    write_header(channel, data.len(), out)?;
    out[HEADER_LEN..HEADER_LEN + data.len()].copy_from_slice(data);
    out[HEADER_LEN + data.len()..].fill(0);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_padding() {
        let mut buf = [0xffu8; 16];
        let n = write(0x4001, b"abcde", &mut buf, true).unwrap();
        assert_eq!(n, 12);
        assert_eq!(&buf[..12], &[0x40, 0x01, 0, 5, b'a', b'b', b'c', b'd', b'e', 0, 0, 0]);
        let cd = ChannelData::parse(&buf[..n]).unwrap();
        assert_eq!(cd, ChannelData { channel: 0x4001, data: b"abcde" });
        assert_eq!(write(0x4001, b"abcde", &mut buf, false).unwrap(), 9);
    }

    #[test]
    fn errors() {
        assert_eq!(ChannelData::parse(&[0x40, 0]), Err(Error::Truncated));
        assert_eq!(ChannelData::parse(&[0x80, 0, 0, 0]), Err(Error::BadChannelNumber));
        assert!(ChannelData::parse(&[0x7f, 0xff, 0, 0]).is_ok(), "RFC 5766 range");
        assert_eq!(ChannelData::parse(&[0x3f, 0xff, 0, 0]), Err(Error::BadChannelNumber));
        assert_eq!(ChannelData::parse(&[0x40, 0, 0, 5, 1, 2]), Err(Error::Truncated));
        assert_eq!(write(0x4000, b"abc", &mut [0u8; 6], false), Err(Error::BufferTooSmall));
        assert_eq!(write(0x3000, b"abc", &mut [0u8; 16], false), Err(Error::BadChannelNumber));
    }
}
