//! The event timeline: a bounded ring buffer and its Chrome trace export.
//!
//! Each [`Event`] is 40 bytes; the buffer grows on demand up to its capacity
//! and then overwrites the oldest events. Thread names and marker texts live
//! in side tables, so events stay fixed-size.
//!
//! ## Export format
//!
//! The Chrome trace-event "JSON Object Format" (`{"traceEvents": [...],
//! "displayTimeUnit": "ms"}`), which Perfetto UI and `chrome://tracing` open:
//!
//! * `M` metadata events name the process and every thread track
//!   (`thread_name`); `pid` is the process id, `tid` the native thread id.
//! * Waits and holds are `X` (complete) events named `wait <lock>` /
//!   `hold <lock>`, where `<lock>` is `Lock <creation site>` or
//!   `RLock <creation site>`; `ts`/`dur` are microseconds (floats). A hold of
//!   a plain lock is drawn on the acquiring thread even when another thread
//!   released it. Holds and waits still open are closed at export time
//!   (`args.open = true`).
//! * Slices on one track must nest. Holds released out of order would not,
//!   so such a slice goes to an extra track of the same thread, named
//!   `<thread> (overlapping holds k)`.
//! * Deadlocks and inversions are `i` (instant) events with the report text
//!   in `args.report`; thread start/exit are thread-scoped instants.

use super::report::EventKind;
use super::sites::site_names;
use super::{LockKind, SiteId};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};

/// Default capacity in events.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

/// At most this many marker texts are kept (oldest dropped first).
const MAX_MARKERS: usize = 4096;

/// Bit of `Event::kind` set for RLock events.
const RLOCK_BIT: u8 = 0x80;

/// One record. `kind` is an [`EventKind`] plus [`RLOCK_BIT`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Event {
    pub ts: u64,
    pub tid: u64,
    pub lock: u64,
    pub site: u32,
    pub aux: u32,
    pub kind: u8,
}

impl Event {
    pub(crate) fn new(
        ts: u64,
        tid: u64,
        kind: EventKind,
        lock: u64,
        lk: LockKind,
        site: SiteId,
        aux: u32,
    ) -> Event {
        let bit = if lk == LockKind::RLock { RLOCK_BIT } else { 0 };
        Event {
            ts,
            tid,
            lock,
            site,
            aux,
            kind: kind as u8 | bit,
        }
    }
    pub(crate) fn event_kind(&self) -> EventKind {
        match self.kind & !RLOCK_BIT {
            1 => EventKind::ThreadStart,
            2 => EventKind::ThreadEnd,
            3 => EventKind::WaitBegin,
            4 => EventKind::WaitEnd,
            5 => EventKind::HoldBegin,
            6 => EventKind::HoldEnd,
            7 => EventKind::Deadlock,
            _ => EventKind::Inversion,
        }
    }
    pub(crate) fn lock_kind(&self) -> LockKind {
        if self.kind & RLOCK_BIT != 0 {
            LockKind::RLock
        } else {
            LockKind::Lock
        }
    }
}

/// The ring buffer and its side tables.
/// Names kept at least before pruning is considered.
const MIN_PRUNE_AT: usize = 1024;

pub(crate) struct Timeline {
    cap: usize,
    buf: Vec<Event>,
    /// Once `buf.len() == cap`: index of the oldest event (next to overwrite).
    head: usize,
    dropped: u64,
    /// tid -> thread name.
    pub names: HashMap<u64, String>,
    /// `names` size above which the next prune runs: twice the size left by
    /// the last one, so a prune (a pass over the buffer) is amortized over
    /// as many new names as it kept.
    prune_at: usize,
    markers: BTreeMap<u32, String>,
    next_marker: u32,
}

impl Timeline {
    pub(crate) fn new(cap: usize) -> Timeline {
        Timeline {
            cap: cap.max(1),
            buf: Vec::new(),
            head: 0,
            dropped: 0,
            names: HashMap::new(),
            prune_at: MIN_PRUNE_AT,
            markers: BTreeMap::new(),
            next_marker: 0,
        }
    }

    /// Change the capacity; drops every event (names are kept).
    pub(crate) fn set_capacity(&mut self, cap: usize) {
        self.cap = cap.max(1);
        self.clear();
        self.buf.shrink_to_fit();
    }

