//! Audio codecs behind one interface: a [`Decoder`] per received stream and an [`Encoder`] per distinct
//! mix, both working on mono 16-bit PCM frames of 20 ms at the conference's mixing rate.
//!
//! * Opus (RFC 6716, RTP payload RFC 7587: clock 48 kHz, `opus/48000/2` in SDP whatever is sent) through
//!   the `opus` crate (libopus): packet loss concealment (`opus_decode` with no packet) and in-band FEC
//!   (decoding the next packet's LBRR data with `decode_fec`) on receive; FEC and an expected-loss hint on
//!   send. libopus resamples internally, so it decodes and encodes at the mixing rate directly.
//! * G.711 µ-law (PCMU, payload type 0) and A-law (PCMA, 8) per ITU-T G.711, our own tables.
//! * G.722 at 64 kbit/s (payload type 9, `G722/8000` in SDP, 16 kHz audio; [`crate::g722`]).
//!
//! G.711 and G.722 conceal a lost frame by repeating the last one with a fade (in the spirit of G.711
//! Appendix I, without its pitch search), silence after [`G711_MAX_CONCEALED`] frames. Their sampling
//! rate (8 or 16 kHz) is brought to the mixing rate by linear interpolation going up and by averaging
//! going down (mixing rates and codec rates are whole multiples of each other).
//!
//! Left out: SILK, RTAudio, stereo, G.722's own concealment (Appendices III/IV).

use crate::Error;
use crate::g722::{G722Decoder, G722Encoder};

/// Mixing rates a conference can run at (whole multiples of 8 kHz that libopus supports).
pub const MIX_RATES: [u32; 3] = [8_000, 16_000, 48_000];
/// Frame duration, milliseconds.
pub const FRAME_MS: u32 = 20;
/// Largest frame at the highest mixing rate (48 kHz × 20 ms).
pub const MAX_FRAME: usize = 960;
/// Concealed G.711 frames before the output goes silent.
pub const G711_MAX_CONCEALED: u32 = 5;
/// Largest encoded frame we produce (Opus at 510 kb/s for 20 ms is 1275 bytes).
pub const MAX_PAYLOAD: usize = 1275;

/// Samples in one 20 ms frame at `rate`.
pub const fn frame_samples(rate: u32) -> usize {
    (rate / 50) as usize
}

/// Which codec a stream uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CodecKind {
    /// Opus (RTP clock 48 kHz).
    Opus,
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// G.722 (RTP clock 8 kHz by RFC 3551, audio sampled at 16 kHz).
    G722,
}

impl CodecKind {
    /// RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            CodecKind::Opus => 48_000,
            CodecKind::Pcmu | CodecKind::Pcma | CodecKind::G722 => 8_000,
        }
    }

    /// The rate the codec samples audio at (G.722's differs from its RTP clock).
    pub fn sample_rate(self) -> u32 {
        match self {
            CodecKind::G722 => 16_000,
            other => other.clock_rate(),
        }
    }

    /// The static RTP payload type (RFC 3551), if the codec has one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            CodecKind::Pcmu => Some(0),
            CodecKind::Pcma => Some(8),
            CodecKind::G722 => Some(9),
            CodecKind::Opus => None,
        }
    }

    /// RTP timestamp units in one 20 ms frame.
    pub fn frame_ticks(self) -> u32 {
        self.clock_rate() / 50
    }

    /// The SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            CodecKind::Opus => "opus",
            CodecKind::Pcmu => "PCMU",
            CodecKind::Pcma => "PCMA",
            CodecKind::G722 => "G722",
        }
    }
}

/// How a mix is encoded: two listeners with equal settings can share one encoded frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CodecSetting {
    /// The codec.
    pub kind: CodecKind,
    /// Opus bit rate in bits per second (the fixed rate of G.711 and G.722).
    pub bitrate: u32,
    /// Opus in-band FEC.
    pub fec: bool,
}

impl CodecSetting {
    /// Opus at `bitrate` with FEC on.
    pub fn opus(bitrate: u32) -> CodecSetting {
        CodecSetting { kind: CodecKind::Opus, bitrate, fec: true }
    }

    /// G.711 (`kind` is PCMU or PCMA).
    pub fn g711(kind: CodecKind) -> CodecSetting {
        CodecSetting { kind, bitrate: 64_000, fec: false }
    }

