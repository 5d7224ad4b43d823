//! Thread identities as Python sees them.

/// `_thread.get_ident()`: `pthread_self()` as an integer. It is the key of
/// `threading._active`, so it must equal what stock CPython would return.
#[inline]
pub fn current() -> u64 {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    unsafe { libc::pthread_self() as u64 }
}

/// `_thread.get_native_id()`: the kernel thread id (`gettid`); the main
/// thread's equals the process id.
#[inline]
pub fn native() -> u64 {
    rustix::thread::gettid().as_raw_nonzero().get() as u64
}

#[cfg(all(test, not(loom)))]
mod tests {
    #[test]
    fn main_native_id_is_pid_only_on_main() {
        let pid = std::process::id() as u64;
        let other = std::thread::spawn(super::native).join().unwrap();
        assert_ne!(other, pid);
        let a = super::current();
        let b = std::thread::spawn(super::current).join().unwrap();
        assert_ne!(a, b);
    }
}

/// Whether the calling thread is the process's initial thread (tid == pid),
/// the one where CPython runs signal handlers. After `fork()` the surviving
/// thread is the child's initial thread, so this stays right.
#[inline]
pub fn is_process_main() -> bool {
    rustix::thread::gettid() == rustix::process::getpid()
}
