//! Argument conversion with the running CPython's exact errors.
//!
//! `_thread` parses with `PyArg_ParseTupleAndKeywords` (3.11, 3.12) or
//! Argument Clinic (3.13+) and converts timeouts with CPython's time layer
//! (`_PyTime_FromSecondsObject`); the messages users see come from those
//! layers, so they are reproduced here rather than PyO3's own. The time
//! layer's overflow messages changed within 3.13's patch releases, so they
//! are read from the stock module at import ([`init`]).

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyFloat, PyString, PyTuple};

/// The time layer's overflow messages: (float out of range, int too large).
static OVERFLOW_MSGS: PyOnceLock<(String, String)> = PyOnceLock::new();

/// This version's defaults for [`OVERFLOW_MSGS`] (the latest patch release's).
const fn default_overflow_msgs() -> (&'static str, &'static str) {
    if cfg!(Py_3_13) {
        (
            "timestamp out of range for C PyTime_t",
            "timestamp out of range for C PyTime_t",
        )
    } else {
        (
            "timestamp out of range for platform time_t",
            "timestamp too large to convert to C _PyTime_t",
        )
    }
}

/// Read the time layer's overflow messages from the stock `_thread` of the
/// running interpreter (its lock's `acquire` reports them unchanged).
pub(crate) fn init(py: Python<'_>) {
    let probe = |t: Bound<'_, PyAny>| -> Option<String> {
        let stock = py.import("_thread").ok()?;
        // Only the interpreter's own module (ours has the same name).
        if stock.hasattr("__file__").ok()? {
            return None;
        }
        let lock = stock.getattr("allocate_lock").ok()?.call0().ok()?;
        let kw = PyDict::new(py);
        kw.set_item("timeout", t).ok()?;
        match lock.call_method("acquire", (), Some(&kw)) {
            Err(e) if e.is_instance_of::<PyOverflowError>(py) => {
                e.value(py).str().ok().map(|s| s.to_string())
            }
            _ => None,
        }
    };
    let (df, di) = default_overflow_msgs();
    let f = probe(PyFloat::new(py, 1e300).into_any()).unwrap_or_else(|| df.to_owned());
    let big = py.eval(c"10**30", None, None).ok();
    let i = big.and_then(probe).unwrap_or_else(|| di.to_owned());
    let _ = OVERFLOW_MSGS.set(py, (f, i));
}

fn overflow_msgs(py: Python<'_>) -> &(String, String) {
    OVERFLOW_MSGS.get_or_init(py, || {
        let (f, i) = default_overflow_msgs();
        (f.to_owned(), i.to_owned())
    })
}

/// `%T` of CPython's error messages: the type's fully qualified name
/// (without the `builtins` or `__main__` module).
fn fully_qualified_name(obj: &Bound<'_, PyAny>) -> String {
    let tp = obj.get_type();
    let qual = tp.qualname().map(|q| q.to_string()).unwrap_or_default();
    match tp.module().map(|m| m.to_string()) {
        Ok(m) if m != "builtins" && m != "__main__" => format!("{m}.{qual}"),
        _ => qual,
    }
}

/// `-1` second in nanoseconds: "no timeout" (CPython's `unset_timeout`).
pub const UNSET_TIMEOUT: i64 = -1_000_000_000;
/// `PY_TIMEOUT_MAX` on 64-bit Linux (microseconds): `LLONG_MAX / 1000`.
pub const PY_TIMEOUT_MAX_US: i64 = i64::MAX / 1000;

/// `PyLong_AsLong` then the `"i"` format's range check.
pub fn as_c_int(obj: &Bound<'_, PyAny>) -> PyResult<i32> {
    // SAFETY: `obj` is a valid object and we are attached; PyLong_AsLong
    // returns -1 with an exception set on failure, which we fetch.
    let v = unsafe { ffi::PyLong_AsLong(obj.as_ptr()) };
    if v == -1 {
        if let Some(e) = PyErr::take(obj.py()) {
            return Err(e);
        }
    }
    if v > i32::MAX as i64 {
        return Err(PyOverflowError::new_err(
            "signed integer is greater than maximum",
        ));
    }
    if v < i32::MIN as i64 {
        return Err(PyOverflowError::new_err(
            "signed integer is less than minimum",
        ));
    }
    Ok(v as i32)
}

fn round_timeout(x: f64) -> f64 {
    // _PyTime_ROUND_TIMEOUT rounds away from zero.
    if x >= 0.0 {
        x.ceil()
    } else {
        x.floor()
    }
}

