//! The mixing engine: one call per 20 ms tick turns one decoded frame per participant into the
//! encoded frames each participant hears.
//!
//! Per tick ([`Mixer::mix`]):
//! 1. **Level and voice activity** of every unmuted participant with a frame: RMS in dBov; speaking
//!    starts after `vad_on` frames above the threshold and ends after `vad_off` frames below it
//!    (hangover), so talkers do not flicker.
//! 2. **Loudest few talkers** (`max_talkers`, 3 by default) among those speaking, by smoothed level:
//!    a talker keeps its place while it speaks; a newcomer takes a free place, or the place of the
//!    quietest talker when it is louder by `switch_margin_db` (hysteresis).
//! 3. **Mixes**: the 32-bit sum of the talkers is the *shared mix* everyone else hears; each talker
//!    hears the sum minus itself (its *N−1 mix*). Each mix goes through its own soft
//!    [`Limiter`](crate::limiter::Limiter).
//! 4. **Encoding once**: each distinct mix is encoded once per [`CodecSetting`] among its listeners,
//!    so a thousand listeners with the same setting share one encoded frame
//!    ([`MixerStats::encodes`] counts it; the tests prove it). [`MixerConfig::encode_per_listener`]
//!    switches to one encoder per listener, as Janus AudioBridge does, for comparison.
//! 5. **Dominant speaker**: the loudest talker, changed only when another is louder by 3 dB or it
//!    stops; its MSI is the first CSRC of every mix (MS-RTP: the first CSRC is the dominant speaker),
//!    followed by the other talkers'.
//!
//! Events ([`MixerEvent`]) report joins, leaves, mute changes, speaking changes and the dominant
//! speaker, for a focus to put in the roster. Frames, mixes, encoders and output buffers are
//! allocated when a participant joins or a new codec setting appears, never per tick (a test with a
//! counting allocator checks it).

use std::collections::VecDeque;

use vienna_media::codec::{self, CodecSetting, Encoder, MAX_PAYLOAD};

use crate::Error;
use crate::limiter::Limiter;

/// Mixer settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MixerConfig {
    /// Mixing rate (8000, 16000 or 48000).
    pub rate: u32,
    /// Most talkers mixed at once.
    pub max_talkers: usize,
    /// Level above which a frame counts as speech, dBov.
    pub vad_threshold_db: f32,
    /// Frames above the threshold before speaking starts.
    pub vad_on: u32,
    /// Frames below the threshold before speaking ends.
    pub vad_off: u32,
    /// How much louder a newcomer must be to replace the quietest talker, dB.
    pub switch_margin_db: f32,
    /// Limiter threshold (peak sample magnitude).
    pub limiter_threshold: i16,
    /// Opus encoder complexity (0–10).
    pub opus_complexity: u8,
    /// Encode separately for every listener (the comparison mode; off in production).
    pub encode_per_listener: bool,
}

impl Default for MixerConfig {
    fn default() -> MixerConfig {
        MixerConfig {
            rate: 48_000,
            max_talkers: 3,
            vad_threshold_db: -50.0,
            vad_on: 2,
            vad_off: 25,
            switch_margin_db: 6.0,
            limiter_threshold: 29_205, // −1 dBFS
            opus_complexity: 5,
            encode_per_listener: false,
        }
    }
}

/// A participant of the mixer (a slot index plus a generation, so a stale id never hits a newcomer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId {
    /// Slot.
    pub slot: u32,
    /// Generation of the slot.
    pub generation: u32,
}

/// What the mixer reports for the roster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MixerEvent {
    /// A participant was added.
    Joined(ParticipantId),
    /// A participant was removed.
    Left(ParticipantId),
    /// Mute changed.
    Muted {
        /// Who.
        id: ParticipantId,
        /// Now muted.
        muted: bool,
    },
    /// Started or stopped speaking.
    Speaking {
        /// Who.
        id: ParticipantId,
        /// Now speaking.
        speaking: bool,
    },
    /// The dominant speaker changed (`None`: nobody speaks).
    DominantSpeaker(Option<ParticipantId>),
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MixerStats {
    /// Ticks mixed.
    pub ticks: u64,
    /// Frames encoded, in all.
    pub encodes: u64,
    /// Frames encoded in the last tick.
    pub encodes_last_tick: u32,
    /// Listeners served in the last tick.
    pub listeners_last_tick: u32,
    /// Talkers mixed in the last tick.
    pub talkers_last_tick: u32,
    /// Encoder errors (the listener gets nothing that tick).
    pub encode_errors: u64,
}

