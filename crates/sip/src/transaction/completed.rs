//! Completed non-INVITE server transactions over unreliable transports, kept as their final response only
//! (RFC 3261 §17.2.2).
//!
//! Once a non-INVITE server transaction has sent its final response over UDP, all it still does for Timer
//! J (64*T1) is answer retransmissions of its request with that response, and its TU can no longer send
//! anything in it. Under a registrar's load that is tens of thousands of transactions at once (32 s of
//! REGISTERs), each a boxed state machine with its own allocations, two table entries and a timer. This
//! cache keeps what the Completed state needs instead: the transaction key, where the answer goes, the
//! response bytes and when Timer J fires.
//!
//! Entries are written in time order into fixed-size arenas, one per [`SPAN`] or per [`ARENA_BYTES`]
//! (a ring of time buckets; an arena never grows, so nothing is copied): the key and the response of an
//! entry sit side by side in its bucket's arena, an index maps a keyed hash of the key to the entry, and a
//! bucket goes (its arena kept for reuse) once its last entry's Timer J has fired. An
//! entry answers only until its own Timer J, however late its bucket is swept. The key is compared in
//! full on every hit, so a hash collision can at worst replace an older entry, never answer a request with
//! another transaction's response.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, RandomState};
use std::time::{Duration, Instant};

use super::{IdHasher, Peer};

/// Width of a time bucket: entries completed within this span share an arena.
pub(super) const SPAN: Duration = Duration::from_millis(500);
/// Capacity of an arena: a new bucket opens when the entry would not fit, whatever the span (an entry
/// larger than this gets an arena of its own size).
const ARENA_BYTES: usize = 256 << 10;
/// Emptied arenas kept for the next buckets (so a steady load reuses memory instead of faulting in new):
/// 16 MiB, about 1.5 s of REGISTER answers at 20,000/s.
const SPARE_ARENAS: usize = 64;

/// Where one entry lives and what it answers.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Sequence number of its bucket.
    bucket: u64,
    /// Offset of its key in the bucket's arena; the response follows the key.
    offset: u32,
    key_len: u32,
    response_len: u32,
    /// Timer J: the entry answers retransmissions until then.
    expires: Instant,
    /// Where the response goes.
    peer: Peer,
}

#[derive(Debug)]
struct Bucket {
    /// When its first entry was written.
    opened: Instant,
    /// The latest Timer J of its entries: the bucket can go after it.
    last_expiry: Instant,
    /// Keys and responses, entry after entry.
    arena: Vec<u8>,
    /// The hashes its entries are indexed under.
    hashes: Vec<u64>,
}

/// The buffers of a swept bucket, kept for a new one.
#[derive(Debug, Default)]
struct Spare {
    arena: Vec<u8>,
    hashes: Vec<u64>,
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct CompletedCache {
    hasher: RandomState,
    index: HashMap<u64, Slot, BuildHasherDefault<IdHasher>>,
    /// Oldest first; `buckets[0]` has sequence number `first`.
    buckets: VecDeque<Bucket>,
    first: u64,
    spare: Vec<Spare>,
}

impl CompletedCache {
    /// An empty cache; the hash of keys is keyed at random, so nobody outside can aim at the index.
    pub(super) fn new() -> Self {
        CompletedCache {
            hasher: RandomState::new(),
            index: HashMap::default(),
            buckets: VecDeque::new(),
            first: 0,
            spare: Vec::new(),
        }
    }

    /// Entries held (some may be past their Timer J until [`CompletedCache::expire`] runs).
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Keeps `response`, sent to `peer`, as the answer to retransmissions of the request with transaction
    /// key `key` until `expires`. `now` must not go back between calls (entries are written in time order).
    pub(super) fn insert(&mut self, now: Instant, expires: Instant, key: &[u8], peer: Peer, response: &[u8]) {
        let need = key.len() + response.len();
        let fits =
            self.buckets.back().is_some_and(|b| now < b.opened + SPAN && b.arena.len() + need <= b.arena.capacity());
        if !fits {
            let Spare { mut arena, hashes } = match self.spare.pop() {
                Some(s) => s,
                None => Spare { arena: Vec::with_capacity(ARENA_BYTES), hashes: Vec::with_capacity(ARENA_BYTES / 256) },
            };
            arena.reserve_exact(need);
            self.buckets.push_back(Bucket { opened: now, last_expiry: expires, arena, hashes });
        }
        let bucket = self.first + self.buckets.len() as u64 - 1;
        let Some(b) = self.buckets.back_mut() else { return };
        let (Ok(offset), Ok(key_len), Ok(response_len)) =
            (u32::try_from(b.arena.len()), u32::try_from(key.len()), u32::try_from(response.len()))
        else {
            return;
        };
        b.arena.extend_from_slice(key);
        b.arena.extend_from_slice(response);
        b.last_expiry = b.last_expiry.max(expires);
        let hash = self.hasher.hash_one(key);
        b.hashes.push(hash);
        // A live entry under the same hash is another key (the same key is never cached twice: its
        // retransmissions are answered from here): the newer one wins.
        self.index.insert(hash, Slot { bucket, offset, key_len, response_len, expires, peer });
    }

    /// The response kept for transaction key `key` and where it goes, if its Timer J has not fired by `now`.
    pub(super) fn get(&self, now: Instant, key: &[u8]) -> Option<(Peer, &[u8])> {
        let slot = self.index.get(&self.hasher.hash_one(key))?;
        if slot.expires <= now {
            return None;
        }
        let b = self.buckets.get(usize::try_from(slot.bucket.checked_sub(self.first)?).ok()?)?;
        let start = slot.offset as usize;
        let mid = start + slot.key_len as usize;
        let end = mid + slot.response_len as usize;
        if b.arena.get(start..mid)? != key {
            return None;
        }
        Some((slot.peer, b.arena.get(mid..end)?))
    }

