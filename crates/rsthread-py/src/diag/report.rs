//! Reports and the data handed to Python: the dicts built from the core's
//! report types, and the calls into `rsthread.diagnostics._report_*`, which
//! format reports in Python with the GIL held (so they can include every
//! thread's traceback).

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList};
use rsthread_core::diag::{
    self, ChainEnd, ClassStats, CycleThread, Deadlock, DeadlockRule, HeldLock, Leak, LockClass,
    LockKind, LockRef, OrderInversion, Snapshot, ThreadRef, WaitChain, WaitState,
};

static REPORTER: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// Call `rsthread.diagnostics.<name>(arg)`.
fn call_reporter<'py>(
    py: Python<'py>,
    name: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let m =
        REPORTER.get_or_try_init(py, || py.import("rsthread.diagnostics").map(Bound::unbind))?;
    m.bind(py).getattr(name)?.call1(args)
}

pub(crate) fn report_inversion(py: Python<'_>, inv: &OrderInversion) {
    let r = inversion_dict(py, inv).and_then(|d| call_reporter(py, "_report_inversion", (d,)));
    if let Err(e) = r {
        eprintln!("rsthread: lock-order inversion (report failed: {e})");
    }
}

/// Report a deadlock; under raise mode return the `DeadlockError` to raise.
pub(crate) fn report_deadlock(py: Python<'_>, d: &Deadlock, raise: bool) -> Option<PyErr> {
    let r = deadlock_dict(py, d).and_then(|v| call_reporter(py, "_report_deadlock", (v, raise)));
    match r {
        Ok(v) if raise && !v.is_none() => Some(PyErr::from_value(v)),
        Ok(_) => None,
        Err(e) => {
            eprintln!("rsthread: deadlock detected (report failed: {e}): {d:?}");
            raise.then(|| PyRuntimeError::new_err("deadlock detected"))
        }
    }
}

pub(crate) fn report_leaks(py: Python<'_>, leaks: &[Leak]) {
    if leaks.is_empty() {
        return;
    }
    let r = leaks
        .iter()
        .map(|l| leak_dict(py, l))
        .collect::<PyResult<Vec<_>>>()
        .and_then(|v| call_reporter(py, "_report_leaks", (v,)));
    if let Err(e) = r {
        eprintln!("rsthread: thread exited holding RLocks (report failed: {e})");
    }
}

/// The caller's Python stack, formatted (`rsthread.diagnostics._stack_here`),
/// for the lock-order edges an acquire may record; `None` if that failed.
pub(crate) fn edge_stack(py: Python<'_>) -> Option<String> {
    call_reporter(py, "_stack_here", ())
        .and_then(|v| v.extract::<String>())
        .ok()
}

// ----- data for Python --------------------------------------------------

fn ns_s(ns: u64) -> f64 {
    ns as f64 * 1e-9
}

fn class_name(c: LockClass) -> String {
    match c {
        LockClass::Site(s) => diag::site_name(s),
        LockClass::Object(id) => format!("<lock #{id} of unknown origin>"),
    }
}

fn kind_name(k: LockKind) -> &'static str {
    match k {
        LockKind::Lock => "Lock",
        LockKind::RLock => "RLock",
    }
}

pub(crate) fn thread_dict<'py>(py: Python<'py>, t: &ThreadRef) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("ident", t.ident)?;
    d.set_item("native_id", t.native)?;
    d.set_item("name", t.name.as_deref())?;
    Ok(d)
}

fn lock_dict<'py>(py: Python<'py>, l: &LockRef) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", l.id)?;
    d.set_item("kind", kind_name(l.kind))?;
    d.set_item("site", diag::site_name(l.site))?;
    d.set_item("class", class_name(l.class()))?;
    Ok(d)
}

fn held_list<'py>(py: Python<'py>, held: &[HeldLock], now: u64) -> PyResult<Bound<'py, PyList>> {
    let v = held
        .iter()
        .map(|h| {
            let d = PyDict::new(py);
            d.set_item("lock", lock_dict(py, &h.lock)?)?;
            d.set_item("acquire_site", diag::site_name(h.acquire_site))?;
            // since 0: not timed (only profile and the hang watchdog time holds).
            d.set_item(
                "held_for",
                (h.since_ns != 0).then(|| ns_s(now.saturating_sub(h.since_ns))),
            )?;
            d.set_item("since_ns", h.since_ns)?;
            d.set_item("depth", h.depth)?;
            Ok(d)
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, v)
}

fn cycle_list<'py>(py: Python<'py>, c: &[CycleThread], now: u64) -> PyResult<Bound<'py, PyList>> {
    let v = c
        .iter()
        .map(|t| {
            let d = thread_dict(py, &t.thread)?;
            d.set_item("waits_for", lock_dict(py, &t.waits_for)?)?;
            d.set_item("waited", ns_s(now.saturating_sub(t.wait_since_ns)))?;
            d.set_item("timed", t.timed)?;
            d.set_item("held", held_list(py, &t.held, now)?)?;
            Ok(d)
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, v)
}

fn deadlock_dict<'py>(py: Python<'py>, d: &Deadlock) -> PyResult<Bound<'py, PyDict>> {
    let o = PyDict::new(py);
    o.set_item("detected_by", d.detected_by)?;
    o.set_item(
        "rule",
        match d.rule {
            DeadlockRule::Definite => "definite",
            DeadlockRule::AllBlocked => "all-blocked",
        },
    )?;
    o.set_item("threads", cycle_list(py, &d.threads, d.at_ns)?)?;
    let others = d
        .other_cycles
        .iter()
        .map(|c| cycle_list(py, c, d.at_ns))
        .collect::<PyResult<Vec<_>>>()?;
    o.set_item("other_cycles", PyList::new(py, others)?)?;
    Ok(o)
}

