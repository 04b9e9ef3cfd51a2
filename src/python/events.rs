//! Core events as instances of the Python classes of `anthill._events`
//! (frozen dataclasses, built with keyword arguments). The classes and their
//! fields come from the events' schemas (`crate::events`), declared once
//! with the Rust types.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::ClassCache;
use crate::events::{EventSchema, FieldKind, FieldValue, GetEvent, OperationProgress, PutEvent};

/// Every event type the core hands to a callback.
pub(crate) const EVENT_SCHEMAS: [&[EventSchema]; 3] = [
    PutEvent::SCHEMA,
    GetEvent::SCHEMA,
    OperationProgress::SCHEMA,
];

const EVENT_COUNT: usize =
    PutEvent::SCHEMA.len() + GetEvent::SCHEMA.len() + OperationProgress::SCHEMA.len();

static CLASSES: ClassCache<EVENT_COUNT> =
    ClassCache::new("anthill._events", schema_names(&EVENT_SCHEMAS));

/// The names of the types of `schemas`, in order (exactly `N` of them).
const fn schema_names<const N: usize>(schemas: &[&[EventSchema]]) -> [&'static str; N] {
    let mut names = [""; N];
    let mut filled = 0;
    let mut group = 0;
    while group < schemas.len() {
        let mut member = 0;
        while member < schemas[group].len() {
            names[filled] = schemas[group][member].name;
            filled += 1;
            member += 1;
        }
        group += 1;
    }
    assert!(filled == N, "the event count disagrees with the schemas");
    names
}

/// The Python type of a field of the kind `kind`, as the dataclasses
/// annotate it.
pub(crate) fn python_type(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Count => "int",
        FieldKind::Text => "str",
        FieldKind::OptionalText => "str | None",
    }
}

/// An event that can be handed to a Python callback.
pub(crate) trait IntoPyEvent: Send + 'static {
    fn into_py_event(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>>;
}

/// `class(**fields)` for the event class `name`.
fn event<'py>(
    py: Python<'py>,
    (name, fields): (&'static str, Vec<(&'static str, FieldValue)>),
) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = PyDict::new(py);
    for (field, value) in fields {
        match value {
            FieldValue::Count(count) => kwargs.set_item(field, count)?,
            FieldValue::Text(text) => kwargs.set_item(field, text)?,
            FieldValue::OptionalText(text) => kwargs.set_item(field, text)?,
        }
    }
    CLASSES.get(py, name)?.call((), Some(&kwargs))
}

impl IntoPyEvent for PutEvent {
    fn into_py_event(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        event(py, self.into_fields())
    }
}

impl IntoPyEvent for GetEvent {
    fn into_py_event(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        event(py, self.into_fields())
    }
}

impl IntoPyEvent for OperationProgress {
    fn into_py_event(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        event(py, self.into_fields())
    }
}
