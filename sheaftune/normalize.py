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

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from sheaftune import gfp as gfpmod
from sheaftune.events import NO_CACHE, EventTable, Op, OpTable

#: kmalloc(0) returns this pointer; kfree() of it frees nothing.
ZERO_SIZE_PTR = 0x10

_FAMILY_PREFIX = ("kmalloc-", "kmalloc-cg-", "kmalloc-rcl-", "dma-kmalloc-")


@dataclass
class Normalized:
    """An EventTable with caches resolved, plus the pointer matching.

    ``alloc_of[i]`` is, for a free event i, the index of the allocation it frees (-1: none
    visible). ``freed_by[i]`` is, for an allocation i, the index of the free that freed it (-1:
    still live at the end, or freed unseen). ``unseen_free[i]`` marks allocations whose pointer
    was allocated again without a visible free, and ``reused_by[i]`` is that reallocation's
    index (-1 otherwise). ``live_at_end[i]`` marks allocations with no later event on their
    pointer.

    Index arrays are int32 when the table has fewer than 2**31 rows (half the memory of int64
    on the huge traces issue 10 is about), else int64; ``freed_by`` is derived on first use.
    """

    table: EventTable
    alloc_of: np.ndarray
    live_at_end: np.ndarray
    reused_by: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)

    # The flags below are derived rather than stored (issue 10: every byte per event counts on
    # huge traces); code sweeping a huge table derives them for its own rows the same way.
    @property
    def unseen_free(self) -> np.ndarray:
        return self.reused_by >= 0

    @property
    def null_free(self) -> np.ndarray:
        """Frees of NULL (``kfree(NULL)``): they free nothing."""
        return (self.table.ptr == 0) & ~self.is_alloc

    @property
    def failed_alloc(self) -> np.ndarray:
        """Allocations that returned NULL."""
        return (self.table.ptr == 0) & self.is_alloc

    @property
    def is_alloc(self) -> np.ndarray:
        return alloc_mask(self.table.op)

    @property
    def freed_by(self) -> np.ndarray:
        cached = self.__dict__.get("_freed_by")
        if cached is None:
            cached = np.full(len(self.alloc_of), -1, dtype=self.alloc_of.dtype)
            frees = np.nonzero(self.alloc_of >= 0)[0]
            cached[self.alloc_of[frees]] = frees
            self.__dict__["_freed_by"] = cached
        return cached


def kmalloc_family(gfp: np.ndarray) -> np.ndarray:
    """0 normal, 1 cg (accounted), 2 rcl (reclaimable), 3 dma, as ``kmalloc_type()`` decides."""
    fam = np.zeros(len(gfp), dtype=np.int64)
    fam[(gfp & gfpmod.__GFP_ACCOUNT) != 0] = 1
    fam[(gfp & gfpmod.__GFP_RECLAIMABLE) != 0] = 2
    fam[(gfp & gfpmod.__GFP_DMA) != 0] = 3
    return fam


#: Rows per step of the passes that sweep whole columns: bounds their temporaries.
CHUNK_ROWS = 1 << 20
#: Rows per step of a gather from a file-mapped column (its pages are given back after each).
GATHER_ROWS = 1 << 18
#: Events per pointer bucket of the matching sort (more events: more buckets).
BUCKET_EVENTS = 1 << 20


def index_dtype(n: int) -> type:
    """int32 row indices when they fit (half the memory), else int64."""
    return np.int32 if n < 2**31 - 1 else np.int64


