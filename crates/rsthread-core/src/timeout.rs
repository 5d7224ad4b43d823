//! Absolute deadlines on the monotonic clock.
//!
//! A Python timeout is converted once into a [`Deadline`]; every retry after a
//! signal waits against the same deadline, so the total wait never grows and
//! never ends early.

use rustix::time::{clock_gettime, ClockId, Timespec};
use std::time::Duration;

/// A point in time on `CLOCK_MONOTONIC`, in nanoseconds.
///
/// # Examples
///
/// ```
/// use rsthread_core::Deadline;
/// use std::time::Duration;
///
/// let d = Deadline::after(Duration::from_secs(60));
/// assert!(!d.passed());
/// assert!(d.remaining() <= Duration::from_secs(60));
/// let past = Deadline::from_nanos(0);
/// assert!(past.passed() && past.remaining() == Duration::ZERO);
/// assert_eq!(d.min(past), past);
/// // A huge timeout saturates ("practically forever") instead of wrapping.
/// assert!(Deadline::after(Duration::MAX) >= d);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(u64);

/// Nanoseconds on `CLOCK_MONOTONIC` now.
#[inline]
pub fn monotonic_ns() -> u64 {
    let ts = clock_gettime(ClockId::Monotonic);
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC_COARSE in ns: the same clock as [`monotonic_ns`] at
/// tick resolution (a few ms), several times cheaper to read. For hold
/// timestamps that only need to say "held for about this long".
pub fn coarse_ns() -> u64 {
    let ts = clock_gettime(ClockId::MonotonicCoarse);
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

impl Deadline {
    /// `timeout` from now (saturating: a huge timeout is "practically forever").
    pub fn after(timeout: Duration) -> Deadline {
        let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        Deadline(monotonic_ns().saturating_add(ns))
    }
    /// `ns` nanoseconds from now.
    pub fn after_ns(ns: u64) -> Deadline {
        Deadline(monotonic_ns().saturating_add(ns))
    }
    /// The deadline as nanoseconds on the monotonic clock.
    pub fn as_nanos(self) -> u64 {
        self.0
    }
    /// A deadline at the given monotonic nanosecond.
    pub fn from_nanos(ns: u64) -> Deadline {
        Deadline(ns)
    }
    /// Time left, zero once passed.
    pub fn remaining(self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(monotonic_ns()))
    }
    /// Whether the deadline has passed.
    pub fn passed(self) -> bool {
        monotonic_ns() >= self.0
    }
    /// The earlier of two deadlines.
    pub fn min(self, other: Deadline) -> Deadline {
        if self.0 <= other.0 {
            self
        } else {
            other
        }
    }
    /// As an absolute `timespec` for `FUTEX_WAIT_BITSET`.
    pub fn as_timespec(self) -> Timespec {
        // i64 seconds cannot overflow: u64::MAX ns is about 584 years.
        Timespec {
            tv_sec: (self.0 / 1_000_000_000) as i64,
            tv_nsec: (self.0 % 1_000_000_000) as _,
        }
    }
}
