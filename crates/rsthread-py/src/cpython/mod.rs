//! Everything that depends on a CPython internal: a private symbol or a
//! struct layout that the public (or `PyUnstable_*`) C API does not give.
//!
//! Nothing outside this folder names a `_Py*` symbol or reads an
//! interpreter struct by offset. Each internal is used only after a check
//! against the running interpreter (its version, then a probe of the layout
//! through the public API) that runs before any pointer is followed; when a
//! check fails the feature that needs it degrades (for example, acquire
//! sites come from frame objects instead of the interpreter frames).
//!
//! The safe interface: [`check_version`] (import), [`is_finalizing`],
//! [`is_main_thread`], [`write_unraisable_in_thread`], [`display_exception`],
//! [`getattr_with_dict`] / [`setattr_with_dict`] (for `_local`), the thread
//! states of [`tstate`] and the frame walk of [`frames`].
//!
//! Version families, chosen at build time (`Py_3_12`, `Py_3_13`... from
//! `build.rs`) and checked against the running interpreter at import:
//! - 3.11: private thread-state preallocation (`tstate`), `_PyErr_Display`,
//!   `_PyErr_WriteUnraisableMsg`, `_Py_IsFinalizing`, the frame walk.
//! - 3.12: public thread states and `PyErr_DisplayException`; still the
//!   private `_PyErr_WriteUnraisableMsg` and `_Py_IsFinalizing`; the
//!   interpreter's `finalizing` flag by offset ([`interp312`], probed).
//! - 3.13 to 3.15: public `PyErr_FormatUnraisable` and `Py_IsFinalizing`.
//!
//! Used on every version, exported by every libpython 3.11-3.15 (checked
//! with `nm -D`): `_PyOS_IsMainThread`, `_PyObject_GenericGetAttrWithDict`,
//! `_PyObject_GenericSetAttrWithDict` (no public equivalent).

pub(crate) mod frames;
#[cfg(all(Py_3_12, not(Py_3_13)))]
mod interp312;
pub(crate) mod tstate;

use std::os::raw::{c_char, c_int};

use pyo3::exceptions::PyImportError;
use pyo3::ffi::{self, PyObject};
use pyo3::prelude::*;

#[cfg(Py_3_13)]
extern "C" {
    /// Public C API from 3.13 (pyo3-ffi does not declare it).
    static PyExc_PythonFinalizationError: *mut PyObject;
}

extern "C" {
    fn _PyOS_IsMainThread() -> c_int;
    fn _PyObject_GenericGetAttrWithDict(
        obj: *mut PyObject,
        name: *mut PyObject,
        dict: *mut PyObject,
        suppress: c_int,
    ) -> *mut PyObject;
    fn _PyObject_GenericSetAttrWithDict(
        obj: *mut PyObject,
        name: *mut PyObject,
        value: *mut PyObject,
        dict: *mut PyObject,
    ) -> c_int;
}

#[cfg(not(Py_3_13))]
extern "C" {
    fn _PyErr_WriteUnraisableMsg(err_msg: *const c_char, obj: *mut PyObject);
    fn _Py_IsFinalizing() -> c_int;
}

#[cfg(not(Py_3_12))]
extern "C" {
    fn _PyErr_Display(
        file: *mut PyObject,
        exc: *mut PyObject,
        value: *mut PyObject,
        tb: *mut PyObject,
    );
}

#[cfg(Py_3_12)]
extern "C" {
    fn PyErr_DisplayException(exc: *mut PyObject);
}

#[cfg(Py_3_13)]
extern "C" {
    fn PyErr_FormatUnraisable(format: *const c_char, ...);
}

/// `(major, minor)` this extension was built for.
pub(crate) const BUILT_FOR: (u32, u32) = if cfg!(Py_3_16) {
    (3, 16)
} else if cfg!(Py_3_15) {
    (3, 15)
} else if cfg!(Py_3_14) {
    (3, 14)
} else if cfg!(Py_3_13) {
    (3, 13)
} else if cfg!(Py_3_12) {
    (3, 12)
} else {
    (3, 11)
};

