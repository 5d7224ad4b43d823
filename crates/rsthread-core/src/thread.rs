//! Starting threads with a process-wide stack size.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The smallest stack size accepted besides 0 (CPython's `THREAD_STACK_MIN`).
pub const STACK_MIN: usize = 0x8000;

/// 0 means "the platform default" (glibc uses `RLIMIT_STACK`).
static STACK_SIZE: AtomicUsize = AtomicUsize::new(0);

/// Why a stack size was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackSizeError {
    /// Neither 0 nor at least [`STACK_MIN`].
    Invalid(usize),
}

/// The stack size threads will be started with (0: default).
pub fn stack_size() -> usize {
    // Relaxed: an independent setting, read when a thread is spawned.
    STACK_SIZE.load(Ordering::Relaxed)
}

/// Set the stack size for threads started from now on; returns the previous one.
///
/// ```
/// use rsthread_core::thread::{set_stack_size, stack_size, StackSizeError, STACK_MIN};
///
/// assert_eq!(set_stack_size(STACK_MIN - 1), Err(StackSizeError::Invalid(STACK_MIN - 1)));
/// let previous = set_stack_size(STACK_MIN).unwrap();
/// assert_eq!(stack_size(), STACK_MIN);
/// assert_eq!(set_stack_size(previous), Ok(STACK_MIN));
/// ```
pub fn set_stack_size(size: usize) -> Result<usize, StackSizeError> {
    if size != 0 && size < STACK_MIN {
        return Err(StackSizeError::Invalid(size));
    }
    // Relaxed: see stack_size().
    Ok(STACK_SIZE.swap(size, Ordering::Relaxed))
}

/// The entry point of a thread started by [`spawn_raw`].
pub type RawStart = extern "C-unwind" fn(*mut std::ffi::c_void) -> *mut std::ffi::c_void;

/// Start a detached POSIX thread running `start(arg)` with the configured
/// stack size (0: the platform default, exactly what `pthread_create` picks,
/// like CPython); returns its ident (`pthread_self()` in it).
///
/// There is no Rust frame (no `catch_unwind`, no thread bookkeeping)
/// between glibc's `start_thread` and `start`. That matters for
/// threads that run Python: CPython < 3.14 may end a thread with
/// `pthread_exit` when it tries to take the GIL during finalization, and
/// that forced unwind must not meet Rust landing pads.
///
/// # Safety
/// `start` must be safe to call with `arg` on another thread, must take
/// ownership of whatever `arg` points to, and must not keep values with
/// destructors alive across calls that may call `pthread_exit`. If this
/// returns `Err`, `start` was not called and `arg` is still the caller's.
pub unsafe fn spawn_raw(start: RawStart, arg: *mut std::ffi::c_void) -> std::io::Result<u64> {
    // SAFETY (whole block): `attr` is initialised before use and destroyed
    // on every path; pthread_create gets a valid attr, entry point and arg.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let rc = libc::pthread_attr_init(&mut attr);
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        let size = stack_size();
        let mut rc = if size != 0 {
            libc::pthread_attr_setstacksize(&mut attr, size)
        } else {
            0
        };
        if rc == 0 {
            rc = libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        }
        let mut tid: libc::pthread_t = 0;
        if rc == 0 {
            // The C-unwind fn pointer has the ABI pthread_create expects.
            let f: extern "C" fn(*mut std::ffi::c_void) -> *mut std::ffi::c_void =
                std::mem::transmute(start);
            rc = libc::pthread_create(&mut tid, &attr, f, arg);
        }
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(tid as u64)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::mpsc::{channel, Sender};

    /// What the started thread reports: its ident and its stack size.
    type Report = Sender<(u64, usize)>;

    extern "C-unwind" fn report(arg: *mut std::ffi::c_void) -> *mut std::ffi::c_void {
        // SAFETY: `arg` is the Box<Report> leaked by the test for this thread only.
        let tx = unsafe { Box::from_raw(arg.cast::<Report>()) };
        // SAFETY: `attr` is initialised by pthread_getattr_np before it is
        // read and destroyed after; the calling thread is alive.
        let size = unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), &mut attr), 0);
            let mut size = 0usize;
            libc::pthread_attr_getstacksize(&attr, &mut size);
            libc::pthread_attr_destroy(&mut attr);
            size
        };
        tx.send((crate::ident::current(), size)).unwrap();
        std::ptr::null_mut()
    }

    #[test]
    fn stack_size_rules() {
        assert_eq!(set_stack_size(100), Err(StackSizeError::Invalid(100)));
        assert_eq!(
            set_stack_size(STACK_MIN - 1),
            Err(StackSizeError::Invalid(STACK_MIN - 1))
        );
        let prev = set_stack_size(1 << 20).unwrap();
        assert_eq!(stack_size(), 1 << 20);
        let (tx, rx) = channel::<(u64, usize)>();
        let arg = Box::into_raw(Box::new(tx)).cast::<std::ffi::c_void>();
        // SAFETY: `report` takes ownership of `arg` and keeps nothing alive
        // across a possible pthread_exit (it never calls one).
        let id = unsafe { spawn_raw(report, arg) }.unwrap();
        let (seen, size) = rx.recv().unwrap();
        assert_eq!(seen, id);
        // glibc may hand out a cached stack that is larger, never smaller.
        assert!(size >= 1 << 20, "stack of {size} bytes");
        assert_eq!(set_stack_size(prev).unwrap(), 1 << 20);
    }
}
