//! Module-level functions: thread start, idents, `_count`, `_set_sentinel`,
//! `stack_size`, `exit`, `interrupt_main`.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::exceptions::{PySystemExit, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use rsthread_core::{ident, thread as core_thread};

use crate::args::no_keywords;
use crate::capi;
use crate::errors;
use crate::lock::PyLock;

/// Threads started by this module that have not finished (`_count()`).
static COUNT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// True in threads started by `start_new_thread`.
    static OURS: Cell<bool> = const { Cell::new(false) };
    /// The `_set_sentinel()` lock of this thread (ours only), released after
    /// the thread state has been destroyed.
    static SENTINEL: RefCell<Option<Py<PyLock>>> = const { RefCell::new(None) };
}

/// What `start_new_thread` hands to the new thread: three owned references,
/// kept as raw pointers so that no Rust value with a destructor is alive
/// while Python code runs (see `thread_start`).
#[derive(Clone, Copy)]
struct RawBoot {
    func: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    /// NULL when no kwargs were given.
    kwargs: *mut ffi::PyObject,
}

/// Entry point of every thread started by `start_new_thread`.
///
/// Written against the C API on purpose: CPython 3.11 ends a thread that
/// tries to take the GIL during finalization with `pthread_exit`, whose
/// forced unwind would run Rust destructors (PyO3's attach guard) in a thread
/// that no longer holds the GIL and abort the process. Here nothing between
/// glibc's `start_thread` and the Python calls has a destructor, so such a
/// thread just ends, as it does with stock `_thread`.
extern "C-unwind" fn thread_start(arg: *mut std::ffi::c_void) -> *mut std::ffi::c_void {
    // SAFETY: `arg` is the Box<RawBoot> leaked by `start_impl` for this thread only.
    let boot: RawBoot = unsafe { *Box::from_raw(arg.cast::<RawBoot>()) };
    OURS.with(|o| o.set(true));
    // SAFETY (block): every pointer in `boot` is an owned reference; the GIL
    // is held between Ensure and Release; each call is used per its C-API
    // contract (NULL return means an exception is set).
    unsafe {
        if capi::_Py_IsFinalizing() != 0 {
            // Too late to run or even release Python objects: leak them, like stock.
            COUNT.fetch_sub(1, Ordering::Relaxed);
            return std::ptr::null_mut();
        }
        let g = ffi::PyGILState_Ensure();
        if rsthread_core::diag::flags() != 0 {
            let py = Python::assume_attached();
            crate::diag::thread_begin(py, Bound::from_borrowed_ptr(py, boot.func).as_any());
        }
        let r = ffi::PyObject_Call(boot.func, boot.args, boot.kwargs);
        if r.is_null() {
            if ffi::PyErr_ExceptionMatches(ffi::PyExc_SystemExit) != 0 {
                ffi::PyErr_Clear();
            } else {
                capi::_PyErr_WriteUnraisableMsg(c"in thread started by".as_ptr(), boot.func);
            }
        } else {
            ffi::Py_DECREF(r);
        }
        if rsthread_core::diag::flags() != 0 {
            crate::diag::thread_end(Python::assume_attached());
        }
        // Stock order: drop function and arguments, then decrement _count,
        // then clear and delete the thread state (PyGILState_Release of the
        // last level does both), then release the sentinel.
        ffi::Py_DECREF(boot.func);
        ffi::Py_DECREF(boot.args);
        ffi::Py_XDECREF(boot.kwargs);
        // Relaxed: a counter read for information only.
        COUNT.fetch_sub(1, Ordering::Relaxed);
        ffi::PyGILState_Release(g);
    }
    release_own_sentinel();
    std::ptr::null_mut()
}

/// After the thread state is gone: release this thread's `_set_sentinel` lock.
fn release_own_sentinel() {
    if let Some(lock) = SENTINEL.with(|s| s.borrow_mut().take()) {
        // `get` needs no GIL (frozen, Sync); the lock is an atomic word.
        if rsthread_core::diag::flags() != 0 {
            crate::diag::sentinel_release(lock.get());
        }
        let _ = lock.get().raw.release();
        // Dropping without the GIL defers the decref to PyO3's pool, or leaks
        // it when the interpreter is gone, which is harmless at exit.
        drop(lock);
    }
}