/// Import-time check: the running interpreter is the version this build is
/// for (every layout and symbol choice below depends on it) and has a GIL.
pub(crate) fn check_version(_py: Python<'_>) -> PyResult<()> {
    // SAFETY: a constant exported by libpython since 3.11.
    let v = unsafe { ffi::Py_Version };
    let running = ((v >> 24) as u32, ((v >> 16) & 0xff) as u32);
    if running != BUILT_FOR {
        return Err(PyImportError::new_err(format!(
            "rsthread._thread was built for CPython {}.{} but is running on {}.{}; \
             reinstall rsthread with this interpreter (pip install rsthread)",
            BUILT_FOR.0, BUILT_FOR.1, running.0, running.1
        )));
    }
    if cfg!(Py_GIL_DISABLED) {
        return Err(PyImportError::new_err(
            "rsthread does not support free-threaded (--disable-gil) CPython builds",
        ));
    }
    #[cfg(all(Py_3_12, not(Py_3_13)))]
    interp312::probe(_py);
    Ok(())
}

/// Whether the interpreter is finalizing. Safe to call without the GIL.
#[inline]
pub(crate) fn is_finalizing() -> bool {
    // SAFETY: reads the runtime's finalizing flag (atomic on 3.12+; a plain
    // pointer read on 3.11, which stock `thread_run` also does without the
    // GIL).
    #[cfg(Py_3_13)]
    let r = unsafe { ffi::Py_IsFinalizing() };
    // SAFETY: as above.
    #[cfg(not(Py_3_13))]
    let r = unsafe { _Py_IsFinalizing() };
    r != 0
}

/// Whether the calling thread runs signal handlers (the main thread of the
/// main interpreter). Attached.
#[inline]
pub(crate) fn is_main_thread(_py: Python<'_>) -> bool {
    // SAFETY: attached (we hold `_py`); no arguments, no side effect.
    unsafe { _PyOS_IsMainThread() != 0 }
}

/// Report the current exception through `sys.unraisablehook` as stock
/// `thread_run` does for a function that raised: 3.11/3.12 with
/// `err_msg = "Exception ignored in thread started by"` and `object = func`,
/// 3.13+ with the function's repr in `err_msg` and `object = None`.
///
/// # Safety
/// Attached, with an exception set; `func` a live object.
pub(crate) unsafe fn write_unraisable_in_thread(func: *mut PyObject) {
    // SAFETY: per the contract; the format is a NUL-terminated literal with
    // one `%R` for one object argument.
    #[cfg(Py_3_13)]
    unsafe {
        PyErr_FormatUnraisable(c"Exception ignored in thread started by %R".as_ptr(), func)
    };
    // SAFETY: per the contract; the message is a NUL-terminated literal.
    #[cfg(not(Py_3_13))]
    unsafe {
        _PyErr_WriteUnraisableMsg(c"in thread started by".as_ptr(), func)
    };
}