    /// Drop every event and marker (names are kept: they describe live threads too).
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.head = 0;
        self.dropped = 0;
        self.markers.clear();
    }

    pub(crate) fn push(&mut self, ev: Event) {
        if self.buf.len() < self.cap {
            self.buf.push(ev);
        } else {
            self.buf[self.head] = ev;
            self.head = (self.head + 1) % self.cap;
            self.dropped += 1;
        }
    }

    /// Events overwritten since the last clear.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Oldest first.
    /// The events in time order (threads hand in their buffered events in
    /// batches, so the ring itself is only ordered per thread).
    pub(crate) fn events(&self) -> Vec<Event> {
        let mut v = Vec::with_capacity(self.buf.len());
        v.extend_from_slice(&self.buf[self.head..]);
        v.extend_from_slice(&self.buf[..self.head]);
        // Stable: a thread's events with equal timestamps keep their order.
        v.sort_by_key(|e| e.ts);
        v
    }

    /// Store a marker text; returns its id for `Event::aux`.
    pub(crate) fn marker(&mut self, text: String) -> u32 {
        let id = self.next_marker;
        self.next_marker = self.next_marker.wrapping_add(1);
        if self.markers.len() >= MAX_MARKERS {
            self.markers.pop_first();
        }
        self.markers.insert(id, text);
        id
    }

    /// Whether the name table has grown enough for [`prune_names`](Self::prune_names).
    pub(crate) fn names_need_pruning(&self, live_threads: usize) -> bool {
        self.names.len() > self.prune_at.max(2 * live_threads + MIN_PRUNE_AT)
    }

    /// Forget names of threads that are neither live nor in the buffer.
    pub(crate) fn prune_names(&mut self, live: &HashSet<u64>) {
        let in_buf: HashSet<u64> = self.buf.iter().map(|e| e.tid).collect();
        self.names
            .retain(|tid, _| live.contains(tid) || in_buf.contains(tid));
        self.prune_at = (2 * self.names.len()).max(MIN_PRUNE_AT);
    }

    pub(crate) fn trace_data(&self, now: u64) -> TraceData {
        TraceData {
            events: self.events(),
            names: self.names.clone(),
            markers: self.markers.clone(),
            now,
        }
    }
}

/// A copy of the timeline, formatted outside the state lock.
pub(crate) struct TraceData {
    events: Vec<Event>,
    names: HashMap<u64, String>,
    markers: BTreeMap<u32, String>,
    now: u64,
}

