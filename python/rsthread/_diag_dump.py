"""The thread dump (:func:`rsthread.diagnostics.dump`, also the hang
watchdog's report): each thread's state, and every wait chain as arrows and
as prose. Private: the API is :mod:`rsthread.diagnostics`."""
from __future__ import annotations

from . import _diag_common
from ._diag_common import _diag, _name_of, _stack, _threading
from ._diag_format import _dur, _is_sentinel, _lock_label, _short, _visible_held


def _where(frame) -> str:
    """``file:line in func: source`` of a frame (the innermost Python frame of
    a thread: a thread blocked in C code or a system call, such as
    ``time.sleep`` or ``sock.recv``, shows the Python line that called it)."""
    import linecache

    if frame is None:
        return "<no Python frame>"
    code = frame.f_code
    src = linecache.getline(code.co_filename, frame.f_lineno).strip()
    where = f"{_short(code.co_filename)}:{frame.f_lineno} in {code.co_name}"
    return f"{where}: {src}" if src else where


def _is_self_wait(link: dict) -> bool:
    """A thread waiting for a plain lock it holds itself: a Condition/Event/
    queue waiter lock (released by whoever notifies it), not a hang."""
    return link.get("holder") == link["ident"] and link["lock"]["kind"] == "Lock"


def _what_waited(link: dict, holder_name: str | None) -> str:
    lock = link["lock"]
    if _is_sentinel(lock):
        return f"waits for thread {holder_name!r} to end (join)" if holder_name else "waits for a thread to end (join)"
    if _is_self_wait(link):
        return f"waits to be notified (on its own waiter {_lock_label(lock)}: a Condition/Event/queue wait)"
    who = f" held by {holder_name!r}" if holder_name else ""
    return f"waits for {_lock_label(lock)}{who}"


def _chain_prose(c: dict, frames: dict, firsts: list | None = None) -> str:
    """``'T1' waits for L1 held by 'T2', which waits for L2 held by 'T3', which
    is running at file:line``. ``firsts``: other chains that differ from
    ``c`` only by their first thread (threads piling up on the same lock)."""
    links = c["links"]
    end = c["end"]
    parts = []
    for i, link in enumerate(links):
        nxt = links[i + 1]["name"] if i + 1 < len(links) else None
        if nxt is None:
            if end["kind"] == "running":
                nxt = _name_of(end["thread"]["ident"], end["thread"].get("name"))
            elif end["kind"] == "cycle":
                nxt = links[end["start"]]["name"]
        text = _what_waited(link, nxt)
        if i == 0:
            firsts = [c] + [o for o in (firsts or []) if o is not c]
            who = ", ".join(f"{o['links'][0]['name']!r} (for {_dur(o['links'][0]['waited'])})" for o in firsts)
            if len(firsts) > 1:
                text = text.replace("waits ", "wait ", 1)
            parts.append(f"{who} {text}")
        else:
            parts.append(f", which {text}")
    kind = end["kind"]
    if kind == "running":
        ident = end["thread"]["ident"]
        parts.append(f", which is running at {_where(frames.get(ident))}")
    elif kind == "cycle":
        if len(links) - end["start"] == 1 and _is_self_wait(links[-1]):
            pass  # a Condition-style wait ends the chain
        elif any(link["timed"] for link in links[end["start"]:]):
            parts.append(": a cycle, which a timeout will break")
        else:
            parts.append(": a cycle - DEADLOCK, none of these threads can proceed")
    elif kind == "holder-exited":
        parts.append(f"; its holder (thread {end['ident']:#x}) exited without releasing it")
    else:
        parts.append("; nobody is known to hold it")
    return "".join(parts)


def _chain_arrows(c: dict, firsts: list | None = None) -> str:
    firsts = [c] + [o for o in (firsts or []) if o is not c]
    names = ", ".join(repr(o["links"][0]["name"]) for o in firsts)
    parts = [f"{link['name']!r} -> {_lock_label(link['lock'])}" for link in c["links"]]
    parts[0] = f"{names} -> {_lock_label(c['links'][0]['lock'])}"
    end = c["end"]
    kind = end["kind"]
    if kind == "running":
        tail = f"-> {_name_of(end['thread']['ident'], end['thread'].get('name'))!r} (running)"
    elif kind == "cycle":
        first = c["links"][end["start"]]
        if len(c["links"]) - end["start"] == 1 and _is_self_wait(c["links"][-1]):
            tail = f"-> {first['name']!r} (waiting to be notified)"
        elif any(link["timed"] for link in c["links"][end["start"]:]):
            tail = f"-> {first['name']!r}  CYCLE (a wait with a timeout will break it)"
        else:
            tail = f"-> {first['name']!r}  DEADLOCK (cycle)"
    elif kind == "holder-exited":
        tail = f"-> exited thread {end['ident']:#x} (the lock can never be released)"
    else:
        tail = "-> (no known holder)"
    return " -> ".join(parts) + " " + tail


