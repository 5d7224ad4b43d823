//! The lock paths taken while diagnostics are on (`diag::global().flags()
//! != 0`), next to the lock types they work on.
//!
//! Each lock object's `diag_cell` slot points to its [`LockCell`] (null:
//! never seen by diagnostics), made at creation when diagnostics are on,
//! lazily otherwise (such a lock has an unknown site). An uncontended
//! acquire and its release then update the cell without locks or map
//! lookups (`rsthread_core::diag::cell`); waits and everything rarer take the
//! diagnostics mutex. Sites, reports and the `rsthread._diag` module are in
//! `crate::diag`, which knows nothing of the lock types.

// std atomics, not the core's `sync` shim: the binding is never built under loom.
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use rsthread_core::diag::cell::ThreadDiag;
use rsthread_core::diag::{
    self, acquire, cell, Deadlock, DeadlockMode, LockCell, LockId, LockKind, OrderInversion, SiteId,
};
use rsthread_core::{ident, timeout::monotonic_ns, Acquire, Deadline};

use super::{PyLock, PyRLock};
use crate::args::UNSET_TIMEOUT;
use crate::diag::{caller_site, caller_site_in, edge_stack, report_deadlock, report_inversion};
use crate::errors;
use crate::wait::{acquire_timed_with, make_pending_calls};

/// Next lock id (0 means "none yet").
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The cell in `slot`, if the lock has one.
#[inline]
fn cell_in(slot: &AtomicPtr<LockCell>) -> Option<&'static LockCell> {
    // Relaxed: the slot is written under the GIL (creation, first use) and
    // read under the GIL, except by `sentinel_release`, which only runs in
    // the thread that created the sentinel.
    let p = slot.load(Ordering::Relaxed);
    // SAFETY: a non-null slot holds a pointer from `lock_created` /
    // `cell_of` of the core: cells are 'static (never freed).
    unsafe { p.as_ref() }
}

fn store_cell(slot: &AtomicPtr<LockCell>, c: &'static LockCell) {
    // Relaxed: see cell_in.
    slot.store(std::ptr::from_ref(c).cast_mut(), Ordering::Relaxed);
}

/// The cell of the lock with `slot`, registering the lock (of unknown
/// site) if diagnostics never saw it.
#[inline]
pub(crate) fn cell_of(slot: &AtomicPtr<LockCell>) -> &'static LockCell {
    // The slot lives inside the lock object (by now: at creation the object
    // may still be moving into place), at one offset per type: its address
    // orders lock objects as `id()` does (the lock-order id-order rule).
    let addr = std::ptr::from_ref(slot) as u64;
    if let Some(c) = cell_in(slot) {
        if c.addr() != addr {
            c.set_addr(addr);
        }
        return c;
    }
    // Relaxed: a unique number is all we need.
    let c = diag::global().cell_of(NEXT_ID.fetch_add(1, Ordering::Relaxed));
    store_cell(slot, c);
    c.set_addr(addr);
    c
}

/// The diagnostics id of the lock with `slot` (assigning one now if needed).
pub(crate) fn id_of(slot: &AtomicPtr<LockCell>) -> LockId {
    cell_of(slot).id()
}

/// Register a lock object just created (diagnostics on): id and site.
pub(crate) fn lock_created(
    py: Python<'_>,
    slot: &AtomicPtr<LockCell>,
    kind: LockKind,
) -> &'static LockCell {
    // Relaxed: a unique number is all we need.
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let c = diag::global().lock_created(id, kind, caller_site(py));
    store_cell(slot, c);
    c
}

/// `_at_fork_reinit` of a lock (diagnostics on): it is unlocked, held by
/// nobody. Called before the real re-initialisation.
pub(crate) fn lock_reinit(slot: &AtomicPtr<LockCell>) {
    if let Some(c) = cell_in(slot) {
        diag::global().lock_reinit(c.id());
    }
}

