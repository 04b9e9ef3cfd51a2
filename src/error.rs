//! The one error type of anthill's API. Each variant is a case a user can act
//! on, and maps one-to-one onto a Python exception (see `python/anthill/_errors.py`).

use std::sync::Arc;

use crate::backend_error::BackendError;

/// Result with anthill's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key is not in the store.
    #[error("key {0:?} is not in the store")]
    KeyNotFound(String),
    /// The key is already stored and overwrite was not asked for.
    #[error("key {0:?} is already stored; pass overwrite=True to replace it")]
    KeyExists(String),
    /// The key has an interrupted (or running) upload.
    #[error("key {key:?} {reason}")]
    UploadPending { key: String, reason: String },
    /// The caller (a callback returning `False`, or a spending cap) cancelled.
    #[error("operation cancelled: {0}")]
    Cancelled(String),
    /// The backend is unreachable or kept failing after retries.
    #[error("backend error: {0}")]
    Backend(BackendError),
    /// Content failed authentication: tampering, wrong secret or corruption.
    #[error("integrity error: {0}")]
    Integrity(String),
    /// The caller passed something anthill cannot accept.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A user callback failed; the binding layer re-raises the original error.
    #[error("callback failed: {0}")]
    Callback(CallbackError),
    /// A failure of anthill itself (a bug), neither the caller's nor the
    /// backend's.
    #[error("internal error: {0} (a bug in anthill: please report it)")]
    Internal(String),
}

impl Error {
    pub(crate) fn integrity(message: impl Into<String>) -> Self {
        Error::Integrity(message.into())
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }
}

impl From<BackendError> for Error {
    fn from(error: BackendError) -> Self {
        match error {
            // The backend answered; what it holds is not ours.
            BackendError::TooLarge { .. } => Error::Integrity(error.to_string()),
            error => Error::Backend(error),
        }
    }
}

/// An error raised by a user callback, carried through the core unchanged so
/// that the binding layer can hand the very same error object back.
#[derive(Debug, Clone)]
pub struct CallbackError(pub Arc<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for CallbackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
