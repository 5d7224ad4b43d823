"""The timeline in Perfetto's native protobuf format (``--trace X.pftrace``,
``RSTHREAD_DIAG=trace=X.perfetto-trace``) and the Chrome JSON export, both
checked with a real parser: ``perfetto_trace_pb2.Trace.FromString`` from the
``perfetto`` package (Perfetto's official generated schema), then
:func:`check_perfetto`, which applies the rules Perfetto's importer relies on
(one packet sequence with its incremental state cleared first, tracks
described before use, thread tracks with pid/tid/name, balanced and nested
slices per track, non-decreasing timestamps per sequence).

The Chrome JSON export goes through the same converter
(``rsthread._perfetto.chrome_to_perfetto``), which checks its structure
(B/E balanced per thread, slices nested, ``thread_name`` metadata for every
thread), and then through :func:`check_perfetto`.

``scripts/setup.sh`` installs ``perfetto``; without it these tests fail (they
are not skipped), except the one that checks the fallback without it."""
from __future__ import annotations

import copy
import json
import re
import textwrap
from pathlib import Path

import pytest
from helpers import MODULE_LISTCOMP, line_of
from helpers import run_script as run

try:
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2
except ImportError:  # pragma: no cover - scripts/setup.sh installs it
    perfetto_trace_pb2 = None

from rsthread import _perfetto

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FORKS_LINE = line_of((EXAMPLES / "dining_philosophers.py").read_text(), "forks = [")


@pytest.fixture
def pb():
    if perfetto_trace_pb2 is None:
        pytest.fail("the 'perfetto' package is not installed (pip install perfetto; scripts/setup.sh "
                    "installs it)", pytrace=False)
    return perfetto_trace_pb2


# ----- the checker -------------------------------------------------------------

def _annotations(ev) -> dict:
    out = {}
    for a in ev.debug_annotations:
        kind = a.WhichOneof("value")
        out[a.name] = getattr(a, kind) if kind else None
    return out


