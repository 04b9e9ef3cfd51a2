//! Data in: any Python object with the buffer protocol, as `bytes::Bytes`.
//! Data out: a new `bytes` object the core reads an item straight into
//! ([`BytesOut`]).
//!
//! - `bytes` is used in place: the `Bytes` holds a reference to the (immutable)
//!   Python object.
//! - Any other C-contiguous buffer (bytearray, memoryview, array.array, a
//!   numpy array, mmap, ...) is used in place too: the `Bytes` owns the
//!   buffer export, which keeps the object alive (and a bytearray
//!   unresizable), and releases it when the core drops the data. Any element
//!   type is taken as its raw bytes, as `bytes(obj)` would. Data the caller
//!   mutates while a put runs is stored in an undefined mix of old and new
//!   content: don't.
//! - A non-contiguous buffer (a strided numpy view, say) is copied once, in C
//!   order. So is every buffer but `bytes` on Windows (see [`export`]).
//! - Anything else (str, int, None, list, ...) is an `InvalidInputError`.
//!
//! Why not `pyo3::buffer::PyBuffer`: the crate builds one abi3 wheel for
//! Python >= 3.10, and pyo3 offers the buffer API under abi3 only from 3.11,
//! when it joined the stable ABI. The function and struct have not changed
//! since Python 3.0 and CPython 3.10 exports them, so [`export`] declares them
//! itself (except on Windows, where an abi3 module may only import what
//! `python3.dll` of 3.10 exports).

use bytes::Bytes;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::invalid_input;

/// A `bytes` object, readable without the GIL (its content never changes).
struct PythonBytes {
    _object: Py<PyBytes>,
    start: *const u8,
    len: usize,
}

// SAFETY: the pointed-to content belongs to an immutable `bytes` object kept
// alive by `_object`; reading it from any thread is sound.
unsafe impl Send for PythonBytes {}
unsafe impl Sync for PythonBytes {}

impl AsRef<[u8]> for PythonBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see the `Send` impl; `start..start+len` is the object's content.
        unsafe { std::slice::from_raw_parts(self.start, self.len) }
    }
}

fn wrap_bytes(object: &Bound<'_, PyBytes>) -> Bytes {
    let content = object.as_bytes();
    Bytes::from_owner(PythonBytes {
        start: content.as_ptr(),
        len: content.len(),
        _object: object.clone().unbind(),
    })
}

/// A new, not yet initialised `bytes` object of an item's size, which the
/// core fills without the GIL (`Store::fetch_item_into`): no zero fill, and
/// no copy from a Rust buffer into Python's.
pub(crate) struct BytesOut {
    object: Py<PyBytes>,
    start: *mut u8,
    len: usize,
}

// SAFETY: the object was created here and no Python code sees it until
// `into_pyobject` hands it over, after the core has written every byte; until
// then the content is ours alone to write, from whichever thread.
unsafe impl Send for BytesOut {}

impl BytesOut {
    pub(crate) fn new(len: usize) -> crate::Result<Self> {
        let too_large =
            || crate::Error::invalid(format!("cannot allocate {len} bytes for the item"));
        let size = pyo3::ffi::Py_ssize_t::try_from(len).map_err(|_| too_large())?;
        Python::attach(|py| {
            // SAFETY: a NULL source asks CPython for `size` uninitialised bytes
            // (the documented way to build a bytes object in place); the new
            // reference is owned by the `Bound`, or NULL with an exception set.
            let object = unsafe {
                let raw = pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), size);
                Bound::from_owned_ptr_or_err(py, raw)
                    .map_err(|_| too_large())?
                    .cast_into_unchecked::<PyBytes>()
            };
            // SAFETY: `object` is a bytes object; its buffer holds `len` bytes.
            let start = unsafe { pyo3::ffi::PyBytes_AsString(object.as_ptr()) }.cast::<u8>();
            Ok(Self {
                object: object.unbind(),
                start,
                len,
            })
        })
    }
}

impl AsMut<[u8]> for BytesOut {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: see the `Send` impl; `start..start+len` is the object's buffer.
        unsafe { std::slice::from_raw_parts_mut(self.start, self.len) }
    }
}

impl<'py> IntoPyObject<'py> for BytesOut {
    type Target = PyBytes;
    type Output = Bound<'py, PyBytes>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(self.object.into_bound(py))
    }
}

