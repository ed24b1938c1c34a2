"""Compiled (numba) kernels of ``characterize``: one pass over the rows counts everything per
cache, per CPU and per call site and collects the matched frees' lifetimes; the lifetimes are
then grouped by cache in place and their percentiles found by selection.

Nothing imports this module but :mod:`sheaftune.compiled` (and tests): ``characterize`` gets
the kernels with ``kernels("sheaftune.analysis._characterize_kernels")``, the ahead-of-time
build of ``AOT_EXPORTS`` (numba is not imported) or, failing that, this module under numba's
JIT. The kernels allocate nothing (``_nrt=False``): every array, counters included, comes from
the caller with the exact dtypes the signatures fix. Row-index columns (``alloc_of``,
``reused_by``) are int32 below 2**31 rows and int64 above, so ``count_rows`` is exported once
per width (``_i4``/``_i8``).

The per-row loop avoids branches on the data (allocations and frees, matched or not, on one
CPU or two alternate unpredictably): a row adds to each counter it could touch, a 0/1 flag
deciding whether into its cache's slot or a slot nobody reads, and its flags go into one code,
so most facts cost one increment of a histogram. It works on a range of rows ``lo..hi`` of
whole columns, so the caller can go a chunk at a time and give back the pages of file-mapped
columns in between (issue 10). Indices read from the data (cache, op, call site, matched
allocation) are clamped before they index anything: a damaged table can be miscounted, never
read or written out of bounds.

Counters (``_characterize_layout`` has the constants; ``cid`` is the event's cache, or
``ncaches`` for the events no cache is counted for):

* ``hist[cid * NCODES + code]``: events by op and flags (allocations' and frees' flags share
  bits: each is masked with its side). With ``cpus_in_hist`` (the caller's choice when that
  stays small) ``hist[(cid * width + cpu) * NCODES + code]`` instead, which holds the per-CPU
  split too, and ``per_cpu`` is not touched; else
* ``per_cpu[(side * (ncaches + 1) + cid) * width + cpu]``, side 0 allocations, 1 frees.
* ``req_sum[cid]``: requested bytes of the counted allocations.
* Slot sizes: ``primary_size[cid]`` is the first slot size a cache's counted allocations had
  (-1: none yet; ``primary_size[ncaches]`` is -2); those of that size set the code's
  ``B_SIZE`` bit, any other (rare: a cache has one slot size) counts in a hash table of
  (cid << 32) + size.
* Call sites: ``primary_site[side * nsites + site]`` is the first cache a call site's counted
  events (of that side) were in (-1: none yet); ``site_hits`` counts those, any other cache
  (rare: most call sites feed one cache) counts in a hash table of
  (cid * 2 + side) * nfuncs + call-site function. Both arrays have a last, spare entry
  (``primary_site``'s is -2).
* The hash tables: ``keys`` (-1 where empty; a power of two long, linear probing) and
  ``counts``. ``fill`` holds their occupancy and the number of lifetimes written.

``count_rows`` stops before a row that could take a hash table past half full or the lifetimes
past their array, and returns that row: the caller grows what is full (``rehash`` for a table)
and goes on from there.
"""

from __future__ import annotations

import numpy as np
from numba import njit

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

_kjit = njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
_inline = njit(cache=True, nogil=True, inline="always", _nrt=False)  # type: ignore[call-overload]

_KCA = int(Op.KMEM_CACHE_ALLOC)
_KMA = int(Op.KMALLOC)
_OP_MASK = (1 << OP_BITS) - 1
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)


@_inline
def _find(keys, counts, key, fill, w):  # type: ignore[no-untyped-def]
    """The slot of key in the table (inserted with count 0, and fill[w] counted, if new)."""
    mask = len(keys) - 1
    h = np.uint64(key) * _HASH_MUL
    j = np.int64((h ^ (h >> np.uint64(29))) & np.uint64(mask))
    while True:
        k = keys[j]
        if k == key:
            return j
        if k == -1:
            keys[j] = key
            counts[j] = 0
            fill[w] += 1
            return j
        j = (j + 1) & mask


