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
    /// The state `owner` set by hand that outlives device sessions (kept across restarts), if any.
    fn manual_state(&self, _owner: &str) -> Option<vienna_store::ManualPresence> {
        None
    }
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

/// The decision rule over what the store keeps for `owner`, in order of precedence:
/// 1. the owner watching itself: allowed;
/// 2. an access control entry for the watcher's own URI (allow or block);
/// 3. the owner's recorded decision about the watcher (allowed, blocked; a pending record stays pending);
/// 4. an entry for the watcher's domain, then one for everyone;
/// 5. the watcher is in the owner's contact list: allowed (adding someone is consent to be seen);
/// 6. otherwise pending: a new watcher waits for the owner's decision.
pub fn decide(
    owner: &str,
    watcher: &str,
    aces: &[vienna_store::Ace],
    record: Option<&vienna_store::Watcher>,
    in_contacts: bool,
) -> Decision {
    use vienna_store::{AccessLevel, AceScope};
    let recorded = record.is_some();
    let of = |level: AccessLevel| Decision {
        state: match level {
            AccessLevel::Allow => WatcherState::Allowed,
            AccessLevel::Block => WatcherState::Blocked,
        },
        recorded,
    };
    if owner == watcher {
        return Decision { state: WatcherState::Allowed, recorded: true };
    }
    let same_uri = |a: &str| {
        a.strip_prefix("sip:").unwrap_or(a).eq_ignore_ascii_case(watcher.strip_prefix("sip:").unwrap_or(watcher))
    };
    if let Some(ace) = aces.iter().find(|a| matches!(&a.scope, AceScope::User(u) if same_uri(u))) {
        return of(ace.level);
    }
    if let Some(w) = record
        && w.state != WatcherState::Pending
    {
        return Decision { state: w.state, recorded };
    }
    let domain = watcher.rsplit('@').next().unwrap_or("");
    if let Some(ace) = aces.iter().find(|a| matches!(&a.scope, AceScope::Domain(d) if d.eq_ignore_ascii_case(domain))) {
        return of(ace.level);
    }
    if let Some(ace) = aces.iter().find(|a| a.scope == AceScope::Everyone) {
        return of(ace.level);
    }
    if in_contacts {
        return Decision { state: WatcherState::Allowed, recorded };
    }
    Decision { state: WatcherState::Pending, recorded }
}

#[cfg(test)]
mod tests {
    use vienna_store::{AccessLevel, Ace, AceScope, Watcher};

    use super::*;

    fn record(state: WatcherState) -> Watcher {
        Watcher { uri: "sip:bob@x".into(), display_name: None, state, first_seen: 0, updated_at: 0 }
    }

    #[test]
    fn precedence() {
        let (a, b) = ("sip:alice@x", "sip:bob@x");
        assert_eq!(decide(a, a, &[], None, false).state, WatcherState::Allowed);
        assert_eq!(decide(a, b, &[], None, false), Decision { state: WatcherState::Pending, recorded: false });
        assert_eq!(decide(a, b, &[], None, true).state, WatcherState::Allowed);
        let pending = record(WatcherState::Pending);
        assert_eq!(decide(a, b, &[], Some(&pending), false), Decision { state: WatcherState::Pending, recorded: true });
        let blocked = record(WatcherState::Blocked);
        assert_eq!(decide(a, b, &[], Some(&blocked), true).state, WatcherState::Blocked, "a decision beats the list");
        let allow_bob = Ace { scope: AceScope::User("bob@x".into()), level: AccessLevel::Allow };
        assert_eq!(decide(a, b, &[allow_bob], Some(&blocked), false).state, WatcherState::Allowed);
        let block_domain = Ace { scope: AceScope::Domain("x".into()), level: AccessLevel::Block };
        assert_eq!(decide(a, b, std::slice::from_ref(&block_domain), None, true).state, WatcherState::Blocked);
        let everyone = Ace { scope: AceScope::Everyone, level: AccessLevel::Allow };
        assert_eq!(decide(a, b, &[everyone], None, false).state, WatcherState::Allowed);
    }
}
