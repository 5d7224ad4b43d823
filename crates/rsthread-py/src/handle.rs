//! CPython 3.13+'s thread handles: `_thread._ThreadHandle`,
//! `start_joinable_thread`, `_make_thread_handle`, `_shutdown` and
//! `_get_main_thread_ident` (what 3.13's `threading` joins threads with,
//! replacing 3.12's `_set_sentinel`).
//!
//! A handle's state is shared with the thread it describes ([`Shared`],
//! reference-counted, usable without the GIL). The thread signals "done"
//! after its thread state was deleted, the last thing stock's `thread_run`
//! does too, so that `join()` returns only when thread-local values are gone.
//! Threads are detached: `join()` waits for that signal, not `pthread_join`.
//!
//! Built on every version, used from 3.13. `thread.rs` starts the thread
//! and tells the handle's [`Shared`] through [`ThreadWatch`] (it does not
//! know this module).
#![cfg_attr(not(Py_3_13), allow(dead_code))]

// std atomics, not the core's `sync` shim: the binding is never built under loom.
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rsthread_core::{ident, RawLock};

use crate::args::{seconds_to_ns, UNSET_TIMEOUT};
use crate::thread::ThreadWatch;
use crate::wait::acquire_timed;

const NOT_STARTED: u8 = 0;
const STARTING: u8 = 1;
const RUNNING: u8 = 2;
const DONE: u8 = 3;

/// What a handle and its thread share.
pub(crate) struct Shared {
    /// The thread's `get_ident()` (0 until started).
    ident: AtomicU64,
    state: AtomicU8,
    /// Held from start until the thread is done; `join` waits on it.
    running: RawLock,
    /// Process the thread was started in. After `fork` only the forking
    /// thread exists in the child: a handle of another thread of the parent
    /// reads as done there (stock marks them done in `PyOS_AfterFork_Child`).
    pid: std::sync::atomic::AtomicU32,
    /// With diagnostics on: a lock the thread holds while it runs, so that a
    /// `join()` shows in the wait-for graph as waiting for the thread (what
    /// 3.12's `_set_sentinel` lock gives the diagnostics).
    sentinel: std::sync::OnceLock<Py<crate::lock::PyLock>>,
}

impl Shared {
    fn new(state: u8, ident: u64) -> Arc<Shared> {
        let s = Shared {
            ident: AtomicU64::new(ident),
            state: AtomicU8::new(state),
            running: RawLock::new(),
            pid: std::sync::atomic::AtomicU32::new(std::process::id()),
            sentinel: std::sync::OnceLock::new(),
        };
        if state == RUNNING {
            s.running.try_acquire();
        }
        Arc::new(s)
    }

    /// Mark done and wake joiners (idempotent).
    pub(crate) fn set_done(&self) {
        // AcqRel: the winner of the swap releases `running` exactly once; the
        // thread's effects before this point are published to joiners by
        // the lock release.
        if self.state.swap(DONE, Ordering::AcqRel) != DONE {
            let _ = self.running.release();
        }
    }

    fn state(&self) -> u8 {
        // Acquire: pairs with `set_done`'s release (a joiner that sees DONE
        // sees the thread's writes).
        self.state.load(Ordering::Acquire)
    }

    /// A thread of the parent process, seen in a child after `fork`: every
    /// thread of an earlier process but the one that forked (the child's
    /// main thread now, whichever thread asks).
    fn orphaned(&self) -> bool {
        // Relaxed: written before the thread starts (with the GIL held).
        self.pid.load(Ordering::Relaxed) != std::process::id()
            && self.ident() != crate::thread::main_thread_ident()
    }

    /// `is_done()`: the thread finished, or is gone with a `fork`.
    fn done(&self) -> bool {
        let st = self.state();
        st == DONE || (st != NOT_STARTED && self.orphaned())
    }

    fn ident(&self) -> u64 {
        // Relaxed: written once, before the handle's thread runs Python code
        // and before `start_joinable_thread` returns (both with the GIL).
        self.ident.load(Ordering::Relaxed)
    }
}

/// Non-daemon threads `_shutdown()` waits for.
static SHUTDOWN: Mutex<Vec<Arc<Shared>>> = Mutex::new(Vec::new());

fn shutdown_list() -> std::sync::MutexGuard<'static, Vec<Arc<Shared>>> {
    // Poisoning needs a panic while the guard is held; none of the short
    // sections below can panic, so a poisoned list is still consistent.
    SHUTDOWN.lock().unwrap_or_else(|e| e.into_inner())
}

