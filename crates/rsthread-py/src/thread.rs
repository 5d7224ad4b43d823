//! Module-level functions: thread start, idents, `_count`, `_set_sentinel`,
//! `stack_size`, `exit`, `interrupt_main`.

use std::os::raw::{c_int, c_ulong, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

/// What `start_new_thread` hands to the new thread: owned references and the
/// preallocated thread state, kept as raw pointers so that no Rust value with
/// a destructor is alive while Python code runs (see `thread_start`).
#[derive(Clone, Copy)]
struct RawBoot {
    func: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    /// NULL when no kwargs were given.
    kwargs: *mut ffi::PyObject,
    /// Made by the parent (`_PyThreadState_Prealloc`), like stock; NULL: the
    /// child makes its own (`PyThreadState_New`), see [`PREALLOC_TSTATE`].
    tstate: *mut ffi::PyThreadState,
}

/// The head of CPython 3.11's `struct _ts` (`Include/cpython/pystate.h`) up
/// to the two fields that stock `thread_run` sets in the new thread before
/// binding a preallocated thread state to it.
#[repr(C)]
struct Ts311Head {
    prev: *mut c_void,
    next: *mut c_void,
    interp: *mut c_void,
    _initialized: c_int,
    _static: c_int,
    recursion_remaining: c_int,
    recursion_limit: c_int,
    recursion_headroom: c_int,
    tracing: c_int,
    tracing_what: c_int,
    cframe: *mut c_void,
    c_profilefunc: *mut c_void,
    c_tracefunc: *mut c_void,
    c_profileobj: *mut c_void,
    c_traceobj: *mut c_void,
    curexc_type: *mut c_void,
    curexc_value: *mut c_void,
    curexc_traceback: *mut c_void,
    exc_info: *mut c_void,
    dict: *mut c_void,
    gilstate_counter: c_int,
    async_exc: *mut c_void,
    thread_id: c_ulong,
    native_thread_id: c_ulong,
}
// The offsets stock `thread_run` writes (checked in libpython 3.11.7's code).
const _: () = assert!(std::mem::offset_of!(Ts311Head, thread_id) == 0x98);
const _: () = assert!(std::mem::offset_of!(Ts311Head, native_thread_id) == 0xa0);

/// Whether the parent preallocates the new thread's state, as stock does.
/// That needs [`Ts311Head`] to match the running interpreter, which module
/// init checks on the importing thread's own state; otherwise the child
/// makes its state with `PyThreadState_New` (same result, allocated there).
static PREALLOC_TSTATE: AtomicBool = AtomicBool::new(false);

/// pthread key (+1; 0: not created) whose value, in threads started here, is
/// the address of `thread_start`'s sentinel slot. No destructor, and for the
/// first 32 keys glibc stores values inline: no allocation per thread.
static SLOT_KEY: AtomicUsize = AtomicUsize::new(0);

/// Module init: check the thread-state layout and create the slot key.
pub(crate) fn init(_py: Python<'_>) -> PyResult<()> {
    // SAFETY: attached, so the current thread state is valid; only the
    // head's fields are read, and only after its `interp` field (offset 16
    // in every CPython 3.x) matched.
    let ok = unsafe {
        let ts = ffi::PyThreadState_Get().cast::<Ts311Head>();
        (*ts).interp == ffi::PyInterpreterState_Get().cast()
            && (*ts).thread_id as u64 == ident::current()
            && (*ts).native_thread_id as u64 == ident::native()
    };
    PREALLOC_TSTATE.store(ok, Ordering::Relaxed);
    if SLOT_KEY.load(Ordering::Relaxed) == 0 {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid out-pointer; no destructor.
        let rc = unsafe { libc::pthread_key_create(&mut key, None) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc).into());
        }
        SLOT_KEY.store(key as usize + 1, Ordering::Relaxed);
    }
    Ok(())
}

/// This thread's sentinel slot, if `start_new_thread` started it.
#[inline]
fn own_slot() -> *mut *mut ffi::PyObject {
    match SLOT_KEY.load(Ordering::Relaxed) {
        0 => std::ptr::null_mut(),
        // SAFETY: a key created by `init`.
        k => unsafe { libc::pthread_getspecific((k - 1) as libc::pthread_key_t).cast() },
    }
}

