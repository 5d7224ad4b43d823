//! The diagnostics path of the binding: feeds `rsthread_core::diag` from
//! lock and thread operations, and exposes it to Python as the private
//! module `rsthread._diag` (put in `sys.modules` only, so `_thread` keeps
//! exactly stock's attributes). `rsthread.diagnostics` is the public API.
//!
//! The lock fast paths check [`diag::flags`] once (one Relaxed load) and
//! come here only when it is non-zero. Each lock object's `diag` slot holds
//! a pointer to its [`LockCell`] (0: never seen by diagnostics), made at
//! creation when diagnostics are on, lazily otherwise (such a lock has an
//! unknown site). An uncontended acquire and its release then update the
//! cell without locks or map lookups (`diag::cell`); waits and everything
//! rarer take the diagnostics mutex.
//!
//! Sites (`"file:line in func"`) are the first Python frame outside
//! `threading.py`, `queue.py` and `concurrent/` (a few levels up at most).
//! The common case costs a few loads: the frames are read from CPython
//! 3.11's interpreter frames (no frame objects are created) and the site is
//! cached per thread by the instruction pointers of the frames walked.
//!
//! Reports are formatted in Python (`rsthread.diagnostics._report_*`), with
//! the GIL held, so they can include every thread's traceback.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use pyo3::exceptions::{PyOSError, PyOverflowError, PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList};
use rsthread_core::diag::{
    self, cell, cell::SiteCache as ThreadSites, cell::ThreadDiag, ChainEnd, ClassStats,
    CycleThread, Deadlock, DeadlockMode, DeadlockRule, HeldLock, Leak, LockCell, LockClass, LockId,
    LockKind, LockRef, OrderInversion, SiteId, Snapshot, ThreadRef, WaitChain, WaitState,
    UNKNOWN_SITE,
};
use rsthread_core::{ident, timeout::monotonic_ns, Acquire, Deadline};

use crate::args::UNSET_TIMEOUT;
use crate::cpython::frames;
use crate::errors;
use crate::lock::{PyLock, PyRLock};
use crate::wait::{acquire_timed_with, make_pending_calls};

/// Next lock id (0 means "none yet").
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The cell in `slot`, if the lock has one.
#[inline]
fn cell_in(slot: &AtomicU64) -> Option<&'static LockCell> {
    // Relaxed: the slot is written under the GIL (creation, first use) and
    // read under the GIL, except by `sentinel_release`, which only runs in
    // the thread that created the sentinel.
    let p = slot.load(Ordering::Relaxed) as *const LockCell;
    // SAFETY: a non-zero slot holds a pointer from `diag::lock_created` /
    // `diag::cell_of`: cells are 'static (never freed).
    unsafe { p.as_ref() }
}

fn store_cell(slot: &AtomicU64, c: &'static LockCell) {
    // Relaxed: see cell_in.
    slot.store(c as *const LockCell as u64, Ordering::Relaxed);
}

/// The cell of the lock with `slot`, registering the lock (of unknown
/// site) if diagnostics never saw it.
#[inline]
pub(crate) fn cell_of(slot: &AtomicU64) -> &'static LockCell {
    // The slot lives inside the lock object (by now: at creation the object
    // may still be moving into place), at one offset per type: its address
    // orders lock objects as `id()` does (the lock-order id-order rule).
    let addr = slot as *const AtomicU64 as u64;
    if let Some(c) = cell_in(slot) {
        if c.addr() != addr {
            c.set_addr(addr);
        }
        return c;
    }
    let c = diag::cell_of(NEXT_ID.fetch_add(1, Ordering::Relaxed));
    store_cell(slot, c);
    c.set_addr(addr);
    c
}

/// The diagnostics id of the lock with `slot` (assigning one now if needed).
pub(crate) fn id_of(slot: &AtomicU64) -> LockId {
    cell_of(slot).id()
}

