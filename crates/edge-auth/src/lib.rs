//! Relay credentials for Vienna: the credential service of the A/V Edge, sans-IO.
//!
//! * [`mras`]: MRAS tokens (MS-AVEDGEA, token layout as OfficeSIP's `TokenBlob`, research notes
//!   `media-protocols.md` §3.4): a username that carries its own expiry and a MAC, and a password
//!   derived from the username. Minted with keys shared by the service and every relay, validated
//!   at any relay without shared state.
//! * [`rest`]: TURN REST API ephemeral credentials (draft-uberti-behave-turn-rest, coturn's
//!   `use-auth-secret`) for standard TURN clients.
//! * [`service`]: the Media Relay Authentication Service: [`service::CredentialService`] answers the
//!   XML body of a SIP SERVICE request (`application/msrtc-media-relay-auth+xml`) with credentials
//!   and the media relay list ([`service::CredentialService::handle_mras_request`]).
//!
//! Nothing here reads a clock or opens a socket: the time is an argument.

pub mod mras;
pub mod rest;
pub mod service;

pub use mras::{MrasKeys, Token, TokenError};
pub use service::{CredentialService, Location, MediaRelay};

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A token failed validation.
    #[error("MRAS token: {0}")]
    Token(#[from] TokenError),
    /// The MRAS request body is not the XML the protocol defines.
    #[error("MRAS request malformed: {0}")]
    Malformed(String),
    /// The request names a protocol version this service does not speak.
    #[error("MRAS version {0:?} not supported")]
    Version(String),
    /// The requester asked for credentials of another identity.
    #[error("MRAS request for {identity:?} from {requester:?}")]
    Forbidden {
        /// The identity in the request.
        identity: String,
        /// Who sent it.
        requester: String,
    },
    /// The configuration is unusable.
    #[error("edge credentials: {0}")]
    Config(&'static str),
}
