"""What a trace contains, per cache, per CPU and per call site: the ``analyze`` statistics.

Input is a :class:`~sheaftune.normalize.Normalized` trace; output is an :class:`Analysis`
record. Nothing here replays the model: these are facts read off the events (counts, matching,
lifetimes, cross-CPU frees, call sites, gfp mix, sizes), the evidence a user checks before
trusting a replay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from sheaftune import gfp as gfpmod
from sheaftune.analysis._characterize_layout import (
    B_CROSS,
    B_LIVE,
    B_MATCHED,
    B_NOWAIT,
    B_SIZE,
    B_UNSEEN,
    NCODES,
    OP_BITS,
)
from sheaftune.events import Op
from sheaftune.normalize import CHUNK_ROWS, Normalized
from sheaftune.results import Record

NOPS = len(Op)

_KERNELS = "sheaftune.analysis._characterize_kernels"
#: First sizes of the kernels' hash tables (powers of two, doubled when half full): the
#: (cache, side, call-site function) pairs beyond each call site's first cache, and the
#: (cache, slot size) pairs beyond each cache's first size.
SITE_SLOTS = 1 << 12
SIZE_SLOTS = 1 << 10
#: Counters of the largest histogram that also splits by CPU (256 KiB: within a core's L2).
HIST_CPU_LIMIT = 1 << 15

#: Share of allocations that must die visibly; below it a cache is flagged (trace-realities.md:
#: frees through kfree_rcu and bulk frees fire no event).
VISIBLE_FREE_FLAG = 0.5
#: Allocations a cache needs before it is flagged for invisible frees.
FLAG_MIN_ALLOCS = 100
TOP_SITES = 5
LIFETIME_PERCENTILES = (50, 90, 99)

_OFFSET = re.compile(r"\+0x[0-9a-fA-F]+(/0x[0-9a-fA-F]+)?")


def site_function(site: str) -> str:
    """``mas_wr_bnode+0x1af`` -> ``mas_wr_bnode``; raw addresses stay as they are."""
    return _OFFSET.sub("", site)


def _site_functions(sites: list[str]) -> list[str]:
    """``site_function`` of each call site, in one regex pass over them all."""
    joined = "\n".join(sites)
    if joined.count("\n") != max(len(sites) - 1, 0):  # a site with a newline: one at a time
        return [site_function(s) for s in sites]
    return _OFFSET.sub("", joined).split("\n") if sites else []


@dataclass(frozen=True)
class Analysis(Record):
    """``sheaftune analyze`` result for one trace.

    ``trace``: format, events, events_by_type, cpus, time span, skipped lines by reason, NULL
    frees, lost events. ``caches``: name -> statistics (see ``docs/schemas.md``).
    """

    # Version history:
    # 1 - first schema.
    # 2 - caches.<name>.replay: the sheaf model's replay of the cache, one row per capacity;
    #     top-level "model" says which kernel semantics and engine were applied (null: none).
    SCHEMA: ClassVar[str] = "sheaftune/analysis"
    VERSION: ClassVar[int] = 2

    trace: dict[str, Any]
    caches: dict[str, dict[str, Any]]
    normalization: dict[str, int]
    notes: list[str] = field(default_factory=list)
    complete: bool = True
    model: dict[str, Any] | None = None


@dataclass(frozen=True)
class AnalysisSet(Record):
    """Several traces analysed in one run, in the order they were given."""

    # Version history:
    # 1 - first schema.
    SCHEMA: ClassVar[str] = "sheaftune/analysis-set"
    VERSION: ClassVar[int] = 1

    analyses: list[Analysis]


def characterize(norm: Normalized, cache_filter: list[str] | None = None) -> Analysis:
    """Statistics per cache (all caches, or those named in ``cache_filter``) and per trace.

    One compiled pass over the rows (``_characterize_kernels``) counts everything per cache,
    per CPU and per call site, into arrays sized by caches, CPUs, call sites and the few
    (cache, call site) and (cache, slot size) pairs beyond each one's first, and collects the
    matched frees' lifetimes; those are then grouped by cache in place and their percentiles
    selected without sorting. The pass goes a chunk of ``CHUNK_ROWS`` rows at a time, giving
    back the pages of file-mapped columns in between (issue 10); only the lifetimes (8 bytes,
    and their cache's 4, per matched free) are kept whole.
    """
    t = norm.table
    meta = t.meta
    n = len(t)
    ts = t.ts_ns
    ncaches = len(t.caches)
    stride = ncaches + 1  # the last cache slot: events no cache is counted for
    span_ns = int(ts[-1] - ts[0]) if n else 0
    scale = 1e-9 if meta.ts_is_ns else 1.0
    # (imported here: modules that only read Analysis records need no kernel machinery)
    from sheaftune.compiled import kernels

    kern = kernels(_KERNELS)
    wide = norm.alloc_of.dtype == np.int64
    count_rows = kern.count_rows_i8 if wide else kern.count_rows_i4

    site_funcs = _site_functions(t.sites)
    func_names = sorted(set(site_funcs))
    func_index = {f: j for j, f in enumerate(func_names)}
    nfuncs = len(func_names)
    # (and a spare last entry for the kernel)
    func_of_site = np.array([func_index[f] for f in site_funcs] + [0], dtype=np.int64)

    cpu_max = -1
    for lo in range(0, n, CHUNK_ROWS):
        cpu_max = max(cpu_max, int(t.cpu[lo : lo + CHUNK_ROWS].max()))
        t.release()
    ncpus = max(int(meta.cpus), cpu_max + 1)
    width = ncpus if ncpus else 1

    nsites = len(site_funcs)
    # the per-CPU split inside the histogram (one counter less per row) when that stays small
    cpus_in_hist = stride * width * NCODES <= HIST_CPU_LIMIT
    hist = np.zeros(stride * (width if cpus_in_hist else 1) * NCODES, dtype=np.int64)
    per_cpu = np.zeros(0 if cpus_in_hist else 2 * stride * width, dtype=np.int64)
    req_sum = np.zeros(stride, dtype=np.int64)
    # -1: no first size (cache) yet; -2 in the spare entry the other rows look at
    primary_size = np.full(stride, -1, dtype=np.int64)
    primary_size[ncaches] = -2
    primary_site = np.full(2 * nsites + 1, -1, dtype=np.int64)
    primary_site[-1] = -2
    site_hits = np.zeros(2 * nsites + 1, dtype=np.int64)
    tables = [_new_table(SITE_SLOTS), _new_table(SIZE_SLOTS)]
    # every matched free, as normalize counted them (grown if that falls short)
    room = max(1, int(norm.counts.get("matched_free", n)))
    lifetime = np.empty(room, dtype=np.int64)
    lifetime_cid = np.empty(room, dtype=np.int32)
    fill = np.zeros(3, dtype=np.int64)
    cols = (t.op, t.cpu, t.cache_id, t.ptr, t.gfp, t.site_id, t.bytes_alloc, t.bytes_req, ts)
    for lo in range(0, n, CHUNK_ROWS):
        hi = min(n, lo + CHUNK_ROWS)
        at = lo
        while at < hi:
            at = count_rows(
                at, hi, ncaches, width, int(cpus_in_hist), gfpmod.__GFP_DIRECT_RECLAIM, *cols,
                norm.alloc_of, norm.reused_by, norm.live_at_end, func_of_site, nfuncs, hist,
                per_cpu, req_sum, primary_size, primary_site, site_hits, *tables[0], *tables[1],
                lifetime, lifetime_cid, fill,
            )  # fmt: skip
            if at == hi:
                break
            # a hash table reached half full, or the lifetimes their end: grow, go on
            for j in range(2):
                if fill[j] >= len(tables[j][0]) >> 1:
                    old = tables[j]
                    tables[j] = _new_table(2 * len(old[0]))
                    kern.rehash(*old, *tables[j], fill, j)
            if fill[2] == len(lifetime):
                lifetime = np.resize(lifetime, 2 * len(lifetime))
                lifetime_cid = np.resize(lifetime_cid, 2 * len(lifetime_cid))
        t.release()

    # events by op, and by flag, per cache
    codes = np.arange(NCODES)
    code_ops = codes & ((1 << OP_BITS) - 1)
    on_alloc = (code_ops == Op.KMEM_CACHE_ALLOC) | (code_ops == Op.KMALLOC)
    if cpus_in_hist:
        hist3 = hist.reshape(stride, width, NCODES)
        a_cpu = hist3[:ncaches, :, on_alloc].sum(axis=2)
        f_cpu = hist3[:ncaches, :, ~on_alloc].sum(axis=2)
        hist2 = hist3.sum(axis=1)
    else:
        hist2 = hist.reshape(stride, NCODES)
        a_cpu = per_cpu[: stride * width].reshape(stride, width)[:ncaches]
        f_cpu = per_cpu[stride * width :].reshape(stride, width)[:ncaches]
    by_op_arr = hist2.reshape(stride, NCODES >> OP_BITS, 1 << OP_BITS).sum(axis=1)[:, :NOPS]
    # per cache: matched frees, unseen frees, live at the end, no-wait allocations, cross-CPU
    # frees, allocations of the cache's first slot size
    wanted_bits = [(B_MATCHED, ~on_alloc), (B_UNSEEN, on_alloc), (B_LIVE, on_alloc)]
    wanted_bits += [(B_NOWAIT, on_alloc), (B_CROSS, ~on_alloc), (B_SIZE, on_alloc)]
    select = np.array([((codes >> b) & 1).astype(bool) & side for b, side in wanted_bits])
    flags = hist2 @ select.T.astype(np.int64)
    nmatched, first_size = flags[:ncaches, 0], flags[:ncaches, 5]
    matched, unseen, live, nowait, cross, _ = flags.T.tolist()
    by_op = by_op_arr[:ncaches].T.tolist()
    allocs = (by_op_arr[:ncaches, Op.KMEM_CACHE_ALLOC] + by_op_arr[:ncaches, Op.KMALLOC]).tolist()
    frees = (by_op_arr[:ncaches, Op.KMEM_CACHE_FREE] + by_op_arr[:ncaches, Op.KFREE]).tolist()
    events_by_op = by_op_arr.sum(axis=0).tolist()
    # per cache, the CPUs it has events on: [(cpu, allocations, frees)]
    on_cpu: list[list[tuple[int, int, int]]] = [[] for _ in range(ncaches)]
    nz_cache, nz_cpu = np.nonzero(a_cpu | f_cpu)
    for c, p, a, f in zip(
        nz_cache.tolist(),
        nz_cpu.tolist(),
        a_cpu[nz_cache, nz_cpu].tolist(),
        f_cpu[nz_cache, nz_cpu].tolist(),
        strict=True,
    ):
        on_cpu[c].append((p, a, f))

    # lifetimes grouped by cache (their counts are the caches' matched frees)
    bounds = np.zeros(ncaches + 1, dtype=np.int64)
    np.cumsum(nmatched, out=bounds[1:])
    if bounds[-1] != fill[2]:
        raise AssertionError("characterize: matched frees and their lifetimes disagree")
    kern.group(lifetime, lifetime_cid, bounds, np.empty(ncaches, dtype=np.int64))
    del lifetime_cid
    lt_stats = _lifetime_stats(kern, lifetime, bounds)
    del lifetime

    hits = site_hits[:-1]
    sites = _top_sites(tables[0], primary_site[:-1], hits, func_of_site[:-1], func_names)
    sizes = _sizes(tables[1], primary_size[:ncaches], first_size, req_sum)

    op_names = [(int(o), o.tracepoint) for o in Op]
    wanted = set(cache_filter) if cache_filter else None
    caches: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(t.caches):
        if wanted is not None and name not in wanted:
            continue
        na, nf = allocs[c], frees[c]
        if na == 0 and nf == 0:
            continue
        nm = matched[c]
        st: dict[str, Any] = {
            "alloc": na,
            "free": nf,
            "events_by_type": {tp: by_op[o][c] for o, tp in op_names if by_op[o][c]},
            "matched_free": nm,
            "unmatched_free": nf - nm,
            "unseen_free": unseen[c],
            "live_at_end": live[c],
            "alloc_per_s": _rate(na, span_ns, scale),
            "free_per_s": _rate(nf, span_ns, scale),
            "cross_cpu_free": cross[c],
            "cross_cpu_free_share": _share(cross[c], nm),
            "lifetime_ns": lt_stats[c],
            "per_cpu": {str(p): {"alloc": a, "free": f} for p, a, f in on_cpu[c]},
            "alloc_sites": sites[0].get(c, []),
            "free_sites": sites[1].get(c, []),
            "nowait_share": _share(nowait[c], na),
            "object_size": sizes.get(c),
            "invisible_frees": bool(na >= FLAG_MIN_ALLOCS and nf < VISIBLE_FREE_FLAG * na),
        }
        caches[name] = st

    lost = sum(meta.lost_events.values())
    trace = {
        "source": meta.source,
        "format": meta.format,
        "file_version": meta.file_version,
        "kernel_release": meta.kernel_release,
        "clock": meta.clock,
        "buffer": meta.buffer,
        "buffers": list(meta.buffers),
        "events": n,
        "events_by_type": {tp: events_by_op[o] for o, tp in op_names},
        "cpus": ncpus,
        "first_ts": _seconds(int(ts[0]), meta.ts_is_ns) if n else None,
        "last_ts": _seconds(int(ts[-1]), meta.ts_is_ns) if n else None,
        "duration_s": span_ns * scale if meta.ts_is_ns else None,
        "pointers_hashed": meta.pointers_hashed,
        "skipped": dict(sorted(meta.skipped.items())),
        "null_free": norm.counts["null_free"],
        "lost_events": lost,
        "lost_events_by_cpu": {str(k): v for k, v in sorted(meta.lost_events.items())},
        "lost_markers": sum(meta.lost_markers.values()),
    }
    trace.update({k: v for k, v in meta.extra.items() if k not in trace})
    notes = _notes(norm, caches)
    return Analysis(trace, caches, dict(norm.counts), notes, meta.complete)


def _notes(norm: Normalized, caches: dict[str, dict[str, Any]]) -> list[str]:
    notes = []
    meta = norm.table.meta
    c = norm.counts
    if meta.pointers_hashed:
        notes.append("pointers are hashed (%p): frees match allocations, but no address facts")
    if c["unmatched_kfree"]:
        notes.append(
            f"{c['unmatched_kfree']} kfree of objects allocated before the trace "
            "began: their cache is unknown"
        )
    flagged = [name for name, st in caches.items() if st["invisible_frees"]]
    if flagged:
        notes.append(
            "mostly invisible frees (kfree_rcu, bulk frees fire no event): "
            + ", ".join(sorted(flagged))
        )
    if any(name.startswith(("kmalloc", "dma-kmalloc")) for name in caches):
        notes.append(
            "kmalloc caches are named by size and gfp family; with "
            "CONFIG_RANDOM_KMALLOC_CACHES each is several caches a trace cannot tell"
        )
    if meta.lost_events or meta.lost_markers:
        notes.append("the tracer lost events: some frees and allocations are missing")
    return notes


def _rate(count: int, span: int, scale: float) -> float | None:
    if span <= 0:
        return None
    return round(count / (span * scale), 3)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _seconds(ts: int, is_ns: bool) -> float:
    return round(ts / 1e9, 9) if is_ns else float(ts)


def _new_table(slots: int) -> tuple[np.ndarray, np.ndarray]:
    """An empty hash table of the kernels: keys (-1: an empty slot) and counts."""
    return np.full(slots, -1, dtype=np.int64), np.zeros(slots, dtype=np.int64)


def _entries(
    table: tuple[np.ndarray, np.ndarray], keys: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The (key, count) pairs of a hash table and of ``keys``/``counts`` (the kernels' first
    key of each call site or cache), equal keys summed, sorted by key."""
    used = table[0] != -1
    keys = np.concatenate((table[0][used], keys))
    counts = np.concatenate((table[1][used], counts))
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inverse, weights=counts, minlength=len(uniq)).astype(np.int64)