impl ThreadWatch for Shared {
    /// After the thread state was deleted (no GIL): done, and no longer
    /// waited for by `_shutdown`.
    fn finished(self: Arc<Self>) {
        if let Some(l) = self.sentinel.get() {
            crate::lock::diagnosed::sentinel_release(l.get());
            let _ = l.get().raw.release();
        }
        shutdown_list().retain(|s| !Arc::ptr_eq(s, &self));
        self.set_done();
    }

    fn started(&self) {
        // Relaxed: the parent stores the same value; see `Shared::ident`.
        self.ident.store(ident::current(), Ordering::Relaxed);
    }

    /// Diagnostics on: take the sentinel, so that the diagnostics see this
    /// thread as its holder.
    fn attached(&self, py: Python<'_>) {
        if let Some(l) = self.sentinel.get() {
            let _ = l.get().acquire_ns(py, 0);
        }
    }
}

/// Handle for a thread of execution.
#[pyclass(name = "_ThreadHandle", module = "_thread", frozen)]
pub struct PyThreadHandle {
    pub(crate) shared: Arc<Shared>,
}

#[pymethods]
impl PyThreadHandle {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs), text_signature = None)]
    fn new(
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyThreadHandle {
        PyThreadHandle {
            shared: Shared::new(NOT_STARTED, 0),
        }
    }

    #[getter]
    fn ident(&self) -> u64 {
        self.shared.ident()
    }

    #[pyo3(signature = (*args), text_signature = None)]
    fn join(&self, py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<()> {
        let mut timeout: Option<Bound<'_, PyAny>> = None;
        match args.len() {
            0 => {}
            1 => timeout = Some(args.get_item(0)?),
            n => {
                return Err(PyTypeError::new_err(format!(
                    "join expected at most 1 argument, got {n}"
                )))
            }
        }
        let mut ns = match timeout {
            Some(t) if !t.is_none() => seconds_to_ns(&t)?,
            _ => UNSET_TIMEOUT,
        };
        let sh = &self.shared;
        let state = sh.state();
        if state == NOT_STARTED {
            return Err(PyRuntimeError::new_err("thread not started"));
        }
        if state != DONE && sh.ident() == ident::current() {
            return Err(PyRuntimeError::new_err("Cannot join current thread"));
        }
        // 3.14+: once the interpreter finalizes, other threads can no longer
        // run Python code to finish, so a join would wait forever: refused.
        #[cfg(Py_3_14)]
        if state != DONE && crate::cpython::is_finalizing() {
            return Err(crate::cpython::finalization_error(
                py,
                "cannot join thread at interpreter shutdown",
            ));
        }
        if sh.done() {
            return Ok(());
        }
        if ns < 0 {
            ns = UNSET_TIMEOUT;
        }
        if let Some(l) = sh.sentinel.get() {
            // Diagnostics on: wait where the wait-for graph sees it (a
            // deadlock through `join` is reported like any other).
            if l.get().acquire_ns(py, ns)? {
                crate::lock::diagnosed::lock_release(l.get())?;
            } else {
                return Ok(());
            }
        }
        let got = if ns == 0 {
            sh.running.try_acquire()
        } else {
            acquire_timed(py, ns, |d| sh.running.acquire(d))?
        };
        if got {
            // Let the next joiner through too.
            let _ = sh.running.release();
        }
        Ok(())
    }

    #[pyo3(text_signature = None)]
    fn is_done(&self) -> bool {
        self.shared.done()
    }

    #[pyo3(text_signature = None)]
    fn _set_done(&self) -> PyResult<()> {
        if self.shared.state() == NOT_STARTED {
            return Err(PyRuntimeError::new_err("thread not started"));
        }
        self.shared.set_done();
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!(
            "<_thread._ThreadHandle object: ident={}>",
            self.shared.ident()
        )
    }
}

/// _make_thread_handle($module, ident, /)
/// --
///
/// Internal only. Make a thread handle for threads not spawned
/// by the _thread or threading module.
#[pyfunction]
#[pyo3(signature = (ident, /), text_signature = None)]
pub fn _make_thread_handle(ident: u64) -> PyThreadHandle {
    PyThreadHandle {
        shared: Shared::new(RUNNING, ident),
    }
}

/// _get_main_thread_ident($module, /)
/// --
///
/// Internal only. Return a non-zero integer that uniquely identifies the main thread
/// of the main interpreter.
#[pyfunction]
#[pyo3(text_signature = None)]
pub fn _get_main_thread_ident() -> u64 {
    crate::thread::main_thread_ident()
}

/// _shutdown($module, /)
/// --
///
/// Wait for all non-daemon threads (other than the calling thread) to stop.
#[pyfunction]
#[pyo3(text_signature = None)]
pub fn _shutdown(py: Python<'_>) -> PyResult<()> {
    let me = ident::current();
    let pid = std::process::id();
    loop {
        let next = shutdown_list()
            .iter()
            .find(|s| s.pid.load(Ordering::Relaxed) == pid && s.ident() != me && !s.done())
            .cloned();
        let Some(s) = next else { break };
        if acquire_timed(py, UNSET_TIMEOUT, |d| s.running.acquire(d))? {
            let _ = s.running.release();
        }
        shutdown_list().retain(|x| !Arc::ptr_eq(x, &s));
    }
    Ok(())
}

/// `rsthread._diag.forget_at_shutdown(ident)`: take the thread `ident` off
/// the list `_shutdown()` waits for, as if it had been started as a daemon
/// (the pytest plugin leaves a thread stuck after a hang or deadlock behind
/// this way; 3.13+'s `threading` has no other handle on it). True if it was
/// on the list.
#[pyfunction]
pub fn forget_at_shutdown(ident: u64) -> bool {
    let mut list = shutdown_list();
    let before = list.len();
    list.retain(|s| s.ident() != ident);
    list.len() != before
}

/// start_joinable_thread($module, /, function, handle=None, daemon=True)
/// --
///
/// *For internal use only*: start a new thread.
///
/// Like start_new_thread(), this starts a new thread calling the given function.
/// Unlike start_new_thread(), this returns a handle object with methods to join
/// or detach the given thread.
/// This function is not for third-party code, please use the
/// `threading` module instead. During finalization the daemon parameter is ignored.
#[pyfunction]
#[pyo3(signature = (function, handle=None, daemon=None), text_signature = None)]
pub fn start_joinable_thread<'py>(
    py: Python<'py>,
    function: &Bound<'py, PyAny>,
    handle: Option<&Bound<'py, PyAny>>,
    daemon: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let daemon = match daemon {
        Some(d) => d.is_truthy()?,
        None => true,
    };
    let none = py.None().into_bound(py);
    let handle_obj = handle.unwrap_or(&none);
    // SAFETY: attached; "OiO" takes an object, a C int and an object, all alive.
    if unsafe {
        crate::capi::PySys_Audit(
            c"_thread.start_joinable_thread".as_ptr(),
            c"OiO".as_ptr(),
            function.as_ptr(),
            std::os::raw::c_int::from(daemon),
            handle_obj.as_ptr(),
        )
    } < 0
    {
        return Err(PyErr::fetch(py));
    }
    if !function.is_callable() {
        return Err(PyTypeError::new_err("thread function must be callable"));
    }
    let handle: Bound<'py, PyThreadHandle> = if handle_obj.is_none() {
        Bound::new(py, PyThreadHandle::new(&PyTuple::empty(py), None))?
    } else {
        handle_obj
            .cast::<PyThreadHandle>()
            .map_err(|_| PyTypeError::new_err("'handle' must be a _ThreadHandle"))?
            .clone()
    };
    crate::cpython::check_not_finalizing(py)?;
    let sh = handle.get().shared.clone();
    // AcqRel: claims the handle against a concurrent start (with the GIL
    // released elsewhere, another thread may try the same handle).
    if sh
        .state
        .compare_exchange(NOT_STARTED, STARTING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(PyRuntimeError::new_err("thread already started"));
    }
    sh.running.try_acquire();
    if rsthread_core::diag::global().flags() != 0 && sh.sentinel.get().is_none() {
        let l = crate::lock::PyLock::new_unlocked();
        // Released by `finished`, after the thread state is gone (no GIL).
        l.outside.forever();
        crate::lock::diagnosed::sentinel_created(&l);
        let _ = sh.sentinel.set(Py::new(py, l)?);
    }
    // Relaxed: published to the new thread by its creation.
    sh.pid.store(std::process::id(), Ordering::Relaxed);
    if !daemon {
        shutdown_list().push(sh.clone());
    }
    let empty = PyTuple::empty(py);
    let watch: Arc<dyn ThreadWatch> = sh.clone();
    match crate::thread::spawn_python_thread(py, function, &empty, None, Some(watch)) {
        Ok(id) => {
            // Relaxed: see `Shared::ident`.
            sh.ident.store(id, Ordering::Relaxed);
            // Release: pairs with `state()`'s acquire.
            let _ =
                sh.state
                    .compare_exchange(STARTING, RUNNING, Ordering::Release, Ordering::Relaxed);
            Ok(handle.into_any())
        }
        Err(e) => {
            shutdown_list().retain(|s| !Arc::ptr_eq(s, &sh));
            let _ = sh.running.release();
            // Release: back to "not started" (stock leaves a failed handle
            // startable again).
            sh.state.store(NOT_STARTED, Ordering::Release);
            Err(e)
        }
    }
}