def normalize(table: EventTable) -> Normalized:
    """Resolve kmalloc caches, match frees to allocations, attribute kfree to caches.

    Memory: a few bytes per event beyond the table (int32 indices, bool flags); column sweeps
    go in chunks of ``CHUNK_ROWS`` and the pointer sort in buckets of about ``BUCKET_EVENTS``
    events, so no step allocates an int64 temporary as long as the trace. File-mapped columns
    are released when done (``EventTable.release``).
    """
    n = len(table)
    op = table.op
    ptr = table.ptr
    cache_id = np.array(table.cache_id, dtype=np.int32)
    caches = list(table.caches)
    name_ids = {name: i for i, name in enumerate(caches)}
    hashed = table.meta.pointers_hashed

    is_alloc = np.empty(n, dtype=bool)
    valid = np.empty(n, dtype=bool)  # takes part in matching
    zero_size_n = null_free_n = failed_alloc_n = 0
    km_keys = []
    for lo in range(0, n, CHUNK_ROWS):
        hi = min(n, lo + CHUNK_ROWS)
        o = op[lo:hi]
        p = ptr[lo:hi]
        a = alloc_mask(o)
        is_alloc[lo:hi] = a
        null = p == 0
        null_free_n += int(np.count_nonzero(null & ~a))
        failed_alloc_n += int(np.count_nonzero(null & a))
        zero = (p == ZERO_SIZE_PTR) & ~a
        if hashed:
            zero[:] = False  # %p hashes 0x10: it cannot be recognised in kernel text
        zero_size_n += int(np.count_nonzero(zero))
        valid[lo:hi] = ~null & ~zero
        km_keys.append(np.unique(_kmalloc_key(table, lo, hi)[1]))
        table.release()

    # kmalloc: cache from size bucket and gfp family, resolved once per distinct pair (in key
    # order, so cache ids do not depend on the chunking)
    uniq = np.unique(np.concatenate(km_keys)) if km_keys else np.empty(0, dtype=np.int64)
    ids = np.empty(len(uniq), dtype=np.int32)
    for j, k in enumerate(uniq.tolist()):
        size, fam = divmod(k, 4)
        name = _FAMILY_PREFIX[fam] + gfpmod._size_name(size)
        if name not in name_ids:
            name_ids[name] = len(caches)
            caches.append(name)
        ids[j] = name_ids[name]
    if len(uniq):
        for lo in range(0, n, CHUNK_ROWS):
            hi = min(n, lo + CHUNK_ROWS)
            km, key = _kmalloc_key(table, lo, hi)
            cache_id[lo + km] = ids[np.searchsorted(uniq, key)]

    alloc_of, reused_by, live_at_end = _match_pointers(table, is_alloc, valid)
    del valid
    table.release()

    # a kfree belongs to the cache of the allocation it frees; a named free keeps its name
    matched_n = 0
    cache_mismatch = 0
    unmatched_kfree = 0
    unmatched_named = 0
    for lo in range(0, n, CHUNK_ROWS):
        hi = min(n, lo + CHUNK_ROWS)
        src = alloc_of[lo:hi]
        o = op[lo:hi]
        has = src >= 0
        matched_n += int(np.count_nonzero(has))
        kf = np.nonzero(has & (o == Op.KFREE))[0]
        cache_id[lo + kf] = cache_id[src[kf]]
        named = np.nonzero(has & (o == Op.KMEM_CACHE_FREE))[0]
        own = cache_id[lo + named]
        unnamed = named[own == NO_CACHE]  # pre-5.12 kmem_cache_free has no name
        cache_id[lo + unnamed] = cache_id[src[unnamed]]
        cache_mismatch += int(np.count_nonzero(cache_id[lo + named] != cache_id[src[named]]))
        unmatched = ~is_alloc[lo:hi] & ~has & (ptr[lo:hi] != 0)  # (not a NULL free)
        if not hashed:
            unmatched &= ptr[lo:hi] != ZERO_SIZE_PTR
        unmatched_kfree += int(np.count_nonzero(unmatched & (o == Op.KFREE)))
        unmatched_named += int(np.count_nonzero(unmatched & (o == Op.KMEM_CACHE_FREE)))
    table.release()

    counts = {
        "null_free": null_free_n,
        "zero_size_free": zero_size_n,
        "failed_alloc": failed_alloc_n,
        "matched_free": matched_n,
        "unmatched_kfree": unmatched_kfree,
        "unmatched_kmem_cache_free": unmatched_named,
        "unseen_free": int(np.count_nonzero(reused_by >= 0)),
        "live_at_end": int(np.count_nonzero(live_at_end)),
        "free_cache_mismatch": cache_mismatch,
    }
    del is_alloc
    out = EventTable(
        {**table.columns, "cache_id": cache_id}, caches, table.sites, table.comms, table.meta
    )
    return Normalized(out, alloc_of, live_at_end, reused_by, counts)


