//! The Python bindings (`anthill._anthill`): a thin pyo3 skin over
//! [`crate::store::Store`]. Conversions, GIL handling and exceptions only; every
//! decision is the core's. The pure-Python package in `python/anthill/` wraps
//! this module (its `Store` class, events, exceptions, progress bars, CLI).
//!
//! - [`store`]: the `NativeStore` class, a sync and an async method per operation.
//! - [`runtime`]: running core futures with the GIL released (sync) or as
//!   asyncio futures completed in batches per event loop (async), on
//!   pyo3-async-runtimes' one tokio runtime.
//! - [`callback`]: a Python callable as a core [`crate::Callback`].
//! - [`events`], [`summary`]: core values as instances of the Python classes.
//! - [`errors`]: core errors as the exceptions of `anthill._errors`.
//! - [`buffer`]: any Python buffer as `bytes::Bytes`, without a copy.

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
use pyo3::types::PyType;

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
/// keeps blocks of one size together, which the memory map of a large store
/// (many short lists, one per pad) reads faster: with 10^6 items an
/// allocation or free costs about 15% less than with the system allocator
/// (P3 in docs/benchmarks.md; the benchmarks use it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let exit_hook = wrap_pyfunction!(runtime::wait_for_async_calls, module)?;
    module
        .py()
        .import("atexit")?
        .call_method1("register", (exit_hook,))?;
    Ok(())
}