/// Register a lock object just created (diagnostics on): id and site.
pub(crate) fn lock_created(py: Python<'_>, slot: &AtomicU64, kind: LockKind) -> &'static LockCell {
    // Relaxed: a unique number is all we need.
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let c = diag::lock_created(id, kind, caller_site(py));
    store_cell(slot, c);
    c
}

/// `_at_fork_reinit` of a lock (diagnostics on): it is unlocked, held by
/// nobody. Called before the real re-initialisation.
pub(crate) fn lock_reinit(slot: &AtomicU64) {
    if let Some(c) = cell_in(slot) {
        diag::lock_reinit(c.id());
    }
}

/// A lock object is being freed.
#[inline]
pub(crate) fn lock_dropped(slot: &AtomicU64) {
    if let Some(c) = cell_in(slot) {
        diag::lock_destroyed(c.id());
    }
}

// ----- sites ------------------------------------------------------------

/// How many frames we look at to leave threading/queue/concurrent.futures.
const MAX_FRAMES: usize = 8;

struct CodeInfo {
    /// Keeps the code object alive, so its address (and that of its
    /// bytecode, which the per-thread cache keys on) is never reused.
    _code: Py<PyAny>,
    skip: bool,
    file: String,
    func: String,
}

#[derive(Default)]
struct SiteCache {
    codes: HashMap<usize, CodeInfo>,
    /// (code, line, innermost skipped code or 0, its line) -> site.
    sites: HashMap<(usize, i32, usize, i32), SiteId>,
}

static SITE_CACHE: Mutex<Option<SiteCache>> = Mutex::new(None);

fn cache() -> std::sync::MutexGuard<'static, Option<SiteCache>> {
    SITE_CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Frames that are not a useful site: the synchronization libraries (except
/// their module-level code, which creates their global locks) and the import
/// machinery.
fn skipped_code(file: &str, func: &str) -> bool {
    if file.starts_with("<frozen importlib") {
        return true;
    }
    func != "<module>"
        && (file.ends_with("/threading.py")
            || file.ends_with("/queue.py")
            || file.contains("/concurrent/"))
}

/// Whether the code object is skipped, computing its info on first sight.
fn code_skip(code: &Bound<'_, PyAny>) -> bool {
    let key = code.as_ptr() as usize;
    if let Some(i) = cache().get_or_insert_with(Default::default).codes.get(&key) {
        return i.skip;
    }
    let file = code
        .getattr("co_filename")
        .and_then(|v| v.extract::<String>())
        .unwrap_or_else(|_| "?".into());
    let func = code
        .getattr("co_name")
        .and_then(|v| v.extract::<String>())
        .unwrap_or_else(|_| "?".into());
    let skip = skipped_code(&file, &func);
    let info = CodeInfo {
        _code: code.clone().unbind(),
        skip,
        file,
        func,
    };
    cache()
        .get_or_insert_with(Default::default)
        .codes
        .insert(key, info);
    skip
}

fn site_name_of(c: &SiteCache, code: usize, line: i32) -> Option<String> {
    c.codes
        .get(&code)
        .map(|i| format!("{}:{} in {}", i.file, line, i.func))
}

fn basename(f: &str) -> &str {
    f.rsplit('/').next().unwrap_or(f)
}

/// The site of frame (`code`, `line`), reached from the innermost frame
/// (`inner`) when that one was skipped: `"file:line in func (via
/// threading.py:236 in __init__)"`, so that locks created (or acquired) at
/// different places inside a library called from one line stay distinct.
fn site_of(code: &Bound<'_, PyAny>, line: i32, inner: Option<(&Bound<'_, PyAny>, i32)>) -> SiteId {
    let ck = code.as_ptr() as usize;
    let ik = inner.map_or((0, 0), |(c, l)| (c.as_ptr() as usize, l));
    let key = (ck, line, ik.0, ik.1);
    let mut g = cache();
    let c = g.get_or_insert_with(Default::default);
    if let Some(&s) = c.sites.get(&key) {
        return s;
    }
    let Some(mut name) = site_name_of(c, ck, line) else {
        return UNKNOWN_SITE;
    };
    if let Some(i) = c.codes.get(&ik.0) {
        name = format!("{name} (via {}:{} in {})", basename(&i.file), ik.1, i.func);
    }
    let s = diag::intern_site(&name);
    c.sites.insert(key, s);
    s
}

/// [`caller_site`] through frame objects (the public API): exact, but it
/// materializes a frame object per Python frame walked and decodes line
/// tables. Used on a per-thread cache miss.
fn caller_site_slow(py: Python<'_>) -> SiteId {
    // SAFETY: attached; PyEval_GetFrame returns a borrowed frame or NULL.
    let Some(mut frame) =
        (unsafe { Bound::from_borrowed_ptr_or_opt(py, ffi::PyEval_GetFrame().cast()) })
    else {
        return UNKNOWN_SITE;
    };
    let mut first: Option<(Bound<'_, PyAny>, i32)> = None;
    for _ in 0..MAX_FRAMES {
        let f = frame.as_ptr().cast::<ffi::PyFrameObject>();
        // SAFETY: `f` is a live frame; returns a new reference.
        let code = unsafe { Bound::from_owned_ptr_or_opt(py, ffi::PyFrame_GetCode(f).cast()) };
        // SAFETY: as above.
        let line = unsafe { ffi::PyFrame_GetLineNumber(f) };
        let Some(code) = code else { break };
        if !code_skip(&code) {
            return site_of(&code, line, first.as_ref().map(|(c, l)| (c, *l)));
        }
        if first.is_none() {
            first = Some((code, line));
        }
        // SAFETY: `f` is live; returns a new reference or NULL.
        match unsafe { Bound::from_owned_ptr_or_opt(py, ffi::PyFrame_GetBack(f).cast()) } {
            Some(b) => frame = b,
            None => break,
        }
    }
    match first {
        Some((code, line)) => site_of(&code, line, None),
        None => UNKNOWN_SITE,
    }
}

/// The site in the per-thread cache, from the interpreter frames; `None`
/// on a miss (then [`site_in`] computes and caches it).
#[inline]
fn cached_site(c: &ThreadSites) -> Option<SiteId> {
    if !frames::fast_enabled() {
        return None;
    }
    // SAFETY: attached (callers hold the GIL); fast frames enabled; the skip
    // table only holds code objects kept by SITE_CACHE (see fill_site_cache).
    let h = unsafe { frames::walk(MAX_FRAMES, |code| c.skip_of(code as u64)) }?;
    c.site_of(h)
}

/// After a slow lookup: remember the walked code objects and the site.
fn fill_site_cache(c: &mut ThreadSites, site: SiteId) {
    if !frames::fast_enabled() {
        return;
    }
    let g = cache();
    let Some(sc) = g.as_ref() else { return };
    // SAFETY: attached; fast frames enabled; every code object entered in
    // the skip table comes from SITE_CACHE, which keeps it alive.
    let h = unsafe {
        frames::walk(MAX_FRAMES, |code| {
            let info = sc.codes.get(&code)?;
            c.set_skip(code as u64, info.skip);
            Some(info.skip)
        })
    };
    if let Some(h) = h.filter(|&h| h != 0) {
        c.set_site(h, site);
    }
}

/// The site of the calling Python code, through the thread's cache.
fn site_in(py: Python<'_>, t: &mut ThreadDiag) -> SiteId {
    let c = t.site_cache();
    if let Some(s) = cached_site(c) {
        return s;
    }
    let s = caller_site_slow(py);
    fill_site_cache(c, s);
    s
}

/// The calling Python code's site: the first frame outside threading.py,
/// queue.py and concurrent/ (their module-level code excepted) and the import
/// machinery, within a few levels, plus the innermost frame when it was
/// skipped; else the innermost frame.
pub(crate) fn caller_site(py: Python<'_>) -> SiteId {
    cell::with_thread(|t| site_in(py, t)).unwrap_or_else(|| caller_site_slow(py))
}

// ----- reports ----------------------------------------------------------

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

fn report_inversion(py: Python<'_>, inv: &OrderInversion) {
    let r = inversion_dict(py, inv).and_then(|d| call_reporter(py, "_report_inversion", (d,)));
    if let Err(e) = r {
        eprintln!("rsthread: lock-order inversion (report failed: {e})");
    }
}

/// Report a deadlock; under raise mode return the `DeadlockError` to raise.
fn report_deadlock(py: Python<'_>, d: &Deadlock, raise: bool) -> Option<PyErr> {
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

fn report_leaks(py: Python<'_>, leaks: &[Leak]) {
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

// ----- lock paths -------------------------------------------------------

fn on_acquired(
    py: Python<'_>,
    c: &'static LockCell,
    me: u64,
    site: SiteId,
    blocking: bool,
    waited_ns: u64,
    entered: bool,
) {
    if let Some(inv) = cell::acquired(c, me, site, blocking, waited_ns, entered) {
        report_inversion(py, &inv);
    }
}

/// Run `f` (a call into the state for an acquire or attempt of `c`), with
/// the caller's Python stack given to the lock-order edges it may record.
fn with_edge_stack<R>(
    py: Python<'_>,
    c: &'static LockCell,
    blocking: bool,
    f: impl FnOnce() -> R,
) -> R {
    if !blocking || !cell::may_add_edges(c) {
        return f();
    }
    let stack = call_reporter(py, "_stack_here", ())
        .and_then(|v| v.extract::<String>())
        .ok();
    cell::set_edge_stack(stack);
    let r = f();
    cell::set_edge_stack(None);
    r
}

/// Record an uncontended acquire of `c` (just done): the site and the fast
/// path in one visit of the thread's record; the slow path if it declines.
#[inline]
fn acquired_now(py: Python<'_>, c: &'static LockCell, blocking: bool, entered: bool) {
    let r = cell::with_thread(|t| {
        let site = site_in(py, t);
        (t.acquired_fast(c, site, blocking, entered), site, t.me())
    });
    let inv = match r {
        Some((true, _, _)) => None,
        Some((false, site, me)) => with_edge_stack(py, c, blocking, || {
            cell::acquired_slow(c, me, site, blocking, 0, entered)
        }),
        None => cell::acquired_slow(
            c,
            ident::current(),
            caller_site_slow(py),
            blocking,
            0,
            entered,
        ),
    };
    if let Some(inv) = inv {
        report_inversion(py, &inv);
    }
}

/// Record the coming release of `c` by the calling thread.
#[inline]
fn releasing(c: &'static LockCell) {
    match cell::with_thread(|t| (t.released_fast(c), t.me())) {
        Some((true, _)) => {}
        Some((false, me)) => cell::released_slow(c, me),
        None => cell::released_slow(c, ident::current()),
    }
}

/// Deliver deadlock `d`, found by thread `me`: under raise mode the error
/// for `me` if `me` is the cycle's thread that gets it, else posted to
/// that thread (which collects it in [`blocking_wait`]); under warn mode
/// printed here.
fn deliver(py: Python<'_>, d: Deadlock, me: u64) -> Option<PyErr> {
    if diag::deadlock_mode() != DeadlockMode::Raise {
        report_deadlock(py, &d, false);
        return None;
    }
    if d.detected_by == me {
        return report_deadlock(py, &d, true);
    }
    diag::post_deadlock(d);
    None
}

/// `wait_begin`, reporting a deadlock; `Err` (the wait closed) in raise mode.
fn begin_wait(py: Python<'_>, me: u64, id: LockId, timed: bool) -> PyResult<()> {
    if let Some(d) = diag::wait_begin(me, id, timed) {
        if let Some(e) = deliver(py, d, me) {
            diag::wait_end(me, id, false);
            return Err(e);
        }
    }
    Ok(())
}

/// Longest sleep of a diagnosed wait under raise mode between two looks at
/// a deadlock posted for the waiting thread.
const POSTED_POLL_NS: u64 = 50_000_000;

/// The slow path of a blocking acquire, with wait records around the sleep.
#[allow(clippy::too_many_arguments)]
fn blocking_wait<F>(
    py: Python<'_>,
    me: u64,
    c: &'static LockCell,
    site: SiteId,
    timeout: i64,
    entered: bool,
    block: F,
) -> PyResult<bool>
where
    F: Fn(Option<Deadline>) -> Acquire + Sync,
{
    let id = c.id();
    let timed = timeout != UNSET_TIMEOUT;
    let start = monotonic_ns();
    // Lock-order edges at the attempt: the acquire may never succeed.
    if let Some(inv) = with_edge_stack(py, c, true, || cell::attempting(c, me, site)) {
        report_inversion(py, &inv);
    }
    begin_wait(py, me, id, timed)?;
    let poll = diag::deadlock_mode() == DeadlockMode::Raise;
    // Under raise mode, sleep in slices so that a deadlock posted for this
    // thread (found by a bystander or the watchdog) is raised here: a slice
    // that ends is reported as an interruption, which runs `pending` below.
    let sliced = |d: Option<Deadline>| {
        if !poll {
            return block(d);
        }
        let s = Deadline::after_ns(POSTED_POLL_NS);
        let s = d.map_or(s, |d| d.min(s));
        match block(Some(s)) {
            Acquire::TimedOut if Some(s) != d => Acquire::Interrupted,
            r => r,
        }
    };
    let r = acquire_timed_with(py, timeout, sliced, |py| {
        if poll {
            if let Some(d) = diag::take_deadlock(me) {
                if let Some(e) = report_deadlock(py, &d, true) {
                    return Err(e);
                }
            }
        }
        let before = cell::ops();
        let r = make_pending_calls(py);
        if r.is_ok() && cell::ops() != before {
            // A handler took or released locks, which ended our wait record.
            diag::wait_end(me, id, false);
            begin_wait(py, me, id, timed)?;
        }
        r
    });
    match r {
        Ok(true) => {
            diag::wait_end(me, id, true);
            on_acquired(
                py,
                c,
                me,
                site,
                true,
                monotonic_ns().saturating_sub(start).max(1),
                entered,
            );
            Ok(true)
        }
        Ok(false) => {
            diag::wait_end(me, id, false);
            Ok(false)
        }
        Err(e) => {
            diag::wait_end(me, id, false);
            Err(e)
        }
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
    let c = cell_of(&l.diag);
    if l.raw.try_acquire() {
        acquired_now(py, c, timeout != 0, entered);
        return Ok(true);
    }
    let me = ident::current();
    if timeout == 0 {
        cell::acquire_failed(c, me);
        return Ok(false);
    }
    let site = caller_site(py);
    blocking_wait(py, me, c, site, timeout, entered, |d| {
        l.raw.acquire_adaptive(d, &l.spin)
    })
}

/// `lock.release` with diagnostics on.
#[inline(never)]
pub(crate) fn lock_release(l: &PyLock) -> PyResult<()> {
    // A lock never seen has no hold to end.
    if let Some(c) = cell_in(&l.diag) {
        if l.raw.is_locked() {
            releasing(c);
        }
    }
    l.raw.release().map_err(|_| errors::release_unlocked())
}

/// `RLock.acquire` with diagnostics on (every RLock hold is owned).
#[inline(never)]
pub(crate) fn rlock_acquire(py: Python<'_>, l: &PyRLock, timeout: i64) -> PyResult<bool> {
    let me = ident::current();
    let c = cell_of(&l.diag);
    match l.raw.try_acquire(me) {
        Ok(true) => {
            acquired_now(py, c, timeout != 0, false);
            return Ok(true);
        }
        Ok(false) => {}
        Err(_) => return Err(PyOverflowError::new_err("Internal lock count overflowed")),
    }
    if timeout == 0 {
        return Ok(false);
    }
    let site = caller_site(py);
    blocking_wait(py, me, c, site, timeout, false, |d| {
        l.raw.acquire_contended(me, d)
    })
}

/// `RLock.release` with diagnostics on: the record first, if we own it.
#[inline(never)]
pub(crate) fn rlock_release(l: &PyRLock, me: u64) {
    if l.raw.is_owned_by(me) {
        releasing(cell_of(&l.diag));
    }
}

/// `RLock._release_save` with diagnostics on (before the real one).
#[inline(never)]
pub(crate) fn rlock_release_save(l: &PyRLock) {
    let me = ident::current();
    if l.raw.is_owned_by(me) {
        diag::release_all(me, id_of(&l.diag));
    }
}

/// `RLock._acquire_restore` with diagnostics on: not interruptible, so a
/// deadlock here is only reported (never raised).
#[inline(never)]
pub(crate) fn rlock_acquire_restore(py: Python<'_>, l: &PyRLock, owner: u64, count: u64) {
    let me = ident::current();
    let c = cell_of(&l.diag);
    let site = caller_site(py);
    let mut waited = 0;
    if !l.raw.try_acquire_inner() {
        let start = monotonic_ns();
        if let Some(d) = diag::wait_begin(me, c.id(), false) {
            // Not interruptible: a raise-mode error goes to another thread
            // of the cycle if there is one, else it is only reported.
            let posted = diag::deadlock_mode() == DeadlockMode::Raise && d.detected_by != me;
            if posted {
                diag::post_deadlock(d);
            } else {
                report_deadlock(py, &d, false);
            }
        }
        py.detach(|| l.raw.acquire_inner_blocking());
        diag::wait_end(me, c.id(), true);
        waited = monotonic_ns().saturating_sub(start).max(1);
    }
    l.raw.restore(owner, count);
    on_acquired(py, c, me, site, true, waited, false);
    if count != 1 {
        diag::set_rlock_depth(c.id(), count);
    }
}

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
    diag::thread_named(ident, &name);
}

/// A thread started by `start_new_thread` begins (diagnostics on).
pub(crate) fn thread_begin(py: Python<'_>, func: &Bound<'_, PyAny>) {
    let _ = py;
    diag::thread_started(ident::current(), ident::native(), thread_name_of(func));
}

/// That thread ends: report RLocks it still owns.
pub(crate) fn thread_end(py: Python<'_>) {
    let leaks = diag::thread_exited(ident::current());
    report_leaks(py, &leaks);
}

/// A `_set_sentinel` lock (diagnostics on).
pub(crate) fn sentinel_created(py: Python<'_>, l: &PyLock) {
    let _ = py;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let c = diag::lock_created(id, LockKind::Lock, diag::intern_site(SENTINEL_SITE));
    store_cell(&l.diag, c);
    diag::mark_sentinel(id);
}

/// The creation site given to every thread sentinel.
const SENTINEL_SITE: &str = "<thread sentinel> (Thread.join waits for it)";

/// The thread's own sentinel is about to be released (no GIL needed).
pub(crate) fn sentinel_release(l: &PyLock) {
    if let Some(c) = cell_in(&l.diag) {
        if l.raw.is_locked() {
            cell::released(c, ident::current());
        }
    }
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

fn thread_dict<'py>(py: Python<'py>, t: &ThreadRef) -> PyResult<Bound<'py, PyDict>> {
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

fn inversion_dict<'py>(py: Python<'py>, inv: &OrderInversion) -> PyResult<Bound<'py, PyDict>> {
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

fn leak_dict<'py>(py: Python<'py>, l: &Leak) -> PyResult<Bound<'py, PyDict>> {
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

fn wait_dict<'py>(py: Python<'py>, w: &WaitState) -> PyResult<Bound<'py, PyDict>> {
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

fn snapshot_dict<'py>(py: Python<'py>, s: &Snapshot) -> PyResult<Bound<'py, PyDict>> {
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

