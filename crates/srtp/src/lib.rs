//! Media security for Vienna: SRTP and SRTCP (RFC 3711, AES-GCM from RFC 7714, the MS-SRTP subset), SDES
//! key negotiation (RFC 4568 `a=crypto`, MS-SDPEXT's Microsoft forms and `a=cryptoscale`), and Scale SRTP
//! fan-out (MS-SSRTP): one stream encrypted once for every listener that shares its key.
//!
//! | module | implements |
//! |---|---|
//! | [`suite`] | the three crypto suites (RFC 4568 §6.2, RFC 7714 §14.1) and master keys |
//! | [`sdes`] | `a=crypto` / `a=cryptoscale` parse and format (RFC 4568 §4, §6, §9; MS-SDPEXT §3.1.5.1–2) |
//! | [`negotiate`] | the answerer's choice (RFC 4568 §7.1, MS-SDPEXT §3.1.5.8 optional encryption) |
//! | [`context`] | protect/unprotect with replay window, rollover counter, MKI, key lifetime, re-keying and rejection counters (RFC 3711 §3–§4, §9.2; libsrtp2 does the cryptography) |
//! | [`fanout`] | Scale SRTP groups and per-receiver fan-out for the mixer (MS-SSRTP purpose; details UNCONFIRMED) |
//! | [`reference`] | an independent RFC 3711 transform (key derivation, AES-CM, HMAC-SHA1) checked against Appendix B, used to cross-check libsrtp |
//!
//! The packet path works in caller-owned buffers and allocates nothing: a packet of `len` bytes is
//! encrypted in place in a buffer with at least [`TRAILER_ROOM`] more bytes after it (libsrtp's documented
//! requirement for `srtp_protect`), and [`fanout::FanOut`] hands back one buffer for all Scale SRTP
//! receivers. The cryptography is libsrtp2's (Debian's 2.5.0 with its OpenSSL back end, which is what makes
//! AES-GCM available), reached through the `srtp` crate.
//!
//! ```
//! use vienna_srtp::negotiate::{Offer, TransportProfile, answer, crypto_attributes, random_key};
//! use vienna_srtp::{Answer, LocalPolicy, TRAILER_ROOM};
//!
//! // The offer's crypto lines (a Skype for Business client offers the same key three ways).
//! let key = "inline:IQ+Q4YcN8irlbEovMTkF8LL/uMV0JIGFWrAxrrpY|2^31";
//! let lines = [format!("1 client AES_CM_128_HMAC_SHA1_80 {key}|1:1"), format!("2 AES_CM_128_HMAC_SHA1_80 {key}|1:1")];
//! let crypto = crypto_attributes([("cryptoscale", lines[0].as_str()), ("crypto", lines[1].as_str())]);
//! let offer = Offer { profile: TransportProfile::Savp, crypto: &crypto, encryption: None };
//! let Answer::Srtp(agreed) = answer(&offer, &LocalPolicy::default(), random_key)? else { unreachable!() };
//! assert_eq!(agreed.attribute.tag, 2); // goes into the answer as `a=crypto:2 ...|2^31|1:1`
//!
//! // Send: protect in place in a buffer with room for the trailer.
//! let mut sender = agreed.sender()?;
//! let mut buf = [0u8; 1500];
//! buf[..12].copy_from_slice(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 42]);
//! let n = sender.protect_rtp(&mut buf, 12 + 160)?;
//! assert_eq!(n, 12 + 160 + 1 + 10); // MKI and 80-bit tag
//! # assert!(buf.len() >= 172 + TRAILER_ROOM);
//! // Receive: what the client sends is unprotected with its key; rejections are counted.
//! let mut receiver = agreed.receiver()?;
//! assert!(receiver.unprotect_rtp(&mut buf[..n]).is_err()); // not the client's key
//! assert_eq!(receiver.rejected().total(), 1);
//! # Ok::<(), vienna_srtp::Error>(())
//! ```
//!
//! Left out: key derivation rates other than 0 (`KDR=`), `UNENCRYPTED_*`/`UNAUTHENTICATED_SRTP`, FEC
//! session parameters, key methods other than `inline`, MKIs longer than 8 bytes, AES-192/256, DTLS-SRTP.

pub mod context;
pub mod fanout;
pub mod negotiate;
pub mod reference;
pub mod sdes;
pub mod suite;

pub use context::{ReceiverOptions, RejectCounters, RejectReason, SrtpReceiver, SrtpSender};
pub use fanout::{FanOut, Fanned, ReceiverId, ScaleGroup};
pub use negotiate::{Agreement, Answer, EncryptionPolicy, LocalPolicy, Offer, TransportProfile, answer};
pub use sdes::{CryptoAttribute, KeyParam, Lifetime, Mki, ScaleDirection, SessionParam};
pub use suite::{MasterKey, Suite};

/// Room a caller must leave after a packet for [`SrtpSender::protect_rtp`] and friends: libsrtp may write
/// up to `SRTP_MAX_TRAILER_LEN` (authentication tag, SRTCP index, MKI) after the plaintext.
pub const TRAILER_ROOM: usize = srtp::sys::SRTP_MAX_TRAILER_LEN as usize;

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A received packet was dropped (and counted) for this reason.
    #[error("packet rejected: {0}")]
    Rejected(RejectReason),
    /// The caller's buffer cannot hold the protected packet.
    #[error("buffer too small: {needed} bytes needed, {available} available")]
    BufferTooSmall {
        /// Bytes the operation needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// A packet handed to `protect` is not RTP/RTCP this crate can protect.
    #[error("not a protectable packet: {0}")]
    BadPacket(&'static str),
    /// Key material does not fit the suite.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// The master key reached its lifetime (RFC 3711 §9.2, RFC 4568 §6.1): re-key before sending more.
    #[error("master key lifetime reached")]
    KeyExpired,
    /// An `a=crypto` or `a=cryptoscale` line does not follow the grammar.
    #[error("invalid crypto attribute: {0}")]
    Sdes(String),
    /// The offer asks for encryption and local policy refuses it (answer 488).
    #[error("encryption refused by local policy")]
    EncryptionRefused,
    /// Local policy requires encryption and the offer has none (answer 488).
    #[error("encryption required by local policy and not offered")]
    EncryptionRequired,
    /// Encryption was required but no offered crypto line is acceptable (answer 488).
    #[error("no acceptable crypto attribute in the offer")]
    NoAcceptableCrypto,
    /// A receiver id was not found in a fan-out.
    #[error("unknown receiver {0}")]
    UnknownReceiver(u64),
    /// The operating system's random source failed.
    #[error("random source failed")]
    Random,
    /// libsrtp refused an operation that is not about a received packet.
    #[error("libsrtp: {0}")]
    Srtp(String),
}

impl From<srtp::Error> for Error {
    fn from(e: srtp::Error) -> Self {
        Error::Srtp(e.to_string())
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Version string of the linked libsrtp (e.g. `libsrtp2 2.5.0`).
pub fn libsrtp_version() -> &'static str {
    srtp::get_version_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn links_libsrtp2() {
        let v = super::libsrtp_version();
        assert!(v.starts_with("libsrtp2 2."), "{v}");
        assert_eq!(super::TRAILER_ROOM, 144);
    }
}
