//! `anthill._anthill.NativeStore`: one [`Store`] and a method per operation.
//! A method whose operation has an `*_async` twin takes the caller's event
//! loop first: `None` runs it to completion with the GIL released (the sync
//! method), a bridge returns an asyncio awaitable (the twin). Arguments are
//! converted and the store handle cloned before the GIL is let go; the core
//! decides everything else, defaults and limits included.

use std::future::Future;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::args;
use super::args::Arg;
use super::buffer::{BytesOut, bytes_from_py};
use super::callback::callback_for;
use super::runtime::{Access, Answer, EventLoop, block_on, block_on_read, call};
use super::summary::Out;

use crate::store::{BackendOptions, DEFAULT_PAD_SIZE, ItemInfo, PutOptions, Store, StoreOptions};

/// An open store, wrapped by the pure-Python `anthill.Store`.
#[pyclass(module = "anthill._anthill", frozen)]
pub(crate) struct NativeStore {
    pub(crate) store: Store,
}

/// The options of a put, from the keyword arguments of `store_item` and
/// `store_file`.
pub(crate) fn put_options(
    overwrite: &Arg<'_>,
    resume: &Arg<'_>,
    max_new_pads: Option<&Arg<'_>>,
) -> PyResult<PutOptions> {
    Ok(PutOptions {
        overwrite: args::flag("overwrite", overwrite)?,
        resume: args::flag("resume", resume)?,
        max_new_pads: args::optional_count("max_new_pads", max_new_pads)?,
    })
}

/// The store options a caller leaves out, as `anthill.open` documents them.
#[pyfunction]
pub(crate) fn store_defaults(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let StoreOptions {
        reservation_concurrency,
        upload_concurrency,
        download_concurrency,
        retry_attempts,
        ..
    } = StoreOptions::default();
    let defaults = PyDict::new(py);
    defaults.set_item("pad_size", DEFAULT_PAD_SIZE)?;
    defaults.set_item("reservation_concurrency", reservation_concurrency)?;
    defaults.set_item("upload_concurrency", upload_concurrency)?;
    defaults.set_item("download_concurrency", download_concurrency)?;
    defaults.set_item("retry_attempts", retry_attempts)?;
    Ok(defaults)
}

impl NativeStore {
    /// Runs a read-only operation of a method without an async twin on a
    /// handle of the store, to completion with the GIL released.
    fn read<T, Fut>(&self, py: Python<'_>, operation: impl FnOnce(Store) -> Fut) -> PyResult<T>
    where
        T: Send,
        Fut: Future<Output = crate::Result<T>> + Send,
    {
        block_on_read(py, operation(self.store.clone()))
    }
}

#[pymethods]
impl NativeStore {
    /// Every option but `url` and `secret` may be `None`: the core's default.
    #[staticmethod]
    #[pyo3(signature = (
        url,
        secret,
        *,
        pad_size = None,
        max_new_pads = None,
        reservation_concurrency = None,
        upload_concurrency = None,
        download_concurrency = None,
        retry_attempts = None,
        state_dir = None,
        allow_rollback = None,
        backend_options = None,
        create = true,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn open(
        py: Python<'_>,
        url: String,
        secret: Vec<u8>,
        pad_size: Option<&Arg<'_>>,
        max_new_pads: Option<&Arg<'_>>,
        reservation_concurrency: Option<&Arg<'_>>,
        upload_concurrency: Option<&Arg<'_>>,
        download_concurrency: Option<&Arg<'_>>,
        retry_attempts: Option<&Arg<'_>>,
        state_dir: Option<std::path::PathBuf>,
        allow_rollback: Option<&Arg<'_>>,
        backend_options: Option<&Bound<'_, PyDict>>,
        create: bool,
    ) -> PyResult<Self> {
        // What is left out keeps the core's default.
        let mut options = StoreOptions {
            secret,
            pad_size: args::optional_count("pad_size", pad_size)?,
            max_new_pads: args::optional_count("max_new_pads", max_new_pads)?,
            backend: BackendOptions {
                options: args::backend_options(backend_options)?,
                must_exist: !create,
            },
            state_dir,
            ..StoreOptions::default()
        };
        for (name, given, field) in [
            (
                "reservation_concurrency",
                reservation_concurrency,
                &mut options.reservation_concurrency,
            ),
            (
                "upload_concurrency",
                upload_concurrency,
                &mut options.upload_concurrency,
            ),
            (
                "download_concurrency",
                download_concurrency,
                &mut options.download_concurrency,
            ),
        ] {
            if let Some(given) = given {
                *field = args::count(name, given)?;
            }
        }
        if let Some(given) = retry_attempts {
            options.retry_attempts = args::count("retry_attempts", given)?;
        }
        if let Some(given) = allow_rollback {
            options.allow_rollback = given.is_truthy()?;
        }
        let store = block_on(py, async move { Store::open(&url, options).await })?;
        // The location only: the query's options add nothing here.
        let location = store.url().split('?').next().unwrap_or_default();
        log::debug!("opened the store at {location}");
        Ok(Self { store })
    }

    #[getter]
    fn url(&self) -> &str {
        self.store.url()
    }

    #[pyo3(signature = (event_loop, key, data, callback, *, overwrite, resume, max_new_pads))]
    #[allow(clippy::too_many_arguments)]
    fn store_item(
        &self,
        py: Python<'_>,
        event_loop: EventLoop<'_>,
        key: &Arg<'_>,
        data: &Arg<'_>,
        callback: Option<Py<PyAny>>,
        overwrite: &Arg<'_>,
        resume: &Arg<'_>,
        max_new_pads: Option<&Arg<'_>>,
    ) -> Answer {
        let key = args::key(key)?;
        let options = put_options(overwrite, resume, max_new_pads)?;
        let data = bytes_from_py(data)?;
        let callback = callback_for(py, event_loop.as_deref(), callback)?;
        let store = self.store.clone();
        call(py, event_loop, Access::Change, async move {
            store.store_item(&key, data, options, callback).await
        })
    }

