//! The seam where SRTP (RFC 3711, MS-SRTP) plugs in: every RTP and RTCP packet of a participant passes
//! through its [`Protection`] on the way in and out.
//!
//! This crate has only [`Protection::Plain`]; `vienna-mixer`'s `security` module implements
//! [`PacketProtection`] over `vienna-srtp` (SDES-keyed SRTP per participant) and installs it with
//! [`Protection::External`] when the SDP answer agreed a key.

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
    /// Spare bytes the buffer needs after a packet for protecting it (authentication tag, MKI, SRTCP
    /// index, and any room the implementation wants).
    fn overhead(&self) -> usize;
    /// Packets protected, accepted and rejected so far.
    fn counters(&self) -> ProtectionCounters {
        ProtectionCounters::default()
    }
}

/// What a [`PacketProtection`] has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProtectionCounters {
    /// RTP packets protected.
    pub rtp_out: u64,
    /// RTCP packets protected.
    pub rtcp_out: u64,
    /// RTP packets unprotected.
    pub rtp_in: u64,
    /// RTCP packets unprotected.
    pub rtcp_in: u64,
    /// Packets refused (authentication, replay, wrong key, malformed).
    pub rejected: u64,
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

    /// Whether packets are protected (SRTP).
    pub fn is_protected(&self) -> bool {
        matches!(self, Protection::External(_))
    }

    /// See [`PacketProtection::counters`].
    pub fn counters(&self) -> ProtectionCounters {
        match self {
            Protection::Plain => ProtectionCounters::default(),
            Protection::External(p) => p.counters(),
        }
    }
}