def check_perfetto(data: bytes) -> dict:
    """Parse `data` with Perfetto's schema and check it; returns a summary:
    ``threads`` (track uuid -> (pid, tid, name)), ``processes`` (uuid ->
    (pid, name)), ``tracks`` (uuid -> name of other tracks), ``parent``
    (uuid -> parent uuid), ``slices`` (dicts: track, name, begin, end, depth,
    parent slice index, args) and ``instants`` (dicts: track, name, ts, args)."""
    pb = perfetto_trace_pb2
    trace = pb.Trace.FromString(data)
    TE = pb.TrackEvent
    assert len(trace.packet) > 0
    threads: dict[int, tuple[int, int, str]] = {}
    processes: dict[int, tuple[int, str]] = {}
    tracks: dict[int, str] = {}
    parent: dict[int, int] = {}
    last_ts: dict[int, int] = {}
    stacks: dict[int, list[int]] = {}
    slices: list[dict] = []
    instants: list[dict] = []
    for i, p in enumerate(trace.packet):
        seq = p.trusted_packet_sequence_id
        assert seq != 0, f"packet {i} without trusted_packet_sequence_id"
        if seq not in last_ts:
            assert p.sequence_flags & pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED, \
                f"first packet of sequence {seq} does not clear the incremental state"
            last_ts[seq] = 0
        if p.HasField("timestamp"):
            assert p.timestamp >= last_ts[seq], f"packet {i}: timestamp goes back on sequence {seq}"
            last_ts[seq] = p.timestamp
        if p.HasField("track_descriptor"):
            td = p.track_descriptor
            u = td.uuid
            assert u != 0 and u not in threads and u not in processes and u not in tracks, f"bad uuid {u}"
            if td.HasField("parent_uuid"):
                assert td.parent_uuid in threads or td.parent_uuid in processes or td.parent_uuid in tracks, \
                    f"track {u}: parent {td.parent_uuid} not described before"
                parent[u] = td.parent_uuid
            if td.HasField("thread"):
                t = td.thread
                assert t.HasField("pid") and t.HasField("tid"), f"thread track {u} without pid/tid"
                assert t.thread_name, f"thread track {u} (tid {t.tid}) has no thread_name"
                assert parent.get(u) in processes and processes[parent[u]][0] == t.pid, \
                    f"thread track {u} is not a child of its process's track"
                threads[u] = (t.pid, t.tid, t.thread_name)
            elif td.HasField("process"):
                assert td.process.HasField("pid") and td.process.process_name
                processes[u] = (td.process.pid, td.process.process_name)
            else:
                assert td.name, f"track {u} has no name"
                tracks[u] = td.name
        if p.HasField("track_event"):
            ev = p.track_event
            u = ev.track_uuid
            assert u in threads or u in processes or u in tracks, f"packet {i}: event on undescribed track {u}"
            assert p.HasField("timestamp"), f"packet {i}: event without timestamp"
            stack = stacks.setdefault(u, [])
            if ev.type == TE.TYPE_SLICE_BEGIN:
                assert ev.name, f"packet {i}: slice without a name"
                slices.append({"track": u, "name": ev.name, "begin": p.timestamp, "end": None,
                               "depth": len(stack), "parent": stack[-1] if stack else None,
                               "args": _annotations(ev)})
                stack.append(len(slices) - 1)
            elif ev.type == TE.TYPE_SLICE_END:
                assert stack, f"packet {i}: slice end without a begin on track {u}"
                s = slices[stack.pop()]
                assert p.timestamp >= s["begin"]
                s["end"] = p.timestamp
            elif ev.type == TE.TYPE_INSTANT:
                assert ev.name, f"packet {i}: instant without a name"
                instants.append({"track": u, "name": ev.name, "ts": p.timestamp, "args": _annotations(ev)})
            else:
                raise AssertionError(f"packet {i}: unexpected event type {ev.type}")
    open_ = {u: len(s) for u, s in stacks.items() if s}
    assert not open_, f"slices never ended on tracks {open_}"
    for s in slices:  # nesting, as intervals
        if s["parent"] is not None:
            par = slices[s["parent"]]
            assert par["begin"] <= s["begin"] and s["end"] <= par["end"]
    return {"threads": threads, "processes": processes, "tracks": tracks, "parent": parent,
            "slices": slices, "instants": instants}


def thread_of(summary: dict, track: int) -> tuple[int, int, str]:
    """The thread a track belongs to (itself, or the thread it is a child track of)."""
    while track not in summary["threads"]:
        track = summary["parent"][track]
    return summary["threads"][track]


# ----- a synthetic document: the converter alone -----------------------------------

LANE = (1 << 40) + 2 * 16 + 1


def synthetic() -> dict:
    pid = 4242
    return {"displayTimeUnit": "ms", "traceEvents": [
        {"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": "python (rsthread) pid 4242"}},
        {"name": "thread_name", "ph": "M", "pid": pid, "tid": 1, "args": {"name": "MainThread"}},
        {"name": "thread_name", "ph": "M", "pid": pid, "tid": 2, "args": {"name": "worker"}},
        {"name": "thread_name", "ph": "M", "pid": pid, "tid": LANE, "args": {"name": "worker (overlapping holds 1)"}},
        {"name": "hold Lock a.py:1 in f", "ph": "X", "pid": pid, "tid": 1, "ts": 10.0, "dur": 90.0,
         "args": {"lock": "0x1", "open": False, "released_by_tid": 1, "acquired": None}},
        {"name": "wait Lock a.py:2 in f", "ph": "X", "pid": pid, "tid": 1, "ts": 20.5, "dur": 9.5,
         "args": {"timed": True, "acquired": True}},
        {"name": "hold Lock a.py:3 in f", "ph": "X", "pid": pid, "tid": 1, "ts": 100.0, "dur": 50.0},
        {"name": "outer", "ph": "B", "pid": pid, "tid": 2, "ts": 5.0},
        {"name": "inner", "ph": "B", "pid": pid, "tid": 2, "ts": 6.0, "cat": "rsthread,test"},
        {"name": "inner", "ph": "E", "pid": pid, "tid": 2, "ts": 7.0},
        {"ph": "E", "pid": pid, "tid": 2, "ts": 8.0},
        {"name": "hold Lock a.py:4 in g", "ph": "X", "pid": pid, "tid": LANE, "ts": 6.5, "dur": 2.5},
        {"name": "thread start", "ph": "i", "s": "t", "pid": pid, "tid": 2, "ts": 1.0, "args": {"ident": 77}},
        {"name": "deadlock", "ph": "i", "s": "g", "pid": pid, "tid": 1, "ts": 50.0,
         "args": {"report": "MainThread waits for Lock 0x2 held by worker"}},
    ]}


