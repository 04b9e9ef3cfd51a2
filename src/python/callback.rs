//! A Python callable as a core [`Callback`]: it receives each event as an
//! instance of its `anthill._events` class; `True`/`None` continue, `False`
//! cancels, an exception aborts the operation and is re-raised unchanged
//! (see `errors.rs`).
//!
//! - From a sync method ([`CallMode::Blocking`]) the callable runs on the
//!   thread that drives the operation, attached to Python just for the call.
//!   It may not return an awaitable.
//! - From an `*_async` method ([`CallMode::Async`]) every call, plain or
//!   `async def`, runs as a task on the caller's event loop, in the caller's
//!   contextvars (`anthill._callbacks.call_on_loop`), and the core awaits it.

use std::sync::Arc;

use futures::FutureExt;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBool;
use pyo3_async_runtimes::TaskLocals;

use super::errors::{callback_failed, invalid_input};
use super::events::IntoPyEvent;
use super::runtime::EventLoopBridge;
use crate::error::{Error, Result};
use crate::events::Callback;

/// Where and how the callable is called.
pub(crate) enum CallMode {
    /// From a sync method: call directly; an awaitable result is an error.
    Blocking,
    /// From an async method: run on this event loop and await.
    Async(TaskLocals),
}

static CALL_ON_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Checks that `callback` is callable (or `None`).
pub(crate) fn check_callable(callback: &Option<Py<PyAny>>, py: Python<'_>) -> PyResult<()> {
    match callback {
        Some(callable) if !callable.bind(py).is_callable() => {
            let type_name = callable
                .bind(py)
                .get_type()
                .name()
                .map(|name| name.to_string())
                .unwrap_or_default();
            Err(invalid_input(
                py,
                format!("callback must be callable or None, got {type_name}"),
            ))
        }
        _ => Ok(()),
    }
}

/// The core callback for `callable` in a call made with `event_loop` (an
/// `*_async` method) or without (a sync one), after checking it is callable.
pub(crate) fn callback_for<E: IntoPyEvent>(
    py: Python<'_>,
    event_loop: Option<&EventLoopBridge>,
    callable: Option<Py<PyAny>>,
) -> PyResult<Option<Callback<E>>> {
    check_callable(&callable, py)?;
    match event_loop {
        None => Ok(bridge(callable, CallMode::Blocking)),
        Some(_) => bridge_on_loop(py, callable),
    }
}

/// The core callback of an `*_async` method: `callable` runs on the caller's
/// event loop, in the caller's context. Only a call with a callback needs them.
pub(crate) fn bridge_on_loop<E: IntoPyEvent>(
    py: Python<'_>,
    callable: Option<Py<PyAny>>,
) -> PyResult<Option<Callback<E>>> {
    match callable {
        None => Ok(None),
        Some(callable) => Ok(bridge(
            Some(callable),
            CallMode::Async(pyo3_async_runtimes::tokio::get_current_locals(py)?),
        )),
    }
}

/// The core callback for the Python `callable`, or `None` without one.
pub(crate) fn bridge<E: IntoPyEvent>(
    callable: Option<Py<PyAny>>,
    mode: CallMode,
) -> Option<Callback<E>> {
    let callable = Arc::new(callable?);
    let mode = Arc::new(mode);
    Some(Arc::new(move |event: E| {
        let callable = Arc::clone(&callable);
        let mode = Arc::clone(&mode);
        async move { deliver(&callable, &mode, event).await }.boxed()
    }))
}

async fn deliver<E: IntoPyEvent>(callable: &Py<PyAny>, mode: &CallMode, event: E) -> Result<bool> {
    match mode {
        CallMode::Blocking => Python::attach(|py| {
            let event = event.into_py_event(py).map_err(callback_failed)?;
            let answer = callable.bind(py).call1((event,)).map_err(callback_failed)?;
            if answer.hasattr(intern!(py, "__await__")).unwrap_or(false) {
                // Close a coroutine so that Python does not warn it was never awaited.
                if answer.hasattr(intern!(py, "close")).unwrap_or(false) {
                    let _ = answer.call_method0(intern!(py, "close"));
                }
                return Err(Error::InvalidInput(
                    "async callbacks need the *_async methods (store_item_async, \
                     fetch_item_async); the sync methods take plain callables"
                        .into(),
                ));
            }
            answer_to_bool(&answer)
        }),
        CallMode::Async(locals) => {
            let answer = Python::attach(|py| {
                let call_on_loop = CALL_ON_LOOP.import(py, "anthill._callbacks", "call_on_loop")?;
                let event = event.into_py_event(py)?;
                let coroutine = call_on_loop.call1((callable.bind(py), event))?;
                pyo3_async_runtimes::into_future_with_locals(locals, coroutine)
            })
            .map_err(callback_failed)?
            .await
            .map_err(callback_failed)?;
            Python::attach(|py| answer_to_bool(answer.bind(py)))
        }
    }
}

/// `None`/`True` -> continue, `False` -> cancel, anything else is an error.
fn answer_to_bool(answer: &Bound<'_, PyAny>) -> Result<bool> {
    if answer.is_none() {
        return Ok(true);
    }
    if let Ok(answer) = answer.cast::<PyBool>() {
        return Ok(answer.is_true());
    }
    let shown = answer
        .repr()
        .map(|repr| repr.to_string())
        .unwrap_or_else(|_| "an unprintable value".into());
    let shown = if shown.chars().count() > 60 {
        format!("{}…", shown.chars().take(60).collect::<String>())
    } else {
        shown
    };
    Err(Error::InvalidInput(format!(
        "callback must return True, False or None, got {shown}"
    )))
}
