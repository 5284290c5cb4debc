//! Errors of MS-SIPAE authentication.

use thiserror::Error;

/// Why an NTLM token was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum NtlmError {
    /// The token is not a well-formed NTLM message.
    #[error("malformed NTLM message: {0}")]
    Malformed(&'static str),
    /// The client asked for something this server does not do.
    #[error("unsupported NTLM: {0}")]
    Unsupported(&'static str),
    /// The NTLMv2 response does not match the account's password.
    #[error("wrong password")]
    WrongPassword,
}

/// Why an MS-SIPAE authentication header was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum HeaderError {
    /// Not of the form `SCHEME name="value", ...`.
    #[error("malformed authentication header: {0}")]
    Malformed(&'static str),
    /// A scheme other than NTLM (Kerberos and TLS-DSK are not offered).
    #[error("unsupported authentication scheme {0:?}")]
    Scheme(String),
}
