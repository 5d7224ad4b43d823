//! Mapping core outcomes to CPython's exact exceptions (free functions: the
//! orphan rule forbids `From<core error> for PyErr` here).

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyType;
use rsthread_core::thread::StackSizeError;

/// `lock.release()` on an unlocked lock (`_thread.error` is `RuntimeError`).
pub fn release_unlocked() -> PyErr {
    PyRuntimeError::new_err("release unlocked lock")
}

/// `stack_size(n)` refused.
pub fn stack_size(e: StackSizeError) -> PyErr {
    match e {
        StackSizeError::Invalid(n) => PyValueError::new_err(format!("size not valid: {n} bytes")),
    }
}

/// Thread creation failed.
pub fn cant_start_thread() -> PyErr {
    PyRuntimeError::new_err("can't start new thread")
}

/// `Py_TYPE(obj)->tp_name`, as stock reprs print it.
pub fn tp_name(tp: &Bound<'_, PyType>) -> PyResult<String> {
    // SAFETY: a live type object; tp_name is a NUL-terminated string owned by it.
    let name = unsafe { std::ffi::CStr::from_ptr((*tp.as_type_ptr()).tp_name) };
    Ok(name.to_string_lossy().into_owned())
}
