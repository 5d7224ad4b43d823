//! `rsthread._thread`: CPython 3.11's `_thread` module on rsthread-core.
//!
//! Thin by design: argument conversion with CPython's exact errors
//! (`args`), GIL release and signal handling around waits (`wait`),
//! error mapping (`errors`); all locking lives in `rsthread-core`.
#![forbid(unsafe_op_in_unsafe_fn)]

mod args;
mod capi;
mod cpython;
mod diag;
mod errors;
mod excepthook;
mod handle;
mod local;
mod lock;
mod stockdoc;
mod thread;
mod wait;

use pyo3::prelude::*;

/// allocate_lock() -> lock object
/// (allocate() is an obsolete synonym)
///
/// Create a new lock object. See help(type(threading.Lock())) for
/// information about locks.
#[pyfunction]
#[pyo3(text_signature = None)]
fn allocate_lock(py: Python<'_>) -> lock::PyLock {
    lock::PyLock::new_registered(py)
}

/// allocate_lock() -> lock object
/// (allocate() is an obsolete synonym)
///
/// Create a new lock object. See help(type(threading.Lock())) for
/// information about locks.
#[pyfunction]
#[pyo3(text_signature = None)]
fn allocate(py: Python<'_>) -> lock::PyLock {
    lock::PyLock::new_registered(py)
}

/// This module provides primitive operations to write multi-threaded programs.
/// The 'threading' module provides a more convenient interface.
#[pymodule(name = "_thread")]
fn thread_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // Threads started here attach to the main interpreter (PyGILState) and
    // the types are process-wide: refuse subinterpreters rather than mix
    // interpreters' objects.
    cpython::check_version(py)?;
    args::init(py);
    // SAFETY: attached; both calls only read interpreter pointers.
    if unsafe { pyo3::ffi::PyInterpreterState_Get() != pyo3::ffi::PyInterpreterState_Main() } {
        return Err(pyo3::exceptions::PyImportError::new_err(
            "rsthread._thread cannot be imported in a subinterpreter",
        ));
    }
    m.add("error", py.get_type::<pyo3::exceptions::PyRuntimeError>())?;
    m.add_class::<lock::PyLock>()?;
    // 3.13+: `threading.Lock` is `_thread.lock`, instantiable.
    #[cfg(not(Py_3_13))]
    lock::PyLock::disallow_instantiation(py)?;
    lock::version_extras(py)?;
    m.add_class::<lock::PyRLock>()?;
    lock::install_fast_methods(py)?;
    m.add("LockType", py.get_type::<lock::PyLock>())?;
    m.add_class::<local::PyLocal>()?;
    // TIMEOUT_MAX: floor(min(PY_TIMEOUT_MAX * 1e-6, _PyTime_MAX seconds)).
    m.add(
        "TIMEOUT_MAX",
        ((args::PY_TIMEOUT_MAX_US as f64) * 1e-6).floor(),
    )?;
    m.add_function(wrap_pyfunction!(allocate_lock, m)?)?;
    m.add_function(wrap_pyfunction!(allocate, m)?)?;
    m.add_function(wrap_pyfunction!(thread::start_new_thread, m)?)?;
    m.add_function(wrap_pyfunction!(thread::start_new, m)?)?;
    m.add_function(wrap_pyfunction!(thread::exit, m)?)?;
    m.add_function(wrap_pyfunction!(thread::exit_thread, m)?)?;
    m.add_function(wrap_pyfunction!(thread::get_ident, m)?)?;
    m.add_function(wrap_pyfunction!(thread::get_native_id, m)?)?;
    m.add_function(wrap_pyfunction!(thread::_count, m)?)?;
    #[cfg(not(Py_3_13))]
    m.add_function(wrap_pyfunction!(thread::_set_sentinel, m)?)?;
    m.add_function(wrap_pyfunction!(thread::stack_size, m)?)?;
    m.add_function(wrap_pyfunction!(thread::interrupt_main, m)?)?;
    m.add_function(wrap_pyfunction!(excepthook::excepthook, m)?)?;
    m.add("_ExceptHookArgs", excepthook::hook_args_type(py)?)?;
    add_version_names(m)?;
    // Functions report `__module__ == "_thread"` like stock's (threading's
    // `__all__` check and pickling by name rely on it).
    for name in [
        "allocate_lock",
        "allocate",
        "start_new_thread",
        "start_new",
        "exit",
        "exit_thread",
        "get_ident",
        "get_native_id",
        "_count",
        "stack_size",
        "interrupt_main",
        "_excepthook",
    ] {
        m.getattr(name)?.setattr("__module__", "_thread")?;
    }
    let diag_module = diag::register(py)?;
    lock::diagnosed::add_diag_functions(&diag_module)?;
    diag_module.add_function(wrap_pyfunction!(handle::forget_at_shutdown, &diag_module)?)?;
    cpython::frames::check_layout(py);
    thread::install_fast_get_ident(m)?;
    thread::init(py)?;
    // Stock `_thread` has no `lock` attribute before 3.13 (only `LockType`),
    // and no `__all__`.
    #[cfg(not(Py_3_13))]
    m.delattr("lock")?;
    if m.hasattr("__all__")? {
        m.delattr("__all__")?;
    }
    stockdoc::apply(m)?;
    Ok(())
}

/// The names each version added to `_thread` (the version's own set, and
/// nothing it removed: `_set_sentinel` is gone from 3.13).
fn add_version_names(m: &Bound<'_, PyModule>) -> PyResult<()> {
    #[cfg_attr(not(Py_3_12), allow(unused_mut))]
    let mut names: Vec<&str> = if cfg!(Py_3_13) {
        vec![]
    } else {
        vec!["_set_sentinel"]
    };
    #[cfg(Py_3_12)]
    {
        m.add_function(wrap_pyfunction!(thread::daemon_threads_allowed, m)?)?;
        m.add_function(wrap_pyfunction!(thread::_is_main_interpreter, m)?)?;
        names.extend(["daemon_threads_allowed", "_is_main_interpreter"]);
    }
    #[cfg(Py_3_13)]
    {
        m.add_class::<handle::PyThreadHandle>()?;
        m.add_function(wrap_pyfunction!(handle::start_joinable_thread, m)?)?;
        m.add_function(wrap_pyfunction!(handle::_make_thread_handle, m)?)?;
        m.add_function(wrap_pyfunction!(handle::_shutdown, m)?)?;
        m.add_function(wrap_pyfunction!(handle::_get_main_thread_ident, m)?)?;
        names.extend([
            "start_joinable_thread",
            "_make_thread_handle",
            "_shutdown",
            "_get_main_thread_ident",
        ]);
    }
    #[cfg(Py_3_14)]
    {
        m.add_function(wrap_pyfunction!(thread::set_name, m)?)?;
        m.add_function(wrap_pyfunction!(thread::_get_name, m)?)?;
        m.add("_NAME_MAXLEN", thread::NAME_MAXLEN)?;
        names.extend(["set_name", "_get_name"]);
    }
    for name in names {
        m.getattr(name)?.setattr("__module__", "_thread")?;
    }
    Ok(())
}
