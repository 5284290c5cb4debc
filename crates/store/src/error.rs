//! The store's one error type.

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a store operation failed. Messages are one line and safe to show to an operator: they never hold
/// secrets.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist.
    #[error("{kind} {key} not found")]
    NotFound {
        /// What kind of record ("account", "group", ...).
        kind: &'static str,
        /// Its key as the caller gave it.
        key: String,
    },
    /// A record with the same key exists already.
    #[error("{kind} {key} already exists")]
    AlreadyExists {
        /// What kind of record.
        kind: &'static str,
        /// Its key.
        key: String,
    },
    /// The caller passed a value the store does not accept.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which value.
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The data was written by a newer Vienna whose schema this build does not know.
    #[error("store schema version {found} is newer than this build supports ({supported}); upgrade Vienna")]
    SchemaTooNew {
        /// Version found in the store.
        found: i64,
        /// Newest version this build can use.
        supported: i64,
    },
    /// The back end failed (I/O, corruption, locking).
    #[error("store back end: {0}")]
    Backend(String),
}

impl StoreError {
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn not_found(kind: &'static str, key: impl Into<String>) -> Self {
        Self::NotFound { kind, key: key.into() }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid { what, reason: reason.into() }
    }
}
