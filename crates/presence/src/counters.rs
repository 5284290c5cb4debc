//! What the presence core did since start, for metrics. Plain integers, copied out by the driver.

/// Presence counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// PUBLISH requests accepted (initial, modify, refresh, remove).
    pub publishes: u64,
    /// PUBLISH requests refused (400, 412, 413, 415, 423, 489, 403).
    pub publishes_rejected: u64,
    /// Publications that expired without a refresh.
    pub publications_expired: u64,
    /// Bodies refused as malformed or too large (PUBLISH 400/413).
    pub bad_bodies: u64,
    /// Subscriptions created (presence, watcher info and list).
    pub subscriptions_created: u64,
    /// Subscription refreshes.
    pub subscriptions_refreshed: u64,
    /// SUBSCRIBE requests refused (423, 481, 489, 403, 406, 503, 400).
    pub subscribes_rejected: u64,
    /// Subscriptions ended by the subscriber (Expires: 0).
    pub subscriptions_terminated: u64,
    /// Subscriptions that expired without a refresh.
    pub subscriptions_expired: u64,
    /// Subscriptions dropped because a NOTIFY failed (481, timeout, transport error).
    pub subscriptions_failed: u64,
    /// NOTIFY requests sent.
    pub notifies: u64,
    /// Changes folded into a later NOTIFY by the per-subscription rate limit.
    pub notifies_coalesced: u64,
    /// Changes of a presentity's aggregate state.
    pub state_changes: u64,
    /// Watchers recorded as pending (new watchers the presentity is told about).
    pub watchers_recorded: u64,
    /// Contact-list resources left out of list subscriptions beyond the configured size.
    pub list_resources_dropped: u64,
}
