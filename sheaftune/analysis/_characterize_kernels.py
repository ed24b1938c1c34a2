"""Compiled (numba) kernels of ``characterize``: the per-cache, per-CPU and per-call-site counts
of a trace in one pass, its matched frees' lifetimes grouped by cache in a second, and their
percentiles by selection.

Nothing imports this module but :mod:`sheaftune.compiled` (and tests): ``characterize`` gets
the kernels with ``kernels("sheaftune.analysis._characterize_kernels")``, the ahead-of-time
build of ``AOT_EXPORTS`` (numba is not imported) or, failing that, this module under numba's
JIT. The kernels allocate nothing (``_nrt=False``): every array, counters included, comes from
the caller with the exact dtypes the signatures fix. Row-index columns (``alloc_of``,
``reused_by``) are int32 below 2**31 rows and int64 above, so the kernels reading them are
exported once per width (``_i4``/``_i8``).

Every kernel works on a range of rows ``lo..hi`` of whole columns, so the caller can go a chunk
at a time and give back the pages of file-mapped columns in between (issue 10). Indices read
from the data (cache, op, call site, matched allocation) are checked before they index a
counter: a damaged table can be miscounted, never written out of bounds.

Counter layouts (the caller's ``characterize`` reads them):

* ``by_op[cid * NOPS + op]``; ``cid`` is the event's cache, or ``ncaches`` for events no cache
  is counted for (unknown cache, NULL pointer).
* ``stats[S_*, cid]`` (the ``S_`` constants of ``_characterize_layout``).
* ``per_cpu[(side * (ncaches + 1) + cid) * width + cpu]``, side 0 allocations, 1 frees.
* Two open-addressing hash tables (``keys`` -1 where empty, ``counts``, linear probing, a power
  of two long) count the distinct (cache, side, call-site function) and (cache, slot size)
  pairs; ``fill`` holds their occupancy. ``count_rows`` stops before a row that could take
  either table past half full and returns that row, so the caller can grow the table
  (``rehash``) and go on from there.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sheaftune.analysis._characterize_layout import (
    NOPS,
    S_ALLOCS,
    S_CROSS,
    S_LIVE,
    S_MATCHED,
    S_NOWAIT,
    S_REQ_SUM,
    S_UNSEEN,
)
from sheaftune.events import Op

_kjit = njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
_inline = njit(cache=True, nogil=True, inline="always", _nrt=False)  # type: ignore[call-overload]

_KCA = int(Op.KMEM_CACHE_ALLOC)
_KMA = int(Op.KMALLOC)

_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)


@_inline
def _slot(key, mask):  # type: ignore[no-untyped-def]
    # multiplicative hash, top bits folded down: sequential keys still spread
    h = np.uint64(key) * _HASH_MUL
    return np.int64((h ^ (h >> np.uint64(29))) & np.uint64(mask))


@_inline
def _add(keys, counts, key, n):  # type: ignore[no-untyped-def]
    """Add n to key's count; returns 1 if the key was new."""
    mask = len(keys) - 1
    j = _slot(key, mask)
    while True:
        k = keys[j]
        if k == key:
            counts[j] += n
            return 0
        if k == -1:
            keys[j] = key
            counts[j] = n
            return 1
        j = (j + 1) & mask


