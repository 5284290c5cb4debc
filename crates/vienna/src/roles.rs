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
pub const NOT_BUILT: &[&str] = &[
    "federation (Access Edge: requests for other domains get 403)",
    "IM and application-sharing conferencing MCUs (the audio MCU is built; their conference URIs get 404)",
    "video in the MCU (audio only)",
];