/// Entry point of every thread started by `start_new_thread`; stock's
/// `thread_run`, step for step.
///
/// Written against the C API on purpose: CPython 3.11 ends a thread that
/// tries to take the GIL during finalization with `pthread_exit`, whose
/// forced unwind would run Rust destructors (PyO3's attach guard) in a thread
/// that no longer holds the GIL and abort the process. Here nothing between
/// glibc's `start_thread` and the Python calls has a destructor, so such a
/// thread just ends, as it does with stock `_thread`.
extern "C-unwind" fn thread_start(arg: *mut c_void) -> *mut c_void {
    // SAFETY: `arg` is the Box<RawBoot> leaked by `start_impl` for this thread only.
    let boot: RawBoot = unsafe { *Box::from_raw(arg.cast::<RawBoot>()) };
    // This thread's `_set_sentinel()` lock (an owned reference), found by
    // `_set_sentinel` through SLOT_KEY.
    let mut sentinel: *mut ffi::PyObject = std::ptr::null_mut();
    let key = SLOT_KEY.load(Ordering::Relaxed);
    // SAFETY (block): every pointer in `boot` is an owned reference; the GIL
    // is held between AcquireThread and DeleteCurrent; each call is used per
    // its C-API contract (NULL return means an exception is set); the slot
    // outlives every use of the key's value in this thread.
    unsafe {
        if capi::_Py_IsFinalizing() != 0 {
            // Too late to run or even release Python objects: leak them
            // (and the preallocated thread state), like stock.
            COUNT.fetch_sub(1, Ordering::Relaxed);
            return std::ptr::null_mut();
        }
        if key != 0 {
            libc::pthread_setspecific((key - 1) as libc::pthread_key_t, (&raw mut sentinel).cast());
        }
        let ts = if boot.tstate.is_null() {
            ffi::PyThreadState_New(capi::PyInterpreterState_Main())
        } else {
            let h = boot.tstate.cast::<Ts311Head>();
            (*h).thread_id = ident::current() as c_ulong;
            (*h).native_thread_id = ident::native() as c_ulong;
            capi::_PyThreadState_SetCurrent(boot.tstate);
            boot.tstate
        };
        capi::PyEval_AcquireThread_unwind(ts);
        if rsthread_core::diag::flags() != 0 {
            let py = Python::assume_attached();
            crate::diag::thread_begin(py, Bound::from_borrowed_ptr(py, boot.func).as_any());
        }
        let r = capi::PyObject_Call_unwind(boot.func, boot.args, boot.kwargs);
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
        // Stock order: drop function and arguments, decrement _count, clear
        // the thread state, release the sentinel (stock: `on_delete`, at the
        // end of PyThreadState_Clear), delete the thread state and drop the
        // GIL.
        ffi::Py_DECREF(boot.func);
        ffi::Py_DECREF(boot.args);
        ffi::Py_XDECREF(boot.kwargs);
        // Relaxed: a counter read for information only.
        COUNT.fetch_sub(1, Ordering::Relaxed);
        ffi::PyThreadState_Clear(ts);
        // The key's value is left pointing at the slot: nothing reads it
        // after this, and glibc clears it when the thread ends.
        // Volatile: `_set_sentinel` wrote it through the key's pointer.
        let sentinel = std::ptr::read_volatile(&raw const sentinel);
        if !sentinel.is_null() {
            release_sentinel(Python::assume_attached(), sentinel);
        }
        capi::_PyThreadState_DeleteCurrent(ts);
    }
    std::ptr::null_mut()
}

