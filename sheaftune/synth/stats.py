"""Workload statistics of an EventTable: what a workload file is fitted to and tested against.

The same function runs on a real trace and on a generated one, so ``docs/workloads.md`` can show
them side by side (``benchmarks/fit_maple_vma.py``) and the tests can hold a generator to its
spec. Everything is per cache: visible allocations and frees, rates per CPU, the call-site mix,
the share of ``GFP_NOWAIT`` allocations, the run lengths of pops from prefilled sheaves (maple
tree store helpers), object lifetimes and cross-CPU frees of allocations matched by pointer.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from sheaftune import gfp as gfpmod
from sheaftune.events import EventTable, Op

#: 6.18 maple-tree functions whose maple_node allocations are pops from a prefilled sheaf
#: (kernel-sheaves.md section 9; the compiler may add .isra/.constprop suffixes).
POP_SITES = (
    "mas_new_ma_node",
    "mas_wr_bnode",
    "mas_spanning_rebalance",
    "mas_push_data",
    "mas_split_final_node",
    "mas_wr_node_store",
    "mas_root_expand",
    "mas_new_root",
    "mas_dup_alloc",
)


def site_symbol(site: str) -> str:
    """``mas_dup_alloc.isra.0+0x1af`` -> ``mas_dup_alloc`` (offset and compiler suffix dropped)."""
    sym = site.split("+", 1)[0]
    return sym.split(".", 1)[0]


def workload_stats(table: EventTable) -> dict[str, Any]:
    """Per-cache statistics of ``table`` (see the module docstring); plain dict, JSON-ready."""
    n = len(table)
    ts = table.ts_ns
    duration_s = float(ts[-1] - ts[0]) * 1e-9 if n > 1 else 0.0
    cpus = table.meta.cpus or (int(table.cpu.max()) + 1 if n else 1)
    is_alloc = (table.op == Op.KMEM_CACHE_ALLOC) | (table.op == Op.KMALLOC)
    sym = np.asarray([site_symbol(s) for s in table.sites] + ["?"], dtype=object)
    pop_site = np.asarray([s in POP_SITES for s in sym], dtype=bool)
    cache_of = _cache_of_frees(table, is_alloc)
    out: dict[str, Any] = {"events": n, "duration_s": duration_s, "cpus": cpus, "caches": {}}
    for ci, name in enumerate(table.caches):
        a = is_alloc & (table.cache_id == ci)
        f = ~is_alloc & (cache_of == ci)
        na, nf = int(a.sum()), int(f.sum())
        if na == 0 and nf == 0:
            continue
        nowait = a & ((table.gfp & gfpmod.__GFP_DIRECT_RECLAIM) == 0)
        d: dict[str, Any] = {
            "allocs": na,
            "frees": nf,
            "alloc_rate_per_cpu": na / duration_s / cpus if duration_s else 0.0,
            "free_rate_per_cpu": nf / duration_s / cpus if duration_s else 0.0,
            "visible_free_share": nf / na if na else 0.0,
            "nowait_share": int(nowait.sum()) / na if na else 0.0,
            "alloc_sites": _mix(sym[table.site_id[a]]),
            "free_sites": _mix(sym[table.site_id[f]]),
            "pop_runs": _pop_runs(table, a & pop_site[table.site_id], sym),
        }
        d.update(_lifetimes(table, a, f))
        out["caches"][name] = d
    return out


def _cache_of_frees(table: EventTable, is_alloc: np.ndarray) -> np.ndarray:
    """cache_id of every row; a kfree without one gets the cache of the live allocation."""
    cache = table.cache_id.copy()
    missing = np.flatnonzero(~is_alloc & (cache < 0) & (table.ptr != 0))
    if len(missing):
        live: dict[int, int] = {}
        ptr = table.ptr.tolist()
        cid = table.cache_id.tolist()
        alloc = is_alloc.tolist()
        todo = set(missing.tolist())
        for i in range(len(ptr)):
            if alloc[i]:
                live[ptr[i]] = cid[i]
            elif i in todo:
                cache[i] = live.pop(ptr[i], -1)
    return cache


def _mix(names: np.ndarray) -> dict[str, float]:
    c = Counter(names.tolist())
    total = sum(c.values())
    return {k: round(v / total, 4) for k, v in c.most_common()} if total else {}


def _pop_runs(table: EventTable, pops: np.ndarray, sym: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per pop site: how many runs and their length distribution.

    A run is a maximal sequence of consecutive events of one task on one CPU that are all pops
    at the same function: the objects one tree operation took from its prefilled sheaf.
    """
    runs: dict[str, Counter[int]] = {}
    key = table.cpu.astype(np.int64) << 32 | (table.pid.astype(np.int64) & 0xFFFFFFFF)
    last: dict[int, tuple[str, int]] = {}  # task -> (site, run length so far) of an open run
    site_of = sym[table.site_id]
    for i, k, p in zip(range(len(key)), key.tolist(), pops.tolist(), strict=True):
        cur = last.get(k)
        s = site_of[i] if p else None
        if cur is not None and (s is None or s != cur[0]):
            runs.setdefault(cur[0], Counter())[cur[1]] += 1
            cur = None
            del last[k]
        if s is not None:
            last[k] = (s, cur[1] + 1 if cur is not None else 1)
    for s, length in last.values():
        runs.setdefault(s, Counter())[length] += 1
    out = {}
    for s, c in sorted(runs.items()):
        total = sum(c.values())
        out[s] = {
            "runs": total,
            "mean": round(sum(k * v for k, v in c.items()) / total, 3),
            "lengths": {int(k): v for k, v in sorted(c.items())},
        }
    return out


def _lifetimes(table: EventTable, a: np.ndarray, f: np.ndarray) -> dict[str, Any]:
    """Lifetime (µs) quantiles and cross-CPU share of frees matched to an allocation by pointer."""
    idx = np.flatnonzero(a | f)
    ptr = table.ptr[idx].tolist()
    alloc = a[idx].tolist()
    ts = table.ts_ns[idx].tolist()
    cpu = table.cpu[idx].tolist()
    live: dict[int, tuple[int, int]] = {}
    life, remote = [], 0
    for p, al, t, c in zip(ptr, alloc, ts, cpu, strict=True):
        if al:
            live[p] = (t, c)
        elif p in live:
            t0, c0 = live.pop(p)
            life.append(t - t0)
            remote += c != c0
    if not life:
        return {"matched_frees": 0}
    q = np.percentile(np.asarray(life, dtype=float) / 1000.0, [10, 50, 90])
    return {
        "matched_frees": len(life),
        "lifetime_us": {
            "p10": round(q[0], 1),
            "p50": round(q[1], 1),
            "p90": round(q[2], 1),
            "mean": round(float(np.mean(life)) / 1000.0, 1),
        },
        "remote_free_share": round(remote / len(life), 4),
    }
