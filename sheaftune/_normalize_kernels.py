"""Compiled (numba) kernels of normalisation: row classification, kmalloc cache keys, pointer
matching, sheaf pop runs, counting sorts.

Nothing imports this module but :mod:`sheaftune.compiled` (and tests): :mod:`sheaftune.normalize`
gets the kernels with ``compiled.kernels("sheaftune._normalize_kernels")``, the ahead-of-time
build of ``AOT_EXPORTS`` (numba is not imported) or, failing that, this module under numba's
JIT. The kernels allocate nothing (``_nrt=False``): every array, scratch hash tables included,
comes from the caller with the exact dtypes the signatures fix. Kernels that take row indices
come in two exports, ``..._i4`` and ``..._i8``, for ``normalize.index_dtype``'s two dtypes.

Hash tables are open addressing with linear probing (Fibonacci hashing) over a power-of-two
number of slots, one int64 row per slot: ``tab[s, 0]`` is the slot's tag (the key, never 0;
0 marks an empty slot), the other columns its values (``_normalize_const.*_COLS``). A kernel
that would fill a table past half its slots (or an output array to its end) stops *before*
the row that needs the room and returns that row;
the caller grows the array (``rehash`` moves a table into a bigger one) and calls again from
there. Everything a kernel accumulates lives in caller arrays, so a resumed call continues
exactly where the stopped one left off, and calls over consecutive row ranges (chunks of a huge
trace) add up to one call over all of them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sheaftune._normalize_const import (
    C_FAILED_ALLOC,
    C_KEYS_USED,
    C_MATCHED,
    C_MISMATCH,
    C_NULL_FREE,
    C_PTRS_USED,
    C_UNMATCHED_KFREE,
    C_UNMATCHED_NAMED,
    C_UNSEEN,
    C_ZERO_SIZE_FREE,
    P_POPS,
    P_RUNS,
    P_USED,
    ZERO_SIZE_PTR,
)
from sheaftune.events import NO_CACHE, Op
from sheaftune.gfp import __GFP_ACCOUNT, __GFP_DIRECT_RECLAIM, __GFP_DMA, __GFP_RECLAIMABLE

_kjit = njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
_inline = njit(cache=True, nogil=True, inline="always", _nrt=False)  # type: ignore[call-overload]

_KMALLOC = np.uint8(Op.KMALLOC)
_KMEM_CACHE_ALLOC = np.uint8(Op.KMEM_CACHE_ALLOC)
_KFREE = np.uint8(Op.KFREE)
_KMEM_CACHE_FREE = np.uint8(Op.KMEM_CACHE_FREE)
_ZERO_SIZE_PTR = np.uint64(ZERO_SIZE_PTR)
_ACCOUNT = np.uint32(__GFP_ACCOUNT)
_RECLAIMABLE = np.uint32(__GFP_RECLAIMABLE)
_DMA = np.uint32(__GFP_DMA)
_DIRECT_RECLAIM = np.uint32(__GFP_DIRECT_RECLAIM)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_U64_ZERO = np.uint64(0)
_ONE = np.uint64(1)
_S32 = np.uint64(32)


@_inline
def _is_alloc(o):  # type: ignore[no-untyped-def]
    return (o == _KMEM_CACHE_ALLOC) | (o == _KMALLOC)


@_inline
def _hash(tag):  # type: ignore[no-untyped-def]
    # Fibonacci hashing: the high bits of the product are the well-mixed ones
    return np.uint64(tag) * _GOLDEN


@_inline
def _find(tab, tag, lsh):  # type: ignore[no-untyped-def]
    """The slot holding ``tag``, or the empty slot where it would go. The probe starts at the
    hash's bits below its top ``lsh`` (which pick a pointer's bucket, so they are the same for
    every pointer of one table), scaled to the number of slots."""
    cap = tab.shape[0]
    x = (_hash(tag) << np.uint64(lsh)) >> _S32
    s = np.int64((x * np.uint64(cap)) >> _S32)
    mask = cap - 1
    while tab[s, 0] != 0 and tab[s, 0] != tag:
        s = (s + 1) & mask
    return s


@_inline
def _kmalloc_tag(bytes_alloc, gfp):  # type: ignore[no-untyped-def]
    # size bucket and kmalloc_type()'s family: 0 normal, 1 cg, 2 rcl, 3 dma (later ones win);
    # + 1, as a table's tags are never 0
    fam = 0
    if gfp & _DMA:
        fam = 3
    elif gfp & _RECLAIMABLE:
        fam = 2
    elif gfp & _ACCOUNT:
        fam = 1
    return np.int64(bytes_alloc) * 4 + fam + 1


@_kjit
def rehash(tab, new, lsh):  # type: ignore[no-untyped-def]
    """Move every entry of a table into an empty bigger one; returns the number of entries."""
    n = 0
    for s in range(tab.shape[0]):
        tag = tab[s, 0]
        if tag == 0:
            continue
        t = _find(new, tag, lsh)
        for w in range(tab.shape[1]):
            new[t, w] = tab[s, w]
        n += 1
    return n


@_kjit
def kmalloc_keys(op, bytes_alloc, gfp, lo, hi, ktab, counts):  # type: ignore[no-untyped-def]
    """The kmalloc rows among lo..hi: add each one's (size, family) tag to ``ktab``. Returns
    hi, or the row where ``ktab`` needs to grow."""
    cap = ktab.shape[0]
    for i in range(lo, hi):
        if op[i] != _KMALLOC:
            continue
        tag = _kmalloc_tag(bytes_alloc[i], gfp[i])
        s = _find(ktab, tag, 0)
        if ktab[s, 0] == 0:
            if (counts[C_KEYS_USED] + 1) * 2 > cap:
                return i
            ktab[s, 0] = tag
            counts[C_KEYS_USED] += 1
    return hi


@_kjit
def classify(op, ptr, lo, hi, hashed, bucket_bits, bucket, counts):  # type: ignore[no-untyped-def]
    """Rows lo..hi: count NULL frees, failed allocations and ZERO_SIZE_PTR frees; write each
    row's pointer bucket (the top ``bucket_bits`` bits of its hash; ``2**bucket_bits`` for rows
    that take no part in matching)."""
    nb = np.uint16(1 << bucket_bits)
    shift = np.uint64(63 - bucket_bits)
    null_free = failed = zero_size = 0
    # (no branches: allocations and frees alternate unpredictably)
    for i in range(lo, hi):
        p = ptr[i]
        a = _is_alloc(op[i])
        null = p == _U64_ZERO
        # %p hashes 0x10 too: with hashed pointers it cannot be told apart
        zero = (p == _ZERO_SIZE_PTR) & (not a) & (not hashed)
        failed += null & a
        null_free += null & (not a)
        zero_size += zero
        b = np.uint16(((p * _GOLDEN) >> _ONE) >> shift)  # (>> 64 would be undefined)
        bucket[i] = nb if null | zero else b
    counts[C_NULL_FREE] += null_free
    counts[C_FAILED_ALLOC] += failed
    counts[C_ZERO_SIZE_FREE] += zero_size
    return hi


@_kjit
def resolve_kmalloc(rows, bytes_alloc, gfp, ktab, cache_id):  # type: ignore[no-untyped-def]
    """Kmalloc rows ``rows``: each gets the cache id its tag's slot holds (``ktab[s, 1]``)."""
    for r in range(len(rows)):
        i = rows[r]
        cache_id[i] = np.int32(ktab[_find(ktab, _kmalloc_tag(bytes_alloc[i], gfp[i]), 0), 1])
    return len(rows)


