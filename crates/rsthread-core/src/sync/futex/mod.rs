//! The one place where threads block.
//!
//! `wait(word, expected, deadline)` sleeps while `*word == expected`, until a
//! `wake_*` on the same word, the absolute monotonic `deadline`, or a signal.
//! Every return means "re-check the state": callers must treat [`Wait::Woken`]
//! as possibly spurious. [`Wait::Interrupted`] is reported (never swallowed) so
//! that the Python binding can run signal handlers and then wait again against
//! the same deadline.

/// Why a futex wait returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Woken by `wake_*`, or the word no longer held `expected`, or spuriously.
    Woken,
    /// The deadline passed (never returned before it).
    TimedOut,
    /// A signal handler ran in this thread while it slept (EINTR).
    Interrupted,
}

#[cfg(all(target_os = "linux", not(loom)))]
mod linux;
#[cfg(all(target_os = "linux", not(loom)))]
pub use linux::{wait, wake_all, wake_one};

#[cfg(loom)]
mod loom_futex;
#[cfg(loom)]
pub use loom_futex::{wait, wake_all, wake_one};

#[cfg(all(not(target_os = "linux"), not(loom)))]
compile_error!("rsthread-core currently supports Linux only (futex backend)");
