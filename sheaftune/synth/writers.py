"""Print an EventTable as the text a real capture would give: ftrace text or ``trace-cmd report``.

``write_ftrace`` mimics ``cat /sys/kernel/tracing/trace`` on 6.18 (trace-formats.md 9.1): the
``# tracer: nop`` header with entries and ``#P:``, ``%16s-%-7d [%03d] .....  %5lu.%06lu:``
context, ``call_site=sym+0xOFF/0xSIZE``, and ``%p`` pointers hashed the way ftrace does (32 bits,
upper half zero, NULL unhashed) unless ``hash_pointers`` is False (``options/hash-ptr`` off).
``write_report`` mimics ``trace-cmd report`` 3.1 (9.2): ``cpus=N``, ``%16s-%-5d [%03d]``, the
event name padded to 20, the kmem plugin's ``(sym+0xOFF)`` prefix, ``ptr=0x...`` (``(nil)`` for
NULL), microseconds or, with ``ns=True``, the nine decimals of ``report -t``.

Text is produced a chunk of rows at a time with vectorised string formatting; a row costs no
Python call of its own beyond one ``%`` format.
"""

from __future__ import annotations

from typing import IO

import numpy as np

from sheaftune import gfp as gfpmod
from sheaftune.events import EventTable, Op

_CHUNK = 1 << 16

FTRACE_HEADER = """\
# tracer: nop
#
# entries-in-buffer/entries-written: {n}/{n}   #P:{cpus}
#
#                                _-----=> irqs-off/BH-disabled
#                               / _----=> need-resched
#                              | / _---=> hardirq/softirq
#                              || / _--=> preempt-depth
#                              ||| / _-=> migrate-disable
#                              |||| /     delay
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
"""


def hash_pointer(ptr: np.ndarray) -> np.ndarray:
    """ftrace-like ``%p``: a bijective 32-bit mix of the low 32 bits; NULL stays 0.

    The kernel uses siphash with a boot-time key; what matters to a reader is that equal
    pointers hash equal, distinct ones (within a 4 GiB span) differently, and the upper half is
    zero. Callers check the span (:func:`pointers_hashable`).
    """
    x = (ptr & np.uint64(0xFFFFFFFF)).astype(np.uint64)
    m = np.uint64(0xFFFFFFFF)
    x = (x ^ (x >> np.uint64(16))) * np.uint64(0x7FEB352D) & m
    x = (x ^ (x >> np.uint64(15))) * np.uint64(0x846CA68B) & m
    x = x ^ (x >> np.uint64(16))
    # a non-NULL pointer must not hash to the NULL rendering
    x = np.where(x == 0, np.uint64(0x9E3779B9), x)
    return np.where(ptr == 0, np.uint64(0), x)


def pointers_hashable(table: EventTable) -> bool:
    """True when every non-NULL pointer lies in one 4 GiB span, so 32-bit hashes cannot collide."""
    p = table.ptr[table.ptr != 0]
    if len(p) == 0:
        return True
    return int(p.max()) - int(p.min()) < (1 << 32) and int(p.max()) >> 32 == int(p.min()) >> 32


