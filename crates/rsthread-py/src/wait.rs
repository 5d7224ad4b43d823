//! The one interruptible, GIL-releasing wait shared by `lock` and `RLock`
//! (CPython's `acquire_timed`).
//!
//! 1. Try without releasing the GIL (the caller already did).
//! 2. Block with the GIL released, against an absolute deadline.
//! 3. If a signal interrupted the wait, re-take the GIL and run the handlers
//!    (`Py_MakePendingCalls`); if one raised, propagate it; otherwise go on
//!    waiting for the time that is left.
//!
//! In the main thread (the only one that runs Python signal handlers) the
//! sleep is cut into slices of at most [`MAIN_SLICE_NS`], so that a signal
//! that lands just before the thread goes to sleep (or is delivered to
//! another thread) is still handled promptly.

use pyo3::ffi;
use pyo3::prelude::*;
use rsthread_core::{Acquire, Deadline};

use crate::args::UNSET_TIMEOUT;

/// Longest uninterrupted sleep of the main thread.
pub const MAIN_SLICE_NS: u64 = 50_000_000;

/// Wait for `block` to succeed within `timeout_ns` (`UNSET_TIMEOUT`: forever;
/// must not be 0: the caller handles "try once"). Returns `Ok(false)` on
/// timeout and `Err` if a signal handler raised.
pub fn acquire_timed<F>(py: Python<'_>, timeout_ns: i64, block: F) -> PyResult<bool>
where
    F: Fn(Option<Deadline>) -> Acquire + Sync,
{
    acquire_timed_with(py, timeout_ns, block, make_pending_calls)
}

/// Run signal handlers and pending calls (attached); `Err` if one raised.
pub fn make_pending_calls(py: Python<'_>) -> PyResult<()> {
    // SAFETY: attached (we hold `py`); runs signal handlers and pending
    // calls, returning -1 with an exception set if one raised.
    if unsafe { ffi::Py_MakePendingCalls() } < 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(())
}

/// [`acquire_timed`] with `pending` run instead of [`make_pending_calls`]
/// whenever a sleep ends without the lock (the diagnostics path wraps it to
/// keep its wait record right when a signal handler takes locks).
#[inline]
pub fn acquire_timed_with<F, P>(
    py: Python<'_>,
    timeout_ns: i64,
    block: F,
    mut pending: P,
) -> PyResult<bool>
where
    F: Fn(Option<Deadline>) -> Acquire + Sync,
    P: FnMut(Python<'_>) -> PyResult<()>,
{
    // 3.15+: once the interpreter finalizes, the thread holding the lock can
    // never run again to release it, so a wait is refused, as stock does.
    #[cfg(Py_3_15)]
    if crate::cpython::is_finalizing() {
        return Err(crate::cpython::finalization_error(
            py,
            "cannot acquire lock at interpreter finalization",
        ));
    }
    let deadline = if timeout_ns == UNSET_TIMEOUT {
        None
    } else {
        Some(Deadline::after_ns(timeout_ns as u64))
    };
    // CPython's own test for the thread that runs signal handlers; no system
    // call (the time between taking the decision to block and releasing the
    // GIL is what a thread we just started waits for).
    let main = crate::cpython::is_main_thread(py);
    loop {
        let slice = if main {
            let s = Deadline::after_ns(MAIN_SLICE_NS);
            Some(deadline.map_or(s, |d| d.min(s)))
        } else {
            deadline
        };
        let r = py.detach(|| block(slice));
        match r {
            Acquire::Acquired => return Ok(true),
            Acquire::TimedOut if slice == deadline => return Ok(false),
            // A main-thread slice ended, or a signal interrupted the wait.
            Acquire::TimedOut | Acquire::Interrupted => {
                pending(py)?;
                if let Some(d) = deadline {
                    if d.passed() {
                        return Ok(false);
                    }
                }
            }
        }
    }
}
