"""Normalisation: from raw events to facts about objects (``trace-realities.md``).

A reader's EventTable says what the tracepoints printed; this module decides what it means:

* ``kmalloc`` events get their cache name from ``bytes_alloc`` and the gfp family
  (``kmalloc-<n>``, ``kmalloc-cg-<n>``, ``kmalloc-rcl-<n>``, ``dma-kmalloc-<n>``).
* Frees are matched to allocations by pointer, in time order: a free belongs to the newest
  earlier allocation of the same pointer that no free has matched yet. A ``kfree`` inherits the
  cache of its allocation; a ``kmem_cache_free`` keeps the cache it names.
* ``kfree(NULL)`` (and ``kfree(ZERO_SIZE_PTR)`` when pointers are raw) frees nothing: counted,
  never matched. A failed allocation (ptr 0) is counted and never matched.
* A pointer allocated again with no visible free in between is an *unseen free* of its old
  object (the free went through a path that fires no event: ``kfree_rcu``, bulk frees).
* Allocations never freed by the end of the trace are *live at end*.

Everything is vectorised: one stable argsort by pointer groups each pointer's events in time
order, and neighbour comparisons inside the groups do the matching.

Known limit: with the ``local`` trace clock, CPUs' clocks differ slightly, so a free on one
CPU can sort just after a reallocation of the same pointer on another CPU; such a pair is then
counted as an unseen free plus a free matched to the new object. The inversions are rare (they
need a reuse within the skew, microseconds) and are not corrected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sheaftune import gfp as gfpmod
from sheaftune.events import NO_CACHE, EventTable, Op

#: kmalloc(0) returns this pointer; kfree() of it frees nothing.
ZERO_SIZE_PTR = 0x10

_FAMILY_PREFIX = ("kmalloc-", "kmalloc-cg-", "kmalloc-rcl-", "dma-kmalloc-")


@dataclass
class Normalized:
    """An EventTable with caches resolved, plus the pointer matching.

    ``alloc_of[i]`` is, for a free event i, the index of the allocation it frees (-1: none
    visible). ``freed_by[i]`` is, for an allocation i, the index of the free that freed it (-1:
    still live at the end, or freed unseen). ``unseen_free[i]`` marks allocations whose pointer
    was allocated again without a visible free. ``live_at_end[i]`` marks allocations with no
    later event on their pointer.
    """

    table: EventTable
    alloc_of: np.ndarray
    freed_by: np.ndarray
    unseen_free: np.ndarray
    live_at_end: np.ndarray
    null_free: np.ndarray
    failed_alloc: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def is_alloc(self) -> np.ndarray:
        op = self.table.op
        return (op == Op.KMEM_CACHE_ALLOC) | (op == Op.KMALLOC)


def kmalloc_family(gfp: np.ndarray) -> np.ndarray:
    """0 normal, 1 cg (accounted), 2 rcl (reclaimable), 3 dma, as ``kmalloc_type()`` decides."""
    fam = np.zeros(len(gfp), dtype=np.int64)
    fam[(gfp & gfpmod.__GFP_ACCOUNT) != 0] = 1
    fam[(gfp & gfpmod.__GFP_RECLAIMABLE) != 0] = 2
    fam[(gfp & gfpmod.__GFP_DMA) != 0] = 3
    return fam


def normalize(table: EventTable) -> Normalized:
    """Resolve kmalloc caches, match frees to allocations, attribute kfree to caches."""
    n = len(table)
    op = table.op
    ptr = table.ptr
    cache_id = table.cache_id.copy()
    caches = list(table.caches)
    name_ids = {name: i for i, name in enumerate(caches)}

    # kmalloc: cache from size bucket and gfp family, resolved once per distinct pair
    km = np.nonzero(op == Op.KMALLOC)[0]
    if len(km):
        key = table.bytes_alloc[km].astype(np.int64) * 4 + kmalloc_family(table.gfp[km])
        uniq, inverse = np.unique(key, return_inverse=True)
        ids = np.empty(len(uniq), dtype=np.int32)
        for j, k in enumerate(uniq.tolist()):
            size, fam = divmod(k, 4)
            name = _FAMILY_PREFIX[fam] + gfpmod._size_name(size)
            if name not in name_ids:
                name_ids[name] = len(caches)
                caches.append(name)
            ids[j] = name_ids[name]
        cache_id[km] = ids[inverse]

    is_alloc = (op == Op.KMEM_CACHE_ALLOC) | (op == Op.KMALLOC)
    null = ptr == 0
    null_free = null & ~is_alloc
    failed_alloc = null & is_alloc
    zero_size = (ptr == ZERO_SIZE_PTR) & ~is_alloc
    if table.meta.pointers_hashed:
        zero_size[:] = False  # %p hashes 0x10: it cannot be recognised in kernel text
    candidates = np.nonzero(~null & ~zero_size)[0]

    # group each pointer's events, in time order (stable sort keeps the table's order)
    order = candidates[np.argsort(ptr[candidates], kind="stable")]
    p = ptr[order]
    a = is_alloc[order]
    same_prev = np.zeros(len(order), dtype=bool)
    same_prev[1:] = p[1:] == p[:-1]
    prev_is_alloc = np.zeros(len(order), dtype=bool)
    prev_is_alloc[1:] = a[:-1]
    matched = ~a & same_prev & prev_is_alloc
    same_next = np.zeros(len(order), dtype=bool)
    same_next[:-1] = same_prev[1:]
    next_is_alloc = np.zeros(len(order), dtype=bool)
    next_is_alloc[:-1] = a[1:]

    alloc_of = np.full(n, -1, dtype=np.int64)
    freed_by = np.full(n, -1, dtype=np.int64)
    pos = np.nonzero(matched)[0]
    alloc_of[order[pos]] = order[pos - 1]
    freed_by[order[pos - 1]] = order[pos]
    unseen_free = np.zeros(n, dtype=bool)
    unseen_free[order[a & same_next & next_is_alloc]] = True
    live_at_end = np.zeros(n, dtype=bool)
    live_at_end[order[a & ~same_next]] = True

    # a kfree belongs to the cache of the allocation it frees; a named free keeps its name
    frees = np.nonzero(alloc_of >= 0)[0]
    kfrees = frees[op[frees] == Op.KFREE]
    cache_id[kfrees] = cache_id[alloc_of[kfrees]]
    named = frees[op[frees] == Op.KMEM_CACHE_FREE]
    unnamed = named[cache_id[named] == NO_CACHE]  # pre-5.12 kmem_cache_free has no name
    cache_id[unnamed] = cache_id[alloc_of[unnamed]]
    cache_mismatch = int(np.count_nonzero(cache_id[named] != cache_id[alloc_of[named]]))

    unmatched = ~is_alloc & (alloc_of < 0) & ~null_free & ~zero_size
    counts = {
        "null_free": int(np.count_nonzero(null_free)),
        "zero_size_free": int(np.count_nonzero(zero_size)),
        "failed_alloc": int(np.count_nonzero(failed_alloc)),
        "matched_free": len(frees),
        "unmatched_kfree": int(np.count_nonzero(unmatched & (op == Op.KFREE))),
        "unmatched_kmem_cache_free": int(np.count_nonzero(unmatched & (op == Op.KMEM_CACHE_FREE))),
        "unseen_free": int(np.count_nonzero(unseen_free)),
        "live_at_end": int(np.count_nonzero(live_at_end)),
        "free_cache_mismatch": cache_mismatch,
    }
    out = EventTable(
        {**table.columns, "cache_id": cache_id}, caches, table.sites, table.comms, table.meta
    )
    return Normalized(
        out, alloc_of, freed_by, unseen_free, live_at_end, null_free, failed_alloc, counts
    )