/// A lock object is being freed.
#[inline]
pub(crate) fn lock_dropped(slot: &AtomicPtr<LockCell>) {
    if let Some(c) = cell_in(slot) {
        diag::global().lock_destroyed(c.id());
    }
}

// ----- lock paths -------------------------------------------------------

/// What the core's diagnosed acquire needs from the binding (see
/// `rsthread_core::diag::acquire`): reports in Python, and the wait of
/// `crate::wait` (GIL released, signal handlers run between sleeps).
struct PyWait<'py> {
    py: Python<'py>,
    /// The parsed timeout (ns; `UNSET_TIMEOUT`: forever).
    timeout: i64,
}

impl acquire::Binding for PyWait<'_> {
    type Error = PyErr;
    fn site(&self, t: Option<&mut ThreadDiag>) -> SiteId {
        caller_site_in(self.py, t)
    }
    fn edge_stack(&self) -> Option<String> {
        edge_stack(self.py)
    }
    fn inversion(&self, inv: &OrderInversion) {
        report_inversion(self.py, inv);
    }
    fn deadlock(&self, d: &Deadlock, raise: bool) -> Option<PyErr> {
        report_deadlock(self.py, d, raise)
    }
    fn run_handlers(&self) -> PyResult<()> {
        make_pending_calls(self.py)
    }
    fn wait(
        &self,
        block: &(dyn Fn(Option<Deadline>) -> Acquire + Sync),
        between: &mut dyn FnMut() -> PyResult<()>,
    ) -> PyResult<bool> {
        acquire_timed_with(self.py, self.timeout, block, |_| between())
    }
}

/// `lock.acquire` (`entered`: `lock.__enter__`) with diagnostics on
/// (`timeout` parsed: ns, 0 try, unset).
#[inline(never)]
pub(crate) fn lock_acquire(
    py: Python<'_>,
    l: &PyLock,
    timeout: i64,
    entered: bool,
) -> PyResult<bool> {
    let c = cell_of(&l.diag_cell);
    let b = PyWait { py, timeout };
    if l.raw.try_acquire() {
        acquire::acquired_now(c, timeout != 0, entered, &b);
        return Ok(true);
    }
    if timeout == 0 {
        cell::acquire_failed(c, ident::current());
        return Ok(false);
    }
    let timed = timeout != UNSET_TIMEOUT;
    l.outside.around(py, || {
        acquire::acquire_blocking(
            c,
            timed,
            entered,
            |d| l.raw.acquire_adaptive(d, &l.spin),
            &b,
        )
    })
}

/// `lock.release` with diagnostics on.
#[inline(never)]
pub(crate) fn lock_release(l: &PyLock) -> PyResult<()> {
    // A lock never seen has no hold to end.
    if let Some(c) = cell_in(&l.diag_cell) {
        if l.raw.is_locked() {
            cell::released(c);
        }
    }
    l.raw.release().map_err(|_| errors::release_unlocked())
}

/// `RLock.acquire` with diagnostics on (every RLock hold is owned).
#[inline(never)]
pub(crate) fn rlock_acquire(py: Python<'_>, l: &PyRLock, timeout: i64) -> PyResult<bool> {
    let me = ident::current();
    let c = cell_of(&l.diag_cell);
    let b = PyWait { py, timeout };
    match l.raw.try_acquire(me) {
        Ok(true) => {
            acquire::acquired_now(c, timeout != 0, false, &b);
            return Ok(true);
        }
        Ok(false) => {}
        Err(_) => return Err(PyOverflowError::new_err("Internal lock count overflowed")),
    }
    if timeout == 0 {
        return Ok(false);
    }
    let timed = timeout != UNSET_TIMEOUT;
    l.outside.around(py, || {
        acquire::acquire_blocking(c, timed, false, |d| l.raw.acquire_contended(me, d), &b)
    })
}

