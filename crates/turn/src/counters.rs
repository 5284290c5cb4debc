//! Counters the driver reads (and exports as metrics). Plain `u64`s: a relay lives on one
//! worker thread, which reads them between calls.

use std::fmt;

/// Why a packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not STUN, not ChannelData.
    NotStunOrChannelData,
    /// STUN that does not decode, or an indication with bad attributes.
    Malformed,
    /// FINGERPRINT present and wrong.
    BadFingerprint,
    /// A response or unexpected class/method from a client.
    Unexpected,
    /// No allocation for the 5-tuple or relayed address.
    NoAllocation,
    /// ChannelData on an unbound or expired channel.
    NoChannel,
    /// No (unexpired) permission for the peer.
    NoPermission,
    /// Peer address denied by policy.
    PeerDenied,
    /// The allocation has no relayed address of the peer's family.
    FamilyMismatch,
    /// Over the allocation's bandwidth cap.
    BandwidthExceeded,
    /// The caller's output buffer is too small.
    BufferTooSmall,
    /// An indication with unknown comprehension-required attributes.
    UnknownAttribute,
    /// An MS-TURN request whose MS-SEQUENCE-NUMBER was already seen (or fell behind the window).
    Replay,
    /// An MS-TURN Send whose MESSAGE-INTEGRITY or connection id does not match its allocation.
    Unauthenticated,
    /// Raw data on an MS-TURN allocation that has no active destination.
    NoActiveDestination,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 15;
    /// All reasons, in index order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::NotStunOrChannelData,
        DropReason::Malformed,
        DropReason::BadFingerprint,
        DropReason::Unexpected,
        DropReason::NoAllocation,
        DropReason::NoChannel,
        DropReason::NoPermission,
        DropReason::PeerDenied,
        DropReason::FamilyMismatch,
        DropReason::BandwidthExceeded,
        DropReason::BufferTooSmall,
        DropReason::UnknownAttribute,
        DropReason::Replay,
        DropReason::Unauthenticated,
        DropReason::NoActiveDestination,
    ];
    /// Index into [`Counters::drops`].
    pub fn index(self) -> usize {
        self as usize
    }
    /// Short snake_case name for metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::NotStunOrChannelData => "not_stun",
            DropReason::Malformed => "malformed",
            DropReason::BadFingerprint => "bad_fingerprint",
            DropReason::Unexpected => "unexpected",
            DropReason::NoAllocation => "no_allocation",
            DropReason::NoChannel => "no_channel",
            DropReason::NoPermission => "no_permission",
            DropReason::PeerDenied => "peer_denied",
            DropReason::FamilyMismatch => "family_mismatch",
            DropReason::BandwidthExceeded => "bandwidth_exceeded",
            DropReason::BufferTooSmall => "buffer_too_small",
            DropReason::UnknownAttribute => "unknown_attribute",
            DropReason::Replay => "replay",
            DropReason::Unauthenticated => "unauthenticated",
            DropReason::NoActiveDestination => "no_active_destination",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error codes the relay sends, in [`Counters::error_responses`] order.
pub const ERROR_CODES: [u16; 19] =
    [300, 400, 401, 403, 420, 431, 432, 434, 435, 436, 437, 438, 440, 441, 442, 443, 486, 500, 508];

/// The reason phrase for an error code.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        300 => "Try Alternate",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        443 => "Peer Address Family Mismatch",
        486 => "Allocation Quota Reached",
        508 => "Insufficient Capacity",
        431 => "Integrity Check Failure",
        432 => "Missing Username",
        434 => "Missing Realm",
        435 => "Missing Nonce",
        436 => "Unknown User",
        _ => "Server Error",
    }
}

/// Relay counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets relayed client to peer.
    pub client_to_peer_packets: u64,
    /// Payload bytes relayed client to peer.
    pub client_to_peer_bytes: u64,
    /// Packets relayed peer to client.
    pub peer_to_client_packets: u64,
    /// Payload bytes relayed peer to client.
    pub peer_to_client_bytes: u64,
    /// Drops by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
    /// Allocations now active.
    pub allocations_active: u64,
    /// Allocations created since start.
    pub allocations_created: u64,
    /// Allocations that expired.
    pub allocations_expired: u64,
    /// Allocations deleted by Refresh with lifetime 0.
    pub allocations_deleted: u64,
    /// Requests with integrity that failed authentication (wrong key, unknown or expired user).
    pub auth_failures: u64,
    /// 401 challenges to requests without credentials.
    pub auth_challenges: u64,
    /// Per-user quota rejections (486).
    pub user_quota_hits: u64,
    /// Total quota rejections (508 or 300).
    pub total_quota_hits: u64,
    /// Success responses sent.
    pub success_responses: u64,
    /// Error responses by code, in [`ERROR_CODES`] order.
    pub error_responses: [u64; ERROR_CODES.len()],
    /// The MS-TURN dialect's share of the above, and what only it has.
    pub ms: MsCounters,
}