    #[pyo3(signature = (event_loop, key, callback))]
    fn fetch_item(
        &self,
        py: Python<'_>,
        event_loop: EventLoop<'_>,
        key: &Arg<'_>,
        callback: Option<Py<PyAny>>,
    ) -> Answer {
        let key = args::key(key)?;
        let callback = callback_for(py, event_loop.as_deref(), callback)?;
        let store = self.store.clone();
        call(py, event_loop, Access::Read, async move {
            store.fetch_item_into(&key, BytesOut::new, callback).await
        })
    }

    fn remove_item(&self, py: Python<'_>, event_loop: EventLoop<'_>, key: &Arg<'_>) -> Answer {
        let key = args::key(key)?;
        let store = self.store.clone();
        call(py, event_loop, Access::Change, async move {
            store.remove_item(&key).await
        })
    }

    #[pyo3(signature = (event_loop, old, new, *, overwrite))]
    fn rename_item(
        &self,
        py: Python<'_>,
        event_loop: EventLoop<'_>,
        old: &Arg<'_>,
        new: &Arg<'_>,
        overwrite: &Arg<'_>,
    ) -> Answer {
        let (old, new) = (args::key(old)?, args::key(new)?);
        let overwrite = args::flag("overwrite", overwrite)?;
        let store = self.store.clone();
        call(py, event_loop, Access::Change, async move {
            store.rename_item(&old, &new, overwrite).await
        })
    }

    #[pyo3(signature = (event_loop, deep, callback))]
    fn verify(
        &self,
        py: Python<'_>,
        event_loop: EventLoop<'_>,
        deep: &Arg<'_>,
        callback: Option<Py<PyAny>>,
    ) -> Answer {
        let deep = args::flag("deep", deep)?;
        let callback = callback_for(py, event_loop.as_deref(), callback)?;
        let store = self.store.clone();
        call(py, event_loop, Access::Change, async move {
            store.verify(deep, callback).await.map(Out)
        })
    }

    #[pyo3(signature = (event_loop, callback))]
    fn compact(
        &self,
        py: Python<'_>,
        event_loop: EventLoop<'_>,
        callback: Option<Py<PyAny>>,
    ) -> Answer {
        let callback = callback_for(py, event_loop.as_deref(), callback)?;
        let store = self.store.clone();
        call(py, event_loop, Access::Change, async move {
            store.compact(callback).await.map(Out)
        })
    }

    /// `(pad_size, [(ordinal, used bytes)], largest free run)`, from memory.
    #[allow(clippy::type_complexity)] // a tuple the Python wrapper unpacks
    fn pad_usage(&self) -> PyResult<(u64, Vec<(u64, u64)>, u64)> {
        let usage = self.store.pad_usage()?;
        Ok((usage.pad_size, usage.pads, usage.largest_free))
    }

    fn refresh(&self, py: Python<'_>, event_loop: EventLoop<'_>) -> Answer {
        let store = self.store.clone();
        call(py, event_loop, Access::Read, async move {
            store.refresh().await
        })
    }

    fn summary(&self, py: Python<'_>, event_loop: EventLoop<'_>) -> Answer {
        let store = self.store.clone();
        call(py, event_loop, Access::Read, async move {
            store.summary().await.map(Out)
        })
    }

    fn check_allocation_possible(
        &self,
        py: Python<'_>,
        event_loop: EventLoop<'_>,
        size: &Arg<'_>,
    ) -> Answer {
        let size: u64 = args::count("size", size)?;
        let store = self.store.clone();
        call(py, event_loop, Access::Read, async move {
            store.check_allocation_possible(size).await
        })
    }

    fn keys(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.read(py, |store| async move { store.keys().await })
    }

    /// Every stored item as an `anthill.ItemInfo`, sorted by key.
    fn list_items(&self, py: Python<'_>) -> PyResult<Vec<Out<ItemInfo>>> {
        let items = self.read(py, |store| async move { store.list_items().await })?;
        Ok(items.into_iter().map(Out).collect())
    }

    /// Keys with an interrupted upload and their sizes, sorted by key.
    fn pending_items(&self, py: Python<'_>) -> PyResult<Vec<(String, u64)>> {
        self.read(py, |store| async move { store.pending_items().await })
    }

    fn contains(&self, py: Python<'_>, key: String) -> PyResult<bool> {
        self.read(py, |store| async move { store.contains(&key).await })
    }

    fn len(&self, py: Python<'_>) -> PyResult<u64> {
        self.read(py, |store| async move { store.len().await })
    }

    fn flush(&self, py: Python<'_>, event_loop: EventLoop<'_>) -> Answer {
        let store = self.store.clone();
        call(py, event_loop, Access::Change, async move {
            store.flush().await
        })
    }

    fn unflushed_bytes(&self) -> u64 {
        self.store.log_only_bytes()
    }

    fn close(&self, py: Python<'_>) -> Answer {
        let store = self.store.clone();
        call(py, None, Access::Change, async move { store.close().await })
    }

    fn backend_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.store
            .backend_stats()
            .map(|stats| Out(stats).into_pyobject(py))
            .transpose()
    }

    fn __repr__(&self) -> String {
        format!("NativeStore({:?})", self.store.url())
    }
}
