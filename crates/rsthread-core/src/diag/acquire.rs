//! A diagnosed acquire in one call: the binding tries the lock, and if it
//! is taken (or was contended) hands the rest here with what only it can
//! do ([`Binding`]: format a stack, report, release the GIL and run signal
//! handlers); the bookkeeping around the wait is done here, in order:
//!
//! 1. the lock-order edges at the attempt (`cell::attempting`: the acquire
//!    may never succeed, the edges count all the same);
//! 2. [`wait_begin`](super::Diagnostics::wait_begin): a deadlock this wait closes
//!    is delivered ([`deliver`]); under [`DeadlockMode::Raise`] the wait
//!    ends there with the binding's error when this thread gets it;
//! 3. the wait ([`Binding::wait`]); under raise mode in slices of at most
//!    [`POSTED_POLL_NS`], so that a deadlock posted for this thread (found
//!    by a bystander or the watchdog) is raised here; between two sleeps,
//!    the signal handlers ([`Binding::run_handlers`]): if one took or
//!    released locks, the wait record is ended and begun again;
//! 4. [`wait_end`](super::Diagnostics::wait_end), then the acquire itself
//!    ([`cell::acquired`], timed: it is contended).
//!
//! An uncontended acquire is [`acquired_now`].

use super::cell::{self, ThreadDiag};
use super::{global, Deadlock, DeadlockMode, LockCell, OrderInversion, SiteId, ThreadId};
use crate::lock::Acquire;
use crate::timeout::{monotonic_ns, Deadline};

/// Longest sleep of a diagnosed wait under raise mode between two looks at
/// a deadlock posted for the waiting thread.
pub const POSTED_POLL_NS: u64 = 50_000_000;

/// What a diagnosed acquire needs from the binding.
pub trait Binding {
    /// What the binding raises (a deadlock error, what a signal handler
    /// raised).
    type Error;
    /// The caller's site (interned). `t`: the calling thread's record, where
    /// the binding may keep a cache ([`ThreadDiag::ext`]); `None` while the
    /// thread is being torn down.
    fn site(&self, t: Option<&mut ThreadDiag>) -> SiteId;
    /// The caller's stack, kept with the new lock-order edges this acquire
    /// records (asked only when it may record one).
    fn edge_stack(&self) -> Option<String>;
    /// Report a lock-order inversion.
    fn inversion(&self, inv: &OrderInversion);
    /// Report deadlock `d`; with `raise`, return the error to raise in the
    /// calling thread.
    fn deadlock(&self, d: &Deadlock, raise: bool) -> Option<Self::Error>;
    /// Run the signal handlers and pending calls; `Err` if one raised.
    fn run_handlers(&self) -> Result<(), Self::Error>;
    /// Wait for the lock with `block` (which sleeps until the lock is taken
    /// or the deadline passes), without the binding's global lock, until it
    /// is taken (`Ok(true)`) or the timeout passes (`Ok(false)`). Whenever a
    /// sleep ends without the lock and the timeout has not passed, call
    /// `between`, and end the wait with its error if it fails.
    fn wait(
        &self,
        block: &(dyn Fn(Option<Deadline>) -> Acquire + Sync),
        between: &mut dyn FnMut() -> Result<(), Self::Error>,
    ) -> Result<bool, Self::Error>;
}

/// Deliver deadlock `d`, found by thread `me`, through `report` (as
/// [`Binding::deadlock`]): under raise mode, the error if `me` is the
/// cycle's thread that gets it, else post it to that thread (which collects
/// it while it waits); under warn mode, report it.
pub fn deliver<E>(
    d: Deadlock,
    me: ThreadId,
    report: impl FnOnce(&Deadlock, bool) -> Option<E>,
) -> Option<E> {
    let g = global();
    if g.deadlock_mode() != DeadlockMode::Raise {
        report(&d, false);
        return None;
    }
    if d.detected_by == me {
        return report(&d, true);
    }
    g.post_deadlock(d);
    None
}