def _count_rows(  # type: ignore[no-untyped-def]
    lo,
    hi,
    ncaches,
    width,
    reclaim,
    op,
    cpu,
    cache_id,
    ptr,
    gfp,
    site_id,
    bytes_alloc,
    bytes_req,
    alloc_of,
    reused_by,
    live_at_end,
    func_of_site,
    nfuncs,
    by_op,
    stats,
    per_cpu,
    site_keys,
    site_counts,
    size_keys,
    size_counts,
    fill,
):
    """Count rows lo..hi into the counters (see the module docstring); returns the row it
    stopped before (hi when done, less when a hash table needs to grow first)."""
    n = len(op)
    nsites = len(func_of_site)
    site_room = len(site_keys) >> 1
    size_room = len(size_keys) >> 1
    stride = ncaches + 1
    for i in range(lo, hi):
        if fill[0] >= site_room or fill[1] >= size_room:
            return i
        o = np.int64(op[i])
        is_alloc = o == _KCA or o == _KMA
        c = np.int64(cache_id[i])
        counted = c >= 0 and c < ncaches and ptr[i] != 0
        cid = c if counted else ncaches
        if o < NOPS:
            by_op[cid * NOPS + o] += 1
        cp = np.int64(cpu[i])
        if cp < width:
            per_cpu[((0 if is_alloc else 1) * stride + cid) * width + cp] += 1
        if reused_by[i] >= 0:
            stats[S_UNSEEN, cid] += 1
        if live_at_end[i]:
            stats[S_LIVE, cid] += 1
        s = np.int64(site_id[i])
        if is_alloc:
            if (np.int64(gfp[i]) & reclaim) == 0:
                stats[S_NOWAIT, cid] += 1
            if counted:
                stats[S_REQ_SUM, cid] += np.int64(bytes_req[i])
                stats[S_ALLOCS, cid] += 1
                fill[1] += _add(size_keys, size_counts, (cid << 32) + np.int64(bytes_alloc[i]), 1)
                if s >= 0 and s < nsites:
                    key = (cid * 2) * nfuncs + func_of_site[s]
                    fill[0] += _add(site_keys, site_counts, key, 1)
        else:
            src = np.int64(alloc_of[i])
            if src >= 0 and src < n:
                stats[S_MATCHED, cid] += 1
                if counted and cpu[i] != cpu[src]:
                    stats[S_CROSS, cid] += 1
            if counted and s >= 0 and s < nsites:
                key = (cid * 2 + 1) * nfuncs + func_of_site[s]
                fill[0] += _add(site_keys, site_counts, key, 1)
    return hi


def _lifetimes(lo, hi, ncaches, op, cache_id, ptr, alloc_of, ts, at, out):  # type: ignore[no-untyped-def]
    """Write the lifetime (ts of the free - ts of its allocation) of every counted matched
    free among rows lo..hi to ``out[at[cid]]`` and advance ``at[cid]``: ``at`` starts at each
    cache's offset, so the lifetimes come out grouped by cache, in row order within each."""
    n = len(op)
    for i in range(lo, hi):
        o = op[i]
        if o == _KCA or o == _KMA:
            continue
        src = np.int64(alloc_of[i])
        if src < 0 or src >= n:
            continue
        c = np.int64(cache_id[i])
        if c < 0 or c >= ncaches or ptr[i] == 0:
            continue
        j = at[c]
        if j < len(out):
            out[j] = ts[i] - ts[src]
            at[c] = j + 1
    return hi


@_inline
def _sift_down(a, lo, start, end):  # type: ignore[no-untyped-def]
    root = start
    while True:
        child = 2 * root + 1
        if child >= end:
            return
        if child + 1 < end and a[lo + child] < a[lo + child + 1]:
            child += 1
        if a[lo + root] < a[lo + child]:
            t = a[lo + root]
            a[lo + root] = a[lo + child]
            a[lo + child] = t
            root = child
        else:
            return