def _count_rows(  # type: ignore[no-untyped-def]
    lo,
    hi,
    ncaches,
    width,
    cpus_in_hist,
    reclaim,
    op,
    cpu,
    cache_id,
    ptr,
    gfp,
    site_id,
    bytes_alloc,
    bytes_req,
    ts,
    alloc_of,
    reused_by,
    live_at_end,
    func_of_site,
    nfuncs,
    hist,
    per_cpu,
    req_sum,
    primary_size,
    primary_site,
    site_hits,
    site_keys,
    site_counts,
    size_keys,
    size_counts,
    lifetime,
    lifetime_cid,
    fill,
):
    """Count rows lo..hi into the counters (see the module docstring) and append the lifetime
    (ts of the free - ts of its allocation) of each counted matched free, in row order, to
    ``lifetime[fill[2]:]`` and its cache to ``lifetime_cid``. Returns the row it stopped
    before: hi when done, less when a hash table or the lifetimes must grow first.

    ``func_of_site`` has one entry per call site plus a spare one."""
    n = len(op)
    nsites = len(func_of_site) - 1
    spare = 2 * nsites  # primary_site's and site_hits' spare entry
    stride = ncaches + 1
    site_room = len(site_keys) >> 1
    size_room = len(size_keys) >> 1
    room = len(lifetime)
    hist_width = width if cpus_in_hist else 1
    m = fill[2]
    for i in range(lo, hi):
        if m >= room:
            fill[2] = m
            return i
        # unsigned indices: numba adds no negative-index wraparound to their loads
        u = np.uint64(i)
        o = np.int64(op[u])
        is_alloc = np.int64((o == _KCA) | (o == _KMA))
        is_free = 1 - is_alloc
        c = np.int64(cache_id[u])
        counted = np.int64((c >= 0) & (c < ncaches) & (ptr[u] != 0))
        cid = ncaches + (c - ncaches) * counted
        src = np.int64(alloc_of[u])
        has = is_free & np.int64((src >= 0) & (src < n))
        srcu = np.uint64(min(max(src, 0), n - 1))
        cpu_i = np.int64(cpu[u])
        cross = has & counted & np.int64(cpu_i != np.int64(cpu[srcu]))
        nowait = is_alloc & np.int64((np.int64(gfp[u]) & reclaim) == 0)
        cp = min(cpu_i, width - 1)

        # Slot size and call site: one comparison each, true only for a new or another size
        # or cache (x86 code generation splits a branch on (a & b) into two, and "is it a
        # counted allocation" is a coin flip): the rows they do not apply to compare the
        # spare entry with -2.
        ac = is_alloc & counted
        size = np.int64(bytes_alloc[u])
        zi = np.uint64(ncaches + ac * (cid - ncaches))
        zkey = ac * (size + 2) - 2
        s = np.int64(site_id[u])
        sv = counted & np.int64((s >= 0) & (s < nsites))
        s = min(max(s, 0), nsites)
        ps = np.uint64(spare + sv * (is_free * nsites + s - spare))
        skey = sv * (cid + 2) - 2
        if (primary_size[zi] != zkey) | (primary_site[ps] != skey):
            if fill[0] >= site_room or fill[1] >= size_room:
                fill[2] = m
                return i  # before this row changed anything
            if primary_size[zi] == -1:
                primary_size[zi] = size
            elif primary_size[zi] != zkey:
                size_counts[_find(size_keys, size_counts, (cid << 32) + size, fill, 1)] += 1
            if primary_site[ps] == -1:
                primary_site[ps] = cid
            elif primary_site[ps] != skey:
                key = (cid * 2 + is_free) * nfuncs + func_of_site[s]
                site_counts[_find(site_keys, site_counts, key, fill, 0)] += 1
        first_size = ac & np.int64(primary_size[zi] == zkey)
        site_hits[
            np.uint64(spare + np.int64(primary_site[ps] == skey) * (np.int64(ps) - spare))
        ] += 1

        code = (o & _OP_MASK) | (
            (np.int64(reused_by[u] >= 0) & is_alloc) << B_UNSEEN
            | (np.int64(live_at_end[u]) & is_alloc) << B_LIVE
            | nowait << B_NOWAIT
            | first_size << B_SIZE
            | has << B_MATCHED
            | cross << B_CROSS
        )
        hist[np.uint64((cid * hist_width + cp * cpus_in_hist) * NCODES + code)] += 1
        if cpus_in_hist == 0:  # the same every row: predicted
            per_cpu[np.uint64((is_free * stride + cid) * width + cp)] += 1
        req_sum[np.uint64(cid)] += np.int64(bytes_req[u]) * ac

        mu = np.uint64(m)
        lifetime[mu] = ts[u] - ts[srcu]
        lifetime_cid[mu] = cid
        m += has & counted
    fill[2] = m
    return hi


