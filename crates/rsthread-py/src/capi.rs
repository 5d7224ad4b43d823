//! CPython 3.11 entry points that pyo3-ffi does not declare. Each one is
//! exported by libpython 3.11 (checked with `nm -D`) and is what stock
//! `_thread` itself calls, which is how we reproduce its behaviour exactly.

use pyo3::ffi::PyObject;
use std::os::raw::{c_char, c_int};

extern "C" {
    /// Report the current exception through `sys.unraisablehook` with
    /// `err_msg = "Exception ignored " + msg` and `object = obj`.
    pub fn _PyErr_WriteUnraisableMsg(err_msg: *const c_char, obj: *mut PyObject);
    /// Generic attribute lookup using `dict` as the instance dict (for `_local`).
    pub fn _PyObject_GenericGetAttrWithDict(
        obj: *mut PyObject,
        name: *mut PyObject,
        dict: *mut PyObject,
        suppress: c_int,
    ) -> *mut PyObject;
    /// Generic attribute store/delete (`value` NULL) using `dict` (for `_local`).
    pub fn _PyObject_GenericSetAttrWithDict(
        obj: *mut PyObject,
        name: *mut PyObject,
        value: *mut PyObject,
        dict: *mut PyObject,
    ) -> c_int;
    /// Print an exception and traceback to `file` like the interpreter does.
    pub fn _PyErr_Display(
        file: *mut PyObject,
        exc: *mut PyObject,
        value: *mut PyObject,
        tb: *mut PyObject,
    );
    /// `int` conversion used by Argument Clinic (`interrupt_main`).
    pub fn _PyLong_AsInt(obj: *mut PyObject) -> c_int;
    /// Raise an auditing event (variadic; formats as `Py_BuildValue`).
    pub fn PySys_Audit(event: *const c_char, format: *const c_char, ...) -> c_int;
    /// The main interpreter.
    pub fn PyInterpreterState_Main() -> *mut pyo3::ffi::PyInterpreterState;
    /// Whether the interpreter is finalizing.
    pub fn _Py_IsFinalizing() -> c_int;
    /// A thread state for `interp`, linked into it but not bound to any OS
    /// thread yet (what stock `start_new_thread` makes in the parent).
    pub fn _PyThreadState_Prealloc(
        interp: *mut pyo3::ffi::PyInterpreterState,
    ) -> *mut pyo3::ffi::PyThreadState;
    /// Bind `tstate` to the calling OS thread for `PyGILState` (stock's
    /// `thread_run` calls it first thing in the new thread).
    pub fn _PyThreadState_SetCurrent(tstate: *mut pyo3::ffi::PyThreadState);
    /// Delete the current thread state and release the GIL.
    pub fn _PyThreadState_DeleteCurrent(tstate: *mut pyo3::ffi::PyThreadState);
    /// Whether the calling thread is the one that runs signal handlers (the
    /// main thread of the main interpreter). Needs an attached thread state.
    pub fn _PyOS_IsMainThread() -> c_int;
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
