//! A futex emulated with loom's `Mutex` + `Condvar`, so loom explores every
//! interleaving of the lock state machines. One global mutex/condvar pair
//! stands for the kernel's hash bucket: `wake_*` notifies everyone and each
//! waiter re-checks, which is allowed because every `Woken` may be spurious.
//! A timed wait never sleeps (time does not pass under loom, and a sleep
//! nobody wakes would be a loom deadlock): in each thread, the first, third…
//! timed wait returns at once as a spurious wake-up ([`Wait::Woken`]), the
//! second, fourth… as "the timeout fires now", the worst case for the caller.
//! So a timed waiter wakes once (enough to count as starving under loom, see
//! `starving_now`) before it times out, and the model explores a timed
//! waiter that asked for a hand-off giving up while a release hands the lock
//! to it. An interrupted wait (EINTR) looks to the lock exactly like a
//! timed-out slice (it returns and the caller decides), so the timed case
//! covers it.

use super::Wait;
use crate::timeout::Deadline;
use loom::sync::atomic::AtomicU32;
use loom::sync::atomic::Ordering;
use loom::sync::{Condvar, Mutex};

loom::lazy_static! {
    static ref BUCKET: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
}

loom::thread_local! {
    /// Timed waits this thread has made (see the module docs).
    static TIMED_WAITS: std::cell::Cell<u32> = std::cell::Cell::new(0);
}

/// Sleep while `*word == expected` (see the module docs for timeouts).
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<Deadline>) -> Wait {
    let (m, cv) = &*BUCKET;
    let guard = m.lock().unwrap();
    // SeqCst: the check and the sleep are atomic with respect to `wake_*`,
    // which take the same mutex, exactly as the kernel checks under its bucket lock.
    if word.load(Ordering::SeqCst) != expected {
        return Wait::Woken;
    }
    if deadline.is_some() {
        let n = TIMED_WAITS.with(|c| c.replace(c.get() + 1));
        return if n % 2 == 0 {
            Wait::Woken
        } else {
            Wait::TimedOut
        };
    }
    drop(cv.wait(guard).unwrap());
    Wait::Woken
}

/// Wake sleepers (all of them: each re-checks).
pub fn wake_one(_word: &AtomicU32) {
    wake_all(_word)
}

/// Wake every sleeper.
pub fn wake_all(_word: &AtomicU32) {
    let (m, cv) = &*BUCKET;
    let _g = m.lock().unwrap();
    cv.notify_all();
}
