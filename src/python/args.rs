//! Arguments of the Python API as core types. A value of the wrong kind
//! (a key that is not a `str`, a flag that is not a `bool`, a count that is
//! not a non-negative `int`) is one `anthill.InvalidInputError` naming the
//! argument. Which values are allowed (the ranges of the store's options)
//! is the core's to decide; this only converts.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};

use super::errors::invalid_input;

/// An argument as Python passed it, before conversion.
pub(crate) type Arg<'py> = Bound<'py, PyAny>;

/// The name of `value`'s type, for messages.
fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|name| name.to_string())
        .unwrap_or_default()
}

/// A key: any `str`.
pub(crate) fn key(value: &Bound<'_, PyAny>) -> PyResult<String> {
    if !value.is_instance_of::<PyString>() {
        return Err(invalid_input(
            value.py(),
            format!("key must be str, got {}", type_name(value)),
        ));
    }
    value.extract()
}

/// A yes/no option: `True` or `False` only.
pub(crate) fn flag(name: &str, value: &Bound<'_, PyAny>) -> PyResult<bool> {
    match value.cast::<PyBool>() {
        Ok(flag) => Ok(flag.is_true()),
        Err(_) => Err(invalid_input(
            value.py(),
            format!("{name} must be True or False, got {}", type_name(value)),
        )),
    }
}

/// A count: an `int` (not a `bool`) from 0 up to what `T` holds.
pub(crate) fn count<T: TryFrom<u64>>(name: &str, value: &Bound<'_, PyAny>) -> PyResult<T> {
    let py = value.py();
    if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
        return Err(invalid_input(
            py,
            format!("{name} must be an int, got {}", type_name(value)),
        ));
    }
    if value.lt(0)? {
        return Err(invalid_input(
            py,
            format!("{name} must not be negative, got {value}"),
        ));
    }
    value
        .extract::<u64>()
        .ok()
        .and_then(|count| T::try_from(count).ok())
        .ok_or_else(|| invalid_input(py, format!("{name} is too large: {value}")))
}

/// A count that may be left out (`None`).
pub(crate) fn optional_count<T: TryFrom<u64>>(
    name: &str,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<T>> {
    value.map(|value| count(name, value)).transpose()
}

/// The backend's keyword options as text: a `str`, `int` or `float` as
/// `str()` shows it, a `bool` as `true`/`false`.
pub(crate) fn backend_options(
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<Vec<(String, String)>> {
    let Some(options) = options else {
        return Ok(Vec::new());
    };
    options
        .iter()
        .map(|(name, value)| {
            let name: String = name.extract()?;
            let text = if let Ok(flag) = value.cast::<PyBool>() {
                if flag.is_true() { "true" } else { "false" }.to_owned()
            } else if value.is_instance_of::<PyString>()
                || value.is_instance_of::<PyInt>()
                || value.is_instance_of::<PyFloat>()
            {
                value.str()?.to_string()
            } else {
                return Err(invalid_input(
                    value.py(),
                    format!(
                        "backend option {name} must be str, int, float or bool, got {}",
                        type_name(&value)
                    ),
                ));
            };
            Ok((name, text))
        })
        .collect()
}
