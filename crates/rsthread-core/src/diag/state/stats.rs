//! Contention statistics per lock class: what the cells do not keep, the
//! counters of destroyed locks, and the table of classes and sites.

use super::State;
use crate::diag::cell::{self, LockCell};
use crate::diag::report::{ClassStats, SiteStats};
use crate::diag::{LockClass, LockKind, SiteId};
use rustc_hash::FxHashMap as HashMap;

/// Per-class statistics the cells do not keep: waits and acquire sites
/// (slow path), plus the counters of destroyed locks.
#[derive(Debug, Default, Clone)]
pub(super) struct ClassAcc {
    kind: Option<LockKind>,
    folded: cell::CellStats,
    contended: u64,
    total_wait: u64,
    max_wait: u64,
    sites: HashMap<SiteId, SiteStats>,
}

impl State {
    /// Count an acquisition of `c` at `site` that waited `waited_ns` (under
    /// `PROFILE`).
    pub(super) fn profile_acquire(&mut self, c: &LockCell, site: SiteId, waited_ns: u64) {
        c.count_acquisition();
        let acc = self.stats.entry(c.class()).or_default();
        acc.kind = Some(c.kind());
        if waited_ns > 0 {
            acc.contended += 1;
            acc.total_wait = acc.total_wait.saturating_add(waited_ns);
            acc.max_wait = acc.max_wait.max(waited_ns);
            let s = acc.sites.entry(site).or_insert_with(|| SiteStats {
                site,
                ..Default::default()
            });
            s.contended += 1;
            s.total_wait_ns = s.total_wait_ns.saturating_add(waited_ns);
            s.max_wait_ns = s.max_wait_ns.max(waited_ns);
        }
    }

    pub(crate) fn stats(&self, top_sites: usize) -> Vec<ClassStats> {
        // The live cells' counters on top of what the state accumulated.
        let mut accs: HashMap<LockClass, ClassAcc> = self.stats.clone();
        for l in self.locks.values() {
            fold_cell(&mut accs, l.cell);
        }
        let mut v: Vec<ClassStats> = accs
            .into_iter()
            .map(|(class, a)| {
                let mut sites: Vec<SiteStats> = a.sites.values().cloned().collect();
                sites.sort_by(|x, y| {
                    y.total_wait_ns
                        .cmp(&x.total_wait_ns)
                        .then(y.contended.cmp(&x.contended))
                        .then(x.site.cmp(&y.site))
                });
                sites.truncate(top_sites);
                ClassStats {
                    class,
                    kind: a.kind.unwrap_or(LockKind::Lock),
                    acquisitions: a.folded.acquisitions,
                    contended: a.contended,
                    total_wait_ns: a.total_wait,
                    max_wait_ns: a.max_wait,
                    holds: a.folded.holds,
                    total_hold_ns: a.folded.total_hold,
                    max_hold_ns: a.folded.max_hold,
                    top_sites: sites,
                }
            })
            .collect();
        v.sort_by(|x, y| {
            y.total_wait_ns
                .cmp(&x.total_wait_ns)
                .then(y.acquisitions.cmp(&x.acquisitions))
                .then(x.class.cmp(&y.class))
        });
        v
    }

    pub(crate) fn reset_stats(&mut self) {
        self.stats.clear();
        for l in self.locks.values() {
            l.cell.reset_stats();
        }
    }
}

/// Fold the counters of cell `c` into its class's entry of `accs`.
pub(super) fn fold_cell(accs: &mut HashMap<LockClass, ClassAcc>, c: &LockCell) {
    let st = c.stats();
    if st != cell::CellStats::default() {
        let acc = accs.entry(c.class()).or_default();
        acc.kind = Some(c.kind());
        add_stats(&mut acc.folded, &st);
    }
}

fn add_stats(into: &mut cell::CellStats, s: &cell::CellStats) {
    into.acquisitions = into.acquisitions.saturating_add(s.acquisitions);
    into.holds = into.holds.saturating_add(s.holds);
    into.total_hold = into.total_hold.saturating_add(s.total_hold);
    into.max_hold = into.max_hold.max(s.max_hold);
}
