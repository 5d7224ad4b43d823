//! Linux futex backend through rustix (no hand-written system calls).

use super::Wait;
use crate::timeout::Deadline;
use rustix::io::Errno;
use rustix::thread::futex;
use std::num::NonZeroU32;
use std::sync::atomic::AtomicU32;

/// Sleep while `*word == expected`, until woken, `deadline` (absolute,
/// CLOCK_MONOTONIC) or a signal.
///
/// `FUTEX_WAIT_BITSET` takes an absolute deadline, so a wait that is
/// interrupted and restarted never extends the total time, and the kernel never
/// reports a timeout before the deadline.
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<Deadline>) -> Wait {
    let ts = deadline.map(Deadline::as_timespec);
    let r = futex::wait_bitset(
        word,
        futex::Flags::PRIVATE,
        expected,
        ts.as_ref(),
        NonZeroU32::MAX,
    );
    match r {
        Ok(()) => Wait::Woken,
        Err(Errno::TIMEDOUT) => Wait::TimedOut,
        Err(Errno::INTR) => Wait::Interrupted,
        // EAGAIN: the word changed before we slept.
        Err(e) => {
            debug_assert_eq!(e, Errno::AGAIN, "unexpected futex wait error");
            Wait::Woken
        }
    }
}

/// Wake at most one thread sleeping on `word`.
#[inline]
pub fn wake_one(word: &AtomicU32) {
    // The only possible errors are EFAULT/EINVAL, impossible for a live reference.
    let _ = futex::wake(word, futex::Flags::PRIVATE, 1);
}

/// Wake every thread sleeping on `word`.
#[inline]
pub fn wake_all(word: &AtomicU32) {
    let _ = futex::wake(word, futex::Flags::PRIVATE, i32::MAX as u32);
}
