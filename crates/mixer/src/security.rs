//! SRTP for MCU participants: SDES negotiation of one offered m-line (RFC 4568, MS-SDPEXT §3.1.5, with
//! `vienna-srtp`) and the per-participant contexts behind the media layer's [`PacketProtection`] seam.
//!
//! Each participant gets its own leg (RFC 3711, the standard path): the MCU's own random key for what it
//! sends (one [`SrtpSender`]), the participant's offered key for what it receives (one [`SrtpReceiver`]).
//! Offers are read as [`vienna_srtp::negotiate`] reads them: `RTP/SAVP` (and `a=encryption:required`)
//! requires SRTP; Microsoft's `RTP/AVP` with `a=crypto` lines makes it optional; the local
//! [`EncryptionPolicy`] (required, optional, rejected) decides the rest. `a=cryptoscale` (Scale SRTP,
//! MS-SSRTP) is never accepted here: the MCU answers the client's plain `a=crypto` line and encrypts the
//! shared mix once per listener, which is valid for every client (the research notes, §5.3).
//!
//! Nothing here allocates per packet: protect and unprotect work in place in the caller's buffer, which
//! [`SrtpProtection::overhead`] says must have [`TRAILER_ROOM`] + [`MAX_MKI_LEN`] spare bytes.

use vienna_media::Error as MediaError;
use vienna_media::protect::{PacketProtection, ProtectionCounters};
use vienna_media::sdp::{MediaDescription, SessionDescription};
use vienna_srtp::context::MAX_MKI_LEN;
use vienna_srtp::negotiate::{Offer, TransportProfile, crypto_attributes, random_key};
use vienna_srtp::{Answer, EncryptionPolicy, LocalPolicy, SrtpReceiver, SrtpSender, TRAILER_ROOM};

use crate::Error;

/// One participant's SRTP leg: our key out, theirs in.
pub struct SrtpProtection {
    sender: SrtpSender,
    receiver: SrtpReceiver,
}

impl SrtpProtection {
    /// The suite agreed.
    pub fn suite(&self) -> vienna_srtp::Suite {
        self.sender.suite()
    }
}

fn rejected(e: vienna_srtp::Error) -> MediaError {
    match e {
        vienna_srtp::Error::Rejected(_) => MediaError::Protection("SRTP packet rejected"),
        vienna_srtp::Error::BufferTooSmall { .. } => MediaError::BufferTooSmall,
        vienna_srtp::Error::KeyExpired => MediaError::Protection("SRTP master key lifetime reached"),
        _ => MediaError::Protection("SRTP failed"),
    }
}

impl PacketProtection for SrtpProtection {
    fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, MediaError> {
        self.sender.protect_rtp(buf, len).map_err(rejected)
    }

    fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, MediaError> {
        self.receiver.unprotect_rtp(buf).map_err(rejected)
    }

    fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, MediaError> {
        self.sender.protect_rtcp(buf, len).map_err(rejected)
    }

    fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, MediaError> {
        self.receiver.unprotect_rtcp(buf).map_err(rejected)
    }

    fn overhead(&self) -> usize {
        // libsrtp wants its whole trailer room after the plaintext, whatever it ends up adding.
        TRAILER_ROOM + MAX_MKI_LEN
    }

    fn counters(&self) -> ProtectionCounters {
        let (rtp_out, rtcp_out) = self.sender.protected();
        let (rtp_in, rtcp_in) = self.receiver.accepted();
        ProtectionCounters { rtp_out, rtcp_out, rtp_in, rtcp_in, rejected: self.receiver.rejected().total() }
    }
}

/// What negotiation decided for one participant.
pub enum Negotiated {
    /// Plain RTP (no crypto line in the answer).
    Plain,
    /// SRTP: the answer's `a=crypto:` value and the participant's contexts.
    Srtp {
        /// The answer's `a=crypto:` value.
        line: String,
        /// The contexts.
        protection: Box<SrtpProtection>,
    },
}

