//! Core events as instances of the Python classes of `anthill._events`
//! (frozen dataclasses, built with keyword arguments).

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::ClassCache;
use crate::events::{GetEvent, OperationProgress, PutEvent};

static CLASSES: ClassCache<12> = ClassCache::new(
    "anthill._events",
    [
        "ReservingScratchpads",
        "ConfirmReservation",
        "ReservationProgress",
        "StartingUpload",
        "UploadProgress",
        "ScratchpadUploadComplete",
        "ScratchpadCommitComplete",
        "UploadFinished",
        "StoreComplete",
        "StartingDownload",
        "DownloadProgress",
        "DownloadFinished",
    ],
);

/// An event that can be handed to a Python callback.
pub(crate) trait IntoPyEvent: Send + 'static {
    fn into_py_event(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>>;
}

/// `class(**fields)` for the event class `name`.
fn event<'py>(
    py: Python<'py>,
    name: &str,
    fields: &[(&str, Bound<'py, PyAny>)],
) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = PyDict::new(py);
    for (field, value) in fields {
        kwargs.set_item(field, value)?;
    }
    CLASSES.get(py, name)?.call((), Some(&kwargs))
}

fn int(py: Python<'_>, value: u64) -> PyResult<Bound<'_, PyAny>> {
    Ok(value.into_pyobject(py)?.into_any())
}

impl IntoPyEvent for PutEvent {
    fn into_py_event(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        match self {
            PutEvent::ReservingScratchpads { needed } => {
                event(py, "ReservingScratchpads", &[("needed", int(py, needed)?)])
            }
            PutEvent::ConfirmReservation {
                needed,
                data_size,
                total_space,
                free_space,
                current_scratchpads,
                estimated_cost,
            } => event(
                py,
                "ConfirmReservation",
                &[
                    ("needed", int(py, needed)?),
                    ("data_size", int(py, data_size)?),
                    ("total_space", int(py, total_space)?),
                    ("free_space", int(py, free_space)?),
                    ("current_scratchpads", int(py, current_scratchpads)?),
                    (
                        "estimated_cost",
                        estimated_cost.into_pyobject(py)?.into_any(),
                    ),
                ],
            ),
            PutEvent::ReservationProgress { current, total } => event(
                py,
                "ReservationProgress",
                &[("current", int(py, current)?), ("total", int(py, total)?)],
            ),
            PutEvent::StartingUpload {
                total_bytes,
                total_pads,
            } => event(
                py,
                "StartingUpload",
                &[
                    ("total_bytes", int(py, total_bytes)?),
                    ("total_pads", int(py, total_pads)?),
                ],
            ),
            PutEvent::UploadProgress {
                bytes_written,
                total_bytes,
            } => event(
                py,
                "UploadProgress",
                &[
                    ("bytes_written", int(py, bytes_written)?),
                    ("total_bytes", int(py, total_bytes)?),
                ],
            ),
            PutEvent::ScratchpadUploadComplete { index, total } => event(
                py,
                "ScratchpadUploadComplete",
                &[("index", int(py, index)?), ("total", int(py, total)?)],
            ),
            PutEvent::ScratchpadCommitComplete { index, total } => event(
                py,
                "ScratchpadCommitComplete",
                &[("index", int(py, index)?), ("total", int(py, total)?)],
            ),
            PutEvent::UploadFinished => event(py, "UploadFinished", &[]),
            PutEvent::StoreComplete => event(py, "StoreComplete", &[]),
        }
    }
}

impl IntoPyEvent for GetEvent {
    fn into_py_event(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        match self {
            GetEvent::StartingDownload { total_bytes } => event(
                py,
                "StartingDownload",
                &[("total_bytes", int(py, total_bytes)?)],
            ),
            GetEvent::DownloadProgress {
                bytes_read,
                total_bytes,
            } => event(
                py,
                "DownloadProgress",
                &[
                    ("bytes_read", int(py, bytes_read)?),
                    ("total_bytes", int(py, total_bytes)?),
                ],
            ),
            GetEvent::DownloadFinished => event(py, "DownloadFinished", &[]),
        }
    }
}

/// Progress of store-wide operations: not a put or get event.
static OPERATION_CLASSES: ClassCache<1> = ClassCache::new("anthill._events", ["OperationProgress"]);

impl IntoPyEvent for OperationProgress {
    fn into_py_event(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        let kwargs = PyDict::new(py);
        kwargs.set_item("operation", self.operation)?;
        kwargs.set_item("done", self.done)?;
        kwargs.set_item("total", self.total)?;
        OPERATION_CLASSES
            .get(py, "OperationProgress")?
            .call((), Some(&kwargs))
    }
}
