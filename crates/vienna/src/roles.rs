//! Which roles this build runs, and the listeners they bound.

use std::net::SocketAddr;

use serde::Serialize;

/// A bound listener, as logged at start and listed by `/api/v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct Listener {
    /// Role that owns it ("admin", later "sip", "turn", ...).
    pub role: &'static str,
    /// Protocol spoken on it ("http", "https", "udp", "tcp", "tls", "ms-tcp").
    pub protocol: &'static str,
    /// Bound address (the real port when port 0 was asked for).
    pub address: SocketAddr,
}

impl Listener {
    /// Logs the one line per bound listener that operators and tests look for.
    pub fn log(&self) {
        tracing::info!(role = self.role, protocol = self.protocol, address = %self.address, "listening");
    }
}

/// Roles Vienna will have that this build does not run yet. Listed honestly at start and in the status
/// API; each leaves this list when it is built.
pub const NOT_BUILT: &[&str] =
    &["enhanced presence (the Microsoft dialect: SERVICE, categories, roaming contacts; SIMPLE presence is \
     built)"];