/// One encoded frame and the encoder that makes it.
struct Encoded {
    setting: CodecSetting,
    encoder: Box<dyn Encoder>,
    payload: Box<[u8; MAX_PAYLOAD]>,
    len: usize,
    wanted: bool,
    valid: bool,
}

impl Encoded {
    fn new(setting: CodecSetting, rate: u32, complexity: u8) -> Result<Encoded, Error> {
        Ok(Encoded {
            setting,
            encoder: codec::encoder(setting, rate, complexity)?,
            payload: Box::new([0; MAX_PAYLOAD]),
            len: 0,
            wanted: false,
            valid: false,
        })
    }
}

/// A mix: its 16-bit samples, limiter, CSRC list and encodings.
struct Mix {
    pcm: Box<[i16]>,
    limiter: Limiter,
    csrc: Vec<u32>,
    encoded: Vec<Encoded>,
}

impl Mix {
    fn new(frame: usize, threshold: i16, max_talkers: usize) -> Mix {
        Mix {
            pcm: vec![0; frame].into_boxed_slice(),
            limiter: Limiter::new(threshold),
            csrc: Vec::with_capacity(max_talkers),
            encoded: Vec::with_capacity(2),
        }
    }

    /// Marks `setting` as wanted this tick, creating its encoder the first time (not per tick).
    fn want(&mut self, setting: CodecSetting, rate: u32, complexity: u8) -> Result<usize, Error> {
        if let Some(i) = self.encoded.iter().position(|e| e.setting == setting) {
            self.encoded[i].wanted = true;
            return Ok(i);
        }
        let mut e = Encoded::new(setting, rate, complexity)?;
        e.wanted = true;
        self.encoded.push(e);
        Ok(self.encoded.len() - 1)
    }

    fn encode_wanted(&mut self, stats: &mut MixerStats) {
        for e in &mut self.encoded {
            e.valid = false;
            if !e.wanted {
                continue;
            }
            e.wanted = false;
            match e.encoder.encode(&self.pcm, &mut e.payload[..]) {
                Ok(n) => {
                    e.len = n;
                    e.valid = true;
                    stats.encodes += 1;
                    stats.encodes_last_tick += 1;
                }
                Err(_) => stats.encode_errors += 1,
            }
        }
    }
}

struct Participant {
    id: ParticipantId,
    msi: u32,
    setting: CodecSetting,
    receives: bool,
    muted: bool,
    frame: Box<[i16]>,
    present: bool,
    /// No frame this tick by choice (not decoded): keep the last level and voice activity state.
    skipped: bool,
    level_db: f32,
    smoothed_db: f32,
    above: u32,
    below: u32,
    speaking: bool,
    /// Index into the talker places, when talking.
    talker: Option<usize>,
    /// Which mix and encoding it gets this tick.
    out: Option<(MixSource, usize)>,
    /// Its own mix in encode-per-listener mode.
    own: Option<Mix>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MixSource {
    Shared,
    Talker(usize),
    Own,
}

/// What one listener gets this tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output<'a> {
    /// The encoded frame.
    pub payload: &'a [u8],
    /// CSRCs: the dominant speaker's MSI first, then the other talkers'.
    pub csrc: &'a [u32],
}

/// The mixing engine of one conference.
pub struct Mixer {
    config: MixerConfig,
    frame: usize,
    slots: Vec<Option<Participant>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    /// Talker places: the participant slot and its N−1 mix.
    talkers: Vec<(Option<u32>, Mix)>,
    shared: Mix,
    sum: Box<[i32]>,
    scratch: Box<[i32]>,
    candidates: Vec<(f32, u32)>,
    dominant: Option<u32>,
    events: VecDeque<MixerEvent>,
    stats: MixerStats,
}

