//! Module-level functions: thread start, idents, `_count`, `_set_sentinel`,
//! `stack_size`, `exit`, `interrupt_main`.

use std::os::raw::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pyo3::exceptions::{PySystemExit, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use rsthread_core::{ident, thread as core_thread};

use crate::args::no_keywords;
use crate::capi;
use crate::cpython;
use crate::errors;
use crate::lock::PyLock;

/// What a thread started by [`spawn_python_thread`] tells whoever asked to
/// watch it (3.13+'s thread handles, the `handle` module), from the new thread.
pub(crate) trait ThreadWatch: Send + Sync {
    /// Before the thread takes the GIL.
    fn started(&self);
    /// Once attached, when diagnostics are on.
    fn attached(&self, py: Python<'_>);
    /// Last, after the thread state was deleted (no GIL).
    fn finished(self: Arc<Self>);
}

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
    /// Preallocated by the parent (3.11, like stock); NULL: the child makes
    /// its own (see `cpython::tstate`).
    tstate: *mut ffi::PyThreadState,
    /// `Arc::into_raw` of the thread's watcher (3.13+'s handle state, see
    /// `start_joinable_thread`), or NULL.
    handle: Option<NonNull<dyn ThreadWatch>>,
}

impl RawBoot {
    /// Last step of the thread, after its thread state is gone (no GIL):
    /// signal the handle, if any, that the thread is done.
    fn finish(self) {
        if let Some(h) = self.handle {
            // SAFETY: the reference `spawn_python_thread` leaked for this thread.
            let h = unsafe { Arc::from_raw(h.as_ptr().cast_const()) };
            h.finished();
        }
    }

    /// The interpreter finalizes before this thread ran: too late to run or
    /// even release Python objects, so leak them (and the thread state),
    /// like stock; uncount the thread and tell the handle it is done.
    fn abandon(self) {
        // Relaxed: an informational counter.
        COUNT.fetch_sub(1, Ordering::Relaxed);
        self.finish();
    }
}

/// pthread key (+1; 0: not created) whose value, in threads started here, is
/// the address of `thread_start`'s sentinel slot. No destructor, and for the
/// first 32 keys glibc stores values inline: no allocation per thread.
static SLOT_KEY: AtomicUsize = AtomicUsize::new(0);

/// `get_ident()` of the main thread (0: unknown), recorded at import.
static MAIN_IDENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The main thread's `get_ident()`.
pub(crate) fn main_thread_ident() -> u64 {
    // Relaxed: written once at import, read later by threads the import
    // (or code after it) started.
    MAIN_IDENT.load(Ordering::Relaxed)
}

/// `pthread_atfork` child handler: the forking thread is now the main one.
extern "C" fn main_after_fork() {
    // Relaxed: the child has a single thread at this point.
    MAIN_IDENT.store(ident::current(), Ordering::Relaxed);
}

/// Module init: check the thread-state layout and create the slot key.
pub(crate) fn init(py: Python<'_>) -> PyResult<()> {
    cpython::tstate::init(py);
    #[cfg(Py_3_14)]
    let _ = stack_min(py);
    let main = if cpython::is_main_thread(py) {
        ident::current()
    } else {
        // Imported from another thread: ask the stock module (3.13+) or
        // `threading`, which knows its main thread.
        py.import("threading")
            .and_then(|t| {
                t.getattr("main_thread")?
                    .call0()?
                    .getattr("ident")?
                    .extract()
            })
            .unwrap_or(0)
    };
    // Relaxed: see `main_thread_ident`.
    if MAIN_IDENT.swap(main, Ordering::Relaxed) == 0 {
        // First import: after `fork` the forking thread is the child's main
        // thread (stock updates the runtime's main thread the same way).
        // SAFETY: registers a handler that only stores an atomic; no
        // allocation, no lock.
        unsafe { libc::pthread_atfork(None, None, Some(main_after_fork)) };
    }
    // Relaxed: written once here, at import, before any thread is started
    // (thread creation publishes it to the new threads).
    if SLOT_KEY.load(Ordering::Relaxed) == 0 {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid out-pointer; no destructor.
        let rc = unsafe { libc::pthread_key_create(&mut key, None) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc).into());
        }
        // Relaxed: see above.
        SLOT_KEY.store(key as usize + 1, Ordering::Relaxed);
    }
    Ok(())
}

