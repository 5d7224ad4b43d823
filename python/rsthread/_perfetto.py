"""Convert rsthread's Chrome trace JSON to Perfetto's native protobuf format.

Used by :mod:`rsthread.diagnostics` when the trace path ends in ``.pftrace``
or ``.perfetto-trace``: Rust writes the timeline as Chrome trace JSON (the
same export as for ``.json``), and :func:`chrome_to_perfetto` turns its events
into ``TracePacket`` messages of Perfetto's official schema, built with
``perfetto.trace_builder.proto_builder.TraceProtoBuilder`` from the
``perfetto`` package (``pip install perfetto``; imported only here, lazily).

The conversion also checks the JSON's structure, so a malformed export is an
error (:class:`TraceFormatError`) instead of a trace that draws wrongly:

* every ``B`` has its ``E`` on the same thread (and no ``E`` comes without a
  ``B``); ``X`` slices and ``B``/``E`` pairs nest on each thread track;
* every thread that has events is named by a ``thread_name`` metadata event.

What is written (one packet sequence, ``trusted_packet_sequence_id``
:data:`SEQUENCE_ID`; its first packet carries
``SEQ_INCREMENTAL_STATE_CLEARED``; every track is described before its first
event; event timestamps never decrease along the sequence):

* a process track per ``pid`` (``ProcessDescriptor``, ``process_name``);
* a thread track per thread (``ThreadDescriptor`` with pid, tid and the
  Python thread name);
* rsthread's extra lanes for holds released out of order
  (``"<thread> (overlapping holds k)"``) as child tracks of their thread;
* slices as ``TYPE_SLICE_BEGIN``/``TYPE_SLICE_END`` pairs named like the JSON
  events (``hold Lock <creation site>``, ``wait RLock <creation site>``),
  with the ``args`` as debug annotations;
* instant events (``TYPE_INSTANT``): thread-scoped ones (thread start/exit)
  on their thread; global ones (deadlocks, lock-order inversions, with the
  report text in the ``report`` annotation) on one global track,
  :data:`MARKER_TRACK_NAME`; process-scoped ones on the process track.
"""
from __future__ import annotations

import json
import os

__all__ = [
    "MARKER_TRACK_NAME",
    "PERFETTO_SUFFIXES",
    "SEQUENCE_ID",
    "TraceFormatError",
    "chrome_to_perfetto",
    "is_perfetto_path",
    "write_perfetto",
]

PERFETTO_SUFFIXES = (".pftrace", ".perfetto-trace")
SEQUENCE_ID = 0x72737468  # "rsth"
MARKER_TRACK_NAME = "rsthread markers (deadlocks, lock-order inversions)"

# rsthread's extra lanes for overlapping holds: tid 2**40 + 16 * thread tid + k,
# k in 1..15 (see lane_tid in crates/rsthread-core/src/diag/timeline.rs).
_LANE_BASE = 1 << 40
_LANE_SUFFIX = " (overlapping holds {})"

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class TraceFormatError(ValueError):
    """The Chrome trace JSON breaks a rule the conversion relies on."""


def is_perfetto_path(path: str | os.PathLike) -> bool:
    """Whether `path` asks for Perfetto's protobuf format (by its suffix)."""
    return os.fspath(path).lower().endswith(PERFETTO_SUFFIXES)


class _Slice:
    __slots__ = ("args", "cat", "end", "name", "seq", "start")

    def __init__(self, start: int, end: int, name: str, cat, args, seq: int) -> None:
        self.start, self.end, self.name, self.cat, self.args, self.seq = start, end, name, cat, args, seq


def _ns(e: dict, key: str = "ts") -> int:
    v = e.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != v:
        raise TraceFormatError(f"event without a valid {key!r}: {e!r:.200}")
    return round(v * 1000)  # microseconds -> nanoseconds


def _int(e: dict, key: str) -> int:
    v = e.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise TraceFormatError(f"event without an integer {key!r}: {e!r:.200}")
    return v


