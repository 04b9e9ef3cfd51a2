//! Running core futures for Python, on pyo3-async-runtimes' one shared tokio
//! runtime: to completion with the GIL released (the sync methods), or as an
//! asyncio future completed through the caller's [`EventLoopBridge`] (the
//! `*_async` methods).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::FutureExt;
use pyo3::exceptions::PyNotImplementedError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyWeakrefReference;
use pyo3::{IntoPyObjectExt, intern};

use super::errors::{internal_error, invalid_input};
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
    refuse_inside_a_callback(py)?;
    run(py, future)
}

/// Refuses a change from inside a callback: the call it belongs to holds the
/// store's writer lock and perhaps its expansion turn, so a nested change
/// could wait on its own caller for ever. A sync method's callback runs on
/// the thread driving the call; an async one's on the event loop, marked
/// by `anthill._callbacks.in_callback`.
fn refuse_inside_a_callback(py: Python<'_>) -> PyResult<()> {
    static IN_CALLBACK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let in_async_callback = || -> PyResult<bool> {
        let in_callback = IN_CALLBACK.import(py, "anthill._callbacks", "in_callback")?;
        in_callback.call0()?.is_truthy()
    };
    if inside_a_call() || in_async_callback()? {
        return Err(invalid_input(
            py,
            "a callback cannot store, remove, open or close while its own call runs \
             (that call holds the store's writer lock); do it after the call returns",
        ));
    }
    Ok(())
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
            .detach(|| tokio::task::block_in_place(|| runtime().block_on(future)))
            .map_err(PyErr::from);
    }
    run(py, future)
}

