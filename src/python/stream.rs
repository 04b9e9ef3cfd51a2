//! The streaming operations of `NativeStore` (`store_file`, `fetch_file`,
//! `fetch_range`, `open_item`) and `NativeItemReader`, the handle behind
//! `anthill.ItemReader`. Conversions only: a path or an open file's
//! descriptor in, a file object written to from the blocking pool out.

use std::os::fd::{BorrowedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::callback::{CallMode, bridge, bridge_on_loop, check_callable};
use super::errors::callback_failed;
use super::runtime::{AsyncCall, EventLoopBridge, awaitable, block_on, block_on_read};
use super::store::NativeStore;
use crate::allocator::{ChunkSink, FileSource};
use crate::error::{Error, Result};
use crate::store::{ItemHandle, PutOptions, Store};

/// A put's source: a path, or a descriptor of an open regular file read
/// from `offset` (duplicated here: the caller may close its own).
fn file_source(path: Option<PathBuf>, fd: Option<RawFd>, offset: u64) -> Result<FileSource> {
    match (path, fd) {
        (Some(path), None) => FileSource::open(&path),
        (None, Some(fd)) => {
            // SAFETY: the caller's file object keeps `fd` open during this call.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            let owned = borrowed
                .try_clone_to_owned()
                .map_err(|error| Error::invalid(format!("cannot read the file object: {error}")))?;
            FileSource::from_file(std::fs::File::from(owned), offset, "the file object".into())
        }
        _ => Err(Error::invalid("store_file needs a path or a file object")),
    }
}

/// A writable binary file object, written from the blocking pool.
struct PyWriter(Py<PyAny>);

impl ChunkSink for PyWriter {
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        Python::attach(|py| {
            let mut rest = chunk;
            while !rest.is_empty() {
                let written = self
                    .0
                    .call_method1(py, "write", (PyBytes::new(py, rest),))
                    .map_err(callback_failed)?;
                // A raw file may write less than asked; a buffered one
                // writes all (and returns None from some writers).
                let n: Option<usize> = written.extract(py).map_err(callback_failed)?;
                match n {
                    Some(0) => {
                        return Err(Error::invalid("the file object accepted no bytes"));
                    }
                    Some(n) if n < rest.len() => rest = &rest[n..],
                    _ => rest = &[],
                }
            }
            Ok(())
        })
    }
}

/// The streaming operations of one `NativeStore` (a class of their own:
/// pyo3 takes one `#[pymethods]` block per class).
#[pyclass(module = "anthill._anthill", frozen)]
pub(crate) struct NativeStreams {
    store: Store,
}

#[pymethods]
impl NativeStreams {
    #[new]
    fn new(store: &NativeStore) -> Self {
        Self {
            store: store.store.clone(),
        }
    }

    #[pyo3(signature = (key, path = None, fd = None, offset = 0, callback = None, *, overwrite = false, resume = false, max_new_pads = None))]
    #[allow(clippy::too_many_arguments)]
    fn store_file(
        &self,
        py: Python<'_>,
        key: String,
        path: Option<PathBuf>,
        fd: Option<RawFd>,
        offset: u64,
        callback: Option<Py<PyAny>>,
        overwrite: bool,
        resume: bool,
        max_new_pads: Option<u64>,
    ) -> PyResult<()> {
        check_callable(&callback, py)?;
        let source = file_source(path, fd, offset)?;
        let options = PutOptions {
            overwrite,
            resume,
            max_new_pads,
        };
        let callback = bridge(callback, CallMode::Blocking);
        let store = self.store.clone();
        block_on(py, async move {
            store.store_file(&key, source, options, callback).await
        })
    }

