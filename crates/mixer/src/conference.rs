//! The sans-IO core of one MCU worker: the conferences it owns, their participants' RTP sessions,
//! ICE-lite responders, jitter buffers and decoders, and their mixers. Input: datagrams and time;
//! output: datagrams, events and the next deadline. No sockets, no clocks, no tasks.
//!
//! One worker has one UDP socket; all its participants share it and are told apart by source address:
//! * with ICE, a valid Binding request (checked against the ufrag/password of the participant its
//!   USERNAME names) registers its source address for that participant;
//! * without ICE, the address the offer gave (`c=`/`m=`, and its RTCP address) is registered at join,
//!   and a participant that sends from elsewhere is *latched* to the source of its first RTP packet —
//!   matched by the SSRC its offer announced (`a=ssrc`), else by being the only participant still waiting
//!   whose offer named that IP (symmetric RTP latching as SBCs do it; only before the first packet, only
//!   from the offer's IP).
//!
//! Each conference ticks every 20 ms while it has participants (an empty conference costs nothing): it
//! pulls one frame per participant from its jitter buffer (decoding, or concealing a loss, with FEC when
//! the next packet is there), mixes ([`Mixer`]), then [`Host::poll_transmit`] writes one RTP packet per
//! listening participant around the encoded frame it shares with the others of its mix. A conference
//! that falls more than [`MAX_BEHIND`] behind skips ticks rather than bursting (counted as late), keeping
//! its phase.
//!
//! Decoding is what costs (an Opus decode per participant per tick, where mixing and the shared
//! encodings are small): a participant that neither speaks nor is mixed is heard by nobody, so it is
//! decoded only every [`HostConfig::quiet_decode_interval`] frames, to watch its level; the packets in
//! between leave the jitter buffer undecoded. Once its level rises it is decoded every frame. Muted
//! participants and Opus DTX frames are not decoded at all.
//!
//! A focus drives it with [`Host::create_conference`], [`Host::add_participant`] (SDP offer in, answer
//! out), [`Host::remove_participant`], [`Host::set_muted`], and reads [`HostEvent`]s (joined, left,
//! muted, speaking, dominant speaker, DTMF, media timeout) for the roster.
//!
//! SRTP: an offer with SDES keys (`RTP/SAVP`, or `RTP/AVP` with `a=crypto`) is negotiated under
//! [`HostConfig::srtp`] by [`crate::security`]; the participant's packets then pass through its own
//! SRTP contexts ([`Protection`]) on the way in and out. Packets that do not authenticate are dropped and
//! counted ([`HostStats::unprotect_failed`]).
//!
//! Left out: Scale SRTP (one encryption of the shared mix for every listener: each listener has its own
//! SSRC and sequence numbers here, so each packet is encrypted for its listener), RTCP feedback, video,
//! per-participant gain, recording.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vienna_media::codec::{self, CodecKind, CodecSetting, Decoder};
use vienna_media::dtmf::DtmfEvent;
use vienna_media::ice::{IceCredentials, IceLite, IceVerdict};
use vienna_media::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
use vienna_media::protect::Protection;
use vienna_media::protect::ProtectionCounters;
use vienna_media::report::NtpClock;
use vienna_media::rtp::{RtpPacket, is_rtcp};
use vienna_media::sdp::{self, AnswerConfig, Direction, SessionDescription};
use vienna_media::session::{Received, RtpSession, SessionConfig, SessionCounters};
use vienna_srtp::LocalPolicy;
use vienna_stun::{Kind, Message, classify};

use crate::Error;
use crate::mixer::{Mixer, MixerConfig, MixerEvent, ParticipantId};
use crate::security::{self, Negotiated};

/// The tick.
pub const TICK: Duration = Duration::from_millis(20);
/// How far a conference may fall behind before it skips ticks.
pub const MAX_BEHIND: Duration = Duration::from_millis(60);
/// Source addresses one participant may register (ICE checks from several candidates).
pub const MAX_ADDRESSES: usize = 8;

