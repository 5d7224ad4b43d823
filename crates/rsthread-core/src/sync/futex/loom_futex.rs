//! A futex emulated with loom's `Mutex` + `Condvar`, so loom explores every
//! interleaving of the lock state machines. One global mutex/condvar pair
//! stands for the kernel's hash bucket: `wake_*` notifies everyone and each
//! waiter re-checks, which is allowed because every `Woken` may be spurious.
//! A timed wait is modelled as "the timeout fires now", the worst case for the
//! caller. An interrupted wait (EINTR) looks to the lock exactly like a
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
        return Wait::TimedOut;
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