/// This thread's sentinel slot, if `start_new_thread` started it.
#[inline]
fn own_slot() -> *mut *mut ffi::PyObject {
    // Relaxed: set once at import, before this thread existed.
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
    // Relaxed: set at import, before the parent started this thread.
    let key = SLOT_KEY.load(Ordering::Relaxed);
    // SAFETY (block): every pointer in `boot` is an owned reference; the GIL
    // is held between AcquireThread and DeleteCurrent; each call is used per
    // its C-API contract (NULL return means an exception is set); the slot
    // outlives every use of the key's value in this thread.
    unsafe {
        if cpython::is_finalizing() {
            boot.abandon();
            return std::ptr::null_mut();
        }
        let ts = cpython::tstate::bind_new(boot.tstate);
        // 3.14+ stops at finalization only the thread states that exist
        // when it begins (stock makes the state in the parent). A state made
        // here after that would take the GIL after it is gone, so look
        // again now that ours exists: if finalization has not begun yet, it
        // will see and stop this state; if it has, leak like above.
        #[cfg(Py_3_14)]
        if cpython::is_finalizing() {
            boot.abandon();
            return std::ptr::null_mut();
        }
        if let Some(h) = boot.handle {
            h.as_ref().started();
        }
        if key != 0 {
            libc::pthread_setspecific((key - 1) as libc::pthread_key_t, (&raw mut sentinel).cast());
        }
        capi::PyEval_AcquireThread_unwind(ts);
        if rsthread_core::diag::global().flags() != 0 {
            let py = Python::assume_attached();
            crate::diag::thread_begin(py, Bound::from_borrowed_ptr(py, boot.func).as_any());
            if let Some(h) = boot.handle {
                h.as_ref().attached(py);
            }
        }
        let r = capi::PyObject_Call_unwind(boot.func, boot.args, boot.kwargs);
        if r.is_null() {
            if ffi::PyErr_ExceptionMatches(ffi::PyExc_SystemExit) != 0 {
                ffi::PyErr_Clear();
            } else {
                cpython::write_unraisable_in_thread(boot.func);
            }
        } else {
            ffi::Py_DECREF(r);
        }
        if rsthread_core::diag::global().flags() != 0 {
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
        // Volatile: `_set_sentinel` wrote it through the key's pointer.
        let sentinel = std::ptr::read_volatile(&raw const sentinel);
        if !sentinel.is_null() {
            // Released below, after the clear, as stock does.
            let d = ffi::PyThreadState_GetDict();
            if !d.is_null() {
                let py = Python::assume_attached();
                let dict = Bound::from_borrowed_ptr(py, d).cast_into_unchecked::<PyDict>();
                // A str key: the lookup cannot fail or run Python code.
                let _ = disarm_releaser(&dict);
            }
        }
        ffi::PyThreadState_Clear(ts);
        // The key's value is left pointing at the slot: nothing reads it
        // after this, and glibc clears it when the thread ends.
        if !sentinel.is_null() {
            release_sentinel(Python::assume_attached(), sentinel);
        }
        cpython::tstate::delete_current(ts);
        boot.finish();
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
        if rsthread_core::diag::global().flags() != 0 {
            crate::lock::diagnosed::sentinel_release(l.get());
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
    // After the audit event, as stock does.
    cpython::check_not_finalizing(py)?;
    spawn_python_thread(py, &func, &fargs, kw.as_ref(), None)
}

/// Start a thread that calls `func(*args, **kwargs)` (stock's
/// `do_start_new_thread`); `handle`, if any, is told when the thread is done.
pub(crate) fn spawn_python_thread(
    py: Python<'_>,
    func: &Bound<'_, PyAny>,
    fargs: &Bound<'_, PyTuple>,
    kw: Option<&Bound<'_, PyDict>>,
    handle: Option<Arc<dyn ThreadWatch>>,
) -> PyResult<u64> {
    let tstate = cpython::tstate::prealloc(py)?;
    let func_for_diag = func.clone();
    let boot = Box::new(RawBoot {
        func: func.clone().unbind().into_ptr(),
        args: fargs.clone().unbind().into_ptr(),
        kwargs: kw.map_or(std::ptr::null_mut(), |k| k.clone().unbind().into_ptr()),
        tstate,
        handle: handle.and_then(|h| NonNull::new(Arc::into_raw(h).cast_mut())),
    });
    // Relaxed: informational counter (see `_count`).
    COUNT.fetch_add(1, Ordering::Relaxed);
    let arg = Box::into_raw(boot).cast::<std::ffi::c_void>();
    // SAFETY: `thread_start` takes ownership of `arg` and keeps no value with
    // a destructor alive across Python calls; on error it was not started.
    match unsafe { core_thread::spawn_raw(thread_start, arg) } {
        Ok(id) => {
            if rsthread_core::diag::global().flags() != 0 {
                // Known before this call returns (the new thread needs the
                // GIL we hold to start), so "every thread is blocked" never
                // misses a thread that is about to run.
                crate::diag::thread_spawned(py, id, &func_for_diag);
            }
            Ok(id)
        }
        Err(_) => {
            // Relaxed: an informational counter.
            COUNT.fetch_sub(1, Ordering::Relaxed);
            // SAFETY: the thread was not started, so `arg` is still ours.
            let boot = unsafe { Box::from_raw(arg.cast::<RawBoot>()) };
            // SAFETY: attached; these are the owned references and the
            // unused thread state made above (not current, never bound).
            unsafe {
                ffi::Py_DECREF(boot.func);
                ffi::Py_DECREF(boot.args);
                ffi::Py_XDECREF(boot.kwargs);
                cpython::tstate::discard(boot.tstate);
                if let Some(h) = boot.handle {
                    drop(Arc::from_raw(h.as_ptr().cast_const()));
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

/// Disarm the sentinel releaser in a thread-state dict, if there is one.
fn disarm_releaser(dict: &Bound<'_, PyDict>) -> PyResult<()> {
    if let Some(old) = dict.get_item(SENTINEL_KEY)? {
        if let Ok(old) = old.cast::<SentinelReleaser>() {
            // Relaxed: only touched with the GIL held (see `Drop`).
            old.get().armed.store(false, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// _set_sentinel() -> lock
///
/// Set a sentinel lock that will be released when the current thread
/// state is finalized (after it is untied from the interpreter).
///
/// This is a private API for the threading module.
#[pyfunction]
#[pyo3(text_signature = None)]
// 3.13+ has no `_set_sentinel` (thread handles replace it); kept compiled.
#[cfg_attr(Py_3_13, allow(dead_code))]
pub fn _set_sentinel(py: Python<'_>) -> PyResult<Py<PyLock>> {
    // Returned unlocked: `threading` acquires it itself; it is released at
    // thread-state destruction only if it is then locked.
    let lock = PyLock::new_unlocked();
    if rsthread_core::diag::global().flags() != 0 {
        crate::lock::diagnosed::sentinel_created(&lock);
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
    }
    // Every thread also gets a releaser in its thread-state dict: for a
    // thread we did not start, it is the only release; for one we did,
    // `thread_start` disarms it and releases after `PyThreadState_Clear`
    // (stock's order), so it fires only when another thread clears this
    // one's state: a daemon thread at interpreter finalization, whose
    // sentinel stock releases then too (a finalizer may join it).
    // SAFETY: attached; returns a borrowed dict (NULL only without a thread state).
    let d = unsafe { ffi::PyThreadState_GetDict() };
    if d.is_null() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "no thread state dict",
        ));
    }
    // SAFETY: `d` is a live dict borrowed from the thread state.
    let dict = unsafe { Bound::from_borrowed_ptr(py, d) }.cast_into::<PyDict>()?;
    disarm_releaser(&dict)?;
    let rel = SentinelReleaser {
        lock: lock.clone_ref(py),
        armed: true.into(),
    };
    dict.set_item(SENTINEL_KEY, Py::new(py, rel)?)?;
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
    #[cfg(Py_3_14)]
    if size != 0 {
        // 3.14+ checks one lower bound (the interpreter's own stack needs),
        // negative sizes included.
        if let Some(min) = stack_min(py) {
            if size < min as ffi::Py_ssize_t {
                return Err(PyValueError::new_err(format!(
                    "size must be at least {min} bytes"
                )));
            }
        }
    }
    if size < 0 {
        return Err(PyValueError::new_err("size must be 0 or a positive value"));
    }
    core_thread::set_stack_size(size as usize).map_err(errors::stack_size)
}

/// 3.14+: the smallest stack size stock accepts, read once from stock's own
/// refusal of a 1-byte size (it depends on the build's stack margins).
#[cfg(Py_3_14)]
fn stack_min(py: Python<'_>) -> Option<usize> {
    static MIN: pyo3::sync::PyOnceLock<Option<usize>> = pyo3::sync::PyOnceLock::new();
    *MIN.get_or_init(py, || {
        let stock = py.import("_thread").ok()?;
        if stock.hasattr("__file__").ok()? {
            return None; // ours, not the interpreter's
        }
        let e = stock.getattr("stack_size").ok()?.call1((1,)).err()?;
        let msg = e.value(py).str().ok()?.to_string();
        msg.strip_prefix("size must be at least ")?
            .strip_suffix(" bytes")?
            .parse()
            .ok()
    })
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

/// Replace the module's `get_ident` with [`get_ident_raw`].
pub(crate) fn install_fast_get_ident(m: &Bound<'_, pyo3::types::PyModule>) -> PyResult<()> {
    let py = m.py();
    // Leaked: the function object points at its PyMethodDef for its lifetime.
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"get_ident".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunction: get_ident_raw,
        },
        ml_flags: ffi::METH_NOARGS,
        // Stock's docstring is given by `stockdoc::apply`, last in module init.
        ml_doc: std::ptr::null(),
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

/// daemon_threads_allowed($module, /)
/// --
///
/// Return True if daemon threads are allowed in the current interpreter,
/// and False otherwise.
#[cfg(Py_3_12)]
#[pyfunction]
#[pyo3(text_signature = None)]
pub fn daemon_threads_allowed() -> bool {
    // Only the main interpreter imports this module (checked at import),
    // and it always allows daemon threads.
    true
}

/// _is_main_interpreter($module, /)
/// --
///
/// Return True if the current interpreter is the main Python interpreter.
#[cfg(Py_3_12)]
#[pyfunction]
#[pyo3(text_signature = None)]
pub fn _is_main_interpreter() -> bool {
    // See `daemon_threads_allowed`.
    true
}

/// Longest OS thread name, in bytes, without the terminating NUL (Linux).
#[cfg(Py_3_14)]
pub(crate) const NAME_MAXLEN: usize = 15;

/// set_name($module, /, name)
/// --
///
/// Set the name of the current thread.
#[cfg(Py_3_14)]
#[pyfunction]
#[pyo3(signature = (name), text_signature = None)]
pub fn set_name(py: Python<'_>, name: &Bound<'_, PyAny>) -> PyResult<()> {
    let name = name.cast::<pyo3::types::PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "set_name() argument 'name' must be str, not {}",
            name.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    // Like stock: encode with the filesystem encoding ("replace" errors);
    // the C string ends at the first NUL; cut to the limit in bytes (a
    // character cut in two reads back through `os.fsdecode` as escapes).
    let enc: String = py
        .import("sys")?
        .getattr("getfilesystemencoding")?
        .call0()?
        .extract()?;
    let bytes: Vec<u8> = name
        .call_method1("encode", (enc.as_str(), "replace"))?
        .extract()?;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let mut buf = bytes[..end.min(NAME_MAXLEN)].to_vec();
    buf.push(0);
    // SAFETY: `buf` is NUL-terminated and at most 16 bytes; the calling
    // thread's own handle.
    let rc = unsafe { libc::pthread_setname_np(libc::pthread_self(), buf.as_ptr().cast()) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc).into());
    }
    Ok(())
}

/// _get_name($module, /)
/// --
///
/// Get the name of the current thread.
#[cfg(Py_3_14)]
#[pyfunction]
#[pyo3(text_signature = None)]
pub fn _get_name(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let mut buf = [0u8; 64];
    // SAFETY: `buf` is writable for its length; the calling thread's handle.
    let rc = unsafe {
        libc::pthread_getname_np(libc::pthread_self(), buf.as_mut_ptr().cast(), buf.len())
    };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc).into());
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let b = pyo3::types::PyBytes::new(py, &buf[..n]);
    py.import("os")?.getattr("fsdecode")?.call1((b,))
}
