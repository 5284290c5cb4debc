//! The signals participants send and what a receiver reads from the mix it hears.
//!
//! Talker `t` of a conference sends a sine at `400 (t + 1)` Hz with a gap of silence once a second, the
//! gaps of the talkers staggered over the second; listeners send a sine at `600 + 400 (j mod 7)` Hz at
//! -58 dBov, below a bridge's voice threshold (an open microphone in a quiet room). Every frequency is a
//! multiple of 100 Hz, so a 10 ms rectangular window holds whole periods of each: a sliding DFT bin
//! ([`Bin`]) at one of them reads that tone's amplitude and nothing of the others (they are orthogonal
//! over the window), sample by sample, at a few multiplications per sample.
//!
//! From the amplitude of a talker's tone in the mix a receiver tells whether the tone is there (its mean
//! over each second, [`Bin`]) and when it comes back after the talker's gap ([`Onset`]): the window is
//! half full of the tone when its amplitude crosses half the steady level, so the onset is placed half a
//! window before that sample. The talker's gap end is known to the sample, so the time from the talker
//! "saying" it (capturing the sample) to the receiver hearing it (the arrival of the packet that carries
//! it, played at once) is the mouth-to-ear latency through the bridge.

use std::f64::consts::PI;

/// Length of the signal's repeating pattern, milliseconds (one gap per talker per period).
pub const PERIOD_MS: u64 = 1000;
/// Peak amplitude of a talker (about -18 dBov RMS), for up to four talkers; more share 24,000.
pub const TALKER_AMPLITUDE: f64 = 6000.0;
/// Peak amplitude of a listener's tone: -58 dBov RMS, 8 dB under a -50 dBov voice threshold.
pub const LISTENER_AMPLITUDE: f64 = 58.0;
/// Off for at least this long before a rise counts as an onset, milliseconds.
const MIN_OFF_MS: u64 = 20;

/// A silent stretch in every period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gap {
    /// Start within the period, milliseconds.
    pub start_ms: u32,
    /// Length, milliseconds.
    pub len_ms: u32,
}

impl Gap {
    /// End within the period, milliseconds (the tone's onset).
    pub fn end_ms(&self) -> u32 {
        self.start_ms + self.len_ms
    }
}

/// What one participant sends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Voice {
    /// Tone frequency, a multiple of 100 Hz.
    pub hz: u32,
    /// Peak amplitude.
    pub amplitude: f64,
    /// Silent once a period (talkers).
    pub gap: Option<Gap>,
}

impl Voice {
    /// Talker `t` of `k`: `400 (t + 1)` Hz, a gap of `gap_ms` at `t / k` of the period.
    pub fn talker(t: usize, k: usize, gap_ms: u32) -> Voice {
        let k = k.max(1);
        let amplitude = if k <= 4 { TALKER_AMPLITUDE } else { 24_000.0 / k as f64 };
        let start_ms = (t as u64 * PERIOD_MS / k as u64) as u32;
        Voice { hz: 400 * (t as u32 + 1), amplitude, gap: Some(Gap { start_ms, len_ms: gap_ms }) }
    }

    /// Listener `j`: between the talkers' frequencies, quiet, no gap.
    pub fn listener(j: usize) -> Voice {
        Voice { hz: 600 + 400 * (j % 7) as u32, amplitude: LISTENER_AMPLITUDE, gap: None }
    }

    /// Sample `s` (from the start) at `rate`.
    pub fn sample(&self, s: u64, rate: u32) -> i16 {
        let period = PERIOD_MS * u64::from(rate) / 1000;
        let within_ms = (s % period) * 1000 / u64::from(rate);
        if let Some(g) = self.gap
            && (u64::from(g.start_ms)..u64::from(g.end_ms())).contains(&within_ms)
        {
            return 0;
        }
        // Whole periods per second: the phase repeats every period.
        let phase = 2.0 * PI * f64::from(self.hz) * (s % period) as f64 / f64::from(rate);
        (self.amplitude * phase.sin()).round() as i16
    }

    /// Frame `k` (20 ms) at `rate` into `out`.
    pub fn frame(&self, k: u64, rate: u32, out: &mut [i16]) {
        let n = out.len() as u64;
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.sample(k * n + i as u64, rate);
        }
    }
}