/// Counters of the MS-TURN dialect (its packets and allocations are also in the totals of
/// [`Counters`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MsCounters {
    /// MS-TURN control messages received (Allocate, Send, Set Active Destination...).
    pub requests: u64,
    /// MS-TURN allocations created.
    pub allocations_created: u64,
    /// MS-TURN allocations now active.
    pub allocations_active: u64,
    /// Packets relayed client to peer (Send requests and raw data).
    pub client_to_peer_packets: u64,
    /// Payload bytes relayed client to peer.
    pub client_to_peer_bytes: u64,
    /// Packets relayed peer to client (Data Indications and raw data).
    pub peer_to_client_packets: u64,
    /// Payload bytes relayed peer to client.
    pub peer_to_client_bytes: u64,
    /// Send requests relayed.
    pub send_requests: u64,
    /// Data Indications sent.
    pub data_indications: u64,
    /// Raw packets relayed client to peer (active destination).
    pub raw_client_to_peer: u64,
    /// Raw packets relayed peer to client (active destination).
    pub raw_peer_to_client: u64,
    /// Set Active Destination requests granted.
    pub active_destinations: u64,
    /// Requests refused for their credentials or integrity.
    pub auth_failures: u64,
    /// Requests dropped as replays (MS-SEQUENCE-NUMBER).
    pub replays: u64,
    /// Retransmitted requests answered from the cache.
    pub retransmissions: u64,
    /// Success responses sent.
    pub success_responses: u64,
    /// Error responses sent.
    pub error_responses: u64,
    /// MS-TURNBWM Reservation Check requests.
    pub bandwidth_checks: u64,
    /// MS-TURNBWM Reservation Commit requests.
    pub bandwidth_commits: u64,
    /// MS-TURNBWM Reservation Update requests.
    pub bandwidth_updates: u64,
}

impl MsCounters {
    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &MsCounters) {
        let pairs: [(&mut u64, u64); 20] = [
            (&mut self.requests, o.requests),
            (&mut self.allocations_created, o.allocations_created),
            (&mut self.allocations_active, o.allocations_active),
            (&mut self.client_to_peer_packets, o.client_to_peer_packets),
            (&mut self.client_to_peer_bytes, o.client_to_peer_bytes),
            (&mut self.peer_to_client_packets, o.peer_to_client_packets),
            (&mut self.peer_to_client_bytes, o.peer_to_client_bytes),
            (&mut self.send_requests, o.send_requests),
            (&mut self.data_indications, o.data_indications),
            (&mut self.raw_client_to_peer, o.raw_client_to_peer),
            (&mut self.raw_peer_to_client, o.raw_peer_to_client),
            (&mut self.active_destinations, o.active_destinations),
            (&mut self.auth_failures, o.auth_failures),
            (&mut self.replays, o.replays),
            (&mut self.retransmissions, o.retransmissions),
            (&mut self.success_responses, o.success_responses),
            (&mut self.error_responses, o.error_responses),
            (&mut self.bandwidth_checks, o.bandwidth_checks),
            (&mut self.bandwidth_commits, o.bandwidth_commits),
            (&mut self.bandwidth_updates, o.bandwidth_updates),
        ];
        for (a, b) in pairs {
            *a += b;
        }
    }
}

impl Counters {
    /// Adds `other` into `self` (to total the counters of several relays).
    pub fn add(&mut self, other: &Counters) {
        self.client_to_peer_packets += other.client_to_peer_packets;
        self.client_to_peer_bytes += other.client_to_peer_bytes;
        self.peer_to_client_packets += other.peer_to_client_packets;
        self.peer_to_client_bytes += other.peer_to_client_bytes;
        for (a, b) in self.drops.iter_mut().zip(other.drops) {
            *a += b;
        }
        self.allocations_active += other.allocations_active;
        self.allocations_created += other.allocations_created;
        self.allocations_expired += other.allocations_expired;
        self.allocations_deleted += other.allocations_deleted;
        self.auth_failures += other.auth_failures;
        self.auth_challenges += other.auth_challenges;
        self.user_quota_hits += other.user_quota_hits;
        self.total_quota_hits += other.total_quota_hits;
        self.success_responses += other.success_responses;
        for (a, b) in self.error_responses.iter_mut().zip(other.error_responses) {
            *a += b;
        }
        self.ms.add(&other.ms);
    }

    /// Drops for one reason.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops[r.index()]
    }
    /// Error responses sent with `code`.
    pub fn errors(&self, code: u16) -> u64 {
        ERROR_CODES.iter().position(|c| *c == code).map_or(0, |i| self.error_responses[i])
    }
    pub(crate) fn count_error(&mut self, code: u16) {
        let i = ERROR_CODES.iter().position(|c| *c == code).unwrap_or(ERROR_CODES.len() - 2);
        self.error_responses[i] += 1;
    }
    pub(crate) fn drop(&mut self, r: DropReason) {
        self.drops[r.index()] += 1;
    }
}
