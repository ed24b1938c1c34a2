"""Records of the prefill bpftrace script (``kmem-prefill.bt``) -> an :class:`OpTable`.

One OpTable row is one sheaf critical section: ``kmem_cache_prefill_sheaf(s, gfp, size)``
opens it (``upper_bound`` = size, the objects the caller must be guaranteed), the caller takes
objects with ``kmem_cache_alloc_from_sheaf`` and may top the sheaf up with
``kmem_cache_refill_sheaf``, and ``kmem_cache_return_sheaf`` closes it. ``used`` is the number
of objects taken: counted from ``alloc_from_sheaf`` records when the script had that probe, or
else derived as (objects in the sheaf after prefill/refill) - (objects left at return).

Sections are matched by sheaf pointer. ``kmem_cache_refill_sheaf`` takes the size the sheaf
must hold afterwards, so a refill raises the bound to (objects taken so far + size). When a
refill needs a larger (oversize) sheaf, the kernel calls ``kmem_cache_prefill_sheaf`` for the
new one and ``kmem_cache_return_sheaf`` on the old one from inside the refill; the probes see
that nested prefill and return before the refill's own record, and the builder joins the two
halves back into one section. A refill whose sheaf is unknown is re-attached to the one open
section of the same task and cache (the prefill probe missed it).
Prefills that failed (NULL sheaf), sections never returned before the capture ended and
returns without a prefill are left out and counted in ``stats``. ``alloc_bulk``, ``free_bulk``
and ``kfree_rcu_sheaf`` records describe the bulk and RCU paths; they are parsed but form no
prefill operations.

The script's columns (kmem-tsv/1 layout, meanings per event) are documented in the script.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, MutableSequence
from dataclasses import dataclass

import numpy as np

from sheaftune.errors import InputError
from sheaftune.events import NO_CACHE, NO_SITE, OpTable

#: Event names the prefill script prints.
PREFILL_EVENTS = (
    "prefill_sheaf",
    "refill_sheaf",
    "alloc_from_sheaf",
    "return_sheaf",
    "alloc_bulk",
    "free_bulk",
    "kfree_rcu_sheaf",
)


@dataclass(frozen=True)
class PrefillRecord:
    """One line of the prefill script (columns of kmem-tsv/1; meanings per event)."""

    ts_ns: int
    cpu: int
    tgid: int
    tid: int
    event: str
    ptr: int  # the sheaf (or the bulk array, or the object for kfree_rcu_sheaf)
    call_site: int
    req: int  # bytes_req column: objects requested / left / freed
    got: int | None  # bytes_alloc column: objects in the sheaf / allocated; None for '-'
    cache: str | None
    comm: str


def _num(text: str, base: int = 10) -> int | None:
    if text == "-":
        return None
    return int(text, base)


def parse_prefill_line(line: str) -> PrefillRecord | None:
    """One kmem-tsv/1 line of the prefill script; None for comments and other events."""
    parts = line.rstrip("\n").split("\t", 12)
    if len(parts) != 13 or parts[4] not in PREFILL_EVENTS:
        return None
    ts, cpu, tgid, tid, event, ptr, site, req, got, _gfp, _node, cache, comm = parts
    return PrefillRecord(
        ts_ns=int(ts),
        cpu=int(cpu),
        tgid=int(tgid),
        tid=int(tid),
        event=event,
        ptr=int(ptr, 16),
        call_site=_num(site, 16) or 0,
        req=_num(req) or 0,
        got=_num(got),
        cache=None if cache == "-" else cache,
        comm=comm,
    )


def read_prefill_records(path: str) -> list[PrefillRecord]:
    """Records of a prefill capture (plain or ``bpftrace -f json``), sorted by time (stable)."""
    records: list[PrefillRecord] = []
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            for lineno, line in enumerate(fh, 1):
                text = line
                if line.lstrip().startswith("{"):
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        raise InputError("malformed JSON line", path, f"line {lineno}") from None
                    if obj.get("type") != "printf" or not isinstance(obj.get("data"), str):
                        continue
                    text = obj["data"]
                try:
                    rec = parse_prefill_line(text)
                except ValueError as e:
                    raise InputError(f"bad prefill record: {e}", path, f"line {lineno}") from None
                if rec is not None:
                    records.append(rec)
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", path) from None
    records.sort(key=lambda r: r.ts_ns)
    return records


@dataclass
class _Open:
    rec: PrefillRecord
    upper_bound: int
    objects: int  # objects in the sheaf after the last prefill/refill
    allocs: int = 0


def _intern(names: MutableSequence[str], name: str) -> int:
    try:
        return names.index(name)
    except ValueError:
        names.append(name)
        return len(names) - 1


def ops_from_prefill_records(
    records: Iterable[PrefillRecord],
    caches: MutableSequence[str],
    sites: MutableSequence[str] | None = None,
    stats: dict[str, int] | None = None,
) -> OpTable:
    """The prefill critical sections of ``records`` (time-ordered) as an OpTable.

    ``cache_id``/``site_id`` index ``caches``/``sites``, which are extended in place with names
    not yet in them (pass an EventTable's ``caches`` and ``sites`` to share its ids). Call sites
    are raw ``0x...`` addresses. ``stats``, if given, receives counts of what was left out.
    """
    recs = list(records)
    counts = {
        "operations": 0,
        "failed_prefill": 0,
        "unreturned": 0,
        "return_without_prefill": 0,
        "alloc_outside_section": 0,
    }
    have_alloc_probe = any(r.event == "alloc_from_sheaf" for r in recs)
    open_by_sheaf: dict[int, _Open] = {}
    # Closed sections, kept open to a join until the end: a refill that replaced its sheaf
    # shows as prefill(new) + return(old) + refill(new) of one task (see the module doc).
    closed: list[tuple[_Open, int] | None] = []
    last_closed: dict[int, tuple[int, int]] = {}  # tid -> (index in closed, ts of the return)

    for r in recs:
        if r.event == "prefill_sheaf":
            if r.ptr == 0:
                counts["failed_prefill"] += 1
                continue
            if r.ptr in open_by_sheaf:  # never returned: the capture missed the return
                counts["unreturned"] += 1
            open_by_sheaf[r.ptr] = _Open(r, upper_bound=r.req, objects=r.got or 0)
        elif r.event == "refill_sheaf":
            op = open_by_sheaf.get(r.ptr)
            joined = last_closed.get(r.tid)
            if (
                op is not None
                and joined is not None
                and op.rec.tid == r.tid
                and op.allocs == 0
                and op.rec.ts_ns <= joined[1]
                and (old_entry := closed[joined[0]]) is not None
                and old_entry[0].rec.cache == op.rec.cache
            ):
                # The nested prefill/return of a replacing refill: one section, not two.
                old_op = old_entry[0]
                closed[joined[0]] = None
                del last_closed[r.tid]
                op.rec, op.allocs, op.upper_bound = old_op.rec, old_op.allocs, old_op.upper_bound
            if op is None:
                # The sheaf was replaced: re-attach the task's one open section of this cache.
                mine = [
                    (p, o)
                    for p, o in open_by_sheaf.items()
                    if o.rec.tid == r.tid and o.rec.cache == r.cache
                ]
                if len(mine) != 1:
                    continue
                old, op = mine[0]
                del open_by_sheaf[old]
                open_by_sheaf[r.ptr] = op
            op.upper_bound = max(op.upper_bound, op.allocs + r.req)
            op.objects = (r.got or 0) + op.allocs
        elif r.event == "alloc_from_sheaf":
            op = open_by_sheaf.get(r.ptr)
            if op is None:
                counts["alloc_outside_section"] += 1
            elif r.got is None or r.got > 0:
                op.allocs += 1
        elif r.event == "return_sheaf":
            op = open_by_sheaf.pop(r.ptr, None)
            if op is None:
                counts["return_without_prefill"] += 1
                continue
            last_closed[r.tid] = (len(closed), r.ts_ns)
            closed.append((op, r.req))
    counts["unreturned"] += len(open_by_sheaf)

    rows: list[tuple[int, int, int, int, int, int, int]] = []
    for entry in closed:
        if entry is None:
            continue
        op, left = entry
        used = op.allocs if have_alloc_probe else max(0, op.objects - left)
        rec = op.rec
        cache_id = _intern(caches, rec.cache) if rec.cache else NO_CACHE
        site_id = NO_SITE
        if sites is not None and rec.call_site:
            site_id = _intern(sites, hex(rec.call_site))
        rows.append((rec.ts_ns, rec.cpu, cache_id, op.upper_bound, used, rec.tid, site_id))
    counts["operations"] = len(rows)
    if stats is not None:
        stats.update(counts)
    rows.sort(key=lambda row: row[0])
    cols = list(zip(*rows, strict=True)) if rows else [()] * 7
    return OpTable(
        ts_ns=np.array(cols[0], dtype=np.int64),
        cpu=np.array(cols[1], dtype=np.uint16),
        cache_id=np.array(cols[2], dtype=np.int32),
        upper_bound=np.array(cols[3], dtype=np.uint32),
        used=np.array(cols[4], dtype=np.uint32),
        pid=np.array(cols[5], dtype=np.int32),
        site_id=np.array(cols[6], dtype=np.int32),
        source="capture",
    )
