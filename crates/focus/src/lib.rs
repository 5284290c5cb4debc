//! The conference focus of Vienna (MS-CONFBAS, MS-CONFPRO, RFC 4575), sans-IO.
//!
//! - [`uri`]: conference URIs (`...;gruu;opaque=app:conf:focus:id:<id>`).
//! - [`c3p`]: C3P requests and responses (`application/cccp+xml`).
//! - [`roster`]: the conference model and its conference-info documents, full and partial.
//! - [`focus`]: conferences, admission, roles, mute and ejection, and the commands that change them.
//!
//! The SIP side (SERVICE to the focus factory, the focus INVITE dialog, `Event: conference`
//! subscriptions with NOTIFY or BENOTIFY) and the MCU (audio) drive this core; it tells them, through
//! [`focus::Output`], what to persist and whose roster changed.

pub mod c3p;
pub mod error;
pub mod focus;
pub mod roster;
pub mod uri;

pub use error::{C3pError, Refusal};
pub use focus::{DialIn, Focus, FocusConfig, Output};
pub use roster::{Conference, Role, UserChange};
pub use uri::{ConfKind, ConfUri};
