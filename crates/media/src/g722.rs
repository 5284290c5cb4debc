//! ITU-T G.722: 7 kHz audio by sub-band ADPCM, in mode 1 (64 kbit/s: 6 bits for the lower band, 2 for the
//! higher band of each pair of 16 kHz samples). One octet of the RTP payload (RFC 3551 §4.5.2: payload
//! type 9, `G722/8000` in SDP although the audio is sampled at 16 kHz) holds one code word, the higher
//! band's 2 bits on top.
//!
//! The blocks follow the recommendation's names: the transmit and receive quadrature mirror filters
//! (24 taps), and per sub-band the quantizers (QUANTL, QUANTH), the inverse quantizers (INVQAL, INVQBL,
//! INVQAH), the scale factor adaptation (LOGSCL, SCALEL, LOGSCH, SCALEH) and the adaptive predictor of
//! two poles and six zeros (block 4: RECONS, PARREC, UPPOL1, UPPOL2, UPZERO, DELAYA, FILTEP, FILTEZ,
//! PREDIC). Arithmetic is the recommendation's fixed point (16-bit saturation), so a stream we encode is
//! decoded by any conforming decoder as by ours.
//!
//! Left out: modes 2 and 3 (56 and 48 kbit/s, which only a decoder told out of band would use) and the
//! packet loss concealment of G.722 Appendices III/IV (the caller conceals, see [`crate::codec`]).

/// The quadrature mirror filter's coefficients h0..h11 (the other twelve are these reversed).
const QMF: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];
/// QUANTL decision levels for the magnitude of the lower band's difference signal (scaled by `det`).
const Q6: [i32; 31] = [
    0,
    35,
    72,
    110,
    150,
    190,
    233,
    276,
    323,
    370,
    422,
    473,
    530,
    587,
    650,
    714,
    786,
    858,
    940,
    1023,
    1121,
    1219,
    1339,
    1458,
    1612,
    1765,
    1980,
    2195,
    2557,
    2919,
    i32::MAX,
];
/// QUANTL codes for interval `i` of a negative difference.
const ILN: [u8; 31] = [
    63, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5,
    4,
];
/// QUANTL codes for interval `i` of a positive difference.
const ILP: [u8; 31] = [
    61, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34,
    33, 32,
];
/// INVQAL: the 4-bit inverse quantizer the predictor runs on (the code's top four bits).
const QM4: [i32; 16] =
    [0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584, 1200, 0];
/// INVQBL in mode 1: the 6-bit inverse quantizer of the lower band's reconstructed signal.
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232, -9360, -8576,
    -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776, -2400, -2032, -1688, -1360, -1040,
    -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280, 11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456,
    4944, 4464, 4008, 3576, 3168, 2776, 2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