/// Print `value` with traceback `tb` to `file` like the interpreter prints an
/// uncaught exception (what stock `_thread._excepthook` does).
///
/// 3.12+ goes through the public `PyErr_DisplayException`, which writes to
/// `sys.stderr`: when `file` is another object, `sys.stderr` is pointed at it
/// for the call and put back after. 3.13+ first tries what stock tries first,
/// `traceback._print_exception_bltin` (a private name of that version's
/// `traceback`, which stock's display calls too).
#[cfg_attr(not(Py_3_12), allow(unused_variables))]
pub(crate) fn display_exception(
    py: Python<'_>,
    file: &Bound<'_, PyAny>,
    exc_type: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
    tb: &Bound<'_, PyAny>,
) -> PyResult<()> {
    #[cfg(not(Py_3_12))]
    {
        // SAFETY: attached; four live objects; prints (errors are printed
        // and cleared by the callee).
        unsafe {
            _PyErr_Display(
                file.as_ptr(),
                exc_type.as_ptr(),
                value.as_ptr(),
                tb.as_ptr(),
            )
        };
        Ok(())
    }
    #[cfg(Py_3_12)]
    {
        let _ = exc_type;
        if value.is_instance_of::<pyo3::exceptions::PyBaseException>()
            && !tb.is_none()
            && value.getattr("__traceback__")?.is_none()
        {
            // As the interpreter's own display does: put the traceback on the
            // exception, or it would not be shown.
            value.setattr("__traceback__", tb)?;
        }
        // 3.13+: stock's display first calls `traceback._print_exception_bltin`,
        // which writes to `sys.stderr` (or `sys.__stderr__` when that is None),
        // not to `file`; only if that fails does it print to `file` itself.
        #[cfg(Py_3_13)]
        {
            let shown = py
                .import("traceback")
                .and_then(|tb| tb.getattr("_print_exception_bltin"))
                .and_then(|f| f.call1((value,)));
            if shown.is_ok() {
                return Ok(());
            }
        }
        let sys = py.import("sys")?;
        let stderr = sys.getattr("stderr").ok();
        let swap = !stderr.as_ref().is_some_and(|s| s.is(file));
        if swap {
            sys.setattr("stderr", file)?;
        }
        // SAFETY: attached; a live object; prints (errors are printed and
        // cleared by the callee).
        unsafe { PyErr_DisplayException(value.as_ptr()) };
        if swap {
            match stderr {
                Some(s) => sys.setattr("stderr", s)?,
                None => sys.delattr("stderr")?,
            }
        }
        Ok(())
    }
}

/// Generic attribute lookup on `obj` with `dict` as its instance dict
/// (`_local`'s per-thread dict). New reference, or NULL with an exception.
///
/// # Safety
/// Attached; live objects; `name` a str.
#[inline]
pub(crate) unsafe fn getattr_with_dict(
    obj: *mut PyObject,
    name: *mut PyObject,
    dict: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: per the contract.
    unsafe { _PyObject_GenericGetAttrWithDict(obj, name, dict, 0) }
}

/// Generic attribute store (`value` NULL: delete) on `obj` with `dict` as
/// its instance dict. 0, or -1 with an exception.
///
/// # Safety
/// Attached; live objects (`value` may be NULL); `name` a str.
#[inline]
pub(crate) unsafe fn setattr_with_dict(
    obj: *mut PyObject,
    name: *mut PyObject,
    value: *mut PyObject,
    dict: *mut PyObject,
) -> c_int {
    // SAFETY: per the contract.
    unsafe { _PyObject_GenericSetAttrWithDict(obj, name, value, dict) }
}

/// Refuse to start a thread once the interpreter is finalizing, as stock
/// does: 3.13+ raises `PythonFinalizationError` (from `Py_IsFinalizing`);
/// 3.12 raises `RuntimeError` from the interpreter's own flag, which is set
/// before `threading._shutdown` and the `atexit` handlers run; 3.11 starts
/// the thread.
#[cfg_attr(not(Py_3_12), allow(dead_code))]
pub(crate) fn check_not_finalizing(py: Python<'_>) -> PyResult<()> {
    const MSG: &str = "can't create new thread at interpreter shutdown";
    #[cfg(all(Py_3_12, not(Py_3_13)))]
    if interp312::finalizing(py) {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(MSG));
    }
    #[cfg(Py_3_13)]
    if is_finalizing() {
        return Err(finalization_error(py, MSG));
    }
    let _ = py;
    Ok(())
}

/// `PythonFinalizationError(msg)` (3.13+).
#[cfg(Py_3_13)]
pub(crate) fn finalization_error(py: Python<'_>, msg: &'static str) -> PyErr {
    // The type from the C API, not through an import: during finalization
    // `sys.meta_path` may already be gone.
    // SAFETY: attached; a type object of the running interpreter, set before
    // any Python code runs and never cleared.
    let tp = unsafe {
        Bound::from_borrowed_ptr(py, *std::ptr::addr_of!(PyExc_PythonFinalizationError))
            .cast_into_unchecked::<pyo3::types::PyType>()
    };
    PyErr::from_type(tp, msg)
}
