//! The seam where SRTP (RFC 3711, MS-SRTP) plugs in: every RTP and RTCP packet of a participant passes
//! through its [`Protection`] on the way in and out.
//!
//! Today only [`Protection::Plain`] exists in this crate. The SRTP crate (`crates/srtp`, being built
//! separately) will implement [`PacketProtection`] and be installed per participant with
//! [`Protection::External`] once the SDP side accepts `RTP/SAVP` with `a=crypto`; with Scale SRTP
//! (MS-SSRTP) a shared mix could then be protected once for all its listeners.

use crate::Error;

/// Protects and unprotects packets in place.
pub trait PacketProtection: Send {
    /// Protects the RTP packet in `buf[..len]`; returns the new length (at most `buf.len()`).
    fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error>;
    /// Unprotects the RTP packet filling `buf`; returns the plain length.
    fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, Error>;
    /// Protects the RTCP packet in `buf[..len]`; returns the new length.
    fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error>;
    /// Unprotects the RTCP packet filling `buf`; returns the plain length.
    fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, Error>;
    /// Bytes a protected packet may add (authentication tag, MKI, SRTCP index).
    fn overhead(&self) -> usize;
}

/// How one participant's packets are protected.
#[derive(Default)]
pub enum Protection {
    /// Plain RTP/RTCP (RTP/AVP).
    #[default]
    Plain,
    /// Protected by an external implementation (SRTP).
    External(Box<dyn PacketProtection>),
}

impl Protection {
    /// See [`PacketProtection::protect_rtp`].
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        match self {
            Protection::Plain => Ok(len),
            Protection::External(p) => p.protect_rtp(buf, len),
        }
    }

    /// See [`PacketProtection::unprotect_rtp`].
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        match self {
            Protection::Plain => Ok(buf.len()),
            Protection::External(p) => p.unprotect_rtp(buf),
        }
    }

    /// See [`PacketProtection::protect_rtcp`].
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        match self {
            Protection::Plain => Ok(len),
            Protection::External(p) => p.protect_rtcp(buf, len),
        }
    }

    /// See [`PacketProtection::unprotect_rtcp`].
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        match self {
            Protection::Plain => Ok(buf.len()),
            Protection::External(p) => p.unprotect_rtcp(buf),
        }
    }

    /// See [`PacketProtection::overhead`].
    pub fn overhead(&self) -> usize {
        match self {
            Protection::Plain => 0,
            Protection::External(p) => p.overhead(),
        }
    }
}