def _site_tables(table: EventTable) -> tuple[np.ndarray, np.ndarray]:
    """Per site id: the report form (``sym+0xOFF``) and the ftrace form (``.../0xSIZE``)."""
    sizes = table.meta.extra.get("synth", {}).get("site_sizes", {})
    report, ftrace = [], []
    for s in table.sites:
        report.append(s)
        if "+0x" in s and " " not in s:
            off = int(s.rsplit("+0x", 1)[1], 16)
            size = int(sizes.get(s, (off // 0x40 + 2) * 0x40))
            ftrace.append(f"{s}/{size:#x}")
        else:
            ftrace.append(s)
    report.append("0x0")  # NO_SITE (-1) indexes the last entry
    ftrace.append("0x0")
    return np.asarray(report, dtype=object), np.asarray(ftrace, dtype=object)


def _gfp_table(table: EventTable) -> dict[int, str]:
    return {int(g): gfpmod.format_flags(int(g)) for g in np.unique(table.gfp)}


def _accounted(table: EventTable) -> np.ndarray:
    """``accounted=`` per row: the cache is SLAB_ACCOUNT, or the gfp asks for accounting."""
    names = set(table.meta.extra.get("synth", {}).get("accounted_caches", []))
    acc_cache = np.asarray([c in names for c in table.caches] + [False], dtype=bool)
    return acc_cache[table.cache_id] | ((table.gfp & gfpmod.__GFP_ACCOUNT) != 0)


def _rows(
    table: EventTable,
    sl: slice,
    sites: np.ndarray,
    ptr_text: list[str],
    gfp_names: dict[int, str],
    accounted: np.ndarray,
) -> list[tuple[str, str]]:
    """(event name, field text) per row, in the print formats of the 6.18 kmem tracepoints."""
    op = table.op[sl].tolist()
    site = sites[table.site_id[sl]].tolist()
    names = list(table.caches) + ["(unknown)"]  # NO_CACHE (-1) indexes the last entry
    cache = table.cache_id[sl].tolist()
    breq = table.bytes_req[sl].tolist()
    balloc = table.bytes_alloc[sl].tolist()
    gfp = [gfp_names[g] for g in table.gfp[sl].tolist()]
    node = table.node[sl].tolist()
    acc = ["true" if a else "false" for a in accounted[sl].tolist()]
    out = []
    alloc, kmalloc, cfree = int(Op.KMEM_CACHE_ALLOC), int(Op.KMALLOC), int(Op.KMEM_CACHE_FREE)
    for j, o in enumerate(op):
        if o == alloc:
            out.append(
                (
                    "kmem_cache_alloc",
                    f"call_site={site[j]} ptr={ptr_text[j]} name={names[cache[j]]} "
                    f"bytes_req={breq[j]} bytes_alloc={balloc[j]} gfp_flags={gfp[j]} "
                    f"node={node[j]} accounted={acc[j]}",
                )
            )
        elif o == kmalloc:
            out.append(
                (
                    "kmalloc",
                    f"call_site={site[j]} ptr={ptr_text[j]} bytes_req={breq[j]} "
                    f"bytes_alloc={balloc[j]} gfp_flags={gfp[j]} node={node[j]} "
                    f"accounted={acc[j]}",
                )
            )
        elif o == cfree:
            out.append(
                ("kmem_cache_free", f"call_site={site[j]} ptr={ptr_text[j]} name={names[cache[j]]}")
            )
        else:
            out.append(("kfree", f"call_site={site[j]} ptr={ptr_text[j]}"))
    return out


def _comms(table: EventTable) -> np.ndarray:
    return np.asarray(list(table.comms) + ["<...>"], dtype=object)


def _stamps(ts: np.ndarray, ns: bool) -> list[str]:
    if ns:
        sec, frac = (ts // 1_000_000_000).tolist(), (ts % 1_000_000_000).tolist()
        return [f"{s:5d}.{f:09d}" for s, f in zip(sec, frac, strict=True)]
    us = (ts + 500) // 1000  # the kernel rounds to the nearest microsecond
    sec, frac = (us // 1_000_000).tolist(), (us % 1_000_000).tolist()
    return [f"{s:5d}.{f:06d}" for s, f in zip(sec, frac, strict=True)]


def write_ftrace(table: EventTable, out: IO[str], hash_pointers: bool = True) -> None:
    """Write ``table`` as ``/sys/kernel/tracing/trace`` text (timestamps in µs, rounded)."""
    n = len(table)
    cpus = table.meta.cpus or (int(table.cpu.max()) + 1 if n else 1)
    out.write(FTRACE_HEADER.format(n=n, cpus=cpus))
    hashed = hash_pointers and pointers_hashable(table)
    _, sites = _site_tables(table)
    gfp_names = _gfp_table(table)
    acc = _accounted(table)
    comms = _comms(table)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(n, start + _CHUNK))
        ptr = table.ptr[sl]
        shown = hash_pointer(ptr) if hashed else ptr
        ptr_text = [f"{p:016x}" for p in shown.tolist()]
        stamp = _stamps(table.ts_ns[sl], ns=False)
        ctx = [
            f"{c:>16}-{p:<7} [{k:03d}] ..... "
            for c, p, k in zip(
                comms[table.comm_id[sl]].tolist(),
                table.pid[sl].tolist(),
                table.cpu[sl].tolist(),
                strict=True,
            )
        ]
        rows = _rows(table, sl, sites, ptr_text, gfp_names, acc)
        out.write(
            "".join(
                [f"{ctx[j]}{stamp[j]}: {ev}: {fields}\n" for j, (ev, fields) in enumerate(rows)]
            )
        )


def write_report(table: EventTable, out: IO[str], ns: bool = False) -> None:
    """Write ``table`` as ``trace-cmd report`` 3.1 text; ``ns`` prints ``report -t`` stamps."""
    n = len(table)
    cpus = table.meta.cpus or (int(table.cpu.max()) + 1 if n else 1)
    out.write(f"cpus={cpus}\n")
    sites, _ = _site_tables(table)
    gfp_names = _gfp_table(table)
    acc = _accounted(table)
    comms = _comms(table)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(n, start + _CHUNK))
        ptr_text = [f"0x{p:x}" if p else "(nil)" for p in table.ptr[sl].tolist()]
        stamp = _stamps(table.ts_ns[sl], ns)
        ctx = [
            f"{c:>16}-{p:<5} [{k:03d}] "
            for c, p, k in zip(
                comms[table.comm_id[sl]].tolist(),
                table.pid[sl].tolist(),
                table.cpu[sl].tolist(),
                strict=True,
            )
        ]
        site = sites[table.site_id[sl]].tolist()
        rows = _rows(table, sl, sites, ptr_text, gfp_names, acc)
        out.write(
            "".join(
                [
                    f"{ctx[j]}{stamp[j]}: {ev}:{' ' * (20 - len(ev))} ({site[j]}) {fields}\n"
                    for j, (ev, fields) in enumerate(rows)
                ]
            )
        )


__all__ = ["hash_pointer", "pointers_hashable", "write_ftrace", "write_report"]