/// Settings of one worker's core.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Mixer settings of every conference.
    pub mixer: MixerConfig,
    /// The worker's media socket address, put in SDP answers.
    pub local: SocketAddr,
    /// Opus bit rate of the mixes.
    pub opus_bitrate: u32,
    /// Largest jitter buffer delay, in 20 ms frames.
    pub max_jitter_frames: u32,
    /// A participant heard from (RTP or ICE) for no longer than this is removed.
    pub media_timeout: Duration,
    /// Most participants per conference.
    pub max_participants: usize,
    /// A participant that neither speaks nor is mixed is decoded only every this many frames (1: every
    /// frame). Its audio is heard by nobody; only its level matters, to notice it starting to speak.
    pub quiet_decode_interval: u32,
    /// Our RTCP CNAME.
    pub cname: String,
    /// Wall-clock time (since the Unix epoch) at `started`, for RTCP NTP timestamps.
    pub unix_at_start: Duration,
    /// The instant `unix_at_start` refers to.
    pub started: Instant,
    /// SRTP: required, optional or no encryption, and the suites accepted.
    pub srtp: LocalPolicy,
}

/// How a participant joins.
#[derive(Clone, Debug)]
pub struct JoinOptions {
    /// A name for logs and the roster.
    pub label: String,
    /// Its media source id in CSRCs (MS-RTP MSI); random if `None`.
    pub msi: Option<u32>,
    /// 32 random bytes from the caller (ICE credentials, SSRC, sequence numbers).
    pub random: [u8; 32],
}

/// A participant, as the host names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemberKey {
    /// Conference index.
    pub conference: u32,
    /// Participant within it.
    pub participant: ParticipantId,
}

/// What joining gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The participant.
    pub key: MemberKey,
    /// The SDP answer.
    pub answer: String,
    /// Its MSI.
    pub msi: u32,
    /// The codec agreed.
    pub codec: CodecKind,
    /// Whether media is SRTP.
    pub srtp: bool,
    /// The SSRC the offer announced (`a=ssrc`), if any.
    pub remote_ssrc: Option<u32>,
}

/// Something for the focus, logs or metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostEvent {
    /// A roster event from a conference's mixer.
    Roster {
        /// Conference index.
        conference: u32,
        /// The event.
        event: MixerEvent,
    },
    /// A DTMF event from a participant.
    Dtmf {
        /// Who.
        key: MemberKey,
        /// The event.
        event: DtmfEvent,
    },
    /// A participant was removed because nothing came from it for `media_timeout`.
    MediaTimeout(MemberKey),
    /// A participant's stream has this SSRC (its first packet, or a new source): its `src-id` in a roster.
    Source {
        /// Who.
        key: MemberKey,
        /// The SSRC.
        ssrc: u32,
    },
}

/// One datagram to send: `len` bytes of the caller's buffer to `destination`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where.
    pub destination: SocketAddr,
    /// How many bytes of the buffer.
    pub len: usize,
}

/// Counters of one worker's core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Datagrams handed in.
    pub datagrams_in: u64,
    /// From an address no participant owns.
    pub unknown_source: u64,
    /// Neither STUN nor RTP/RTCP, or malformed.
    pub malformed: u64,
    /// STUN requests answered.
    pub stun_answered: u64,
    /// STUN requests refused (400, 401, 487).
    pub stun_refused: u64,
    /// Participants latched to a source address.
    pub latched: u64,
    /// Conference ticks run.
    pub ticks: u64,
    /// Ticks run more than a tick late, or skipped.
    pub late_ticks: u64,
    /// RTP packets sent.
    pub rtp_out: u64,
    /// RTCP packets sent.
    pub rtcp_out: u64,
    /// Packets dropped at send (no destination, protection failure).
    pub send_dropped: u64,
    /// Received SRTP/SRTCP packets that did not authenticate (wrong key, replay, tampering).
    pub unprotect_failed: u64,
}

/// What the admin API shows of a participant.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberInfo {
    /// Its key.
    pub key: MemberKey,
    /// Label.
    pub label: String,
    /// MSI.
    pub msi: u32,
    /// Codec.
    pub codec: CodecKind,
    /// Where media goes.
    pub destination: Option<SocketAddr>,
    /// Muted.
    pub muted: bool,
    /// Speaking.
    pub speaking: bool,
    /// Session counters.
    pub session: SessionCounters,
    /// Jitter buffer counters.
    pub jitter: JitterStats,
    /// Jitter buffer target delay, frames.
    pub jitter_target: u32,
    /// Whether media is SRTP.
    pub srtp: bool,
    /// SRTP counters (zero for plain RTP).
    pub protection: ProtectionCounters,
    /// The participant's SSRC, once known.
    pub remote_ssrc: Option<u32>,
}

