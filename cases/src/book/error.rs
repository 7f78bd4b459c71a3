//! Why a case book operation failed.

use crate::lifecycle::Refused;

/// Why an action could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    /// No such case.
    #[error("no case {0}")]
    NotFound(String),
    /// The loop's rules refuse it.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// NATS trouble; try again.
    #[error("case store: {0}")]
    Store(String),
}

/// A NATS or encoding failure, in words.
pub(super) fn store_err(e: impl std::fmt::Display) -> ActError {
    ActError::Store(e.to_string())
}