pub(crate) fn inversion_dict<'py>(
    py: Python<'py>,
    inv: &OrderInversion,
) -> PyResult<Bound<'py, PyDict>> {
    let o = PyDict::new(py);
    o.set_item("thread", inv.thread)?;
    o.set_item("same_class", inv.same_class)?;
    let edges = inv
        .edges
        .iter()
        .map(|e| {
            let d = PyDict::new(py);
            d.set_item("from", class_name(e.from))?;
            d.set_item("to", class_name(e.to))?;
            d.set_item("from_lock", e.from_lock)?;
            d.set_item("to_lock", e.to_lock)?;
            d.set_item("held_site", diag::site_name(e.held_site))?;
            d.set_item("acquire_site", diag::site_name(e.acquire_site))?;
            d.set_item("thread", thread_dict(py, &e.thread)?)?;
            d.set_item("stack", e.stack.as_deref())?;
            Ok(d)
        })
        .collect::<PyResult<Vec<_>>>()?;
    o.set_item("edges", PyList::new(py, edges)?)?;
    Ok(o)
}

pub(crate) fn leak_dict<'py>(py: Python<'py>, l: &Leak) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("thread", thread_dict(py, &l.thread)?)?;
    d.set_item("lock", lock_dict(py, &l.lock)?)?;
    d.set_item("acquire_site", diag::site_name(l.acquire_site))?;
    d.set_item(
        "held_for",
        (l.since_ns != 0).then(|| ns_s(l.exited_ns.saturating_sub(l.since_ns))),
    )?;
    d.set_item("depth", l.depth)?;
    Ok(d)
}

pub(crate) fn wait_dict<'py>(py: Python<'py>, w: &WaitState) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("lock", lock_dict(py, &w.lock)?)?;
    d.set_item(
        "holder",
        w.holder.as_ref().map(|h| thread_dict(py, h)).transpose()?,
    )?;
    d.set_item("holder_exited", w.holder_exited)?;
    d.set_item("waited", ns_s(w.waited_ns))?;
    d.set_item("timed", w.timed)?;
    d.set_item("episode", w.episode)?;
    Ok(d)
}

pub(crate) fn snapshot_dict<'py>(py: Python<'py>, s: &Snapshot) -> PyResult<Bound<'py, PyDict>> {
    let o = PyDict::new(py);
    let threads = s
        .threads
        .iter()
        .map(|t| {
            let d = thread_dict(py, &t.thread)?;
            d.set_item("held", held_list(py, &t.held, s.taken_ns)?)?;
            d.set_item(
                "waiting",
                t.waiting.as_ref().map(|w| wait_dict(py, w)).transpose()?,
            )?;
            Ok(d)
        })
        .collect::<PyResult<Vec<_>>>()?;
    o.set_item("threads", PyList::new(py, threads)?)?;
    Ok(o)
}

pub(crate) fn chain_dict<'py>(
    py: Python<'py>,
    c: &WaitChain,
    now: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let o = PyDict::new(py);
    let links = c
        .links
        .iter()
        .map(|l| {
            let d = thread_dict(py, &l.thread)?;
            d.set_item("lock", lock_dict(py, &l.lock)?)?;
            d.set_item("waited", ns_s(now.saturating_sub(l.since_ns)))?;
            d.set_item("timed", l.timed)?;
            d.set_item("holder", l.holder)?;
            Ok(d)
        })
        .collect::<PyResult<Vec<_>>>()?;
    o.set_item("links", PyList::new(py, links)?)?;
    let end = PyDict::new(py);
    match &c.end {
        ChainEnd::Running(t) => {
            end.set_item("kind", "running")?;
            end.set_item("thread", thread_dict(py, t)?)?;
        }
        ChainEnd::NoHolder => end.set_item("kind", "no-holder")?,
        ChainEnd::HolderExited(t) => {
            end.set_item("kind", "holder-exited")?;
            end.set_item("ident", *t)?;
        }
        ChainEnd::Cycle { start } => {
            end.set_item("kind", "cycle")?;
            end.set_item("start", *start)?;
        }
    }
    o.set_item("end", end)?;
    Ok(o)
}

pub(crate) fn stats_dict<'py>(py: Python<'py>, c: &ClassStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("site", class_name(c.class))?;
    d.set_item("kind", kind_name(c.kind))?;
    d.set_item("acquisitions", c.acquisitions)?;
    d.set_item("contended", c.contended)?;
    d.set_item("total_wait", ns_s(c.total_wait_ns))?;
    d.set_item("max_wait", ns_s(c.max_wait_ns))?;
    d.set_item("holds", c.holds)?;
    d.set_item("total_hold", ns_s(c.total_hold_ns))?;
    d.set_item("max_hold", ns_s(c.max_hold_ns))?;
    let sites = c
        .top_sites
        .iter()
        .map(|s| {
            let e = PyDict::new(py);
            e.set_item("site", diag::site_name(s.site))?;
            e.set_item("contended", s.contended)?;
            e.set_item("total_wait", ns_s(s.total_wait_ns))?;
            e.set_item("max_wait", ns_s(s.max_wait_ns))?;
            Ok(e)
        })
        .collect::<PyResult<Vec<_>>>()?;
    d.set_item("top_sites", PyList::new(py, sites)?)?;
    Ok(d)
}
