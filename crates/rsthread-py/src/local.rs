//! `_thread._local`: thread-local attribute namespaces.
//!
//! ## Ownership (why cycles can be collected)
//!
//! * Each `_local` owns one attribute dict per thread (`state.dicts`, keyed
//!   by that thread's token id) and reports them to the GC in `__traverse__`,
//!   so a cycle such as `x.local.x = x` is collectable.
//! * Each thread owns one [`LocalToken`], stored in its thread-state dict.
//!   The token keeps *weak* references to the locals that have a dict for
//!   this thread. When the thread state is cleared (the thread ends), the
//!   token dies and removes this thread's dict from every live local, so the
//!   thread's values die in the dying thread, before its `_set_sentinel`
//!   lock is released (what `Thread.join` waits for).
//! * When a `_local` dies, its dicts die with it; tokens only hold dead
//!   weak references to it, pruned as they accumulate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use pyo3::exceptions::{PyAttributeError, PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple, PyWeakrefReference};
use pyo3::{PyTraverseError, PyVisit};

use crate::errors::tp_name;

/// Ids for tokens (threads) and locals; never reused.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    // Relaxed: only uniqueness matters.
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

thread_local! {
    /// The AttributeError raised by the last failed `__getattribute__` in this thread.
    static LAST_ATTR_ERROR: std::cell::RefCell<Option<PyErr>> = const { std::cell::RefCell::new(None) };
}

const TOKEN_KEY: &str = "_rsthread_local_token";

/// One per thread, kept in the thread-state dict.
#[pyclass(module = "_thread", frozen)]
pub struct LocalToken {
    id: u64,
    locals: Mutex<Vec<Py<PyWeakrefReference>>>,
}

impl Drop for LocalToken {
    fn drop(&mut self) {
        let weak = std::mem::take(&mut *self.locals.lock().unwrap_or_else(|e| e.into_inner()));
        if weak.is_empty() {
            return;
        }
        // A token is only dropped by the thread-state dict, with the GIL held,
        // so this attach is a no-op that just hands us the token.
        Python::attach(|py| {
            for w in weak {
                if let Some(local) = w.bind(py).upgrade() {
                    if let Ok(local) = local.cast::<PyLocal>() {
                        let d = local
                            .get()
                            .state
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .dicts
                            .remove(&self.id);
                        drop(d); // outside the mutex: values' __del__ may run here
                    }
                }
            }
        });
    }
}

fn current_token<'py>(py: Python<'py>) -> PyResult<Bound<'py, LocalToken>> {
    // SAFETY: attached; returns a borrowed dict or NULL without a thread state.
    let d = unsafe { ffi::PyThreadState_GetDict() };
    if d.is_null() {
        return Err(PyRuntimeError::new_err("no thread state dict"));
    }
    // SAFETY: `d` is a live dict borrowed from the thread state.
    let tdict = unsafe { Bound::from_borrowed_ptr(py, d) }.cast_into::<PyDict>()?;
    if let Some(t) = tdict.get_item(TOKEN_KEY)? {
        if let Ok(t) = t.cast_into::<LocalToken>() {
            return Ok(t);
        }
    }
    let t = Bound::new(
        py,
        LocalToken {
            id: next_id(),
            locals: Mutex::new(Vec::new()),
        },
    )?;
    tdict.set_item(TOKEN_KEY, &t)?;
    Ok(t)
}

struct LocalState {
    /// Token id of the thread that constructed the local: `__init__` already
    /// ran there (called by the type), so its dict must not re-run it.
    creator: u64,
    args: Option<Py<PyTuple>>,
    kwargs: Option<Py<PyDict>>,
    dicts: HashMap<u64, Py<PyDict>>,
}

/// Thread-local data
#[pyclass(name = "_local", module = "_thread", subclass, frozen, weakref)]
pub struct PyLocal {
    state: Mutex<LocalState>,
}

/// A type slot's address: both sides come from C type structs, so comparing
/// addresses is exactly CPython's `tp_init != PyBaseObject_Type.tp_init`.
fn slot_addr(f: Option<ffi::initproc>) -> usize {
    f.map_or(0, |f| f as *const () as usize)
}

fn overrides_init(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: reading tp_init of live type objects.
    unsafe {
        slot_addr((*ffi::Py_TYPE(obj.as_ptr())).tp_init)
            != slot_addr((*std::ptr::addr_of_mut!(ffi::PyBaseObject_Type)).tp_init)
    }
}

impl PyLocal {
    fn lock(&self) -> std::sync::MutexGuard<'_, LocalState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This thread's dict, created (and `__init__` re-run) on first use.
    fn ldict<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        let token = current_token(py)?;
        let id = token.get().id;
        if let Some(d) = slf.get().lock().dicts.get(&id) {
            return Ok(d.bind(py).clone());
        }
        let d = Self::create_dict(slf, &token)?;
        let creator = slf.get().lock().creator;
        if id != creator && overrides_init(slf.as_any()) {
            let (args, kwargs) = {
                let st = slf.get().lock();
                (
                    st.args.as_ref().map(|a| a.clone_ref(py)),
                    st.kwargs.as_ref().map(|k| k.clone_ref(py)),
                )
            };
            let args = args.map_or_else(|| PyTuple::empty(py), |a| a.into_bound(py));
            let init = slf.get_type().getattr("__init__")?;
            let mut call_args = vec![slf.as_any().clone()];
            call_args.extend(args.iter());
            if let Err(e) = init.call(
                PyTuple::new(py, call_args)?,
                kwargs.as_ref().map(|k| k.bind(py)),
            ) {
                // Forget the dict so the next access retries, like stock.
                let old = slf.get().lock().dicts.remove(&id);
                drop(old);
                return Err(e);
            }
        }
        Ok(d)
    }

    fn create_dict<'py>(
        slf: &Bound<'py, Self>,
        token: &Bound<'py, LocalToken>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        let d = PyDict::new(py);
        let weak = PyWeakrefReference::new(slf.as_any())?;
        slf.get()
            .lock()
            .dicts
            .insert(token.get().id, d.clone().unbind());
        let mut locals = token.get().locals.lock().unwrap_or_else(|e| e.into_inner());
        if locals.len() >= 16 && locals.len().is_power_of_two() {
            // Prune weak references to dead locals (amortised).
            locals.retain(|w| w.bind(py).upgrade().is_some());
        }
        locals.push(weak.unbind());
        Ok(d)
    }

    fn is_dict_name(name: &Bound<'_, PyAny>) -> PyResult<bool> {
        name.eq(pyo3::intern!(name.py(), "__dict__"))
    }
}