fn chain_dict<'py>(py: Python<'py>, c: &WaitChain, now: u64) -> PyResult<Bound<'py, PyDict>> {
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

fn stats_dict<'py>(py: Python<'py>, c: &ClassStats) -> PyResult<Bound<'py, PyDict>> {
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

// ----- rsthread._diag ---------------------------------------------------

fn slot_of<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<&'a AtomicU64> {
    if let Ok(l) = obj.cast::<PyLock>() {
        return Ok(&l.get().diag);
    }
    if let Ok(l) = obj.cast::<PyRLock>() {
        return Ok(&l.get().diag);
    }
    Err(PyTypeError::new_err("not an rsthread lock"))
}

/// set_config(flags, raise_mode, report_timed)
#[pyfunction]
fn set_config(flags: u32, raise_mode: bool, report_timed: bool) {
    if flags != 0 {
        register_fork_handlers();
    }
    diag::set_deadlock_mode(if raise_mode {
        DeadlockMode::Raise
    } else {
        DeadlockMode::Warn
    });
    diag::set_report_timed(report_timed);
    diag::set_flags(flags);
}

/// The enabled flags.
#[pyfunction]
fn flags() -> u32 {
    diag::flags()
}

/// Register a thread (ident, native id, name).
#[pyfunction]
#[pyo3(signature = (ident, native_id, name=None))]
fn thread_started(ident: u64, native_id: u64, name: Option<String>) {
    diag::thread_started(ident, native_id, name);
}