def test_converter_synthetic_document(pb):
    data = _perfetto.chrome_to_perfetto(synthetic()).SerializeToString()
    s = check_perfetto(data)
    trace = pb.Trace.FromString(data)
    first = trace.packet[0]
    assert first.trusted_packet_sequence_id == _perfetto.SEQUENCE_ID
    assert first.sequence_flags == pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
    assert all(p.trusted_packet_sequence_id == _perfetto.SEQUENCE_ID for p in trace.packet)
    assert not any(p.sequence_flags for p in trace.packet[1:])
    assert list(s["processes"].values()) == [(4242, "python (rsthread) pid 4242")]
    assert sorted(s["threads"].values()) == [(4242, 1, "MainThread"), (4242, 2, "worker")]
    by_tid = {tid: u for u, (_, tid, _) in s["threads"].items()}
    # The overlapping-holds lane is a child track of its thread, not a thread.
    assert list(s["tracks"].values()).count("worker (overlapping holds 1)") == 1
    lane = next(u for u, n in s["tracks"].items() if n == "worker (overlapping holds 1)")
    assert s["parent"][lane] == by_tid[2]
    got = sorted((thread_of(s, x["track"])[1], x["track"] == lane, x["name"], x["begin"], x["end"], x["depth"])
                 for x in s["slices"])
    assert got == [
        (1, False, "hold Lock a.py:1 in f", 10_000, 100_000, 0),
        (1, False, "hold Lock a.py:3 in f", 100_000, 150_000, 0),
        (1, False, "wait Lock a.py:2 in f", 20_500, 30_000, 1),
        (2, False, "inner", 6_000, 7_000, 1),
        (2, False, "outer", 5_000, 8_000, 0),
        (2, True, "hold Lock a.py:4 in g", 6_500, 9_000, 0),
    ]
    hold = next(x for x in s["slices"] if x["name"] == "hold Lock a.py:1 in f")
    assert hold["args"] == {"lock": "0x1", "open": False, "released_by_tid": 1}  # None dropped
    wait = next(x for x in s["slices"] if x["name"].startswith("wait"))
    assert wait["args"] == {"timed": True, "acquired": True} and wait["parent"] is not None
    inner = next(p.track_event for p in trace.packet if p.track_event.name == "inner")
    assert list(inner.categories) == ["rsthread", "test"]
    start, dl = sorted(s["instants"], key=lambda x: x["ts"])
    assert (start["name"], start["track"], start["ts"], start["args"]) == ("thread start", by_tid[2], 1_000,
                                                                        {"ident": 77})
    assert dl["name"] == "deadlock" and s["tracks"][dl["track"]] == _perfetto.MARKER_TRACK_NAME
    assert dl["args"] == {"report": "MainThread waits for Lock 0x2 held by worker", "tid": 1,
                          "thread": "MainThread"}