fn level_db(frame: &[i16]) -> f32 {
    let energy: i64 = frame.iter().map(|&s| i64::from(i32::from(s) * i32::from(s))).sum();
    if energy == 0 {
        return -127.0;
    }
    let mean = energy as f32 / frame.len() as f32;
    10.0 * (mean / (32768.0 * 32768.0)).log10()
}

impl Mixer {
    /// A mixer with no participants.
    pub fn new(config: MixerConfig) -> Result<Mixer, Error> {
        if !codec::MIX_RATES.contains(&config.rate) {
            return Err(Error::Media(vienna_media::Error::UnsupportedRate(config.rate)));
        }
        let frame = codec::frame_samples(config.rate);
        let k = config.max_talkers.clamp(1, vienna_media::rtp::MAX_CSRC);
        let config = MixerConfig { max_talkers: k, ..config };
        Ok(Mixer {
            config,
            frame,
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            talkers: (0..k).map(|_| (None, Mix::new(frame, config.limiter_threshold, k))).collect(),
            shared: Mix::new(frame, config.limiter_threshold, k),
            sum: vec![0; frame].into_boxed_slice(),
            scratch: vec![0; frame].into_boxed_slice(),
            candidates: Vec::new(),
            dominant: None,
            events: VecDeque::with_capacity(64),
            stats: MixerStats::default(),
        })
    }

    /// Settings in force.
    pub fn config(&self) -> &MixerConfig {
        &self.config
    }

    /// Samples per frame.
    pub fn frame_len(&self) -> usize {
        self.frame
    }

    /// Counters.
    pub fn stats(&self) -> MixerStats {
        self.stats
    }

    /// Participants now.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// No participants.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a participant that hears with `setting` (if `receives`) and is named `msi` in CSRCs.
    pub fn add(&mut self, msi: u32, setting: CodecSetting, receives: bool) -> Result<ParticipantId, Error> {
        // Encoders are made now, not during a tick.
        self.shared.want(setting, self.config.rate, self.config.opus_complexity)?;
        for (_, mix) in &mut self.talkers {
            mix.want(setting, self.config.rate, self.config.opus_complexity)?;
        }
        for e in self.shared.encoded.iter_mut().chain(self.talkers.iter_mut().flat_map(|t| t.1.encoded.iter_mut())) {
            e.wanted = false;
        }
        let own = if self.config.encode_per_listener && receives {
            let mut m = Mix::new(self.frame, self.config.limiter_threshold, self.config.max_talkers);
            m.want(setting, self.config.rate, self.config.opus_complexity)?;
            m.encoded[0].wanted = false;
            Some(m)
        } else {
            None
        };
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        let generation = self.generations[slot as usize];
        let id = ParticipantId { slot, generation };
        self.slots[slot as usize] = Some(Participant {
            id,
            msi,
            setting,
            receives,
            muted: false,
            frame: vec![0; self.frame].into_boxed_slice(),
            present: false,
            skipped: false,
            level_db: -127.0,
            smoothed_db: -127.0,
            above: 0,
            below: 0,
            speaking: false,
            talker: None,
            out: None,
            own,
        });
        self.candidates.reserve(1);
        self.push_event(MixerEvent::Joined(id));
        Ok(id)
    }

    fn get(&self, id: ParticipantId) -> Option<&Participant> {
        self.slots.get(id.slot as usize)?.as_ref().filter(|p| p.id == id)
    }

    fn get_mut(&mut self, id: ParticipantId) -> Option<&mut Participant> {
        self.slots.get_mut(id.slot as usize)?.as_mut().filter(|p| p.id == id)
    }

    /// Removes a participant.
    pub fn remove(&mut self, id: ParticipantId) -> bool {
        let Some(p) = self.get(id) else { return false };
        let (talker, speaking) = (p.talker, p.speaking);
        if let Some(t) = talker {
            self.talkers[t].0 = None;
        }
        if speaking {
            self.push_event(MixerEvent::Speaking { id, speaking: false });
        }
        self.slots[id.slot as usize] = None;
        self.generations[id.slot as usize] = self.generations[id.slot as usize].wrapping_add(1);
        self.free.push(id.slot);
        if self.dominant == Some(id.slot) {
            self.dominant = None;
            self.push_event(MixerEvent::DominantSpeaker(None));
        }
        self.push_event(MixerEvent::Left(id));
        true
    }

