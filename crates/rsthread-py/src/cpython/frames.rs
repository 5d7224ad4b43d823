//! The calling thread's interpreter frames, read without creating frame
//! objects (the diagnostics' per-thread site cache keys on them).
//!
//! CPython 3.11 only for now: `PyThreadState.cframe->current_frame`, then
//! `_PyInterpreterFrame.{f_code, previous, prev_instr}`. On any other
//! version, or when the probe in [`check_layout`] fails, [`fast_enabled`]
//! stays false and callers use frame objects (public API).

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;

/// CPython 3.11's `_PyCFrame` (Include/cpython/pystate.h), the fields we read.
#[repr(C)]
struct CFrame {
    use_tracing: u8,
    current_frame: *const IFrame,
}

/// CPython 3.11's `_PyInterpreterFrame` (Include/internal/pycore_frame.h),
/// up to the fields we read.
#[repr(C)]
struct IFrame {
    f_func: *mut ffi::PyObject,
    f_globals: *mut ffi::PyObject,
    f_builtins: *mut ffi::PyObject,
    f_locals: *mut ffi::PyObject,
    f_code: *mut ffi::PyObject,
    frame_obj: *mut ffi::PyObject,
    previous: *const IFrame,
    prev_instr: *const u16,
}

/// 3.11's `PyThreadState` head (Include/cpython/pystate.h): three pointers,
/// seven ints, then (padded to pointer alignment) the `cframe` pointer.
#[repr(C)]
struct TstateHead {
    prev: *const u8,
    next: *const u8,
    interp: *const ffi::PyInterpreterState,
    initialized: i32,
    is_static: i32,
    recursion_remaining: i32,
    recursion_limit: i32,
    recursion_headroom: i32,
    tracing: i32,
    tracing_what: i32,
    cframe: *const CFrame,
}

/// Whether the layout above matched the running interpreter (probed once at
/// import; if not, only the frame-object path runs).
static FAST: AtomicBool = AtomicBool::new(false);

/// Whether [`walk`] may be used.
#[inline]
pub(crate) fn fast_enabled() -> bool {
    // Relaxed: written once at import, before any lock of the module is
    // used, by the thread that then runs Python code; a stale false only
    // takes the frame-object path.
    FAST.load(Ordering::Relaxed)
}

/// The innermost interpreter frame of the calling thread.
///
/// # Safety
/// Attached to the interpreter (GIL held), and the layout was validated
/// ([`fast_enabled`] is true, or the caller is [`check_layout`] after its
/// head probe).
unsafe fn current_iframe() -> *const IFrame {
    // SAFETY: per the contract; `cframe` is valid while the thread state
    // runs Python (it points into the eval loop's C stack or the root cframe).
    unsafe {
        let ts = ffi::PyThreadState_Get() as *const TstateHead;
        let cf = (*ts).cframe;
        if cf.is_null() {
            return std::ptr::null();
        }
        (*cf).current_frame
    }
}

/// Probe the 3.11 layout against the running interpreter, checking each
/// level through the public API before following the next pointer, and
/// enable [`walk`] if everything matched. Call at import, with a Python
/// frame running (the module's importer).
pub(crate) fn check_layout(py: Python<'_>) {
    let ok = probe(py);
    // Relaxed: see fast_enabled.
    FAST.store(ok, Ordering::Relaxed);
}

fn probe(py: Python<'_>) -> bool {
    // 1. The version: the layout is 3.11's (`Py_Version` is the running
    //    interpreter's, not the headers').
    // SAFETY: a constant exported by libpython since 3.11.
    let v = unsafe { ffi::Py_Version };
    if v >> 16 != 0x030b {
        return false;
    }
    // SAFETY: attached; returns a borrowed frame or NULL.
    let f = unsafe { ffi::PyEval_GetFrame() };
    if f.is_null() {
        return false;
    }
    let _ = py;
    // SAFETY: attached, so the thread state is live; reading its head
    // (plain fields, no pointer followed) is in bounds on 3.11, checked above.
    let head = unsafe {
        let ts = ffi::PyThreadState_Get();
        (ts, &*(ts as *const TstateHead))
    };
    // 2. The head: fields the public API also gives must agree before the
    //    `cframe` pointer is trusted.
    // SAFETY: attached; public getters of the current thread state.
    let (interp, limit) = unsafe {
        (
            ffi::PyThreadState_GetInterpreter(head.0),
            ffi::Py_GetRecursionLimit(),
        )
    };
    if head.1.interp != interp.cast_const()
        || head.1.recursion_limit != limit
        || head.1.cframe.is_null()
        || (head.1.cframe as usize) % std::mem::align_of::<CFrame>() != 0
    {
        return false;
    }
    // 3. The frame: the innermost interpreter frame runs the same code
    //    object as the public frame object.
    // SAFETY: attached; the head matched, so `cframe` is the thread's
    // current C frame; `f` is live and PyFrame_GetCode returns a new reference.
    unsafe {
        let code = ffi::PyFrame_GetCode(f);
        let i = current_iframe();
        let ok = !i.is_null() && (*i).f_code == code.cast() && !(*i).prev_instr.is_null();
        ffi::Py_DecRef(code.cast());
        ok
    }
}

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
}

/// Walk the calling thread's interpreter frames from the innermost (at most
/// `max`), hashing their instruction pointers, until `skipped` says a
/// frame's code object (its address) is not skipped; `None` as soon as
/// `skipped` does not know a code object. Returns the hash (0: no frame).
///
/// # Safety
/// Attached (GIL held); [`fast_enabled`] returned true; `skipped` must only
/// answer for code objects the caller keeps alive (their addresses are not
/// reused while cached).
pub(crate) unsafe fn walk(
    max: usize,
    mut skipped: impl FnMut(usize) -> Option<bool>,
) -> Option<u64> {
    // SAFETY: per the contract; frames are live while we run inside them.
    unsafe {
        let mut f = current_iframe();
        let mut h: u64 = 0;
        for _ in 0..max {
            if f.is_null() {
                break;
            }
            let code = (*f).f_code as usize;
            h = mix(h, (*f).prev_instr as u64);
            if !skipped(code)? {
                break;
            }
            f = (*f).previous;
        }
        Some(h)
    }
}