/// LOGSCL: the 4-bit code's magnitude class, and the log scale factor multiplier of each class.
const RL42: [usize; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
/// SCALEL/SCALEH: the mantissa of the log-to-linear conversion.
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834, 2896, 2960, 3025,
    3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
/// INVQAH: the higher band's 2-bit inverse quantizer.
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
/// LOGSCH: the 2-bit code's magnitude class, and its multiplier.
const RH2: [usize; 4] = [2, 1, 2, 1];
const WH: [i32; 3] = [0, -214, 798];

/// Saturates to 16 bits, as every adder of the recommendation does.
fn sat(v: i32) -> i32 {
    v.clamp(-32_768, 32_767)
}

/// The quadrature mirror filter over `x` (oldest first): the sums over the values at even positions
/// (h0..h11) and at odd positions (h11..h0).
fn qmf(x: &[i32; 24]) -> (i32, i32) {
    let (mut even, mut odd) = (0, 0);
    for i in 0..12 {
        even += x[2 * i] * QMF[i];
        odd += x[2 * i + 1] * QMF[11 - i];
    }
    (even, odd)
}

/// The adaptive predictor and scale factor of one sub-band.
#[derive(Clone, Debug)]
struct SubBand {
    /// Predictor output (the signal estimate).
    s: i32,
    /// Pole and zero sections' contributions.
    sp: i32,
    sz: i32,
    /// Reconstructed signal, now and the two before.
    r: [i32; 3],
    /// Pole coefficients (index 1 and 2) and their updates.
    a: [i32; 3],
    ap: [i32; 3],
    /// Partially reconstructed signal, now and the two before.
    p: [i32; 3],
    /// Quantized difference signal, now and the six before.
    d: [i32; 7],
    /// Zero coefficients (1..=6) and their updates.
    b: [i32; 7],
    bp: [i32; 7],
    /// Log scale factor and the linear one.
    nb: i32,
    det: i32,
}

impl SubBand {
    fn new(det: i32) -> SubBand {
        SubBand {
            s: 0,
            sp: 0,
            sz: 0,
            r: [0; 3],
            a: [0; 3],
            ap: [0; 3],
            p: [0; 3],
            d: [0; 7],
            b: [0; 7],
            bp: [0; 7],
            nb: 0,
            det,
        }
    }

    /// LOGSCL/LOGSCH and SCALEL/SCALEH: adapts the scale factor by multiplier `w`, the log factor
    /// limited to `max`; `shift` is 8 for the lower band and 10 for the higher.
    fn adapt_scale(&mut self, w: i32, max: i32, shift: i32) {
        self.nb = (((self.nb * 127) >> 7) + w).clamp(0, max);
        let mantissa = ILB[((self.nb >> 6) & 31) as usize];
        let exponent = shift - (self.nb >> 11);
        let linear = if exponent < 0 { mantissa << -exponent } else { mantissa >> exponent };
        self.det = linear << 2;
    }

    /// Block 4: the predictor, given the quantized difference `d`.
    fn predict(&mut self, d: i32) {
        // RECONS and PARREC
        self.d[0] = d;
        self.r[0] = sat(self.s + d);
        self.p[0] = sat(self.sz + d);
        let sign = |v: i32| v >> 15;
        // UPPOL2: the second pole.
        let wd1 = sat(self.a[1] << 2);
        let wd2 = if sign(self.p[0]) == sign(self.p[1]) { -wd1 } else { wd1 }.min(32_767);
        let mut a2 = if sign(self.p[0]) == sign(self.p[2]) { 128 } else { -128 };
        a2 += wd2 >> 7;
        a2 += (self.a[2] * 32_512) >> 15;
        self.ap[2] = a2.clamp(-12_288, 12_288);
        // UPPOL1: the first pole, limited by the second.
        let step = if sign(self.p[0]) == sign(self.p[1]) { 192 } else { -192 };
        let limit = sat(15_360 - self.ap[2]);
        self.ap[1] = sat(step + ((self.a[1] * 32_640) >> 15)).clamp(-limit, limit);
        // UPZERO: the six zeros.
        let step = if d == 0 { 0 } else { 128 };
        for i in 1..7 {
            let toward = if sign(self.d[i]) == sign(d) { step } else { -step };
            self.bp[i] = sat(toward + ((self.b[i] * 32_640) >> 15));
        }
        // DELAYA
        for i in (1..7).rev() {
            self.d[i] = self.d[i - 1];
            self.b[i] = self.bp[i];
        }
        for i in (1..3).rev() {
            self.r[i] = self.r[i - 1];
            self.p[i] = self.p[i - 1];
            self.a[i] = self.ap[i];
        }
        // FILTEP, FILTEZ and PREDIC
        let pole = |a: i32, r: i32| (a * sat(r + r)) >> 15;
        self.sp = sat(pole(self.a[1], self.r[1]) + pole(self.a[2], self.r[2]));
        let mut sz = 0;
        for i in (1..7).rev() {
            sz += (self.b[i] * sat(self.d[i] + self.d[i])) >> 15;
        }
        self.sz = sat(sz);
        self.s = sat(self.sp + self.sz);
    }

    /// The lower band's prediction and scale adaptation for 6-bit code `ilow` (on its top four bits).
    fn update_low(&mut self, ilow: u8) {
        let ril = usize::from(ilow >> 2);
        let d = (self.det * QM4[ril]) >> 15;
        self.adapt_scale(WL[RL42[ril]], 18_432, 8);
        self.predict(d);
    }

    /// The higher band's prediction and scale adaptation for 2-bit code `ihigh`; returns its quantized
    /// difference.
    fn update_high(&mut self, ihigh: u8) -> i32 {
        let d = (self.det * QM2[usize::from(ihigh)]) >> 15;
        self.adapt_scale(WH[RH2[usize::from(ihigh)]], 22_528, 10);
        self.predict(d);
        d
    }
}

/// A G.722 mode 1 encoder: 16 kHz samples in, one octet per two samples out.
#[derive(Clone, Debug)]
pub struct G722Encoder {
    /// The transmit QMF's last 24 input samples, oldest first.
    x: [i32; 24],
    low: SubBand,
    high: SubBand,
}

impl Default for G722Encoder {
    fn default() -> Self {
        G722Encoder { x: [0; 24], low: SubBand::new(32), high: SubBand::new(8) }
    }
}

impl G722Encoder {
    /// Encodes `pcm` (16 kHz, an even number of samples) into `out`; returns the octets written
    /// (`pcm.len() / 2`, or fewer if `out` is shorter).
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        let mut n = 0;
        for (pair, o) in pcm.chunks_exact(2).zip(out.iter_mut()) {
            *o = self.encode_pair(i32::from(pair[0]), i32::from(pair[1]));
            n += 1;
        }
        n
    }

    fn encode_pair(&mut self, first: i32, second: i32) -> u8 {
        // Transmit QMF: the two sub-band samples of this pair.
        self.x.copy_within(2.., 0);
        self.x[22] = first;
        self.x[23] = second;
        let (even, odd) = qmf(&self.x);
        let xlow = (odd + even) >> 14;
        let xhigh = (odd - even) >> 14;

        // Lower band: SUBTRA, QUANTL.
        let el = sat(xlow - self.low.s);
        let magnitude = if el >= 0 { el } else { -(el + 1) };
        let interval = (1..30).find(|&i| magnitude < (Q6[i] * self.low.det) >> 12).unwrap_or(30);
        let ilow = if el < 0 { ILN[interval] } else { ILP[interval] };
        self.low.update_low(ilow);

        // Higher band: SUBTRA, QUANTH.
        let eh = sat(xhigh - self.high.s);
        let magnitude = if eh >= 0 { eh } else { -(eh + 1) };
        let outer = magnitude >= (564 * self.high.det) >> 12;
        let ihigh: u8 = match (eh < 0, outer) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        };
        self.high.update_high(ihigh);
        (ihigh << 6) | ilow
    }
}