    /// Mutes or unmutes a participant (a muted participant is heard by nobody).
    pub fn set_muted(&mut self, id: ParticipantId, muted: bool) -> bool {
        let Some(p) = self.get_mut(id) else { return false };
        if p.muted == muted {
            return true;
        }
        p.muted = muted;
        self.push_event(MixerEvent::Muted { id, muted });
        true
    }

    /// Whether a participant is muted.
    pub fn is_muted(&self, id: ParticipantId) -> Option<bool> {
        self.get(id).map(|p| p.muted)
    }

    /// Whether a participant is speaking.
    pub fn is_speaking(&self, id: ParticipantId) -> Option<bool> {
        self.get(id).map(|p| p.speaking)
    }

    /// Its last frame's level, dBov.
    pub fn level(&self, id: ParticipantId) -> Option<f32> {
        self.get(id).map(|p| p.level_db)
    }

    /// The dominant speaker.
    pub fn dominant(&self) -> Option<ParticipantId> {
        self.dominant.and_then(|s| self.slots[s as usize].as_ref()).map(|p| p.id)
    }

    /// The participant in `slot`, if any.
    pub fn id_at(&self, slot: usize) -> Option<ParticipantId> {
        self.slots.get(slot)?.as_ref().map(|p| p.id)
    }

    /// Every participant.
    pub fn ids(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.slots.iter().flatten().map(|p| p.id)
    }

    /// The participants mixed now.
    pub fn talkers(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.talkers.iter().filter_map(|(s, _)| s.and_then(|s| self.slots[s as usize].as_ref()).map(|p| p.id))
    }

    /// The buffer for this tick's frame of `id`; [`Mixer::set_present`] says whether it holds audio.
    pub fn frame_mut(&mut self, id: ParticipantId) -> Option<&mut [i16]> {
        self.get_mut(id).map(|p| &mut p.frame[..])
    }

    /// Says whether the frame of `id` holds audio this tick (no packet, muted source: `false`).
    pub fn set_present(&mut self, id: ParticipantId, present: bool) {
        if let Some(p) = self.get_mut(id) {
            p.present = present;
        }
    }

    /// Says that `id` has no frame this tick because it was not decoded (a quiet participant sampled
    /// every few frames): it is not mixed, and its level and voice activity stay as last measured.
    pub fn set_skipped(&mut self, id: ParticipantId) {
        if let Some(p) = self.get_mut(id) {
            p.present = false;
            p.skipped = true;
        }
    }

    /// Whether `id` must be decoded every frame: it speaks or is mixed. Others may be sampled.
    pub fn needs_every_frame(&self, id: ParticipantId) -> bool {
        self.get(id).is_some_and(|p| p.speaking || p.talker.is_some() || p.above > 0)
    }

    /// Next event for the roster.
    pub fn poll_event(&mut self) -> Option<MixerEvent> {
        self.events.pop_front()
    }

