//! `_thread.lock` (`LockType`) and `_thread.RLock`.

use pyo3::exceptions::{PyOverflowError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::sync::atomic::AtomicU64;

use rsthread_core::{diag, ident, RawLock, RawRLock};

use crate::args::{parse_acquire, UNSET_TIMEOUT};
use crate::wait::acquire_timed;
use crate::errors;

/// A lock object, as returned by `allocate_lock()`.
#[pyclass(name = "lock", module = "_thread", frozen, weakref)]
pub struct PyLock {
    pub(crate) raw: RawLock,
    /// Diagnostics id (0: never seen by diagnostics), see `crate::diag`.
    pub(crate) diag: AtomicU64,
}

impl Drop for PyLock {
    fn drop(&mut self) {
        crate::diag::lock_dropped(&self.diag);
    }
}

impl PyLock {
    /// Make `LockType` non-instantiable exactly like stock (no `tp_new`):
    /// `LockType()` raises "cannot create '_thread.lock' instances" and
    /// `LockType.__new__` is `object.__new__`.
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

    pub fn new_unlocked() -> PyLock {
        PyLock { raw: RawLock::new(), diag: AtomicU64::new(0) }
    }

    /// Acquire with a parsed timeout (ns; `UNSET_TIMEOUT` forever; 0 try).
    #[inline]
    pub(crate) fn acquire_ns(&self, py: Python<'_>, timeout: i64) -> PyResult<bool> {
        if diag::flags() != 0 {
            return crate::diag::lock_acquire(py, self, timeout);
        }
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
        if args.is_empty() && kwargs.is_none() {
            if diag::flags() != 0 {
                return crate::diag::lock_acquire(py, self, UNSET_TIMEOUT);
            }
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
    #[pyo3(signature = (*args, **kwargs), text_signature = None)]
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
    #[pyo3(signature = (*args, **kwargs), text_signature = None)]
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
    #[pyo3(text_signature = None)]
    fn release(&self) -> PyResult<()> {
        if diag::flags() != 0 {
            return crate::diag::lock_release(self);
        }
        self.raw.release().map_err(|_| errors::release_unlocked())
    }

    /// release()
    /// (release_lock() is an obsolete synonym)
    ///
    /// Release the lock, allowing another thread that is blocked waiting for
    /// the lock to acquire the lock.  The lock must be in the locked state,
    /// but it needn't be locked by the same thread that unlocks it.
    #[pyo3(text_signature = None)]
    fn release_lock(&self) -> PyResult<()> {
        self.release()
    }

    /// release()
    /// (release_lock() is an obsolete synonym)
    ///
    /// Release the lock, allowing another thread that is blocked waiting for
    /// the lock to acquire the lock.  The lock must be in the locked state,
    /// but it needn't be locked by the same thread that unlocks it.
    #[pyo3(signature = (*_args, **kwargs), text_signature = None)]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
        crate::args::no_keywords("lock.__exit__", kwargs)?;
        self.release()
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
    /// Diagnostics id (0: never seen by diagnostics), see `crate::diag`.
    pub(crate) diag: AtomicU64,
}

impl Drop for PyRLock {
    fn drop(&mut self) {
        crate::diag::lock_dropped(&self.diag);
    }
}

#[pymethods]
impl PyRLock {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs), text_signature = None)]
    fn __new__(py: Python<'_>, _args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        let l = PyRLock { raw: RawRLock::new(), diag: AtomicU64::new(0) };
        if diag::flags() != 0 {
            crate::diag::lock_created(py, &l.diag, diag::LockKind::RLock);
        }
        l
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
        let timeout = if args.is_empty() && kwargs.is_none() {
            UNSET_TIMEOUT
        } else {
            parse_acquire(py, args, kwargs)?
        };
        if diag::flags() != 0 {
            return crate::diag::rlock_acquire(py, self, timeout);
        }
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
    #[pyo3(signature = (*args, **kwargs), text_signature = None)]
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
    #[pyo3(text_signature = None)]
    fn release(&self) -> PyResult<()> {
        let me = ident::current();
        if diag::flags() != 0 {
            crate::diag::rlock_release(self, me);
        }
        self.raw
            .release(me)
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
    #[pyo3(signature = (*_args, **kwargs), text_signature = None)]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
        crate::args::no_keywords("RLock.__exit__", kwargs)?;
        self.release()
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
        if self.raw.is_owned_by(ident::current()) { self.raw.count() } else { 0 }
    }

    /// _release_save() -> tuple
    ///
    /// For internal use by `threading.Condition`.
    #[pyo3(text_signature = None)]
    fn _release_save(&self) -> PyResult<(u64, u64)> {
        if diag::flags() != 0 {
            crate::diag::rlock_release_save(self);
        }
        self.raw
            .release_save()
            .ok_or_else(|| PyRuntimeError::new_err("cannot release un-acquired lock"))
    }

    /// _acquire_restore(state) -> None
    ///
    /// For internal use by `threading.Condition`.
    #[pyo3(signature = (*args, **kwargs), text_signature = None)]
    fn _acquire_restore(&self, py: Python<'_>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
        crate::args::no_keywords("RLock._acquire_restore", kwargs)?;
        let (count, owner) = crate::args::parse_restore_state(args)?;
        if diag::flags() != 0 {
            crate::diag::rlock_acquire_restore(py, self, owner, count);
            return Ok(());
        }
        if !self.raw.try_acquire_inner() {
            // Not interruptible, like stock: the GIL is released and we wait.
            py.detach(|| self.raw.acquire_inner_blocking());
        }
        self.raw.restore(owner, count);
        Ok(())
    }

    #[pyo3(text_signature = None)]
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
