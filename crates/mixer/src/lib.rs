//! Vienna's audio mixing engine and the sans-IO conference core of the MCU.
//!
//! * [`mixer`]: the mixing engine on a 20 ms tick: levels and voice activity, the loudest few talkers
//!   with hysteresis, N−1 mixes only for talkers, one shared mix for everyone else, each distinct mix
//!   encoded once per codec setting, dominant speaker as first CSRC (MS-RTP), mute, roster events.
//! * [`limiter`]: the soft limiter every mix goes through.
//! * [`security`]: SDES-keyed SRTP per participant (`vienna-srtp`) behind the media layer's protection seam.
//! * [`conference`]: conferences of participants, each an RTP session ([`vienna_media`]) with a jitter
//!   buffer and a decoder, driven by datagrams and time: the core of one MCU worker.
//!
//! Design notes are in ARCHITECTURE.md ("Media plane performance design"); what is left out is listed
//! in each module.

pub mod conference;
pub mod limiter;
pub mod mixer;
pub mod security;

pub use mixer::{Mixer, MixerConfig, MixerEvent, MixerStats, Output, ParticipantId};

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// From the media layer (codecs, SDP).
    #[error(transparent)]
    Media(#[from] vienna_media::Error),
    /// No such conference.
    #[error("no such conference")]
    NoConference,
    /// No such participant.
    #[error("no such participant")]
    NoParticipant,
    /// A conference of that name exists already.
    #[error("conference exists")]
    ConferenceExists,
    /// The conference is full.
    #[error("conference full ({0} participants)")]
    Full(usize),
    /// SRTP negotiation failed (encryption required and not offered, refused, or no usable key).
    #[error("SRTP: {0}")]
    Srtp(String),
}