/// A sliding DFT bin over the last `W = rate / 100` samples (10 ms) at a multiple of 100 Hz: after each
/// sample, [`Bin::amplitude`] is the tone's amplitude in the window.
#[derive(Clone, Debug)]
pub struct Bin {
    /// Frequency.
    pub hz: u32,
    rot: (f64, f64),
    re: f64,
    im: f64,
    scale: f64,
}

impl Bin {
    /// A bin at `hz` for samples at `rate`.
    pub fn new(hz: u32, rate: u32) -> Bin {
        let w = -2.0 * PI * f64::from(hz) / f64::from(rate);
        Bin { hz, rot: (w.cos(), w.sin()), re: 0.0, im: 0.0, scale: 2.0 / f64::from(window(rate) as u32) }
    }

    /// Slides the window by one: `new` enters, `old` (the sample `W` back) leaves.
    #[inline]
    pub fn push(&mut self, new: f64, old: f64) {
        // Y(n) = x(n) - x(n - W) + e^{-jw} Y(n - 1), since e^{-jwW} = 1 for whole periods in the window.
        let (c, s) = self.rot;
        let (re, im) = (self.re * c - self.im * s, self.re * s + self.im * c);
        self.re = re + new - old;
        self.im = im;
    }

    /// Amplitude of the tone over the window.
    #[inline]
    pub fn amplitude(&self) -> f64 {
        (self.re * self.re + self.im * self.im).sqrt() * self.scale
    }
}

/// Window length in samples at `rate`: 10 ms.
pub fn window(rate: u32) -> usize {
    (rate / 100) as usize
}

/// A tone coming back: where, and how long it was gone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rise {
    /// Sample position of the onset (fractional): where the tone resumed.
    pub at: f64,
    /// Milliseconds from the amplitude falling under a tenth of its level to the onset. A gap of `G` ms in
    /// the signal reads `G - 0.9 W` (the window `W` must be nine-tenths out of the tone first), so a
    /// silence of another length (a dropout, a stall of the bridge) can be told from the talker's gap.
    pub silent_ms: f64,
}

impl Rise {
    /// Whether this rise ends a gap of `gap_ms` at `rate` (within 15 ms).
    pub fn ends_gap(&self, gap_ms: u32, rate: u32) -> bool {
        let want = f64::from(gap_ms) - 0.9 * window(rate) as f64 * 1000.0 / f64::from(rate);
        (self.silent_ms - want).abs() <= 15.0
    }
}

/// Finds the moments a tone comes back after a silence, from its amplitude sample by sample.
#[derive(Clone, Debug, Default)]
pub struct Onset {
    level: Option<f64>,
    off_since: Option<u64>,
    prev: f64,
}

impl Onset {
    /// Absolute amplitude that first counts as "on" (about -36 dBFS).
    pub const FIRST_ON: f64 = 500.0;

