//! The store's reports as instances of the Python classes of
//! `anthill._summary`: the storage summary and a simulated backend's counters.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::ClassCache;
use crate::pad_store::SimStats;
use crate::pad_store::sim::OpStats;
use crate::store::StorageSummary;

static CLASSES: ClassCache<3> = ClassCache::new(
    "anthill._summary",
    ["StorageSummary", "OpStats", "BackendStats"],
);

/// A [`StorageSummary`] on its way to Python (as `anthill.StorageSummary`).
pub(crate) struct SummaryOut(pub StorageSummary);

impl<'py> IntoPyObject<'py> for SummaryOut {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.0;
        let kwargs = PyDict::new(py);
        kwargs.set_item("total_pads", s.total_pads)?;
        kwargs.set_item("pad_size", s.pad_size)?;
        kwargs.set_item("total_space", s.total_space)?;
        kwargs.set_item("used_space", s.used_space)?;
        kwargs.set_item("free_space", s.free_space)?;
        kwargs.set_item("items", s.items)?;
        kwargs.set_item("pending", s.pending)?;
        CLASSES.get(py, "StorageSummary")?.call((), Some(&kwargs))
    }
}

fn op_stats<'py>(py: Python<'py>, op: &OpStats) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("calls", op.calls)?;
    kwargs.set_item("failures", op.failures)?;
    kwargs.set_item("in_flight", op.in_flight)?;
    kwargs.set_item("peak_in_flight", op.peak_in_flight)?;
    kwargs.set_item("bytes", op.bytes)?;
    CLASSES.get(py, "OpStats")?.call((), Some(&kwargs))
}

/// `anthill.BackendStats` for the counters of a simulated backend.
pub(crate) fn backend_stats<'py>(py: Python<'py>, stats: &SimStats) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("reserve", op_stats(py, &stats.reserve)?)?;
    kwargs.set_item("put", op_stats(py, &stats.put)?)?;
    kwargs.set_item("durable_put", op_stats(py, &stats.durable_put)?)?;
    kwargs.set_item("verify", op_stats(py, &stats.verify)?)?;
    kwargs.set_item("get", op_stats(py, &stats.get)?)?;
    kwargs.set_item("list", op_stats(py, &stats.list)?)?;
    kwargs.set_item("delete", op_stats(py, &stats.delete)?)?;
    kwargs.set_item("pads_reserved", stats.pads_reserved)?;
    kwargs.set_item("cost", stats.cost)?;
    kwargs.set_item("pads_deleted", stats.pads_deleted)?;
    CLASSES.get(py, "BackendStats")?.call((), Some(&kwargs))
}