    /// G.722 at 64 kbit/s.
    pub fn g722() -> CodecSetting {
        CodecSetting { kind: CodecKind::G722, bitrate: 64_000, fec: false }
    }

    /// The setting for `kind`: Opus at `opus_bitrate`, the others at their fixed rate.
    pub fn of(kind: CodecKind, opus_bitrate: u32) -> CodecSetting {
        match kind {
            CodecKind::Opus => CodecSetting::opus(opus_bitrate),
            CodecKind::G722 => CodecSetting::g722(),
            g711 => CodecSetting::g711(g711),
        }
    }
}

/// Turns received payloads into PCM frames at the mixing rate.
pub trait Decoder: Send {
    /// Decodes one 20 ms packet into `out` (one frame at the mixing rate); returns samples written.
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, Error>;
    /// Conceals one lost frame into `out`.
    fn conceal(&mut self, out: &mut [i16]) -> Result<usize, Error>;
    /// Rebuilds a lost frame from the packet that follows it, when the codec carries redundancy
    /// (Opus in-band FEC); otherwise conceals.
    fn recover(&mut self, next: &[u8], out: &mut [i16]) -> Result<usize, Error> {
        let _ = next;
        self.conceal(out)
    }
}

/// Turns PCM frames at the mixing rate into payloads.
pub trait Encoder: Send {
    /// Encodes one frame; returns the payload length written to `out`.
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, Error>;
    /// The setting it encodes with.
    fn setting(&self) -> CodecSetting;
}

/// A decoder for `kind` producing frames at `rate`.
pub fn decoder(kind: CodecKind, rate: u32) -> Result<Box<dyn Decoder>, Error> {
    check_rate(rate)?;
    Ok(match kind {
        CodecKind::Opus => Box::new(OpusDecoder::new(rate)?),
        CodecKind::Pcmu | CodecKind::Pcma => Box::new(G711Decoder::new(kind, rate)),
        CodecKind::G722 => Box::new(G722FrameDecoder::new(rate)),
    })
}

/// An encoder for `setting` taking frames at `rate`; `complexity` is the Opus complexity (0–10).
pub fn encoder(setting: CodecSetting, rate: u32, complexity: u8) -> Result<Box<dyn Encoder>, Error> {
    check_rate(rate)?;
    Ok(match setting.kind {
        CodecKind::Opus => Box::new(OpusEncoder::new(setting, rate, complexity)?),
        CodecKind::Pcmu | CodecKind::Pcma => Box::new(G711Encoder { setting, from_mix: Resample::new(rate, 8_000) }),
        CodecKind::G722 => Box::new(G722FrameEncoder {
            setting: CodecSetting::g722(),
            inner: G722Encoder::default(),
            from_mix: Resample::new(rate, 16_000),
            prev_sample: 0,
            pcm: [0; 320],
        }),
    })
}

fn check_rate(rate: u32) -> Result<(), Error> {
    if MIX_RATES.contains(&rate) { Ok(()) } else { Err(Error::UnsupportedRate(rate)) }
}

fn codec_error(e: opus::Error) -> Error {
    Error::Codec(e.description())
}

/// Opus decoding with PLC and FEC.
pub struct OpusDecoder {
    inner: opus::Decoder,
    frame: usize,
}

impl OpusDecoder {
    /// A mono decoder at `rate`.
    pub fn new(rate: u32) -> Result<OpusDecoder, Error> {
        let inner = opus::Decoder::new(rate, opus::Channels::Mono).map_err(codec_error)?;
        Ok(OpusDecoder { inner, frame: frame_samples(rate) })
    }
}

impl Decoder for OpusDecoder {
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, Error> {
        if payload.is_empty() {
            return self.conceal(out);
        }
        let out = out.get_mut(..self.frame).ok_or(Error::BufferTooSmall)?;
        // A packet longer than 20 ms does not fit one frame: libopus refuses it; conceal instead.
        match self.inner.decode(payload, out, false) {
            Ok(n) if n == self.frame => Ok(n),
            _ => Err(Error::Codec("opus packet is not one 20 ms frame")),
        }
    }

    fn conceal(&mut self, out: &mut [i16]) -> Result<usize, Error> {
        let out = out.get_mut(..self.frame).ok_or(Error::BufferTooSmall)?;
        self.inner.decode(&[], out, false).map_err(codec_error)
    }