/// start_new_thread(function, args[, kwargs])
/// (start_new() is an obsolete synonym)
///
/// Start a new thread and return its identifier.  The thread will call the
/// function with positional arguments from the tuple args and keyword arguments
/// taken from the optional dictionary kwargs.  The thread exits when the
/// function returns; the return value is ignored.  The thread will also exit
/// when the function raises an unhandled exception; a stack trace will be
/// printed unless the exception is SystemExit.
#[pyfunction]
#[pyo3(signature = (*args, **kwargs), text_signature = None)]
pub fn start_new_thread(
    py: Python<'_>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<u64> {
    start_impl("start_new_thread", py, args, kwargs)
}

/// start_new_thread(function, args[, kwargs])
/// (start_new() is an obsolete synonym)
///
/// Start a new thread and return its identifier.  The thread will call the
/// function with positional arguments from the tuple args and keyword arguments
/// taken from the optional dictionary kwargs.  The thread exits when the
/// function returns; the return value is ignored.  The thread will also exit
/// when the function raises an unhandled exception; a stack trace will be
/// printed unless the exception is SystemExit.
#[pyfunction]
#[pyo3(signature = (*args, **kwargs), text_signature = None)]
pub fn start_new(
    py: Python<'_>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<u64> {
    start_impl("start_new", py, args, kwargs)
}

fn start_impl(
    name: &str,
    py: Python<'_>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<u64> {
    no_keywords(name, kwargs)?;
    let n = args.len();
    if n < 2 {
        return Err(PyTypeError::new_err(format!("start_new_thread expected at least 2 arguments, got {n}")));
    }
    if n > 3 {
        return Err(PyTypeError::new_err(format!("start_new_thread expected at most 3 arguments, got {n}")));
    }
    let func = args.get_item(0)?;
    let fargs = args.get_item(1)?;
    let kw = if n == 3 { Some(args.get_item(2)?) } else { None };
    if !func.is_callable() {
        return Err(PyTypeError::new_err("first arg must be callable"));
    }
    let fargs = fargs
        .cast_into::<PyTuple>()
        .map_err(|_| PyTypeError::new_err("2nd arg must be a tuple"))?;
    let kw = match kw {
        None => None,
        Some(k) => Some(
            k.cast_into::<PyDict>()
                .map_err(|_| PyTypeError::new_err("optional 3rd arg must be a dictionary"))?,
        ),
    };
    let none = py.None();
    let kw_obj = kw.as_ref().map_or(none.as_ptr(), |k| k.as_ptr());
    // SAFETY: attached; "OOO" takes three borrowed object pointers, all alive.
    if unsafe {
        capi::PySys_Audit(
            c"_thread.start_new_thread".as_ptr(),
            c"OOO".as_ptr(),
            func.as_ptr(),
            fargs.as_ptr(),
            kw_obj,
        )
    } < 0
    {
        return Err(PyErr::fetch(py));
    }
    let func_for_diag = func.clone();
    let boot = Box::new(RawBoot {
        func: func.unbind().into_ptr(),
        args: fargs.unbind().into_ptr(),
        kwargs: kw.map_or(std::ptr::null_mut(), |k| k.unbind().into_ptr()),
    });
    // Relaxed: informational counter (see `_count`).
    COUNT.fetch_add(1, Ordering::Relaxed);
    let arg = Box::into_raw(boot).cast::<std::ffi::c_void>();
    // SAFETY: `thread_start` takes ownership of `arg` and keeps no value with
    // a destructor alive across Python calls; on error it was not started.
    match unsafe { core_thread::spawn_raw(thread_start, arg) } {
        Ok(id) => {
            if rsthread_core::diag::flags() != 0 {
                // Known before this call returns (the new thread needs the
                // GIL we hold to start), so "every thread is blocked" never
                // misses a thread that is about to run.
                crate::diag::thread_spawned(py, id, &func_for_diag);
            }
            Ok(id)
        }
        Err(_) => {
            COUNT.fetch_sub(1, Ordering::Relaxed);
            // SAFETY: the thread was not started, so `arg` is still ours.
            let boot = unsafe { Box::from_raw(arg.cast::<RawBoot>()) };
            // SAFETY: attached; these are the owned references made above.
            unsafe {
                ffi::Py_DECREF(boot.func);
                ffi::Py_DECREF(boot.args);
                ffi::Py_XDECREF(boot.kwargs);
            }
            Err(errors::cant_start_thread())
        }
    }
}

