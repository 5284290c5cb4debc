//! Vienna's SIP signaling core: a registrar (RFC 3261 §10, outbound RFC 5626, GRUU RFC 5627) and a
//! stateful forking proxy (RFC 3261 §16) with Digest authentication, as a sans-IO state machine over the
//! transaction layer of `vienna-sip`.
//!
//! The driver feeds datagrams, framed stream messages, connection losses and the current time to a
//! [`Core`], and drains its [`Output`]s: bytes to send, and binding changes (and watcher records) to make
//! durable before the responses that follow them. Accounts, and each user's presence policy, come from a
//! [`Directory`].
//!
//! SUBSCRIBE (`presence`, `presence.winfo`) and PUBLISH for local users go to the presence agent of
//! `vienna-presence` after the same authentication as other requests from local users; its NOTIFYs leave in
//! client transactions from this core, and registrations feed its aggregation.
//!
//! Microsoft clients ([`msclient`]): NTLM over TCP and TLS with signed messages (MS-SIPAE) beside Digest,
//! the REGISTER answer they expect, in-band provisioning, roaming contacts and self view backed by the
//! directory, SERVICE operations on contact lists and ACLs, category publishing and category presence
//! subscriptions (MS-PRES) on the one presence model, BENOTIFY, and an IM-session gateway
//! ([`msclient::im_gateway`]) that answers their IM INVITEs standard clients refuse and carries the messages
//! as page-mode MESSAGE.
//! The conference focus ([`conference`], on with [`Core::enable_conferences`]) answers C3P, conference
//! dialogs and roster subscriptions, and asks the driver to move audio to and from the MCU.

pub mod conference;
mod config;
mod core;
mod counters;
mod directory;
mod location;
pub mod msclient;
mod registrar;
mod routing;

pub use crate::config::{CoreConfig, LocalAddr};
pub use crate::core::{Core, Output, ServiceHandler, ServiceRequest};
pub use crate::counters::Counters;
pub use crate::directory::{Account, ContactEdit, Directory};
pub use crate::location::Location;
