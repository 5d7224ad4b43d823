//! The diagnostics side of the binding, apart from the lock paths (those are
//! `lock::diagnosed`, which calls in here; nothing here knows the
//! lock types):
//!
//! * [`site`]: acquire and creation sites from the Python frames, with the
//!   per-thread cache of [`site_cache`];
//! * [`report`]: the dicts handed to Python and the reports
//!   (`rsthread.diagnostics._report_*`, formatted in Python with the GIL
//!   held, so they can include every thread's traceback);
//! * [`module`]: the private module `rsthread._diag` (in `sys.modules` only,
//!   so `_thread` keeps exactly stock's attributes; `rsthread.diagnostics` is
//!   the public API) and the fork handlers;
//! * here: the thread start and end hooks the `thread` module calls.
//!
//! Everything here acts on the process-wide `rsthread_core::diag::global()`.

mod module;
mod report;
mod site;
mod site_cache;

pub(crate) use module::register;
pub(crate) use report::{edge_stack, report_deadlock, report_inversion};
pub(crate) use site::{caller_site, caller_site_in};

use pyo3::prelude::*;
use rsthread_core::{diag, ident};

use report::report_leaks;

// ----- threads ----------------------------------------------------------

/// `threading.Thread`'s name when `func` is a Thread's bound `_bootstrap`.
fn thread_name_of(func: &Bound<'_, PyAny>) -> Option<String> {
    func.getattr("__self__")
        .and_then(|o| o.getattr("_name"))
        .ok()
        .and_then(|n| n.extract::<String>().ok())
}

/// `start_new_thread` just started thread `ident` (diagnostics on): make it
/// known at once (implicitly: `thread_begin` completes the record).
pub(crate) fn thread_spawned(py: Python<'_>, ident: u64, func: &Bound<'_, PyAny>) {
    let _ = py;
    let name = thread_name_of(func).unwrap_or_else(|| format!("Thread {ident:#x}"));
    diag::global().thread_named(ident, &name);
}

/// A thread started by `start_new_thread` begins (diagnostics on).
pub(crate) fn thread_begin(py: Python<'_>, func: &Bound<'_, PyAny>) {
    let _ = py;
    diag::global().thread_started(ident::current(), ident::native(), thread_name_of(func));
}

/// That thread ends: report RLocks it still owns.
pub(crate) fn thread_end(py: Python<'_>) {
    let leaks = diag::global().thread_exited(ident::current());
    report_leaks(py, &leaks);
}
