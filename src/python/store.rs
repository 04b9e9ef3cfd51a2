//! `anthill._anthill.NativeStore`: one [`Store`] and, per operation, a sync
//! method (GIL released while it runs) and an `*_async` twin (an asyncio
//! awaitable). Arguments are converted and the store handle cloned before the
//! GIL is let go; the core decides everything else.

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::buffer::{BytesOut, bytes_from_py};
use super::callback::{CallMode, bridge, bridge_on_loop, check_callable};
use super::runtime::{AsyncCall, EventLoopBridge, awaitable, block_on, block_on_read};
use super::summary::{SummaryOut, backend_stats};
use crate::pad_store::BackendOptions;
use crate::store::{CompactReport, PutOptions, Store, StoreOptions, VerifyReport};

/// An open store, wrapped by the pure-Python `anthill.Store`.
#[pyclass(module = "anthill._anthill", frozen)]
pub(crate) struct NativeStore {
    pub(crate) store: Store,
}

/// The arguments of a put, converted while attached to Python.
struct PutCall {
    data: Bytes,
    options: PutOptions,
}

fn put_call(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    callback: &Option<Py<PyAny>>,
    overwrite: bool,
    resume: bool,
    max_new_pads: Option<u64>,
) -> PyResult<PutCall> {
    check_callable(callback, py)?;
    Ok(PutCall {
        data: bytes_from_py(data)?,
        options: PutOptions {
            overwrite,
            resume,
            max_new_pads,
        },
    })
}