/// A G.722 mode 1 decoder: one octet in, two 16 kHz samples out.
#[derive(Clone, Debug)]
pub struct G722Decoder {
    /// The receive QMF's last 24 values, oldest first.
    x: [i32; 24],
    low: SubBand,
    high: SubBand,
}

impl Default for G722Decoder {
    fn default() -> Self {
        G722Decoder { x: [0; 24], low: SubBand::new(32), high: SubBand::new(8) }
    }
}

impl G722Decoder {
    /// Decodes `codes` into `out` (16 kHz); returns the samples written (`2 * codes.len()`, or fewer if
    /// `out` is shorter).
    pub fn decode(&mut self, codes: &[u8], out: &mut [i16]) -> usize {
        let mut n = 0;
        for (&code, pair) in codes.iter().zip(out.chunks_exact_mut(2)) {
            let (a, b) = self.decode_code(code);
            pair[0] = a;
            pair[1] = b;
            n += 2;
        }
        n
    }

    fn decode_code(&mut self, code: u8) -> (i16, i16) {
        let ilow = code & 0x3f;
        let ihigh = code >> 6;
        // Lower band: INVQBL for the output, then the predictor on the 4-bit difference.
        let rlow = (self.low.s + ((self.low.det * QM6[usize::from(ilow)]) >> 15)).clamp(-16_384, 16_383);
        self.low.update_low(ilow);
        // Higher band.
        let s = self.high.s;
        let dhigh = self.high.update_high(ihigh);
        let rhigh = sat(dhigh + s).clamp(-16_384, 16_383);
        // Receive QMF.
        self.x.copy_within(2.., 0);
        self.x[22] = rlow + rhigh;
        self.x[23] = rlow - rhigh;
        let (even, odd) = qmf(&self.x);
        (sat(odd >> 11) as i16, sat(even >> 11) as i16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, amplitude: f64, n: usize) -> Vec<i16> {
        (0..n).map(|i| (amplitude * (2.0 * std::f64::consts::PI * hz * i as f64 / 16_000.0).sin()) as i16).collect()
    }

    /// Signal-to-noise ratio (dB) of `out` against `input` delayed by `delay` samples, after the first 800.
    fn snr(input: &[i16], out: &[i16], delay: usize) -> f64 {
        let (mut sig, mut err) = (0.0, 0.0);
        for i in 800..input.len() - delay {
            let x = f64::from(input[i]);
            sig += x * x;
            err += (x - f64::from(out[i + delay])).powi(2);
        }
        10.0 * (sig / err).log10()
    }

    fn round_trip(input: &[i16]) -> Vec<i16> {
        let mut enc = G722Encoder::default();
        let mut dec = G722Decoder::default();
        let mut codes = vec![0u8; input.len() / 2];
        assert_eq!(enc.encode(input, &mut codes), input.len() / 2);
        let mut out = vec![0i16; input.len()];
        assert_eq!(dec.decode(&codes, &mut out), input.len());
        out
    }

    /// The delay of the two QMFs together, in 16 kHz samples.
    const DELAY: usize = 22;

    #[test]
    fn tones_in_both_sub_bands_come_back_with_little_noise() {
        for (hz, min_snr) in [(440.0, 45.0), (1_000.0, 40.0), (3_000.0, 35.0), (6_000.0, 20.0)] {
            let input = tone(hz, 8_000.0, 16_000);
            let out = round_trip(&input);
            let best = (DELAY - 2..DELAY + 3)
                .map(|d| (snr(&input, &out, d), d))
                .fold((f64::MIN, 0), |a, b| if b.0 > a.0 { b } else { a });
            assert!(best.0 > min_snr, "{hz} Hz: SNR {:.1} dB at delay {}", best.0, best.1);
            assert_eq!(best.1, DELAY, "{hz} Hz");
        }
    }

    #[test]
    fn silence_stays_silent_and_loud_input_does_not_wrap() {
        let out = round_trip(&[0i16; 3_200]);
        assert!(out.iter().all(|s| s.unsigned_abs() < 8), "{:?}", &out[..40]);
        let loud = tone(800.0, 32_000.0, 8_000);
        let out = round_trip(&loud);
        assert!(snr(&loud, &out, DELAY) > 20.0);
        // A square wave at full scale: saturates, never overflows.
        let square: Vec<i16> = (0..8_000).map(|i| if (i / 20) % 2 == 0 { i16::MAX } else { i16::MIN }).collect();
        round_trip(&square);
    }

    #[test]
    fn every_code_decodes_without_panic() {
        let mut dec = G722Decoder::default();
        let codes: Vec<u8> = (0..=255).cycle().take(4_096).collect();
        let mut out = vec![0i16; codes.len() * 2];
        assert_eq!(dec.decode(&codes, &mut out), out.len());
    }
}
