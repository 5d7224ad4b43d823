//! `_thread.lock` (`LockType`) and `_thread.RLock`.

use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use rsthread_core::{ident, RawLock, RawRLock};

use crate::args::{parse_acquire, UNSET_TIMEOUT};
use crate::wait::acquire_timed;
use crate::errors;

/// A lock object, as returned by `allocate_lock()`.
#[pyclass(name = "lock", module = "_thread", frozen, weakref)]
pub struct PyLock {
    pub(crate) raw: RawLock,
}

impl PyLock {
    pub fn new_unlocked() -> PyLock {
        PyLock { raw: RawLock::new() }
    }

    /// Acquire with a parsed timeout (ns; `UNSET_TIMEOUT` forever; 0 try).
    #[inline]
    pub(crate) fn acquire_ns(&self, py: Python<'_>, timeout: i64) -> PyResult<bool> {
        if self.raw.try_acquire() {
            return Ok(true);
        }
        if timeout == 0 {
            return Ok(false);
        }
        acquire_timed(py, timeout, |d| self.raw.acquire(d))
    }
}

#[pymethods]
impl PyLock {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn __new__(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Err(PyTypeError::new_err("cannot create '_thread.lock' instances"))
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
    #[pyo3(signature = (*args, **kwargs))]
    fn acquire(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<bool> {
        if args.is_empty() && kwargs.is_none() {
            if self.raw.try_acquire() {
                return Ok(true);
            }
            return acquire_timed(py, UNSET_TIMEOUT, |d| self.raw.acquire(d));
        }
        let timeout = parse_acquire(py, args, kwargs)?;
        self.acquire_ns(py, timeout)
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
    #[pyo3(signature = (*args, **kwargs))]
    fn acquire_lock(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<bool> {
        self.acquire(py, args, kwargs)
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
    #[pyo3(signature = (*args, **kwargs))]
    fn __enter__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<bool> {
        self.acquire(py, args, kwargs)
    }

    /// release()
    /// (release_lock() is an obsolete synonym)
    ///
    /// Release the lock, allowing another thread that is blocked waiting for
    /// the lock to acquire the lock.  The lock must be in the locked state,
    /// but it needn't be locked by the same thread that unlocks it.
    fn release(&self) -> PyResult<()> {
        self.raw.release().map_err(|_| errors::release_unlocked())
    }

    /// release()
    /// (release_lock() is an obsolete synonym)
    ///
    /// Release the lock, allowing another thread that is blocked waiting for
    /// the lock to acquire the lock.  The lock must be in the locked state,
    /// but it needn't be locked by the same thread that unlocks it.
    fn release_lock(&self) -> PyResult<()> {
        self.release()
    }

    /// release()
    /// (release_lock() is an obsolete synonym)
    ///
    /// Release the lock, allowing another thread that is blocked waiting for
    /// the lock to acquire the lock.  The lock must be in the locked state,
    /// but it needn't be locked by the same thread that unlocks it.
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release()
    }

    /// locked() -> bool
    /// (locked_lock() is an obsolete synonym)
    ///
    /// Return whether the lock is in the locked state.
    fn locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// locked() -> bool
    /// (locked_lock() is an obsolete synonym)
    ///
    /// Return whether the lock is in the locked state.
    fn locked_lock(&self) -> bool {
        self.raw.is_locked()
    }

    fn _at_fork_reinit(&self) {
        self.raw.reinit_after_fork();
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        format!(
            "<{} _thread.lock object at {:p}>",
            if slf.get().raw.is_locked() { "locked" } else { "unlocked" },
            slf.as_ptr()
        )
    }
}

/// A reentrant lock.
#[pyclass(name = "RLock", module = "_thread", subclass, frozen, weakref)]
pub struct PyRLock {
    pub(crate) raw: RawRLock,
}

#[pymethods]
impl PyRLock {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn __new__(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        PyRLock { raw: RawRLock::new() }
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
    #[pyo3(signature = (*args, **kwargs))]
    fn acquire(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<bool> {
        let timeout = if args.is_empty() && kwargs.is_none() {
            UNSET_TIMEOUT
        } else {
            parse_acquire(py, args, kwargs)?
        };
        let me = ident::current();
        match self.raw.try_acquire(me) {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(_) => return Err(PyOverflowError::new_err("Internal lock count overflowed")),
        }
        if timeout == 0 {
            return Ok(false);
        }
        acquire_timed(py, timeout, |d| self.raw.acquire_contended(me, d))
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
    #[pyo3(signature = (*args, **kwargs))]
    fn __enter__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<bool> {
        self.acquire(py, args, kwargs)
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
    fn release(&self) -> PyResult<()> {
        self.raw
            .release(ident::current())
            .map_err(|_| PyRuntimeError::new_err("cannot release un-acquired lock"))
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
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release()
    }

    /// _is_owned() -> bool
    ///
    /// For internal use by `threading.Condition`.
    fn _is_owned(&self) -> bool {
        self.raw.is_owned_by(ident::current())
    }

    /// _recursion_count() -> int
    ///
    /// For internal use by reentrancy checks.
    fn _recursion_count(&self) -> u64 {
        if self.raw.is_owned_by(ident::current()) { self.raw.count() } else { 0 }
    }

    /// _release_save() -> tuple
    ///
    /// For internal use by `threading.Condition`.
    fn _release_save(&self) -> PyResult<(u64, u64)> {
        self.raw
            .release_save()
            .ok_or_else(|| PyRuntimeError::new_err("cannot release un-acquired lock"))
    }

    /// _acquire_restore(state) -> None
    ///
    /// For internal use by `threading.Condition`.
    #[pyo3(signature = (*args))]
    fn _acquire_restore(&self, py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<()> {
        let (count, owner) = crate::args::parse_restore_state(args)?;
        if !self.raw.try_acquire_inner() {
            // Not interruptible, like stock: the GIL is released and we wait.
            py.detach(|| self.raw.acquire_inner_blocking());
        }
        self.raw.restore(owner, count);
        Ok(())
    }

    fn _at_fork_reinit(&self) {
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