def _lifetime_stats(
    k: Any, lifetime: np.ndarray, bounds: np.ndarray
) -> list[dict[str, int] | None]:
    """Per cache: its lifetimes' ``LIFETIME_PERCENTILES`` (numpy's ``method="lower"``: the
    value at index floor((n - 1) * p / 100) of the sorted values, the same float arithmetic),
    max and min; None for a cache without lifetimes. Reorders ``lifetime`` within each cache."""
    sizes = np.diff(bounds)
    ks = np.empty((len(sizes), len(LIFETIME_PERCENTILES)), dtype=np.int64)
    for j, p in enumerate(LIFETIME_PERCENTILES):
        ks[:, j] = np.floor((sizes - 1) * (p / 100))
    np.maximum(ks, 0, out=ks)
    out = np.zeros((len(sizes), len(LIFETIME_PERCENTILES) + 2), dtype=np.int64)
    k.order_stats(lifetime, bounds, ks, out)
    names = [f"p{p}" for p in LIFETIME_PERCENTILES] + ["max", "min"]
    return [
        dict(zip(names, row, strict=True)) if m else None
        for m, row in zip(sizes.tolist(), out.tolist(), strict=True)
    ]


def _top_sites(
    table: tuple[np.ndarray, np.ndarray],
    primary: np.ndarray,
    hits: np.ndarray,
    func_of_site: np.ndarray,
    func_names: list[str],
) -> tuple[dict[int, list[dict[str, Any]]], dict[int, list[dict[str, Any]]]]:
    """Per side (allocations, frees), per cache: the TOP_SITES call-site functions by event
    count, equal counts in function-name order (keys: (cache * 2 + side) * nfuncs + function;
    ``primary``/``hits``: each (side, call site)'s first cache and its events there)."""
    out: tuple[dict[int, list[dict[str, Any]]], dict[int, list[dict[str, Any]]]] = ({}, {})
    nf = len(func_names)
    nsites = len(func_of_site)
    side = np.arange(2 * nsites) // max(nsites, 1)
    seen = primary >= 0
    pkeys = ((primary * 2 + side) * nf + np.tile(func_of_site, 2))[seen]
    keys, counts = _entries(table, pkeys, hits[seen])
    if len(keys) == 0:
        return out
    group = keys // nf
    totals = np.bincount(group, weights=counts).astype(np.int64)
    order = np.lexsort((keys, -counts, group))
    group_s = group[order]
    rank = np.arange(len(order)) - np.searchsorted(group_s, group_s)
    top = order[rank < TOP_SITES]
    totals_l = totals.tolist()
    for g, key, cnt in zip(
        group[top].tolist(), keys[top].tolist(), counts[top].tolist(), strict=True
    ):
        c, s = divmod(g, 2)
        out[s].setdefault(c, []).append(
            {"site": func_names[key % nf], "count": cnt, "share": round(cnt / totals_l[g], 6)}
        )
    return out


