//! Thread states for threads started by `_thread`.
//!
//! 3.12 and later: public API only. The new thread makes its own state with
//! `PyThreadState_New` (which binds it to the calling OS thread) and takes
//! the GIL with it; at the end `PyThreadState_Clear` +
//! `PyThreadState_DeleteCurrent`.
//!
//! 3.11: like stock, the parent preallocates the state
//! (`_PyThreadState_Prealloc`, so that a failure is reported to the caller)
//! and the child writes its thread ids into it and binds it
//! (`_PyThreadState_SetCurrent`). That needs [`Ts311Head`] to match the
//! running interpreter, which [`init`] checks on the importing thread's own
//! state; otherwise the 3.11 build also takes the public path.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;

#[cfg(not(Py_3_12))]
mod py311 {
    use std::os::raw::{c_int, c_ulong, c_void};

    extern "C" {
        pub fn _PyThreadState_Prealloc(
            interp: *mut pyo3::ffi::PyInterpreterState,
        ) -> *mut pyo3::ffi::PyThreadState;
        pub fn _PyThreadState_SetCurrent(tstate: *mut pyo3::ffi::PyThreadState);
    }

    /// The head of CPython 3.11's `struct _ts` (`Include/cpython/pystate.h`)
    /// up to the two fields that stock `thread_run` sets in the new thread
    /// before binding a preallocated thread state to it.
    #[repr(C)]
    pub struct Ts311Head {
        prev: *mut c_void,
        next: *mut c_void,
        pub interp: *mut c_void,
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
        pub thread_id: c_ulong,
        pub native_thread_id: c_ulong,
    }
    // The offsets stock `thread_run` writes (checked in libpython 3.11.7's code).
    const _: () = assert!(std::mem::offset_of!(Ts311Head, thread_id) == 0x98);
    const _: () = assert!(std::mem::offset_of!(Ts311Head, native_thread_id) == 0xa0);
}

/// Whether the parent preallocates the new thread's state (3.11 with a
/// matching layout only).
static PREALLOC: AtomicBool = AtomicBool::new(false);

/// Module init: on 3.11, check the thread-state head against the importing
/// thread's own state (version first, then fields the public API also gives)
/// before enabling preallocation.
pub(crate) fn init(_py: Python<'_>) {
    #[cfg(not(Py_3_12))]
    {
        use rsthread_core::ident;
        // SAFETY: a constant exported by libpython since 3.11.
        let v311 = unsafe { ffi::Py_Version } >> 16 == 0x030b;
        // SAFETY: attached, so the current thread state is valid; on 3.11
        // (checked first) the head is in bounds; only plain fields are read,
        // `interp` (offset 16 in every CPython 3.x) first.
        let ok = v311
            && unsafe {
                let ts = ffi::PyThreadState_Get().cast::<py311::Ts311Head>();
                (*ts).interp == ffi::PyInterpreterState_Get().cast()
                    && (*ts).thread_id as u64 == ident::current()
                    && (*ts).native_thread_id as u64 == ident::native()
            };
        // Relaxed: written once at import, before any thread is started.
        PREALLOC.store(ok, Ordering::Relaxed);
    }
}

/// In the parent (attached): the new thread's preallocated state, or NULL
/// when the child makes its own (3.12+, or the 3.11 probe failed).
pub(crate) fn prealloc(py: Python<'_>) -> PyResult<*mut ffi::PyThreadState> {
    // Relaxed: see `init`.
    if !PREALLOC.load(Ordering::Relaxed) {
        return Ok(std::ptr::null_mut());
    }
    #[cfg(not(Py_3_12))]
    {
        // SAFETY: attached; the main interpreter is the only one we run in.
        let ts = unsafe { py311::_PyThreadState_Prealloc(ffi::PyInterpreterState_Main()) };
        if ts.is_null() {
            return Err(
                PyErr::take(py).unwrap_or_else(|| pyo3::exceptions::PyMemoryError::new_err(()))
            );
        }
        Ok(ts)
    }
    #[cfg(Py_3_12)]
    {
        let _ = py;
        Ok(std::ptr::null_mut())
    }
}

/// In the new thread (not attached): the thread state to take the GIL with,
/// bound to this OS thread. `pre` is [`prealloc`]'s result.
///
/// # Safety
/// Called once per thread, in the new thread, with no thread state bound;
/// `pre` NULL or an unused preallocated state.
pub(crate) unsafe fn bind_new(pre: *mut ffi::PyThreadState) -> *mut ffi::PyThreadState {
    if pre.is_null() {
        // SAFETY: per the contract; the main interpreter is static memory
        // (3.12+) and its thread list is guarded by the runtime's lock. A
        // thread that makes its state after finalization began does not run
        // Python with it: 3.12 and 3.13 stop every thread at the GIL once the
        // runtime finalizes; on 3.14+ `thread_start` looks again after this
        // and never takes the GIL then.
        return unsafe { ffi::PyThreadState_New(ffi::PyInterpreterState_Main()) };
    }
    #[cfg(not(Py_3_12))]
    // SAFETY: `pre` was made by `_PyThreadState_Prealloc` and the layout was
    // validated in `init` (PREALLOC is only set then).
    unsafe {
        use rsthread_core::ident;
        let h = pre.cast::<py311::Ts311Head>();
        (*h).thread_id = ident::current() as std::os::raw::c_ulong;
        (*h).native_thread_id = ident::native() as std::os::raw::c_ulong;
        py311::_PyThreadState_SetCurrent(pre);
    }
    pre
}

/// Free a preallocated state that was never used (thread creation failed).
///
/// # Safety
/// Attached; `pre` NULL or from [`prealloc`], never bound.
pub(crate) unsafe fn discard(pre: *mut ffi::PyThreadState) {
    if !pre.is_null() {
        // SAFETY: per the contract.
        unsafe {
            ffi::PyThreadState_Clear(pre);
            ffi::PyThreadState_Delete(pre);
        }
    }
}

/// Delete the calling thread's (cleared) state and release the GIL.
///
/// # Safety
/// Attached with `ts`, the current state, already cleared.
pub(crate) unsafe fn delete_current(ts: *mut ffi::PyThreadState) {
    let _ = ts;
    // SAFETY: per the contract.
    unsafe { ffi::PyThreadState_DeleteCurrent() };
}
