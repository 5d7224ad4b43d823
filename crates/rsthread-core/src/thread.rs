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
pub fn set_stack_size(size: usize) -> Result<usize, StackSizeError> {
    if size != 0 && size < STACK_MIN {
        return Err(StackSizeError::Invalid(size));
    }
    // Relaxed: see stack_size().
    Ok(STACK_SIZE.swap(size, Ordering::Relaxed))
}

/// The default stack when none is set: what `pthread_create` would give,
/// i.e. `RLIMIT_STACK` (8 MiB on most systems), not Rust's 2 MiB.
fn default_stack() -> usize {
    use std::sync::OnceLock;
    static DEFAULT: OnceLock<usize> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        let lim = rustix::process::getrlimit(rustix::process::Resource::Stack);
        match lim.current {
            Some(n) if n >= STACK_MIN as u64 && n <= (1 << 30) => n as usize,
            _ => 8 << 20,
        }
    })
}

/// Start `f` on a new detached thread; returns its ident (`pthread_self()` in it).
pub fn spawn<F>(f: F) -> std::io::Result<u64>
where
    F: FnOnce() + Send + 'static,
{
    use std::os::unix::thread::JoinHandleExt;
    let size = match stack_size() {
        0 => default_stack(),
        n => n,
    };
    let handle = std::thread::Builder::new().stack_size(size).spawn(f)?;
    let ident = handle.as_pthread_t() as u64;
    // Dropping the handle detaches the thread, like CPython's threads.
    drop(handle);
    Ok(ident)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn stack_size_rules() {
        assert_eq!(set_stack_size(100), Err(StackSizeError::Invalid(100)));
        assert_eq!(set_stack_size(STACK_MIN - 1), Err(StackSizeError::Invalid(STACK_MIN - 1)));
        let prev = set_stack_size(1 << 20).unwrap();
        assert_eq!(stack_size(), 1 << 20);
        let (tx, rx) = std::sync::mpsc::channel();
        let id = spawn(move || tx.send(crate::ident::current()).unwrap()).unwrap();
        assert_eq!(rx.recv().unwrap(), id);
        assert_eq!(set_stack_size(prev).unwrap(), 1 << 20);
    }
}