def _match_pointers(  # type: ignore[no-untyped-def]
    op,
    ptr,
    bytes_alloc,
    gfp,
    hashed,
    bucket,
    k,
    bucket_bits,
    lo,
    hi,
    ptab,
    ktab,
    cache_id,
    alloc_of,
    reused_by,
    counts,
):
    """Rows lo..hi of bucket k, in time order: match each free to the last event of its
    pointer when that is an allocation; an allocation after an allocation marks the older
    one reused; a matched free takes its allocation's cache (a kfree always, a named free when
    it names none) and counts a mismatch of the names. ``ptab[s]`` is (pointer, 2 * its last
    row + 1 if that row allocates). Returns hi, or the row where the table must grow.

    With one bucket (``bucket_bits`` 0) this sweep also does ``classify``'s and
    ``resolve_kmalloc``'s work (``bucket`` is not read): one pass instead of three.
    """
    cap = ptab.shape[0]
    single = bucket_bits == 0
    used = counts[C_PTRS_USED]
    null_free = failed = zero_size = 0
    matched = unseen = mismatch = unmatched_kfree = unmatched_named = 0
    stop = hi
    for i in range(lo, hi):
        if not single and bucket[i] != k:
            continue  # (before reading more: each bucket's sweep skips most rows)
        o = op[i]
        a = _is_alloc(o)
        p = ptr[i]
        valid = True
        if single:
            null = p == _U64_ZERO
            zero = (p == _ZERO_SIZE_PTR) & (not a) & (not hashed)
            valid = not (null | zero)
        if valid:
            tag = np.int64(p)
            s = _find(ptab, tag, bucket_bits)
            last = ptab[s, 1]
            if ptab[s, 0] == 0:
                if (used + 1) * 2 > cap:
                    stop = i
                    break
                ptab[s, 0] = tag
                used += 1
                last = 0
            ptab[s, 1] = 2 * i + a
        if single:
            if o == _KMALLOC:
                cache_id[i] = np.int32(
                    ktab[_find(ktab, _kmalloc_tag(bytes_alloc[i], gfp[i]), 0), 1]
                )
            failed += null & a
            null_free += null & (not a)
            zero_size += zero
        if not valid:
            continue
        if last & 1:
            j = last >> 1
            if a:
                reused_by[j] = i
                unseen += 1
            else:
                alloc_of[i] = j
                matched += 1
                if o == _KFREE:
                    cache_id[i] = cache_id[j]
                elif o == _KMEM_CACHE_FREE:
                    if cache_id[i] == NO_CACHE:  # pre-5.12 kmem_cache_free names no cache
                        cache_id[i] = cache_id[j]
                    elif cache_id[i] != cache_id[j]:
                        mismatch += 1
        elif not a:
            unmatched_kfree += o == _KFREE
            unmatched_named += o == _KMEM_CACHE_FREE
    counts[C_PTRS_USED] = used
    counts[C_NULL_FREE] += null_free
    counts[C_FAILED_ALLOC] += failed
    counts[C_ZERO_SIZE_FREE] += zero_size
    counts[C_MATCHED] += matched
    counts[C_UNSEEN] += unseen
    counts[C_MISMATCH] += mismatch
    counts[C_UNMATCHED_KFREE] += unmatched_kfree
    counts[C_UNMATCHED_NAMED] += unmatched_named
    return stop