def _sizes(
    table: tuple[np.ndarray, np.ndarray],
    primary: np.ndarray,
    primary_count: np.ndarray,
    req_sum: np.ndarray,
) -> dict[int, dict[str, Any]]:
    """Per cache: the most common slot size (the smallest of equals), its range, and the mean
    requested size (keys: cache * 2**32 + bytes_alloc; ``primary``/``primary_count``: each
    cache's first slot size and its allocations of it)."""
    seen = primary >= 0
    cids = np.flatnonzero(seen)
    keys, counts = _entries(table, (cids << 32) + primary[seen], primary_count[seen])
    out: dict[int, dict[str, Any]] = {}
    if len(keys) == 0:
        return out
    caches_of = keys >> 32
    vals = keys & 0xFFFFFFFF
    # by cache, then count descending, then size: each cache's first row is its mode
    order = np.lexsort((vals, -counts, caches_of))
    # caches_of is sorted, so the same group boundaries hold in the lexsorted order
    starts = np.flatnonzero(np.concatenate(([True], caches_of[1:] != caches_of[:-1])))
    ends = np.append(starts[1:], len(keys)) - 1
    cs = caches_of[starts]
    mean = req_sum[cs] / np.add.reduceat(counts, starts)  # numpy's int64 / int64 division
    for c, mode, lo, hi, m in zip(
        cs.tolist(),
        vals[order[starts]].tolist(),
        vals[starts].tolist(),
        vals[ends].tolist(),
        mean.tolist(),
        strict=True,
    ):
        out[c] = {
            "bytes_alloc": mode,
            "bytes_alloc_min": lo,
            "bytes_alloc_max": hi,
            "bytes_req_mean": round(m, 3),
        }
    return out