@pytest.mark.parametrize("breakage, message", [
    ("no thread name", "no thread_name metadata for thread(s) 2"),
    ("B without E", "never end"),
    ("E without B", "without an open B"),
    ("E closes another B", "closes B"),
    ("partial overlap", "overlap without nesting"),
    ("negative ts", "valid 'ts'"),
])
def test_converter_rejects_malformed_json(pb, breakage, message):
    doc = synthetic()
    ev = doc["traceEvents"]
    if breakage == "no thread name":
        ev[:] = [e for e in ev if not (e["ph"] == "M" and e["tid"] == 2)]
    elif breakage == "B without E":
        ev[:] = [e for e in ev if not (e["ph"] == "E" and "name" not in e)]
    elif breakage == "E without B":
        ev[:] = [e for e in ev if not (e["ph"] == "B" and e["name"] == "outer")]
    elif breakage == "E closes another B":
        next(e for e in ev if e["ph"] == "E")["name"] = "outer"
    elif breakage == "partial overlap":  # wait [20.5, 30] -> [20.5, 120]: crosses the hold's end (100)
        next(e for e in ev if e["name"].startswith("wait"))["dur"] = 99.5
    elif breakage == "negative ts":
        ev[-1]["ts"] = -1
    with pytest.raises(_perfetto.TraceFormatError, match=re.escape(message)):
        _perfetto.chrome_to_perfetto(doc)


def test_converter_rounding_tolerance(pb):
    # Microsecond floats can put an end a few ns past its parent's end, or
    # past the next slice's start: taken as nesting / adjacency.
    doc = synthetic()
    pid = 4242
    doc["traceEvents"] += [
        {"name": "p", "ph": "X", "pid": pid, "tid": 1, "ts": 200.0, "dur": 10.0},
        {"name": "c", "ph": "X", "pid": pid, "tid": 1, "ts": 205.0, "dur": 5.001},  # ends 1 ns late
        {"name": "n", "ph": "X", "pid": pid, "tid": 1, "ts": 209.999, "dur": 1.0},  # starts 1 ns early
    ]
    s = check_perfetto(_perfetto.chrome_to_perfetto(doc).SerializeToString())
    got = {x["name"]: (x["begin"], x["end"], x["depth"]) for x in s["slices"] if x["name"] in "pcn"}
    assert got == {"p": (200_000, 209_999, 0), "c": (205_000, 209_999, 1), "n": (209_999, 210_999, 0)}


@pytest.mark.parametrize("breakage", [
    "thread name missing", "slice end missing", "timestamp goes back", "state not cleared",
    "unknown track", "thread without pid",
])
def test_checker_catches_broken_traces(pb, breakage):
    """check_perfetto must fail on each defect (so the end-to-end tests can)."""
    trace = _perfetto.chrome_to_perfetto(synthetic())
    check_perfetto(trace.SerializeToString())  # intact: passes
    bad = copy.deepcopy(trace)
    pk = bad.packet
    events = [i for i, p in enumerate(pk) if p.HasField("track_event")]
    if breakage == "thread name missing":
        next(p for p in pk if p.track_descriptor.HasField("thread")).track_descriptor.thread.ClearField("thread_name")
    elif breakage == "slice end missing":
        del pk[next(i for i in events if pk[i].track_event.type == pb.TrackEvent.TYPE_SLICE_END)]
    elif breakage == "timestamp goes back":
        a, b = events[0], events[-1]
        pk[a].timestamp, pk[b].timestamp = pk[b].timestamp, pk[a].timestamp
    elif breakage == "state not cleared":
        pk[0].ClearField("sequence_flags")
    elif breakage == "unknown track":
        pk[events[0]].track_event.track_uuid = 12345
    elif breakage == "thread without pid":
        next(p for p in pk if p.track_descriptor.HasField("thread")).track_descriptor.thread.ClearField("pid")
    with pytest.raises(AssertionError):
        check_perfetto(bad.SerializeToString())


# ----- end to end ----------------------------------------------------------------

