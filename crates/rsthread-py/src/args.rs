//! Argument conversion with CPython 3.11's exact errors.
//!
//! `_thread` parses with `PyArg_ParseTupleAndKeywords` and converts timeouts
//! with `_PyTime_FromSecondsObject`; the messages users see come from those
//! layers, so they are reproduced here rather than PyO3's own.

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyString, PyTuple};

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
    if let Ok(f) = obj.cast::<PyFloat>() {
        let d = f.value();
        if d.is_nan() {
            return Err(PyValueError::new_err("Invalid value NaN (not a number)"));
        }
        let ns = round_timeout(d * 1e9);
        // _Py_InIntegralTypeRange(_PyTime_t, d), compared in double precision.
        if !(ns >= i64::MIN as f64 && ns <= i64::MAX as f64) {
            return Err(PyOverflowError::new_err(
                "timestamp out of range for platform time_t",
            ));
        }
        // `as` saturates at the single value (2^63) the double check lets through.
        return Ok(ns as i64);
    }
    // SAFETY: valid object, attached; -1 with an exception on failure.
    let sec = unsafe { ffi::PyLong_AsLongLong(obj.as_ptr()) };
    if sec == -1 {
        if let Some(e) = PyErr::take(obj.py()) {
            if e.is_instance_of::<PyOverflowError>(obj.py()) {
                return Err(PyOverflowError::new_err(
                    "timestamp too large to convert to C _PyTime_t",
                ));
            }
            return Err(e);
        }
    }
    sec.checked_mul(1_000_000_000)
        .ok_or_else(|| PyOverflowError::new_err("timestamp too large to convert to C _PyTime_t"))
}

/// Parsed `acquire(blocking=True, timeout=-1)`: the timeout in ns, where
/// `UNSET_TIMEOUT` means forever and 0 means "try once".
pub fn parse_acquire(
    py: Python<'_>,
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
            "acquire() takes at most 2 {kind}arguments ({} given)",
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
            let name = key.to_cow()?;
            match &*name {
                "blocking" => {
                    if nargs >= 1 {
                        return Err(PyTypeError::new_err(
                            "argument for acquire() given by name ('blocking') and position (1)",
                        ));
                    }
                    blocking_obj = Some(v);
                }
                "timeout" => {
                    if nargs >= 2 {
                        return Err(PyTypeError::new_err(
                            "argument for acquire() given by name ('timeout') and position (2)",
                        ));
                    }
                    timeout_obj = Some(v);
                }
                other => {
                    return Err(PyTypeError::new_err(format!(
                        "'{other}' is an invalid keyword argument for acquire()"
                    )));
                }
            }
        }
    }
    let _ = py;
    let blocking = match &blocking_obj {
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
        return Err(PyValueError::new_err("timeout value must be positive"));
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

/// `PyArg_ParseTuple(args, "(kk):_acquire_restore")` -> `(count, owner)`.
pub fn parse_restore_state(args: &Bound<'_, PyTuple>) -> PyResult<(u64, u64)> {
    let mut count: std::os::raw::c_ulong = 0;
    let mut owner: std::os::raw::c_ulong = 0;
    // SAFETY: the format names two `unsigned long` outputs, matching the two
    // pointers passed; `args` is a tuple; attached.
    let ok = unsafe {
        ffi::PyArg_ParseTuple(
            args.as_ptr(),
            c"(kk):_acquire_restore".as_ptr(),
            &mut count as *mut std::os::raw::c_ulong,
            &mut owner as *mut std::os::raw::c_ulong,
        )
    };
    if ok == 0 {
        return Err(PyErr::fetch(args.py()));
    }
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