def _group(values, cids, bounds, nxt):  # type: ignore[no-untyped-def]
    """Permute values (with cids, each value's group) in place so that group g's values are
    values[bounds[g]:bounds[g + 1]] (in no particular order): a cycle-leader counting sort.
    ``bounds`` must hold the groups' exact sizes; ``nxt`` is scratch, one entry per group."""
    ngroups = len(bounds) - 1
    top = ngroups - 1
    for g in range(ngroups):
        nxt[g] = bounds[g]
    for g in range(ngroups):
        end = bounds[g + 1]
        while nxt[g] < end:
            j = np.uint64(nxt[g])
            v = values[j]
            d = min(max(np.int64(cids[j]), 0), top)
            while d != g:  # v belongs to group d: swap it into d's next place
                p = np.uint64(nxt[np.uint64(d)])
                nxt[np.uint64(d)] = np.int64(p) + 1
                w = values[p]
                values[p] = v
                v = w
                d2 = min(max(np.int64(cids[p]), 0), top)
                cids[p] = d
                d = d2
            values[j] = v
            cids[j] = g
            nxt[g] = np.int64(j) + 1
    return 0


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
def _partition(a, lo, hi, pivot, or_equal):  # type: ignore[no-untyped-def]
    """Move the values of a[lo:hi] below pivot (or, with or_equal, not above it) to the front;
    returns where the others start. Branch-free Lomuto with a gap (Orson Peters' cyclic
    variant): whether a value goes left is added to an index, never branched on. (Unsigned
    indices: numba adds no negative-index wraparound to their loads.)"""
    left = np.uint64(lo)
    gap = left
    tmp = a[left]
    if or_equal:
        for right in range(lo + 1, hi):
            ur = np.uint64(right)
            r = a[ur]
            a[gap] = a[left]
            a[left] = r
            gap = ur
            left += np.uint64(r <= pivot)
        a[gap] = a[left]
        a[left] = tmp
        left += np.uint64(tmp <= pivot)
    else:
        for right in range(lo + 1, hi):
            ur = np.uint64(right)
            r = a[ur]
            a[gap] = a[left]
            a[left] = r
            gap = ur
            left += np.uint64(r < pivot)
        a[gap] = a[left]
        a[left] = tmp
        left += np.uint64(tmp < pivot)
    return np.int64(left)


@_inline
def _select(a, lo, hi, k):  # type: ignore[no-untyped-def]
    """Reorder a[lo:hi] so that a[k] is the value a sort would put there, none before it larger
    and none after it smaller (quickselect on a median of three; a heapsort of what is left if
    the partitions go badly, so never quadratic)."""
    budget = 64
    while hi - lo > 16:
        if budget == 0:
            _heapsort(a, lo, hi)
            return
        budget -= 1
        x, y, z = a[lo], a[lo + ((hi - lo) >> 1)], a[hi - 1]
        if x > y:
            x, y = y, x
        if y > z:
            y = z
            if x > y:
                y = x
        i = _partition(a, lo, hi, y, False)
        if k < i:
            hi = i  # not empty above: the pivot itself is not below it
            continue
        if i == lo:  # the pivot is the least value: its copies go first
            i = _partition(a, lo, hi, y, True)
            if k < i:
                return
        lo = i
    for i in range(lo + 1, hi):  # insertion sort of the short rest
        v = a[i]
        j = i - 1
        while j >= lo and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


def _order_stats(values, bounds, ks, out):  # type: ignore[no-untyped-def]
    """For each group g (values[bounds[g]:bounds[g + 1]], reordered in place): out[g, j] = the
    ks[g, j]-th smallest (0-based, within the group; ks[g] ascending and in range) for
    j < ks.shape[1], then the maximum and the minimum. Empty groups are left alone."""
    nk = ks.shape[1]
    for g in range(len(bounds) - 1):
        lo = bounds[g]
        hi = bounds[g + 1]
        if hi <= lo:
            continue
        start = lo
        first = hi - 1
        for j in range(nk):
            k = lo + min(max(ks[g, j], 0), hi - lo - 1)
            _select(values, start, hi, k)
            out[g, j] = values[k]
            if j == 0:
                first = k
            start = k  # the next k is not smaller: only what is not below this is left
        top = values[start]
        for i in range(start, hi):
            top = max(top, values[np.uint64(i)])
        bottom = values[lo]
        for i in range(lo, first + 1):
            bottom = min(bottom, values[np.uint64(i)])
        out[g, nk] = top
        out[g, nk + 1] = bottom
    return 0


def _rehash(old_keys, old_counts, keys, counts, fill, w):  # type: ignore[no-untyped-def]
    """Insert every entry of one hash table into another (empty, larger) one, counting the
    entries in fill[w]; returns their number."""
    fill[w] = 0
    for j in range(len(old_keys)):
        if old_keys[j] != -1:
            counts[_find(keys, counts, old_keys[j], fill, w)] += old_counts[j]
    return fill[w]


count_rows = _kjit(_count_rows)
group = _kjit(_group)
order_stats = _kjit(_order_stats)
rehash = _kjit(_rehash)
# one compiled entry point per width of the row-index columns
count_rows_i4 = count_rows_i8 = count_rows


def _count_args(idx: str) -> str:
    return (
        "i8(i8, i8, i8, i8, i8, i8, u1[::1], u2[::1], i4[::1], u8[::1], u4[::1], i4[::1], u4[::1], "
        f"u4[::1], i8[::1], {idx}[::1], {idx}[::1], b1[::1], i8[::1], i8, "
        + ", ".join(["i8[::1]"] * 11)
        + ", i4[::1], i8[::1])"
    )


#: kernels exported ahead of time: no NRT (every array comes from the caller), GIL released
AOT_EXPORTS = {
    "count_rows_i4": _count_args("i4"),
    "count_rows_i8": _count_args("i8"),
    "group": "i8(i8[::1], i4[::1], i8[::1], i8[::1])",
    "order_stats": "i8(i8[::1], i8[::1], i8[:, ::1], i8[:, ::1])",
    "rehash": "i8(i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8)",
}
