//! A small keyed hasher for the relay's lookup tables.
//!
//! `std`'s SipHash-1-3 costs tens of nanoseconds per `SocketAddr`/5-tuple key, which was most of
//! the per-packet time of the hot path. This hasher mixes each word with a folded 64x64->128
//! multiplication under a per-relay random seed (the construction popularised by aHash's
//! fallback and foldhash). It is not a cryptographic PRF, but keys are secret-seeded, so a
//! client cannot precompute colliding 5-tuples or peer addresses offline.

use std::hash::{BuildHasher, Hasher};

const MUL: u64 = 0x9E37_79B9_7F4A_7C15;
const FIN: u64 = 0xD6E8_FEB8_6659_FD93;

#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Builds [`SeededHasher`]s with one random seed.
#[derive(Clone, Copy, Debug)]
pub struct SeededState {
    seed: u64,
}

impl SeededState {
    /// A state from a random seed.
    pub fn new(seed: u64) -> SeededState {
        SeededState { seed: seed | 1 }
    }
}

impl BuildHasher for SeededState {
    type Hasher = SeededHasher;
    #[inline]
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher { state: self.seed, key: self.seed ^ MUL }
    }
}

/// Folded-multiply hasher; see the module docs.
#[derive(Clone, Copy, Debug)]
pub struct SeededHasher {
    state: u64,
    key: u64,
}

impl Hasher for SeededHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.state = fold(self.state ^ i, self.key);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        fold(self.state, FIN ^ self.key).rotate_left(self.key as u32 & 63)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::SocketAddr;

    #[test]
    fn distinct_and_seeded() {
        let s = SeededState::new(7);
        let mut seen = HashSet::new();
        for port in 0..5000u16 {
            let a: SocketAddr = SocketAddr::new([192, 0, 2, (port % 7) as u8].into(), port);
            assert!(seen.insert(s.hash_one(a)));
        }
        let a: SocketAddr = "192.0.2.1:1".parse().unwrap();
        assert_ne!(SeededState::new(1).hash_one(a), SeededState::new(2).hash_one(a));
    }
}
