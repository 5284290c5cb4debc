//! Who may see whom: the presentity's decision about a watcher (allow, block, pending), its contact list
//! (the resources of its list subscription) and the watchers still waiting for a decision. The core asks;
//! the driver answers from the store (with a cache).

pub use vienna_store::WatcherState;

/// A presentity's decision about one watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Allow, block or pending.
    pub state: WatcherState,
    /// Whether the store already records this watcher (a new, undecided watcher gets a pending record).
    pub recorded: bool,
}

/// Answers the core's authorization questions. Called on the core's thread.
pub trait Policy {
    /// What `owner` decided about `watcher` (addresses of record).
    fn authorize(&self, owner: &str, watcher: &str) -> Decision;
    /// The contacts `owner` subscribes to (its contact list), for its list subscription.
    fn contacts(&self, owner: &str) -> Vec<String>;
    /// Recorded watchers of `owner` still waiting for a decision (URI, display name).
    fn pending_watchers(&self, owner: &str) -> Vec<(String, Option<String>)>;
}

/// A policy that allows everyone and has empty contact lists (tests, benchmarks).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl Policy for AllowAll {
    fn authorize(&self, _owner: &str, _watcher: &str) -> Decision {
        Decision { state: WatcherState::Allowed, recorded: true }
    }
    fn contacts(&self, _owner: &str) -> Vec<String> {
        Vec::new()
    }
    fn pending_watchers(&self, _owner: &str) -> Vec<(String, Option<String>)> {
        Vec::new()
    }
}