    #[pyo3(signature = (event_loop, key, path = None, fd = None, offset = 0, callback = None, *, overwrite = false, resume = false, max_new_pads = None))]
    #[allow(clippy::too_many_arguments)]
    fn store_file_async(
        &self,
        py: Python<'_>,
        event_loop: PyRef<'_, EventLoopBridge>,
        key: String,
        path: Option<PathBuf>,
        fd: Option<RawFd>,
        offset: u64,
        callback: Option<Py<PyAny>>,
        overwrite: bool,
        resume: bool,
        max_new_pads: Option<u64>,
    ) -> PyResult<AsyncCall> {
        check_callable(&callback, py)?;
        let source = file_source(path, fd, offset)?;
        let options = PutOptions {
            overwrite,
            resume,
            max_new_pads,
        };
        let callback = bridge_on_loop(py, callback)?;
        let store = self.store.clone();
        awaitable(py, &event_loop, async move {
            store.store_file(&key, source, options, callback).await
        })
    }

    /// Streams an item to the file at `path` (renamed into place when
    /// complete and verified) or to the writable file object `writer`.
    #[pyo3(signature = (key, path = None, writer = None, callback = None))]
    fn fetch_file(
        &self,
        py: Python<'_>,
        key: String,
        path: Option<PathBuf>,
        writer: Option<Py<PyAny>>,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<u64> {
        check_callable(&callback, py)?;
        let callback = bridge(callback, CallMode::Blocking);
        let store = self.store.clone();
        block_on_read(py, async move {
            match (path, writer) {
                (Some(path), None) => store.fetch_file(&key, &path, callback).await,
                (None, Some(writer)) => store.fetch_to(&key, PyWriter(writer), callback).await,
                _ => Err(Error::invalid("fetch_file needs a path or a file object")),
            }
        })
    }

    #[pyo3(signature = (event_loop, key, path = None, writer = None, callback = None))]
    fn fetch_file_async(
        &self,
        py: Python<'_>,
        event_loop: PyRef<'_, EventLoopBridge>,
        key: String,
        path: Option<PathBuf>,
        writer: Option<Py<PyAny>>,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<AsyncCall> {
        check_callable(&callback, py)?;
        let callback = bridge_on_loop(py, callback)?;
        let store = self.store.clone();
        awaitable(py, &event_loop, async move {
            match (path, writer) {
                (Some(path), None) => store.fetch_file(&key, &path, callback).await,
                (None, Some(writer)) => store.fetch_to(&key, PyWriter(writer), callback).await,
                _ => Err(Error::invalid("fetch_file needs a path or a file object")),
            }
        })
    }

    fn fetch_range<'py>(
        &self,
        py: Python<'py>,
        key: String,
        offset: u64,
        length: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let store = self.store.clone();
        let data = block_on_read(
            py,
            async move { store.fetch_range(&key, offset, length).await },
        )?;
        Ok(PyBytes::new(py, &data))
    }

    fn fetch_range_async(
        &self,
        py: Python<'_>,
        event_loop: PyRef<'_, EventLoopBridge>,
        key: String,
        offset: u64,
        length: u64,
    ) -> PyResult<AsyncCall> {
        let store = self.store.clone();
        awaitable(py, &event_loop, async move {
            store
                .fetch_range(&key, offset, length)
                .await
                .map(|data| data.to_vec())
        })
    }

    fn open_item(&self, py: Python<'_>, key: String) -> PyResult<NativeItemReader> {
        let store = self.store.clone();
        let handle = block_on_read(py, async move { store.open_item(&key).await })?;
        Ok(NativeItemReader {
            handle: Arc::new(handle),
        })
    }
}

/// An item opened for reads of its ranges (`Store.open_item`).
#[pyclass(module = "anthill._anthill", frozen)]
pub(crate) struct NativeItemReader {
    handle: Arc<ItemHandle>,
}

#[pymethods]
impl NativeItemReader {
    #[getter]
    fn size(&self) -> u64 {
        self.handle.size()
    }

    /// `length` bytes at `offset` (inside the item).
    fn read_range<'py>(
        &self,
        py: Python<'py>,
        offset: u64,
        length: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let handle = Arc::clone(&self.handle);
        let data = block_on_read(py, async move { handle.read(offset, length).await })?;
        Ok(PyBytes::new(py, &data))
    }
}
