//! SRTP/SRTCP contexts: [`SrtpSender`] protects, [`SrtpReceiver`] unprotects, both in caller-owned buffers.
//!
//! What libsrtp2 does (RFC 3711): AES-CM and HMAC-SHA1 or AES-GCM (RFC 7714 §8–§9), key derivation with
//! KDR 0 (§4.3), the rollover counter and index estimation (§3.3.1; a sequence wrap at 65535 increments the
//! ROC on both sides), the replay window (§3.3.2; 128 packets unless [`ReceiverOptions::window_size`] or an
//! SDES `WSH` says otherwise) and the SRTCP index (§3.4).
//!
//! What this module adds:
//! - **MKI** (RFC 3711 §3.1): written and stripped here, not by libsrtp. The MKI is not authenticated
//!   (RFC 3711 §4.2), so the packet libsrtp sees is the packet without it: for AES-CM the MKI sits between
//!   the encrypted part (and the SRTCP index) and the tag; for AEAD it ends the packet, after the tag (and
//!   after the SRTCP index) (RFC 7714 §8.1, §9.1). Both layouts match libsrtp's, checked against GStreamer
//!   both ways. A receiver holds several keys and picks one by MKI (MS-SRTP offers `1:1`).
//! - **Key lifetime** (RFC 3711 §9.2, RFC 4568 §6.1 `|2^31`): SRTP and SRTCP packets are counted per master
//!   key; past the lifetime the sender refuses with [`Error::KeyExpired`] and the receiver drops with
//!   [`RejectReason::KeyExpired`]. [`SrtpSender::needs_rekey`] turns true at 15/16 of it.
//! - **Re-keying**: [`SrtpSender::rekey`] (new key and MKI, ROC kept or restarted) and
//!   [`SrtpReceiver::add_key`]. Without MKI a receiver tries its newest key first, then older ones (the
//!   packets in flight while a re-INVITE takes effect).
//! - **Counted rejections**: every dropped packet is counted by [`RejectReason`]; nothing panics on network
//!   input. libsrtp cannot tell a tampered tag from a wrong key; this module calls an authentication failure
//!   [`RejectReason::WrongKey`] when the SSRC never authenticated with this receiver (or the MKI is unknown)
//!   and [`RejectReason::AuthFailed`] once it has.
//!
//! Buffers: a packet of `len` bytes is protected in place in `buf[..]`, which needs [`crate::TRAILER_ROOM`]
//! bytes after `len` (libsrtp's documented requirement) plus the MKI length. libsrtp reads the header as
//! 32-bit words, so buffers should start 4-byte aligned (any `Vec`/`Box<[u8]>` does). Nothing on this path
//! allocates.

use srtp::vec_like::{BufferTooShortError, VecLike};
use srtp::{Session, StreamPolicy};

use crate::sdes::Mki;
use crate::suite::{MasterKey, Suite};
use crate::{Error, Result, TRAILER_ROOM};

/// Longest MKI the contexts handle (the SDES grammar allows 128 bytes; nobody uses more than 4).
pub const MAX_MKI_LEN: usize = 8;

/// Keys a receiver keeps at once (current and the ones still in flight).
pub const MAX_RECEIVER_KEYS: usize = 4;

/// SSRCs a receiver remembers as authenticated, for telling wrong keys from tampering.
const MAX_TRACKED_SSRCS: usize = 64;

/// Largest packet the AEAD fallback path copies aside before trying an older key.
const AEAD_SCRATCH: usize = 2048;

/// Why a received packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Too short, not version 2, header longer than the packet.
    Malformed,
    /// Its index was already received (replay window, RFC 3711 §3.3.2).
    Replayed,
    /// Older than the replay window.
    TooOld,
    /// The tag did not verify on a stream that had authenticated before: tampered or corrupted.
    AuthFailed,
    /// The tag never verified for this SSRC, or the MKI names no key: the peer uses another key.
    WrongKey,
    /// The master key passed its lifetime.
    KeyExpired,
    /// Anything else libsrtp refused.
    Other,
}