/// Negotiates SRTP for the offered m-line `m` of `offer` under `policy`. Errors mean "answer 488".
pub fn negotiate(offer: &SessionDescription, m: &MediaDescription, policy: &LocalPolicy) -> Result<Negotiated, Error> {
    let Some(profile) = TransportProfile::parse(&m.proto) else {
        return Err(Error::Media(MediaError::Sdp("unsupported transport (RTP/AVP, RTP/AVPF, RTP/SAVP, RTP/SAVPF)")));
    };
    let crypto = crypto_attributes(m.crypto.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let encryption = m.encryption.as_deref().or(offer.encryption.as_deref()).and_then(EncryptionPolicy::parse);
    let mut policy = policy.clone();
    policy.scale = false;
    let offer = Offer { profile, crypto: &crypto, encryption };
    match vienna_srtp::answer(&offer, &policy, random_key) {
        Ok(Answer::Plain) => Ok(Negotiated::Plain),
        Ok(Answer::Srtp(agreed)) => {
            let protection = SrtpProtection {
                sender: agreed.sender().map_err(|e| Error::Srtp(e.to_string()))?,
                receiver: agreed.receiver().map_err(|e| Error::Srtp(e.to_string()))?,
            };
            Ok(Negotiated::Srtp { line: agreed.attribute.value(), protection: Box::new(protection) })
        }
        Err(e) => Err(Error::Srtp(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(proto: &str, lines: &str) -> SessionDescription {
        SessionDescription::parse(&format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 {proto} 0\r\n{lines}"
        ))
        .unwrap()
    }

    const KEY: &str = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";

    fn run(proto: &str, lines: &str, encryption: EncryptionPolicy) -> Result<Negotiated, Error> {
        let o = offer(proto, lines);
        negotiate(&o, &o.media[0], &LocalPolicy { encryption, ..LocalPolicy::default() })
    }

    #[test]
    fn policies_against_offers() {
        use EncryptionPolicy::*;
        let srtp = |r: Result<Negotiated, Error>| matches!(r, Ok(Negotiated::Srtp { .. }));
        let plain = |r: Result<Negotiated, Error>| matches!(r, Ok(Negotiated::Plain));
        // RTP/SAVP: SRTP or nothing
        assert!(srtp(run("RTP/SAVP", KEY, Optional)));
        assert!(srtp(run("RTP/SAVP", KEY, Required)));
        assert!(run("RTP/SAVP", KEY, Rejected).is_err());
        assert!(run("RTP/SAVP", "", Optional).is_err());
        // Microsoft's optional form
        assert!(srtp(run("RTP/AVP", KEY, Optional)));
        assert!(plain(run("RTP/AVP", KEY, Rejected)));
        // plain offers
        assert!(plain(run("RTP/AVP", "", Optional)));
        assert!(run("RTP/AVP", "", Required).is_err());
        // MS-SDP a=encryption:rejected turns the optional form plain
        assert!(plain(run("RTP/AVP", &format!("{KEY}a=encryption:rejected\r\n"), Optional)));
        // an unknown suite only
        assert!(run("RTP/SAVP", "a=crypto:1 F8_128_HMAC_SHA1_80 inline:AAAA\r\n", Optional).is_err());
    }

    #[test]
    fn legs_protect_and_unprotect_with_the_agreed_keys() {
        let Ok(Negotiated::Srtp { line, mut protection }) = run("RTP/SAVP", KEY, EncryptionPolicy::Optional) else {
            panic!("no SRTP")
        };
        assert!(line.starts_with("1 AES_CM_128_HMAC_SHA1_80 inline:"), "{line}");
        let mut buf = vec![0u8; 12 + 160 + protection.overhead()];
        buf[..12].copy_from_slice(&[0x80, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4]);
        let n = protection.protect_rtp(&mut buf, 172).unwrap();
        assert_eq!(n, 182);
        // Our own packet does not authenticate with the participant's key.
        assert!(protection.unprotect_rtp(&mut buf[..n]).is_err());
        let c = protection.counters();
        assert_eq!((c.rtp_out, c.rejected), (1, 1));
    }
}
