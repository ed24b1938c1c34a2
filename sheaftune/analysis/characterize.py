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
from sheaftune.normalize import CHUNK_ROWS, Normalized, alloc_mask, group_rows
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
    """Statistics per cache (all caches, or those named in ``cache_filter``) and per trace.

    Counts accumulate over chunks of ``CHUNK_ROWS`` rows, so the temporaries stay bounded on
    huge traces (file-mapped columns are released after each chunk); only the matched frees'
    lifetimes are kept whole, because percentiles need them all.
    """
    t = norm.table
    meta = t.meta
    n = len(t)
    ts = t.ts_ns
    ncaches = len(t.caches)
    span_ns = int(ts[-1] - ts[0]) if n else 0
    scale = 1e-9 if meta.ts_is_ns else 1.0
    nops = len(Op)
    site_funcs = [site_function(s) for s in t.sites]
    func_names, func_of_site = np.unique(np.array(site_funcs, dtype=object), return_inverse=True)
    func_of_site = func_of_site.astype(np.int64)
    nfuncs = len(func_names)

    by_op_n = np.zeros((ncaches + 1) * nops, dtype=np.int64)
    matched = np.zeros(ncaches + 1, dtype=np.int64)
    unseen = np.zeros(ncaches + 1, dtype=np.int64)
    live = np.zeros(ncaches + 1, dtype=np.int64)
    nowait = np.zeros(ncaches + 1, dtype=np.int64)
    cross_by_cache = np.zeros(ncaches + 1, dtype=np.int64)
    req_sum = np.zeros(ncaches + 1, dtype=np.int64)
    cpu_max = -1
    cpu_pairs: list[tuple[np.ndarray, np.ndarray]] = []  # (key, count) per chunk
    site_pairs: dict[bool, list[tuple[np.ndarray, np.ndarray]]] = {True: [], False: []}
    size_pairs: list[tuple[np.ndarray, np.ndarray]] = []
    # filled in place (at most every matched free): no list of chunks to concatenate
    nmf = int(norm.counts.get("matched_free", n))
    lifetime = np.empty(nmf, dtype=np.int64)
    mf_cache_all = np.empty(nmf, dtype=np.int32)
    at = 0
    for lo in range(0, n, CHUNK_ROWS):
        hi = min(n, lo + CHUNK_ROWS)
        op = t.op[lo:hi]
        cpu = t.cpu[lo:hi].astype(np.int64)
        cpu_max = max(cpu_max, int(cpu.max()))
        cache_id = t.cache_id[lo:hi]
        is_alloc = alloc_mask(op)
        is_free = ~is_alloc
        # (NULL frees and failed allocations: the events whose pointer is NULL)
        counted = (cache_id != NO_CACHE) & (t.ptr[lo:hi] != 0)
        cid = np.where(counted, cache_id, ncaches).astype(np.int64)  # ncaches: "not attributed"
        src = norm.alloc_of[lo:hi]

        def per_cache(mask: np.ndarray, cid: np.ndarray = cid) -> np.ndarray:
            return np.bincount(cid[mask], minlength=ncaches + 1)

        by_op_n += np.bincount(cid * nops + op, minlength=(ncaches + 1) * nops)
        has_src = is_free & (src >= 0)
        matched += per_cache(has_src)
        unseen += per_cache(norm.reused_by[lo:hi] >= 0)
        live += per_cache(norm.live_at_end[lo:hi])
        nowait += per_cache(is_alloc & ((t.gfp[lo:hi] & gfpmod.__GFP_DIRECT_RECLAIM) == 0))

        mf = np.nonzero(has_src & counted)[0]
        msrc = src[mf]
        lifetime[at : at + len(mf)] = ts[lo + mf] - ts[msrc]
        mf_cache = cid[mf]
        mf_cache_all[at : at + len(mf)] = mf_cache
        at += len(mf)
        cross = t.cpu[lo + mf] != t.cpu[msrc]
        cross_by_cache += np.bincount(mf_cache[cross], minlength=ncaches + 1)

        # per-cache per-CPU split: (cache, cpu, is_free) keys, counted per chunk
        key = (cid * 65536 + cpu) * 2 + is_free
        cpu_pairs.append(np.unique(key, return_counts=True))

        site = t.site_id[lo:hi]
        for alloc_side in (True, False):
            idx = np.nonzero((is_alloc if alloc_side else is_free) & counted & (site >= 0))[0]
            if len(idx) and nfuncs:
                k = cid[idx] * nfuncs + func_of_site[site[idx]]
                site_pairs[alloc_side].append(np.unique(k, return_counts=True))

        idx = np.nonzero(is_alloc & counted)[0]
        if len(idx):
            sk = cid[idx] * (1 << 32) + t.bytes_alloc[lo:hi][idx].astype(np.int64)
            size_pairs.append(np.unique(sk, return_counts=True))
            # exact integer sums through float bincounts: 16-bit halves never reach 2**53
            req = t.bytes_req[lo:hi][idx]
            for shift in (0, 16):
                half = ((req >> shift) & 0xFFFF).astype(np.float64)
                part = np.bincount(cid[idx], weights=half, minlength=ncaches + 1)
                req_sum += part.astype(np.int64) << shift
        del op, cpu, cache_id, is_alloc, is_free, counted, cid, src
        t.release()

    by_op_arr = by_op_n.reshape(ncaches + 1, nops)[:ncaches]
    by_op = {o: by_op_arr[:, int(o)] for o in Op}
    allocs = by_op_arr[:, int(Op.KMEM_CACHE_ALLOC)] + by_op_arr[:, int(Op.KMALLOC)]
    frees = by_op_arr[:, int(Op.KMEM_CACHE_FREE)] + by_op_arr[:, int(Op.KFREE)]
    ncpus = max(int(meta.cpus), cpu_max + 1)
    width = ncpus if ncpus else 1
    a_cpu = np.zeros((ncaches + 1) * width, dtype=np.int64)
    f_cpu = np.zeros((ncaches + 1) * width, dtype=np.int64)
    keys, counts = _merge_counts(cpu_pairs)
    side = keys % 2
    flat = (keys // 2 // 65536) * width + (keys // 2) % 65536
    np.add.at(a_cpu, flat[side == 0], counts[side == 0])
    np.add.at(f_cpu, flat[side == 1], counts[side == 1])

    lifetime = lifetime[:at]
    # lifetimes grouped by cache (int32 rows, no sort as long as all of them); each cache's
    # are sorted when its statistics are made
    lt_rows, lt_bounds = group_rows(mf_cache_all[:at], ncaches)
    del mf_cache_all

    alloc_sites = _top_sites(_merge_counts(site_pairs[True]), func_names)
    free_sites = _top_sites(_merge_counts(site_pairs[False]), func_names)
    sizes = _sizes(_merge_counts(size_pairs), req_sum)

    wanted = set(cache_filter) if cache_filter else None
    caches: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(t.caches):
        if wanted is not None and name not in wanted:
            continue
        if allocs[c] == 0 and frees[c] == 0:
            continue
        lts = np.sort(lifetime[lt_rows[lt_bounds[c] : lt_bounds[c + 1]]])
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


def _merge_counts(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Sum (keys, counts) pairs from several chunks into one sorted (keys, counts)."""
    if not pairs:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    keys = np.concatenate([k for k, _ in pairs])
    counts = np.concatenate([c for _, c in pairs])
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inverse, weights=counts, minlength=len(uniq)).astype(np.int64)


def _top_sites(
    merged: tuple[np.ndarray, np.ndarray], func_names: np.ndarray
) -> dict[int, list[dict[str, Any]]]:
    """Per cache, the TOP_SITES call-site functions by event count (keys: cache * nfuncs +
    function)."""
    keys, counts = merged
    if len(keys) == 0:
        return {}
    nf = len(func_names)
    out: dict[int, list[dict[str, Any]]] = {}
    caches_of = keys // nf
    for c in np.unique(caches_of).tolist():
        sel = caches_of == c
        k, cnt = keys[sel], counts[sel]
        total = int(cnt.sum())
        top = np.argsort(-cnt, kind="stable")[:TOP_SITES]
        out[c] = [
            {
                "site": str(func_names[int(k[j]) % nf]),
                "count": int(cnt[j]),
                "share": round(int(cnt[j]) / total, 6),
            }
            for j in top
        ]
    return out


def _sizes(merged: tuple[np.ndarray, np.ndarray], req_sum: np.ndarray) -> dict[int, dict[str, Any]]:
    """Per cache: the most common slot size (the smallest of equals), its range, and the mean
    requested size (keys: cache * 2**32 + bytes_alloc)."""
    keys, counts = merged
    out: dict[int, dict[str, Any]] = {}
    if len(keys) == 0:
        return out
    caches_of = keys >> 32
    bounds = np.flatnonzero(np.r_[True, caches_of[1:] != caches_of[:-1], True])
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        c = int(caches_of[s])
        vals = keys[s:e] & 0xFFFFFFFF
        cnts = counts[s:e]
        out[c] = {
            "bytes_alloc": int(vals[np.argmax(cnts)]),
            "bytes_alloc_min": int(vals.min()),
            "bytes_alloc_max": int(vals.max()),
            "bytes_req_mean": round(float(req_sum[c] / cnts.sum()), 3),
        }
    return out
