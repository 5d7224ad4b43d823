//! `rsthread._diag`: the Python-visible diagnostics functions (put in
//! `sys.modules` only, so `_thread` keeps exactly stock's attributes;
//! `rsthread.diagnostics` is the public API), and the fork handlers.
//! The functions that take a lock object are added by
//! `lock::diagnosed` (this module does not know the lock types).

use pyo3::exceptions::PyOSError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rsthread_core::diag::{self, acquire, DeadlockMode};
use rsthread_core::{ident, timeout::monotonic_ns};

use super::report::{
    chain_dict, inversion_dict, leak_dict, report_deadlock, snapshot_dict, stats_dict, thread_dict,
    wait_dict,
};

/// set_config(flags, raise_mode, report_timed)
#[pyfunction]
fn set_config(flags: u32, raise_mode: bool, report_timed: bool) {
    if flags != 0 {
        register_fork_handlers();
    }
    diag::global().set_deadlock_mode(if raise_mode {
        DeadlockMode::Raise
    } else {
        DeadlockMode::Warn
    });
    diag::global().set_report_timed(report_timed);
    diag::global().set_flags(flags);
}

/// The enabled flags.
#[pyfunction]
fn flags() -> u32 {
    diag::global().flags()
}

/// Register a thread (ident, native id, name).
#[pyfunction]
#[pyo3(signature = (ident, native_id, name=None))]
fn thread_started(ident: u64, native_id: u64, name: Option<String>) {
    diag::global().thread_started(ident, native_id, name);
}

/// Rename a thread.
#[pyfunction]
fn thread_named(ident: u64, name: &str) {
    diag::global().thread_named(ident, name);
}

/// Unregister a thread; returns the RLock leaks.
#[pyfunction]
fn thread_exited<'py>(py: Python<'py>, ident: u64) -> PyResult<Bound<'py, PyList>> {
    let v = diag::global()
        .thread_exited(ident)
        .iter()
        .map(|l| leak_dict(py, l))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, v)
}

/// Per-class statistics, most total wait first.
#[pyfunction]
fn stats(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let v = diag::global()
        .stats()
        .iter()
        .map(|c| stats_dict(py, c))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, v)
}

/// Zero the statistics.
#[pyfunction]
fn reset_stats() {
    diag::global().reset_stats();
}

/// Forget history (statistics, timeline, lock-order graph, reports).
#[pyfunction]
fn reset() {
    diag::global().reset();
}

/// Every registered thread: holds and wait.
#[pyfunction]
fn snapshot(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    snapshot_dict(py, &diag::global().snapshot())
}

/// Where each waiting thread's wait leads.
#[pyfunction]
fn wait_chains(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let now = monotonic_ns();
    let v = diag::global()
        .wait_chains()
        .iter()
        .map(|c| chain_dict(py, c, now))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, v)
}