/// Release this thread's `_set_sentinel` lock and drop our reference, with
/// the GIL held, after the thread state was cleared (stock's
/// `release_sentinel` does the same from `on_delete`).
///
/// # Safety
/// `lock` is an owned reference to a `PyLock`; the GIL is held.
unsafe fn release_sentinel(py: Python<'_>, lock: *mut ffi::PyObject) {
    // SAFETY: per the contract; the reference is consumed below.
    unsafe {
        let l = Bound::from_borrowed_ptr(py, lock).cast_into_unchecked::<PyLock>();
        if rsthread_core::diag::flags() != 0 {
            crate::diag::sentinel_release(l.get());
        }
        let _ = l.get().raw.release();
        drop(l);
        if ffi::Py_REFCNT(lock) > 1 {
            ffi::Py_DECREF(lock);
        } else {
            // Ours is the last reference: deallocating here could run weakref
            // callbacks in a thread state that was already cleared (stock
            // holds only a weakref and never deallocates the lock here), so
            // PyO3 drops it later, in a thread with a live state.
            drop(Bound::from_owned_ptr(py, lock).unbind());
        }
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
        return Err(PyTypeError::new_err(format!(
            "start_new_thread expected at least 2 arguments, got {n}"
        )));
    }
    if n > 3 {
        return Err(PyTypeError::new_err(format!(
            "start_new_thread expected at most 3 arguments, got {n}"
        )));
    }
    let func = args.get_item(0)?;
    let fargs = args.get_item(1)?;
    let kw = if n == 3 {
        Some(args.get_item(2)?)
    } else {
        None
    };
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
    let tstate = if PREALLOC_TSTATE.load(Ordering::Relaxed) {
        // SAFETY: attached; the main interpreter is the only one we run in.
        let ts = unsafe { capi::_PyThreadState_Prealloc(capi::PyInterpreterState_Main()) };
        if ts.is_null() {
            return Err(
                PyErr::take(py).unwrap_or_else(|| pyo3::exceptions::PyMemoryError::new_err(()))
            );
        }
        ts
    } else {
        std::ptr::null_mut()
    };
    let func_for_diag = func.clone();
    let boot = Box::new(RawBoot {
        func: func.unbind().into_ptr(),
        args: fargs.unbind().into_ptr(),
        kwargs: kw.map_or(std::ptr::null_mut(), |k| k.unbind().into_ptr()),
        tstate,
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
            // SAFETY: attached; these are the owned references and the
            // unused thread state made above (not current, never bound).
            unsafe {
                ffi::Py_DECREF(boot.func);
                ffi::Py_DECREF(boot.args);
                ffi::Py_XDECREF(boot.kwargs);
                if !boot.tstate.is_null() {
                    ffi::PyThreadState_Clear(boot.tstate);
                    ffi::PyThreadState_Delete(boot.tstate);
                }
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
    let slot = own_slot();
    if !slot.is_null() {
        // A thread started by `start_new_thread`. Replaces (without
        // releasing) a sentinel set before a fork, like stock.
        // SAFETY: attached; the slot is `thread_start`'s, alive while this
        // thread runs Python code, and holds NULL or an owned reference.
        unsafe {
            let old = std::mem::replace(&mut *slot, lock.clone_ref(py).into_ptr());
            ffi::Py_XDECREF(old);
        }
    } else {
        // SAFETY: attached; returns a borrowed dict (NULL only without a thread state).
        let d = unsafe { ffi::PyThreadState_GetDict() };
        if d.is_null() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "no thread state dict",
            ));
        }
        // SAFETY: `d` is a live dict borrowed from the thread state.
        let dict = unsafe { Bound::from_borrowed_ptr(py, d) }.cast_into::<PyDict>()?;
        if let Some(old) = dict.get_item(SENTINEL_KEY)? {
            if let Ok(old) = old.cast::<SentinelReleaser>() {
                old.get().armed.store(false, Ordering::Relaxed);
            }
        }
        let rel = SentinelReleaser {
            lock: lock.clone_ref(py),
            armed: true.into(),
        };
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
pub fn stack_size(
    py: Python<'_>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<usize> {
    no_keywords("stack_size", kwargs)?;
    let mut size: ffi::Py_ssize_t = 0;
    // SAFETY: "|n" writes one Py_ssize_t through the pointer; `args` is a tuple.
    if unsafe {
        ffi::PyArg_ParseTuple(
            args.as_ptr(),
            c"|n:stack_size".as_ptr(),
            &mut size as *mut ffi::Py_ssize_t,
        )
    } == 0
    {
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
pub fn interrupt_main(
    py: Python<'_>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<()> {
    no_keywords("interrupt_main", kwargs)?;
    let mut signum: std::os::raw::c_int = libc::SIGINT;
    // SAFETY: "|i" writes one C int through the pointer; `args` is a tuple.
    // (Stock parses with this very format, hence its "signum()" messages.)
    if unsafe {
        ffi::PyArg_ParseTuple(
            args.as_ptr(),
            c"|i:signum".as_ptr(),
            &mut signum as *mut std::os::raw::c_int,
        )
    } == 0
    {
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
unsafe extern "C" fn get_ident_raw(
    _module: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: called by CPython with the GIL held; returns a new reference or NULL.
    unsafe { ffi::PyLong_FromUnsignedLongLong(ident::current()) }
}

/// Replace the module's `get_ident` with [`get_ident_raw`], keeping its doc.
pub(crate) fn install_fast_get_ident(m: &Bound<'_, pyo3::types::PyModule>) -> PyResult<()> {
    let py = m.py();
    let doc: Option<String> = m.getattr("get_ident")?.getattr("__doc__")?.extract()?;
    let doc_ptr = doc.map_or(std::ptr::null(), |d| {
        Box::leak(
            std::ffi::CString::new(d)
                .expect("no NUL")
                .into_boxed_c_str(),
        )
        .as_ptr()
    });
    // Leaked: the function object points at its PyMethodDef for its lifetime.
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"get_ident".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunction: get_ident_raw,
        },
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