#[pymethods]
impl NativeStore {
    #[staticmethod]
    #[pyo3(signature = (
        url,
        secret,
        *,
        pad_size = None,
        max_new_pads = None,
        reservation_concurrency = 20,
        upload_concurrency = 20,
        download_concurrency = 20,
        retry_attempts = 10,
        state_dir = None,
        allow_rollback = false,
        backend_options = Vec::new(),
    ))]
    #[allow(clippy::too_many_arguments)]
    fn open(
        py: Python<'_>,
        url: String,
        secret: Vec<u8>,
        pad_size: Option<u64>,
        max_new_pads: Option<u64>,
        reservation_concurrency: usize,
        upload_concurrency: usize,
        download_concurrency: usize,
        retry_attempts: u32,
        state_dir: Option<std::path::PathBuf>,
        allow_rollback: bool,
        backend_options: Vec<(String, String)>,
    ) -> PyResult<Self> {
        let options = StoreOptions {
            secret,
            pad_size,
            max_new_pads,
            reservation_concurrency,
            upload_concurrency,
            download_concurrency,
            retry_attempts,
            backend: BackendOptions {
                options: backend_options,
            },
            state_dir,
            allow_rollback,
            ..StoreOptions::default()
        };
        let store = block_on(py, async move { Store::open(&url, options).await })?;
        // Without the query, which may hold credentials.
        let location = store.url().split('?').next().unwrap_or_default();
        log::debug!("opened the store at {location}");
        Ok(Self { store })
    }

    #[getter]
    fn url(&self) -> &str {
        self.store.url()
    }

    #[pyo3(signature = (key, data, callback = None, *, overwrite = false, resume = false, max_new_pads = None))]
    #[allow(clippy::too_many_arguments)]
    fn store_item(
        &self,
        py: Python<'_>,
        key: String,
        data: &Bound<'_, PyAny>,
        callback: Option<Py<PyAny>>,
        overwrite: bool,
        resume: bool,
        max_new_pads: Option<u64>,
    ) -> PyResult<()> {
        let call = put_call(py, data, &callback, overwrite, resume, max_new_pads)?;
        let callback = bridge(callback, CallMode::Blocking);
        let store = self.store.clone();
        block_on(py, async move {
            store
                .store_item(&key, call.data, call.options, callback)
                .await
        })
    }

    #[pyo3(signature = (event_loop, key, data, callback = None, *, overwrite = false, resume = false, max_new_pads = None))]
    #[allow(clippy::too_many_arguments)]
    fn store_item_async<'py>(
        &self,
        py: Python<'py>,
        event_loop: PyRef<'_, EventLoopBridge>,
        key: String,
        data: &Bound<'py, PyAny>,
        callback: Option<Py<PyAny>>,
        overwrite: bool,
        resume: bool,
        max_new_pads: Option<u64>,
    ) -> PyResult<AsyncCall> {
        let call = put_call(py, data, &callback, overwrite, resume, max_new_pads)?;
        let callback = bridge_on_loop(py, callback)?;
        let store = self.store.clone();
        awaitable(py, &event_loop, async move {
            store
                .store_item(&key, call.data, call.options, callback)
                .await
        })
    }

    #[pyo3(signature = (key, callback = None))]
    fn fetch_item<'py>(
        &self,
        py: Python<'py>,
        key: String,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        check_callable(&callback, py)?;
        let callback = bridge(callback, CallMode::Blocking);
        let store = self.store.clone();
        let data = block_on_read(py, async move {
            store.fetch_item_into(&key, BytesOut::new, callback).await
        })?;
        data.into_pyobject(py)
    }

    #[pyo3(signature = (event_loop, key, callback = None))]
    fn fetch_item_async(
        &self,
        py: Python<'_>,
        event_loop: PyRef<'_, EventLoopBridge>,
        key: String,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<AsyncCall> {
        check_callable(&callback, py)?;
        let callback = bridge_on_loop(py, callback)?;
        let store = self.store.clone();
        awaitable(py, &event_loop, async move {
            store.fetch_item_into(&key, BytesOut::new, callback).await
        })
    }

    fn remove_item(&self, py: Python<'_>, key: String) -> PyResult<()> {
        let store = self.store.clone();
        block_on(py, async move { store.remove_item(&key).await })
    }

    fn remove_item_async(
        &self,
        py: Python<'_>,
        event_loop: PyRef<'_, EventLoopBridge>,
        key: String,
    ) -> PyResult<AsyncCall> {
        let store = self.store.clone();
        awaitable(
            py,
            &event_loop,
            async move { store.remove_item(&key).await },
        )
    }

    #[pyo3(signature = (old, new, *, overwrite = false))]
    fn rename_item(
        &self,
        py: Python<'_>,
        old: String,
        new: String,
        overwrite: bool,
    ) -> PyResult<()> {
        let store = self.store.clone();
        block_on(
            py,
            async move { store.rename_item(&old, &new, overwrite).await },
        )
    }

    #[pyo3(signature = (event_loop, old, new, *, overwrite = false))]
    fn rename_item_async(
        &self,
        py: Python<'_>,
        event_loop: PyRef<'_, EventLoopBridge>,
        old: String,
        new: String,
        overwrite: bool,
    ) -> PyResult<AsyncCall> {
        let store = self.store.clone();
        awaitable(py, &event_loop, async move {
            store.rename_item(&old, &new, overwrite).await
        })
    }

    /// `(items_checked, damaged keys, missing pad names, pads_checked)`.
    #[pyo3(signature = (deep = true, callback = None))]
    fn verify(
        &self,
        py: Python<'_>,
        deep: bool,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<(u64, Vec<String>, Vec<String>, u64)> {
        check_callable(&callback, py)?;
        let callback = bridge(callback, CallMode::Blocking);
        let store = self.store.clone();
        let report: VerifyReport = block_on(py, async move { store.verify(deep, callback).await })?;
        Ok((
            report.items_checked,
            report.damaged,
            report.missing_pads,
            report.pads_checked,
        ))
    }

    /// `(pads_before, pads_after, bytes_moved, items_moved, pads_released)`.
    #[pyo3(signature = (callback = None))]
    fn compact(
        &self,
        py: Python<'_>,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<(u64, u64, u64, u64, u64)> {
        check_callable(&callback, py)?;
        let callback = bridge(callback, CallMode::Blocking);
        let store = self.store.clone();
        let report: CompactReport = block_on(py, async move { store.compact(callback).await })?;
        Ok((
            report.pads_before,
            report.pads_after,
            report.bytes_moved,
            report.items_moved,
            report.pads_released,
        ))
    }

    /// `(pad_size, [(ordinal, used bytes)], largest free run)`, from memory.
    #[allow(clippy::type_complexity)] // a tuple the Python wrapper unpacks
    fn pad_usage(&self) -> PyResult<(u64, Vec<(u64, u64)>, u64)> {
        let usage = self.store.pad_usage()?;
        Ok((usage.pad_size, usage.pads, usage.largest_free))
    }

    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        let summary = block_on_read(py, async move { store.summary().await })?;
        SummaryOut(summary).into_pyobject(py)
    }

    fn summary_async(
        &self,
        py: Python<'_>,
        event_loop: PyRef<'_, EventLoopBridge>,
    ) -> PyResult<AsyncCall> {
        let store = self.store.clone();
        awaitable(py, &event_loop, async move {
            store.summary().await.map(SummaryOut)
        })
    }

    fn check_allocation_possible(&self, py: Python<'_>, size: u64) -> PyResult<Option<u64>> {
        let store = self.store.clone();
        block_on_read(
            py,
            async move { store.check_allocation_possible(size).await },
        )
    }

    fn check_allocation_possible_async(
        &self,
        py: Python<'_>,
        event_loop: PyRef<'_, EventLoopBridge>,
        size: u64,
    ) -> PyResult<AsyncCall> {
        let store = self.store.clone();
        awaitable(py, &event_loop, async move {
            store.check_allocation_possible(size).await
        })
    }

    fn keys(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let store = self.store.clone();
        block_on_read(py, async move { store.keys().await })
    }

    /// `(key, size, created, modified)` of every stored item, sorted by key.
    fn list_items(&self, py: Python<'_>) -> PyResult<Vec<(String, u64, u64, u64)>> {
        let store = self.store.clone();
        let items = block_on_read(py, async move { store.list_items().await })?;
        Ok(items
            .into_iter()
            .map(|item| (item.key, item.size, item.created, item.modified))
            .collect())
    }

    fn contains(&self, py: Python<'_>, key: String) -> PyResult<bool> {
        let store = self.store.clone();
        block_on_read(py, async move { store.contains(&key).await })
    }

    fn len(&self, py: Python<'_>) -> PyResult<u64> {
        let store = self.store.clone();
        block_on_read(py, async move { store.len().await })
    }

    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let store = self.store.clone();
        block_on(py, async move { store.flush().await })
    }

    fn flush_async(
        &self,
        py: Python<'_>,
        event_loop: PyRef<'_, EventLoopBridge>,
    ) -> PyResult<AsyncCall> {
        let store = self.store.clone();
        awaitable(py, &event_loop, async move { store.flush().await })
    }

    fn unflushed_bytes(&self) -> u64 {
        self.store.log_only_bytes()
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let store = self.store.clone();
        block_on(py, async move { store.close().await })
    }

    fn backend_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.store
            .backend_stats()
            .map(|stats| backend_stats(py, &stats))
            .transpose()
    }

    fn __repr__(&self) -> String {
        format!("NativeStore({:?})", self.store.url())
    }
}
