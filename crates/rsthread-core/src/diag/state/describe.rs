//! One-line texts of deadlocks and inversions, for timeline markers.

use crate::diag::report::{Deadlock, OrderInversion, ThreadRef};
use crate::diag::{site_name, LockClass};

fn class_name(c: LockClass) -> String {
    match c {
        LockClass::Site(s) => site_name(s),
        LockClass::Object(id) => format!("lock {id:#x}"),
    }
}

fn thread_label(t: &ThreadRef) -> String {
    match &t.name {
        Some(n) => format!("{n} ({:#x})", t.ident),
        None => format!("thread {:#x}", t.ident),
    }
}

/// One line per edge, for timeline markers.
pub(super) fn describe_inversion(inv: &OrderInversion) -> String {
    inv.edges
        .iter()
        .map(|e| {
            format!(
                "{} held {} (acquired at {}) then acquired {} at {}",
                thread_label(&e.thread),
                class_name(e.from),
                site_name(e.held_site),
                class_name(e.to),
                site_name(e.acquire_site)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One clause per thread, for timeline markers.
pub(super) fn describe_deadlock(d: &Deadlock) -> String {
    let n = d.threads.len();
    d.threads
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let next = &d.threads[(i + 1) % n].thread;
            format!(
                "{} waits for {:?} {:#x} (created at {}) held by {}",
                thread_label(&c.thread),
                c.waits_for.kind,
                c.waits_for.id,
                site_name(c.waits_for.site),
                thread_label(next)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