def _parse(doc) -> dict:
    """Check a Chrome trace document and group its events per (pid, tid)."""
    if isinstance(doc, dict):
        events = doc.get("traceEvents")
    else:
        events = doc  # the JSON Array Format
    if not isinstance(events, list):
        raise TraceFormatError("no traceEvents list")
    process_names: dict[int, str] = {}
    thread_names: dict[tuple[int, int], str] = {}
    slices: dict[tuple[int, int], list[_Slice]] = {}
    open_b: dict[tuple[int, int], list[_Slice]] = {}
    instants: list[tuple[int, int, int, str, str, object, object, int]] = []
    for seq, e in enumerate(events):
        if not isinstance(e, dict):
            raise TraceFormatError(f"event {seq} is not an object")
        ph = e.get("ph")
        name = e.get("name", "")
        if not isinstance(name, str):
            raise TraceFormatError(f"event {seq} has a non-string name")
        pid, tid = _int(e, "pid"), _int(e, "tid")
        key = (pid, tid)
        args = e.get("args")
        if args is not None and not isinstance(args, dict):
            raise TraceFormatError(f"event {seq} has non-object args")
        if ph == "M":
            label = (args or {}).get("name")
            if name == "process_name":
                if not isinstance(label, str):
                    raise TraceFormatError(f"process_name event {seq} without args.name")
                process_names[pid] = label
            elif name == "thread_name":
                if not isinstance(label, str) or not label:
                    raise TraceFormatError(f"thread_name event {seq} without args.name")
                thread_names[key] = label
            continue
        if ph in ("X", "B", "E", "i", "I") and not name and ph != "E":
            raise TraceFormatError(f"event {seq} ({ph}) without a name")
        cat = e.get("cat")
        if ph == "X":
            start = _ns(e)
            dur = _ns(e, "dur")
            slices.setdefault(key, []).append(_Slice(start, start + dur, name, cat, args, seq))
        elif ph == "B":
            open_b.setdefault(key, []).append(_Slice(_ns(e), -1, name, cat, args, seq))
        elif ph == "E":
            stack = open_b.get(key)
            if not stack:
                raise TraceFormatError(f"E event {seq} on thread {tid} without an open B")
            b = stack.pop()
            if name and name != b.name:
                raise TraceFormatError(f"E event {seq} {name!r} closes B {b.name!r} on thread {tid}")
            end = _ns(e)
            if end < b.start:
                raise TraceFormatError(f"E event {seq} on thread {tid} ends before its B")
            b.end = end
            if args:
                b.args = {**(b.args or {}), **args}
            slices.setdefault(key, []).append(b)
        elif ph in ("i", "I"):
            scope = e.get("s", "t")
            if scope not in ("g", "p", "t"):
                raise TraceFormatError(f"instant event {seq} with scope {scope!r}")
            instants.append((_ns(e), pid, tid, scope, name, cat, args, seq))
        # Other phases (counters, flows, async, samples) are not produced by rsthread: skipped.
    for (pid, tid), stack in open_b.items():
        if stack:
            raise TraceFormatError(f"{len(stack)} B event(s) on thread {tid} (pid {pid}) never end "
                                   f"(first: {stack[0].name!r})")
    used = set(slices) | {(pid, tid) for _, pid, tid, scope, *_ in instants if scope == "t"}
    unnamed = sorted(k for k in used if k not in thread_names)
    if unnamed:
        raise TraceFormatError(f"no thread_name metadata for thread(s) {', '.join(str(t) for _, t in unnamed)}")
    return {"process_names": process_names, "thread_names": thread_names, "slices": slices,
            "instants": instants}


def _lane_parent(key: tuple[int, int], thread_names: dict) -> tuple[int, int] | None:
    """The thread whose extra lane `key` is, or None if it is a thread itself."""
    pid, tid = key
    if tid < _LANE_BASE:
        return None
    parent, lane = divmod(tid - _LANE_BASE, 16)
    pname = thread_names.get((pid, parent))
    if lane == 0 or pname is None or thread_names.get(key) != pname + _LANE_SUFFIX.format(lane):
        return None
    return (pid, parent)


def _ordered_ops(key, slices: list[_Slice]) -> list[tuple[int, int, _Slice]]:
    """Begin (1) / end (2) operations of one track's slices in stack order,
    timestamps non-decreasing; raises if two slices overlap without nesting.

    Timestamps come from microsecond floats: an end may be off by a few ns
    (more on machines up for weeks), so an overlap within that error is taken
    as nesting or adjacency, and the slice is clamped to match."""
    ops: list[tuple[int, int, _Slice]] = []
    stack: list[_Slice] = []
    for s in sorted(slices, key=lambda s: (s.start, -s.end, s.seq)):
        tol = 2 + (s.end >> 50)
        while stack:
            top = stack[-1]
            if top.end <= s.start:
                pass
            elif s.end <= top.end:
                break  # nests
            elif s.end - top.end <= tol:
                s.end = top.end  # nests, up to rounding
                break
            elif top.end - s.start <= tol:
                top.end = s.start  # follows, up to rounding
            else:
                raise TraceFormatError(
                    f"slices overlap without nesting on thread {key[1]} (pid {key[0]}): {top.name!r} "
                    f"[{top.start}, {top.end}] ns and {s.name!r} [{s.start}, {s.end}] ns")
            stack.pop()
            ops.append((top.end, 2, top))
        ops.append((s.start, 1, s))
        stack.append(s)
    while stack:
        top = stack.pop()
        ops.append((top.end, 2, top))
    return ops


def _annotate(ev, args) -> None:
    for k, v in (args or {}).items():
        if v is None:
            continue
        a = ev.debug_annotations.add()
        a.name = str(k)
        if isinstance(v, bool):
            a.bool_value = v
        elif isinstance(v, int) and _INT64_MIN <= v <= _INT64_MAX:
            a.int_value = v
        elif isinstance(v, float):
            a.double_value = v
        elif isinstance(v, str):
            a.string_value = v
        else:
            a.string_value = json.dumps(v, sort_keys=True)