impl RejectReason {
    /// Every reason, in counter order.
    pub const ALL: [RejectReason; 7] = [
        RejectReason::Malformed,
        RejectReason::Replayed,
        RejectReason::TooOld,
        RejectReason::AuthFailed,
        RejectReason::WrongKey,
        RejectReason::KeyExpired,
        RejectReason::Other,
    ];

    /// Label for metrics (`malformed`, `replayed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::Replayed => "replayed",
            RejectReason::TooOld => "too_old",
            RejectReason::AuthFailed => "auth_failed",
            RejectReason::WrongKey => "wrong_key",
            RejectReason::KeyExpired => "key_expired",
            RejectReason::Other => "other",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Dropped packets by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectCounters([u64; 7]);

impl RejectCounters {
    /// Packets dropped for `reason`.
    pub fn get(&self, reason: RejectReason) -> u64 {
        self.0[reason as usize]
    }

    /// Packets dropped for any reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(reason, count)` for every reason.
    pub fn iter(&self) -> impl Iterator<Item = (RejectReason, u64)> + '_ {
        RejectReason::ALL.into_iter().map(|r| (r, self.get(r)))
    }

    fn add(&mut self, reason: RejectReason) {
        self.0[reason as usize] += 1;
    }
}

/// RTP or RTCP.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rtp,
    Rtcp,
}

/// The srtp crate's growable-buffer trait over a caller-owned slice: `buf[..len]` is the packet, the
/// rest is room for the trailer libsrtp appends.
struct InPlace<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl VecLike for InPlace<'_> {
    fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }

    unsafe fn reserve(&mut self, additional: usize) -> std::result::Result<(), BufferTooShortError> {
        // The trait's contract: succeed only when `len + additional` bytes exist. The srtp crate asks for
        // SRTP_MAX_TRAILER_LEN, which is what libsrtp documents it may write.
        let needed = self.len.saturating_add(additional);
        if needed <= self.buf.len() { Ok(()) } else { Err(BufferTooShortError { requested_capacity: needed }) }
    }

    unsafe fn set_len(&mut self, new_len: usize) {
        self.len = new_len.min(self.buf.len());
    }
}

/// Checks the fixed header of an RTP packet whose trailer (tag, MKI) is `trailer` bytes; returns the SSRC.
fn rtp_ssrc(p: &[u8], trailer: usize) -> Option<u32> {
    if p.len() < 12 + trailer || p[0] >> 6 != 2 {
        return None;
    }
    let mut header = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let ext = p.get(header + 2..header + 4)?;
        header += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    if header + trailer > p.len() {
        return None;
    }
    Some(u32::from_be_bytes([p[8], p[9], p[10], p[11]]))
}

/// Checks an RTCP packet (first header and sender SSRC) with `trailer` bytes after it; returns the SSRC.
fn rtcp_ssrc(p: &[u8], trailer: usize) -> Option<u32> {
    if p.len() < 8 + trailer || p[0] >> 6 != 2 {
        return None;
    }
    Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
}

fn new_session(suite: Suite, key: &MasterKey, inbound: bool, window_size: u64) -> Result<Session> {
    let (rtp, rtcp) = suite.policies();
    let policy = StreamPolicy { rtp, rtcp, key: key.as_bytes(), window_size, ..Default::default() };
    let session =
        if inbound { Session::with_inbound_template(policy)? } else { Session::with_outbound_template(policy)? };
    Ok(session)
}

fn check_mki(mki: Option<Mki>) -> Result<()> {
    match mki {
        Some(m) if usize::from(m.length) > MAX_MKI_LEN => Err(Error::InvalidKey("MKI longer than 8 bytes")),
        _ => Ok(()),
    }
}

fn mki_len(mki: Option<Mki>) -> usize {
    mki.map_or(0, |m| usize::from(m.length))
}