struct Member {
    label: String,
    msi: u32,
    session: RtpSession,
    jb: JitterBuffer,
    decoder: Box<dyn Decoder>,
    ice: Option<IceLite>,
    media_to: Option<SocketAddr>,
    rtcp_to: Option<SocketAddr>,
    announced_ssrc: Option<u32>,
    latched: bool,
    /// A [`HostEvent::Source`] went out for the current SSRC.
    source_told: bool,
    protection: Protection,
    direction: Direction,
    last_heard: Instant,
    addresses: Vec<SocketAddr>,
}

impl Member {
    fn destination(&self) -> Option<SocketAddr> {
        self.ice.as_ref().and_then(IceLite::remote).or(self.media_to)
    }
}

struct Conference {
    name: String,
    mixer: Mixer,
    members: Vec<Option<Member>>,
    next_tick: Option<Instant>,
    tick: u64,
    send_pending: bool,
    send_cursor: usize,
}

/// The core of one MCU worker.
pub struct Host {
    config: HostConfig,
    clock: NtpClock,
    conferences: Vec<Option<Conference>>,
    names: HashMap<String, u32>,
    by_addr: HashMap<SocketAddr, MemberKey>,
    by_ufrag: HashMap<String, MemberKey>,
    waiting: Vec<MemberKey>,
    control: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<HostEvent>,
    sending: Vec<u32>,
    stats: HostStats,
    deadline: Option<Instant>,
}

/// Whether the SSRC after a packet is news: the first packet of the stream (also when the offer announced
/// it), or another source than before.
fn member_first_or_new(before: Option<u32>, after: u32, told: bool) -> bool {
    !told || before != Some(after)
}

fn seed_of(random: &[u8; 32], at: usize) -> u64 {
    u64::from_le_bytes(random[at..at + 8].try_into().unwrap_or([1; 8]))
}

impl Host {
    /// A core with no conferences.
    pub fn new(config: HostConfig) -> Result<Host, Error> {
        Mixer::new(config.mixer)?; // validates the settings once
        let clock = NtpClock::new(config.started, config.unix_at_start);
        Ok(Host {
            config,
            clock,
            conferences: Vec::new(),
            names: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            waiting: Vec::new(),
            control: VecDeque::with_capacity(256),
            events: VecDeque::with_capacity(256),
            sending: Vec::new(),
            stats: HostStats::default(),
            deadline: None,
        })
    }

    /// Counters.
    pub fn stats(&self) -> HostStats {
        self.stats
    }

    /// Settings.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Creates an empty conference; returns its index.
    pub fn create_conference(&mut self, name: &str) -> Result<u32, Error> {
        if self.names.contains_key(name) {
            return Err(Error::ConferenceExists);
        }
        let conference = Conference {
            name: name.to_owned(),
            mixer: Mixer::new(self.config.mixer)?,
            members: Vec::new(),
            next_tick: None,
            tick: 0,
            send_pending: false,
            send_cursor: 0,
        };
        let index = match self.conferences.iter().position(Option::is_none) {
            Some(i) => {
                self.conferences[i] = Some(conference);
                i as u32
            }
            None => {
                self.conferences.push(Some(conference));
                (self.conferences.len() - 1) as u32
            }
        };
        self.names.insert(name.to_owned(), index);
        Ok(index)
    }

    /// The index of the conference called `name`.
    pub fn conference(&self, name: &str) -> Option<u32> {
        self.names.get(name).copied()
    }

    /// The name of conference `index`.
    pub fn conference_name(&self, index: u32) -> Option<&str> {
        self.conf(index).map(|c| c.name.as_str())
    }

