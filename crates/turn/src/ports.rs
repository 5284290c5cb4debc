//! Relay port bookkeeping: which ports of the configured range are in use (allocated, being
//! bound, or reserved by EVEN-PORT's R bit, RFC 8656 §7.2). A 8 KiB bitmap per relay address.

/// Port usage bitmap over a range.
#[derive(Clone, Debug)]
pub struct PortPool {
    min: u16,
    max: u16,
    used: Vec<u64>,
    in_use: usize,
}

impl PortPool {
    /// A pool over `min..=max`.
    pub fn new(min: u16, max: u16) -> PortPool {
        PortPool { min, max, used: vec![0; 1024], in_use: 0 }
    }

    /// Whether `port` is in use (ports outside the range count as in use).
    pub fn is_used(&self, port: u16) -> bool {
        if port < self.min || port > self.max {
            return true;
        }
        self.used[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }

    /// Mark `port` used; false if it already was or is outside the range.
    pub fn take(&mut self, port: u16) -> bool {
        if self.is_used(port) {
            return false;
        }
        self.used[usize::from(port >> 6)] |= 1 << (port & 63);
        self.in_use += 1;
        true
    }

    /// Mark `port` free.
    pub fn release(&mut self, port: u16) {
        if port >= self.min && port <= self.max && self.is_used(port) {
            self.used[usize::from(port >> 6)] &= !(1 << (port & 63));
            self.in_use -= 1;
        }
    }

    /// Ports in use.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Pick and take a free port, scanning from a random offset `seed`. With `even`, the port is
    /// even; with `pair`, port+1 is also free and taken too (EVEN-PORT with R).
    pub fn pick(&mut self, seed: u32, even: bool, pair: bool) -> Option<u16> {
        let size = u32::from(self.max - self.min) + 1;
        let start = seed % size;
        for i in 0..size {
            let p = (u32::from(self.min) + (start + i) % size) as u16;
            if (even || pair) && !p.is_multiple_of(2) {
                continue;
            }
            if self.is_used(p) {
                continue;
            }
            if pair {
                if p == u16::MAX || self.is_used(p + 1) {
                    continue;
                }
                self.take(p + 1);
            }
            self.take(p);
            return Some(p);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_and_release() {
        let mut p = PortPool::new(50000, 50003);
        let a = p.pick(0, true, true).unwrap();
        assert_eq!(a % 2, 0);
        assert!(p.is_used(a + 1));
        let b = p.pick(0, true, true).unwrap();
        assert_ne!(a, b);
        assert_eq!(p.pick(0, false, false), None);
        p.release(b + 1);
        assert_eq!(p.pick(0, false, false), Some(b + 1));
        assert_eq!(p.in_use(), 4);
        assert!(p.is_used(1));
    }
}