def group_rows(key: np.ndarray, nkeys: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices grouped by ``key`` (values 0..nkeys-1; others are left out), each group in
    row order: ``rows[starts[k]:starts[k + 1]]`` are the rows of key k.

    A counting sort in chunks: int32 rows (when they fit) and no temporary as long as the
    table, where ``np.argsort(key, kind="stable")`` would build int64 ones.
    """
    n = len(key)
    counts = np.bincount(key, minlength=nkeys + 1)[:nkeys] if n else np.zeros(nkeys, np.int64)
    starts = np.zeros(nkeys + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    rows: np.ndarray = np.empty(int(starts[-1]), dtype=index_dtype(n))
    fill = starts[:-1].copy()
    for lo in range(0, n, CHUNK_ROWS):
        hi = min(n, lo + CHUNK_ROWS)
        k = key[lo:hi]
        order = np.argsort(k, kind="stable")
        sk = k[order]
        first = np.searchsorted(sk, np.arange(nkeys), side="left")
        last = np.searchsorted(sk, np.arange(nkeys), side="right")
        for j in np.nonzero(last > first)[0].tolist():
            m = int(last[j] - first[j])
            rows[fill[j] : fill[j] + m] = lo + order[first[j] : last[j]]
            fill[j] += m
    return rows, starts


def alloc_mask(op: np.ndarray) -> np.ndarray:
    """Allocation events among ``op`` values (``Normalized.is_alloc`` for a subset of rows)."""
    return (op == Op.KMEM_CACHE_ALLOC) | (op == Op.KMALLOC)


def _kmalloc_key(table: EventTable, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """kmalloc events among rows lo..hi (offsets from lo) and their (size, family) keys."""
    km = np.nonzero(table.op[lo:hi] == Op.KMALLOC)[0]
    key = table.bytes_alloc[lo:hi][km].astype(np.int64) * 4 + kmalloc_family(table.gfp[lo:hi][km])
    return km, key


def _bucket_count(n: int) -> int:
    """Buckets (a power of two, at most 4096) for about ``BUCKET_EVENTS`` of n rows each."""
    nb = 1
    while nb * BUCKET_EVENTS < n and nb < 4096:
        nb *= 2
    return nb


def _bucket_of(ptr: np.ndarray, nbuckets: int) -> np.ndarray:
    """A pointer's bucket (0..nbuckets-1, a power of two): the top bits of a multiplicative
    hash, so aligned slab addresses still spread evenly."""
    h = ptr * np.uint64(0x9E3779B97F4A7C15)
    return (h >> np.uint64(64 - nbuckets.bit_length() + 1)).astype(np.uint16)


def _match_pointers(
    table: EventTable, is_alloc: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alloc_of, reused_by, live_at_end) by grouping each pointer's events (an unseen free
    is an allocation with a ``reused_by``).

    Every event of one pointer falls in the same bucket, so buckets are matched one at a time:
    a stable sort by pointer groups each pointer's events in time order (the table's order) and
    neighbour comparisons inside the groups do the matching.
    """
    ptr = table.ptr
    n = len(ptr)
    idx = index_dtype(n)
    alloc_of: np.ndarray = np.full(n, -1, dtype=idx)
    reused_by: np.ndarray = np.full(n, -1, dtype=idx)
    live_at_end = np.zeros(n, dtype=bool)
    nb = _bucket_count(n)
    groups: Iterable[np.ndarray]
    if nb == 1:
        groups = [np.nonzero(valid)[0].astype(idx)]
    else:
        bucket = np.empty(n, dtype=np.uint16)
        for lo in range(0, n, CHUNK_ROWS):
            hi = min(n, lo + CHUNK_ROWS)
            b = _bucket_of(ptr[lo:hi], nb)
            b[~valid[lo:hi]] = nb  # out of every bucket
            bucket[lo:hi] = b
            table.release()
        # each bucket's rows found when its turn comes (a scan of the 2-byte bucket column),
        # rather than every bucket's rows held at once
        groups = (np.nonzero(bucket == k)[0].astype(idx) for k in range(nb))
    for g in groups:
        if len(g) == 0:
            continue
        # the bucket's pointers, gathered a row range at a time: a bucket's rows lie all over
        # a mapped column, and each range's pages are given back before the next
        key = table.gather("ptr", g, GATHER_ROWS)
        by_ptr = np.argsort(key, kind="stable")
        order = g[by_ptr]
        p = key[by_ptr]
        del key, by_ptr
        a = is_alloc[order]
        m = len(order)
        same_prev = np.zeros(m, dtype=bool)
        same_prev[1:] = p[1:] == p[:-1]
        del p
        prev_is_alloc = np.zeros(m, dtype=bool)
        prev_is_alloc[1:] = a[:-1]
        matched = ~a & same_prev & prev_is_alloc
        same_next = np.zeros(m, dtype=bool)
        same_next[:-1] = same_prev[1:]
        next_is_alloc = np.zeros(m, dtype=bool)
        next_is_alloc[:-1] = a[1:]
        pos = np.nonzero(matched)[0]
        alloc_of[order[pos]] = order[pos - 1]
        reuse_pos = np.nonzero(a & same_next & next_is_alloc)[0]
        reused_by[order[reuse_pos]] = order[reuse_pos + 1]
        live_at_end[order[a & ~same_next]] = True
    return alloc_of, reused_by, live_at_end


# --- operation inference (prefill users) ----------------------------------------------------

#: Functions into which ``mas_pop_node`` is inlined: a ``GFP_NOWAIT`` ``maple_node`` allocation
#: there is a pop from a prefilled sheaf (kernel-sheaves.md section 9), with the store type it
#: reveals (section 11, M3). 6.18 and 7.3 names together: they do not collide in meaning.
SHEAF_POP_SITES: dict[str, str] = {
    # 6.18 big-node code
    "mas_new_ma_node": "split",
    "mas_wr_bnode": "split",
    "mas_split_final_node": "split",
    "mas_push_data": "split",
    "mas_spanning_rebalance": "spanning",
    # 7.3
    "mas_wr_split": "split",
    "mas_wr_rebalance": "rebalance",
    "mas_wr_spanning_store": "spanning",
    "dst_setup": "split",
    # both
    "mas_wr_node_store": "node_store",
    "mas_root_expand": "store_root",
    "mas_new_root": "new_root",
    "mas_dup_alloc": "dup",
    "mas_dup_build": "dup",
}

#: Pops of one task further apart than this start a new operation (pops of one store are
#: microseconds apart; a prefill of a later operation fires no event to separate them).
DEFAULT_RUN_GAP_NS = 50_000
#: Tree height assumed for the worst-case request when the trace cannot tell (VMA trees of
#: hundreds to thousands of ranges have height 3 to 5; section 11 M5).
DEFAULT_TREE_HEIGHT = 3


def request_bound(store_type: str, height: int, used: int) -> int:
    """The worst-case ``kmem_cache_prefill_sheaf`` size of a store (M3 with V = Sh = 0).

    Fork copies (``dup``) ask per internal node for its number of children on one sheaf; the
    trace shows only what was used, so the bound is the use itself.
    """
    if store_type in ("split", "rebalance"):
        return 2 * height + 1
    if store_type == "spanning":
        return 3 * height + 1
    if store_type in ("node_store", "store_root", "new_root"):
        return 1
    return used


@dataclass
class PopRuns:
    """Pops from prefilled sheaves found in a trace, grouped into operations (runs).

    ``rows`` are event indices of the pops in time order, ``run`` the operation each belongs to
    (0..n_runs-1, numbered in order of their first pop), ``store`` the store type its call site
    reveals, ``bound`` each run's upper bound.
    """

    rows: np.ndarray
    run: np.ndarray
    code: np.ndarray  # index into _STORE_TYPES, one per pop
    bound: np.ndarray

    @property
    def n_runs(self) -> int:
        return len(self.bound)

    @property
    def store(self) -> np.ndarray:
        """The store type of each pop, as names (an object array)."""
        return np.array(_STORE_TYPES, dtype=object)[self.code]


def sheaf_pop_runs(
    norm: Normalized,
    cache: str = "maple_node",
    upper_bound: int | None = None,
    tree_height: int = DEFAULT_TREE_HEIGHT,
    gap_ns: int = DEFAULT_RUN_GAP_NS,
    rows: np.ndarray | None = None,
) -> PopRuns:
    """Runs of sheaf pops of one task (by call site), each run one prefill operation.

    A pop is a ``GFP_NOWAIT`` allocation of ``cache`` at a function into which ``mas_pop_node``
    is inlined (``SHEAF_POP_SITES``). A run ends when the task allocates from the cache by
    another path (a new tree operation), or after ``gap_ns`` without a pop. The upper bound is
    ``upper_bound`` when given, else the request rule of the store type the pop sites reveal
    (the largest over the run's sites), and never less than what the run used.
    """
    t = norm.table
    empty = np.empty(0, dtype=np.int64)
    none = PopRuns(empty, empty, np.empty(0, dtype=np.int8), empty)
    if cache not in t.caches:
        return none
    if rows is None:
        rows = rows_of_cache(norm, cache)
    rows = rows[alloc_mask(t.op[rows])]
    # (each gather from a mapped column is released at once: the rows of one cache touch
    # pages all over it)
    code_of_site = _site_store_codes(norm)
    if not code_of_site.any():  # no call site of the trace is a pop site
        return none
    code = np.empty(len(rows), dtype=np.int8)
    is_pop = np.empty(len(rows), dtype=bool)
    for lo in range(0, len(rows), CHUNK_ROWS):
        part = rows[lo : lo + CHUNK_ROWS]
        site = t.site_id[part]
        c = code_of_site[np.where(site >= 0, site, len(code_of_site) - 1)]
        code[lo : lo + CHUNK_ROWS] = c
        is_pop[lo : lo + CHUNK_ROWS] = (c != 0) & ((t.gfp[part] & gfpmod.__GFP_DIRECT_RECLAIM) == 0)
        t.release()
    if not is_pop.any():  # most caches: no allocation is a pop, nothing to group
        return none
    # runs never cross tasks: tasks are split into buckets (by a hash of the pid) and each
    # bucket's allocations are grouped alone, which bounds the temporaries on huge traces
    n = len(rows)
    nb = _bucket_count(n)
    if nb == 1:
        groups: list[np.ndarray] = [np.arange(n, dtype=index_dtype(n))]
    else:
        bucket = np.empty(n, dtype=np.uint16)
        for lo in range(0, n, CHUNK_ROWS):
            pid = t.pid[rows[lo : lo + CHUNK_ROWS]].astype(np.uint64)
            bucket[lo : lo + CHUNK_ROWS] = _bucket_of(pid, nb)
            t.release()
        pos, starts = group_rows(bucket, nb)
        del bucket
        groups = [pos[starts[k] : starts[k + 1]] for k in range(nb)]
    pop_pos: list[np.ndarray] = []
    pop_run: list[np.ndarray] = []
    nruns = 0
    for g in groups:  # positions into rows, in time order
        if len(g) == 0:
            continue
        if not is_pop[g].any():
            continue
        # (per bucket, gathered in row order a chunk at a time: no column as long as the cache,
        # and no mapped column resident whole)
        rg = rows[g]
        pid = t.gather("pid", rg)
        by_pid = np.argsort(pid, kind="stable")
        order = g[by_pid]  # each task's allocations, in time order
        pop = is_pop[order]
        p = pid[by_pid]
        del pid
        prev_same = np.zeros(len(order), dtype=bool)
        prev_same[1:] = p[1:] == p[:-1]
        prev_pop = np.zeros(len(order), dtype=bool)
        prev_pop[1:] = pop[:-1]
        ts = t.gather("ts_ns", rg)[by_pid]
        del rg, by_pid
        gap = np.zeros(len(order), dtype=bool)
        gap[1:] = (ts[1:] - ts[:-1]) > gap_ns
        del ts, p
        start = pop & ~(prev_same & prev_pop & ~gap)
        pop_run.append((nruns + np.cumsum(start, dtype=np.int64) - 1)[pop])
        pop_pos.append(order[pop])
        nruns += int(start.sum())
        t.release()
    del groups, is_pop
    # list pops in time order (one in-place sort of (position, run) packed in 64 bits), then
    # renumber runs by their first pop's time
    idx = index_dtype(len(rows))
    key = np.concatenate(pop_pos).astype(np.uint64) << np.uint64(32)
    del pop_pos
    key |= np.concatenate(pop_run).astype(np.uint64)
    del pop_run
    key.sort()
    pos_sorted: np.ndarray = (key >> np.uint64(32)).astype(idx)
    run_pid_order = (key & np.uint64(0xFFFFFFFF)).astype(np.int64)
    del key
    pop_code = code[pos_sorted]
    del code
    pop_rows = rows[pos_sorted]
    del pos_sorted
    npops = len(pop_rows)
    first_seen = np.full(nruns, npops, dtype=np.int64)
    np.minimum.at(first_seen, run_pid_order, np.arange(npops, dtype=np.int64))
    renumber = np.empty(nruns, dtype=np.int64)
    renumber[np.argsort(first_seen, kind="stable")] = np.arange(nruns)
    del first_seen
    run = renumber[run_pid_order]
    del renumber, run_pid_order
    used = np.bincount(run, minlength=nruns)
    bound = np.zeros(nruns, dtype=np.int64)
    if nruns:
        bound_of_code = np.array(
            [request_bound(name, tree_height, 0) for name in _STORE_TYPES], dtype=np.int64
        )
        np.maximum.at(bound, run, bound_of_code[pop_code])
        if upper_bound is not None:
            bound[:] = upper_bound
        bound = np.maximum(bound, used)  # a run cannot use more than it asked for
    return PopRuns(pop_rows, run, pop_code, bound)


def rows_of_cache(norm: Normalized, cache: str) -> np.ndarray:
    """Event indices of one cache in time order (int32 when they fit), found chunk by chunk
    so no temporary is as long as the trace."""
    t = norm.table
    cid = t.find_cache(cache)
    idx = index_dtype(len(t))
    parts: list[np.ndarray] = [
        (lo + np.nonzero(t.cache_id[lo : lo + CHUNK_ROWS] == cid)[0]).astype(idx)
        for lo in range(0, len(t), CHUNK_ROWS)
    ]
    return np.concatenate(parts) if parts else np.empty(0, dtype=idx)


def infer_operations(
    norm: Normalized,
    cache: str = "maple_node",
    upper_bound: int | None = None,
    tree_height: int = DEFAULT_TREE_HEIGHT,
    gap_ns: int = DEFAULT_RUN_GAP_NS,
) -> tuple[OpTable, dict[str, int]]:
    """The OpTable of a trace's prefill operations (see :func:`sheaf_pop_runs`), and counts
    (pops, operations, pops by store type)."""
    t = norm.table
    runs = sheaf_pop_runs(norm, cache, upper_bound, tree_height, gap_ns)
    nruns = runs.n_runs
    # runs are numbered by first pop, so each run id's first occurrence is where it starts
    _, first_pos = np.unique(runs.run, return_index=True)
    first = runs.rows[first_pos]
    cid = t.find_cache(cache) if cache in t.caches else NO_CACHE
    ops = OpTable(
        ts_ns=t.ts_ns[first].astype(np.int64),
        cpu=t.cpu[first].astype(np.uint16),
        cache_id=np.full(nruns, cid, dtype=np.int32),
        upper_bound=runs.bound.astype(np.uint32),
        used=np.bincount(runs.run, minlength=nruns).astype(np.uint32),
        pid=t.pid[first].astype(np.int32),
        site_id=t.site_id[first].astype(np.int32),
        source="inferred",
    )
    counts = {"sheaf_pops": len(runs.rows), "operations": nruns}
    for s in sorted(set(runs.store.tolist())):
        counts[f"pops_{s}"] = int(np.count_nonzero(runs.store == s))
    return ops, counts


#: Store types of ``SHEAF_POP_SITES`` as codes: index 0 ("") is "not a pop site".
_STORE_TYPES = ("", *sorted(set(SHEAF_POP_SITES.values())))


def _site_store_codes(norm: Normalized) -> np.ndarray:
    """Per call site, the ``_STORE_TYPES`` code of a sheaf pop there (0 for other sites), plus
    a last 0 for events without a site; computed once per trace."""
    cached = norm.__dict__.get("_site_store")
    if cached is None:
        code = {name: i for i, name in enumerate(_STORE_TYPES)}
        funcs = [_site_func(s) for s in norm.table.sites]
        cached = np.array([code[SHEAF_POP_SITES.get(f, "")] for f in funcs] + [0], dtype=np.int8)
        norm.__dict__["_site_store"] = cached
    return cached


def _site_func(site: str) -> str:
    """``mas_dup_alloc.isra.0+0x1af`` -> ``mas_dup_alloc`` (offset and compiler suffixes)."""
    plus = site.find("+0x")
    name = site[:plus] if plus > 0 else site
    return name.split(".", 1)[0]