/// Rename a thread.
#[pyfunction]
fn thread_named(ident: u64, name: &str) {
    diag::thread_named(ident, name);
}

/// Unregister a thread; returns the RLock leaks.
#[pyfunction]
fn thread_exited<'py>(py: Python<'py>, ident: u64) -> PyResult<Bound<'py, PyList>> {
    let v = diag::thread_exited(ident)
        .iter()
        .map(|l| leak_dict(py, l))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, v)
}

/// Mark a lock as a thread sentinel (registering it if needed).
#[pyfunction]
fn mark_sentinel(lock: &Bound<'_, PyAny>) -> PyResult<()> {
    diag::mark_sentinel(id_of(slot_of(lock)?));
    Ok(())
}

/// The diagnostics id of a lock or RLock (assigned on first use).
#[pyfunction]
fn lock_id(lock: &Bound<'_, PyAny>) -> PyResult<u64> {
    Ok(id_of(slot_of(lock)?))
}

/// Per-class statistics, most total wait first.
#[pyfunction]
fn stats(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let v = diag::stats()
        .iter()
        .map(|c| stats_dict(py, c))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, v)
}

/// Zero the statistics.
#[pyfunction]
fn reset_stats() {
    diag::reset_stats();
}

/// Forget history (statistics, timeline, lock-order graph, reports).
#[pyfunction]
fn reset() {
    diag::reset();
}

