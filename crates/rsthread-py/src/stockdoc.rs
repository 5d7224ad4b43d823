//! Docstrings and text signatures as the running interpreter's stock
//! `_thread` has them.
//!
//! Each CPython version words its docstrings differently, and from 3.12 on
//! (3.13 for most names) its Argument Clinic functions carry a text signature
//! (`allocate_lock.__text_signature__ == "($module, /)"`), which
//! `inspect.signature` and `help()` read. Rather than keep a copy per version,
//! the module's functions and the lock types' methods are given, at import,
//! the docstring of the same name in stock `_thread` (always importable: it
//! is built in), with stock's text signature in front in CPython's
//! `name(sig)\n--\n\n` form. Only public C API is used: the function pointer
//! and flags of the existing function are kept, only its `PyMethodDef`'s
//! `ml_doc` differs.

use std::ffi::{c_char, CString};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyModule, PyType};

/// Leak `s` as a C string: a `PyMethodDef` keeps pointers to its name and doc
/// for as long as the function or descriptor lives, i.e. the process.
fn leak(s: &str) -> PyResult<*const c_char> {
    Ok(Box::leak(c_string(s)?.into_boxed_c_str()).as_ptr())
}

fn c_string(s: &str) -> PyResult<CString> {
    CString::new(s).map_err(|_| pyo3::exceptions::PyValueError::new_err("NUL in a docstring"))
}

/// The `ml_doc` CPython would hold for stock's `name`: its text signature (if
/// it has one) in front of its docstring; `None` when it has neither.
fn internal_doc(name: &str, stock: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    let sig: Option<String> = stock
        .getattr("__text_signature__")
        .ok()
        .and_then(|s| s.extract().ok())
        .flatten();
    let doc: Option<String> = stock.getattr("__doc__")?.extract()?;
    Ok(match (sig, doc) {
        (Some(sig), doc) => Some(format!("{name}{sig}\n--\n\n{}", doc.unwrap_or_default())),
        (None, doc) => doc,
    })
}

/// Whether `ours` already shows stock's docstring and text signature.
fn same_doc(stock: &Bound<'_, PyAny>, ours: &Bound<'_, PyAny>) -> PyResult<bool> {
    let get = |o: &Bound<'_, PyAny>, a: &str| -> PyResult<Option<String>> {
        match o.getattr(a) {
            Ok(v) => v.extract(),
            Err(_) => Ok(None),
        }
    };
    Ok(get(stock, "__doc__")? == get(ours, "__doc__")?
        && get(stock, "__text_signature__")? == get(ours, "__text_signature__")?)
}

/// A copy of the builtin function (or bound builtin method) `f`'s method
/// definition with `doc` as its docstring; `None` when `f` is not a plain
/// builtin function.
fn def_with_doc(
    name: &str,
    f: &Bound<'_, PyAny>,
    doc: Option<&str>,
) -> PyResult<Option<&'static mut ffi::PyMethodDef>> {
    // SAFETY: attached; a type check on a live object.
    if unsafe { ffi::PyCFunction_Check(f.as_ptr()) } == 0 {
        return Ok(None);
    }
    // SAFETY: attached; `f` is a builtin function (checked above), which is
    // what these accessors require; they return its definition's fields.
    let (meth, flags) = unsafe {
        (
            ffi::PyCFunction_GetFunction(f.as_ptr()),
            ffi::PyCFunction_GetFlags(f.as_ptr()),
        )
    };
    // METH_METHOD functions need the defining class (PyCMethod_New); none of
    // ours are, and a static or class method is not what is re-made here.
    if flags & (ffi::METH_METHOD | ffi::METH_CLASS | ffi::METH_STATIC) != 0 {
        return Ok(None);
    }
    let Some(meth) = meth else { return Ok(None) };
    let ml_doc = match doc {
        Some(d) => leak(d)?,
        None => std::ptr::null(),
    };
    // Leaked: the function object or descriptor points at its PyMethodDef for
    // its whole life, and these live as long as the module's types.
    Ok(Some(Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: leak(name)?,
        // The union's members are the same pointer, cast by CPython according
        // to `ml_flags`, which are copied unchanged.
        ml_meth: ffi::PyMethodDefPointer { PyCFunction: meth },
        ml_flags: flags,
        ml_doc,
    }))))
}

