//! Running core futures for Python, on pyo3-async-runtimes' one shared tokio
//! runtime: to completion with the GIL released (the sync methods), or as an
//! asyncio awaitable (the `*_async` methods).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3_async_runtimes::TaskLocals;
use pyo3_async_runtimes::tokio::{future_into_py_with_locals, get_runtime};

use super::errors::invalid_input;
use crate::error::Result;

/// How often a blocked call looks for Ctrl-C (and other signal handlers).
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Runs a call that changes a store (or opens one) to completion with the
/// GIL released. A signal handler that raises (Ctrl-C: `KeyboardInterrupt`)
/// drops the future, which cancels the operation, and the exception is raised.
///
/// From inside a callback (the thread is already driving an anthill call)
/// it refuses: the outer call holds the store's writer lock and perhaps its
/// expansion turn, so a nested change could wait on its own caller forever.
pub(crate) fn block_on<F, T>(py: Python<'_>, future: F) -> PyResult<T>
where
    F: Future<Output = Result<T>> + Send,
    T: Send,
{
    if inside_a_call() {
        return Err(invalid_input(
            py,
            "a callback cannot store, remove, open or close while its own call runs \
             (that call holds the store's writer lock); do it after the call returns",
        ));
    }
    run(py, future)
}

/// Runs a call that only reads a store; also allowed from inside a callback
/// (e.g. `summary()` to show the state in a progress display).
pub(crate) fn block_on_read<F, T>(py: Python<'_>, future: F) -> PyResult<T>
where
    F: Future<Output = Result<T>> + Send,
    T: Send,
{
    if inside_a_call() {
        // Step out of the runtime context the callback runs in, then block.
        return py
            .detach(|| tokio::task::block_in_place(|| get_runtime().block_on(future)))
            .map_err(PyErr::from);
    }
    run(py, future)
}

/// Whether this thread is already driving a future of the runtime (a sync
/// callback called from inside an anthill call).
fn inside_a_call() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

fn run<F, T>(py: Python<'_>, future: F) -> PyResult<T>
where
    F: Future<Output = Result<T>> + Send,
    T: Send,
{
    py.detach(|| {
        get_runtime().block_on(async {
            tokio::pin!(future);
            let mut signals = tokio::time::interval(SIGNAL_CHECK_INTERVAL);
            signals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    outcome = &mut future => return outcome.map_err(PyErr::from),
                    _ = signals.tick() => Python::attach(|py| py.check_signals())?,
                }
            }
        })
    })
}

/// Async calls whose Rust future has not finished yet.
static ASYNC_CALLS_RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Whether any async call was made (else exiting needs no wait).
static ASYNC_CALLS_MADE: AtomicBool = AtomicBool::new(false);

/// Counts one running async call; dropped when its future ends or is dropped.
struct RunningAsyncCall;

impl RunningAsyncCall {
    fn start() -> Self {
        ASYNC_CALLS_MADE.store(true, Ordering::Relaxed);
        ASYNC_CALLS_RUNNING.fetch_add(1, Ordering::AcqRel);
        RunningAsyncCall
    }
}

impl Drop for RunningAsyncCall {
    fn drop(&mut self) {
        ASYNC_CALLS_RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Most time the exit hook waits for async calls still running.
const EXIT_WAIT_LIMIT: Duration = Duration::from_secs(2);
/// Time given, after the last async call ended, to the tokio thread that
/// hands its result to the event loop.
const EXIT_GRACE: Duration = Duration::from_millis(50);

/// Registered with `atexit`: lets tokio threads finish handing results to
/// asyncio before the interpreter finalizes.
///
/// pyo3-async-runtimes completes an awaitable from a tokio thread with
/// `loop.call_soon_threadsafe`, which releases the GIL while it wakes the
/// loop and then takes it back. If the main thread starts finalizing in that
/// instant, the tokio thread is killed while holding Python objects and the
/// process aborts (pyo3-async-runtimes issue #40). Waiting here, with the GIL
/// released, closes that window.
#[pyfunction]
pub(crate) fn wait_for_async_calls(py: Python<'_>) {
    if !ASYNC_CALLS_MADE.load(Ordering::Relaxed) {
        return;
    }
    py.detach(|| {
        let started = Instant::now();
        while ASYNC_CALLS_RUNNING.load(Ordering::Acquire) > 0 && started.elapsed() < EXIT_WAIT_LIMIT
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(EXIT_GRACE);
    });
}

/// Turns `future` into an asyncio awaitable bound to the caller's event loop
/// and context (`locals`). Cancelling the asyncio task drops the future.
pub(crate) fn awaitable<'py, F, T>(
    py: Python<'py>,
    locals: TaskLocals,
    future: F,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let running = RunningAsyncCall::start();
    future_into_py_with_locals(py, locals, async move {
        let outcome = future.await.map_err(PyErr::from);
        drop(running);
        outcome
    })
}