/// Run `f` (a call into the state for an acquire or attempt of `c`), with
/// the caller's stack given to the lock-order edges it may record.
fn with_edge_stack<B: Binding, R>(c: &LockCell, blocking: bool, b: &B, f: impl FnOnce() -> R) -> R {
    if !blocking || !cell::may_add_edges(c) {
        return f();
    }
    cell::set_edge_stack(b.edge_stack());
    let r = f();
    cell::set_edge_stack(None);
    r
}

/// The calling thread acquired the lock of `c` without waiting (just now)
/// (`blocking`: not a try; `entered`: through `__enter__`): its site and
/// the fast path in one visit of the thread's record, else the state (with
/// a stack when it may record a new lock-order edge). An inversion it
/// reveals is reported.
#[inline]
pub fn acquired_now<B: Binding>(c: &'static LockCell, blocking: bool, entered: bool, b: &B) {
    let r = cell::with_thread(|t| {
        let site = b.site(Some(&mut *t));
        (t.acquired_fast(c, site, blocking, entered), site, t.me())
    });
    let inv = match r {
        Some((true, _, _)) => return,
        Some((false, site, me)) => with_edge_stack(c, blocking, b, || {
            cell::acquired_slow(c, me, site, blocking, 0, entered)
        }),
        None => {
            let site = b.site(None);
            cell::acquired_slow(c, crate::ident::current(), site, blocking, 0, entered)
        }
    };
    if let Some(inv) = inv {
        b.inversion(&inv);
    }
}

/// `wait_begin` for `me` on `c`, delivering a deadlock; `Err` (the wait
/// record closed again) when this thread must raise it.
fn begin_wait<B: Binding>(me: ThreadId, c: &LockCell, timed: bool, b: &B) -> Result<(), B::Error> {
    let g = global();
    if let Some(d) = g.wait_begin(me, c.id(), timed) {
        if let Some(e) = deliver(d, me, |d, raise| b.deadlock(d, raise)) {
            g.wait_end(me, c.id(), false);
            return Err(e);
        }
    }
    Ok(())
}

/// A blocking acquire of the lock of `c` by the calling thread, whose first
/// try failed: the whole wait with its bookkeeping (see the
/// module docs). `timed`: a timeout was given; `entered`: through
/// `__enter__`; `block` sleeps on the real lock until a deadline. Returns
/// whether the lock was taken, or the binding's error.
pub fn acquire_blocking<B, F>(
    c: &'static LockCell,
    timed: bool,
    entered: bool,
    block: F,
    b: &B,
) -> Result<bool, B::Error>
where
    B: Binding,
    F: Fn(Option<Deadline>) -> Acquire + Sync,
{
    let g = global();
    let (site, me) = cell::with_thread(|t| (b.site(Some(&mut *t)), t.me()))
        .unwrap_or_else(|| (b.site(None), crate::ident::current()));
    let start = monotonic_ns();
    if let Some(inv) = with_edge_stack(c, true, b, || cell::attempting(c, me, site)) {
        b.inversion(&inv);
    }
    begin_wait(me, c, timed, b)?;
    let poll = g.deadlock_mode() == DeadlockMode::Raise;
    // Under raise mode, a slice that ends is reported as an interruption,
    // which runs `between` (where a posted deadlock is collected).
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
    let mut between = || {
        if poll {
            if let Some(d) = g.take_deadlock(me) {
                if let Some(e) = b.deadlock(&d, true) {
                    return Err(e);
                }
            }
        }
        let before = cell::ops();
        b.run_handlers()?;
        if cell::ops() != before {
            // A handler took or released locks, which ended our wait record.
            g.wait_end(me, c.id(), false);
            begin_wait(me, c, timed, b)?;
        }
        Ok(())
    };
    let r = b.wait(&sliced, &mut between);
    let got = matches!(r, Ok(true));
    g.wait_end(me, c.id(), got);
    if got {
        let waited = monotonic_ns().saturating_sub(start).max(1);
        if let Some(inv) = cell::acquired(c, me, site, true, waited, entered) {
            b.inversion(&inv);
        }
    }
    r
}
