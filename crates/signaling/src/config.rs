//! What the signaling core needs to know about its deployment.

use std::net::SocketAddr;

use vienna_sip::digest::Algorithm;
use vienna_sip::transaction::TimerConfig;
use vienna_sip::{Limits, Transport};

/// One address the server listens on, for Via, Record-Route and recognising requests meant for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalAddr {
    /// Transport of the listener.
    pub transport: Transport,
    /// Bound address (the real port, also when port 0 was configured).
    pub addr: SocketAddr,
}

/// Settings of a [`crate::Core`].
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// SIP domain of the local users (`sip:alice@DOMAIN`), in lower case.
    pub domain: String,
    /// Digest realm (usually the domain).
    pub realm: String,
    /// Challenge REGISTER (401) and out-of-dialog requests from local users (407). Off only for
    /// benchmarks on a trusted network: anyone could then register as anyone.
    pub authenticate: bool,
    /// The listeners.
    pub local: Vec<LocalAddr>,
    /// Other host names that mean this server in a Request-URI or Route (e.g. a DNS name of the host).
    pub aliases: Vec<String>,
    /// Shortest registration accepted (423 Interval Too Brief below it), seconds.
    pub min_expires: u32,
    /// Longest registration granted (longer requests are shortened), seconds.
    pub max_expires: u32,
    /// Registration lifetime when the client asks for none, seconds.
    pub default_expires: u32,
    /// Most contacts one address of record may have registered at once.
    pub max_contacts: usize,
    /// Digest algorithms offered, in challenge order.
    pub digest_algorithms: Vec<Algorithm>,
    /// How long a Digest nonce is accepted, seconds.
    pub nonce_lifetime_secs: u64,
    /// Nonces whose nonce-count is tracked for replay protection.
    pub nonce_table: usize,
    /// Transaction timers (T1, T2, T4, Timer C).
    pub timers: TimerConfig,
    /// Message size limits.
    pub limits: Limits,
    /// Most transactions at once; more new requests get 503.
    pub max_transactions: usize,
    /// The Server and User-Agent header value.
    pub server_name: String,
    /// Keep-alive interval told to clients that negotiate `ms-keep-alive` (MS-CONMGMT), seconds.
    pub ms_keep_alive_secs: u32,
    /// The presence agent (PUBLISH, SUBSCRIBE/NOTIFY for presence and watcher info).
    pub presence: vienna_presence::PresenceConfig,
    /// Microsoft clients: NTLM (MS-SIPAE), provisioning, roaming lists, enhanced presence.
    pub ms: crate::msclient::MsConfig,
}

impl CoreConfig {
    /// Defaults for `domain` listening on `local`.
    pub fn new(domain: &str, local: Vec<LocalAddr>) -> Self {
        CoreConfig {
            domain: domain.to_ascii_lowercase(),
            realm: domain.to_owned(),
            authenticate: true,
            local,
            aliases: Vec::new(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
            digest_algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            nonce_lifetime_secs: 300,
            nonce_table: 100_000,
            timers: TimerConfig::default(),
            limits: Limits::default(),
            max_transactions: 100_000,
            server_name: concat!("Vienna/", env!("CARGO_PKG_VERSION")).to_owned(),
            ms_keep_alive_secs: 300,
            presence: vienna_presence::PresenceConfig::default(),
            ms: crate::msclient::MsConfig::default(),
        }
    }
}
