//! Send schedule: packet `k` of a thread's stream is due at `start + k / rate`, and goes to client
//! `k % n` of the thread's `n` clients. Sends are thus spread evenly in time and over clients, and the
//! aggregate rate is exact over any window longer than one wake-up; a thread that wakes late catches up
//! (bounded per wake-up) instead of losing packets from the schedule.

use std::ops::Range;
use std::time::Duration;

/// An evenly spaced schedule of `total` packets at `rate` packets per second.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: f64,
    total: u64,
    issued: u64,
}

impl Pacer {
    /// A schedule of `rate` packets/s for `duration`.
    pub fn new(rate: f64, duration: Duration) -> Pacer {
        let total = (rate * duration.as_secs_f64()).round() as u64;
        Pacer { rate, total, issued: 0 }
    }

    /// Packets in the whole schedule.
    #[cfg(test)]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether every packet was handed out.
    pub fn done(&self) -> bool {
        self.issued >= self.total
    }

    /// Indices of the packets due at `elapsed` since the start that were not handed out yet, at most
    /// `max` of them; they count as handed out.
    pub fn due(&mut self, elapsed: Duration, max: u64) -> Range<u64> {
        let due = ((elapsed.as_secs_f64() * self.rate).floor() as u64).saturating_add(1).min(self.total);
        let end = due.min(self.issued.saturating_add(max)).max(self.issued);
        let range = self.issued..end;
        self.issued = end;
        range
    }

    /// When (since the start) the next packet is due; `None` when done.
    pub fn next_due(&self) -> Option<Duration> {
        (!self.done()).then(|| Duration::from_secs_f64(self.issued as f64 / self.rate))
    }
}

/// How many of the packet indices in `range` fall to client `c` of `n` (packet `k` goes to `k % n`).
pub fn share(range: &Range<u64>, n: u64, c: u64) -> u64 {
    // packets k < x with k % n == c
    let below = |x: u64| if x <= c { 0 } else { (x - c - 1) / n + 1 };
    below(range.end) - below(range.start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_even_and_exact() {
        let mut p = Pacer::new(1000.0, Duration::from_secs(2));
        assert_eq!(p.total(), 2000);
        assert_eq!(p.due(Duration::ZERO, 100), 0..1, "packet 0 is due at once");
        assert_eq!(p.due(Duration::from_micros(999), 100), 1..1, "packet 1 is due at 1 ms");
        assert_eq!(p.due(Duration::from_millis(10), 100), 1..11);
        assert_eq!(p.next_due(), Some(Duration::from_millis(11)));
        // a late wake-up catches up, bounded by `max`
        assert_eq!(p.due(Duration::from_millis(500), 100), 11..111);
        assert_eq!(p.due(Duration::from_millis(500), 1000), 111..501);
        // never past the total
        assert_eq!(p.due(Duration::from_secs(10), u64::MAX), 501..2000);
        assert!(p.done());
        assert_eq!(p.next_due(), None);
        assert_eq!(p.due(Duration::from_secs(11), 10), 2000..2000);
    }

    #[test]
    fn fractional_rates() {
        let mut p = Pacer::new(2.5, Duration::from_secs(4));
        assert_eq!(p.total(), 10);
        assert_eq!(p.due(Duration::from_millis(399), 10), 0..1);
        assert_eq!(p.due(Duration::from_millis(400), 10), 1..2);
        assert_eq!(p.due(Duration::from_millis(1999), 10), 2..5);
    }

    #[test]
    fn shares_cover_the_range_round_robin() {
        for n in 1..7u64 {
            for start in 0..15u64 {
                for len in 0..30u64 {
                    let r = start..start + len;
                    let mut expected = vec![0u64; n as usize];
                    for k in r.clone() {
                        expected[(k % n) as usize] += 1;
                    }
                    let got: Vec<u64> = (0..n).map(|c| share(&r, n, c)).collect();
                    assert_eq!(got, expected, "n={n} range={r:?}");
                }
            }
        }
    }
}