/// Outbound SRTP/SRTCP for the streams one endpoint sends with one master key.
pub struct SrtpSender {
    suite: Suite,
    session: Session,
    key: MasterKey,
    mki: Option<Mki>,
    lifetime: u64,
    rtp: u64,
    rtcp: u64,
    last_ssrc: Option<u32>,
}

impl SrtpSender {
    /// A sender for `key`, writing `mki` into every packet if given, refusing to protect more than
    /// `lifetime` packets (`None`: the suite's maximum, 2^48).
    pub fn new(key: &MasterKey, mki: Option<Mki>, lifetime: Option<u64>) -> Result<SrtpSender> {
        check_mki(mki)?;
        let suite = key.suite();
        Ok(SrtpSender {
            suite,
            session: new_session(suite, key, false, 0)?,
            key: key.clone(),
            mki,
            lifetime: lifetime.unwrap_or(u64::MAX).min(suite.max_lifetime()),
            rtp: 0,
            rtcp: 0,
            last_ssrc: None,
        })
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The current master key.
    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    /// The MKI written into packets, if any.
    pub fn mki(&self) -> Option<Mki> {
        self.mki
    }

    /// Bytes a protected RTP packet has beyond its plaintext (tag and MKI).
    pub fn rtp_overhead(&self) -> usize {
        self.suite.rtp_tag_len() + mki_len(self.mki)
    }

    /// Bytes a protected RTCP packet has beyond its plaintext (index, tag and MKI).
    pub fn rtcp_overhead(&self) -> usize {
        4 + self.suite.rtcp_tag_len() + mki_len(self.mki)
    }

    /// Packets protected with the current key: `(rtp, rtcp)`.
    pub fn protected(&self) -> (u64, u64) {
        (self.rtp, self.rtcp)
    }

    /// Whether the current key has used 15/16 of its lifetime (SRTP or SRTCP): time to re-key.
    pub fn needs_rekey(&self) -> bool {
        let soft = self.lifetime - self.lifetime / 16;
        self.rtp >= soft || self.rtcp >= soft
    }

    /// The rollover counter of `ssrc` (`None` before its first packet).
    pub fn roc(&mut self, ssrc: u32) -> Option<u32> {
        self.session.get_stream_roc(ssrc).ok()
    }

    /// SSRC of the last RTP packet protected.
    pub fn last_ssrc(&self) -> Option<u32> {
        self.last_ssrc
    }

    /// Encrypts and authenticates the RTP packet `buf[..len]` in place; returns the SRTP length.
    /// `buf` needs [`TRAILER_ROOM`] + MKI length spare bytes after `len`.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize> {
        let ssrc = rtp_ssrc(buf.get(..len).ok_or(Error::BadPacket("length beyond buffer"))?, 0)
            .ok_or(Error::BadPacket("not an RTP packet"))?;
        if self.rtp >= self.lifetime {
            return Err(Error::KeyExpired);
        }
        let n = self.protect(buf, len, Kind::Rtp)?;
        self.rtp += 1;
        self.last_ssrc = Some(ssrc);
        Ok(n)
    }