    fn recover(&mut self, next: &[u8], out: &mut [i16]) -> Result<usize, Error> {
        let frame = self.frame;
        let out = out.get_mut(..frame).ok_or(Error::BufferTooSmall)?;
        match self.inner.decode(next, out, true) {
            Ok(n) if n == frame => Ok(n),
            _ => self.conceal(out),
        }
    }
}

/// Opus encoding (VoIP application, mono).
pub struct OpusEncoder {
    inner: opus::Encoder,
    setting: CodecSetting,
}

impl OpusEncoder {
    /// An encoder for `setting` at `rate`.
    pub fn new(setting: CodecSetting, rate: u32, complexity: u8) -> Result<OpusEncoder, Error> {
        let mut inner = opus::Encoder::new(rate, opus::Channels::Mono, opus::Application::Voip).map_err(codec_error)?;
        inner.set_bitrate(opus::Bitrate::Bits(setting.bitrate as i32)).map_err(codec_error)?;
        inner.set_inband_fec(setting.fec).map_err(codec_error)?;
        if setting.fec {
            inner.set_packet_loss_perc(10).map_err(codec_error)?;
        }
        inner.set_complexity(i32::from(complexity.min(10))).map_err(codec_error)?;
        Ok(OpusEncoder { inner, setting })
    }
}

impl Encoder for OpusEncoder {
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, Error> {
        self.inner.encode(pcm, out).map_err(codec_error)
    }

    fn setting(&self) -> CodecSetting {
        self.setting
    }
}

/// A whole-factor rate change: linear interpolation up, averaging down.
#[derive(Clone, Copy, Debug)]
enum Resample {
    /// `factor` output samples per input sample.
    Up(usize),
    /// One output sample per `factor` input samples.
    Down(usize),
}

impl Resample {
    /// From `from` Hz to `to` Hz (one a whole multiple of the other).
    fn new(from: u32, to: u32) -> Resample {
        if to >= from { Resample::Up((to / from).max(1) as usize) } else { Resample::Down((from / to) as usize) }
    }

    /// Output samples for `n` input samples.
    fn out_len(self, n: usize) -> usize {
        match self {
            Resample::Up(f) => n * f,
            Resample::Down(f) => n / f,
        }
    }

    /// Resamples `input` into `out` (at least [`Resample::out_len`] long); `prev` is the last input
    /// sample of the call before (interpolation starts from it) and becomes this call's last.
    fn run(self, input: &[i16], prev: &mut i16, out: &mut [i16]) {
        match self {
            Resample::Up(f) => {
                let mut p = i32::from(*prev);
                for (&s, o) in input.iter().zip(out.chunks_exact_mut(f)) {
                    let s = i32::from(s);
                    for (k, o) in o.iter_mut().enumerate() {
                        *o = (p + (s - p) * (k as i32 + 1) / f as i32) as i16;
                    }
                    p = s;
                }
            }
            Resample::Down(f) => {
                for (chunk, o) in input.chunks_exact(f).zip(out.iter_mut()) {
                    let sum: i32 = chunk.iter().map(|&s| i32::from(s)).sum();
                    *o = (sum / f as i32) as i16;
                }
            }
        }
        if let Some(&last) = input.last() {
            *prev = last;
        }
    }
}

/// Concealment for the codecs without their own: the last frame again, each time at 3/4 of the level
/// of the one before, silence after [`G711_MAX_CONCEALED`] frames.
struct Fade {
    last: [i16; MAX_FRAME],
    last_len: usize,
    concealed: u32,
}

impl Fade {
    fn new() -> Fade {
        Fade { last: [0; MAX_FRAME], last_len: 0, concealed: 0 }
    }

    /// Remembers a decoded frame.
    fn keep(&mut self, frame: &[i16]) {
        let n = frame.len().min(MAX_FRAME);
        self.last[..n].copy_from_slice(&frame[..n]);
        self.last_len = n;
        self.concealed = 0;
    }

    /// Writes one concealed frame into `out`; returns its length.
    fn conceal(&mut self, out: &mut [i16]) -> usize {
        let n = if self.last_len == 0 { out.len().min(MAX_FRAME) } else { self.last_len.min(out.len()) };
        self.concealed += 1;
        if self.concealed > G711_MAX_CONCEALED || self.last_len == 0 {
            out[..n].fill(0);
            return n;
        }
        for (o, s) in out[..n].iter_mut().zip(self.last[..n].iter_mut()) {
            *s = ((i32::from(*s) * 3) / 4) as i16;
            *o = *s;
        }
        n
    }
}

