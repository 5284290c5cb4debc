//! MS-SIPAE for Vienna: how Microsoft SIP clients (Communicator, Lync, SIPE) authenticate to a server
//! with NTLM over TLS or TCP, and how every later message of the connection is signed.
//!
//! - [`association`]: the sans-IO server: handshake steps, security associations per connection, checking
//!   and signing messages.
//! - [`ntlm`]: connectionless NTLMv2 (MS-NLMP): the server's CHALLENGE, checking the client's
//!   AUTHENTICATE against the account's NT hash, session keys and signatures.
//! - [`auth_header`]: the NTLM `WWW-Authenticate`, `Authorization` and `Authentication-Info` headers.
//! - [`signing`]: the text a signature covers (MS-SIP §3.1.4.2, MS-SIPAE version 3 and later).
//! - [`rc4`]: the RC4 keystream NTLM needs for the exchanged key and sealed checksums.
//!
//! Not here: Kerberos and TLS-DSK (they need a KDC or a certificate provisioning service), and sealing.

pub mod association;
pub mod auth_header;
pub mod error;
pub mod ntlm;
pub mod rc4;
pub mod signing;

pub use association::{AssociationConfig, NtlmAccount, NtlmServer, Refusal, Step};
pub use auth_header::{DEFAULT_REALM, NtlmParams};
pub use error::{HeaderError, NtlmError};
pub use signing::{SignedBy, signing_text};