/// exit()
/// (exit_thread() is an obsolete synonym)
///
/// This is synonymous to ``raise SystemExit''.  It will cause the current
/// thread to exit silently unless the exception is caught.
#[pyfunction]
#[pyo3(text_signature = None)]
pub fn exit() -> PyResult<()> {
    Err(PySystemExit::new_err(()))
}

/// exit()
/// (exit_thread() is an obsolete synonym)
///
/// This is synonymous to ``raise SystemExit''.  It will cause the current
/// thread to exit silently unless the exception is caught.
#[pyfunction]
#[pyo3(text_signature = None)]
pub fn exit_thread() -> PyResult<()> {
    Err(PySystemExit::new_err(()))
}

/// get_ident() -> integer
///
/// Return a non-zero integer that uniquely identifies the current thread
/// amongst other threads that exist simultaneously.
/// This may be used to identify per-thread resources.
/// Even though on some platforms threads identities may appear to be
/// allocated consecutive numbers starting at 1, this behavior should not
/// be relied upon, and the number should be seen purely as a magic cookie.
/// A thread's identity may be reused for another thread after it exits.
#[pyfunction]
#[pyo3(text_signature = None)]
pub fn get_ident() -> u64 {
    ident::current()
}

/// get_native_id() -> integer
///
/// Return a non-negative integer identifying the thread as reported
/// by the OS (kernel). This may be used to uniquely identify a
/// particular thread within a system.
#[pyfunction]
#[pyo3(text_signature = None)]
pub fn get_native_id() -> u64 {
    ident::native()
}

/// _count() -> integer
///
/// Return the number of currently running Python threads, excluding
/// the main thread. The returned number comprises all threads created
/// through `start_new_thread()` as well as `threading.Thread`, and not
/// yet finished.
///
/// This function is meant for internal and specialized purposes only.
/// In most applications `threading.enumerate()` should be used instead.
#[pyfunction]
#[pyo3(text_signature = None)]
pub fn _count() -> usize {
    // Relaxed: a snapshot.
    COUNT.load(Ordering::Relaxed)
}

/// Releases a sentinel lock when the thread state dict holding it is cleared
/// (for threads that `start_new_thread` did not start, e.g. the main thread).
#[pyclass(module = "_thread", frozen)]
pub struct SentinelReleaser {
    lock: Py<PyLock>,
    armed: std::sync::atomic::AtomicBool,
}

impl Drop for SentinelReleaser {
    fn drop(&mut self) {
        // Relaxed: only touched with the GIL held.
        if self.armed.load(Ordering::Relaxed) {
            let _ = self.lock.get().raw.release();
        }
    }
}

const SENTINEL_KEY: &str = "_rsthread_sentinel";

/// _set_sentinel() -> lock
///
/// Set a sentinel lock that will be released when the current thread
/// state is finalized (after it is untied from the interpreter).
///
/// This is a private API for the threading module.
#[pyfunction]
#[pyo3(text_signature = None)]
pub fn _set_sentinel(py: Python<'_>) -> PyResult<Py<PyLock>> {
    // Returned unlocked: `threading` acquires it itself; it is released at
    // thread-state destruction only if it is then locked.
    let lock = PyLock::new_unlocked();
    if rsthread_core::diag::flags() != 0 {
        crate::diag::sentinel_created(py, &lock);
    }
    let lock = Py::new(py, lock)?;
    if OURS.with(|o| o.get()) {
        // Replaces (without releasing) a sentinel set before a fork, like stock.
        SENTINEL.with(|s| *s.borrow_mut() = Some(lock.clone_ref(py)));
    } else {
        // SAFETY: attached; returns a borrowed dict (NULL only without a thread state).
        let d = unsafe { ffi::PyThreadState_GetDict() };
        if d.is_null() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err("no thread state dict"));
        }
        // SAFETY: `d` is a live dict borrowed from the thread state.
        let dict = unsafe { Bound::from_borrowed_ptr(py, d) }.cast_into::<PyDict>()?;
        if let Some(old) = dict.get_item(SENTINEL_KEY)? {
            if let Ok(old) = old.cast::<SentinelReleaser>() {
                old.get().armed.store(false, Ordering::Relaxed);
            }
        }
        let rel = SentinelReleaser { lock: lock.clone_ref(py), armed: true.into() };
        dict.set_item(SENTINEL_KEY, Py::new(py, rel)?)?;
    }
    Ok(lock)
}

