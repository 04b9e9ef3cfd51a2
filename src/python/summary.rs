//! The store's reports as instances of the Python classes of
//! `anthill._summary` (frozen dataclasses, built with keyword arguments):
//! the storage summary, the items of `list_items`, the reports of `verify`
//! and `compact`, and a simulated backend's counters.
//!
//! Each report is listed once below with its fields; the conversion
//! destructures the core type completely, so a field added in the core and
//! not here fails to compile, and the listed types must be the core's.
//! `anthill._anthill.schema()` shows the same list to the Python tests,
//! which check the dataclasses against it.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::ClassCache;
use crate::store::{CompactReport, ItemInfo, OpStats, SimStats, StorageSummary, VerifyReport};

/// A field type of a report, and how it crosses into Python.
trait ReportField {
    /// The type as the dataclass annotates it.
    const PYTHON_TYPE: &'static str;
    fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>>;
}

macro_rules! plain_fields {
    ($($ty:ty => $python:literal),* $(,)?) => {$(
        impl ReportField for $ty {
            const PYTHON_TYPE: &'static str = $python;
            fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
                Ok(self.into_pyobject(py)?.into_any())
            }
        }
    )*};
}

plain_fields! {
    u64 => "int",
    f64 => "float",
    String => "str",
    Vec<String> => "list[str]",
}

/// A core report that crosses into Python as a dataclass instance.
pub(crate) trait Report: Sized {
    /// The class's name in `anthill._summary`.
    const CLASS: &'static str;
    fn kwargs(self, py: Python<'_>) -> PyResult<Bound<'_, PyDict>>;
}

/// Lists each report once: its Python class, the core type and every field
/// with its core type.
macro_rules! reports {
    ($( $class:ident = $ty:ident { $($field:ident : $field_ty:ty),* $(,)? } )*) => {
        $(
            impl Report for $ty {
                const CLASS: &'static str = stringify!($class);
                fn kwargs(self, py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
                    let $ty { $($field),* } = self;
                    let kwargs = PyDict::new(py);
                    $(
                        let $field: $field_ty = $field;
                        kwargs.set_item(stringify!($field), ReportField::into_py($field, py)?)?;
                    )*
                    Ok(kwargs)
                }
            }
        )*

        /// Each report's class with its fields and their Python types.
        pub(crate) const REPORT_SCHEMAS: &[(&str, &[(&str, &str)])] = &[$(
            (stringify!($class), &[$( (stringify!($field), <$field_ty as ReportField>::PYTHON_TYPE) ),*]),
        )*];

        static CLASSES: ClassCache<{ [$(stringify!($class)),*].len() }> =
            ClassCache::new("anthill._summary", [$(stringify!($class)),*]);
    };
}

reports! {
    StorageSummary = StorageSummary {
        total_pads: u64,
        pad_size: u64,
        total_space: u64,
        used_space: u64,
        free_space: u64,
        items: u64,
        pending: u64,
    }
    ItemInfo = ItemInfo {
        key: String,
        size: u64,
        created: u64,
        modified: u64,
    }
    VerifyReport = VerifyReport {
        items_checked: u64,
        damaged: Vec<String>,
        missing_pads: Vec<String>,
        pads_checked: u64,
    }
    CompactReport = CompactReport {
        pads_before: u64,
        pads_after: u64,
        bytes_moved: u64,
        items_moved: u64,
        pads_released: u64,
    }
    OpStats = OpStats {
        calls: u64,
        failures: u64,
        in_flight: u64,
        peak_in_flight: u64,
        bytes: u64,
    }
    BackendStats = SimStats {
        reserve: OpStats,
        put: OpStats,
        durable_put: OpStats,
        verify: OpStats,
        get: OpStats,
        list: OpStats,
        delete: OpStats,
        pads_reserved: u64,
        cost: f64,
        pads_deleted: u64,
    }
}

impl ReportField for OpStats {
    const PYTHON_TYPE: &'static str = "OpStats";
    fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        Out(self).into_pyobject(py)
    }
}

/// A report on its way to Python, as an instance of its dataclass.
pub(crate) struct Out<T>(pub T);

impl<'py, T: Report> IntoPyObject<'py> for Out<T> {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let kwargs = self.0.kwargs(py)?;
        CLASSES.get(py, T::CLASS)?.call((), Some(&kwargs))
    }
}
