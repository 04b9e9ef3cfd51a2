//! The streaming operations of `NativeStore` (`store_file`, `fetch_file`,
//! `fetch_range`, `open_item`) and `NativeItemReader`, the handle behind
//! `anthill.ItemReader`. Conversions only: a path or an open file's
//! descriptor in, a file object written to from the blocking pool out.

use std::os::fd::{BorrowedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::args;
use super::args::Arg;
use super::buffer::BytesResult;
use super::callback::callback_for;
use super::errors::callback_failed;
use super::runtime::{Access, Answer, EventLoop, block_on_read, call};
use super::store::{NativeStore, put_options};
use crate::allocator::{ChunkSink, FileSource};
use crate::error::{Error, Result};
use crate::store::{ItemHandle, Store};

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

    /// Stores the file at `path`, or the open file `fd` from `offset`.
    /// `event_loop` as for `NativeStore.store_item`.
    #[pyo3(signature = (event_loop, key, path, fd, offset, callback, *, overwrite, resume, max_new_pads))]
    #[allow(clippy::too_many_arguments)]
    fn store_file(
        &self,
        py: Python<'_>,
        event_loop: EventLoop<'_>,
        key: &Arg<'_>,
        path: Option<PathBuf>,
        fd: Option<RawFd>,
        offset: u64,
        callback: Option<Py<PyAny>>,
        overwrite: &Arg<'_>,
        resume: &Arg<'_>,
        max_new_pads: Option<&Arg<'_>>,
    ) -> Answer {
        let key = args::key(key)?;
        let options = put_options(overwrite, resume, max_new_pads)?;
        let callback = callback_for(py, event_loop.as_deref(), callback)?;
        let source = file_source(path, fd, offset)?;
        let store = self.store.clone();
        call(py, event_loop, Access::Change, async move {
            store.store_file(&key, source, options, callback).await
        })
    }

    /// Streams an item to the file at `path` (renamed into place when
    /// complete and verified) or to the writable file object `writer`.
    #[pyo3(signature = (event_loop, key, path, writer, callback))]
    fn fetch_file(
        &self,
        py: Python<'_>,
        event_loop: EventLoop<'_>,
        key: &Arg<'_>,
        path: Option<PathBuf>,
        writer: Option<Py<PyAny>>,
        callback: Option<Py<PyAny>>,
    ) -> Answer {
        let key = args::key(key)?;
        let callback = callback_for(py, event_loop.as_deref(), callback)?;
        let store = self.store.clone();
        call(py, event_loop, Access::Read, async move {
            match (path, writer) {
                (Some(path), None) => store.fetch_file(&key, &path, callback).await,
                (None, Some(writer)) => store.fetch_to(&key, PyWriter(writer), callback).await,
                _ => Err(Error::invalid("fetch_file needs a path or a file object")),
            }
        })
    }

    fn fetch_range(
        &self,
        py: Python<'_>,
        event_loop: EventLoop<'_>,
        key: &Arg<'_>,
        offset: &Arg<'_>,
        length: &Arg<'_>,
    ) -> Answer {
        let key = args::key(key)?;
        let offset: u64 = args::count("offset", offset)?;
        let length: u64 = args::count("length", length)?;
        let store = self.store.clone();
        call(py, event_loop, Access::Read, async move {
            store
                .fetch_range(&key, offset, length)
                .await
                .map(BytesResult)
        })
    }

    fn open_item(&self, py: Python<'_>, key: &Arg<'_>) -> PyResult<NativeItemReader> {
        let key = args::key(key)?;
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
        BytesResult(data).into_pyobject(py)
    }
}
