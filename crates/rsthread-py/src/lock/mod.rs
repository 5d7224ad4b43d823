//! `_thread.lock` (`LockType`) and `_thread.RLock`.
//!
//! The paths taken while diagnostics are on are in [`diagnosed`]; the ones
//! here check `diag::global().flags()` (one Relaxed load) and hand over.

pub(crate) mod diagnosed;

use pyo3::exceptions::{PyOverflowError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
// std atomics, not the core's `sync` shim: the binding is never built under loom.
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use rsthread_core::{diag, ident, RawLock, RawRLock, SpinScore};

use crate::args::{acquire_lock_name, parse_acquire, UNSET_TIMEOUT};
use crate::errors;
use crate::wait::acquire_timed;

/// How many threads may write a lock's state without holding the GIL: its
/// waiters, from before they detach until they are attached again. While
/// there are none, every writer holds the GIL, so the hot paths may use the
/// core's `_exclusive` forms (no locked instruction; see
/// `rsthread_core::lock`). Changed and read only with the GIL held, which
/// orders it (and the lock states it guards) between threads.
#[derive(Default)]
pub(crate) struct Outside(AtomicU32);

impl Outside {
    /// A lock some thread releases after its thread state is gone (no GIL):
    /// never exclusive.
    const FOREVER: u32 = 1 << 30;

    /// Whether no thread may write the lock's state without the GIL.
    #[inline]
    pub(crate) fn none(&self, _py: Python<'_>) -> bool {
        // Without a GIL nothing orders the count: always the atomic paths.
        if cfg!(Py_GIL_DISABLED) {
            return false;
        }
        // Relaxed: only accessed with the GIL held (see the type's docs).
        self.0.load(Ordering::Relaxed) == 0
    }

    /// Run `wait` (which detaches and touches the lock's state without
    /// the GIL) counted as outside. If `wait` never returns (a thread ended
    /// at finalization), the lock just stays on the atomic paths.
    #[inline]
    pub(crate) fn around<R>(&self, _py: Python<'_>, wait: impl FnOnce() -> R) -> R {
        // Relaxed: the GIL orders the count (see the type's docs).
        self.0.fetch_add(1, Ordering::Relaxed);
        let r = wait();
        // Relaxed: as above.
        self.0.fetch_sub(1, Ordering::Relaxed);
        r
    }

    /// Mark the lock as written without the GIL for the rest of its life.
    pub(crate) fn forever(&self) {
        // Relaxed: set before the lock is shared (at creation).
        self.0.store(Self::FOREVER, Ordering::Relaxed);
    }

    /// After `fork`: the child's only thread is the caller; no waiter
    /// survived (a lock marked `forever` stays so).
    fn reset_after_fork(&self) {
        // Relaxed: the GIL is held, and the child has one thread.
        let v = self.0.load(Ordering::Relaxed);
        if v < Self::FOREVER {
            self.0.store(0, Ordering::Relaxed);
        }
    }
}

/// A lock object, as returned by `allocate_lock()`.
#[pyclass(name = "lock", module = "_thread", frozen, weakref)]
pub struct PyLock {
    pub(crate) raw: RawLock,
    /// Threads that may write `raw` without the GIL (see [`Outside`]).
    pub(crate) outside: Outside,
    /// Whether blocking acquires spin before sleeping (lives in what would
    /// be padding: the object stays the size of stock's).
    pub(crate) spin: SpinScore,
    /// This lock's diagnostics cell, a `&'static LockCell` (null: never
    /// seen by diagnostics), see [`diagnosed`].
    pub(crate) diag_cell: AtomicPtr<diag::LockCell>,
}

impl Drop for PyLock {
    fn drop(&mut self) {
        diagnosed::lock_dropped(&self.diag_cell);
    }
}

impl PyLock {
    /// Make `LockType` non-instantiable exactly like stock (no `tp_new`):
    /// `LockType()` raises "cannot create '_thread.lock' instances" and
    /// `LockType.__new__` is `object.__new__`.
    #[cfg_attr(Py_3_13, allow(dead_code))]
    pub(crate) fn disallow_instantiation(py: Python<'_>) -> PyResult<()> {
        let tp = py.get_type::<PyLock>();
        // SAFETY: attached; the type was just created by this module and no
        // instance has been made through tp_new; clearing the slot and the
        // dict entry then invalidating the type cache is how CPython itself
        // treats Py_TPFLAGS_DISALLOW_INSTANTIATION types.
        unsafe {
            let t = tp.as_type_ptr();
            (*t).tp_new = None;
            (*t).tp_flags |= pyo3::ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION;
            let dict = (*t).tp_dict;
            if !dict.is_null() && pyo3::ffi::PyDict_DelItemString(dict, c"__new__".as_ptr()) < 0 {
                pyo3::ffi::PyErr_Clear();
            }
            pyo3::ffi::PyType_Modified(t);
        }
        Ok(())
    }

    /// A new lock for Python code (`allocate_lock()`, 3.13+'s `lock()`),
    /// registered with diagnostics (its creation site) when they are on.
    #[inline]
    pub(crate) fn new_registered(py: Python<'_>) -> PyLock {
        let l = PyLock::new_unlocked();
        if diag::global().flags() != 0 {
            diagnosed::lock_created(py, &l.diag_cell, diag::LockKind::Lock);
        }
        l
    }

    pub fn new_unlocked() -> PyLock {
        PyLock {
            raw: RawLock::new(),
            outside: Outside::default(),
            spin: SpinScore::new(),
            diag_cell: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Non-blocking acquire, with the GIL held.
    #[inline]
    pub(crate) fn try_acquire_attached(&self, py: Python<'_>) -> bool {
        if self.outside.none(py) {
            // SAFETY: the GIL is held and no thread writes `raw` without it
            // now (see `Outside`), so every writer is ordered by the GIL.
            unsafe { self.raw.try_acquire_exclusive() }
        } else {
            self.raw.try_acquire()
        }
    }

    /// Release, with the GIL held.
    #[inline]
    pub(crate) fn release_attached(&self, py: Python<'_>) -> Result<(), rsthread_core::NotLocked> {
        if self.outside.none(py) {
            // SAFETY: as in `try_acquire_attached`.
            unsafe { self.raw.release_exclusive() }
        } else {
            self.raw.release()
        }
    }

    /// Acquire with a parsed timeout (ns; `UNSET_TIMEOUT` forever; 0 try).
    #[inline]
    pub(crate) fn acquire_ns(&self, py: Python<'_>, timeout: i64) -> PyResult<bool> {
        self.acquire_ns_as(py, timeout, false)
    }

    /// [`acquire_ns`](Self::acquire_ns); `entered`: called as `__enter__`
    /// (diagnostics count such a hold as owned: its release is `__exit__`).
    #[inline]
    pub(crate) fn acquire_ns_as(
        &self,
        py: Python<'_>,
        timeout: i64,
        entered: bool,
    ) -> PyResult<bool> {
        if diag::global().flags() != 0 {
            return diagnosed::lock_acquire(py, self, timeout, entered);
        }
        if self.try_acquire_attached(py) {
            return Ok(true);
        }
        if timeout == 0 {
            return Ok(false);
        }
        self.outside.around(py, || {
            acquire_timed(py, timeout, |d| self.raw.acquire_adaptive(d, &self.spin))
        })
    }
}

#[pymethods]
impl PyLock {
    /// 3.13+: `threading.Lock` is `_thread.lock`, and `lock()` makes an
    /// unlocked lock. A real `tp_new` given at type creation, so that CPython
    /// makes `lock.__new__` itself (its checks and messages, as stock's).
    #[cfg(Py_3_13)]
    #[new]
    #[pyo3(signature = (*args, **kwargs), text_signature = None)]
    fn py_new(
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyLock> {
        versions::lock_new_args(args, kwargs)?;
        Ok(PyLock::new_registered(py))
    }

    /// acquire(blocking=True, timeout=-1) -> bool
    /// (acquire_lock() is an obsolete synonym)
    ///
    /// Lock the lock.  Without argument, this blocks if the lock is already
    /// locked (even by the same thread), waiting for another thread to release
    /// the lock, and return True once the lock is acquired.
    /// With an argument, this will only block if the argument is true,
    /// and the return value reflects whether the lock is acquired.
    /// The blocking operation is interruptible.
    #[pyo3(signature = (*args, **kwargs), text_signature = None)]
    fn acquire(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<bool> {
        self.acquire_ns(py, acquire_timeout(py, "acquire", args, kwargs)?)
    }

    /// release()
    /// (release_lock() is an obsolete synonym)
    ///
    /// Release the lock, allowing another thread that is blocked waiting for
    /// the lock to acquire the lock.  The lock must be in the locked state,
    /// but it needn't be locked by the same thread that unlocks it.
    #[pyo3(text_signature = None)]
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        if diag::global().flags() != 0 {
            return diagnosed::lock_release(self);
        }
        self.release_attached(py)
            .map_err(|_| errors::release_unlocked())
    }

    /// locked() -> bool
    /// (locked_lock() is an obsolete synonym)
    ///
    /// Return whether the lock is in the locked state.
    #[pyo3(text_signature = None)]
    fn locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// locked() -> bool
    /// (locked_lock() is an obsolete synonym)
    ///
    /// Return whether the lock is in the locked state.
    #[pyo3(text_signature = None)]
    fn locked_lock(&self) -> bool {
        self.raw.is_locked()
    }

    #[pyo3(text_signature = None)]
    fn _at_fork_reinit(&self) {
        if diag::global().flags() != 0 {
            diagnosed::lock_reinit(&self.diag_cell);
        }
        self.outside.reset_after_fork();
        self.raw.reinit_after_fork();
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        format!(
            "<{} _thread.lock object at {:p}>",
            if slf.get().raw.is_locked() {
                "locked"
            } else {
                "unlocked"
            },
            slf.as_ptr()
        )
    }
}

impl PyRLock {
    /// `_acquire_restore` once its state is parsed: take the lock (not
    /// interruptible, like stock) and set its owner and count.
    pub(crate) fn restore_state(&self, py: Python<'_>, count: u64, owner: u64) {
        if diag::global().flags() != 0 {
            diagnosed::rlock_acquire_restore(py, self, owner, count);
            return;
        }
        if !self.raw.try_acquire_inner() {
            // Not interruptible, like stock: the GIL is released and we wait.
            self.outside
                .around(py, || py.detach(|| self.raw.acquire_inner_blocking()));
        }
        self.raw.restore(owner, count);
    }

    /// Acquire with a parsed timeout (ns; `UNSET_TIMEOUT` forever; 0 try).
    #[inline]
    pub(crate) fn acquire_ns(&self, py: Python<'_>, timeout: i64) -> PyResult<bool> {
        if diag::global().flags() != 0 {
            return diagnosed::rlock_acquire(py, self, timeout);
        }
        let me = ident::current();
        let r = if self.outside.none(py) {
            // SAFETY: as in `PyLock::try_acquire_attached`.
            unsafe { self.raw.try_acquire_exclusive(me) }
        } else {
            self.raw.try_acquire(me)
        };
        match r {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(_) => return Err(PyOverflowError::new_err("Internal lock count overflowed")),
        }
        if timeout == 0 {
            return Ok(false);
        }
        self.outside.around(py, || {
            acquire_timed(py, timeout, |d| self.raw.acquire_contended(me, d))
        })
    }
}

/// The timeout of `name(*args, **kwargs)`, an acquire (no arguments:
/// forever); `name` is the method's in argument errors.
fn acquire_timeout(
    py: Python<'_>,
    name: &str,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<i64> {
    if args.is_empty() && kwargs.is_none() {
        Ok(UNSET_TIMEOUT)
    } else {
        parse_acquire(py, name, args, kwargs)
    }
}

/// A reentrant lock.
#[pyclass(name = "RLock", module = "_thread", subclass, frozen, weakref)]
pub struct PyRLock {
    pub(crate) raw: RawRLock,
    /// Threads that may write `raw` without the GIL (see [`Outside`]).
    pub(crate) outside: Outside,
    /// This lock's diagnostics cell, a `&'static LockCell` (null: never
    /// seen by diagnostics), see [`diagnosed`].
    pub(crate) diag_cell: AtomicPtr<diag::LockCell>,
}

impl Drop for PyRLock {
    fn drop(&mut self) {
        diagnosed::lock_dropped(&self.diag_cell);
    }
}

#[pymethods]
impl PyRLock {
    #[new]
    #[classmethod]
    #[pyo3(signature = (*_args, **_kwargs), text_signature = None)]
    fn __new__(
        cls: &Bound<'_, pyo3::types::PyType>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let py = cls.py();
        // 3.15: `RLock()` itself takes no arguments (subclasses may).
        if cls.is(py.get_type::<PyRLock>()) {
            versions::rlock_new_args(_args, _kwargs)?;
        }
        let l = PyRLock {
            raw: RawRLock::new(),
            outside: Outside::default(),
            diag_cell: AtomicPtr::new(std::ptr::null_mut()),
        };
        if diag::global().flags() != 0 {
            diagnosed::lock_created(py, &l.diag_cell, diag::LockKind::RLock);
        }
        Ok(l)
    }

    /// acquire(blocking=True) -> bool
    ///
    /// Lock the lock.  `blocking` indicates whether we should wait
    /// for the lock to be available or not.  If `blocking` is False
    /// and another thread holds the lock, the method will return False
    /// immediately.  If `blocking` is True and another thread holds
    /// the lock, the method will wait for the lock to be released,
    /// take it and then return True.
    /// (note: the blocking operation is interruptible.)
    ///
    /// In all other cases, the method will return True immediately.
    /// Precisely, if the current thread already holds the lock, its
    /// internal counter is simply incremented. If nobody holds the lock,
    /// the lock is taken and its internal counter initialized to 1.
    #[pyo3(signature = (*args, **kwargs), text_signature = None)]
    fn acquire(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<bool> {
        self.acquire_ns(py, acquire_timeout(py, "acquire", args, kwargs)?)
    }

    /// release()
    ///
    /// Release the lock, allowing another thread that is blocked waiting for
    /// the lock to acquire the lock.  The lock must be in the locked state,
    /// and must be locked by the same thread that unlocks it; otherwise a
    /// `RuntimeError` is raised.
    ///
    /// Do note that if the lock was acquire()d several times in a row by the
    /// current thread, release() needs to be called as many times for the lock
    /// to be available for other threads.
    #[pyo3(text_signature = None)]
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let me = ident::current();
        if diag::global().flags() != 0 {
            diagnosed::rlock_release(self, me);
        }
        let r = if self.outside.none(py) {
            // SAFETY: as in `PyLock::try_acquire_attached`.
            unsafe { self.raw.release_exclusive(me) }
        } else {
            self.raw.release(me)
        };
        r.map_err(|_| PyRuntimeError::new_err("cannot release un-acquired lock"))
    }

    /// _is_owned() -> bool
    ///
    /// For internal use by `threading.Condition`.
    #[pyo3(text_signature = None)]
    fn _is_owned(&self) -> bool {
        self.raw.is_owned_by(ident::current())
    }

    /// _recursion_count() -> int
    ///
    /// For internal use by reentrancy checks.
    #[pyo3(text_signature = None)]
    fn _recursion_count(&self) -> u64 {
        if self.raw.is_owned_by(ident::current()) {
            self.raw.count()
        } else {
            0
        }
    }

    /// _release_save() -> tuple
    ///
    /// For internal use by `threading.Condition`.
    #[pyo3(text_signature = None)]
    fn _release_save(&self) -> PyResult<(u64, u64)> {
        // 3.14+ (a recursive mutex underneath) refuses a lock another thread
        // holds; up to 3.13 only an unheld one.
        if cfg!(Py_3_14) && !self.raw.is_owned_by(ident::current()) {
            return Err(PyRuntimeError::new_err("cannot release un-acquired lock"));
        }
        if diag::global().flags() != 0 {
            diagnosed::rlock_release_save(self);
        }
        self.raw
            .release_save()
            .ok_or_else(|| PyRuntimeError::new_err("cannot release un-acquired lock"))
    }

    /// _acquire_restore(state) -> None
    ///
    /// For internal use by `threading.Condition`.
    #[pyo3(signature = (*args, **kwargs), text_signature = None)]
    fn _acquire_restore(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        crate::args::no_keywords("RLock._acquire_restore", kwargs)?;
        #[cfg(not(Py_3_15))]
        let (count, owner) = crate::args::parse_restore_state(args)?;
        // 3.15's is a METH_O entry point (see `fast`); this is only reached
        // by a direct call of the PyO3 method, with the state as args[0].
        #[cfg(Py_3_15)]
        let (count, owner) = match args.len() {
            1 => crate::args::parse_restore_state_obj(&args.get_item(0)?)?,
            n => {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "RLock._acquire_restore() takes exactly one argument ({n} given)"
                )))
            }
        };
        self.restore_state(py, count, owner);
        Ok(())
    }

    #[pyo3(text_signature = None)]
    fn _at_fork_reinit(&self) {
        if diag::global().flags() != 0 {
            diagnosed::lock_reinit(&self.diag_cell);
        }
        self.outside.reset_after_fork();
        self.raw.reinit_after_fork();
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let r = &slf.get().raw;
        let count = r.count();
        let tp = slf.get_type();
        let name = crate::errors::tp_name(&tp)?;
        Ok(format!(
            "<{} {} object owner={} count={} at {:p}>",
            if count > 0 { "locked" } else { "unlocked" },
            name,
            r.owner() as i64,
            count,
            slf.as_ptr()
        ))
    }
}

/// Raw `METH_FASTCALL` / `METH_NOARGS` entry points for the hot methods.
///
/// PyO3's generated wrappers cost a few tens of nanoseconds per call (GIL
/// bookkeeping, panic guards, `*args`/`**kwargs` tuple and dict building),
/// which is most of a lock round trip. At module init these functions
/// replace the PyO3 methods of the same name in the type dicts. They handle
/// the common shapes inline (no arguments; `acquire(False)`;
/// `acquire(True, <float or int>)`) and hand everything else, and every
/// call while diagnostics are on, to the PyO3 methods above, so argument
/// errors and behaviour stay exactly those already tested.
///
/// They are `extern "C"`: a panic cannot unwind into CPython (it aborts),
/// and nothing here panics by design.
mod fast {
    use super::*;
    use pyo3::ffi;

    type Fast = unsafe extern "C" fn(
        *mut ffi::PyObject,
        *const *mut ffi::PyObject,
        ffi::Py_ssize_t,
        *mut ffi::PyObject,
    ) -> *mut ffi::PyObject;
    type NoArgs =
        unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::PyObject) -> *mut ffi::PyObject;

    #[inline]
    unsafe fn py_bool(b: bool) -> *mut ffi::PyObject {
        // SAFETY: the bool singletons are immortal in effect; we return a new
        // reference (the inline Py_INCREF: no call on the hot path).
        unsafe {
            let o = if b { ffi::Py_True() } else { ffi::Py_False() };
            ffi::Py_INCREF(o);
            o
        }
    }

    #[inline]
    unsafe fn py_none() -> *mut ffi::PyObject {
        // SAFETY: as above.
        unsafe {
            let o = ffi::Py_None();
            ffi::Py_INCREF(o);
            o
        }
    }

    /// `slf` as the class the descriptor was installed on.
    ///
    /// # Safety
    /// `slf` must be a live instance of `T` (method descriptors check the
    /// receiver's type before calling) and the GIL must be held.
    /// Borrowed, not owned: the caller's reference keeps `slf` alive for the
    /// call, and no reference count is touched on the hot path.
    #[inline]
    unsafe fn this<'a, 'py, T: pyo3::PyClass>(
        py: Python<'py>,
        slf: *mut ffi::PyObject,
    ) -> pyo3::Borrowed<'a, 'py, T> {
        // SAFETY: per the contract above.
        unsafe { pyo3::Borrowed::from_ptr(py, slf).cast_unchecked::<T>() }
    }

    /// `__exit__` takes no keyword arguments (stock's METH_VARARGS).
    ///
    /// # Safety
    /// `kwnames` is NULL or a tuple, as CPython passes it.
    unsafe fn no_kwnames(name: &str, kwnames: *mut ffi::PyObject) -> PyResult<()> {
        // SAFETY: per the contract above.
        if !kwnames.is_null() && unsafe { ffi::PyTuple_GET_SIZE(kwnames) } > 0 {
            return crate::args::no_keywords_err(name);
        }
        Ok(())
    }

    /// Convert a PyResult into the C-API convention.
    unsafe fn ret<T>(
        py: Python<'_>,
        r: PyResult<T>,
        conv: impl FnOnce(T) -> *mut ffi::PyObject,
    ) -> *mut ffi::PyObject {
        match r {
            Ok(v) => conv(v),
            Err(e) => {
                e.restore(py);
                std::ptr::null_mut()
            }
        }
    }

    /// Rebuild `(*args, **kwargs)` from a vectorcall for the general path.
    unsafe fn general<'py>(
        py: Python<'py>,
        args: *const *mut ffi::PyObject,
        nargsf: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> PyResult<(Bound<'py, PyTuple>, Option<Bound<'py, PyDict>>)> {
        // SAFETY: CPython passes `nargs` positional arguments followed by one
        // value per name in `kwnames`, all borrowed for the call.
        unsafe {
            let nargs = ffi::PyVectorcall_NARGS(nargsf as usize) as usize;
            let pos: Vec<Bound<'py, PyAny>> = (0..nargs)
                .map(|i| Bound::from_borrowed_ptr(py, *args.add(i)))
                .collect();
            let tuple = PyTuple::new(py, pos)?;
            if kwnames.is_null() {
                return Ok((tuple, None));
            }
            let names = Bound::from_borrowed_ptr(py, kwnames).cast_into::<PyTuple>()?;
            let dict = PyDict::new(py);
            for (i, name) in names.iter().enumerate() {
                dict.set_item(name, Bound::from_borrowed_ptr(py, *args.add(nargs + i)))?;
            }
            Ok((tuple, Some(dict)))
        }
    }

    /// Timeout (ns) for `acquire(True, t)` when `t` is a plain non-negative
    /// float or int well inside every limit; `None`: use the general parser.
    #[inline]
    unsafe fn simple_timeout(t: *mut ffi::PyObject) -> Option<i64> {
        // SAFETY: `t` is a live borrowed object; exact-type checks before access.
        unsafe {
            if ffi::PyFloat_CheckExact(t) != 0 {
                let d = ffi::PyFloat_AS_DOUBLE(t);
                if (0.0..1e9).contains(&d) {
                    return Some((d * 1e9).ceil() as i64);
                }
                return None;
            }
            if ffi::PyLong_CheckExact(t) != 0 {
                let mut overflow = 0;
                let v = ffi::PyLong_AsLongAndOverflow(t, &mut overflow);
                if overflow == 0 && (0..1_000_000_000).contains(&v) {
                    return Some(v as i64 * 1_000_000_000);
                }
            }
            None
        }
    }

    /// The timeout for the fast shapes: `()`, `(bool,)`, `(True, number)`;
    /// `None`: use the general parser.
    #[inline]
    unsafe fn fast_timeout(
        args: *const *mut ffi::PyObject,
        nargsf: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> Option<i64> {
        // SAFETY: as in `general`.
        unsafe {
            if !kwnames.is_null() {
                return None;
            }
            match ffi::PyVectorcall_NARGS(nargsf as usize) {
                0 => Some(UNSET_TIMEOUT),
                1 => {
                    let b = *args;
                    if b == ffi::Py_True() {
                        Some(UNSET_TIMEOUT)
                    } else if b == ffi::Py_False() {
                        Some(0)
                    } else {
                        None
                    }
                }
                2 if *args == ffi::Py_True() => simple_timeout(*args.add(1)),
                _ => None,
            }
        }
    }

    /// What the shared entry points below need of `lock` and `RLock`.
    trait Hot: pyo3::PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync {
        /// `__exit__`'s name in its "takes no keyword arguments" error.
        const EXIT: &'static str;
        fn acquire_ns(&self, py: Python<'_>, timeout: i64) -> PyResult<bool>;
        /// `acquire_ns` called as `__enter__` (see `PyLock::acquire_ns_as`).
        fn enter_ns(&self, py: Python<'_>, timeout: i64) -> PyResult<bool> {
            self.acquire_ns(py, timeout)
        }
        /// The general path of `name(*a, **k)`, an acquire.
        fn acquire_checked(
            &self,
            py: Python<'_>,
            name: &str,
            a: &Bound<'_, PyTuple>,
            k: Option<&Bound<'_, PyDict>>,
        ) -> PyResult<bool>;
        fn release_checked(&self, py: Python<'_>) -> PyResult<()>;
    }

    impl Hot for PyLock {
        const EXIT: &'static str = "lock.__exit__";
        fn acquire_ns(&self, py: Python<'_>, timeout: i64) -> PyResult<bool> {
            PyLock::acquire_ns(self, py, timeout)
        }
        fn enter_ns(&self, py: Python<'_>, timeout: i64) -> PyResult<bool> {
            PyLock::acquire_ns_as(self, py, timeout, true)
        }
        fn acquire_checked(
            &self,
            py: Python<'_>,
            name: &str,
            a: &Bound<'_, PyTuple>,
            k: Option<&Bound<'_, PyDict>>,
        ) -> PyResult<bool> {
            self.acquire_ns(py, acquire_timeout(py, name, a, k)?)
        }
        fn release_checked(&self, py: Python<'_>) -> PyResult<()> {
            self.release(py)
        }
    }

    impl Hot for PyRLock {
        const EXIT: &'static str = "RLock.__exit__";
        fn acquire_ns(&self, py: Python<'_>, timeout: i64) -> PyResult<bool> {
            PyRLock::acquire_ns(self, py, timeout)
        }
        fn acquire_checked(
            &self,
            py: Python<'_>,
            name: &str,
            a: &Bound<'_, PyTuple>,
            k: Option<&Bound<'_, PyDict>>,
        ) -> PyResult<bool> {
            self.acquire_ns(py, acquire_timeout(py, name, a, k)?)
        }
        fn release_checked(&self, py: Python<'_>) -> PyResult<()> {
            self.release(py)
        }
    }

    /// Which method an [`acquire`] entry point is.
    const ACQUIRE: u8 = 0;
    /// `lock.acquire_lock` (its own name in argument errors from 3.15).
    const ACQUIRE_LOCK: u8 = 1;
    /// `__enter__` before 3.15 (an alias of `acquire`).
    #[cfg_attr(Py_3_15, allow(dead_code))]
    const ENTER: u8 = 2;

    /// `acquire` / `acquire_lock` / (before 3.15) `__enter__` of `lock` and
    /// `RLock`, per `KIND`. `__enter__` with arguments (never done by `with`)
    /// takes the general path and counts as a plain `acquire`.
    unsafe extern "C" fn acquire<T: Hot, const KIND: u8>(
        slf: *mut ffi::PyObject,
        args: *const *mut ffi::PyObject,
        nargsf: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject {
        // SAFETY: CPython calls this with the GIL held and `slf` an instance
        // of `T` (or a subclass: the descriptor checks the type).
        unsafe {
            let py = Python::assume_attached();
            let l = this::<T>(py, slf);
            let r = match fast_timeout(args, nargsf, kwnames) {
                Some(t) if KIND == ENTER => l.get().enter_ns(py, t),
                Some(t) => l.get().acquire_ns(py, t),
                None => {
                    let name = if KIND == ACQUIRE_LOCK {
                        acquire_lock_name()
                    } else {
                        "acquire"
                    };
                    general(py, args, nargsf, kwnames)
                        .and_then(|(a, k)| l.get().acquire_checked(py, name, &a, k.as_ref()))
                }
            };
            ret(py, r, |b| py_bool(b))
        }
    }

    /// 3.15+: `__enter__` takes no arguments (`METH_NOARGS`: CPython
    /// refuses any, in its own words) and acquires without a timeout.
    #[cfg(Py_3_15)]
    unsafe extern "C" fn enter<T: Hot>(
        slf: *mut ffi::PyObject,
        _unused: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject {
        // SAFETY: as in acquire.
        unsafe {
            let py = Python::assume_attached();
            let r = this::<T>(py, slf).get().enter_ns(py, UNSET_TIMEOUT);
            ret(py, r, |b| py_bool(b))
        }
    }

    /// `release` / `release_lock`.
    unsafe extern "C" fn release<T: Hot>(
        slf: *mut ffi::PyObject,
        _unused: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject {
        // SAFETY: as in acquire.
        unsafe {
            let py = Python::assume_attached();
            ret(py, this::<T>(py, slf).get().release_checked(py), |()| {
                py_none()
            })
        }
    }

    /// `__exit__(*args)`: a release; keywords refused like stock's METH_VARARGS.
    unsafe extern "C" fn exit<T: Hot>(
        slf: *mut ffi::PyObject,
        _args: *const *mut ffi::PyObject,
        _nargsf: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject {
        // SAFETY: as in acquire.
        unsafe {
            let py = Python::assume_attached();
            let r = no_kwnames(T::EXIT, kwnames)
                .and_then(|()| {
                    super::versions::exit_arity(ffi::PyVectorcall_NARGS(_nargsf as usize))
                })
                .and_then(|()| this::<T>(py, slf).get().release_checked(py));
            ret(py, r, |()| py_none())
        }
    }

    unsafe extern "C" fn rlock_is_owned(
        slf: *mut ffi::PyObject,
        _unused: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject {
        // SAFETY: as in acquire, with `slf` an RLock (or subclass) instance.
        unsafe {
            let py = Python::assume_attached();
            py_bool(this::<PyRLock>(py, slf).get()._is_owned())
        }
    }

    unsafe extern "C" fn rlock_release_save(
        slf: *mut ffi::PyObject,
        _unused: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject {
        // SAFETY: as in acquire, with `slf` an RLock (or subclass) instance; `ret` builds the (count, owner) tuple.
        unsafe {
            let py = Python::assume_attached();
            ret(
                py,
                this::<PyRLock>(py, slf).get()._release_save(),
                |(c, o)| {
                    let t = ffi::PyTuple_New(2);
                    if !t.is_null() {
                        ffi::PyTuple_SET_ITEM(t, 0, ffi::PyLong_FromUnsignedLongLong(c));
                        ffi::PyTuple_SET_ITEM(t, 1, ffi::PyLong_FromUnsignedLongLong(o));
                    }
                    t
                },
            )
        }
    }

    /// `_acquire_restore`'s common shape: `state` an exact 2-tuple of exact
    /// ints in range, read as the parser would (3.14+ reads the count as a
    /// Py_ssize_t; 3.15 warns about an owner out of `unsigned long`'s range,
    /// so such an owner takes the general path too). `None`: not that shape
    /// (or diagnostics are on); nothing was done.
    ///
    /// # Safety
    /// `st` is a live borrowed object; the GIL is held.
    #[inline]
    unsafe fn restore_state_fast(st: *mut ffi::PyObject) -> Option<(u64, u64)> {
        // SAFETY: per the contract; exact-type checks before each access.
        unsafe {
            if diag::global().flags() != 0
                || ffi::PyTuple_CheckExact(st) == 0
                || ffi::PyTuple_GET_SIZE(st) != 2
            {
                return None;
            }
            let (c, o) = (ffi::PyTuple_GET_ITEM(st, 0), ffi::PyTuple_GET_ITEM(st, 1));
            if ffi::PyLong_CheckExact(c) == 0 || ffi::PyLong_CheckExact(o) == 0 {
                return None;
            }
            let count = if cfg!(Py_3_14) {
                let n = ffi::PyLong_AsSsize_t(c);
                if n == -1 && !ffi::PyErr_Occurred().is_null() {
                    ffi::PyErr_Clear();
                    return None;
                }
                n as u64
            } else {
                ffi::PyLong_AsUnsignedLongMask(c) as u64
            };
            let owner = if cfg!(Py_3_15) {
                let v = ffi::PyLong_AsUnsignedLong(o);
                if v == std::os::raw::c_ulong::MAX && !ffi::PyErr_Occurred().is_null() {
                    ffi::PyErr_Clear();
                    return None;
                }
                v as u64
            } else {
                ffi::PyLong_AsUnsignedLongMask(o) as u64
            };
            Some((count, owner))
        }
    }

    /// `RLock._acquire_restore(state)` before 3.15 (`METH_VARARGS` in stock).
    #[cfg(not(Py_3_15))]
    unsafe extern "C" fn rlock_acquire_restore(
        slf: *mut ffi::PyObject,
        args: *const *mut ffi::PyObject,
        nargsf: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject {
        // SAFETY: as in acquire, with `slf` an RLock (or subclass) instance;
        // `args` holds `nargs` live objects.
        unsafe {
            let py = Python::assume_attached();
            let this = this::<PyRLock>(py, slf);
            let l = this.get();
            if kwnames.is_null() && ffi::PyVectorcall_NARGS(nargsf as usize) == 1 {
                if let Some((count, owner)) = restore_state_fast(*args) {
                    l.restore_state(py, count, owner);
                    return py_none();
                }
            }
            let r = general(py, args, nargsf, kwnames)
                .and_then(|(a, k)| l._acquire_restore(py, &a, k.as_ref()));
            ret(py, r, |()| py_none())
        }
    }

    /// 3.15+: `RLock._acquire_restore(state, /)` is `METH_O` (CPython checks
    /// the argument count and keywords in its own words).
    #[cfg(Py_3_15)]
    unsafe extern "C" fn rlock_acquire_restore(
        slf: *mut ffi::PyObject,
        state: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject {
        // SAFETY: as in acquire, with `slf` an RLock (or subclass) instance
        // and `state` a live borrowed object.
        unsafe {
            let py = Python::assume_attached();
            let this = this::<PyRLock>(py, slf);
            let l = this.get();
            let r = match restore_state_fast(state) {
                Some(co) => Ok(co),
                None => crate::args::parse_restore_state_obj(&Bound::from_borrowed_ptr(py, state)),
            };
            ret(py, r.map(|(c, o)| l.restore_state(py, c, o)), |()| {
                py_none()
            })
        }
    }

    enum Entry {
        Fast(Fast),
        NoArgs(NoArgs),
        /// `METH_O`: the one argument in place of the unused one.
        #[cfg_attr(not(Py_3_15), allow(dead_code))]
        One(NoArgs),
    }

    fn install_one(
        tp: &Bound<'_, pyo3::types::PyType>,
        name: &'static std::ffi::CStr,
        entry: Entry,
    ) -> PyResult<()> {
        let py = tp.py();
        let (meth, flags) = match entry {
            Entry::Fast(f) => (
                ffi::PyMethodDefPointer {
                    PyCFunctionFastWithKeywords: f,
                },
                ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            ),
            Entry::NoArgs(f) => (ffi::PyMethodDefPointer { PyCFunction: f }, ffi::METH_NOARGS),
            Entry::One(f) => (ffi::PyMethodDefPointer { PyCFunction: f }, ffi::METH_O),
        };
        // Leaked: a method descriptor keeps a pointer to its PyMethodDef for
        // as long as the type lives, i.e. the process.
        let def = Box::leak(Box::new(ffi::PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth: meth,
            ml_flags: flags,
            // The docstring (and text signature) is stock's own, given by
            // `stockdoc::apply` last in module initialisation.
            ml_doc: std::ptr::null(),
        }));
        // SAFETY: attached; `def` is 'static; returns a new reference or NULL.
        let descr = unsafe { ffi::PyDescr_NewMethod(tp.as_type_ptr(), def) };
        if descr.is_null() {
            return Err(PyErr::fetch(py));
        }
        // SAFETY: a new, non-NULL reference.
        let descr = unsafe { Bound::from_owned_ptr(py, descr) };
        // type.__setattr__ on our heap type also invalidates the method cache.
        tp.setattr(name.to_str().expect("ascii"), descr)
    }

    /// `__enter__`: 3.15+ takes no arguments; before, an alias of `acquire`.
    fn enter_entry<T: Hot>() -> Entry {
        #[cfg(Py_3_15)]
        return Entry::NoArgs(enter::<T>);
        #[cfg(not(Py_3_15))]
        return Entry::Fast(acquire::<T, ENTER>);
    }

    /// `RLock._acquire_restore`: 3.15+ `METH_O`; before, `METH_VARARGS`.
    fn restore_entry() -> Entry {
        #[cfg(Py_3_15)]
        return Entry::One(rlock_acquire_restore);
        #[cfg(not(Py_3_15))]
        return Entry::Fast(rlock_acquire_restore);
    }

    /// Replace the hot methods of `lock` and `RLock` by the raw entry points.
    pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
        let lock = py.get_type::<PyLock>();
        for (n, e) in [
            (
                c"acquire_lock",
                Entry::Fast(acquire::<PyLock, ACQUIRE_LOCK>),
            ),
            (c"__enter__", enter_entry::<PyLock>()),
            (c"release_lock", Entry::NoArgs(release::<PyLock>)),
            (c"__exit__", Entry::Fast(exit::<PyLock>)),
            (c"acquire", Entry::Fast(acquire::<PyLock, ACQUIRE>)),
            (c"release", Entry::NoArgs(release::<PyLock>)),
        ] {
            install_one(&lock, n, e)?;
        }
        let rlock = py.get_type::<PyRLock>();
        for (n, e) in [
            (c"__enter__", enter_entry::<PyRLock>()),
            (c"__exit__", Entry::Fast(exit::<PyRLock>)),
            (c"acquire", Entry::Fast(acquire::<PyRLock, ACQUIRE>)),
            (c"release", Entry::NoArgs(release::<PyRLock>)),
            (c"_is_owned", Entry::NoArgs(rlock_is_owned)),
            (c"_release_save", Entry::NoArgs(rlock_release_save)),
            (c"_acquire_restore", restore_entry()),
        ] {
            install_one(&rlock, n, e)?;
        }
        Ok(())
    }
}

pub(crate) use fast::install as install_fast_methods;

/// Per-version additions to the lock types (CPython 3.13+), installed at
/// module init by `version_extras`. Kept apart from the code above so that
/// each version's surface is in one place.
mod versions {
    #[cfg_attr(not(Py_3_13), allow(unused_imports))]
    use pyo3::ffi;
    use pyo3::prelude::*;

    /// `RLock.locked()` (3.14+): whether any thread holds it.
    ///
    /// # Safety
    /// Called by CPython as a `METH_NOARGS` method of `RLock`, GIL held.
    #[cfg(Py_3_14)]
    unsafe extern "C" fn rlock_locked(
        slf: *mut ffi::PyObject,
        _unused: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject {
        // SAFETY: the method descriptor checked that `slf` is an RLock.
        let r = unsafe {
            Bound::from_borrowed_ptr(Python::assume_attached(), slf)
                .cast_into_unchecked::<super::PyRLock>()
        };
        let o = if r.get().raw.is_locked() {
            // SAFETY: a new reference to a singleton.
            unsafe { ffi::Py_True() }
        } else {
            // SAFETY: as above.
            unsafe { ffi::Py_False() }
        };
        // SAFETY: returning a new reference.
        unsafe { ffi::Py_IncRef(o) };
        o
    }

    /// 3.15+: `__exit__` takes exactly the three exception arguments.
    #[inline]
    pub(super) fn exit_arity(nargs: ffi::Py_ssize_t) -> PyResult<()> {
        if cfg!(Py_3_15) && nargs != 3 {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "__exit__ expected 3 arguments, got {nargs}"
            )));
        }
        Ok(())
    }

    /// `lock()` (3.13+) takes no arguments; the words changed in 3.15, and
    /// 3.15 checks the positional ones first.
    #[cfg(Py_3_13)]
    pub(super) fn lock_new_args(
        args: &Bound<'_, pyo3::types::PyTuple>,
        kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<()> {
        if cfg!(Py_3_15) && !args.is_empty() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "lock() takes no positional arguments",
            ));
        }
        if kwargs.is_some_and(|k| !k.is_empty()) {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "lock() takes no keyword arguments",
            ));
        }
        if !args.is_empty() {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "lock expected 0 arguments, got {}",
                args.len()
            )));
        }
        Ok(())
    }

    /// 3.15+: `RLock()` takes no arguments.
    pub(super) fn rlock_new_args(
        args: &Bound<'_, pyo3::types::PyTuple>,
        kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<()> {
        if cfg!(Py_3_15) {
            if !args.is_empty() {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "RLock() takes no positional arguments",
                ));
            }
            if kwargs.is_some_and(|k| !k.is_empty()) {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "RLock() takes no keyword arguments",
                ));
            }
        }
        Ok(())
    }

    pub(super) fn install(py: Python<'_>) -> PyResult<()> {
        #[cfg(Py_3_14)]
        {
            let def = Box::leak(Box::new(ffi::PyMethodDef {
                ml_name: c"locked".as_ptr(),
                ml_meth: ffi::PyMethodDefPointer {
                    PyCFunction: rlock_locked,
                },
                ml_flags: ffi::METH_NOARGS,
                ml_doc: c"locked($self, /)\n--\n\nReturn a boolean indicating whether this object is locked right now."
                    .as_ptr(),
            }));
            let tp = py.get_type::<super::PyRLock>();
            // SAFETY: attached; `def` is 'static; returns a new reference or NULL.
            let d = unsafe { ffi::PyDescr_NewMethod(tp.as_type_ptr(), def) };
            if d.is_null() {
                return Err(PyErr::fetch(py));
            }
            // SAFETY: a new, non-NULL reference.
            let d = unsafe { Bound::from_owned_ptr(py, d) };
            // SAFETY: attached; the type's own dict; invalidate the cache after.
            unsafe {
                let t = tp.as_type_ptr();
                if ffi::PyDict_SetItemString((*t).tp_dict, c"locked".as_ptr(), d.as_ptr()) < 0 {
                    return Err(PyErr::fetch(py));
                }
                ffi::PyType_Modified(t);
            }
        }
        let _ = py;
        Ok(())
    }
}

/// Install the lock types' per-version surface (see `versions`).
pub(crate) fn version_extras(py: Python<'_>) -> PyResult<()> {
    versions::install(py)
}