/// Every registered thread: holds and wait.
#[pyfunction]
fn snapshot(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    snapshot_dict(py, &diag::snapshot())
}

/// Where each waiting thread's wait leads.
#[pyfunction]
fn wait_chains(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let now = monotonic_ns();
    let v = diag::wait_chains()
        .iter()
        .map(|c| chain_dict(py, c, now))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, v)
}

/// Waits running for at least `threshold` seconds, longest first.
#[pyfunction]
fn longest_waits(py: Python<'_>, threshold: f64) -> PyResult<Bound<'_, PyList>> {
    let ns = (threshold.max(0.0) * 1e9) as u64;
    let v = diag::longest_waits(ns)
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
    match diag::detect_deadlock(ident) {
        Some(d) => {
            // The caller (the watchdog) is never in the cycle: under raise
            // mode the error is posted to the cycle's thread.
            if let Some(e) = deliver(py, d, ident) {
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
    diag::set_immediate_inversions(on);
}

/// The lock-order inversions kept so far, judged with the whole run's
/// evidence: `(to_report, [(suppressed, reason), ...])`, as dicts.
#[pyfunction]
fn take_inversions(py: Python<'_>) -> PyResult<(Bound<'_, PyList>, Bound<'_, PyList>)> {
    let v = diag::take_inversions();
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
    let v = diag::leaked_at_exit()
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
        diag::export_chrome_trace(&mut w)?;
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
pub(crate) fn register(py: Python<'_>) -> PyResult<()> {
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
    m.add_function(wrap_pyfunction!(mark_sentinel, &m)?)?;
    m.add_function(wrap_pyfunction!(lock_id, &m)?)?;
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
        .set_item("rsthread._diag", m)?;
    Ok(())
}
