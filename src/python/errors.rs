//! Core errors as Python exceptions: each [`Error`] variant becomes its class
//! from `anthill._errors`; an exception raised by a user callback travels
//! through the core inside [`Error::Callback`] and comes back as the very same
//! exception object, traceback included.

use std::sync::Arc;

use pyo3::prelude::*;

use super::ClassCache;
use crate::error::{CallbackError, Error};

static CLASSES: ClassCache<8> = ClassCache::new(
    "anthill._errors",
    [
        "AnthillError",
        "KeyNotFoundError",
        "KeyExistsError",
        "UploadPendingError",
        "OperationCancelledError",
        "BackendError",
        "IntegrityError",
        "InvalidInputError",
    ],
);

/// An exception raised by a Python callback, carried through the core.
#[derive(Debug)]
pub(crate) struct PythonCallbackError(PyErr);

impl std::fmt::Display for PythonCallbackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for PythonCallbackError {}

/// Wraps an exception of a callback so that the core can carry it back.
pub(crate) fn callback_failed(error: PyErr) -> Error {
    Error::Callback(CallbackError(Arc::new(PythonCallbackError(error))))
}

/// An `anthill.InvalidInputError` raised by the binding layer itself.
pub(crate) fn invalid_input(py: Python<'_>, message: impl Into<String>) -> PyErr {
    exception(py, "InvalidInputError", message.into(), None)
}

/// An `anthill.AnthillError` for a failure of anthill itself (a bug).
pub(crate) fn internal_error(py: Python<'_>, message: &str) -> PyErr {
    exception(
        py,
        "AnthillError",
        format!("{message} (a bug in anthill: please report it)"),
        None,
    )
}

fn exception(py: Python<'_>, class: &str, message: String, key: Option<&str>) -> PyErr {
    let instance = CLASSES
        .get(py, class)
        .and_then(|class| class.call1((message,)))
        .and_then(|instance| {
            if let Some(key) = key {
                instance.setattr("key", key)?;
            }
            Ok(instance)
        });
    match instance {
        Ok(instance) => PyErr::from_value(instance),
        Err(error) => error,
    }
}

impl From<Error> for PyErr {
    fn from(error: Error) -> PyErr {
        Python::attach(|py| {
            let (class, key) = match &error {
                Error::Callback(CallbackError(inner)) => {
                    if let Some(original) = inner.downcast_ref::<PythonCallbackError>() {
                        return original.0.clone_ref(py);
                    }
                    ("AnthillError", None)
                }
                Error::KeyNotFound(key) => ("KeyNotFoundError", Some(key.as_str())),
                Error::KeyExists(key) => ("KeyExistsError", Some(key.as_str())),
                Error::UploadPending { key, .. } => ("UploadPendingError", Some(key.as_str())),
                Error::Cancelled(_) => ("OperationCancelledError", None),
                Error::Backend(_) => ("BackendError", None),
                Error::Integrity(_) => ("IntegrityError", None),
                Error::InvalidInput(_) => ("InvalidInputError", None),
                Error::Internal(_) => ("AnthillError", None),
            };
            // "invalid input: " would only repeat the class name.
            let message = match &error {
                Error::InvalidInput(message) => message.clone(),
                other => other.to_string(),
            };
            exception(py, class, message, key)
        })
    }
}