/// `_PyTime_FromSecondsObject(obj, _PyTime_ROUND_TIMEOUT)`: seconds -> ns.
pub fn seconds_to_ns(obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    let py = obj.py();
    if let Ok(f) = obj.cast::<PyFloat>() {
        return float_seconds_to_ns(py, f.value());
    }
    // SAFETY: a valid object; a type-slot check only.
    let is_index = unsafe { ffi::PyIndex_Check(obj.as_ptr()) } != 0;
    if !is_index {
        // 3.15 takes any real number (`__float__`), and its errors are
        // `PyFloat_AsDouble`'s own ("must be real number, not X" with the
        // bare type name; a bad `__float__` in the interpreter's words);
        // 3.14 names both kinds.
        if cfg!(Py_3_15) {
            // SAFETY: valid object, attached; -1.0 with an exception on failure.
            let d = unsafe { ffi::PyFloat_AsDouble(obj.as_ptr()) };
            if d == -1.0 {
                if let Some(e) = PyErr::take(py) {
                    return Err(e);
                }
            }
            return float_seconds_to_ns(py, d);
        }
        if cfg!(Py_3_14) {
            return Err(PyTypeError::new_err(format!(
                "'{}' object cannot be interpreted as an integer or float",
                fully_qualified_name(obj)
            )));
        }
    }
    // SAFETY: valid object, attached; -1 with an exception on failure.
    let sec = unsafe { ffi::PyLong_AsLongLong(obj.as_ptr()) };
    if sec == -1 {
        if let Some(e) = PyErr::take(py) {
            if e.is_instance_of::<PyOverflowError>(py) {
                return Err(PyOverflowError::new_err(overflow_msgs(py).1.clone()));
            }
            // 3.14 words any type error of the conversion (a bad
            // `__index__` too) as the non-number one.
            if cfg!(Py_3_14) && !cfg!(Py_3_15) && e.is_instance_of::<PyTypeError>(py) {
                return Err(PyTypeError::new_err(format!(
                    "'{}' object cannot be interpreted as an integer or float",
                    fully_qualified_name(obj)
                )));
            }
            return Err(e);
        }
    }
    sec.checked_mul(1_000_000_000)
        .ok_or_else(|| PyOverflowError::new_err(overflow_msgs(py).1.clone()))
}

/// The float branch of [`seconds_to_ns`].
fn float_seconds_to_ns(py: Python<'_>, d: f64) -> PyResult<i64> {
    if d.is_nan() {
        return Err(PyValueError::new_err("Invalid value NaN (not a number)"));
    }
    let ns = round_timeout(d * 1e9);
    // _Py_InIntegralTypeRange(_PyTime_t, d), compared in double precision.
    if !(ns >= i64::MIN as f64 && ns <= i64::MAX as f64) {
        return Err(PyOverflowError::new_err(overflow_msgs(py).0.clone()));
    }
    // `as` saturates at the single value (2^63) the double check lets through.
    Ok(ns as i64)
}

/// The name `lock.acquire_lock` gives itself in its argument errors: its
/// own from 3.15 (a method of its own), `acquire` before (an alias).
pub const fn acquire_lock_name() -> &'static str {
    if cfg!(Py_3_15) {
        "acquire_lock"
    } else {
        "acquire"
    }
}

/// Parsed `acquire(blocking=True, timeout=-1)`: the timeout in ns, where
/// `UNSET_TIMEOUT` means forever and 0 means "try once". `name` is the
/// method's name in the argument errors: 3.15 parses `acquire_lock` under
/// its own name, earlier versions as `acquire` (see [`acquire_lock_name`]).
pub fn parse_acquire(
    py: Python<'_>,
    name: &str,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<i64> {
    let nargs = args.len();
    if nargs == 0 && kwargs.is_none() {
        return Ok(UNSET_TIMEOUT);
    }
    let nkw = kwargs.map_or(0, |k| k.len());
    if nargs + nkw > 2 {
        // getargs says "keyword arguments" when none were positional.
        let kind = if nargs == 0 { "keyword " } else { "" };
        return Err(PyTypeError::new_err(format!(
            "{name}() takes at most 2 {kind}arguments ({} given)",
            nargs + nkw
        )));
    }
    let mut blocking_obj: Option<Bound<'_, PyAny>> = args.get_item(0).ok();
    let mut timeout_obj: Option<Bound<'_, PyAny>> = args.get_item(1).ok();
    if let Some(kw) = kwargs {
        for (k, v) in kw.iter() {
            let key = k
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("keywords must be strings"))?;
            let key = key.to_cow()?;
            match &*key {
                "blocking" => {
                    if nargs >= 1 {
                        return Err(PyTypeError::new_err(format!(
                            "argument for {name}() given by name ('blocking') and position (1)"
                        )));
                    }
                    blocking_obj = Some(v);
                }
                "timeout" => {
                    if nargs >= 2 {
                        return Err(PyTypeError::new_err(format!(
                            "argument for {name}() given by name ('timeout') and position (2)"
                        )));
                    }
                    timeout_obj = Some(v);
                }
                other => {
                    return Err(PyTypeError::new_err(if cfg!(Py_3_13) {
                        format!("{name}() got an unexpected keyword argument '{other}'")
                    } else {
                        format!("'{other}' is an invalid keyword argument for {name}()")
                    }));
                }
            }
        }
    }
    let _ = py;
    let blocking = match &blocking_obj {
        // 3.12+ parses `blocking` with "p" (truthiness), 3.11 with "i".
        Some(b) if cfg!(Py_3_12) => b.is_truthy()?,
        Some(b) => as_c_int(b)? != 0,
        None => true,
    };
    let mut timeout = match &timeout_obj {
        Some(t) => seconds_to_ns(t)?,
        None => UNSET_TIMEOUT,
    };
    if !blocking && timeout != UNSET_TIMEOUT {
        return Err(PyValueError::new_err(
            "can't specify a timeout for a non-blocking call",
        ));
    }
    if timeout < 0 && timeout != UNSET_TIMEOUT {
        return Err(PyValueError::new_err(if cfg!(Py_3_13) {
            "timeout value must be a non-negative number"
        } else {
            "timeout value must be positive"
        }));
    }
    if !blocking {
        timeout = 0;
    } else if timeout != UNSET_TIMEOUT {
        // _PyTime_AsMicroseconds(timeout, ROUND_TIMEOUT) >= PY_TIMEOUT_MAX
        let us = timeout / 1000 + i64::from(timeout % 1000 != 0);
        if us >= PY_TIMEOUT_MAX_US {
            return Err(PyOverflowError::new_err("timeout value is too large"));
        }
    }
    Ok(timeout)
}