THREADED = textwrap.dedent("""
    import json, os, threading, time

    def make_rlock():
        return threading.RLock()

    outer = threading.Lock()
    inner = make_rlock()
    shared = threading.Lock()
    start = threading.Barrier(4)
    ran = []

    def work():
        ran.append((threading.current_thread().name, threading.get_native_id()))
        start.wait()
        for _ in range(20):
            with outer:
                with inner:
                    time.sleep(0.0005)
        with shared:
            time.sleep(0.001)

    ts = [threading.Thread(target=work, name=f"perf-worker-{i}") for i in range(3)]
    for t in ts:
        t.start()
    ran.append((threading.current_thread().name, threading.get_native_id()))
    start.wait()
    with shared:
        pass
    for t in ts:
        t.join()
    print(json.dumps({"pid": os.getpid(), "ran": ran}))
""")


def check_threaded(out: Path, stdout: str) -> dict:
    info = json.loads(stdout.strip().splitlines()[-1])
    s = check_perfetto(out.read_bytes())
    assert [pid for pid, _ in s["processes"].values()] == [info["pid"]]
    tracks = {(pid, tid): (u, name) for u, (pid, tid, name) in s["threads"].items()}
    ran = {name: tid for name, tid in info["ran"]}
    assert set(ran) == {"MainThread", "perf-worker-0", "perf-worker-1", "perf-worker-2"}
    for name, tid in ran.items():  # every thread that ran: a thread track with its Python name
        assert (info["pid"], tid) in tracks, (name, tid, s["threads"])
        assert tracks[(info["pid"], tid)][1] == name
    # Lock names: the creation site (an RLock's adds "(via threading.py:N in RLock)").
    site = f"/scenario.py:{line_of(THREADED, 'outer = threading.Lock()')} in <module>"
    rsite = f"/scenario.py:{line_of(THREADED, 'return threading.RLock()')} in make_rlock"
    for i in range(3):
        u = tracks[(info["pid"], ran[f"perf-worker-{i}"])][0]
        mine = [x for x in s["slices"] if x["track"] == u]
        holds = [x for x in mine if x["name"].startswith("hold Lock ") and site in x["name"]]
        assert len(holds) == 20, [x["name"] for x in mine]
        nested = [x for x in mine if x["name"].startswith("hold RLock ") and rsite in x["name"]]
        assert len(nested) == 20
        for x in nested:  # the RLock's hold sits inside the Lock's
            assert x["parent"] is not None and s["slices"][x["parent"]] in holds
        assert all("scenario.py" in x["args"]["acquired_at"] and x["args"]["open"] is False for x in holds)
    waits = [x for x in s["slices"] if x["name"].startswith("wait Lock ") and site in x["name"]]
    assert waits, "three workers on one lock never waited"
    return s


