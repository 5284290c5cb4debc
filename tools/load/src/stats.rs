//! Receive-side accounting per client: unique, duplicate and reordered packets from sequence
//! numbers, with a 128-packet window for duplicate detection. Loss is counted at the end as packets
//! sent minus unique packets received, so a packet still in flight when the drain time ends is lost.

/// What one received sequence number was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Higher than everything before it.
    InOrder,
    /// First arrival of a number lower than one already received.
    Reordered,
    /// Already received (within the window).
    Duplicate,
}

/// Width of the duplicate-detection window.
pub const WINDOW: u64 = 128;

/// Tracks the sequence numbers of one stream.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    highest: Option<u64>,
    /// Bit `i` set: `highest - i` was received.
    window: u128,
    /// Distinct packets received.
    pub unique: u64,
    /// Packets received again.
    pub duplicates: u64,
    /// Packets that arrived after a higher sequence number (counted once per packet).
    pub reordered: u64,
}

impl SeqTracker {
    /// Records sequence number `seq`.
    pub fn record(&mut self, seq: u64) -> Arrival {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            self.window = 1;
            self.unique += 1;
            return Arrival::InOrder;
        };
        if seq > highest {
            let shift = seq - highest;
            self.window = if shift >= WINDOW { 0 } else { self.window << shift };
            self.window |= 1;
            self.highest = Some(seq);
            self.unique += 1;
            return Arrival::InOrder;
        }
        let back = highest - seq;
        if back < WINDOW {
            let bit = 1u128 << back;
            if self.window & bit != 0 {
                self.duplicates += 1;
                return Arrival::Duplicate;
            }
            self.window |= bit;
        }
        // Older than the window: cannot tell a duplicate; counted as a late, reordered first arrival.
        self.unique += 1;
        self.reordered += 1;
        Arrival::Reordered
    }

    /// Packets lost out of `sent`.
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.unique)
    }
}

/// RFC 3550 §6.4.1 interarrival jitter of one stream, from send and arrival times on one clock:
/// `J += (|D| - J) / 16`, where `D` is the change in transit time between consecutive arrivals.
#[derive(Debug, Clone, Copy, Default)]
pub struct Jitter {
    last_transit_ns: Option<i64>,
    /// Current estimate, nanoseconds.
    pub jitter_ns: f64,
    /// Arrivals seen.
    pub samples: u64,
}

impl Jitter {
    /// Records a packet sent at `sent_ns` that arrived at `arrived_ns`.
    pub fn record(&mut self, sent_ns: u64, arrived_ns: u64) {
        let transit = arrived_ns as i64 - sent_ns as i64;
        if let Some(last) = self.last_transit_ns {
            let d = (transit - last).unsigned_abs() as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
        }
        self.last_transit_ns = Some(transit);
        self.samples += 1;
    }
}

/// Totals over clients and threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Packets the kernel accepted for sending.
    pub sent: u64,
    /// Distinct packets received back.
    pub received: u64,
    /// Packets sent and never received.
    pub lost: u64,
    /// Packets received after a higher sequence number.
    pub reordered: u64,
    /// Packets received more than once (extra copies).
    pub duplicates: u64,
    /// Packets the local socket refused (send buffer full): a limit of this machine, not the relay.
    pub send_dropped: u64,
    /// Received datagrams that were not ours (bad ChannelData, foreign payload or client index).
    pub foreign: u64,
}

impl Totals {
    /// Adds one client's stream.
    pub fn add_stream(&mut self, sent: u64, t: &SeqTracker) {
        self.sent += sent;
        self.received += t.unique;
        self.lost += t.lost(sent);
        self.reordered += t.reordered;
        self.duplicates += t.duplicates;
    }

    /// Adds another set of totals.
    pub fn merge(&mut self, o: &Totals) {
        self.sent += o.sent;
        self.received += o.received;
        self.lost += o.lost;
        self.reordered += o.reordered;
        self.duplicates += o.duplicates;
        self.send_dropped += o.send_dropped;
        self.foreign += o.foreign;
    }

    /// Lost packets in percent of those sent (0 when nothing was sent).
    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 { 0.0 } else { self.lost as f64 * 100.0 / self.sent as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(seqs: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::default();
        for &s in seqs {
            t.record(s);
        }
        t
    }

    #[test]
    fn in_order_without_loss() {
        let t = feed(&[0, 1, 2, 3, 4]);
        assert_eq!((t.unique, t.reordered, t.duplicates, t.lost(5)), (5, 0, 0, 0));
    }

    #[test]
    fn gaps_are_losses() {
        let t = feed(&[0, 2, 5]);
        assert_eq!((t.unique, t.reordered, t.duplicates), (3, 0, 0));
        assert_eq!(t.lost(6), 3);
        assert_eq!(t.lost(2), 0, "never negative");
    }

    #[test]
    fn reordering_and_duplicates() {
        let mut t = SeqTracker::default();
        assert_eq!(t.record(0), Arrival::InOrder);
        assert_eq!(t.record(2), Arrival::InOrder);
        assert_eq!(t.record(1), Arrival::Reordered);
        assert_eq!(t.record(1), Arrival::Duplicate);
        assert_eq!(t.record(2), Arrival::Duplicate);
        assert_eq!(t.record(3), Arrival::InOrder);
        assert_eq!((t.unique, t.reordered, t.duplicates, t.lost(4)), (4, 1, 2, 0));
    }

    #[test]
    fn window_edges() {
        let mut t = SeqTracker::default();
        t.record(0);
        t.record(WINDOW - 1);
        assert_eq!(t.record(0), Arrival::Duplicate, "0 is still inside the window");
        t.record(WINDOW);
        // 0 left the window: a repeat is counted as a late first arrival
        assert_eq!(t.record(0), Arrival::Reordered);
        assert_eq!(t.record(5), Arrival::Reordered);
        assert_eq!(t.record(5), Arrival::Duplicate);
        // a jump wider than the window clears it
        t.record(10 * WINDOW);
        assert_eq!(t.record(10 * WINDOW - 1), Arrival::Reordered);
    }

    #[test]
    fn jitter_follows_rfc3550() {
        let mut j = Jitter::default();
        j.record(0, 1000);
        assert_eq!(j.jitter_ns, 0.0, "one packet has no jitter");
        j.record(20_000, 21_000);
        assert_eq!(j.jitter_ns, 0.0, "same transit time");
        j.record(40_000, 41_160);
        assert_eq!(j.jitter_ns, 10.0, "(160 - 0) / 16");
        j.record(60_000, 61_000);
        assert_eq!(j.jitter_ns, 10.0 + (160.0 - 10.0) / 16.0);
        assert_eq!(j.samples, 4);
    }

    #[test]
    fn totals_merge_and_percent() {
        let mut a = Totals::default();
        a.add_stream(10, &feed(&[0, 1, 2, 4, 3, 3]));
        assert_eq!((a.sent, a.received, a.lost, a.reordered, a.duplicates), (10, 5, 5, 1, 1));
        let mut b = Totals { send_dropped: 2, foreign: 1, ..Totals::default() };
        b.add_stream(10, &feed(&(0..10).collect::<Vec<_>>()));
        a.merge(&b);
        assert_eq!((a.sent, a.received, a.lost, a.send_dropped, a.foreign), (20, 15, 5, 2, 1));
        assert!((a.loss_percent() - 25.0).abs() < 1e-9);
        assert_eq!(Totals::default().loss_percent(), 0.0);
    }
}