@_inline
def _heapsort(a, lo, hi):  # type: ignore[no-untyped-def]
    m = hi - lo
    for start in range(m // 2 - 1, -1, -1):
        _sift_down(a, lo, start, m)
    for end in range(m - 1, 0, -1):
        t = a[lo]
        a[lo] = a[lo + end]
        a[lo + end] = t
        _sift_down(a, lo, 0, end)


@_inline
def _select(a, lo, hi, k):  # type: ignore[no-untyped-def]
    """Reorder a[lo:hi] so that a[k] is the value a sort would put there, none before it
    larger and none after it smaller (quickselect, median of three, Hoare partitions; a
    heapsort of what is left if the partitions go badly, so never quadratic)."""
    budget = 64
    while hi - lo > 16:
        if budget == 0:
            _heapsort(a, lo, hi)
            return
        budget -= 1
        mid = lo + ((hi - lo) >> 1)
        x, y, z = a[lo], a[mid], a[hi - 1]
        if x > y:
            x, y = y, x
        if y > z:
            y = z
            if x > y:
                y = x
        pivot = y
        i = lo - 1
        j = hi
        while True:
            i += 1
            while a[i] < pivot:
                i += 1
            j -= 1
            while a[j] > pivot:
                j -= 1
            if i >= j:
                break
            t = a[i]
            a[i] = a[j]
            a[j] = t
        # a[lo:j+1] <= pivot <= a[j+1:hi]
        if k <= j:
            hi = j + 1
        else:
            lo = j + 1
    # insertion sort of the short rest
    for i in range(lo + 1, hi):
        v = a[i]
        j = i - 1
        while j >= lo and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


def _order_stats(values, bounds, ks, out):  # type: ignore[no-untyped-def]
    """For each group g (values[bounds[g]:bounds[g + 1]], reordered in place): out[g, j] = the
    ks[g, j]-th smallest (0-based, within the group; ks[g] ascending) for j < ks.shape[1],
    then the maximum and the minimum. Empty groups are left alone."""
    nk = ks.shape[1]
    for g in range(len(bounds) - 1):
        lo = bounds[g]
        hi = bounds[g + 1]
        if hi <= lo:
            continue
        start = lo
        for j in range(nk):
            k = lo + ks[g, j]
            _select(values, start, hi, k)
            out[g, j] = values[k]
            start = k  # later ks are larger: only what is not smaller is left to order
        first_k = lo + ks[g, 0] if nk else hi - 1
        top = values[hi - 1]
        for i in range(start, hi):
            if values[i] > top:
                top = values[i]
        bottom = values[lo]
        for i in range(lo, first_k + 1 if nk else hi):
            if values[i] < bottom:
                bottom = values[i]
        out[g, nk] = top
        out[g, nk + 1] = bottom
    return 0


def _rehash(old_keys, old_counts, keys, counts):  # type: ignore[no-untyped-def]
    """Insert every entry of one hash table into another (empty, larger) one; returns the
    number of entries."""
    m = 0
    for j in range(len(old_keys)):
        if old_keys[j] != -1:
            m += _add(keys, counts, old_keys[j], old_counts[j])
    return m


count_rows = _kjit(_count_rows)
lifetimes = _kjit(_lifetimes)
order_stats = _kjit(_order_stats)
rehash = _kjit(_rehash)
# one compiled entry point per width of the row-index columns
count_rows_i4 = count_rows_i8 = count_rows
lifetimes_i4 = lifetimes_i8 = lifetimes


def _count_args(idx: str) -> str:
    return (
        "i8(i8, i8, i8, i8, i8, u1[::1], u2[::1], i4[::1], u8[::1], u4[::1], i4[::1], u4[::1], "
        f"u4[::1], {idx}[::1], {idx}[::1], b1[::1], i8[::1], i8, i8[::1], i8[:, ::1], i8[::1], "
        "i8[::1], i8[::1], i8[::1], i8[::1], i8[::1])"
    )


def _lifetime_args(idx: str) -> str:
    return f"i8(i8, i8, i8, u1[::1], i4[::1], u8[::1], {idx}[::1], i8[::1], i8[::1], i8[::1])"


#: kernels exported ahead of time: no NRT (every array comes from the caller), GIL released
AOT_EXPORTS = {
    "count_rows_i4": _count_args("i4"),
    "count_rows_i8": _count_args("i8"),
    "lifetimes_i4": _lifetime_args("i4"),
    "lifetimes_i8": _lifetime_args("i8"),
    "order_stats": "i8(i8[::1], i8[::1], i8[:, ::1], i8[:, ::1])",
    "rehash": "i8(i8[::1], i8[::1], i8[::1], i8[::1])",
}
