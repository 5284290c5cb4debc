//! Counters the core keeps for metrics. Plain integers: the core runs on one thread and the driver copies
//! them out.

/// What the registrar and proxy did since start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests handed to the core by the transaction layer (new server transactions, ACKs, stray ones).
    pub requests: u64,
    /// Responses sent or forwarded upstream, by class: index 0 for 1xx up to 5 for 6xx.
    pub responses: [u64; 6],
    /// 401/407 challenges sent.
    pub auth_challenges: u64,
    /// Credentials that did not verify (wrong password, unknown user, wrong realm or URI).
    pub auth_failures: u64,
    /// Credentials whose nonce and nonce count had been seen before.
    pub auth_replays: u64,
    /// REGISTER requests answered 200.
    pub registrations_accepted: u64,
    /// REGISTER requests refused after authentication (423, 403, 400, 500).
    pub registrations_rejected: u64,
    /// Bindings removed because they expired.
    pub bindings_expired: u64,
    /// Requests forwarded to at least one target.
    pub routed: u64,
    /// Client transactions opened for forwarded requests.
    pub branches: u64,
    /// Requests forked to several contacts that one of them answered with a 2xx.
    pub forks_won: u64,
    /// CANCELs sent to losing or cancelled branches.
    pub cancels: u64,
    /// ACKs for 2xx forwarded statelessly.
    pub acks_forwarded: u64,
    /// Branches that timed out (counted as a 408).
    pub branch_timeouts: u64,
    /// Branches that failed on the transport (counted as a 503 turned 480 upstream).
    pub branch_transport_errors: u64,
    /// Requests refused with 482 because they looped back.
    pub loops: u64,
    /// Messages the core could not serialise or address.
    pub send_errors: u64,
    /// 2xx responses forwarded without a transaction (retransmissions after the fork ended).
    pub stray_2xx_forwarded: u64,
}

impl Counters {
    /// Counts one response of `status` sent upstream.
    pub fn count_response(&mut self, status: u16) {
        let class = (status / 100).clamp(1, 6) as usize - 1;
        self.responses[class] += 1;
    }
}
