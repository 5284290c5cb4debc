//! Write-back of registrations (`sip.bindings_write_back_ms` > 0), as Kamailio's usrloc `db_mode 2`: the
//! core thread answers REGISTERs from its in-memory location service and hands the binding changes to a
//! thread of their own, which writes what changed every interval in one store transaction.
//!
//! Changes to one binding (address of record and contact) within an interval collapse into the last, so
//! a commit holds at most one row per live binding however often clients refresh. A failed write keeps
//! its changes for the next interval (newer changes to the same binding win); after [`MAX_ATTEMPTS`]
//! failures in a row they are dropped, logged and counted, so one bad change cannot stall every write. When the core thread drops
//! its [`WriteBack`] (shutdown), the thread writes what is left and ends; [`WriteBack::finish`] waits for
//! that. A crash loses at most one interval of changes: registrations are soft state that clients
//! refresh, so they come back at the next refresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use vienna_store::{BindingChange, Store};

/// Writes of the same changes tried before they are dropped.
const MAX_ATTEMPTS: u32 = 3;

/// What the writer thread has done, read by the core thread when it publishes its counters.
#[derive(Debug, Default)]
pub struct WriteBackCounters {
    /// Store transactions that wrote binding changes.
    pub writes: AtomicU64,
    /// Binding changes written (after collapsing).
    pub bindings_written: AtomicU64,
    /// Store transactions that failed (their changes are retried at the next interval).
    pub errors: AtomicU64,
    /// Binding changes dropped after [`MAX_ATTEMPTS`] failed writes.
    pub dropped: AtomicU64,
}

/// The core thread's end of the writer thread.
pub struct WriteBack {
    tx: Option<mpsc::Sender<Vec<BindingChange>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Shared with the writer thread.
    pub counters: Arc<WriteBackCounters>,
}

impl WriteBack {
    /// Starts the writer thread: `store` gets the changes every `interval`.
    pub fn start(store: Arc<dyn Store>, interval: Duration) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let counters = Arc::new(WriteBackCounters::default());
        let thread_counters = counters.clone();
        let thread = std::thread::Builder::new()
            .name("sip-bindings".into())
            .spawn(move || run(store.as_ref(), interval, &rx, &thread_counters))?;
        Ok(Self { tx: Some(tx), thread: Some(thread), counters })
    }

    /// Queues `changes` for the next write.
    pub fn push(&self, changes: Vec<BindingChange>) {
        if let Some(tx) = &self.tx
            && tx.send(changes).is_err()
        {
            // Only if the thread died (it does not panic on store errors): nothing left to write with.
            tracing::error!("sip: the binding writer thread is gone; registrations are not stored");
        }
    }

    /// Writes what is queued and stops the thread; returns when the last write is done.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("sip: the binding writer thread panicked");
        }
    }
}

impl Drop for WriteBack {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The key a change is collapsed under: (address of record, contact).
fn key(change: &BindingChange) -> (&str, &str) {
    match change {
        BindingChange::Put(b) => (&b.aor, &b.contact),
        BindingChange::Remove { aor, contact } => (aor, contact),
    }
}

fn run(store: &dyn Store, interval: Duration, rx: &mpsc::Receiver<Vec<BindingChange>>, counters: &WriteBackCounters) {
    let mut pending = Pending::default();
    let mut next = Instant::now() + interval;
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(changes) => {
                for c in changes {
                    pending.insert(c);
                }
                if Instant::now() < next {
                    continue;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                write(store, &mut pending, counters);
                return;
            }
        }
        write(store, &mut pending, counters);
        next = Instant::now() + interval;
    }
}

/// Changes not written yet, and how many writes of them failed in a row.
#[derive(Default)]
struct Pending {
    /// By address of record, then contact (looked up by `&str`: a refresh of a binding already pending
    /// copies no key).
    changes: HashMap<String, HashMap<String, BindingChange>>,
    failures: u32,
}

impl Pending {
    /// Keeps `change`, replacing a pending change of the same binding.
    fn insert(&mut self, change: BindingChange) {
        let (aor, contact) = key(&change);
        if let Some(of_aor) = self.changes.get_mut(aor) {
            match of_aor.get_mut(contact) {
                Some(slot) => *slot = change,
                None => {
                    of_aor.insert(contact.to_owned(), change);
                }
            }
            return;
        }
        let (aor, contact) = (aor.to_owned(), contact.to_owned());
        self.changes.entry(aor).or_default().insert(contact, change);
    }

    fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Every pending change, leaving none.
    fn take(&mut self) -> Vec<BindingChange> {
        self.changes.drain().flat_map(|(_, of_aor)| of_aor.into_values()).collect()
    }
}

/// Writes `pending` in one transaction; on failure keeps it for the next try (see [`MAX_ATTEMPTS`]).
fn write(store: &dyn Store, pending: &mut Pending, counters: &WriteBackCounters) {
    if pending.is_empty() {
        return;
    }
    let changes = pending.take();
    counters.writes.fetch_add(1, Ordering::Relaxed);
    match store.apply_bindings(&changes) {
        Ok(()) => {
            pending.failures = 0;
            counters.bindings_written.fetch_add(changes.len() as u64, Ordering::Relaxed);
        }
        Err(e) => {
            pending.failures += 1;
            counters.errors.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("vienna_store_errors_total").increment(1);
            if pending.failures >= MAX_ATTEMPTS {
                pending.failures = 0;
                counters.dropped.fetch_add(changes.len() as u64, Ordering::Relaxed);
                tracing::error!(error = %e, changes = changes.len(), "sip: cannot store bindings; dropped them");
                return;
            }
            tracing::error!(error = %e, changes = changes.len(), "sip: cannot store bindings; retrying at the next interval");
            for c in changes {
                pending.insert(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vienna_store::{Aor, Binding, NewAccount, Secrets, SqliteStore};

    fn binding(user: &str, cseq: u32) -> Binding {
        Binding {
            aor: format!("sip:{user}@localhost"),
            contact: format!("sip:{user}@127.0.0.1:5999"),
            instance_id: None,
            reg_id: None,
            call_id: "c1".into(),
            cseq,
            expires_at: 4_000_000_000,
            q: None,
            received: None,
            path: Vec::new(),
            user_agent: None,
            updated_at: 1,
        }
    }

    fn stored(store: &dyn Store, user: &str) -> Vec<Binding> {
        store.bindings(&Aor::parse(&format!("sip:{user}@localhost"), None).unwrap(), 0).unwrap()
    }

    #[test]
    fn changes_are_written_on_the_interval_collapsed_and_at_finish() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        for user in ["alice", "bob"] {
            let account = NewAccount {
                aor: Aor::parse(&format!("sip:{user}@localhost"), None).unwrap(),
                display_name: String::new(),
                enabled: true,
                secrets: Secrets::derive(user, "localhost", "pw"),
            };
            store.add_account(&account, 1).unwrap();
        }
        let writer = WriteBack::start(store.clone(), Duration::from_millis(50)).unwrap();
        // Three refreshes of one binding in one interval: one row, the last.
        writer.push(vec![BindingChange::Put(binding("alice", 1))]);
        writer.push(vec![BindingChange::Put(binding("alice", 2)), BindingChange::Put(binding("alice", 3))]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while stored(store.as_ref(), "alice").is_empty() {
            assert!(Instant::now() < deadline, "not written on the interval");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(stored(store.as_ref(), "alice")[0].cseq, 3);
        assert_eq!(writer.counters.bindings_written.load(Ordering::Relaxed), 1);

        // With a long interval, only finish writes.
        drop(writer);
        let writer = WriteBack::start(store.clone(), Duration::from_secs(3600)).unwrap();
        writer.push(vec![BindingChange::Put(binding("bob", 1))]);
        writer.push(vec![BindingChange::Remove {
            aor: "sip:alice@localhost".into(),
            contact: "sip:alice@127.0.0.1:5999".into(),
        }]);
        std::thread::sleep(Duration::from_millis(50));
        assert!(stored(store.as_ref(), "bob").is_empty());
        let counters = writer.counters.clone();
        writer.finish();
        assert_eq!(stored(store.as_ref(), "bob").len(), 1);
        assert!(stored(store.as_ref(), "alice").is_empty());
        assert_eq!(counters.writes.load(Ordering::Relaxed), 1);
        assert_eq!(counters.errors.load(Ordering::Relaxed), 0);
    }
}