    /// Encrypts and authenticates the RTCP (compound) packet `buf[..len]` in place; returns the SRTCP
    /// length. `buf` needs [`TRAILER_ROOM`] + MKI length spare bytes after `len`.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize> {
        rtcp_ssrc(buf.get(..len).ok_or(Error::BadPacket("length beyond buffer"))?, 0)
            .ok_or(Error::BadPacket("not an RTCP packet"))?;
        if self.rtcp >= self.lifetime {
            return Err(Error::KeyExpired);
        }
        let n = self.protect(buf, len, Kind::Rtcp)?;
        self.rtcp += 1;
        Ok(n)
    }

    fn protect(&mut self, buf: &mut [u8], len: usize, kind: Kind) -> Result<usize> {
        let m = mki_len(self.mki);
        let needed = len + TRAILER_ROOM + m;
        if buf.len() < needed {
            return Err(Error::BufferTooSmall { needed, available: buf.len() });
        }
        let mut p = InPlace { buf: &mut *buf, len };
        let status = match kind {
            Kind::Rtp => self.session.protect(&mut p),
            Kind::Rtcp => self.session.protect_rtcp(&mut p),
        };
        status?;
        let n = p.len;
        let Some(mki) = self.mki else { return Ok(n) };
        // Insert the MKI: before the tag for AES-CM, after it for AEAD (RFC 3711 §3.1, RFC 7714 §8.1).
        let at = if self.suite.is_aead() {
            n
        } else {
            let tag = if kind == Kind::Rtp { self.suite.rtp_tag_len() } else { self.suite.rtcp_tag_len() };
            buf.copy_within(n - tag..n, n - tag + m);
            n - tag
        };
        mki.write(&mut buf[at..at + m]);
        Ok(n + m)
    }

    /// Switches to a new master key (and MKI). With `keep_roc` the rollover counters of the streams carry
    /// over (re-keying within one cryptographic context, RFC 3711 §8.1); without it the streams start afresh,
    /// as a receiver that creates a new context for a new SDES key expects.
    pub fn rekey(&mut self, key: &MasterKey, mki: Option<Mki>, lifetime: Option<u64>, keep_roc: bool) -> Result<()> {
        check_mki(mki)?;
        if key.suite() != self.suite {
            return Err(Error::InvalidKey("re-key with another suite"));
        }
        if keep_roc {
            let (rtp, rtcp) = self.suite.policies();
            self.session.update_outbound_template(StreamPolicy {
                rtp,
                rtcp,
                key: key.as_bytes(),
                ..Default::default()
            })?;
        } else {
            self.session = new_session(self.suite, key, false, 0)?;
        }
        self.key = key.clone();
        self.mki = mki;
        self.lifetime = lifetime.unwrap_or(u64::MAX).min(self.suite.max_lifetime());
        self.rtp = 0;
        self.rtcp = 0;
        Ok(())
    }
}

impl std::fmt::Debug for SrtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpSender")
            .field("suite", &self.suite)
            .field("mki", &self.mki)
            .field("protected", &(self.rtp, self.rtcp))
            .finish()
    }
}

/// Receiver settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverOptions {
    /// Replay window in packets (0: libsrtp's default of 128; at least 64, at most 32768).
    pub window_size: u64,
}

struct KeySlot {
    session: Session,
    key: MasterKey,
    mki: Option<Mki>,
    lifetime: u64,
    rtp: u64,
    rtcp: u64,
}

/// Inbound SRTP/SRTCP for what one remote endpoint sends: one or more master keys (by MKI, or newest
/// first), any number of SSRCs, rejection counters.
pub struct SrtpReceiver {
    suite: Suite,
    window_size: u64,
    mki_len: usize,
    slots: Vec<KeySlot>,
    seen: Vec<u32>,
    accepted: (u64, u64),
    rejected: RejectCounters,
}