@pytest.mark.parametrize("suffix", [".pftrace", ".perfetto-trace"])
def test_runner_writes_perfetto_protobuf(pb, tmp_path, suffix):
    out = tmp_path / f"out{suffix}"
    r = run(THREADED, runner=["--trace", str(out)], tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"rsthread: trace written to {out} (open in https://ui.perfetto.dev)" in r.stderr
    assert "rsthread: cannot" not in r.stderr
    assert not (tmp_path / f"out{suffix}.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["scenario.py", out.name])  # no temp file left
    check_threaded(out, r.stdout)


def test_env_perfetto_trace_with_deadlock_marker(pb, tmp_path):
    out = tmp_path / "dl.pftrace"
    r = run(script=EXAMPLES / "dining_philosophers.py", diag=f"deadlock=warn,trace={out}", tmp_path=tmp_path)
    assert r.returncode == 1 and "philosophers are stuck" in r.stdout, (r.stdout, r.stderr)
    assert r.stderr.count("rsthread: deadlock detected") == 1
    s = check_perfetto(out.read_bytes())
    names = {name for _, _, name in s["threads"].values()}
    assert {f"philosopher-{i}" for i in range(5)} | {"MainThread"} <= names
    markers = [x for x in s["instants"] if x["name"] == "deadlock"]
    assert len(markers) == 1
    m = markers[0]
    assert s["tracks"][m["track"]] == _perfetto.MARKER_TRACK_NAME
    assert m["args"]["thread"].startswith("philosopher-")
    report = m["args"]["report"]
    for i in range(5):
        assert f"philosopher-{i} (0x" in report
    assert f"dining_philosophers.py:{FORKS_LINE} in {MODULE_LISTCOMP}" in report
    # The cycle's waits, on the philosophers' tracks, are still open at exit.
    forks = f"dining_philosophers.py:{FORKS_LINE} in {MODULE_LISTCOMP}"
    open_waits = [x for x in s["slices"] if x["name"].startswith("wait Lock ") and x["name"].endswith(forks)
                  and x["args"].get("open")]
    assert sorted(thread_of(s, x["track"])[2] for x in open_waits) == [f"philosopher-{i}" for i in range(5)]
    starts = [x for x in s["instants"] if x["name"] == "thread start"]
    assert {thread_of(s, x["track"])[2] for x in starts} >= {f"philosopher-{i}" for i in range(5)}


def test_chrome_json_export_through_the_converter(pb, tmp_path):
    """The JSON export's structure, checked by the same code path: the
    converter (B/E balance, nesting, thread_name metadata), then the parser."""
    out = tmp_path / "out.json"
    r = run(script=EXAMPLES / "pipeline.py", runner=["--trace", str(out), "--deadlock", "warn"], tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    s = check_perfetto(_perfetto.chrome_to_perfetto(doc).SerializeToString())
    events = doc["traceEvents"]
    named = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    got = {tid: name for _, tid, name in s["threads"].values()}
    lanes = {n for n in s["tracks"].values()}
    for tid, name in named.items():  # every named JSON thread: a thread track or one of its lanes
        assert got.get(tid) == name or name in lanes, (tid, name)
    for n in ("MainThread", "producer", "consumer", "worker-0", "worker-3"):
        assert n in got.values()
    xs = [e for e in events if e["ph"] == "X"]
    assert sorted(x["name"] for x in s["slices"]) == sorted(e["name"] for e in xs)
    assert len(s["instants"]) == sum(e["ph"] == "i" for e in events)
    assert any("pipeline.py:18" in x["name"] for x in s["slices"])


def test_json_path_unchanged(tmp_path):
    out = tmp_path / "plain.json"
    r = run(THREADED, runner=["--trace", str(out)], tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["traceEvents"]
    assert out.read_bytes()[:1] == b"{"


def test_without_perfetto_package_falls_back_to_json(tmp_path):
    blocker = tmp_path / "blocker" / "perfetto"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named perfetto (test)')\n")
    out = tmp_path / "out.pftrace"
    r = run(THREADED, runner=["--trace", str(out)], tmp_path=tmp_path,
            env_extra={"PYTHONPATH": str(tmp_path / "blocker")})
    assert r.returncode == 0, r.stderr
    fallback = tmp_path / "out.pftrace.json"
    lines = [ln for ln in r.stderr.splitlines() if "perfetto" in ln.lower()]
    assert lines[0] == (f"rsthread: cannot write the Perfetto protobuf trace {out}: the 'perfetto' package is "
                        f"missing (pip install perfetto); wrote Chrome trace JSON to {fallback} instead")
    assert f"rsthread: trace written to {fallback} (open in https://ui.perfetto.dev)" in r.stderr
    assert not out.exists()
    assert json.loads(fallback.read_text())["traceEvents"]


def test_conversion_failure_falls_back_to_json(pb, tmp_path):
    code = THREADED + textwrap.dedent("""
        import rsthread._perfetto as P
        def broken(path, doc):
            raise P.TraceFormatError("broken on purpose")
        P.write_perfetto = broken
    """)
    out = tmp_path / "out.pftrace"
    r = run(code, runner=["--trace", str(out)], tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    fallback = tmp_path / "out.pftrace.json"
    assert (f"rsthread: cannot convert the trace to Perfetto's protobuf format (TraceFormatError: broken on "
            f"purpose); wrote Chrome trace JSON to {fallback} instead") in r.stderr
    assert not out.exists()
    assert json.loads(fallback.read_text())["traceEvents"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pftrace.json", "scenario.py"]
