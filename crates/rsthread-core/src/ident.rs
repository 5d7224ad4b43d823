//! Thread identities as Python sees them.

/// `_thread.get_ident()`: `pthread_self()` as an integer. It is the key of
/// `threading._active`, so it must equal what stock CPython would return.
///
/// ```
/// let me = rsthread_core::ident::current();
/// assert_eq!(me, rsthread_core::ident::current(), "stable within a thread");
/// assert_ne!(me, std::thread::spawn(rsthread_core::ident::current).join().unwrap());
/// ```
#[inline]
pub fn current() -> u64 {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    unsafe { libc::pthread_self() as u64 }
}

/// `_thread.get_native_id()`: the kernel thread id (`gettid`); the main
/// thread's equals the process id.
///
/// ```
/// let other = std::thread::spawn(rsthread_core::ident::native).join().unwrap();
/// assert_ne!(other, u64::from(std::process::id()), "not the initial thread");
/// assert_ne!(other, rsthread_core::ident::native());
/// ```
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