match_pointers_i4 = _kjit(_match_pointers)
match_pointers_i8 = _kjit(_match_pointers)


@_kjit
def live_at_end(ptab, live):  # type: ignore[no-untyped-def]
    """After a bucket: mark each pointer's last row when it is an allocation (live at the end),
    and empty the table for the next bucket. Returns the number marked."""
    n = 0
    for s in range(ptab.shape[0]):
        if ptab[s, 0] != 0:
            last = ptab[s, 1]
            if last & 1:
                live[last >> 1] = True
                n += 1
            ptab[s, 0] = 0
    return n


def _pop_runs(  # type: ignore[no-untyped-def]
    op,
    ptr,
    cache_id,
    site_id,
    gfp,
    pid,
    ts,
    lo,
    hi,
    code_of_site,
    gap_ns,
    ttab,
    cache_runs,
    pop_row,
    pop_run,
    pop_code,
    pop_cache,
    run_cache,
    run_mask,
    run_used,
    state,
):
    """Rows lo..hi, in time order: the sheaf pops of every cache, grouped into runs.

    A pop is an allocation at a site whose ``code_of_site`` is not 0, without
    ``__GFP_DIRECT_RECLAIM``, that returned an object: a failed one (NULL) takes no object
    from the sheaf, so it is no pop, and it does not end the task's run either. ``ttab`` is
    keyed by (cache, pid) and holds 2 * the task's current run (global id) + 1 while its last
    allocation from that cache was a pop (+ 0 after another allocation), that pop's time and
    the run's number in its cache. A pop continues the task's run when its last allocation
    from the cache was a pop at most ``gap_ns`` earlier, else starts one: runs get global ids
    in order of their first pop, and numbers per cache (``cache_runs`` counts them, with a
    last 0 for rows of no cache) in the same order. Per pop: row, run number in the cache,
    code, cache; per run (global id): cache, the bit set of its pops' codes, its number of
    pops. Returns hi, or the row where an output array or the table must grow.
    """
    tcap = ttab.shape[0]
    last_code = np.uint64(len(code_of_site) - 1)  # (a 0: "no call site")
    last_cache = np.uint64(len(cache_runs) - 1)  # (stays 0: "no cache")
    for i in range(lo, hi):
        # (one branch, rarely taken, for the rows of no interest: most of them)
        c = cache_id[i]
        code = code_of_site[min(np.uint64(np.int64(site_id[i])), last_code)]
        runs_of_c = cache_runs[min(np.uint64(np.int64(c)), last_cache)]
        if not (_is_alloc(op[i]) & ((code != 0) | (runs_of_c != 0))):
            continue  # a free, or no pop and no run of this cache to end
        if c < 0 or c >= len(cache_runs) - 1:
            continue
        pop = code != 0 and (gfp[i] & _DIRECT_RECLAIM) == 0
        if pop and ptr[i] == 0:
            continue  # a failed pop: no object (the replay has no slot for it)
        tag = (np.int64(c) << 32 | (np.int64(pid[i]) & 0xFFFFFFFF)) + 1
        s = _find(ttab, tag, 0)
        new = ttab[s, 0] == 0
        if not pop:
            if not new:
                ttab[s, 1] &= ~1  # the task's run ends here
            continue
        if (
            state[P_POPS] >= len(pop_row)
            or state[P_RUNS] >= len(run_used)
            or (new and (state[P_USED] + 1) * 2 > tcap)
        ):
            return i
        if new:
            ttab[s, 0] = tag
            ttab[s, 1] = 0
            state[P_USED] += 1
        cur = ttab[s, 1]
        if cur & 1 and ts[i] - ttab[s, 2] <= gap_ns:
            r = cur >> 1
        else:
            r = state[P_RUNS]
            state[P_RUNS] += 1
            run_cache[r] = c
            run_mask[r] = 0
            run_used[r] = 0
            ttab[s, 3] = cache_runs[c]
            cache_runs[c] += 1
        run_mask[r] |= np.uint8(1) << np.uint8(code)
        run_used[r] += 1
        ttab[s, 1] = 2 * r + 1
        ttab[s, 2] = ts[i]
        n = state[P_POPS]
        pop_row[n] = i
        pop_run[n] = ttab[s, 3]
        pop_cache[n] = c
        pop_code[n] = code
        state[P_POPS] = n + 1
    return hi


