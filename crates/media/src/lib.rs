//! Vienna's media sessions for the audio MCU, all sans-IO: no sockets, no clocks, no tasks; time is an
//! argument everywhere.
//!
//! * [`rtp`]: RTP packet view and header writer, extended sequence numbers (RFC 3550 §5.1, A.1);
//!   RTP/RTCP demultiplexing on one port (RFC 5761 §4).
//! * [`report`]: receiver statistics and RTCP SR/RR/SDES/BYE through the `rtcp` crate (RFC 3550 §6,
//!   A.3, A.8).
//! * [`session`]: one participant's RTP session: SSRC handling, sending, RTCP timing.
//! * [`ice`]: ICE-lite responder (RFC 8445 §7.3, short-term credentials RFC 8489 §9.1).
//! * [`sdp`]: SDP parsing and the audio answer (RFC 8866, RFC 3264, RFC 7587, RFC 4733, RFC 5761).
//! * [`codec`]: Opus (with PLC and in-band FEC), G.711 and G.722 (with PLC) behind [`codec::Decoder`]
//!   and [`codec::Encoder`]; [`g722`]: the G.722 sub-band ADPCM codec itself (ITU-T G.722, 64 kbit/s).
//! * [`dtmf`]: telephone events (RFC 4733).
//! * [`jitter`]: the adaptive jitter buffer with concealment that does not creep.
//! * [`protect`]: the seam for SRTP.
//!
//! Left out (see each module): SRTP itself (in `vienna-srtp`, plugged in by `vienna-mixer`), RFC 8285 header extensions (so RFC 6464 levels),
//! MS-RTP RTCP profile extensions and MS-ICE2's padded MESSAGE-INTEGRITY, IPv6 and TCP candidates.

pub mod codec;
pub mod dtmf;
pub mod g722;
pub mod ice;
pub mod jitter;
pub mod protect;
pub mod report;
pub mod rtp;
pub mod sdp;
pub mod session;

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input ends before the structure it announces.
    #[error("input truncated")]
    Truncated,
    /// Not RTP version 2.
    #[error("not RTP version 2")]
    BadVersion,
    /// RTP padding longer than the payload.
    #[error("bad RTP padding")]
    BadPadding,
    /// An RTCP packet the `rtcp` crate could not read, or could not write.
    #[error("malformed RTCP")]
    BadRtcp,
    /// The output buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// A codec refused the frame.
    #[error("codec: {0}")]
    Codec(&'static str),
    /// A mixing rate the codecs do not support.
    #[error("unsupported mixing rate {0} Hz (8000, 16000 or 48000)")]
    UnsupportedRate(u32),
    /// An SDP offer we cannot read or cannot answer.
    #[error("SDP: {0}")]
    Sdp(&'static str),
    /// Packet protection (SRTP) refused a packet or failed.
    #[error("protection: {0}")]
    Protection(&'static str),
}
