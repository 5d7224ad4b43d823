//! 3.12 only: the interpreter's `finalizing` flag.
//!
//! Stock 3.12 refuses to start a thread once `Py_FinalizeEx` has begun
//! (`interp->finalizing`, set before `threading._shutdown` and the `atexit`
//! handlers run), with "can't create new thread at interpreter shutdown".
//! No 3.12 API exposes that flag: `Py_IsFinalizing` is 3.13+, and the
//! runtime's flag (`_Py_IsFinalizing`) is set only after the `atexit`
//! handlers. So the flag is read at its offset in `PyInterpreterState`
//! (`Include/internal/pycore_interp.h` of 3.12, 64-bit):
//!
//! ```text
//!   0 next   8 id   16 id_refcount   24 requires_idref   32 id_mutex
//!  40 _initialized   44 finalizing   48 monitoring_version
//!  56 last_restart_version   64 threads.next_unique_id   72 threads.head
//! ```
//!
//! The layout is probed once at import against the public API (`id` equals
//! `PyInterpreterState_GetID`, `threads.head` equals
//! `PyInterpreterState_ThreadHead`, `_initialized` is 1 and `finalizing` 0);
//! when the probe fails the check is skipped (a thread may then be started
//! from an `atexit` handler, as on 3.11).

use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;

const OFF_ID: usize = 8;
const OFF_INITIALIZED: usize = 40;
const OFF_FINALIZING: usize = 44;
const OFF_THREADS_HEAD: usize = 72;

/// Whether the probe at import matched the layout above.
static LAYOUT_OK: AtomicBool = AtomicBool::new(false);

/// Probe the layout (once, at import; attached).
pub(crate) fn probe(_py: Python<'_>) {
    if cfg!(not(target_pointer_width = "64")) {
        return;
    }
    // SAFETY: attached, so the current interpreter is live; the reads are
    // within the struct (it is far larger than 80 bytes) and aligned for
    // their types at these offsets; nothing is followed before every field
    // agrees with the public API.
    let ok = unsafe {
        let interp = ffi::PyInterpreterState_Get();
        let base = interp.cast::<u8>();
        base.add(OFF_ID).cast::<i64>().read() == ffi::PyInterpreterState_GetID(interp)
            && base
                .add(OFF_THREADS_HEAD)
                .cast::<*mut ffi::PyThreadState>()
                .read()
                == ffi::PyInterpreterState_ThreadHead(interp)
            && base.add(OFF_INITIALIZED).cast::<c_int>().read() == 1
            && base.add(OFF_FINALIZING).cast::<c_int>().read() == 0
    };
    // Relaxed: written once at import with the GIL held; read with the GIL
    // held, which orders it.
    LAYOUT_OK.store(ok, Ordering::Relaxed);
}

/// Whether the current interpreter has begun finalizing (false when the
/// layout probe failed). Attached.
pub(crate) fn finalizing(_py: Python<'_>) -> bool {
    // Relaxed: see `probe`.
    if !LAYOUT_OK.load(Ordering::Relaxed) {
        return false;
    }
    // SAFETY: attached; the layout was checked at import; an aligned
    // `int` inside the live current interpreter, written by the thread that
    // finalizes while it holds the GIL (as we do now).
    unsafe {
        let interp = ffi::PyInterpreterState_Get();
        interp
            .cast::<u8>()
            .add(OFF_FINALIZING)
            .cast::<c_int>()
            .read()
            != 0
    }
}