/// The last steps of a decoder without concealment of its own: its samples brought to the mixing rate,
/// and the fading repetition when a frame is lost.
struct ToMix {
    resample: Resample,
    prev_sample: i16,
    fade: Fade,
}

impl ToMix {
    /// From the codec's sampling rate `from` to the mixing rate `to`.
    fn new(from: u32, to: u32) -> ToMix {
        ToMix { resample: Resample::new(from, to), prev_sample: 0, fade: Fade::new() }
    }

    /// Mixing-rate samples for `n` decoded samples.
    fn out_len(&self, n: usize) -> usize {
        self.resample.out_len(n)
    }

    /// Brings the decoded `pcm` to the mixing rate in `out` (at least [`ToMix::out_len`] long).
    fn frame(&mut self, pcm: &[i16], out: &mut [i16]) -> usize {
        let n = self.out_len(pcm.len());
        self.resample.run(pcm, &mut self.prev_sample, &mut out[..n]);
        self.fade.keep(&out[..n]);
        n
    }

    /// One concealed frame in `out`.
    fn conceal(&mut self, out: &mut [i16]) -> usize {
        let n = self.fade.conceal(out);
        self.prev_sample = out.get(n.wrapping_sub(1)).copied().unwrap_or(0);
        n
    }
}

/// G.711 decoding at a mixing rate, with fade-out concealment.
pub struct G711Decoder {
    kind: CodecKind,
    to_mix: ToMix,
    pcm: [i16; MAX_FRAME],
}

impl G711Decoder {
    /// A decoder for PCMU or PCMA producing frames at `rate`.
    pub fn new(kind: CodecKind, rate: u32) -> G711Decoder {
        G711Decoder { kind, to_mix: ToMix::new(8_000, rate), pcm: [0; MAX_FRAME] }
    }
}

impl Decoder for G711Decoder {
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, Error> {
        let n = self.to_mix.out_len(payload.len());
        if n > out.len() || n > MAX_FRAME || payload.len() > MAX_FRAME {
            return Err(Error::BufferTooSmall);
        }
        let table = if self.kind == CodecKind::Pcmu { &ULAW_TO_LINEAR } else { &ALAW_TO_LINEAR };
        let pcm = &mut self.pcm[..payload.len()];
        for (p, &b) in pcm.iter_mut().zip(payload) {
            *p = table[usize::from(b)];
        }
        Ok(self.to_mix.frame(pcm, out))
    }

    fn conceal(&mut self, out: &mut [i16]) -> Result<usize, Error> {
        Ok(self.to_mix.conceal(out))
    }
}

/// G.711 encoding from a mixing rate.
pub struct G711Encoder {
    setting: CodecSetting,
    from_mix: Resample,
}

impl Encoder for G711Encoder {
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, Error> {
        let n = self.from_mix.out_len(pcm.len());
        let out = out.get_mut(..n).ok_or(Error::BufferTooSmall)?;
        let mut narrow = [0i16; MAX_FRAME];
        let narrow = narrow.get_mut(..n).ok_or(Error::BufferTooSmall)?;
        self.from_mix.run(pcm, &mut 0, narrow);
        let ulaw = self.setting.kind == CodecKind::Pcmu;
        for (o, &s) in out.iter_mut().zip(narrow.iter()) {
            *o = if ulaw { linear_to_ulaw(s) } else { linear_to_alaw(s) };
        }
        Ok(n)
    }

    fn setting(&self) -> CodecSetting {
        self.setting
    }
}

/// G.722 decoding at a mixing rate, with fade-out concealment.
pub struct G722FrameDecoder {
    inner: G722Decoder,
    to_mix: ToMix,
    pcm: [i16; MAX_FRAME],
}

impl G722FrameDecoder {
    /// A decoder producing frames at `rate`.
    pub fn new(rate: u32) -> G722FrameDecoder {
        G722FrameDecoder { inner: G722Decoder::default(), to_mix: ToMix::new(16_000, rate), pcm: [0; MAX_FRAME] }
    }
}

