//! rsthread-core: the pure-Rust heart of rsthread.
//!
//! * [`lock::RawLock`]: a futex lock any thread may release, with blocking,
//!   non-blocking and deadline acquires that report signals instead of
//!   swallowing them.
//! * [`rlock::RawRLock`]: a reentrant lock owned by one thread.
//! * [`thread`]: thread start with a process-wide stack size; [`ident`]:
//!   thread idents and native ids.
//! * [`diag`]: wait-for graph, lock-order graph, contention statistics and an
//!   event timeline, all off unless enabled.
//!
//! No Python here: the PyO3 binding (`rsthread-py`) converts arguments,
//! releases the GIL around waits and maps outcomes to CPython's exceptions.
//!
//! `README.md` has a usage example of each part; its code blocks run as
//! doctests.
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(not(loom))]
pub mod diag;
#[cfg(not(loom))]
pub mod ident;
pub mod lock;
pub mod rlock;
pub mod sync;
#[cfg(not(loom))]
pub mod thread;
pub mod timeout;

/// The examples of `README.md`, run by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use lock::{Acquire, NotLocked, RawLock, SpinScore};
pub use rlock::{CountOverflow, RawRLock, ReleaseError};
pub use timeout::Deadline;