impl SrtpReceiver {
    /// A receiver for `key` (with `mki` if the packets carry one) and its `lifetime` in packets.
    pub fn new(key: &MasterKey, mki: Option<Mki>, lifetime: Option<u64>, options: ReceiverOptions) -> Result<Self> {
        let window_size = match options.window_size {
            0 => 0,
            w => w.clamp(64, 0x8000),
        };
        let mut r = SrtpReceiver {
            suite: key.suite(),
            window_size,
            mki_len: mki_len(mki),
            slots: Vec::with_capacity(MAX_RECEIVER_KEYS),
            seen: Vec::new(),
            accepted: (0, 0),
            rejected: RejectCounters::default(),
        };
        r.add_key(key, mki, lifetime)?;
        Ok(r)
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Adds a key (newest first). With MKIs, a key with the same MKI is replaced; every key of a receiver
    /// has an MKI of the same length or none has. Beyond [`MAX_RECEIVER_KEYS`] the oldest is dropped.
    pub fn add_key(&mut self, key: &MasterKey, mki: Option<Mki>, lifetime: Option<u64>) -> Result<()> {
        check_mki(mki)?;
        if key.suite() != self.suite {
            return Err(Error::InvalidKey("key of another suite"));
        }
        if !self.slots.is_empty() && mki_len(mki) != self.mki_len {
            return Err(Error::InvalidKey("every key of a receiver needs an MKI of the same length"));
        }
        self.mki_len = mki_len(mki);
        if mki.is_some() {
            self.slots.retain(|s| s.mki != mki);
        }
        if self.slots.len() == MAX_RECEIVER_KEYS {
            self.slots.pop();
        }
        let slot = KeySlot {
            session: new_session(self.suite, key, true, self.window_size)?,
            key: key.clone(),
            mki,
            lifetime: lifetime.unwrap_or(u64::MAX).min(self.suite.max_lifetime()),
            rtp: 0,
            rtcp: 0,
        };
        self.slots.insert(0, slot);
        Ok(())
    }

    /// Forgets every key but the newest (once the old key's packets have drained).
    pub fn retire_old_keys(&mut self) {
        self.slots.truncate(1);
    }

    /// Forgets the key with this MKI; the last key cannot be removed.
    pub fn remove_key(&mut self, mki: Mki) -> bool {
        let before = self.slots.len();
        if before > 1 {
            self.slots.retain(|s| s.mki != Some(mki));
        }
        self.slots.len() != before
    }

    /// Number of keys held.
    pub fn keys(&self) -> usize {
        self.slots.len()
    }

    /// Tells the newest key's context the rollover counter of `ssrc`, for joining a stream that has
    /// wrapped its sequence number already (RFC 3711 §3.3.1 leaves the ROC to signaling).
    pub fn set_roc(&mut self, ssrc: u32, roc: u32) -> Result<()> {
        let slot = &mut self.slots[0];
        if slot.session.get_stream_roc(ssrc).is_err() {
            let (rtp, rtcp) = self.suite.policies();
            let policy = StreamPolicy {
                rtp,
                rtcp,
                key: slot.key.as_bytes(),
                window_size: self.window_size,
                ..Default::default()
            };
            slot.session.add_stream(ssrc, policy)?;
        }
        slot.session.set_stream_roc(ssrc, roc)?;
        Ok(())
    }

    /// Packets accepted: `(rtp, rtcp)`.
    pub fn accepted(&self) -> (u64, u64) {
        self.accepted
    }

    /// Packets dropped, by reason.
    pub fn rejected(&self) -> &RejectCounters {
        &self.rejected
    }

    /// Verifies and decrypts the SRTP packet `buf` in place; returns the RTP length (the RTP packet is
    /// `buf[..n]`). A rejected packet is counted and its buffer left in an unspecified state.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.unprotect(buf, Kind::Rtp)
    }