impl Decoder for G722FrameDecoder {
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, Error> {
        let wide = payload.len() * 2;
        let n = self.to_mix.out_len(wide);
        if n > out.len() || n > MAX_FRAME || wide > MAX_FRAME {
            return Err(Error::BufferTooSmall);
        }
        let pcm = &mut self.pcm[..wide];
        self.inner.decode(payload, pcm);
        Ok(self.to_mix.frame(pcm, out))
    }

    fn conceal(&mut self, out: &mut [i16]) -> Result<usize, Error> {
        Ok(self.to_mix.conceal(out))
    }
}

/// G.722 encoding from a mixing rate.
pub struct G722FrameEncoder {
    setting: CodecSetting,
    inner: G722Encoder,
    from_mix: Resample,
    /// The last mixed sample of the frame before (up-sampling from 8 kHz starts from it).
    prev_sample: i16,
    /// One 20 ms frame at 16 kHz.
    pcm: [i16; 320],
}

impl Encoder for G722FrameEncoder {
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, Error> {
        let wide = self.from_mix.out_len(pcm.len());
        let frame = self.pcm.get_mut(..wide).ok_or(Error::BufferTooSmall)?;
        self.from_mix.run(pcm, &mut self.prev_sample, frame);
        let out = out.get_mut(..wide / 2).ok_or(Error::BufferTooSmall)?;
        Ok(self.inner.encode(frame, out))
    }

    fn setting(&self) -> CodecSetting {
        self.setting
    }
}

const fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let t = (((u & 0x0f) as i32) << 3) + 0x84;
    let t = t << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

const fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = ((a & 0x0f) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw { alaw_to_linear(i as u8) } else { ulaw_to_linear(i as u8) };
        i += 1;
    }
    t
}

/// µ-law byte to linear sample.
pub static ULAW_TO_LINEAR: [i16; 256] = table(false);
/// A-law byte to linear sample.
pub static ALAW_TO_LINEAR: [i16; 256] = table(true);