/// The tokio runtime of this process, made on first use. A child made by
/// `fork` has none of its parent's threads (the runtime's workers among
/// them), so a call there would wait for ever on tasks nobody runs: the
/// child makes a runtime of its own. The parent's is left alone (dropping
/// it would wait for threads that do not exist in the child).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: Mutex<Option<(u32, &'static tokio::runtime::Runtime)>> = Mutex::new(None);
    let process = std::process::id();
    let mut slot = RUNTIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match *slot {
        Some((made_by, runtime)) if made_by == process => runtime,
        _ => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("anthill")
                .build()
                .expect("the tokio runtime starts");
            let runtime: &'static tokio::runtime::Runtime = Box::leak(Box::new(runtime));
            *slot = Some((process, runtime));
            runtime
        }
    }
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
        runtime().block_on(async {
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
/// A tokio thread attaches to Python to run an async callback or, on event
/// loops without `add_reader`, to wake the loop with
/// `loop.call_soon_threadsafe`. If the main thread starts finalizing in that
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

/// The async calls of one event loop that have finished, handed to the loop
/// in batches (one per event loop, made by `anthill._store`).
///
/// A tokio thread that finishes a call queues its outcome and, if the queue
/// was empty, writes one byte to a socket the loop watches (`add_reader`):
/// that needs no GIL. The loop's thread then drains the queue, turning each
/// outcome into Python and setting its future. So a burst of gathered calls
/// costs one wake-up, and no tokio thread waits for the GIL while the loop's
/// thread runs Python. (pyo3-async-runtimes takes the GIL on the tokio thread
/// and calls `call_soon_threadsafe` for every call, which made each
/// gathered call wait its turn for the GIL; docs/benchmarks.md has the
/// figures.) Loops without `add_reader` (Windows'
/// proactor loop) are woken with `call_soon_threadsafe`, once per batch.
///
/// It holds its loop weakly: `anthill._store` keeps one bridge per loop in a
/// `WeakKeyDictionary`, whose entry must go when the loop does.
#[pyclass(module = "anthill._anthill", frozen)]
pub(crate) struct EventLoopBridge {
    event_loop: Py<PyWeakrefReference>,
    finished: Arc<Finished>,
}

/// Outcomes waiting for their loop, and how to wake it.
struct Finished {
    queue: Mutex<Vec<FinishedCall>>,
    wake: OnceLock<Wake>,
}

/// An async call's asyncio future and its outcome, made Python on the loop.
struct FinishedCall {
    future: Py<PyAny>,
    outcome: Outcome,
}

/// Turns a finished call's result into Python (on the loop's thread).
type Outcome = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

enum Wake {
    /// The write end of a socket pair whose read end the loop watches.
    #[cfg(unix)]
    Socket(std::os::unix::net::UnixStream),
    /// The loop (weakly), whose `call_soon_threadsafe` schedules the drain.
    CallSoon {
        event_loop: Py<PyWeakrefReference>,
        drain: Py<PyAny>,
    },
}

/// Called on the loop's thread when woken: completes the queued futures.
#[pyclass(module = "anthill._anthill", frozen)]
struct DrainFinished {
    finished: Arc<Finished>,
    #[cfg(unix)]
    socket: Option<std::os::unix::net::UnixStream>,
}

#[pymethods]
impl DrainFinished {
    fn __call__(&self, py: Python<'_>) {
        // Wake-up bytes first, then the queue: a call queued after the take
        // finds the queue empty and writes a byte of its own.
        #[cfg(unix)]
        if let Some(socket) = &self.socket {
            use std::io::Read;
            let mut bytes = [0u8; 64];
            while matches!((&*socket).read(&mut bytes), Ok(n) if n > 0) {}
        }
        let batch = std::mem::take(&mut *lock(&self.finished.queue));
        for call in batch {
            let future = call.future.bind(py);
            let handed = match (call.outcome)(py) {
                Ok(value) => future.call_method1(intern!(py, "set_result"), (value,)),
                Err(error) => {
                    future.call_method1(intern!(py, "set_exception"), (error.into_value(py),))
                }
            };
            // Fails only when the caller cancelled the future: nobody waits.
            drop(handed);
        }
    }
}

fn lock(queue: &Mutex<Vec<FinishedCall>>) -> std::sync::MutexGuard<'_, Vec<FinishedCall>> {
    // A panic while holding the lock cannot leave the Vec half changed.
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Finished {
    fn push(&self, call: FinishedCall) {
        let was_empty = {
            let mut queue = lock(&self.queue);
            queue.push(call);
            queue.len() == 1
        };
        if !was_empty {
            return; // the loop is already woken for this batch
        }
        match self.wake.get() {
            #[cfg(unix)]
            Some(Wake::Socket(socket)) => {
                use std::io::Write;
                // A full socket already holds a wake-up; a closed one has no reader.
                let _ = (&*socket).write(&[1]);
            }
            Some(Wake::CallSoon { event_loop, drain }) => Python::attach(|py| {
                // Fails only if the loop is closed or gone: nobody waits any more.
                if let Some(event_loop) = event_loop.bind(py).upgrade() {
                    let _ = event_loop
                        .call_method1(intern!(py, "call_soon_threadsafe"), (drain.clone_ref(py),));
                }
            }),
            None => {}
        }
    }
}

#[pymethods]
impl EventLoopBridge {
    #[new]
    fn new(event_loop: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = event_loop.py();
        let weak_loop = PyWeakrefReference::new(event_loop)?.unbind();
        let finished = Arc::new(Finished {
            queue: Mutex::new(Vec::new()),
            wake: OnceLock::new(),
        });
        #[cfg(unix)]
        {
            let (reader, writer) = std::os::unix::net::UnixStream::pair()?;
            reader.set_nonblocking(true)?;
            writer.set_nonblocking(true)?;
            use std::os::fd::AsRawFd;
            let fd = reader.as_raw_fd();
            let drain = Py::new(
                py,
                DrainFinished {
                    finished: Arc::clone(&finished),
                    socket: Some(reader),
                },
            )?;
            match event_loop.call_method1(intern!(py, "add_reader"), (fd, drain)) {
                Ok(_) => {
                    let _ = finished.wake.set(Wake::Socket(writer));
                    return Ok(Self {
                        event_loop: weak_loop,
                        finished,
                    });
                }
                Err(error) if error.is_instance_of::<PyNotImplementedError>(py) => {}
                Err(error) => return Err(error),
            }
        }
        let drain = Py::new(
            py,
            DrainFinished {
                finished: Arc::clone(&finished),
                #[cfg(unix)]
                socket: None,
            },
        )?;
        let _ = finished.wake.set(Wake::CallSoon {
            event_loop: weak_loop.clone_ref(py),
            drain: drain.into_any(),
        });
        Ok(Self {
            event_loop: weak_loop,
            finished,
        })
    }
}

/// The core side of an async call: cancelling the caller drops the core's
/// future (`anthill._store._complete`). It holds no Python object, so a
/// cycle through it (future, exception, traceback, frame) stays visible to
/// Python's garbage collector.
#[pyclass(module = "anthill._anthill", frozen)]
pub(crate) struct CoreCall {
    task: tokio::task::AbortHandle,
}

#[pymethods]
impl CoreCall {
    /// Drops the core future (a no-op once it has finished).
    fn cancel(&self) {
        self.task.abort();
    }
}

/// An async call: the asyncio future that gets its outcome, and its core side.
pub(crate) type AsyncCall = (Py<PyAny>, CoreCall);

/// Runs `future` on the runtime; its outcome goes to an asyncio future of
/// `bridge`'s event loop.
pub(crate) fn awaitable<F, T>(
    py: Python<'_>,
    bridge: &EventLoopBridge,
    future: F,
) -> PyResult<AsyncCall>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let Some(event_loop) = bridge.event_loop.bind(py).upgrade() else {
        return Err(invalid_input(py, "the event loop of this call is gone"));
    };
    let asyncio_future = event_loop
        .call_method0(intern!(py, "create_future"))?
        .unbind();
    let finished = Arc::clone(&bridge.finished);
    let future_for_outcome = asyncio_future.clone_ref(py);
    let running = RunningAsyncCall::start();
    let task = runtime().spawn(async move {
        let outcome = AssertUnwindSafe(future).catch_unwind().await;
        finished.push(FinishedCall {
            future: future_for_outcome,
            outcome: Box::new(move |py| match outcome {
                Ok(Ok(value)) => value.into_py_any(py),
                Ok(Err(error)) => Err(PyErr::from(error)),
                Err(_) => Err(internal_error(py, "an anthill async call panicked")),
            }),
        });
        drop(running);
    });
    Ok((
        asyncio_future,
        CoreCall {
            task: task.abort_handle(),
        },
    ))
}

/// What a call does to its store, which decides whether a callback may make
/// it from inside another call (see [`block_on`] and [`block_on_read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Change,
}

/// The event loop a method serving both twins is called with (`None`: the
/// sync method).
pub(crate) type EventLoop<'a> = Option<PyRef<'a, EventLoopBridge>>;

/// What such a method returns: the result itself (sync), or the
/// [`AsyncCall`] of the twin.
pub(crate) type Answer = PyResult<Py<PyAny>>;

/// Runs `future` for a method that serves a sync method and its `*_async`
/// twin at once: without an event loop to completion on this thread (GIL
/// released), with one as an awaitable of that loop ([`AsyncCall`]).
pub(crate) fn call<F, T>(
    py: Python<'_>,
    event_loop: EventLoop<'_>,
    access: Access,
    future: F,
) -> Answer
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    match (event_loop, access) {
        (Some(bridge), Access::Read) => awaitable(py, &bridge, future)?.into_py_any(py),
        (Some(bridge), Access::Change) => {
            refuse_inside_a_callback(py)?;
            awaitable(py, &bridge, future)?.into_py_any(py)
        }
        (None, Access::Read) => block_on_read(py, future)?.into_py_any(py),
        (None, Access::Change) => block_on(py, future)?.into_py_any(py),
    }
}