/// A slice (complete event) before lane assignment.
struct Slice {
    tid: u64,
    start: u64,
    end: u64,
    name: String,
    args: Value,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Extra tracks for overlapping slices: distinct from real tids (Linux tids
/// are below 2^22; idents used as fallback stay below 2^48, times 16 below 2^53).
fn lane_tid(tid: u64, lane: usize) -> u64 {
    if lane == 0 {
        tid
    } else {
        (1u64 << 40) + tid.wrapping_mul(16) + lane.min(15) as u64
    }
}

/// Write `d` as Chrome trace JSON.
pub(crate) fn write_chrome_trace<W: Write + ?Sized>(w: &mut W, d: &TraceData) -> io::Result<()> {
    let pid = std::process::id();
    let mut sites: HashSet<SiteId> = HashSet::new();
    for e in &d.events {
        sites.insert(e.site);
        if e.event_kind() == EventKind::HoldBegin {
            sites.insert(e.aux);
        }
    }
    let names = site_names(sites);
    let site = |s: SiteId| names.get(&s).cloned().unwrap_or_default();
    let lock_name = |k: LockKind, s: SiteId| format!("{k:?} {}", site(s));

    let mut slices: Vec<Slice> = Vec::new();
    let mut instants: Vec<Value> = Vec::new();
    let mut tids: HashSet<u64> = HashSet::new();
    // Open waits per tid, open holds per lock.
    let mut waits: HashMap<u64, Event> = HashMap::new();
    let mut holds: HashMap<u64, Event> = HashMap::new();

    let close_wait = |b: &Event, end: u64, acquired: Option<bool>| Slice {
        tid: b.tid,
        start: b.ts,
        end: end.max(b.ts),
        name: format!("wait {}", lock_name(b.lock_kind(), b.site)),
        args: json!({
            "lock": format!("{:#x}", b.lock),
            "created": site(b.site),
            "timed": b.aux != 0,
            "acquired": acquired,
            "open": acquired.is_none(),
        }),
    };
    let close_hold = |b: &Event, end: u64, released_by: Option<u64>| Slice {
        tid: b.tid,
        start: b.ts,
        end: end.max(b.ts),
        name: format!("hold {}", lock_name(b.lock_kind(), b.site)),
        args: json!({
            "lock": format!("{:#x}", b.lock),
            "created": site(b.site),
            "acquired_at": site(b.aux),
            "released_by_tid": released_by,
            "open": released_by.is_none(),
        }),
    };

    for e in &d.events {
        tids.insert(e.tid);
        match e.event_kind() {
            EventKind::WaitBegin => {
                if let Some(b) = waits.insert(e.tid, *e) {
                    slices.push(close_wait(&b, e.ts, Some(false)));
                }
            }
            EventKind::WaitEnd => {
                if let Some(b) = waits.remove(&e.tid) {
                    slices.push(close_wait(&b, e.ts, Some(e.aux != 0)));
                }
            }
            EventKind::HoldBegin => {
                if let Some(b) = holds.insert(e.lock, *e) {
                    slices.push(close_hold(&b, e.ts, Some(b.tid)));
                }
            }
            EventKind::HoldEnd => {
                if let Some(b) = holds.remove(&e.lock) {
                    slices.push(close_hold(&b, e.ts, Some(e.tid)));
                }
            }
            EventKind::ThreadStart | EventKind::ThreadEnd => {
                let name = if e.event_kind() == EventKind::ThreadStart {
                    "thread start"
                } else {
                    "thread exit"
                };
                instants.push(json!({
                    "name": name, "ph": "i", "s": "t", "ts": us(e.ts), "pid": pid, "tid": e.tid,
                    "args": {"ident": e.lock},
                }));
            }
            EventKind::Deadlock | EventKind::Inversion => {
                let name = if e.event_kind() == EventKind::Deadlock {
                    "deadlock"
                } else {
                    "lock-order inversion"
                };
                let text = d.markers.get(&e.aux).cloned().unwrap_or_default();
                instants.push(json!({
                    "name": name, "ph": "i", "s": "g", "ts": us(e.ts), "pid": pid, "tid": e.tid,
                    "args": {"report": text},
                }));
            }
        }
    }
    for b in waits.values() {
        slices.push(close_wait(b, d.now, None));
    }
    for b in holds.values() {
        slices.push(close_hold(b, d.now, None));
    }

    // Lane assignment: per tid, greedily place each slice on the first lane
    // where it nests inside the innermost open slice (or the lane is idle).
    slices.sort_by_key(|s| (s.tid, s.start, std::cmp::Reverse(s.end)));
    let mut lanes_of: HashMap<u64, Vec<Vec<u64>>> = HashMap::new();
    let mut placed: Vec<(usize, &Slice)> = Vec::with_capacity(slices.len());
    for s in &slices {
        let lanes = lanes_of.entry(s.tid).or_default();
        let mut chosen = None;
        for (i, stack) in lanes.iter_mut().enumerate() {
            while stack.last().is_some_and(|&end| end <= s.start) {
                stack.pop();
            }
            if stack.last().is_none_or(|&end| end >= s.end) {
                stack.push(s.end);
                chosen = Some(i);
                break;
            }
        }
        let lane = chosen.unwrap_or_else(|| {
            lanes.push(vec![s.end]);
            lanes.len() - 1
        });
        placed.push((lane, s));
    }

    let mut w = io::BufWriter::new(w);
    w.write_all(b"{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n")?;
    let mut first = true;
    let mut emit = |w: &mut io::BufWriter<&mut W>, v: &Value| -> io::Result<()> {
        if !first {
            w.write_all(b",\n")?;
        }
        first = false;
        serde_json::to_writer(&mut *w, v).map_err(io::Error::from)
    };
    emit(
        &mut w,
        &json!({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
        "args": {"name": format!("python (rsthread) pid {pid}")}}),
    )?;
    let mut all_tids: Vec<u64> = tids.into_iter().collect();
    all_tids.sort_unstable();
    for tid in all_tids {
        let name = d
            .names
            .get(&tid)
            .cloned()
            .unwrap_or_else(|| format!("thread {tid}"));
        emit(
            &mut w,
            &json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}),
        )?;
        let extra = lanes_of.get(&tid).map_or(0, |l| l.len().saturating_sub(1));
        for lane in 1..=extra.min(15) {
            emit(
                &mut w,
                &json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": lane_tid(tid, lane),
                "args": {"name": format!("{name} (overlapping holds {lane})")}}),
            )?;
        }
    }
    for (lane, s) in placed {
        emit(
            &mut w,
            &json!({
                "name": s.name, "ph": "X", "ts": us(s.start), "dur": us(s.end - s.start),
                "pid": pid, "tid": lane_tid(s.tid, lane), "args": s.args,
            }),
        )?;
    }
    for v in &instants {
        emit(&mut w, v)?;
    }
    w.write_all(b"\n]}\n")?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: u64) -> Event {
        Event::new(ts, 1, EventKind::HoldBegin, ts, LockKind::Lock, 0, 0)
    }

    #[test]
    fn name_pruning_is_amortized() {
        // Threads come and go, each leaving an event: a prune (one pass over
        // the buffer) may only run once the table has doubled since the last.
        let mut t = Timeline::new(1 << 16);
        let live = HashSet::new();
        let mut prunes = 0;
        for tid in 1..=20_000u64 {
            t.names.insert(tid, format!("T{tid}"));
            t.push(Event::new(
                tid,
                tid,
                EventKind::ThreadEnd,
                tid,
                LockKind::Lock,
                0,
                0,
            ));
            if t.names_need_pruning(0) {
                t.prune_names(&live);
                prunes += 1;
            }
        }
        // Every name still has an event in the buffer: nothing can go, and
        // the table doubles between prunes: 1024, 2048, ... 16384.
        assert_eq!(t.names.len(), 20_000);
        assert!(prunes <= 6, "{prunes} prunes");
        // Once the buffer forgets them, a prune drops the names.
        t.set_capacity(1);
        t.push(Event::new(
            0,
            20_000,
            EventKind::ThreadEnd,
            0,
            LockKind::Lock,
            0,
            0,
        ));
        t.prune_names(&live);
        assert_eq!(t.names.keys().copied().collect::<Vec<_>>(), [20_000]);
    }

    #[test]
    fn ring_wraps_and_keeps_newest() {
        let mut t = Timeline::new(4);
        for i in 0..3 {
            t.push(ev(i));
        }
        assert_eq!(
            t.events().iter().map(|e| e.ts).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        for i in 3..10 {
            t.push(ev(i));
        }
        assert_eq!(
            t.events().iter().map(|e| e.ts).collect::<Vec<_>>(),
            [6, 7, 8, 9]
        );
        assert_eq!(t.dropped(), 6);
        t.set_capacity(2);
        assert!(t.events().is_empty());
        t.push(ev(1));
        t.push(ev(2));
        t.push(ev(3));
        assert_eq!(t.events().iter().map(|e| e.ts).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn event_is_small_and_kind_roundtrips() {
        assert!(std::mem::size_of::<Event>() <= 40);
        let e = Event::new(0, 0, EventKind::WaitEnd, 0, LockKind::RLock, 0, 1);
        assert_eq!(e.event_kind(), EventKind::WaitEnd);
        assert_eq!(e.lock_kind(), LockKind::RLock);
    }

    #[test]
    fn markers_bounded() {
        let mut t = Timeline::new(8);
        for i in 0..(MAX_MARKERS + 10) {
            t.marker(format!("m{i}"));
        }
        assert_eq!(t.markers.len(), MAX_MARKERS);
        assert!(!t.markers.contains_key(&0));
    }

    #[test]
    fn overlapping_holds_get_extra_lane() {
        // hold a [0,100), hold b [10, 200): b does not nest in a.
        let mut t = Timeline::new(16);
        t.push(Event::new(
            0,
            5,
            EventKind::HoldBegin,
            1,
            LockKind::Lock,
            0,
            0,
        ));
        t.push(Event::new(
            10,
            5,
            EventKind::HoldBegin,
            2,
            LockKind::Lock,
            0,
            0,
        ));
        t.push(Event::new(
            100,
            5,
            EventKind::HoldEnd,
            1,
            LockKind::Lock,
            0,
            0,
        ));
        t.push(Event::new(
            200,
            5,
            EventKind::HoldEnd,
            2,
            LockKind::Lock,
            0,
            0,
        ));
        let mut out = Vec::new();
        write_chrome_trace(&mut out, &t.trace_data(300)).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let xs: Vec<&Value> = v["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] == "X")
            .collect();
        assert_eq!(xs.len(), 2);
        assert_eq!(xs[0]["tid"], 5);
        assert_eq!(xs[1]["tid"], lane_tid(5, 1));
        assert_eq!(xs[1]["dur"].as_f64().unwrap(), 0.19);
    }
}
