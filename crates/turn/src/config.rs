//! Relay configuration with the RFC 8656 defaults.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::policy::PeerPolicy;

/// Configuration of a [`Relay`](crate::Relay).
#[derive(Clone, Debug)]
pub struct Config {
    /// REALM sent in challenges and used in long-term keys.
    pub realm: String,
    /// SOFTWARE attribute in responses (`None`: omitted).
    pub software: Option<String>,
    /// IPv4 address relayed sockets bind to (`None`: no IPv4 relaying, 440).
    pub relay_ipv4: Option<Ipv4Addr>,
    /// IPv6 address relayed sockets bind to (`None`: no IPv6 relaying, 440).
    pub relay_ipv6: Option<Ipv6Addr>,
    /// Lowest relay port (inclusive). Default 49152.
    pub min_port: u16,
    /// Highest relay port (inclusive). Default 65535.
    pub max_port: u16,
    /// Allocation lifetime when the client asks for none or less (RFC 8656: 600 s).
    pub default_lifetime: Duration,
    /// Longest allocation lifetime granted (default 3600 s).
    pub max_lifetime: Duration,
    /// Permission lifetime (RFC 8656: 300 s).
    pub permission_lifetime: Duration,
    /// Channel binding lifetime (RFC 8656: 600 s).
    pub channel_lifetime: Duration,
    /// How long a nonce stays valid before 438 (default 600 s).
    pub nonce_lifetime: Duration,
    /// Secret for stateless nonces; `None`: drawn from the entropy source at start (nonces then
    /// do not survive a restart: clients get 438 and retry).
    pub nonce_secret: Option<[u8; 32]>,
    /// How long an EVEN-PORT R-bit reservation is kept (RFC 8656: about 30 s).
    pub reservation_lifetime: Duration,
    /// How long to wait for the driver's `relay_bound` before answering 508.
    pub bind_timeout: Duration,
    /// How many ports to try when binding fails with "address in use".
    pub bind_attempts: u8,
    /// Most allocations per username (486 beyond); `None`: unlimited.
    pub user_quota: Option<u32>,
    /// Most allocations in total (508, or 300 with `alternate_server`); `None`: unlimited.
    pub total_quota: Option<u32>,
    /// Most permissions per allocation (508 beyond).
    pub max_permissions: usize,
    /// Per-allocation bandwidth cap in bytes per second, both directions together; `None`: none.
    pub bandwidth_limit: Option<u64>,
    /// Where to send clients when full (300 Try Alternate).
    pub alternate_server: Option<SocketAddr>,
    /// Peer address policy.
    pub peer_policy: PeerPolicy,
    /// TURN REST API shared secrets; the first is current, the others still accepted (rotation).
    pub rest_secrets: Vec<Vec<u8>>,
    /// End allocations when their TURN REST credential expires (lifetimes granted by Allocate
    /// and Refresh are capped at the expiry), like eturnal's `strict_expiry`. Default false.
    pub strict_rest_expiry: bool,
    /// Serve MS-TURN clients on the same ports (default true).
    pub msturn: bool,
    /// The relay's public UDP address, sent in ALTERNATE-SERVER of MS-TURN 401 answers over UDP
    /// ([MS-TURN] §2.2.2.7): clients (libnice does) then send their authenticated Allocate there.
    /// `None`: not sent (a wrong address would lead clients astray).
    pub ms_public_address: Option<SocketAddr>,
    /// MRAS token keys (MS-AVEDGEA): MS-TURN usernames that are MRAS tokens are validated with
    /// them, statelessly; `None`: MRAS tokens are not accepted.
    pub mras: Option<vienna_edge_auth::MrasKeys>,
    /// Counts shared with the other relays of this server, so `user_quota` and `total_quota` hold
    /// across them; `None`: this relay counts alone.
    pub shared_quota: Option<std::sync::Arc<crate::quota::SharedQuota>>,
}

impl Config {
    /// A configuration with RFC defaults, relaying on IPv4 `relay_ipv4` only.
    pub fn new(realm: &str, relay_ipv4: Ipv4Addr) -> Config {
        Config {
            realm: realm.to_string(),
            software: Some(concat!("Vienna ", env!("CARGO_PKG_VERSION")).to_string()),
            relay_ipv4: Some(relay_ipv4),
            relay_ipv6: None,
            min_port: 49152,
            max_port: 65535,
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            permission_lifetime: Duration::from_secs(300),
            channel_lifetime: Duration::from_secs(600),
            nonce_lifetime: Duration::from_secs(600),
            nonce_secret: None,
            reservation_lifetime: Duration::from_secs(30),
            bind_timeout: Duration::from_secs(5),
            bind_attempts: 5,
            user_quota: None,
            total_quota: None,
            max_permissions: 64,
            bandwidth_limit: None,
            alternate_server: None,
            peer_policy: PeerPolicy::default(),
            rest_secrets: Vec::new(),
            strict_rest_expiry: false,
            msturn: true,
            ms_public_address: None,
            mras: None,
            shared_quota: None,
        }
    }

    /// Check consistency.
    pub fn validate(&self) -> Result<(), crate::Error> {
        if self.min_port > self.max_port || self.min_port == 0 {
            return Err(crate::Error::Config("empty or invalid relay port range"));
        }
        if self.max_lifetime < self.default_lifetime {
            return Err(crate::Error::Config("max_lifetime is shorter than default_lifetime"));
        }
        if self.relay_ipv4.is_none() && self.relay_ipv6.is_none() {
            return Err(crate::Error::Config("no relay address"));
        }
        Ok(())
    }
}
