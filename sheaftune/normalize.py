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

The passes are compiled kernels (:mod:`sheaftune._normalize_kernels`, loaded through
:mod:`sheaftune.compiled`): linear sweeps in time order, with open-addressing hash tables in
arrays allocated here (pointer -> its last event; task -> its current run of sheaf pops) and
counting sorts. Huge traces go a chunk of rows at a time, and the pointer matching one pointer
bucket at a time, so the tables and temporaries stay bounded.

Known limit: with the ``local`` trace clock, CPUs' clocks differ slightly, so a free on one
CPU can sort just after a reallocation of the same pointer on another CPU; such a pair is then
counted as an unseen free plus a free matched to the new object. The inversions are rare (they
need a reuse within the skew, microseconds) and are not corrected.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from sheaftune import gfp as gfpmod
from sheaftune._normalize_const import (
    C_FAILED_ALLOC,
    C_MATCHED,
    C_MISMATCH,
    C_NULL_FREE,
    C_PTRS_USED,
    C_UNMATCHED_KFREE,
    C_UNMATCHED_NAMED,
    C_UNSEEN,
    C_ZERO_SIZE_FREE,
    KEY_COLS,
    N_COUNTS,
    N_POP_STATE,
    P_POPS,
    P_RUNS,
    P_USED,
    PTR_COLS,
    TASK_COLS,
)
from sheaftune._normalize_const import ZERO_SIZE_PTR as ZERO_SIZE_PTR  # (part of this API)
from sheaftune.events import NO_CACHE, EventTable, Op, OpTable

_FAMILY_PREFIX = ("kmalloc-", "kmalloc-cg-", "kmalloc-rcl-", "dma-kmalloc-")


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

    # (plain classes here, not dataclasses: those cost their generated methods at start-up)
    def __init__(
        self,
        table: EventTable,
        alloc_of: np.ndarray,
        live_at_end: np.ndarray,
        reused_by: np.ndarray,
        counts: dict[str, int] | None = None,
    ) -> None:
        self.table = table
        self.alloc_of = alloc_of
        self.live_at_end = live_at_end
        self.reused_by = reused_by
        self.counts: dict[str, int] = counts if counts is not None else {}

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


#: Rows per step of the passes that sweep whole columns: bounds their temporaries.
CHUNK_ROWS = 1 << 20
#: Events per pointer bucket of the matching (more events: more buckets).
BUCKET_EVENTS = 1 << 20
#: First sizes of the kernels' hash tables (slots) and pop arrays; they grow (double) when
#: short. The pointer table starts at twice a bucket's events, at most ``FIRST_SLOTS``.
FIRST_SLOTS = 1 << 16
FIRST_SLOTS_SMALL = 1 << 8
FIRST_POPS = 1 << 14


def index_dtype(n: int) -> type:
    """int32 row indices when they fit (half the memory), else int64."""
    return np.int32 if n < 2**31 - 1 else np.int64