    fn push_event(&mut self, e: MixerEvent) {
        // Bounded: a driver that never reads events loses the oldest, not memory.
        if self.events.len() == self.events.capacity() {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// Mixes this tick's frames and encodes what the listeners need. Frames are consumed: every
    /// participant's `present` flag is cleared for the next tick.
    pub fn mix(&mut self) {
        self.stats.ticks += 1;
        self.stats.encodes_last_tick = 0;
        self.stats.listeners_last_tick = 0;
        self.update_levels();
        self.select_talkers();
        self.update_dominant();
        self.build_mixes();
        self.assign_and_encode();
        for p in self.slots.iter_mut().flatten() {
            p.present = false;
            p.skipped = false;
        }
    }

    fn update_levels(&mut self) {
        let cfg = self.config;
        let mut changes: [Option<(ParticipantId, bool)>; 8] = [None; 8];
        let mut n_changes = 0;
        for p in self.slots.iter_mut().flatten() {
            if p.skipped && !p.muted {
                continue;
            }
            let level = if p.present && !p.muted { level_db(&p.frame) } else { -127.0 };
            p.level_db = level;
            // smoothed for ranking: quick up, slower down
            p.smoothed_db =
                if level > p.smoothed_db { 0.5 * (level + p.smoothed_db) } else { 0.9 * p.smoothed_db + 0.1 * level };
            if level > cfg.vad_threshold_db {
                p.above += 1;
                p.below = 0;
            } else {
                p.below += 1;
                p.above = 0;
            }
            let speaking = if p.speaking { p.below < cfg.vad_off && !p.muted } else { p.above >= cfg.vad_on };
            if speaking != p.speaking {
                p.speaking = speaking;
                if n_changes < changes.len() {
                    changes[n_changes] = Some((p.id, speaking));
                    n_changes += 1;
                } else if self.events.len() < self.events.capacity() {
                    self.events.push_back(MixerEvent::Speaking { id: p.id, speaking });
                }
            }
        }
        for (id, speaking) in changes.iter().flatten() {
            self.push_event(MixerEvent::Speaking { id: *id, speaking: *speaking });
        }
    }

    fn select_talkers(&mut self) {
        // Talkers that stopped speaking (or were muted) leave their place.
        for (place, mix) in self.talkers.iter_mut() {
            if let Some(s) = *place {
                let keep = self.slots[s as usize].as_ref().is_some_and(|p| p.speaking && !p.muted);
                if !keep {
                    if let Some(p) = self.slots[s as usize].as_mut() {
                        p.talker = None;
                    }
                    *place = None;
                    mix.limiter = Limiter::new(self.config.limiter_threshold);
                }
            }
        }
        // Speaking non-talkers, loudest first (the vector's capacity grows only when participants join).
        self.candidates.clear();
        for p in self.slots.iter().flatten() {
            if p.speaking && !p.muted && p.talker.is_none() {
                self.candidates.push((p.smoothed_db, p.id.slot));
            }
        }
        self.candidates.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        for i in 0..self.candidates.len() {
            let (level, slot) = self.candidates[i];
            let place = match self.talkers.iter().position(|t| t.0.is_none()) {
                Some(free) => free,
                None => {
                    // Replace the quietest talker only if clearly louder.
                    let (q, qlevel) = self
                        .talkers
                        .iter()
                        .enumerate()
                        .filter_map(|(i, t)| {
                            t.0.and_then(|s| self.slots[s as usize].as_ref()).map(|p| (i, p.smoothed_db))
                        })
                        .min_by(|a, b| a.1.total_cmp(&b.1))
                        .unwrap_or((0, f32::MAX));
                    if level < qlevel + self.config.switch_margin_db {
                        break;
                    }
                    if let Some(old) = self.talkers[q].0.take()
                        && let Some(p) = self.slots[old as usize].as_mut()
                    {
                        p.talker = None;
                    }
                    q
                }
            };
            self.talkers[place].0 = Some(slot);
            if let Some(p) = self.slots[slot as usize].as_mut() {
                p.talker = Some(place);
            }
        }
    }

    fn update_dominant(&mut self) {
        let loudest = self
            .talkers
            .iter()
            .filter_map(|t| t.0)
            .filter_map(|s| self.slots[s as usize].as_ref().map(|p| (s, p.smoothed_db)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let current = self.dominant.and_then(|s| {
            let p = self.slots[s as usize].as_ref()?;
            p.talker.map(|_| (s, p.smoothed_db))
        });
        let next = match (current, loudest) {
            (Some(c), Some(l)) if l.1 < c.1 + 3.0 => Some(c.0),
            (_, l) => l.map(|l| l.0),
        };
        if next != self.dominant {
            self.dominant = next;
            let id = next.and_then(|s| self.slots[s as usize].as_ref()).map(|p| p.id);
            self.push_event(MixerEvent::DominantSpeaker(id));
        }
    }

    fn build_mixes(&mut self) {
        self.sum.fill(0);
        let mut talkers = 0;
        for (place, _) in &self.talkers {
            let Some(p) = place.and_then(|s| self.slots[s as usize].as_ref()) else { continue };
            if !p.present {
                continue;
            }
            talkers += 1;
            for (acc, &s) in self.sum.iter_mut().zip(p.frame.iter()) {
                *acc += i32::from(s);
            }
        }
        self.stats.talkers_last_tick = talkers;
        // CSRCs: dominant first, then the other talkers in place order.
        let dominant_msi = self.dominant.and_then(|s| self.slots[s as usize].as_ref()).map(|p| p.msi);
        self.shared.csrc.clear();
        self.shared.csrc.extend(dominant_msi);
        for (place, _) in &self.talkers {
            if let Some(p) = place.and_then(|s| self.slots[s as usize].as_ref())
                && Some(p.msi) != dominant_msi
            {
                self.shared.csrc.push(p.msi);
            }
        }
        self.shared.limiter.process(&self.sum, &mut self.shared.pcm);
        for (place, mix) in self.talkers.iter_mut() {
            let Some(p) = place.and_then(|s| self.slots[s as usize].as_ref()) else { continue };
            for ((d, &s), &own) in self.scratch.iter_mut().zip(self.sum.iter()).zip(p.frame.iter()) {
                *d = if p.present { s - i32::from(own) } else { s };
            }
            mix.limiter.process(&self.scratch, &mut mix.pcm);
            mix.csrc.clear();
            mix.csrc.extend(self.shared.csrc.iter().copied().filter(|&m| m != p.msi));
        }
    }

    fn assign_and_encode(&mut self) {
        let (rate, complexity) = (self.config.rate, self.config.opus_complexity);
        let per_listener = self.config.encode_per_listener;
        let mut listeners = 0;
        for p in self.slots.iter_mut().flatten() {
            p.out = None;
            if !p.receives {
                continue;
            }
            listeners += 1;
            if per_listener && let Some(own) = p.own.as_mut() {
                // Janus-style: the listener's own mix and encoder (talkers N−1, others the full sum).
                match p.talker {
                    Some(t) => own.pcm.copy_from_slice(&self.talkers[t].1.pcm),
                    None => own.pcm.copy_from_slice(&self.shared.pcm),
                }
                own.csrc.clear();
                own.csrc.extend(self.shared.csrc.iter().copied().filter(|&m| m != p.msi));
                own.encoded[0].wanted = true;
                own.encode_wanted(&mut self.stats);
                p.out = Some((MixSource::Own, 0));
                continue;
            }
            let (source, mix) = match p.talker {
                Some(t) => (MixSource::Talker(t), &mut self.talkers[t].1),
                None => (MixSource::Shared, &mut self.shared),
            };
            if let Ok(i) = mix.want(p.setting, rate, complexity) {
                p.out = Some((source, i));
            }
        }
        self.stats.listeners_last_tick = listeners;
        if !per_listener {
            self.shared.encode_wanted(&mut self.stats);
            for (_, mix) in self.talkers.iter_mut() {
                mix.encode_wanted(&mut self.stats);
            }
        }
    }

    /// What `id` hears this tick (after [`Mixer::mix`]); `None` if it does not receive, or its encoder
    /// failed.
    pub fn output(&self, id: ParticipantId) -> Option<Output<'_>> {
        let p = self.get(id)?;
        let (source, i) = p.out?;
        let mix = match source {
            MixSource::Shared => &self.shared,
            MixSource::Talker(t) => &self.talkers[t].1,
            MixSource::Own => p.own.as_ref()?,
        };
        let e = mix.encoded.get(i).filter(|e| e.valid)?;
        Some(Output { payload: &e.payload[..e.len], csrc: &mix.csrc })
    }

    /// The decoded mix `id` hears this tick, before encoding (for tests and recording).
    pub fn output_pcm(&self, id: ParticipantId) -> Option<&[i16]> {
        let p = self.get(id)?;
        let (source, _) = p.out?;
        Some(match source {
            MixSource::Shared => &self.shared.pcm,
            MixSource::Talker(t) => &self.talkers[t].1.pcm,
            MixSource::Own => &p.own.as_ref()?.pcm,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vienna_media::codec::CodecKind;

    fn tone(hz: f64, amp: f64, tick: usize, out: &mut [i16]) {
        let n = out.len();
        for (i, o) in out.iter_mut().enumerate() {
            *o = (amp * (2.0 * std::f64::consts::PI * hz * (tick * n + i) as f64 / 48_000.0).sin()) as i16;
        }
    }

    fn pcmu() -> CodecSetting {
        CodecSetting::g711(CodecKind::Pcmu)
    }

    /// Feeds `talking[i]` participants a tone of their own for `ticks` ticks.
    fn run(m: &mut Mixer, ids: &[ParticipantId], talking: &[bool], ticks: usize, t0: usize) {
        for t in 0..ticks {
            for (i, id) in ids.iter().enumerate() {
                let f = m.frame_mut(*id).unwrap();
                if talking[i] {
                    tone(300.0 + 100.0 * i as f64, 8000.0, t0 + t, f);
                } else {
                    f.fill(0);
                }
                m.set_present(*id, true);
            }
            m.mix();
        }
    }

    #[test]
    fn listeners_share_one_encoding_per_setting() {
        let mut m = Mixer::new(MixerConfig::default()).unwrap();
        let ids: Vec<_> = (0..50).map(|i| m.add(i, pcmu(), true).unwrap()).collect();
        let mut talking = vec![false; 50];
        talking[0] = true;
        talking[1] = true;
        talking[2] = true;
        run(&mut m, &ids, &talking, 10, 0);
        let s = m.stats();
        assert_eq!(s.talkers_last_tick, 3);
        assert_eq!(s.listeners_last_tick, 50);
        // 3 N-1 mixes + 1 shared mix, one codec setting: 4 encodes for 50 listeners
        assert_eq!(s.encodes_last_tick, 4);
        let shared = m.output(ids[10]).unwrap().payload.as_ptr();
        assert!(ids[3..].iter().all(|id| m.output(*id).unwrap().payload.as_ptr() == shared), "one buffer");
        assert!(ids[..3].iter().all(|id| m.output(*id).unwrap().payload.as_ptr() != shared));

        // a second setting among the listeners adds exactly one more encoding of the shared mix
        let opus = m.add(99, CodecSetting::opus(32_000), true).unwrap();
        let mut ids2 = ids.clone();
        ids2.push(opus);
        talking.push(false);
        run(&mut m, &ids2, &talking, 1, 10);
        assert_eq!(m.stats().encodes_last_tick, 5);

        // the comparison mode encodes once per listener
        let mut per = Mixer::new(MixerConfig { encode_per_listener: true, ..MixerConfig::default() }).unwrap();
        let ids: Vec<_> = (0..50).map(|i| per.add(i, pcmu(), true).unwrap()).collect();
        run(&mut per, &ids, &talking[..50], 10, 0);
        assert_eq!(per.stats().encodes_last_tick, 50);
    }

    #[test]
    fn talkers_hear_the_others_and_not_themselves() {
        let mut m = Mixer::new(MixerConfig::default()).unwrap();
        let ids: Vec<_> = (0..5).map(|i| m.add(1000 + i, pcmu(), true).unwrap()).collect();
        run(&mut m, &ids, &[true, true, false, false, false], 5, 0);
        // talker 0 hears exactly talker 1 (the limiter is at unity for one tone)
        let mut expect = vec![0i16; 960];
        tone(400.0, 8000.0, 4, &mut expect);
        assert_eq!(m.output_pcm(ids[0]).unwrap(), &expect[..]);
        let mut expect0 = vec![0i16; 960];
        tone(300.0, 8000.0, 4, &mut expect0);
        assert_eq!(m.output_pcm(ids[1]).unwrap(), &expect0[..]);
        let both: Vec<i16> = expect.iter().zip(&expect0).map(|(a, b)| a + b).collect();
        assert_eq!(m.output_pcm(ids[3]).unwrap(), &both[..]);
        // CSRCs: the dominant speaker first; a talker's own MSI is not in its N-1 list
        let shared = m.output(ids[3]).unwrap().csrc;
        assert_eq!(shared.len(), 2);
        let dominant = m.dominant().unwrap();
        assert_eq!(shared[0], 1000 + dominant.slot);
        assert_eq!(m.output(ids[0]).unwrap().csrc, &[1001]);
    }

    #[test]
    fn at_most_k_talkers_with_hysteresis_and_events() {
        let mut m = Mixer::new(MixerConfig::default()).unwrap();
        let ids: Vec<_> = (0..6).map(|i| m.add(i, pcmu(), true).unwrap()).collect();
        while m.poll_event().is_some() {}
        // five talk at the same level: only three are mixed, and they stay
        run(&mut m, &ids, &[true, true, true, true, true, false], 20, 0);
        let first: Vec<_> = m.talkers().collect();
        assert_eq!(first.len(), 3);
        run(&mut m, &ids, &[true, true, true, true, true, false], 20, 20);
        assert_eq!(m.talkers().collect::<Vec<_>>(), first, "equal levels do not churn");
        let mut speaking = 0;
        let mut dominant = 0;
        while let Some(e) = m.poll_event() {
            match e {
                MixerEvent::Speaking { speaking: true, .. } => speaking += 1,
                MixerEvent::DominantSpeaker(Some(_)) => dominant += 1,
                _ => {}
            }
        }
        assert_eq!(speaking, 5);
        assert_eq!(dominant, 1);
        // a much louder newcomer replaces the quietest
        for t in 0..10 {
            for (i, id) in ids.iter().enumerate() {
                let f = m.frame_mut(*id).unwrap();
                let amp = if i == 5 { 30000.0 } else { 8000.0 };
                tone(300.0 + 100.0 * i as f64, amp, 40 + t, f);
                m.set_present(*id, true);
            }
            m.mix();
        }
        assert!(m.talkers().any(|t| t == ids[5]));
        assert_eq!(m.dominant(), Some(ids[5]));
        // everyone stops: after the hangover nobody is mixed and nobody dominates
        run(&mut m, &ids, &[false; 6], 30, 50);
        assert_eq!(m.talkers().count(), 0);
        assert_eq!(m.dominant(), None);
    }

    #[test]
    fn muted_participants_are_not_heard_and_leaving_is_reported() {
        let mut m = Mixer::new(MixerConfig::default()).unwrap();
        let ids: Vec<_> = (0..3).map(|i| m.add(i, pcmu(), true).unwrap()).collect();
        assert!(m.set_muted(ids[0], true));
        run(&mut m, &ids, &[true, false, false], 10, 0);
        assert_eq!(m.talkers().count(), 0);
        assert!(m.output_pcm(ids[1]).unwrap().iter().all(|&s| s == 0));
        m.set_muted(ids[0], false);
        run(&mut m, &ids, &[true, false, false], 5, 10);
        assert_eq!(m.talkers().collect::<Vec<_>>(), vec![ids[0]]);
        assert!(m.remove(ids[0]));
        assert!(!m.remove(ids[0]), "a stale id does nothing");
        let events: Vec<_> = std::iter::from_fn(|| m.poll_event()).collect();
        assert!(events.contains(&MixerEvent::Muted { id: ids[0], muted: true }));
        assert!(events.contains(&MixerEvent::Left(ids[0])));
        assert!(events.contains(&MixerEvent::DominantSpeaker(None)));
        // the slot is reused with a new generation; the old id does not reach the newcomer
        let newcomer = m.add(7, pcmu(), true).unwrap();
        assert_eq!(newcomer.slot, ids[0].slot);
        assert!(m.frame_mut(ids[0]).is_none());
    }

    #[test]
    fn many_loud_talkers_do_not_wrap() {
        let mut m = Mixer::new(MixerConfig { max_talkers: 10, ..MixerConfig::default() }).unwrap();
        let ids: Vec<_> = (0..12).map(|i| m.add(i, pcmu(), true).unwrap()).collect();
        for t in 0..20 {
            for (i, id) in ids.iter().enumerate() {
                tone(200.0 + 50.0 * i as f64, 32000.0, t, m.frame_mut(*id).unwrap());
                m.set_present(*id, true);
            }
            m.mix();
            let out = m.output_pcm(ids[11]).unwrap();
            assert!(out.iter().all(|s| s.unsigned_abs() <= 29_205));
        }
    }
}
