//! Progress events of puts and gets, and the sink that hands them to the
//! user's callback one at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;

use crate::error::{Error, Result};

/// Events of a `store_item` call, in the order the brief (§3) describes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutEvent {
    ReservingScratchpads {
        needed: u64,
    },
    ConfirmReservation {
        needed: u64,
        data_size: u64,
        total_space: u64,
        free_space: u64,
        current_scratchpads: u64,
        estimated_cost: Option<String>,
    },
    ReservationProgress {
        current: u64,
        total: u64,
    },
    StartingUpload {
        total_bytes: u64,
        total_pads: u64,
    },
    UploadProgress {
        bytes_written: u64,
        total_bytes: u64,
    },
    ScratchpadUploadComplete {
        index: u64,
        total: u64,
    },
    ScratchpadCommitComplete {
        index: u64,
        total: u64,
    },
    UploadFinished,
    StoreComplete,
}

/// Events of a `fetch_item` call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GetEvent {
    StartingDownload { total_bytes: u64 },
    DownloadProgress { bytes_read: u64, total_bytes: u64 },
    DownloadFinished,
}

/// Progress of a store-wide operation (`verify`, `compact`): `done` of
/// `total` units (pads checked, pads emptied) of the named operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationProgress {
    pub operation: &'static str,
    pub done: u64,
    pub total: u64,
}

/// A user callback: `Ok(true)` continues, `Ok(false)` cancels, `Err` aborts
/// with that error.
pub type Callback<E> = Arc<dyn Fn(E) -> BoxFuture<'static, Result<bool>> + Send + Sync>;

/// Delivers the events of one operation to its callback, one at a time.
///
/// Concurrent tasks of an operation (reservations, uploads) emit through one
/// sink. The mutex serialises delivery so that the counters computed inside
/// `emit` reach the callback in increasing order; it is held across the
/// callback, never across backend I/O. After the first failure or after the
/// final event the sink is closed and emits nothing more.
pub struct EventSink<E> {
    callback: Option<Callback<E>>,
    delivery: tokio::sync::Mutex<()>,
    closed: AtomicBool,
}

impl<E> EventSink<E> {
    pub fn new(callback: Option<Callback<E>>) -> Self {
        Self {
            callback,
            delivery: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
        }
    }

    /// A sink that drops every event.
    pub fn silent() -> Self {
        Self::new(None)
    }

    /// Builds the event with `make` (while holding the delivery lock, so
    /// counters it reads are in order) and delivers it. A callback answering
    /// `false` turns into [`Error::Cancelled`]; either failure closes the sink.
    pub async fn emit(&self, make: impl FnOnce() -> E) -> Result<()> {
        let _delivery = self.delivery.lock().await;
        let event = make();
        let Some(callback) = &self.callback else {
            return Ok(());
        };
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        match callback(event).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.close();
                Err(Error::Cancelled("the callback returned False".into()))
            }
            Err(error) => {
                self.close();
                Err(error)
            }
        }
    }

    /// Emits the final event of an operation and closes the sink.
    pub async fn finish(&self, event: E) -> Result<()> {
        let result = self.emit(|| event).await;
        self.close();
        result
    }

    /// Stops all further delivery (after an error, or when the operation ends).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}