pop_runs_i4 = _kjit(_pop_runs)
pop_runs_i8 = _kjit(_pop_runs)


def _count_keys(key, counts):  # type: ignore[no-untyped-def]
    """counts[k] += rows with key k, for 0 <= k < len(counts); returns the rows counted."""
    nk = len(counts)
    total = 0
    for i in range(len(key)):
        k = key[i]
        if 0 <= k < nk:
            counts[k] += 1
            total += 1
    return total


count_keys = _kjit(_count_keys)


def _fill_groups(key, fill, rows):  # type: ignore[no-untyped-def]
    """Counting sort's second pass: row i goes to ``rows[fill[key[i]]++]`` (``fill`` starts as
    the groups' starts); rows of keys outside 0..len(fill)-1 are left out."""
    nk = len(fill)
    for i in range(len(key)):
        k = key[i]
        if 0 <= k < nk:
            rows[fill[k]] = i
            fill[k] += 1
    return len(rows)


fill_groups_i4 = _kjit(_fill_groups)
fill_groups_i8 = _kjit(_fill_groups)


_TABLE = "i8[:, ::1]"
_POP_ARGS = (
    "u1[::1], u8[::1], i4[::1], i4[::1], u4[::1], i4[::1], i8[::1], i8, i8, i1[::1], i8, "
    + _TABLE
    + ", i8[::1], {idx}[::1], {idx}[::1], i1[::1], i4[::1], i4[::1], u1[::1], i8[::1], i8[::1]"
)
_MATCH_ARGS = (
    "u1[::1], u8[::1], u4[::1], u4[::1], b1, u2[::1], i8, i8, i8, i8, "
    + _TABLE
    + ", "
    + _TABLE
    + ", i4[::1], {idx}[::1], {idx}[::1], i8[::1]"
)

AOT_EXPORTS = {
    "rehash": f"i8({_TABLE}, {_TABLE}, i8)",
    "kmalloc_keys": f"i8(u1[::1], u4[::1], u4[::1], i8, i8, {_TABLE}, i8[::1])",
    "classify": "i8(u1[::1], u8[::1], i8, i8, b1, i8, u2[::1], i8[::1])",
    "resolve_kmalloc": f"i8(i8[::1], u4[::1], u4[::1], {_TABLE}, i4[::1])",
    "match_pointers_i4": "i8(" + _MATCH_ARGS.format(idx="i4") + ")",
    "match_pointers_i8": "i8(" + _MATCH_ARGS.format(idx="i8") + ")",
    "live_at_end": f"i8({_TABLE}, b1[::1])",
    "pop_runs_i4": "i8(" + _POP_ARGS.format(idx="i4") + ")",
    "pop_runs_i8": "i8(" + _POP_ARGS.format(idx="i8") + ")",
    "count_keys": "i8(i4[::1], i8[::1])",
    "fill_groups_i4": "i8(i4[::1], i8[::1], i4[::1])",
    "fill_groups_i8": "i8(i4[::1], i8[::1], i8[::1])",
}
