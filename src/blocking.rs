//! CPU-heavy and blocking work kept off the async runtime's few workers.
//!
//! Sealing, opening or hashing a pad takes about a millisecond of CPU per
//! 4 MiB: done on a runtime worker, it would stall every request and timer
//! that worker drives, and keep a large get on one core. Such work runs on
//! tokio's blocking pool instead, and small work (where the hop to the pool
//! and back would cost more than the work) runs inline.

/// Work on more bytes than this runs on the blocking pool (see
/// [`off_runtime`]).
const OFF_RUNTIME_BYTES: usize = 256 << 10;

/// Runs `work` (sealing, opening or hashing `len` bytes, or writing them to
/// the page cache) on the blocking pool if it is large, inline otherwise.
pub async fn off_runtime<T: Send + 'static>(
    len: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    if len < OFF_RUNTIME_BYTES {
        return work();
    }
    on_blocking_pool(work).await
}

/// Runs `work` on tokio's blocking pool, passing on its panic.
pub async fn on_blocking_pool<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    joined(tokio::task::spawn_blocking(work)).await
}

/// The outcome of a spawned task, passing on its panic (a task of a
/// dropped caller is aborted with it, never joined).
pub async fn joined<T>(task: tokio::task::JoinHandle<T>) -> T {
    match task.await {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}