def normalize(table: EventTable) -> Normalized:
    """Resolve kmalloc caches, match frees to allocations, attribute kfree to caches.

    Sweeps in time order: collect the distinct kmalloc keys, then match pointers and attribute
    the matched frees (which also counts the rows left out of matching and gives each kmalloc
    its cache). A trace of several pointer buckets first writes each row's bucket and gives the
    kmallocs their caches in sweeps of their own, then matches one bucket at a time.

    Memory: a few bytes per event beyond the table (int32 indices, bool flags; with several
    buckets a 2-byte bucket column) plus a hash table of about twice the distinct pointers of a
    bucket; sweeps go in chunks
    of ``CHUNK_ROWS`` rows with file-mapped columns released after each (``EventTable.release``),
    and traces of more than ``BUCKET_EVENTS`` events are matched in pointer buckets of about that
    many events.
    """
    if table.normalized is not None:  # (made by pipeline.load while the reader finished)
        done: Normalized = table.normalized
        return done
    k = _kernels()
    n = len(table)
    op = _col(table, "op")
    ptr = _col(table, "ptr")
    bytes_alloc = _col(table, "bytes_alloc")
    gfp = _col(table, "gfp")
    # (a copy: the matching gives kmallocs and kfrees their caches in it)
    alloc_of, reused_by, cache_id, live_at_end = _new_columns(n, index_dtype(n))
    cache_id[:] = table.cache_id
    caches = list(table.caches)
    name_ids = {name: i for i, name in enumerate(caches)}
    hashed = bool(table.meta.pointers_hashed)
    counts = np.zeros(N_COUNTS, dtype=np.int64)

    # 1. the distinct kmalloc (size, family) keys, and with several pointer buckets each row's
    # bucket (nb: out of every bucket) and the counts of rows out of matching
    nb = _bucket_count(n)
    bits = nb.bit_length() - 1
    bucket = np.empty(n if nb > 1 else 0, dtype=np.uint16)
    ktab = _table(FIRST_SLOTS_SMALL, KEY_COLS)
    for lo, hi in _chunks(n):
        if nb > 1:
            k.classify(op, ptr, lo, hi, hashed, bits, bucket, counts)
        at = lo
        while (at := k.kmalloc_keys(op, bytes_alloc, gfp, at, hi, ktab, counts)) < hi:
            ktab = _grown(k, ktab, 0)
        table.release()

    # 2. kmalloc: cache from size bucket and gfp family, resolved once per distinct key (in key
    # order, so cache ids do not depend on the order of the events); with one bucket the
    # matching sweep gives the kmallocs their caches
    slots = np.nonzero(ktab[:, 0])[0]
    slots = slots[np.argsort(ktab[slots, 0])]
    for s, tag in zip(slots.tolist(), ktab[slots, 0].tolist(), strict=True):
        size, fam = divmod(tag - 1, 4)
        name = _FAMILY_PREFIX[fam] + gfpmod._size_name(size)
        if name not in name_ids:
            name_ids[name] = len(caches)
            caches.append(name)
        ktab[s, 1] = name_ids[name]
    if nb > 1 and len(slots):
        for lo, hi in _chunks(n):
            k.resolve_kmalloc(_kmalloc_rows(op, lo, hi), bytes_alloc, gfp, ktab, cache_id)
            table.release()

    # 3. pointer matching, bucket by bucket (every event of a pointer falls in one bucket), each
    # swept in time order; a matched kfree takes the cache of its allocation, a named free keeps
    # its name
    idx = index_dtype(n)
    match = k.match_pointers_i4 if idx is np.int32 else k.match_pointers_i8
    # (about twice the distinct pointers of a bucket: a guess, grown when short)
    ptab = _table(min(FIRST_SLOTS, _pow2(2 * min(n, BUCKET_EVENTS))), PTR_COLS)
    live_n = 0
    for b in range(nb):
        for lo, hi in _chunks(n):
            at = lo
            while (
                at := match(
                    *(op, ptr, bytes_alloc, gfp, hashed, bucket, b, bits, at, hi),
                    *(ptab, ktab, cache_id, alloc_of, reused_by, counts),
                )
            ) < hi:
                ptab = _grown(k, ptab, bits)
            table.release()
        live_n += k.live_at_end(ptab, live_at_end)  # (and empties the table)
        counts[C_PTRS_USED] = 0
    del bucket, ptab, ktab

    c = counts.tolist()
    out_counts = {
        "null_free": c[C_NULL_FREE],
        "zero_size_free": c[C_ZERO_SIZE_FREE],
        "failed_alloc": c[C_FAILED_ALLOC],
        "matched_free": c[C_MATCHED],
        "unmatched_kfree": c[C_UNMATCHED_KFREE],
        "unmatched_kmem_cache_free": c[C_UNMATCHED_NAMED],
        "unseen_free": c[C_UNSEEN],
        "live_at_end": int(live_n),
        "free_cache_mismatch": c[C_MISMATCH],
    }
    out = EventTable(
        {**table.columns, "cache_id": cache_id}, caches, table.sites, table.comms, table.meta
    )
    return Normalized(out, alloc_of, live_at_end, reused_by, out_counts)