def _merge_chains(chains: list[dict]) -> list[list[dict]]:
    """Group chains that differ only by their first thread (not in a cycle)."""
    groups: dict = {}
    for c in chains:
        end = c["end"]
        if end["kind"] == "cycle" and end["start"] == 0:
            key = ("own", c["links"][0]["ident"])
        else:
            rest = tuple((link["ident"], link["lock"]["id"]) for link in c["links"][1:])
            key = (c["links"][0]["lock"]["id"], rest, end["kind"], str(end.get("thread", end.get("ident"))),
                   end.get("start"))
        groups.setdefault(key, []).append(c)
    return list(groups.values())


def _distinct_chains(chains: list[dict]) -> list[dict]:
    """Chains without repeats: one contained in a longer one (its tail) is
    left out, and a cycle is shown once."""
    out: list[dict] = []
    shown: list[tuple] = []
    cycles: set = set()
    for c in sorted(chains, key=lambda c: -len(c["links"])):
        ids = tuple(link["ident"] for link in c["links"])
        if c["end"]["kind"] == "cycle":
            cyc = frozenset(ids[c["end"]["start"]:])
            if c["end"]["start"] == 0 and cyc in cycles:
                continue
            cycles.add(cyc)
        elif any(t[len(t) - len(ids):] == ids for t in shown):
            continue
        shown.append(ids)
        out.append(c)
    return out


def _format_thread(ident: int, t: dict | None, frames: dict, th, main) -> list[str]:
    name = _name_of(ident, t.get("name") if t else None)
    native = t["native_id"] if t else "?"
    daemon = ""
    if th is not None and ident in th._active:
        daemon = " daemon" if th._active[ident].daemon else ""
    out = [f"{name!r} ident={ident:#x} native_id={native}{daemon}"]
    if t and t["waiting"]:
        w = t["waiting"]
        if w["holder"]:
            holder = _name_of(w["holder"]["ident"], w["holder"].get("name"))
            who = "held by itself" if w["holder"]["ident"] == ident else f"held by {holder!r}"
        elif w["holder_exited"]:
            who = f"held by exited thread {w['holder_exited']:#x}"
        else:
            who = "no known holder"
        timed = ", with timeout" if w["timed"] else ""
        out.append(f"  WAITING for {_lock_label(w['lock'])}, {who}, for {_dur(w['waited'])}{timed}")
    elif t is not None:
        out.append("  RUNNABLE (not waiting for an rsthread lock)")
    else:
        out.append("  (not tracked by diagnostics)" if _diag.flags() else "  (lock state unknown)")
    for h in (_visible_held(t["held"]) if t else []):
        depth = f", depth {h['depth']}" if h["depth"] > 1 else ""
        held_for = f", for {_dur(h['held_for'])}" if h["held_for"] is not None else ""
        out.append(f"  holds {_lock_label(h['lock'])}, acquired at {_short(h['acquire_site'])}{held_for}{depth}")
    stack = _stack(frames.get(ident))
    if stack:
        out.append("  Traceback (most recent call last):")
        for line in "".join(stack).rstrip("\n").split("\n"):
            out.append("  " + line)
    return out


def _format_dump(frames: dict, snap: dict, chains: list[dict], only: set | None = None) -> str:
    """The dump text: every thread (or those in ``only``), then ``chains``."""
    idents = list(dict.fromkeys(list(snap) + list(frames)))
    idents = [i for i in idents if i != _diag_common._watchdog_ident]
    total = len(idents)
    if only is not None:
        idents = [i for i in idents if i in only]
    th = _threading()
    main = th.main_thread().ident if th is not None else None
    idents.sort(key=lambda i: (i != main, i))
    if only is None:
        out = [f"rsthread: thread dump ({total} threads)"]
    else:
        out = [f"rsthread: thread dump ({len(idents)} of {total} threads: those in the wait chain)"]
    if not _diag.flags():
        out.append("(diagnostics are off: no lock information; enable them, e.g. with "
                   "RSTHREAD_DIAG=dump-signal=SIGUSR1 or configure(), before the threads start)")
    for ident in idents:
        out.append("")
        out += _format_thread(ident, snap.get(ident), frames, th, main)
    chains = _distinct_chains(chains)
    if chains:
        out.append("")
        out.append("wait chains:")
        deadlocks = 0
        for group in _merge_chains(chains):
            out.append("  " + _chain_arrows(group[0], group))
            out.append("    " + _chain_prose(group[0], frames, group))
            if "DEADLOCK" in out[-2]:
                deadlocks += 1
        if deadlocks:
            out.append(f"DEADLOCK: {deadlocks} wait cycle(s) above can never resolve")
    return "\n".join(out) + "\n"