    /// Verifies and decrypts the SRTCP packet `buf` in place; returns the RTCP length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.unprotect(buf, Kind::Rtcp)
    }

    fn unprotect(&mut self, buf: &mut [u8], kind: Kind) -> Result<usize> {
        match self.try_unprotect(buf, kind) {
            Ok(n) => {
                match kind {
                    Kind::Rtp => self.accepted.0 += 1,
                    Kind::Rtcp => self.accepted.1 += 1,
                }
                Ok(n)
            }
            Err(reason) => {
                self.rejected.add(reason);
                Err(Error::Rejected(reason))
            }
        }
    }

    fn try_unprotect(&mut self, buf: &mut [u8], kind: Kind) -> std::result::Result<usize, RejectReason> {
        let suite = self.suite;
        let m = self.mki_len;
        let (tag, ssrc) = match kind {
            Kind::Rtp => (suite.rtp_tag_len(), rtp_ssrc(buf, suite.rtp_tag_len() + m)),
            Kind::Rtcp => (suite.rtcp_tag_len(), rtcp_ssrc(buf, 4 + suite.rtcp_tag_len() + m)),
        };
        let ssrc = ssrc.ok_or(RejectReason::Malformed)?;
        let mut len = buf.len();
        let known_ssrc = self.seen.contains(&ssrc);

        if m > 0 {
            // Find the key by MKI and cut the MKI out (see the module docs for where it sits).
            let at = if suite.is_aead() { len - m } else { len - tag - m };
            let Some(i) = self.slots.iter().position(|s| s.mki.is_some_and(|k| k.matches(&buf[at..at + m]))) else {
                return Err(RejectReason::WrongKey);
            };
            if !suite.is_aead() {
                buf.copy_within(len - tag..len, at);
            }
            len -= m;
            let n = Self::run(&mut self.slots[i], &mut buf[..len], kind, known_ssrc)?;
            self.remember(ssrc);
            return Ok(n);
        }

        // No MKI: the newest key first, then older ones.
        let tries = self.slots.len();
        let mut scratch = [0u8; AEAD_SCRATCH];
        let keep = suite.is_aead() && tries > 1 && len <= AEAD_SCRATCH;
        if keep {
            // An AEAD failure leaves the buffer decrypted with the wrong key: keep the original.
            scratch[..len].copy_from_slice(&buf[..len]);
        }
        let mut result = Err(RejectReason::WrongKey);
        for i in 0..tries {
            if i > 0 {
                if suite.is_aead() && !keep {
                    break;
                }
                if keep {
                    buf[..len].copy_from_slice(&scratch[..len]);
                }
            }
            result = Self::run(&mut self.slots[i], &mut buf[..len], kind, known_ssrc);
            match result {
                Err(RejectReason::AuthFailed | RejectReason::WrongKey) => continue,
                _ => break,
            }
        }
        if result.is_ok() {
            self.remember(ssrc);
        }
        result
    }

    /// One unprotect with one key.
    fn run(
        slot: &mut KeySlot,
        packet: &mut [u8],
        kind: Kind,
        known_ssrc: bool,
    ) -> std::result::Result<usize, RejectReason> {
        let count = match kind {
            Kind::Rtp => slot.rtp,
            Kind::Rtcp => slot.rtcp,
        };
        if count >= slot.lifetime {
            return Err(RejectReason::KeyExpired);
        }
        let len = packet.len();
        let mut p = InPlace { buf: packet, len };
        let status = match kind {
            Kind::Rtp => slot.session.unprotect(&mut p),
            Kind::Rtcp => slot.session.unprotect_rtcp(&mut p),
        };
        match status {
            Ok(()) => {
                match kind {
                    Kind::Rtp => slot.rtp += 1,
                    Kind::Rtcp => slot.rtcp += 1,
                }
                Ok(p.len)
            }
            Err(e) => Err(match e {
                srtp::Error::AUTH_FAIL if known_ssrc => RejectReason::AuthFailed,
                srtp::Error::AUTH_FAIL | srtp::Error::BAD_MKI => RejectReason::WrongKey,
                srtp::Error::REPLAY_FAIL => RejectReason::Replayed,
                srtp::Error::REPLAY_OLD => RejectReason::TooOld,
                srtp::Error::KEY_EXPIRED => RejectReason::KeyExpired,
                srtp::Error::PARSE_ERR | srtp::Error::BAD_PARAM => RejectReason::Malformed,
                _ => RejectReason::Other,
            }),
        }
    }

    fn remember(&mut self, ssrc: u32) {
        if self.seen.contains(&ssrc) {
            return;
        }
        if self.seen.len() == MAX_TRACKED_SSRCS {
            self.seen.remove(0);
        }
        self.seen.push(ssrc);
    }
}

impl std::fmt::Debug for SrtpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpReceiver")
            .field("suite", &self.suite)
            .field("keys", &self.slots.len())
            .field("accepted", &self.accepted)
            .field("rejected", &self.rejected)
            .finish()
    }
}

#[cfg(test)]
mod tests;