def group_rows(key: np.ndarray, nkeys: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices grouped by ``key`` (values 0..nkeys-1; others are left out), each group in
    row order: ``rows[starts[k]:starts[k + 1]]`` are the rows of key k.

    A counting sort (two linear passes): int32 rows when they fit, and no temporary as long as
    the table, where ``np.argsort(key, kind="stable")`` would build int64 ones.
    """
    k = _kernels()
    n = len(key)
    if key.dtype != np.int32 or not key.flags.c_contiguous:
        key = np.clip(key, -1, nkeys).astype(np.int32)  # (out-of-range keys stay out of range)
    counts = np.zeros(nkeys, dtype=np.int64)
    total = k.count_keys(key, counts)
    starts = np.zeros(nkeys + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    rows: np.ndarray = np.empty(total, dtype=index_dtype(n))
    fill = k.fill_groups_i4 if rows.dtype == np.int32 else k.fill_groups_i8
    fill(key, starts[:-1].copy(), rows)
    return rows, starts


def alloc_mask(op: np.ndarray) -> np.ndarray:
    """Allocation events among ``op`` values (``Normalized.is_alloc`` for a subset of rows)."""
    return (op == Op.KMEM_CACHE_ALLOC) | (op == Op.KMALLOC)


def _kernels() -> Any:
    # (imported here: modules that only read Normalized or its constants need no kernel
    # machinery)
    from sheaftune.compiled import kernels

    return kernels("sheaftune._normalize_kernels")


def _col(table: EventTable, name: str) -> np.ndarray:
    """A column as the kernels take it (C-contiguous; a no-op for the tables readers build)."""
    return np.ascontiguousarray(table.columns[name])


def _new_columns(n: int, idx: type) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``alloc_of`` and ``reused_by`` (all -1), room for ``cache_id`` (int32) and
    ``live_at_end`` (all False), carved from one allocation: they are made and dropped
    together."""
    w = np.dtype(idx).itemsize
    buf = np.empty((2 * w + 5) * n, dtype=np.uint8)
    ends = (w * n, 2 * w * n, (2 * w + 4) * n)
    buf[: ends[1]].fill(0xFF)  # (-1 in every index)
    buf[ends[2] :].fill(0)
    return (
        buf[: ends[0]].view(idx),
        buf[ends[0] : ends[1]].view(idx),
        buf[ends[1] : ends[2]].view(np.int32),
        buf[ends[2] :].view(np.bool_),
    )


def _kmalloc_rows(op: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """The kmalloc rows among lo..hi (a vectorised scan: they are few)."""
    return lo + np.flatnonzero(op[lo:hi] == Op.KMALLOC)


def _chunks(n: int) -> list[tuple[int, int]]:
    return [(lo, min(n, lo + CHUNK_ROWS)) for lo in range(0, n, CHUNK_ROWS)]


def _table(slots: int, cols: int) -> np.ndarray:
    """An empty hash table of the kernels: ``slots`` (a power of two) rows of ``cols`` words."""
    return np.zeros((slots, cols), dtype=np.int64)


def _pow2(n: int) -> int:
    """The least power of two >= n (and >= 16)."""
    return max(16, 1 << (n - 1).bit_length())


def _grown(k: Any, tab: np.ndarray, bits: int) -> np.ndarray:
    """The table moved into one of twice the slots (``bits``: of the pointer buckets)."""
    new = _table(2 * len(tab), tab.shape[1])
    k.rehash(tab, new, bits)
    return new


def _bucket_count(n: int) -> int:
    """Buckets (a power of two, at most 4096) for about ``BUCKET_EVENTS`` of n rows each."""
    nb = 1
    while nb * BUCKET_EVENTS < n and nb < 4096:
        nb *= 2
    return nb


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


class PopRuns:
    """Pops from prefilled sheaves found in a trace, grouped into operations (runs).

    ``rows`` are event indices of the pops in time order, ``run`` the operation each belongs to
    (0..n_runs-1, numbered in order of their first pop), ``store`` the store type its call site
    reveals, ``bound`` each run's upper bound.
    """

    def __init__(
        self, rows: np.ndarray, run: np.ndarray, code: np.ndarray, bound: np.ndarray
    ) -> None:
        self.rows = rows
        self.run = run
        self.code = code  # index into _STORE_TYPES, one per pop
        self.bound = bound

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
    is inlined (``SHEAF_POP_SITES``) that returned an object (a failed one, NULL, took nothing
    from the sheaf: it is no pop and does not end the run). A run ends when the task allocates
    from the cache by another path (a new tree operation), or after ``gap_ns`` without a pop.
    The upper bound is ``upper_bound`` when given, else the request rule of the store type the
    pop sites reveal (the largest over the run's sites), and never less than what the run used.

    The first call finds the pops of every cache in one sweep (memoised on ``norm`` per
    ``gap_ns``); ``rows`` (the cache's rows, from callers that have them) is not needed. On a
    trace of more than ``BUCKET_EVENTS`` events a cache's pops are handed over rather than kept
    (a second call for that cache sweeps again).
    """
    del rows
    t = norm.table
    empty = np.empty(0, dtype=np.int64)
    if cache not in t.caches:
        return PopRuns(empty, empty, np.empty(0, dtype=np.int8), empty)
    # (one sweep at a time: analyze replays caches on several threads, and a thread must not
    # see the memo of a sweep still running on another)
    with _POP_RUNS_LOCK:
        pops = _all_pop_runs(norm, gap_ns)
        if len(t) > BUCKET_EVENTS:
            served: set[str] = norm.__dict__.setdefault("_pops_served", {}).setdefault(
                gap_ns, set()
            )
            if cache in served:
                del norm.__dict__["_pop_runs"][gap_ns]
                served.clear()
                pops = _all_pop_runs(norm, gap_ns)
            found = pops.pop(cache, None)
            if found is not None:
                served.add(cache)
        else:
            found = pops.get(cache)
            if found is not None:  # (copies: the caller may write into them)
                found = (found[0].copy(), found[1], found[2].copy(), found[3], found[4])
    if found is None:
        return PopRuns(empty, empty, np.empty(0, dtype=np.int8), empty)
    pop_rows, run, code, mask, used = found
    if upper_bound is not None:
        bound = np.full(len(used), upper_bound, dtype=np.int64)
    else:
        bound = _bound_of_codes(tree_height)[mask]
    # a run cannot use more than it asked for
    return PopRuns(pop_rows, run.astype(np.int64), code, np.maximum(bound, used))


_POP_RUNS_LOCK = threading.Lock()

#: Per cache: its pops' rows, runs and codes, its runs' code sets and sizes.
_CachePops = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def find_sheaf_pops(norm: Normalized, gap_ns: int = DEFAULT_RUN_GAP_NS) -> None:
    """Sweep for every cache's sheaf pops now, unless done: the sweep ``sheaf_pop_runs``
    makes at its first call, memoised. ``analyze`` runs it as a job of its own beside its
    grouping, so that no cache's plan waits for it later."""
    with _POP_RUNS_LOCK:
        _all_pop_runs(norm, gap_ns)


def _all_pop_runs(norm: Normalized, gap_ns: int) -> dict[str, _CachePops]:
    """The sheaf pops of every cache that has some, found in one sweep of the trace in time
    order (a chunk of rows at a time) and memoised on ``norm`` (only once complete: a sweep
    that fails leaves no memo, and the next call sweeps, and fails, again); see
    ``pop_runs_i4``."""
    memo: dict[int, dict[str, _CachePops]] = norm.__dict__.setdefault("_pop_runs", {})
    if gap_ns not in memo:
        memo[gap_ns] = _sweep_pop_runs(norm, gap_ns)
    return memo[gap_ns]


def _sweep_pop_runs(norm: Normalized, gap_ns: int) -> dict[str, _CachePops]:
    """``_all_pop_runs``'s sweep."""
    done: dict[str, _CachePops] = {}
    code_of_site = _site_store_codes(norm)
    if not code_of_site.any():  # no call site of the trace is a pop site
        return done
    k = _kernels()
    t = norm.table
    n = len(t)
    ncaches = len(t.caches)
    idx = index_dtype(n)
    sweep = k.pop_runs_i4 if idx is np.int32 else k.pop_runs_i8
    cols = [_col(t, c) for c in ("op", "ptr", "cache_id", "site_id", "gfp", "pid", "ts_ns")]
    ttab = _table(FIRST_SLOTS_SMALL, TASK_COLS)
    cache_runs = np.zeros(ncaches + 1, dtype=np.int64)  # (the last: rows of no cache)
    # per pop: row, run number in its cache, code, cache; per run: cache, code set, pops
    pops: list[np.ndarray] = [np.empty(FIRST_POPS, dtype=d) for d in (idx, idx, np.int8, np.int32)]
    runs: list[np.ndarray] = [np.empty(FIRST_POPS, dtype=d) for d in (np.int32, np.uint8, np.int64)]
    state = np.zeros(N_POP_STATE, dtype=np.int64)
    for lo, hi in _chunks(n):
        at = lo
        while (
            at := sweep(*cols, at, hi, code_of_site, gap_ns, ttab, cache_runs, *pops, *runs, state)
        ) < hi:
            if state[P_POPS] >= len(pops[0]):
                pops = [_longer(a) for a in pops]
            if state[P_RUNS] >= len(runs[0]):
                runs = [_longer(a) for a in runs]
            if (state[P_USED] + 1) * 2 > len(ttab):
                ttab = _grown(k, ttab, 0)
        t.release()
    del cols, ttab
    npops, nruns = int(state[P_POPS]), int(state[P_RUNS])
    pop_row, pop_run, pop_code, pop_cache = (a[:npops] for a in pops)
    run_cache, run_mask, run_used = (a[:nruns] for a in runs)
    # each cache's pops and runs, in time order (runs by first pop); usually one cache has all
    if nruns and run_cache.min() == run_cache.max():
        # (copies: not the spare room of the arrays)
        found = (pop_row.copy(), pop_run.copy(), pop_code.copy(), run_mask.copy(), run_used.copy())
        done[t.caches[int(run_cache[0])]] = found
        return done
    by_pop, pop_starts = group_rows(pop_cache, ncaches)
    by_run, run_starts = group_rows(run_cache, ncaches)
    for c in np.nonzero(np.diff(pop_starts))[0].tolist():
        p = by_pop[pop_starts[c] : pop_starts[c + 1]]
        r = by_run[run_starts[c] : run_starts[c + 1]]
        done[t.caches[c]] = (pop_row[p], pop_run[p], pop_code[p], run_mask[r], run_used[r])
    return done


def _longer(a: np.ndarray) -> np.ndarray:
    out = np.empty(2 * len(a), dtype=a.dtype)
    out[: len(a)] = a
    return out


def _bound_of_codes(tree_height: int) -> np.ndarray:
    """The request bound of a run, by the set of its pops' store-type codes (bit c: code c):
    the largest rule among them (``request_bound`` with nothing used)."""
    cached = _BOUND_OF_CODES.get(tree_height)
    if cached is None:
        rule = [max(0, request_bound(name, tree_height, 0)) for name in _STORE_TYPES]
        bound = [0] * (1 << len(_STORE_TYPES))
        for m in range(1, len(bound)):
            # a set is its lowest code and the set without it
            low = (m & -m).bit_length() - 1
            bound[m] = max(bound[m & (m - 1)], rule[low])
        cached = np.array(bound, dtype=np.int64)
        _BOUND_OF_CODES[tree_height] = cached
    return cached


_BOUND_OF_CODES: dict[int, np.ndarray] = {}


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


#: Store types of ``SHEAF_POP_SITES`` as codes: index 0 ("") is "not a pop site". (A run's
#: codes are kept as the bits of one byte: at most 8.)
_STORE_TYPES = ("", *sorted(set(SHEAF_POP_SITES.values())))
assert len(_STORE_TYPES) <= 8


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