#[pymethods]
impl PyLocal {
    #[new]
    #[classmethod]
    #[pyo3(signature = (*args, **kwargs))]
    fn __new__(
        cls: &Bound<'_, pyo3::types::PyType>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        // SAFETY: reading tp_init of live type objects.
        let plain_init = unsafe {
            slot_addr((*cls.as_type_ptr()).tp_init)
                == slot_addr((*std::ptr::addr_of_mut!(ffi::PyBaseObject_Type)).tp_init)
        };
        if plain_init && (!args.is_empty() || kwargs.is_some_and(|k| !k.is_empty())) {
            return Err(PyTypeError::new_err(
                "Initialization arguments are not supported",
            ));
        }
        let creator = current_token(cls.py())?.get().id;
        Ok(PyLocal {
            state: Mutex::new(LocalState {
                creator,
                args: Some(args.clone().unbind()),
                kwargs: kwargs.map(|k| k.clone().unbind()),
                dicts: HashMap::new(),
            }),
        })
    }

    fn __getattribute__(slf: &Bound<'_, Self>, name: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let ldict = Self::ldict(slf)?;
        if Self::is_dict_name(name)? {
            return Ok(ldict.into_any().unbind());
        }
        if slf.get_type().is(py.get_type::<PyLocal>()) {
            if let Some(v) = ldict.get_item(name)? {
                return Ok(v.unbind());
            }
        }
        // SAFETY: attached; all three pointers are live; returns a new
        // reference or NULL with an exception set.
        let r = unsafe {
            crate::cpython::getattr_with_dict(slf.as_ptr(), name.as_ptr(), ldict.as_ptr())
        };
        if r.is_null() {
            let e = PyErr::fetch(py);
            if e.is_instance_of::<PyAttributeError>(py) {
                // PyO3 routes an AttributeError from __getattribute__ to
                // __getattr__; keep the original (exact message, name/obj
                // context) for it to re-raise.
                LAST_ATTR_ERROR.with(|c| *c.borrow_mut() = Some(e.clone_ref(py)));
            }
            return Err(e);
        }
        // SAFETY: `r` is a new, non-NULL reference.
        Ok(unsafe { Bound::from_owned_ptr(py, r) }.unbind())
    }

    fn __getattr__(slf: &Bound<'_, Self>, name: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let _ = slf;
        Err(LAST_ATTR_ERROR
            .with(|c| c.borrow_mut().take())
            .unwrap_or_else(|| PyAttributeError::new_err((name.clone().unbind(),))))
    }

    fn __setattr__(
        slf: &Bound<'_, Self>,
        name: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        Self::set_or_del(slf, name, Some(value))
    }

    fn __delattr__(slf: &Bound<'_, Self>, name: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::set_or_del(slf, name, None)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // try_lock: the GC may run while this thread holds the mutex (it never
        // allocates under it, but be safe); unvisited references only make the
        // GC more conservative, never wrong.
        if let Ok(st) = self.state.try_lock() {
            visit.call(&st.args)?;
            visit.call(&st.kwargs)?;
            for d in st.dicts.values() {
                visit.call(d)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let taken = {
            let mut st = self.lock();
            (
                st.args.take(),
                st.kwargs.take(),
                std::mem::take(&mut st.dicts),
            )
        };
        drop(taken);
    }
}

impl PyLocal {
    fn set_or_del(
        slf: &Bound<'_, Self>,
        name: &Bound<'_, PyAny>,
        value: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let ldict = Self::ldict(slf)?;
        if Self::is_dict_name(name)? {
            let tp = tp_name(&slf.get_type())?;
            // 3.14+ (and later 3.13 patch releases) format the name with
            // %R: any object may compare equal to "__dict__" here. Before,
            // '%U', which only a str reaches; for a str both read the same
            // unless it needs escapes.
            let n = match name.cast::<PyString>() {
                Ok(s) if !cfg!(Py_3_14) => format!("'{}'", s.to_cow()?),
                _ => name.repr()?.to_string(),
            };
            return Err(PyAttributeError::new_err(format!(
                "'{tp:.50}' object attribute {n} is read-only"
            )));
        }
        let v = value.map_or(std::ptr::null_mut(), |v| v.as_ptr());
        // SAFETY: attached; live pointers (value may be NULL for delete);
        // returns -1 with an exception set on failure.
        if unsafe {
            crate::cpython::setattr_with_dict(slf.as_ptr(), name.as_ptr(), v, ldict.as_ptr())
        } < 0
        {
            return Err(PyErr::fetch(py));
        }
        Ok(())
    }
}