    /// Names of all conferences and their participant counts.
    pub fn conferences(&self) -> impl Iterator<Item = (&str, usize)> + '_ {
        self.conferences.iter().flatten().map(|c| (c.name.as_str(), c.mixer.len()))
    }

    /// Removes a conference and everyone in it (each gets an RTCP BYE).
    pub fn remove_conference(&mut self, now: Instant, index: u32) -> Result<(), Error> {
        let ids: Vec<ParticipantId> = self
            .conf(index)
            .ok_or(Error::NoConference)?
            .members
            .iter()
            .enumerate()
            .filter_map(|(slot, m)| m.as_ref().map(|_| slot))
            .filter_map(|slot| self.conf(index).and_then(|c| c.mixer_id(slot)))
            .collect();
        for id in ids {
            let _ = self.remove_participant(now, MemberKey { conference: index, participant: id });
        }
        if let Some(c) = self.conferences[index as usize].take() {
            self.names.remove(&c.name);
        }
        self.sending.retain(|&c| c != index);
        Ok(())
    }

    fn conf(&self, index: u32) -> Option<&Conference> {
        self.conferences.get(index as usize)?.as_ref()
    }

    fn conf_mut(&mut self, index: u32) -> Option<&mut Conference> {
        self.conferences.get_mut(index as usize)?.as_mut()
    }

    /// Adds a participant to conference `index` from its SDP offer; returns the answer.
    pub fn add_participant(
        &mut self,
        now: Instant,
        index: u32,
        offer: &str,
        options: JoinOptions,
    ) -> Result<Joined, Error> {
        let max = self.config.max_participants;
        let conf = self.conf(index).ok_or(Error::NoConference)?;
        if conf.mixer.len() >= max {
            return Err(Error::Full(max));
        }
        let offer = SessionDescription::parse(offer)?;
        let mline = sdp::audio_mline(&offer)?;
        let (crypto, protection) = match security::negotiate(&offer, &offer.media[mline], &self.config.srtp)? {
            Negotiated::Plain => (None, Protection::Plain),
            Negotiated::Srtp { line, protection } => (Some(line), Protection::External(protection)),
        };
        // random: [0..18) ICE password, [18..22) SSRC, [22..26) MSI, [26..32) ICE ufrag. Only the password
        // is secret; the session id and sequence/timestamp seeds come from the public bytes.
        let r = &options.random;
        let mut pwd = [0u8; 18];
        pwd.copy_from_slice(&r[..18]);
        let mut ufrag = [0u8; 6];
        ufrag.copy_from_slice(&r[26..32]);
        let mut ice = IceCredentials::from_random(ufrag, pwd);
        while self.by_ufrag.contains_key(&ice.ufrag) {
            // astronomically unlikely; make it unique rather than shadow someone
            ice.ufrag.push('x');
        }
        let local_ssrc = u32::from_le_bytes(options.random[18..22].try_into().unwrap_or([1; 4]));
        let answer_config = AnswerConfig {
            address: self.config.local.ip(),
            port: self.config.local.port(),
            ice: ice.clone(),
            session_id: seed_of(&options.random, 18) >> 2,
            opus_bitrate: self.config.opus_bitrate,
            crypto,
            ssrc: Some((local_ssrc, self.config.cname.clone())),
        };
        let (answer, n) = sdp::answer(&offer, &answer_config)?;
        let rate = self.config.mixer.rate;
        let decoder = codec::decoder(n.codec, rate)?;
        let setting = CodecSetting::of(n.codec, self.config.opus_bitrate);
        let msi = options.msi.unwrap_or(u32::from_le_bytes(options.random[22..26].try_into().unwrap_or([2; 4])));
        let session = RtpSession::new(SessionConfig {
            local_ssrc,
            cname: self.config.cname.clone(),
            codec: n.codec,
            payload_type: n.payload_type,
            telephone_event: n.telephone_event,
            remote_ssrc: n.remote_ssrc,
            clock: self.clock,
            seed: seed_of(&options.random, 24),
        });
        let mut jitter = JitterConfig::new(n.codec.clock_rate());
        jitter.max_delay = self.config.max_jitter_frames.max(2);
        let local_ufrag = ice.ufrag.clone();
        let ice = n.remote_ice.as_ref().map(|(ufrag, _)| IceLite::new(ice, Some(ufrag.clone())));
        let conf = self.conf_mut(index).ok_or(Error::NoConference)?;
        let id = conf.mixer.add(msi, setting, n.direction.sends())?;
        let member = Member {
            label: options.label,
            msi,
            session,
            jb: JitterBuffer::new(jitter),
            decoder,
            ice,
            media_to: n.remote,
            rtcp_to: n.remote_rtcp,
            announced_ssrc: n.remote_ssrc,
            latched: false,
            source_told: false,
            protection,
            direction: n.direction,
            last_heard: now,
            addresses: Vec::with_capacity(MAX_ADDRESSES),
        };
        let slot = id.slot as usize;
        if conf.members.len() <= slot {
            conf.members.resize_with(slot + 1, || None);
        }
        let ice_on = member.ice.is_some();
        let addrs: Vec<SocketAddr> = [member.media_to, member.rtcp_to].into_iter().flatten().collect();
        conf.members[slot] = Some(member);
        if conf.next_tick.is_none() {
            conf.next_tick = Some(now + TICK);
        }
        let key = MemberKey { conference: index, participant: id };
        if ice_on {
            self.by_ufrag.insert(local_ufrag, key);
        } else {
            for a in addrs {
                self.register(key, a);
            }
            self.waiting.push(key);
        }
        self.refresh_deadline();
        self.drain_mixer_events(index);
        let srtp = self.member(key).is_some_and(|m| m.protection.is_protected());
        Ok(Joined { key, answer, msi, codec: n.codec, srtp, remote_ssrc: n.remote_ssrc })
    }

    fn register(&mut self, key: MemberKey, addr: SocketAddr) {
        let Some(member) = self.member_mut(key) else { return };
        if member.addresses.contains(&addr) || member.addresses.len() >= MAX_ADDRESSES {
            return;
        }
        member.addresses.push(addr);
        if let Some(old) = self.by_addr.insert(addr, key)
            && old != key
        {
            // The address moved to another participant (a client that rejoined): the old one forgets it.
            if let Some(m) = self.member_mut(old) {
                m.addresses.retain(|a| *a != addr);
            }
        }
    }

    fn member(&self, key: MemberKey) -> Option<&Member> {
        let conf = self.conf(key.conference)?;
        conf.mixer_id(key.participant.slot as usize).filter(|id| *id == key.participant)?;
        conf.members.get(key.participant.slot as usize)?.as_ref()
    }

    fn member_mut(&mut self, key: MemberKey) -> Option<&mut Member> {
        let conf = self.conf_mut(key.conference)?;
        conf.mixer_id(key.participant.slot as usize).filter(|id| *id == key.participant)?;
        conf.members.get_mut(key.participant.slot as usize)?.as_mut()
    }

    /// Removes a participant (it gets an RTCP BYE).
    pub fn remove_participant(&mut self, now: Instant, key: MemberKey) -> Result<(), Error> {
        let conf = self.conf_mut(key.conference).ok_or(Error::NoConference)?;
        conf.mixer_id(key.participant.slot as usize).filter(|id| *id == key.participant).ok_or(Error::NoParticipant)?;
        let mut member = conf.members[key.participant.slot as usize].take().ok_or(Error::NoParticipant)?;
        conf.mixer.remove(key.participant);
        if conf.mixer.is_empty() {
            conf.next_tick = None;
        }
        if let (Some(bye), Some(to)) = (member.session.poll_rtcp(now, true), member.rtcp_to.or(member.destination())) {
            let mut bye = bye;
            let len = bye.len();
            bye.resize(len + member.protection.overhead(), 0);
            if let Ok(n) = member.protection.protect_rtcp(&mut bye, len) {
                bye.truncate(n);
                self.control.push_back((to, bye));
            }
        }
        for a in &member.addresses {
            if self.by_addr.get(a) == Some(&key) {
                self.by_addr.remove(a);
            }
        }
        if let Some(ice) = &member.ice {
            self.by_ufrag.remove(&ice.local().ufrag);
        }
        self.waiting.retain(|k| *k != key);
        self.drain_mixer_events(key.conference);
        self.refresh_deadline();
        Ok(())
    }

    /// Mutes or unmutes a participant.
    pub fn set_muted(&mut self, key: MemberKey, muted: bool) -> Result<(), Error> {
        let conf = self.conf_mut(key.conference).ok_or(Error::NoConference)?;
        if !conf.mixer.set_muted(key.participant, muted) {
            return Err(Error::NoParticipant);
        }
        self.drain_mixer_events(key.conference);
        Ok(())
    }

    /// Installs packet protection (SRTP, later) for a participant.
    pub fn set_protection(&mut self, key: MemberKey, protection: Protection) -> Result<(), Error> {
        self.member_mut(key).ok_or(Error::NoParticipant)?.protection = protection;
        Ok(())
    }

    /// The participants of conference `index`.
    pub fn members(&self, index: u32) -> Vec<MemberInfo> {
        let Some(conf) = self.conf(index) else { return Vec::new() };
        conf.members
            .iter()
            .enumerate()
            .filter_map(|(slot, m)| Some((conf.mixer_id(slot)?, m.as_ref()?)))
            .map(|(id, m)| MemberInfo {
                key: MemberKey { conference: index, participant: id },
                label: m.label.clone(),
                msi: m.msi,
                codec: m.session.codec(),
                destination: m.destination(),
                muted: conf.mixer.is_muted(id).unwrap_or(false),
                speaking: conf.mixer.is_speaking(id).unwrap_or(false),
                session: m.session.counters(),
                jitter: m.jb.stats(),
                jitter_target: m.jb.target(),
                srtp: m.protection.is_protected(),
                protection: m.protection.counters(),
                remote_ssrc: m.session.remote_ssrc(),
            })
            .collect()
    }

    /// The mixer of conference `index` (read-only: counters, dominant speaker).
    pub fn mixer(&self, index: u32) -> Option<&Mixer> {
        self.conf(index).map(|c| &c.mixer)
    }

    fn drain_mixer_events(&mut self, index: u32) {
        let Some(conf) = self.conferences.get_mut(index as usize).and_then(Option::as_mut) else { return };
        while let Some(event) = conf.mixer.poll_event() {
            if self.events.len() == self.events.capacity() {
                self.events.pop_front();
            }
            self.events.push_back(HostEvent::Roster { conference: index, event });
        }
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<HostEvent> {
        self.events.pop_front()
    }

    /// Feeds one received datagram (`bytes` may be changed in place: SRTP unprotects there).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &mut [u8]) {
        self.stats.datagrams_in += 1;
        match classify(bytes) {
            Kind::Stun => self.handle_stun(now, from, bytes),
            _ if bytes.len() >= 8 && bytes[0] >> 6 == 2 => self.handle_rtp(now, from, bytes),
            _ => self.stats.malformed += 1,
        }
    }

    fn handle_stun(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Ok(msg) = Message::decode(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        let Some(key) = IceLite::local_ufrag_of(&msg).and_then(|u| self.by_ufrag.get(&u).copied()) else {
            self.stats.unknown_source += 1;
            return;
        };
        let Some(member) = self.member_mut(key) else { return };
        let Some(ice) = member.ice.as_mut() else { return };
        let answer = ice.handle(&msg, from);
        let valid = matches!(answer.verdict, IceVerdict::Valid { .. });
        if valid {
            member.last_heard = now;
        }
        match answer.verdict {
            IceVerdict::Valid { .. } => self.stats.stun_answered += 1,
            IceVerdict::Refused(_) => self.stats.stun_refused += 1,
            IceVerdict::Dropped => {}
        }
        if let Some(response) = answer.response {
            self.control.push_back((from, response));
        }
        if valid {
            self.register(key, from);
        }
    }

    /// Finds the participant of a media packet from an unknown address (see the module docs).
    fn latch(&mut self, from: SocketAddr, bytes: &[u8]) -> Option<MemberKey> {
        let ssrc = if is_rtcp(bytes) { bytes.get(4..8) } else { bytes.get(8..12) };
        let ssrc = u32::from_be_bytes(ssrc?.try_into().ok()?);
        let mut by_ip = None;
        let mut ambiguous = false;
        for &key in &self.waiting {
            let Some(m) = self.member(key) else { continue };
            if m.latched {
                continue;
            }
            if m.announced_ssrc == Some(ssrc) {
                by_ip = Some(key);
                ambiguous = false;
                break;
            }
            if m.announced_ssrc.is_none() && m.media_to.is_some_and(|a| a.ip() == from.ip()) {
                ambiguous = by_ip.is_some();
                by_ip = Some(key);
            }
        }
        let key = by_ip.filter(|_| !ambiguous)?;
        self.stats.latched += 1;
        self.register(key, from);
        Some(key)
    }

    fn handle_rtp(&mut self, now: Instant, from: SocketAddr, bytes: &mut [u8]) {
        let key = match self.by_addr.get(&from) {
            Some(k) => *k,
            None => match self.latch(from, bytes) {
                Some(k) => k,
                None => {
                    self.stats.unknown_source += 1;
                    return;
                }
            },
        };
        let rtcp = is_rtcp(bytes);
        let conference = key.conference;
        let Some(conf) = self.conf_mut(conference) else { return };
        let Some(member) = conf.members.get_mut(key.participant.slot as usize).and_then(Option::as_mut) else {
            return;
        };
        if rtcp {
            let Ok(n) = member.protection.unprotect_rtcp(bytes) else {
                self.stats.unprotect_failed += 1;
                return;
            };
            let _ = member.session.receive_rtcp(now, &bytes[..n]);
            return;
        }
        let Ok(n) = member.protection.unprotect_rtp(bytes) else {
            self.stats.unprotect_failed += 1;
            return;
        };
        let Ok(packet) = RtpPacket::parse(&bytes[..n]) else {
            self.stats.malformed += 1;
            return;
        };
        let mut dtmf = None;
        let ssrc_before = member.session.remote_ssrc();
        match member.session.receive_rtp(now, &packet) {
            Received::Audio { timestamp, payload, new_source } => {
                member.last_heard = now;
                if !member.latched {
                    member.latched = true;
                }
                if new_source {
                    member.jb.reset();
                }
                if member.direction.receives() {
                    member.jb.push(now, timestamp, payload);
                }
            }
            Received::Event(Some(event)) => dtmf = Some(event),
            Received::Event(None) => member.last_heard = now,
            Received::Dropped(_) => {}
        }
        let source = member.session.remote_ssrc().filter(|s| member_first_or_new(ssrc_before, *s, member.source_told));
        if source.is_some() {
            member.source_told = true;
        }
        if member.latched {
            self.waiting.retain(|k| *k != key);
        }
        if let Some(ssrc) = source {
            self.events.push_back(HostEvent::Source { key, ssrc });
        }
        if let Some(event) = dtmf {
            self.events.push_back(HostEvent::Dtmf { key, event });
        }
    }

    fn refresh_deadline(&mut self) {
        self.deadline = self.conferences.iter().flatten().filter_map(|c| c.next_tick).min();
    }

    /// When [`Host::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Runs the ticks that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired: Vec<MemberKey> = Vec::new();
        for index in 0..self.conferences.len() {
            let Some(conf) = self.conferences[index].as_mut() else { continue };
            let Some(due) = conf.next_tick else { continue };
            if due > now {
                continue;
            }
            if conf.send_pending {
                // The last tick's packets were not all collected; they are late now.
                conf.send_pending = false;
            }
            let behind = now.saturating_duration_since(due);
            if behind > TICK {
                self.stats.late_ticks += 1;
            }
            conf.next_tick = Some(if behind > MAX_BEHIND {
                // Skip the ticks missed but keep this conference's phase: conferences that fell behind
                // together (a stalled worker) would otherwise restart in step and share every wake-up.
                let missed = (behind.as_nanos() / TICK.as_nanos()) as u32;
                due + TICK * (missed + 1)
            } else {
                due + TICK
            });
            let interval = self.config.quiet_decode_interval.max(1);
            conf.run_tick(now, self.config.media_timeout, interval, &mut self.control, &mut expired, index as u32);
            self.stats.ticks += 1;
            self.sending.push(index as u32);
            self.drain_mixer_events(index as u32);
        }
        for key in expired {
            if self.remove_participant(now, key).is_ok() {
                self.events.push_back(HostEvent::MediaTimeout(key));
            }
        }
        self.refresh_deadline();
    }

    /// Writes the next datagram to send into `buf` (STUN answers and RTCP first, then this tick's
    /// media); `None` when there is nothing left.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        while let Some((to, bytes)) = self.control.pop_front() {
            if bytes.len() <= buf.len() {
                buf[..bytes.len()].copy_from_slice(&bytes);
                if bytes[0] >> 6 == 2 {
                    self.stats.rtcp_out += 1;
                }
                return Some(Transmit { destination: to, len: bytes.len() });
            }
            self.stats.send_dropped += 1;
        }
        while let Some(&index) = self.sending.first() {
            let Some(conf) = self.conferences.get_mut(index as usize).and_then(Option::as_mut) else {
                self.sending.remove(0);
                continue;
            };
            match conf.next_packet(now, buf, &mut self.stats) {
                Some(t) => return Some(t),
                None => {
                    self.sending.remove(0);
                }
            }
        }
        None
    }
}