/// Waits running for at least `threshold` seconds, longest first.
#[pyfunction]
fn longest_waits(py: Python<'_>, threshold: f64) -> PyResult<Bound<'_, PyList>> {
    let ns = (threshold.max(0.0) * 1e9) as u64;
    let v = diag::global()
        .longest_waits(ns)
        .iter()
        .map(|w| {
            let d = thread_dict(py, &w.thread)?;
            d.set_item("wait", wait_dict(py, &w.wait)?)?;
            Ok(d)
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, v)
}

/// Re-run the deadlock rules; returns a new deadlock (reported already) or None.
#[pyfunction]
fn detect_deadlock(py: Python<'_>, ident: u64) -> PyResult<bool> {
    match diag::global().detect_deadlock(ident) {
        Some(d) => {
            // The caller (the watchdog) is never in the cycle: under raise
            // mode the error is posted to the cycle's thread.
            if let Some(e) = acquire::deliver(d, ident, |d, raise| report_deadlock(py, d, raise)) {
                e.restore(py);
                // SAFETY: attached; prints and clears the error just set.
                unsafe { ffi::PyErr_WriteUnraisable(std::ptr::null_mut()) };
            }
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Report inversions when found (`True`) or keep them for `take_inversions`.
#[pyfunction]
fn set_immediate_inversions(on: bool) {
    diag::global().set_immediate_inversions(on);
}

/// The lock-order inversions kept so far, judged with the whole run's
/// evidence: `(to_report, [(suppressed, reason), ...])`, as dicts.
#[pyfunction]
fn take_inversions(py: Python<'_>) -> PyResult<(Bound<'_, PyList>, Bound<'_, PyList>)> {
    let v = diag::global().take_inversions();
    let reported = v
        .reported
        .iter()
        .map(|i| inversion_dict(py, i))
        .collect::<PyResult<Vec<_>>>()?;
    let suppressed = v
        .suppressed
        .iter()
        .map(|(i, why)| {
            let reason = match why {
                diag::Suppressed::Semaphore => {
                    "a lock class of the cycle behaves as a semaphore (released by another thread)"
                }
                diag::Suppressed::GateLock => {
                    "every edge was taken while the same gate lock was held"
                }
                diag::Suppressed::IdOrder => "every edge was taken in increasing id() order",
            };
            Ok((inversion_dict(py, i)?, reason))
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok((PyList::new(py, reported)?, PyList::new(py, suppressed)?))
}

/// Plain locks left held by exited threads.
#[pyfunction]
fn leaked_at_exit(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let v = diag::global()
        .leaked_at_exit()
        .iter()
        .map(|l| leak_dict(py, l))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, v)
}

/// Write the timeline as Chrome trace JSON to `path`.
#[pyfunction]
fn export_chrome_trace(py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
    py.detach(|| {
        let f = std::fs::File::create(&path)?;
        let mut w = std::io::BufWriter::new(f);
        diag::global().export_chrome_trace(&mut w)?;
        std::io::Write::flush(&mut w)
    })
    .map_err(|e| PyOSError::new_err(format!("cannot write trace to {}: {e}", path.display())))
}

/// Events dropped because the timeline was full.
#[pyfunction]
fn timeline_dropped() -> u64 {
    diag::global().timeline_dropped()
}

/// In a forked child: only the current thread survives.
#[pyfunction]
fn after_fork_child() {
    diag::after_fork_child(ident::current(), ident::native());
}

extern "C" fn atfork_prepare() {
    diag::before_fork();
}

extern "C" fn atfork_parent() {
    diag::after_fork_parent();
}

extern "C" fn atfork_child() {
    diag::after_fork_child(ident::current(), ident::native());
}

/// Register the fork handlers once (when diagnostics are first enabled):
/// `fork()` then takes the diagnostics locks first (an export or a deadlock
/// check running in another thread finishes; none is left held in the
/// child) and the child starts from a consistent state, before any
/// Python-level `after_in_child` hook (`threading._after_fork`
/// re-initialises locks, which reaches diagnostics) runs.
fn register_fork_handlers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: the three handlers are plain `extern "C"` functions that
        // live for the whole process; pthread_atfork only stores them.
        let rc = unsafe {
            libc::pthread_atfork(
                Some(atfork_prepare),
                Some(atfork_parent),
                Some(atfork_child),
            )
        };
        if rc != 0 {
            eprintln!("rsthread: diagnostics: pthread_atfork failed ({rc})");
        }
    });
}

/// The module `rsthread._diag`, registered in `sys.modules` only.
pub(crate) fn register(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let m = PyModule::new(py, "rsthread._diag")?;
    m.add("DEADLOCK", diag::DEADLOCK)?;
    m.add("LOCK_ORDER", diag::LOCK_ORDER)?;
    m.add("PROFILE", diag::PROFILE)?;
    m.add("TRACE", diag::TRACE)?;
    m.add("HANG", diag::HANG)?;
    m.add_function(wrap_pyfunction!(set_config, &m)?)?;
    m.add_function(wrap_pyfunction!(flags, &m)?)?;
    m.add_function(wrap_pyfunction!(thread_started, &m)?)?;
    m.add_function(wrap_pyfunction!(thread_named, &m)?)?;
    m.add_function(wrap_pyfunction!(thread_exited, &m)?)?;
    m.add_function(wrap_pyfunction!(stats, &m)?)?;
    m.add_function(wrap_pyfunction!(reset_stats, &m)?)?;
    m.add_function(wrap_pyfunction!(reset, &m)?)?;
    m.add_function(wrap_pyfunction!(snapshot, &m)?)?;
    m.add_function(wrap_pyfunction!(wait_chains, &m)?)?;
    m.add_function(wrap_pyfunction!(longest_waits, &m)?)?;
    m.add_function(wrap_pyfunction!(detect_deadlock, &m)?)?;
    m.add_function(wrap_pyfunction!(leaked_at_exit, &m)?)?;
    m.add_function(wrap_pyfunction!(set_immediate_inversions, &m)?)?;
    m.add_function(wrap_pyfunction!(take_inversions, &m)?)?;
    m.add_function(wrap_pyfunction!(export_chrome_trace, &m)?)?;
    m.add_function(wrap_pyfunction!(timeline_dropped, &m)?)?;
    m.add_function(wrap_pyfunction!(after_fork_child, &m)?)?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("rsthread._diag", &m)?;
    Ok(m)
}