/// stack_size([size]) -> size
///
/// Return the thread stack size used when creating new threads.  The
/// optional size argument specifies the stack size (in bytes) to be used
/// for subsequently created threads, and must be 0 (use platform or
/// configured default) or a positive integer value of at least 32,768 (32k).
/// If changing the thread stack size is unsupported, a ThreadError
/// exception is raised.  If the specified size is invalid, a ValueError
/// exception is raised, and the stack size is unmodified.  32k bytes
///  currently the minimum supported stack size value to guarantee
/// sufficient stack space for the interpreter itself.
///
/// Note that some platforms may have particular restrictions on values for
/// the stack size, such as requiring a minimum stack size larger than 32 KiB or
/// requiring allocation in multiples of the system memory page size
/// - platform documentation should be referred to for more information
/// (4 KiB pages are common; using multiples of 4096 for the stack size is
/// the suggested approach in the absence of more specific information).
#[pyfunction]
#[pyo3(signature = (*args, **kwargs), text_signature = None)]
pub fn stack_size(py: Python<'_>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<usize> {
    no_keywords("stack_size", kwargs)?;
    let mut size: ffi::Py_ssize_t = 0;
    // SAFETY: "|n" writes one Py_ssize_t through the pointer; `args` is a tuple.
    if unsafe { ffi::PyArg_ParseTuple(args.as_ptr(), c"|n:stack_size".as_ptr(), &mut size as *mut ffi::Py_ssize_t) } == 0 {
        return Err(PyErr::fetch(py));
    }
    if size < 0 {
        return Err(PyValueError::new_err("size must be 0 or a positive value"));
    }
    core_thread::set_stack_size(size as usize).map_err(errors::stack_size)
}

/// interrupt_main(signum=signal.SIGINT, /)
///
/// Simulate the arrival of the given signal in the main thread,
/// where the corresponding signal handler will be executed.
/// If *signum* is omitted, SIGINT is assumed.
/// A subthread can use this function to interrupt the main thread.
///
/// Note: the default signal handler for SIGINT raises ``KeyboardInterrupt``.
#[pyfunction]
#[pyo3(signature = (*args, **kwargs), text_signature = None)]
pub fn interrupt_main(py: Python<'_>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
    no_keywords("interrupt_main", kwargs)?;
    let mut signum: std::os::raw::c_int = libc::SIGINT;
    // SAFETY: "|i" writes one C int through the pointer; `args` is a tuple.
    // (Stock parses with this very format, hence its "signum()" messages.)
    if unsafe { ffi::PyArg_ParseTuple(args.as_ptr(), c"|i:signum".as_ptr(), &mut signum as *mut std::os::raw::c_int) } == 0 {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: attached; returns nonzero for a signal number out of range.
    if unsafe { ffi::PyErr_SetInterruptEx(signum) } != 0 {
        return Err(PyValueError::new_err("signal number out of range"));
    }
    Ok(())
}

/// Raw `METH_NOARGS` `get_ident`: PyO3's wrapper costs more than the call
/// itself, and `threading.current_thread()` calls this on every lookup.
unsafe extern "C" fn get_ident_raw(_module: *mut ffi::PyObject, _unused: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: called by CPython with the GIL held; returns a new reference or NULL.
    unsafe { ffi::PyLong_FromUnsignedLongLong(ident::current()) }
}

/// Replace the module's `get_ident` with [`get_ident_raw`], keeping its doc.
pub(crate) fn install_fast_get_ident(m: &Bound<'_, pyo3::types::PyModule>) -> PyResult<()> {
    let py = m.py();
    let doc: Option<String> = m.getattr("get_ident")?.getattr("__doc__")?.extract()?;
    let doc_ptr = doc.map_or(std::ptr::null(), |d| {
        Box::leak(std::ffi::CString::new(d).expect("no NUL").into_boxed_c_str()).as_ptr()
    });
    // Leaked: the function object points at its PyMethodDef for its lifetime.
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"get_ident".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunction: get_ident_raw },
        ml_flags: ffi::METH_NOARGS,
        ml_doc: doc_ptr,
    }));
    let modname = pyo3::types::PyString::new(py, "_thread");
    // SAFETY: attached; `def` is 'static; `m` and `modname` are live; new reference or NULL.
    let f = unsafe { ffi::PyCFunction_NewEx(def, m.as_ptr(), modname.as_ptr()) };
    if f.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: new, non-NULL reference.
    m.setattr("get_ident", unsafe { Bound::from_owned_ptr(py, f) })
}