/// Linear sample to µ-law (G.711, bias 0x84, clip at 32635).
pub fn linear_to_ulaw(s: i16) -> u8 {
    let mut v = i32::from(s);
    let sign = if v < 0 {
        v = -v;
        0x80
    } else {
        0
    };
    v = v.min(32_635) + 0x84;
    let exp = (31 - (v as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (v >> (exp + 3)) & 0x0f;
    !(sign | (exp << 4) as u8 | mantissa as u8)
}

/// Linear sample to A-law (G.711).
pub fn linear_to_alaw(s: i16) -> u8 {
    let mut v = i32::from(s);
    let sign = if v >= 0 {
        0x80
    } else {
        v = -v - 1;
        0
    };
    v = v.min(32_767);
    let out = if v < 256 {
        (v >> 4) as u8
    } else {
        let exp = (31 - (v as u32).leading_zeros() as i32 - 7).clamp(1, 7);
        ((exp << 4) as u8) | ((v >> (exp + 3)) & 0x0f) as u8
    };
    (sign | out) ^ 0x55
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, amp: f64, n: usize, phase0: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * hz * (i + phase0) as f64 / f64::from(rate)).sin()) as i16)
            .collect()
    }

    #[test]
    fn g711_tables_round_trip_every_code() {
        for b in 0..=255u8 {
            assert_eq!(linear_to_ulaw(ULAW_TO_LINEAR[b as usize]), if b == 0x7f { 0xff } else { b }, "ulaw {b:#x}");
            assert_eq!(linear_to_alaw(ALAW_TO_LINEAR[b as usize]), b, "alaw {b:#x}");
        }
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(ULAW_TO_LINEAR[0], -32124);
        assert_eq!(ALAW_TO_LINEAR[0xd5], 8);
    }

    #[test]
    fn g711_codes_a_tone_at_every_mixing_rate() {
        for kind in [CodecKind::Pcmu, CodecKind::Pcma] {
            for rate in MIX_RATES {
                let n = frame_samples(rate);
                let mut enc = encoder(CodecSetting::g711(kind), rate, 0).unwrap();
                let mut dec = decoder(kind, rate).unwrap();
                let pcm = tone(rate, 500.0, 8000.0, n, 0);
                let mut payload = [0u8; 400];
                let len = enc.encode(&pcm, &mut payload).unwrap();
                assert_eq!(len, 160);
                let mut out = [0i16; MAX_FRAME];
                assert_eq!(dec.decode(&payload[..len], &mut out).unwrap(), n);
                let err: f64 = pcm.iter().zip(&out).skip(8).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>();
                let sig: f64 = pcm.iter().map(|a| f64::from(*a).powi(2)).sum();
                assert!(sig / err > 20.0, "{kind:?} at {rate}: SNR {}", sig / err);
            }
        }
    }

    #[test]
    fn g722_codes_a_tone_at_every_mixing_rate() {
        for rate in MIX_RATES {
            let n = frame_samples(rate);
            let mut enc = encoder(CodecSetting::g722(), rate, 0).unwrap();
            let mut dec = decoder(CodecKind::G722, rate).unwrap();
            assert_eq!(enc.setting().kind, CodecKind::G722);
            let (mut input, mut output) = (Vec::new(), Vec::new());
            for f in 0..10 {
                let pcm = tone(rate, 700.0, 8000.0, n, f * n);
                let mut payload = [0u8; 400];
                let len = enc.encode(&pcm, &mut payload).unwrap();
                assert_eq!(len, 160, "one octet per two 16 kHz samples");
                let mut out = [0i16; MAX_FRAME];
                assert_eq!(dec.decode(&payload[..len], &mut out).unwrap(), n);
                input.extend_from_slice(&pcm);
                output.extend_from_slice(&out[..n]);
            }
            // The two QMFs delay the audio by 22 samples at 16 kHz (plus the rate changes').
            let snr = |delay: usize| {
                let (mut sig, mut err) = (0.0, 0.0);
                for i in 3 * n..input.len() - delay {
                    sig += f64::from(input[i]).powi(2);
                    err += (f64::from(input[i]) - f64::from(output[i + delay])).powi(2);
                }
                sig / err
            };
            let best = (0..4 * n / 10).map(snr).fold(0.0, f64::max);
            assert!(best > 100.0, "at {rate} Hz: SNR {best}");
        }
        let mut dec = decoder(CodecKind::G722, 48_000).unwrap();
        let mut out = [0i16; MAX_FRAME];
        assert_eq!(dec.conceal(&mut out).unwrap(), MAX_FRAME, "nothing to repeat yet: a silent frame");
        assert!(out.iter().all(|s| *s == 0));
        assert!(dec.decode(&[0u8; 481], &mut out).is_err(), "more than 20 ms");
    }

    #[test]
    fn g711_concealment_fades_then_goes_silent() {
        let mut dec = G711Decoder::new(CodecKind::Pcmu, 8_000);
        let payload: Vec<u8> = tone(8_000, 400.0, 10000.0, 160, 0).into_iter().map(linear_to_ulaw).collect();
        let mut out = [0i16; MAX_FRAME];
        dec.decode(&payload, &mut out).unwrap();
        let peak = |o: &[i16]| o.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        let first = peak(&out[..160]);
        let mut last = first;
        for _ in 0..G711_MAX_CONCEALED {
            dec.conceal(&mut out).unwrap();
            let p = peak(&out[..160]);
            assert!(p < last && p > 0);
            last = p;
        }
        dec.conceal(&mut out).unwrap();
        assert_eq!(peak(&out[..160]), 0);
    }

    #[test]
    fn opus_round_trip_conceal_and_fec() {
        let rate = 48_000;
        let n = frame_samples(rate);
        let mut enc = encoder(CodecSetting::opus(32_000), rate, 5).unwrap();
        let mut dec = decoder(CodecKind::Opus, rate).unwrap();
        let mut packets = Vec::new();
        for f in 0..10 {
            let pcm = tone(rate, 600.0, 8000.0, n, f * n);
            let mut buf = [0u8; MAX_PAYLOAD];
            let len = enc.encode(&pcm, &mut buf).unwrap();
            packets.push(buf[..len].to_vec());
        }
        let mut out = [0i16; MAX_FRAME];
        for p in &packets[..5] {
            assert_eq!(dec.decode(p, &mut out).unwrap(), n);
        }
        assert_eq!(dec.conceal(&mut out).unwrap(), n);
        assert_eq!(dec.recover(&packets[7], &mut out).unwrap(), n);
        assert!(dec.decode(&[0xff, 0xff, 0xff], &mut out).is_err() || out.len() == MAX_FRAME);
        assert!(encoder(CodecSetting::opus(32_000), 44_100, 5).is_err());
    }
}
