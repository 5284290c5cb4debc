//! SIP signaling core of Vienna, sans-IO: messages, stream framing, transactions and Digest authentication.
//!
//! - [`message`], [`header`], [`types`], [`uri`]: RFC 3261 §7, §19, §20, §25 messages, parsed leniently as
//!   RFC 4475 asks, serialized with unknown headers preserved.
//! - [`framing`]: RFC 3261 §18.3 stream framing by Content-Length and RFC 5626 §4.4.1 CRLF keep-alives.
//! - [`transaction`]: RFC 3261 §17 client and server transactions (INVITE and non-INVITE) with RFC 6026's
//!   Accepted state, behind a [`transaction::TransactionLayer`] that a driver feeds and polls.
//! - [`digest`]: RFC 3261 §22, RFC 7616 and RFC 8760 Digest (MD5 and SHA-256, qop=auth), stateless
//!   expiring nonces and nonce-count replay protection.
//!
//! Nothing here opens a socket, reads a clock or spawns a task: time is an argument.
//!
//! # How a driver and a TU use it
//! - **UDP**: hand each datagram to [`transaction::TransactionLayer::handle_bytes`] (it parses, answers bad
//!   requests with 400/413/505 and drops bad responses). **TCP/TLS**: one [`StreamFramer`] per connection;
//!   [`FrameEvent::Message`] goes to [`transaction::TransactionLayer::handle_message`],
//!   [`FrameEvent::Invalid`] to [`transaction::TransactionLayer::handle_parse_error`], [`FrameEvent::Ping`] is
//!   answered with [`PONG`]; an `Err` from the framer (or [`StreamFramer::partial_since`] older than the
//!   slow-sender limit) closes the connection, after which the driver calls
//!   [`transaction::TransactionLayer::connection_lost`].
//! - Drain [`transaction::TransactionLayer::poll_output`]: a [`transaction::Transmit`] goes to its peer (on a
//!   stream, the connection to that address), a [`transaction::TransactionEvent`] to the TU. Sleep until
//!   [`transaction::TransactionLayer::poll_timeout`] and call `handle_timeout(now)`.
//! - **Registrar TU** on `TransactionEvent::Request` for REGISTER: [`Request::check_uri_scheme`], look for
//!   [`digest::Credentials::find`]; without (or with failing) credentials answer 401 with
//!   [`digest::DigestServer::add_challenge`] (`stale` when [`digest::Verdict::Stale`]); with
//!   [`digest::Verdict::Ok`] read [`Headers::contacts`] (`Contacts::Wildcard` for removal), `expires`/`q`/
//!   `+sip.instance`/`reg-id` on each [`NameAddr`], [`Headers::expires`], and answer with
//!   [`Request::make_response_with_tag`] through [`transaction::TransactionLayer::send_response`].
//! - **Proxy TU**: [`Request::check_max_forwards`] (483), [`Request::unsupported_tags`] on Proxy-Require
//!   (420), [`Request::decrement_max_forwards`], push its Via with a fresh
//!   [`transaction::TransactionLayer::new_branch`] via [`Headers::push_front`], then
//!   [`transaction::TransactionLayer::send_request_with`] (`timer_c: true`) once per branch. Responses come
//!   back as `TransactionEvent::Response`; the proxy strips its Via ([`Headers::pop_first_value`]) and
//!   forwards in the server transaction; losing branches get [`transaction::TransactionLayer::cancel`];
//!   `TransactionEvent::Cancel` names the INVITE server transaction to cancel; 2xx ACKs arrive as
//!   `TransactionEvent::Ack` and are forwarded with [`transaction::TransactionLayer::send_stateless`].
//!
//! # Not here yet
//! Dialogs (RFC 3261 §12) and the registrar, proxy (§16 loop detection, Record-Route, forking policy),
//! presence and IM cores that build on this crate; NTLM/Kerberos (MS-SIPAE) and the epid to
//! `+sip.instance` derivation (needs SHA-1); multipart bodies and Content-Encoding; DNS (RFC 3263) failover.
//! Parsing allocates one `String` per header and re-parses typed values on each access (about 5 us for a
//! REGISTER on the 2-core dev box, see `examples/parse_throughput.rs`); a borrowed, cached view is the next
//! step if profiles ask for it.
//!
//! # Why not rsip
//! The workspace research picked rsip 0.4 for SIP messages. Evaluated here, it is not used: it rejects
//! RFC 4475's first valid torture message (wsinv: header folding and whitespace before colons) with an
//! untyped `TokenizeError`, its errors are strings that do not name the offending header (so no 400 with
//! a precise reason, nor 413/505 distinctions), and it copies every header into its own `String` pair plus
//! typed conversions on each access. The parser here is small, validates exactly what RFC 4475 requires,
//! returns [`ParseError`] with the header and the response code, and keeps unknown headers verbatim.

pub mod digest;
pub mod error;
pub mod framing;
pub mod header;
pub mod message;
pub mod transaction;
pub mod types;
pub mod uri;

use std::fmt;

pub use error::{Error, ParseError, ParseErrorKind};
pub use framing::{FrameEvent, PONG, StreamFramer};
pub use header::{Header, HeaderName, Headers, Params};
pub use message::{Framing, Limits, Message, Request, Response, reason_phrase};
pub use types::{CSeq, Contacts, Event, Method, NameAddr, Via};
pub use uri::{SipUri, Uri};

/// A transport protocol of SIP (RFC 3261 §18, RFC 7118 for WebSocket).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: unreliable, retransmission timers apply.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket (RFC 7118), carried by the driver.
    Ws,
}

impl Transport {
    /// Whether the transport is reliable (timers A, E, G stop; D, I, J, K become zero).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The Via transport token.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
        }
    }

    /// Parses a Via transport token (case-insensitive).
    pub fn from_via(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "UDP" => Some(Transport::Udp),
            "TCP" => Some(Transport::Tcp),
            "TLS" => Some(Transport::Tls),
            "WS" | "WSS" => Some(Transport::Ws),
            _ => None,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
