//! Public C API entry points that pyo3-ffi does not declare (or declares
//! without the unwind ABI we need). Private `_Py*` symbols live in
//! `cpython/`.

use pyo3::ffi::PyObject;
use std::os::raw::{c_char, c_int};

extern "C" {
    /// Raise an auditing event (variadic; formats as `Py_BuildValue`).
    pub fn PySys_Audit(event: *const c_char, format: *const c_char, ...) -> c_int;
}

// Calls that may end the calling thread with `pthread_exit` during
// finalization (CPython < 3.14: taking the GIL, or running Python code that
// takes it again). Declared "C-unwind" so that the forced unwind may pass
// through our frame (`thread_start`, which keeps no value with a destructor
// alive across them) instead of hitting a call site the compiler assumed
// cannot unwind.
#[allow(clashing_extern_declarations)]
extern "C-unwind" {
    /// Take the GIL with `tstate`.
    #[link_name = "PyEval_AcquireThread"]
    pub fn PyEval_AcquireThread_unwind(tstate: *mut pyo3::ffi::PyThreadState);
    /// `PyObject_Call`.
    #[link_name = "PyObject_Call"]
    pub fn PyObject_Call_unwind(
        callable: *mut PyObject,
        args: *mut PyObject,
        kwargs: *mut PyObject,
    ) -> *mut PyObject;
}
