//! [`BackendError`]: what a backend failure was, which decides whether to
//! retry it. Below both the backends (`pad_store`), which raise it, and the
//! API's error type (`error.rs`), which carries it, so that neither reaches
//! the other through it.

/// What a backend failure was, which decides whether to retry it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The object does not exist.
    #[error("object {0:?} is missing from the backend")]
    NotFound(String),
    /// `reserve` found the object already there.
    #[error("object {0:?} already exists on the backend")]
    AlreadyExists(String),
    /// A failure that may pass: timeout, connection reset, throttling, 5xx.
    #[error("{0} (transient; retried)")]
    Transient(String),
    /// A failure retrying will not fix: bad credentials, missing bucket,
    /// permission denied, disk full.
    #[error("{0}")]
    Permanent(String),
    /// A capped read (`Backend::get_capped`) found the object larger than
    /// anything anthill writes under that name, and did not read it: not
    /// this store's object (or damaged). An integrity failure, not a
    /// backend one.
    #[error(
        "object {name:?} holds {size} bytes, more than the {max} anthill ever writes there: \
         it is not this store's (or it was damaged), and was not read"
    )]
    TooLarge { name: String, size: u64, max: u64 },
}

impl BackendError {
    pub fn is_transient(&self) -> bool {
        matches!(self, BackendError::Transient(_))
    }
}

/// [`BackendError::TooLarge`] if `size` exceeds `max_size`.
pub fn check_size(name: &str, size: u64, max_size: u64) -> Result<(), BackendError> {
    if size > max_size {
        return Err(BackendError::TooLarge {
            name: name.to_owned(),
            size,
            max: max_size,
        });
    }
    Ok(())
}
