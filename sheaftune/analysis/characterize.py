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
from sheaftune.events import NO_CACHE, Op
from sheaftune.normalize import Normalized
from sheaftune.results import Record

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
    """Statistics per cache (all caches, or those named in ``cache_filter``) and per trace."""
    t = norm.table
    meta = t.meta
    n = len(t)
    op = t.op
    ts = t.ts_ns
    cpu = t.cpu.astype(np.int64)
    cache_id = t.cache_id
    is_alloc = (op == Op.KMEM_CACHE_ALLOC) | (op == Op.KMALLOC)
    is_free = ~is_alloc
    ncaches = len(t.caches)
    ncpus = max(int(meta.cpus), int(cpu.max()) + 1 if n else 0)
    span_ns = int(ts[-1] - ts[0]) if n else 0
    scale = 1e-9 if meta.ts_is_ns else 1.0

    counted = (cache_id != NO_CACHE) & ~norm.null_free & ~norm.failed_alloc
    cid = np.where(counted, cache_id, ncaches).astype(np.int64)  # ncaches: "not attributed"

    def per_cache(mask: np.ndarray) -> np.ndarray:
        return np.bincount(cid[mask], minlength=ncaches + 1)[:ncaches]

    by_op = {o: per_cache(op == o) for o in Op}
    allocs = per_cache(is_alloc)
    frees = per_cache(is_free)
    matched = per_cache(is_free & (norm.alloc_of >= 0))
    unseen = per_cache(norm.unseen_free)
    live = per_cache(norm.live_at_end)
    nowait = per_cache(is_alloc & ((t.gfp & gfpmod.__GFP_DIRECT_RECLAIM) == 0))

    mf = np.nonzero(is_free & (norm.alloc_of >= 0) & counted)[0]
    src = norm.alloc_of[mf]
    lifetime = ts[mf] - ts[src]
    cross = t.cpu[mf] != t.cpu[src]
    mf_cache = cid[mf]
    cross_by_cache = np.bincount(mf_cache[cross], minlength=ncaches + 1)[:ncaches]

    # per-cache per-CPU split
    width = ncpus if ncpus else 1
    a_cpu = np.bincount(cid[is_alloc] * width + cpu[is_alloc], minlength=(ncaches + 1) * width)
    f_cpu = np.bincount(cid[is_free] * width + cpu[is_free], minlength=(ncaches + 1) * width)

    # lifetimes grouped by cache: one sort, then slices
    lt_order = np.lexsort((lifetime, mf_cache))
    lt_sorted = lifetime[lt_order]
    lt_bounds = np.searchsorted(mf_cache[lt_order], np.arange(ncaches + 1))

    site_funcs = [site_function(s) for s in t.sites]
    alloc_sites = _top_sites(cid, t.site_id, is_alloc & counted, site_funcs)
    free_sites = _top_sites(cid, t.site_id, is_free & counted, site_funcs)
    sizes = _sizes(cid, t.bytes_alloc, t.bytes_req, is_alloc & counted)

    wanted = set(cache_filter) if cache_filter else None
    caches: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(t.caches):
        if wanted is not None and name not in wanted:
            continue
        if allocs[c] == 0 and frees[c] == 0:
            continue
        lts = lt_sorted[lt_bounds[c] : lt_bounds[c + 1]]
        nmatched = int(matched[c])
        st: dict[str, Any] = {
            "alloc": int(allocs[c]),
            "free": int(frees[c]),
            "events_by_type": {o.tracepoint: int(by_op[o][c]) for o in Op if by_op[o][c]},
            "matched_free": nmatched,
            "unmatched_free": int(frees[c]) - nmatched,
            "unseen_free": int(unseen[c]),
            "live_at_end": int(live[c]),
            "alloc_per_s": _rate(int(allocs[c]), span_ns, scale),
            "free_per_s": _rate(int(frees[c]), span_ns, scale),
            "cross_cpu_free": int(cross_by_cache[c]),
            "cross_cpu_free_share": _share(int(cross_by_cache[c]), nmatched),
            "lifetime_ns": _percentiles(lts, meta.ts_is_ns),
            "per_cpu": {
                str(k): {"alloc": int(a_cpu[c * width + k]), "free": int(f_cpu[c * width + k])}
                for k in range(width)
                if a_cpu[c * width + k] or f_cpu[c * width + k]
            },
            "alloc_sites": alloc_sites.get(c, []),
            "free_sites": free_sites.get(c, []),
            "nowait_share": _share(int(nowait[c]), int(allocs[c])),
            "object_size": sizes.get(c),
            "invisible_frees": bool(
                allocs[c] >= FLAG_MIN_ALLOCS and int(frees[c]) < VISIBLE_FREE_FLAG * allocs[c]
            ),
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
        "events_by_type": t.events_by_type(),
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


def _percentiles(values: np.ndarray, is_ns: bool) -> dict[str, int] | None:
    if len(values) == 0:
        return None
    out = {f"p{p}": int(np.percentile(values, p, method="lower")) for p in LIFETIME_PERCENTILES}
    out["max"] = int(values[-1])
    out["min"] = int(values[0])
    return out


def _top_sites(
    cid: np.ndarray, site_id: np.ndarray, mask: np.ndarray, funcs: list[str]
) -> dict[int, list[dict[str, Any]]]:
    """Per cache, the TOP_SITES call-site functions by event count."""
    idx = np.nonzero(mask & (site_id >= 0))[0]
    if len(idx) == 0 or not funcs:
        return {}
    # map site ids to function ids once (many offsets share one function)
    func_names, func_of_site = np.unique(np.array(funcs, dtype=object), return_inverse=True)
    key = cid[idx] * len(func_names) + func_of_site[site_id[idx]]
    keys, counts = np.unique(key, return_counts=True)
    out: dict[int, list[dict[str, Any]]] = {}
    caches_of = keys // len(func_names)
    for c in np.unique(caches_of).tolist():
        sel = caches_of == c
        k, cnt = keys[sel], counts[sel]
        total = int(cnt.sum())
        top = np.argsort(-cnt, kind="stable")[:TOP_SITES]
        out[c] = [
            {
                "site": str(func_names[int(k[j]) % len(func_names)]),
                "count": int(cnt[j]),
                "share": round(int(cnt[j]) / total, 6),
            }
            for j in top
        ]
    return out


def _sizes(
    cid: np.ndarray, bytes_alloc: np.ndarray, bytes_req: np.ndarray, mask: np.ndarray
) -> dict[int, dict[str, Any]]:
    idx = np.nonzero(mask)[0]
    out: dict[int, dict[str, Any]] = {}
    if len(idx) == 0:
        return out
    order = idx[np.argsort(cid[idx], kind="stable")]
    c_sorted = cid[order]
    bounds = np.flatnonzero(np.r_[True, c_sorted[1:] != c_sorted[:-1], True])
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        rows = order[s:e]
        ba = bytes_alloc[rows]
        vals, cnts = np.unique(ba, return_counts=True)
        out[int(c_sorted[s])] = {
            "bytes_alloc": int(vals[np.argmax(cnts)]),
            "bytes_alloc_min": int(ba.min()),
            "bytes_alloc_max": int(ba.max()),
            "bytes_req_mean": round(float(bytes_req[rows].mean()), 3),
        }
    return out
