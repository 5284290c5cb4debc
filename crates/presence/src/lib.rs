//! Vienna's presence core, sans-IO: the LCS presence model on the MS-PRES availability scale, SIMPLE
//! documents (PIDF RFC 3863 with RPID RFC 4480, watcher information RFC 3858, RLMI RFC 4662), and the
//! presence agent that accepts PUBLISH (RFC 3903) and SUBSCRIBE (RFC 6665, RFC 3856, RFC 3857, RFC 4662)
//! and sends NOTIFY.
//!
//! - [`availability`]: the six LCS states plus Offline, availability numbers, activity tokens, notes.
//! - [`presentity`]: one user's publications and registered endpoints, and how they aggregate.
//! - [`pidf`], [`documents`]: documents in and out, read with the bounded reader of `vienna-xml`.
//! - [`core`]: [`PresenceCore`], fed by the SIP core (`vienna-signaling`), which authenticates, addresses
//!   NOTIFYs and owns the transactions; authorization comes from a [`Policy`] (the store, in the server).
//!
//! Nothing here opens a socket, reads a clock or spawns a task: time is an argument.
//!
//! What is durable and what is not: the watcher records this core asks to persist (a new, undecided
//! watcher) and everything the [`Policy`] reads (contact lists, groups, ACL entries, watcher decisions)
//! live in the store. Publications and subscriptions are soft state (RFC 3903 §4, RFC 6665 §4.1.2): they
//! are kept in memory, and after a restart clients re-establish them on their next refresh (a PUBLISH
//! refresh gets 412, a SUBSCRIBE refresh 481, and both RFCs tell the client to start over). A graceful
//! shutdown ends every subscription with `reason=deactivated` so subscribers come back at once.

pub mod availability;
mod config;
pub mod core;
mod counters;
pub mod documents;
mod error;
pub mod pidf;
mod policy;
pub mod presentity;

pub use crate::availability::{PresenceState, State};
pub use crate::config::PresenceConfig;
pub use crate::core::{ALLOW_EVENTS, Origin, Output, PresenceCore, PresentityView, SubId};
pub use crate::counters::Counters;
pub use crate::error::BodyError;
pub use crate::policy::{AllowAll, Decision, Policy, WatcherState, decide};
