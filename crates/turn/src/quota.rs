//! Allocation counts shared by several relays, so that per-user and total quotas hold across the
//! worker threads of one server (each worker runs its own [`Relay`](crate::Relay)).
//!
//! Touched only when an allocation is created or removed, never per packet. A relay checks the counts
//! and then takes a slot, so when two workers admit the same user at the same instant a quota can be
//! passed by at most (workers - 1) allocations.

use std::collections::HashMap;
use std::sync::Mutex;

/// Live allocations per user name and in total.
#[derive(Debug, Default)]
pub struct SharedQuota {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    users: HashMap<String, u32>,
    total: u32,
}

impl SharedQuota {
    /// No allocations yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Counts stay consistent under a panic elsewhere (each update is one statement).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Allocations of `username`, and in total.
    pub fn get(&self, username: &str) -> (u32, u32) {
        let c = self.counts();
        (c.users.get(username).copied().unwrap_or(0), c.total)
    }

    /// Counts one more allocation of `username`.
    pub fn acquire(&self, username: &str) {
        let mut c = self.counts();
        *c.users.entry(username.to_owned()).or_insert(0) += 1;
        c.total += 1;
    }

    /// Counts one allocation of `username` less.
    pub fn release(&self, username: &str) {
        let mut c = self.counts();
        if let Some(n) = c.users.get_mut(username) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.users.remove(username);
            }
            c.total = c.total.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_and_down() {
        let q = SharedQuota::new();
        q.acquire("a");
        q.acquire("a");
        q.acquire("b");
        assert_eq!(q.get("a"), (2, 3));
        q.release("a");
        q.release("zzz");
        assert_eq!(q.get("a"), (1, 2));
        q.release("a");
        q.release("a");
        assert_eq!(q.get("a"), (0, 1));
    }
}