/// Give the module's functions stock's docstrings and text signatures.
fn module_functions(m: &Bound<'_, PyModule>, stock: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let names: Vec<String> = m.dir()?.extract()?;
    for name in names {
        let Ok(s) = stock.getattr(name.as_str()) else {
            continue;
        };
        let ours = m.getattr(name.as_str())?;
        if same_doc(&s, &ours)? {
            continue;
        }
        let doc = internal_doc(&name, &s)?;
        let Some(def) = def_with_doc(&name, &ours, doc.as_deref())? else {
            continue;
        };
        let module_name = ours.getattr("__module__")?;
        // SAFETY: attached; `ours` is a builtin function (checked by
        // `def_with_doc`), so this returns its bound self (borrowed, may be NULL).
        let slf = unsafe { ffi::PyCFunction_GetSelf(ours.as_ptr()) };
        // SAFETY: attached; `def` is 'static; `slf` is NULL or kept alive by
        // the new function (it takes a reference); returns a new reference or NULL.
        let f = unsafe { ffi::PyCFunction_NewEx(def, slf, module_name.as_ptr()) };
        if f.is_null() {
            return Err(PyErr::fetch(py));
        }
        // SAFETY: a new, non-NULL reference.
        m.setattr(name.as_str(), unsafe { Bound::from_owned_ptr(py, f) })?;
    }
    Ok(())
}

/// Give `tp`'s methods the docstrings and text signatures of stock's
/// `stock_tp`; `inst` is an instance of `tp` (bound methods expose the
/// function pointer through public API, method descriptors do not).
fn type_methods(
    tp: &Bound<'_, PyType>,
    stock_tp: &Bound<'_, PyAny>,
    inst: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = tp.py();
    let stock_dict = stock_tp.getattr("__dict__")?;
    let ours_dict = tp.getattr("__dict__")?;
    let names: Vec<String> = stock_dict
        .call_method0("keys")?
        .try_iter()?
        .map(|k| k?.extract())
        .collect::<PyResult<_>>()?;
    for name in names {
        let s = stock_dict.get_item(name.as_str())?;
        if s.get_type().name()? != "method_descriptor" {
            continue;
        }
        let Ok(ours) = ours_dict.get_item(name.as_str()) else {
            continue;
        };
        if ours.get_type().name()? != "method_descriptor" || same_doc(&s, &ours)? {
            continue;
        }
        let doc = internal_doc(&name, &s)?;
        let bound = inst.getattr(name.as_str())?;
        let Some(def) = def_with_doc(&name, &bound, doc.as_deref())? else {
            continue;
        };
        // SAFETY: attached; `def` is 'static; returns a new reference or NULL.
        let descr = unsafe { ffi::PyDescr_NewMethod(tp.as_type_ptr(), def) };
        if descr.is_null() {
            return Err(PyErr::fetch(py));
        }
        // SAFETY: a new, non-NULL reference. type.__setattr__ on our heap type
        // also invalidates the method cache.
        tp.setattr(name.as_str(), unsafe { Bound::from_owned_ptr(py, descr) })?;
    }
    Ok(())
}

/// Give the type `tp` stock's `__doc__` and text signature (`lock()` from
/// 3.13; none for most). A heap type's `__text_signature__` is parsed from
/// its `tp_doc`, its `__doc__` read from its dict: both are set.
fn type_doc(tp: &Bound<'_, PyType>, stock_tp: &Bound<'_, PyAny>) -> PyResult<()> {
    if same_doc(stock_tp, tp.as_any())? {
        return Ok(());
    }
    let name: String = stock_tp.getattr("__name__")?.extract()?;
    let doc = internal_doc(&name, stock_tp)?;
    let c = doc.as_deref().map(c_string).transpose()?;
    let t = tp.as_type_ptr();
    // SAFETY: attached; `t` is our heap type (made by PyO3 through
    // PyType_FromSpec), whose `tp_doc` CPython allocated with PyObject_Malloc
    // and frees with PyObject_Free when the type dies: the replacement is
    // allocated the same way, and the old one freed, before anything reads
    // it again (we hold the GIL).
    unsafe {
        let new_doc = match &c {
            Some(c) => {
                let bytes = c.as_bytes_with_nul();
                let p = ffi::PyObject_Malloc(bytes.len()) as *mut c_char;
                if p.is_null() {
                    return Err(pyo3::exceptions::PyMemoryError::new_err(()));
                }
                std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, p, bytes.len());
                p as *const c_char
            }
            None => std::ptr::null(),
        };
        let old = (*t).tp_doc;
        (*t).tp_doc = new_doc;
        ffi::PyObject_Free(old as *mut std::ffi::c_void);
    }
    tp.setattr("__doc__", stock_tp.getattr("__doc__")?)
}

/// Apply stock's docstrings and text signatures to the module `m` (called
/// last in module initialisation, after every function and fast entry point
/// is in place).
pub(crate) fn apply(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let stock = PyModule::import(py, "_thread")?;
    module_functions(m, &stock)?;
    let lock = m.getattr("LockType")?;
    type_methods(
        lock.cast()?,
        &stock.getattr("LockType")?,
        &m.getattr("allocate_lock")?.call0()?,
    )?;
    for name in ["LockType", "RLock", "_local", "_ThreadHandle"] {
        if let (Ok(ours), Ok(s)) = (m.getattr(name), stock.getattr(name)) {
            type_doc(ours.cast()?, &s)?;
        }
    }
    let rlock = m.getattr("RLock")?;
    type_methods(rlock.cast()?, &stock.getattr("RLock")?, &rlock.call0()?)?;
    Ok(())
}