def chrome_to_perfetto(doc):
    """Convert a Chrome trace document (parsed JSON: the object or the array
    format) into a ``perfetto.protos.perfetto.trace.perfetto_trace_pb2.Trace``.

    Raises :class:`TraceFormatError` if the document is malformed (see the
    module docs) and ``ImportError`` if the ``perfetto`` package is missing.
    """
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb  # type: ignore[import-untyped]
    from perfetto.trace_builder.proto_builder import TraceProtoBuilder  # type: ignore[import-untyped]

    TracePacket, TrackEvent = pb.TracePacket, pb.TrackEvent

    m = _parse(doc)
    thread_names: dict = m["thread_names"]
    builder = TraceProtoBuilder()
    first = True

    def packet():
        nonlocal first
        p = builder.add_packet()
        p.trusted_packet_sequence_id = SEQUENCE_ID
        if first:
            p.sequence_flags = TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
            p.first_packet_on_sequence = True
            first = False
        return p

    next_uuid = 0

    def uuid_for(pid: int) -> int:
        nonlocal next_uuid
        next_uuid += 1
        return ((pid & 0x3FFFFFFF) << 32) | next_uuid

    # Tracks: processes, threads, then lanes (children of their thread).
    keys = set(m["slices"]) | set(thread_names) | {(pid, tid) for _, pid, tid, *_ in m["instants"]}
    pids = sorted({pid for pid, _ in keys} | set(m["process_names"]))
    process_uuid: dict[int, int] = {}
    for pid in pids:
        u = process_uuid[pid] = uuid_for(pid)
        td = packet().track_descriptor
        td.uuid = u
        td.process.pid = pid
        td.process.process_name = m["process_names"].get(pid, f"process {pid}")
    track_uuid: dict[tuple[int, int], int] = {}
    lanes = {k: _lane_parent(k, thread_names) for k in keys}
    # Every thread with slices or thread-scoped instants is named (checked by
    # _parse); threads met only in global / process instants need no track.
    for k in sorted(k for k in thread_names if lanes[k] is None):
        pid, tid = k
        u = track_uuid[k] = uuid_for(pid)
        td = packet().track_descriptor
        td.uuid = u
        td.parent_uuid = process_uuid[pid]
        td.thread.pid = pid
        td.thread.tid = tid
        td.thread.thread_name = thread_names[k]
    for k in sorted(k for k in keys if lanes[k] is not None):
        u = track_uuid[k] = uuid_for(k[0])
        td = packet().track_descriptor
        td.uuid = u
        td.parent_uuid = track_uuid[lanes[k]]
        td.name = thread_names[k]
    marker_uuid = None
    if any(scope == "g" for _, _, _, scope, *_ in m["instants"]):
        marker_uuid = uuid_for(0)
        td = packet().track_descriptor
        td.uuid = marker_uuid
        td.name = MARKER_TRACK_NAME

    # Events: per track in stack order, merged by timestamp (a stable sort
    # keeps each track's order for equal timestamps).
    ops: list[tuple[int, int, int, str, object, object, object]] = []
    for k, sl in m["slices"].items():
        u = track_uuid[k]
        for ts, kind, s in _ordered_ops(k, sl):
            ops.append((ts, kind, u, s.name, s.cat, s.args if kind == 1 else None, None))
    for ts, pid, tid, scope, name, cat, args, _seq in m["instants"]:
        if scope == "g":
            u = marker_uuid
            extra = {"tid": tid, "thread": thread_names.get((pid, tid))}
        elif scope == "p":
            u, extra = process_uuid[pid], {"tid": tid}
        else:
            u, extra = track_uuid[(pid, tid)], None
        ops.append((ts, 3, u, name, cat, args, extra))
    ops.sort(key=lambda op: op[0])
    types = {1: TrackEvent.TYPE_SLICE_BEGIN, 2: TrackEvent.TYPE_SLICE_END, 3: TrackEvent.TYPE_INSTANT}
    for ts, kind, u, name, cat, args, extra in ops:
        p = packet()
        p.timestamp = ts
        ev = p.track_event
        ev.type = types[kind]
        ev.track_uuid = u
        if kind != 2:
            ev.name = name
            if isinstance(cat, str) and cat:
                ev.categories.extend(c for c in cat.split(",") if c)
            _annotate(ev, args)
            _annotate(ev, extra)
    return builder.trace


def write_perfetto(path: str | os.PathLike, doc) -> None:
    """Convert `doc` (see :func:`chrome_to_perfetto`) and write it to `path`
    (through a temporary file, so `path` is complete or untouched)."""
    data = chrome_to_perfetto(doc).SerializeToString()
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