/// `PyArg_ParseTuple(args, "(kk):_acquire_restore")` -> `(count, owner)`;
/// 3.14 parses the count as a `Py_ssize_t` (`(nk)`: an index, and
/// "Python int too large to convert to C ssize_t"). 3.15 takes the state as
/// its one argument (`METH_O`): see [`parse_restore_state_obj`].
#[cfg(not(Py_3_15))]
pub fn parse_restore_state(args: &Bound<'_, PyTuple>) -> PyResult<(u64, u64)> {
    let mut owner: std::os::raw::c_ulong = 0;
    #[cfg(not(Py_3_14))]
    let mut count: std::os::raw::c_ulong = 0;
    #[cfg(Py_3_14)]
    let mut count: ffi::Py_ssize_t = 0;
    let fmt = if cfg!(Py_3_14) {
        c"(nk):_acquire_restore"
    } else {
        c"(kk):_acquire_restore"
    };
    // SAFETY: the format names a count output of `count`'s type (`k`:
    // unsigned long; `n`: Py_ssize_t, per the cfg above) and an `unsigned
    // long` owner, matching the two pointers passed; `args` is a tuple;
    // attached.
    let ok = unsafe {
        ffi::PyArg_ParseTuple(
            args.as_ptr(),
            fmt.as_ptr(),
            &mut count as *mut _,
            &mut owner as *mut std::os::raw::c_ulong,
        )
    };
    if ok == 0 {
        return Err(PyErr::fetch(args.py()));
    }
    // A negative count (3.14) wraps, as stock's unsigned arithmetic would.
    Ok((count as u64, owner as u64))
}

/// 3.15: `PyArg_Parse(state, "(nk):_acquire_restore")` -> `(count, owner)`:
/// the state is the method's one argument, so the interpreter's messages
/// call it "argument" and its items "argument 1" / "argument 2".
#[cfg(Py_3_15)]
pub fn parse_restore_state_obj(state: &Bound<'_, PyAny>) -> PyResult<(u64, u64)> {
    let mut owner: std::os::raw::c_ulong = 0;
    let mut count: ffi::Py_ssize_t = 0;
    // SAFETY: `(nk)` writes a Py_ssize_t then an unsigned long, matching the
    // two pointers passed; `state` is a live object; attached.
    let ok = unsafe {
        ffi::PyArg_Parse(
            state.as_ptr(),
            c"(nk):_acquire_restore".as_ptr(),
            &mut count as *mut ffi::Py_ssize_t,
            &mut owner as *mut std::os::raw::c_ulong,
        )
    };
    if ok == 0 {
        return Err(PyErr::fetch(state.py()));
    }
    // A negative count wraps, as stock's unsigned arithmetic would.
    Ok((count as u64, owner as u64))
}

/// `_PyArg_NoKeywords(name, kwargs)`.
pub fn no_keywords(name: &str, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
    match kwargs {
        Some(k) if !k.is_empty() => no_keywords_err(name),
        _ => Ok(()),
    }
}

/// The error of `_PyArg_NoKeywords(name, kwargs)` for non-empty kwargs.
pub fn no_keywords_err(name: &str) -> PyResult<()> {
    Err(PyTypeError::new_err(format!(
        "{name}() takes no keyword arguments"
    )))
}
