//! A soft limiter: many talkers summed in 32 bits come out in 16 bits without wrapping and without
//! hard clipping (the complaint of research/anchors.md §6.2, Janus PRs #3593/#3601/#3610).
//!
//! Per 20 ms frame the limiter finds the peak of the 32-bit sum and the gain that brings it to the
//! threshold. The gain drops at once (attack within the frame, applied from its first sample, so no
//! sample ever passes the threshold), and recovers slowly (release: at most [`RELEASE_PER_FRAME`] per
//! frame, ramped sample by sample, never above what the current frame allows). The output is
//! therefore always within ±threshold: no wrap, no clip, and gain changes without clicks on release.

/// Gain recovery per frame (1 dB per 20 ms frame: 20 dB of gain reduction recovers in 0.4 s).
pub const RELEASE_PER_FRAME: f32 = 1.122;

/// The limiter state of one mix.
#[derive(Clone, Copy, Debug)]
pub struct Limiter {
    gain: f32,
    threshold: f32,
}

impl Limiter {
    /// A limiter whose output never exceeds `threshold` in magnitude.
    pub fn new(threshold: i16) -> Limiter {
        Limiter { gain: 1.0, threshold: f32::from(threshold.max(1)) }
    }

    /// The gain applied at the end of the last frame.
    pub fn gain(&self) -> f32 {
        self.gain
    }

    /// Limits `input` (a 32-bit sum) into `out`.
    pub fn process(&mut self, input: &[i32], out: &mut [i16]) {
        let peak = input.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0) as f32;
        let allowed = if peak > self.threshold { self.threshold / peak } else { 1.0 };
        let start = self.gain.min(allowed);
        let end = (self.gain * RELEASE_PER_FRAME).min(allowed).min(1.0);
        let end = if allowed < self.gain { allowed } else { end };
        let n = input.len().min(out.len());
        if start == 1.0 && end == 1.0 {
            // the common case: nothing to limit
            for (o, &s) in out[..n].iter_mut().zip(input) {
                *o = s as i16;
            }
        } else {
            let step = if n > 0 { (end - start) / n as f32 } else { 0.0 };
            let mut g = start;
            let t = self.threshold;
            for (o, &s) in out[..n].iter_mut().zip(input) {
                g += step;
                let v = (s as f32 * g.min(allowed)).clamp(-t, t);
                *o = v as i16;
            }
        }
        self.gain = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(amp: f64, hz: f64, n: usize, off: usize) -> Vec<f64> {
        (0..n).map(|i| amp * (2.0 * std::f64::consts::PI * hz * (i + off) as f64 / 48_000.0).sin()).collect()
    }

    #[test]
    fn ten_loud_talkers_never_wrap_or_clip() {
        let mut lim = Limiter::new(29_000);
        let mut worst = 0i32;
        let mut at_threshold = 0usize;
        for frame in 0..200 {
            let mut sum = vec![0i32; 960];
            for t in 0..10 {
                for (s, v) in sum.iter_mut().zip(sine(30_000.0, 200.0 + 97.0 * t as f64, 960, frame * 960)) {
                    *s += v as i32;
                }
            }
            let mut out = vec![0i16; 960];
            lim.process(&sum, &mut out);
            for (o, s) in out.iter().zip(&sum) {
                assert!(i64::from(*o) * i64::from(*s) >= 0, "sign kept: no wrap");
                worst = worst.max(i32::from(*o).abs());
                at_threshold += usize::from(i32::from(*o).abs() >= 29_000);
            }
        }
        assert!(worst <= 29_000, "{worst}");
        // a hard clipper would flatten thousands of samples at the rail; a limiter touches only the peaks
        assert!(at_threshold < 200 * 960 / 100, "{at_threshold} samples at the threshold");
    }

    #[test]
    fn quiet_input_passes_unchanged_and_gain_recovers() {
        let mut lim = Limiter::new(29_000);
        let quiet: Vec<i32> = sine(5_000.0, 440.0, 960, 0).into_iter().map(|v| v as i32).collect();
        let mut out = vec![0i16; 960];
        lim.process(&quiet, &mut out);
        assert!(out.iter().zip(&quiet).all(|(o, q)| i32::from(*o) == *q));
        let loud: Vec<i32> = quiet.iter().map(|q| q * 20).collect();
        lim.process(&loud, &mut out);
        assert!(lim.gain() < 0.5);
        for _ in 0..100 {
            lim.process(&quiet, &mut out);
        }
        assert_eq!(lim.gain(), 1.0);
    }
}