impl Conference {
    fn mixer_id(&self, slot: usize) -> Option<ParticipantId> {
        self.members.get(slot)?.as_ref()?;
        self.mixer.id_at(slot)
    }

    fn run_tick(
        &mut self,
        now: Instant,
        timeout: Duration,
        interval: u32,
        control: &mut VecDeque<(SocketAddr, Vec<u8>)>,
        expired: &mut Vec<MemberKey>,
        index: u32,
    ) {
        self.tick += 1;
        for (slot, member) in self.members.iter_mut().enumerate() {
            let Some(m) = member.as_mut() else { continue };
            let Some(id) = self.mixer.id_at(slot) else { continue };
            // (a participant that does not send to us, by its offer, is not timed out)
            if m.direction.receives() && now.saturating_duration_since(m.last_heard) > timeout {
                expired.push(MemberKey { conference: index, participant: id });
            }
            let muted = self.mixer.is_muted(id).unwrap_or(false);
            // Quiet participants are sampled, staggered by slot so the decoding spreads over ticks.
            let sample =
                self.mixer.needs_every_frame(id) || (self.tick + slot as u64).is_multiple_of(u64::from(interval));
            let playout = m.jb.pop();
            if muted || !sample {
                // Not heard, or not needed this tick: the packet leaves the buffer undecoded.
                if muted {
                    self.mixer.set_present(id, false);
                } else {
                    self.mixer.set_skipped(id);
                }
            } else {
                let Some(frame) = self.mixer.frame_mut(id) else { continue };
                let present = match playout {
                    // One- and two-byte Opus packets are DTX / silence (RFC 6716 §3.1): nothing to decode.
                    Playout::Frame { payload, .. } if payload.len() <= 2 && m.session.codec() == CodecKind::Opus => {
                        false
                    }
                    Playout::Frame { payload, .. } => m.decoder.decode(payload, frame).is_ok(),
                    Playout::Lost { next: Some(next) } => m.decoder.recover(next, frame).is_ok(),
                    Playout::Lost { next: None } => m.decoder.conceal(frame).is_ok(),
                    Playout::Silence => false,
                };
                self.mixer.set_present(id, present);
            }
            let rtcp_due = m.session.poll_timeout().is_none_or(|t| t <= now);
            if rtcp_due
                && let Some(mut rtcp) = m.session.poll_rtcp(now, false)
                && let Some(to) = m.rtcp_to.or(m.destination())
            {
                let len = rtcp.len();
                rtcp.resize(len + m.protection.overhead(), 0);
                if let Ok(n) = m.protection.protect_rtcp(&mut rtcp, len) {
                    rtcp.truncate(n);
                    control.push_back((to, rtcp));
                }
            }
        }
        self.mixer.mix();
        self.send_pending = true;
        self.send_cursor = 0;
    }

    fn next_packet(&mut self, now: Instant, buf: &mut [u8], stats: &mut HostStats) -> Option<Transmit> {
        if !self.send_pending {
            return None;
        }
        while self.send_cursor < self.members.len() {
            let slot = self.send_cursor;
            self.send_cursor += 1;
            let Some(m) = self.members[slot].as_mut() else { continue };
            if !m.direction.sends() {
                continue;
            }
            let Some(id) = self.mixer.id_at(slot) else { continue };
            let Some(out) = self.mixer.output(id) else { continue };
            let Some(destination) = m.destination() else {
                stats.send_dropped += 1;
                continue;
            };
            let overhead = m.protection.overhead();
            let room = buf.len().saturating_sub(overhead);
            let Ok(len) = m.session.write_rtp(now, self.tick, out.payload, out.csrc, &mut buf[..room]) else {
                stats.send_dropped += 1;
                continue;
            };
            let Ok(len) = m.protection.protect_rtp(buf, len) else {
                stats.send_dropped += 1;
                continue;
            };
            stats.rtp_out += 1;
            return Some(Transmit { destination, len });
        }
        self.send_pending = false;
        None
    }
}