    /// When the oldest bucket can go (then call [`CompletedCache::expire`]).
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.buckets.front().map(|b| b.last_expiry)
    }

    /// Drops every bucket whose entries have all passed their Timer J by `now`.
    pub(super) fn expire(&mut self, now: Instant) {
        while self.buckets.front().is_some_and(|b| b.last_expiry <= now) {
            let Some(mut b) = self.buckets.pop_front() else { break };
            let seq = self.first;
            self.first += 1;
            for h in &b.hashes {
                if self.index.get(h).is_some_and(|s| s.bucket == seq) {
                    self.index.remove(h);
                }
            }
            if self.spare.len() < SPARE_ARENAS && b.arena.capacity() == ARENA_BYTES {
                b.arena.clear();
                b.hashes.clear();
                self.spare.push(Spare { arena: b.arena, hashes: b.hashes });
            }
        }
        if self.index.is_empty() && self.index.capacity() > 1024 {
            // Idle after a burst: give the index's memory back.
            self.index.shrink_to(1024);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::Transport;

    const J: Duration = Duration::from_secs(32);

    fn peer(port: u16) -> Peer {
        Peer { transport: Transport::Udp, addr: SocketAddr::from(([192, 0, 2, 1], port)) }
    }

    #[test]
    fn answers_until_timer_j_then_forgets() {
        let start = Instant::now();
        let mut c = CompletedCache::new();
        c.insert(start, start + J, b"key-a", peer(5060), b"SIP/2.0 200 OK a");
        assert_eq!(c.get(start, b"key-a"), Some((peer(5060), &b"SIP/2.0 200 OK a"[..])));
        assert_eq!(c.get(start, b"key-b"), None);
        // Still there just before Timer J, gone at it even before a sweep.
        assert!(c.get(start + J - Duration::from_millis(1), b"key-a").is_some());
        assert_eq!(c.get(start + J, b"key-a"), None);
        assert_eq!(c.poll_timeout(), Some(start + J));
        c.expire(start + J);
        assert_eq!(c.len(), 0);
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn buckets_go_in_time_order_and_arenas_are_reused() {
        let start = Instant::now();
        let mut c = CompletedCache::new();
        // 100 entries, one every 100 ms: 10 s, so about 20 buckets.
        for i in 0..100u32 {
            let now = start + Duration::from_millis(100 * u64::from(i));
            let key = format!("key-{i}");
            c.insert(now, now + J, key.as_bytes(), peer(1000 + i as u16), format!("response {i}").as_bytes());
        }
        assert_eq!(c.len(), 100);
        assert!(c.buckets.len() >= 20 && c.buckets.len() <= 21, "{} buckets", c.buckets.len());
        // At 37 s, entries written up to 5 s have passed Timer J; those after still answer.
        let at = start + Duration::from_secs(37);
        c.expire(at);
        for i in 0..100u32 {
            let got = c.get(at, format!("key-{i}").as_bytes());
            if u64::from(i) * 100 + 32_000 <= 37_000 {
                assert_eq!(got, None, "entry {i}");
            } else {
                let (p, bytes) = got.unwrap_or_else(|| panic!("entry {i} missing"));
                assert_eq!((p, bytes), (peer(1000 + i as u16), format!("response {i}").as_bytes()));
            }
        }
        assert!(c.len() < 100 && c.len() >= 49, "{} left", c.len());
        assert!(!c.spare.is_empty(), "emptied arenas are kept for reuse");
        c.expire(start + Duration::from_secs(60));
        assert_eq!(c.len(), 0);
        assert!(c.buckets.is_empty());
    }

    #[test]
    fn a_full_arena_opens_a_new_bucket() {
        let start = Instant::now();
        let mut c = CompletedCache::new();
        let big = vec![b'x'; ARENA_BYTES / 2 + 1];
        c.insert(start, start + J, b"k1", peer(1), &big);
        c.insert(start, start + J, b"k2", peer(2), &big);
        assert_eq!(c.buckets.len(), 2);
        // Larger than an arena: one of its own.
        let huge = vec![b'y'; 2 * ARENA_BYTES];
        c.insert(start, start + J, b"k3", peer(3), &huge);
        assert_eq!(c.buckets.len(), 3);
        assert_eq!(c.get(start, b"k1").map(|(_, b)| b.len()), Some(big.len()));
        assert_eq!(c.get(start, b"k2").map(|(p, _)| p), Some(peer(2)));
        assert_eq!(c.get(start, b"k3").map(|(_, b)| b), Some(&huge[..]));
        // Arenas never grow (their entries are never moved).
        assert!(c.buckets.iter().all(|b| b.arena.len() <= b.arena.capacity()));
        c.expire(start + J);
        assert_eq!(c.spare.len(), 2, "the oversized arena is not kept");
    }

    #[test]
    fn an_older_bucket_does_not_remove_a_newer_entry_under_the_same_hash() {
        let start = Instant::now();
        let mut c = CompletedCache::new();
        c.insert(start, start + J, b"same", peer(1), b"old");
        let later = start + Duration::from_secs(5);
        // The same key again (not done by the layer, but the index must stay consistent).
        c.insert(later, later + J, b"same", peer(2), b"new");
        c.expire(start + J);
        assert_eq!(c.get(start + J, b"same"), Some((peer(2), &b"new"[..])));
        c.expire(later + J);
        assert_eq!(c.len(), 0);
    }
}