    /// Feeds the amplitude `a` at sample `n`; returns the [`Rise`] when the tone comes back after at least
    /// 20 ms off. `rate` is the sample rate.
    pub fn push(&mut self, n: u64, a: f64, rate: u32) -> Option<Rise> {
        let prev = std::mem::replace(&mut self.prev, a);
        let Some(level) = self.level else {
            if a >= Self::FIRST_ON {
                self.level = Some(a);
            }
            return None;
        };
        match self.off_since {
            None => {
                if a < 0.1 * level {
                    self.off_since = Some(n);
                } else if a > 0.5 * level {
                    // The steady level, slowly (a 50 ms time constant at 16 kHz).
                    self.level = Some(level + (a - level) / 800.0);
                }
                None
            }
            Some(since) => {
                let threshold = 0.5 * level;
                if a < threshold {
                    return None;
                }
                self.off_since = None;
                if (n - since) * 1000 < MIN_OFF_MS * u64::from(rate) {
                    return None; // a flicker, not a gap
                }
                let frac = if a > prev { ((threshold - prev) / (a - prev)).clamp(0.0, 1.0) } else { 1.0 };
                let at = n as f64 - 1.0 + frac - window(rate) as f64 / 2.0;
                Some(Rise { at, silent_ms: (at - since as f64) * 1000.0 / f64::from(rate) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_bin(samples: &[i16], hz: u32, rate: u32) -> Vec<f64> {
        let w = window(rate);
        let mut b = Bin::new(hz, rate);
        (0..samples.len())
            .map(|n| {
                let old = if n >= w { f64::from(samples[n - w]) } else { 0.0 };
                b.push(f64::from(samples[n]), old);
                b.amplitude()
            })
            .collect()
    }

    #[test]
    fn a_bin_reads_its_tone_and_not_the_others() {
        let rate = 16_000;
        let voices = [Voice::talker(0, 3, 60), Voice::talker(1, 3, 60), Voice::listener(0)];
        let n = rate as usize / 2; // 500 ms, before any gap of talker 1 and 2 (at 333, 666 ms); talker 0's gap is at 0..60
        let mix: Vec<i16> =
            (0..n as u64).map(|s| voices.iter().map(|v| i32::from(v.sample(s, rate))).sum::<i32>() as i16).collect();
        let at = |hz| run_bin(&mix, hz, rate)[n - 1];
        assert!((at(800) - 6000.0).abs() < 30.0, "talker 1: {}", at(800));
        assert!((at(400) - 6000.0).abs() < 30.0, "talker 0 after its gap: {}", at(400));
        assert!((at(600) - LISTENER_AMPLITUDE).abs() < 5.0, "listener 0: {}", at(600));
        assert!(at(1200) < 2.0, "nobody at 1200 Hz: {}", at(1200));
    }

    #[test]
    fn the_onset_is_found_where_the_gap_ends() {
        for rate in [8_000, 16_000, 48_000] {
            let v = Voice::talker(1, 2, 60); // gap at 500..560 ms
            let samples: Vec<i16> = (0..u64::from(rate) * 3).map(|s| v.sample(s, rate)).collect();
            let amps = run_bin(&samples, v.hz, rate);
            let mut o = Onset::default();
            let rises: Vec<Rise> = amps.iter().enumerate().filter_map(|(n, &a)| o.push(n as u64, a, rate)).collect();
            assert_eq!(rises.len(), 3, "one per second at {rate} Hz: {rises:?}");
            assert!(rises.iter().all(|r| r.ends_gap(60, rate)), "{rises:?}");
            assert!(!rises[0].ends_gap(120, rate), "a 120 ms gap is another silence");
            let onsets: Vec<f64> = rises.iter().map(|r| r.at).collect();
            for (m, on) in onsets.iter().enumerate() {
                let want = (m as f64 + 0.56) * f64::from(rate);
                let err_ms = (on - want).abs() * 1000.0 / f64::from(rate);
                assert!(err_ms < 0.5, "onset {m} at {rate} Hz off by {err_ms} ms");
            }
        }
    }

    #[test]
    fn a_short_dip_is_not_an_onset_and_frames_repeat_each_period() {
        let rate = 8_000;
        let mut o = Onset::default();
        let mut n = 0;
        let mut feed = |a: f64, count: u64| -> usize {
            (0..count)
                .filter(|_| {
                    n += 1;
                    o.push(n, a, rate).is_some()
                })
                .count()
        };
        assert_eq!(feed(6000.0, 800), 0);
        assert_eq!(feed(10.0, 80), 0, "10 ms off");
        assert_eq!(feed(6000.0, 800), 0, "too short a gap");
        assert_eq!(feed(10.0, 400), 0, "50 ms off");
        assert_eq!(feed(6000.0, 10), 1);
        let v = Voice::talker(0, 1, 60);
        let (mut a, mut b) = ([0i16; 160], [0i16; 160]);
        v.frame(1, rate, &mut a);
        v.frame(51, rate, &mut b);
        assert_eq!(a, b, "the signal repeats every 50 frames");
        assert!(a.iter().all(|&s| s == 0), "frame 1 is in talker 0's gap (0..60 ms)");
        v.frame(3, rate, &mut a);
        v.frame(103, rate, &mut b);
        assert_eq!(a, b);
        assert!(a.iter().any(|&s| s > 5000), "frame 3 has the tone");
    }
}