/// The bytes of `data`, without a copy where possible (see the module docs).
pub(crate) fn bytes_from_py(data: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    let py = data.py();
    if let Ok(object) = data.cast_exact::<PyBytes>() {
        return Ok(wrap_bytes(object));
    }
    if let Some(buffer) = export::contiguous(data) {
        return Ok(buffer);
    }
    // Not contiguous, or no buffer at all: memoryview tells which.
    let view = match py
        .import(intern!(py, "builtins"))?
        .getattr(intern!(py, "memoryview"))?
        .call1((data,))
    {
        Ok(view) => view,
        Err(_) => {
            let type_name = data
                .get_type()
                .name()
                .map(|name| name.to_string())
                .unwrap_or_else(|_| "an unknown type".into());
            return Err(invalid_input(
                py,
                format!(
                    "data must be bytes-like (bytes, bytearray, memoryview or another \
                     buffer), got {type_name}"
                ),
            ));
        }
    };
    let copy = view.call_method1(intern!(py, "tobytes"), ("C",))?;
    Ok(wrap_bytes(copy.cast::<PyBytes>()?))
}

#[cfg(not(windows))]
mod export {
    //! A C-contiguous buffer export held as the owner of a `Bytes`.

    use std::ffi::{c_char, c_int, c_void};

    use bytes::Bytes;
    use pyo3::ffi::{Py_ssize_t, PyObject};
    use pyo3::prelude::*;

    /// CPython's `Py_buffer` (Include/pybuffer.h; unchanged since 3.0).
    #[repr(C)]
    struct PyBufferView {
        buf: *mut c_void,
        obj: *mut PyObject,
        len: Py_ssize_t,
        itemsize: Py_ssize_t,
        readonly: c_int,
        ndim: c_int,
        format: *mut c_char,
        shape: *mut Py_ssize_t,
        strides: *mut Py_ssize_t,
        suboffsets: *mut Py_ssize_t,
        internal: *mut c_void,
    }

    /// `PyBUF_C_CONTIGUOUS`, read-only: the exporter fails unless it can
    /// give one C-contiguous block.
    const PYBUF_C_CONTIGUOUS: c_int = 0x0020 | 0x0010 | 0x0008;

    unsafe extern "C" {
        fn PyObject_GetBuffer(obj: *mut PyObject, view: *mut PyBufferView, flags: c_int) -> c_int;
        fn PyBuffer_Release(view: *mut PyBufferView);
    }

    /// A held export. Boxed: some exporters point the view's fields into
    /// the view itself, so it must not move.
    struct HeldBuffer(Box<PyBufferView>);

    // SAFETY: the export stays valid until released; the content is only
    // read, and the release happens attached to the interpreter.
    unsafe impl Send for HeldBuffer {}
    unsafe impl Sync for HeldBuffer {}

    impl AsRef<[u8]> for HeldBuffer {
        fn as_ref(&self) -> &[u8] {
            let len = usize::try_from(self.0.len).unwrap_or(0);
            if len == 0 || self.0.buf.is_null() {
                return &[];
            }
            // SAFETY: a C-contiguous export is `len` bytes from `buf`, valid
            // until released in `drop`.
            unsafe { std::slice::from_raw_parts(self.0.buf.cast::<u8>(), len) }
        }
    }

    impl Drop for HeldBuffer {
        fn drop(&mut self) {
            // After interpreter shutdown the memory is gone anyway: skip.
            let view: *mut PyBufferView = &mut *self.0;
            // SAFETY: the view was filled by a successful PyObject_GetBuffer
            // and is released exactly once, attached.
            let _ = Python::try_attach(|_| unsafe { PyBuffer_Release(view) });
        }
    }

    /// `data`'s content in place, if it exports one C-contiguous buffer.
    pub(super) fn contiguous(data: &Bound<'_, PyAny>) -> Option<Bytes> {
        let mut view = Box::new(PyBufferView {
            buf: std::ptr::null_mut(),
            obj: std::ptr::null_mut(),
            len: 0,
            itemsize: 0,
            readonly: 0,
            ndim: 0,
            format: std::ptr::null_mut(),
            shape: std::ptr::null_mut(),
            strides: std::ptr::null_mut(),
            suboffsets: std::ptr::null_mut(),
            internal: std::ptr::null_mut(),
        });
        // SAFETY: attached (we hold `data`), `view` is a writable Py_buffer.
        let status = unsafe { PyObject_GetBuffer(data.as_ptr(), &mut *view, PYBUF_C_CONTIGUOUS) };
        if status != 0 {
            // Not a buffer, or not contiguous: the caller finds out which.
            PyErr::take(data.py());
            return None;
        }
        Some(Bytes::from_owner(HeldBuffer(view)))
    }
}

#[cfg(windows)]
mod export {
    use bytes::Bytes;
    use pyo3::prelude::*;

    /// Always a copy on Windows (see the module docs).
    pub(super) fn contiguous(_data: &Bound<'_, PyAny>) -> Option<Bytes> {
        None
    }
}

/// Bytes the core read (a range of an item), on their way to Python as
/// `bytes` (one copy, into the new object).
pub(crate) struct BytesResult(pub Bytes);

impl<'py> IntoPyObject<'py> for BytesResult {
    type Target = PyBytes;
    type Output = Bound<'py, PyBytes>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.0))
    }
}