/// `RLock.release` with diagnostics on: the record first, if we own it.
#[inline(never)]
pub(crate) fn rlock_release(l: &PyRLock, me: u64) {
    if l.raw.is_owned_by(me) {
        cell::released(cell_of(&l.diag_cell));
    }
}

/// `RLock._release_save` with diagnostics on (before the real one).
#[inline(never)]
pub(crate) fn rlock_release_save(l: &PyRLock) {
    let me = ident::current();
    if l.raw.is_owned_by(me) {
        diag::global().release_all(me, id_of(&l.diag_cell));
    }
}

/// `RLock._acquire_restore` with diagnostics on: not interruptible, so a
/// deadlock here is only reported (never raised).
#[inline(never)]
pub(crate) fn rlock_acquire_restore(py: Python<'_>, l: &PyRLock, owner: u64, count: u64) {
    let me = ident::current();
    let c = cell_of(&l.diag_cell);
    let site = caller_site(py);
    let mut waited = 0;
    if !l.raw.try_acquire_inner() {
        let start = monotonic_ns();
        if let Some(d) = diag::global().wait_begin(me, c.id(), false) {
            // Not interruptible: a raise-mode error goes to another thread
            // of the cycle if there is one, else it is only reported.
            let posted =
                diag::global().deadlock_mode() == DeadlockMode::Raise && d.detected_by != me;
            if posted {
                diag::global().post_deadlock(d);
            } else {
                report_deadlock(py, &d, false);
            }
        }
        l.outside
            .around(py, || py.detach(|| l.raw.acquire_inner_blocking()));
        diag::global().wait_end(me, c.id(), true);
        waited = monotonic_ns().saturating_sub(start).max(1);
    }
    l.raw.restore(owner, count);
    if let Some(inv) = cell::acquired(c, me, site, true, waited, false) {
        report_inversion(py, &inv);
    }
    if count != 1 {
        diag::global().set_rlock_depth(c.id(), count);
    }
}

/// A `_set_sentinel` lock (diagnostics on).
pub(crate) fn sentinel_created(l: &PyLock) {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let c = diag::global().lock_created(id, LockKind::Lock, diag::intern_site(SENTINEL_SITE));
    store_cell(&l.diag_cell, c);
    diag::global().mark_sentinel(id);
}

/// The creation site given to every thread sentinel.
const SENTINEL_SITE: &str = "<thread sentinel> (Thread.join waits for it)";

/// The thread's own sentinel is about to be released (no GIL needed).
pub(crate) fn sentinel_release(l: &PyLock) {
    if let Some(c) = cell_in(&l.diag_cell) {
        if l.raw.is_locked() {
            cell::released(c);
        }
    }
}

// ----- rsthread._diag functions on lock objects ----------------------------

fn slot_of<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<&'a AtomicPtr<LockCell>> {
    if let Ok(l) = obj.cast::<PyLock>() {
        return Ok(&l.get().diag_cell);
    }
    if let Ok(l) = obj.cast::<PyRLock>() {
        return Ok(&l.get().diag_cell);
    }
    Err(PyTypeError::new_err("not an rsthread lock"))
}

/// Mark a lock as a thread sentinel (registering it if needed).
#[pyfunction]
pub(crate) fn mark_sentinel(lock: &Bound<'_, PyAny>) -> PyResult<()> {
    diag::global().mark_sentinel(id_of(slot_of(lock)?));
    Ok(())
}

/// The diagnostics id of a lock or RLock (assigned on first use).
#[pyfunction]
pub(crate) fn lock_id(lock: &Bound<'_, PyAny>) -> PyResult<u64> {
    Ok(id_of(slot_of(lock)?))
}

/// Add the functions above to `rsthread._diag` (module init).
pub(crate) fn add_diag_functions(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(mark_sentinel, m)?)?;
    m.add_function(wrap_pyfunction!(lock_id, m)?)?;
    Ok(())
}
