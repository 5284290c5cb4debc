//! Settings of a [`crate::PresenceCore`].

use std::time::Duration;

/// What the presence core is allowed to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceConfig {
    /// Serve presence at all (SUBSCRIBE/PUBLISH for `presence` and `presence.winfo`). When off, those
    /// requests are routed like any other.
    pub enabled: bool,
    /// Shortest subscription or publication accepted (423 Interval Too Brief below), seconds.
    pub min_expires: u32,
    /// Longest granted (longer requests are shortened), seconds.
    pub max_expires: u32,
    /// Granted when the request names none (RFC 3856 §6.4: 3600), seconds.
    pub default_expires: u32,
    /// Shortest time between two NOTIFYs to one subscription. Changes in between are coalesced: one
    /// NOTIFY with the latest state goes out when the interval has passed.
    pub notify_interval: Duration,
    /// Most NOTIFYs sent in one call (one `now`); the rest of a large fan-out goes out in the next calls,
    /// so the answers to the first ones are read before the retransmission timers of the others run.
    /// 0: no limit.
    pub notify_burst: usize,
    /// How often authorizations (and contact lists of list subscriptions) are re-read from the policy, so a
    /// decision made elsewhere (CLI, another server) reaches live subscriptions.
    pub reauthorize_every: Duration,
    /// Most subscriptions at once (503 beyond).
    pub max_subscriptions: usize,
    /// Most publications (entity tags) one presentity may hold (403 beyond).
    pub max_publications: usize,
    /// Most resources in a contact-list subscription (the rest are left out and counted).
    pub max_list_resources: usize,
    /// Largest PIDF body accepted (413 beyond), bytes.
    pub max_body: usize,
    /// A user with no registered endpoint is Offline whatever it published. Off: publications alone count
    /// (presence-only clients, benchmarks).
    pub require_registration: bool,
    /// A watcher nobody has decided about is allowed rather than pending (a closed deployment, or a
    /// benchmark; Kamailio's `force_active`). Explicit blocks still apply.
    pub allow_unknown_watchers: bool,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            enabled: true,
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            notify_interval: Duration::from_secs(1),
            notify_burst: 1000,
            reauthorize_every: Duration::from_secs(5),
            max_subscriptions: 100_000,
            max_publications: 16,
            max_list_resources: 200,
            max_body: 16_384,
            require_registration: true,
            allow_unknown_watchers: false,
        }
    }
}
