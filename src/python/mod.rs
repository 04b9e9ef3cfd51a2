//! The Python bindings (`anthill._anthill`): a thin pyo3 skin over
//! [`crate::store::Store`]. Conversions, GIL handling and exceptions only; every
//! decision is the core's. The pure-Python package in `python/anthill/` wraps
//! this module (its `Store` class, events, exceptions, progress bars, CLI).
//!
//! - [`store`]: the `NativeStore` class, one method per operation serving
//!   both its sync and its `*_async` form; [`stream`]: the streaming ones.
//! - [`args`]: Python arguments as core types (keys, flags, counts).
//! - [`runtime`]: running core futures with the GIL released (sync) or as
//!   asyncio futures completed in batches per event loop (async), on
//!   pyo3-async-runtimes' one tokio runtime.
//! - [`callback`]: a Python callable as a core [`crate::Callback`].
//! - [`events`], [`summary`]: core values as instances of the Python classes,
//!   and [`schema`], their fields for the tests that compare the two sides.
//! - [`errors`]: core errors as the exceptions of `anthill._errors`.
//! - [`buffer`]: any Python buffer as `bytes::Bytes`, without a copy.

mod args;
mod buffer;
mod callback;
mod errors;
mod events;
mod runtime;
mod store;
mod stream;
mod summary;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

/// Python classes of one module of the package, imported on first use.
///
/// The Rust layer builds events, summaries and exceptions as instances of
/// classes defined in Python (so they are plain dataclasses and exception
/// subclasses that users can `match`, pickle and subclass).
pub(crate) struct ClassCache<const N: usize> {
    module: &'static str,
    names: [&'static str; N],
    classes: [PyOnceLock<Py<PyType>>; N],
}

impl<const N: usize> ClassCache<N> {
    pub(crate) const fn new(module: &'static str, names: [&'static str; N]) -> Self {
        Self {
            module,
            names,
            classes: [const { PyOnceLock::new() }; N],
        }
    }

    /// The class `name` of the module (`name` must be one of the cache's names).
    pub(crate) fn get<'py>(
        &'py self,
        py: Python<'py>,
        name: &str,
    ) -> PyResult<&'py Bound<'py, PyType>> {
        let Some(slot) = self.names.iter().position(|known| *known == name) else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
                "anthill bug: class {name} is not cached for {}",
                self.module
            )));
        };
        self.classes[slot].import(py, self.module, name)
    }
}

/// The extension's own allocations (not Python's) go through mimalloc. It
/// keeps blocks of one size together, which suits the memory map of a large
/// store (many short lists, one per pad); docs/benchmarks.md measures the
/// difference, and the benchmarks use it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Every class the core builds in Python (events and reports) with its
/// fields and their Python types, in order, as the core declares them.
#[pyfunction]
fn schema(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let classes = PyDict::new(py);
    for schema in events::EVENT_SCHEMAS.iter().copied().flatten() {
        let fields: Vec<(&str, &str)> = schema
            .fields
            .iter()
            .map(|(name, kind)| (*name, events::python_type(*kind)))
            .collect();
        classes.set_item(schema.name, fields)?;
    }
    for (name, fields) in summary::REPORT_SCHEMAS {
        classes.set_item(name, fields.to_vec())?;
    }
    Ok(classes)
}

/// Whether `location` names a store by URL (else it is a folder path).
#[pyfunction]
fn is_url(location: &str) -> bool {
    crate::store::is_url(location)
}

/// Whether the backend option `name` holds a credential (never pickled,
/// shown or logged).
#[pyfunction]
fn is_credential(name: &str) -> bool {
    crate::pad_store::is_credential(name)
}

#[pymodule]
fn _anthill(module: &Bound<'_, PyModule>) -> PyResult<()> {
    // Rust `log` records go to Python's `logging` (logger names are the Rust
    // module paths, such as `anthill.store`). Another extension may have
    // installed the global logger first; then ours stays off.
    let _ = pyo3_log::try_init();
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_class::<store::NativeStore>()?;
    module.add_class::<stream::NativeStreams>()?;
    module.add_class::<stream::NativeItemReader>()?;
    module.add_class::<runtime::EventLoopBridge>()?;
    module.add_class::<runtime::CoreCall>()?;
    module.add_function(wrap_pyfunction!(schema, module)?)?;
    module.add_function(wrap_pyfunction!(is_url, module)?)?;
    module.add_function(wrap_pyfunction!(is_credential, module)?)?;
    module.add_function(wrap_pyfunction!(store::store_defaults, module)?)?;
    let exit_hook = wrap_pyfunction!(runtime::wait_for_async_calls, module)?;
    module
        .py()
        .import("atexit")?
        .call_method1("register", (exit_hook,))?;
    let fork_hook = wrap_pyfunction!(release_locks_in_forked_child, module)?;
    let hooks = pyo3::types::PyDict::new(module.py());
    hooks.set_item("after_in_child", fork_hook)?;
    module
        .py()
        .import("os")?
        .call_method("register_at_fork", (), Some(&hooks))?;
    Ok(())
}

/// Run by `os.register_at_fork` in a child just forked: the child lets go of
/// the lock files its parent holds (see `held_files`).
#[pyfunction]
fn release_locks_in_forked_child() {
    crate::held_files::release_in_forked_child();
}
