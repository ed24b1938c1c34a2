"""Compiled kernels of plan building (``analysis.tracereplay``): the cache grouping, one pass
over a cache's events that finds its objects and matched frees (or one pass over the table
that groups and does so for every cache), the unseen-free and sheaf-run links, and the merge
that emits a plan window's commands already in (time, sequence) order.

Nothing imports this module but :mod:`sheaftune.compiled` (and tests): ``tracereplay`` gets the
kernels from ``compiled.kernels("sheaftune.analysis._plan_kernels")``, the ahead-of-time build of
``AOT_EXPORTS`` (numba is not imported) or, failing that, this module under numba's JIT. The
kernels allocate nothing (``_nrt=False``): every output and scratch array comes from the caller,
with the exact dtypes of the signatures. Event index arrays come in two widths, like the
``Normalized`` arrays they mirror: ``int32`` (``*_i4`` exports) and, on tables of 2**31 rows or
more, ``int64`` (``*_i8``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sheaftune import gfp as _gfp
from sheaftune.analysis._plan_layout import (
    ST_ALLOCS,
    ST_BEFORE,
    ST_LEN,
    ST_LIVE,
    ST_MATCHED,
    ST_MIXED,
    ST_OTHER,
    ST_SIZE,
    ST_SIZED,
    ST_UNSEEN,
)
from sheaftune.events import Op
from sheaftune.model.plan import Cmd

_kjit = njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
_inline = njit(cache=True, nogil=True, inline="always", _nrt=False)  # type: ignore[call-overload]

_OP_ALLOC = int(Op.KMEM_CACHE_ALLOC)
_OP_KMALLOC = int(Op.KMALLOC)
_DIRECT_RECLAIM = int(_gfp.__GFP_DIRECT_RECLAIM)
_ALLOC = int(Cmd.ALLOC)
_FREE = int(Cmd.FREE)
_KFREE_RCU = int(Cmd.KFREE_RCU)
_RCU_GP = int(Cmd.RCU_GP)
_PREFILL = int(Cmd.PREFILL)
_ALLOC_FROM_SHEAF = int(Cmd.ALLOC_FROM_SHEAF)
_RETURN_SHEAF = int(Cmd.RETURN_SHEAF)


@_inline
def _lower_bound(a, lo, hi, x):  # type: ignore[no-untyped-def]
    """First position in a[lo:hi] (sorted) whose value is >= x (hi if none)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@_inline
def _find_back(a, n, x):  # type: ignore[no-untyped-def]
    """Position of x in a[:n] (sorted), searched from the end (a free's allocation is usually
    recent), or -1."""
    hi = n
    step = 1
    lo = hi - step
    while lo > 0 and a[lo] > x:
        hi = lo
        step *= 2
        lo = hi - step
    if lo < 0:
        lo = 0
    p = _lower_bound(a, lo, hi, x)
    if p < n and a[p] == x:
        return p
    return -1


@_inline
def _find_fwd(a, lo, n, x):  # type: ignore[no-untyped-def]
    """Position of x in a[lo:n] (sorted), searched from the start (a reuse is usually soon
    after the allocation it reveals the free of), or -1."""
    step = 1
    hi = lo + step
    while hi < n and a[hi - 1] < x:
        lo = hi
        step *= 2
        hi = lo + step
    if hi > n:
        hi = n
    p = _lower_bound(a, lo, hi, x)
    if p < n and a[p] == x:
        return p
    return -1


@_kjit
def group_by_key(key, nkeys, starts, rows):  # type: ignore[no-untyped-def]
    """Counting sort of row indices by ``key`` (0..nkeys-1; other values are left out):
    ``rows[starts[k]:starts[k + 1]]`` are the rows of key k in row order (``starts`` has
    nkeys + 1 entries, ``rows`` room for every row). Returns the number of rows grouped."""
    n = len(key)
    for k in range(nkeys + 1):
        starts[k] = 0
    for i in range(n):
        k = key[i]
        if 0 <= k < nkeys:
            starts[k + 1] += 1
    return _place_rows(key, nkeys, starts, rows)


@_kjit
def _place_rows(key, nkeys, starts, rows):  # type: ignore[no-untyped-def]
    """The counting sort's second half: ``starts[k + 1]`` holds key k's row count; turn the
    counts into starts and write each row's index at its key's place."""
    n = len(key)
    for k in range(nkeys):
        starts[k + 1] += starts[k]
    # fill through starts[k] (each ends at the next key's start), then shift them back
    for i in range(n):
        k = key[i]
        if 0 <= k < nkeys:
            rows[starts[k]] = i
            starts[k] += 1
    for k in range(nkeys, 0, -1):
        starts[k] = starts[k - 1]
    starts[0] = 0
    return starts[nkeys]


@_inline
def _scan_event(  # type: ignore[no-untyped-def]
    e, op, ptr, bytes_alloc, alloc_of, reused_by, live_at_end, base, allocs, matched, mslot,
    st, k, recent, mask,
):  # fmt: skip
    """``scan_cache``'s step for event e of cache k, whose counters are ``st[k]`` (``ST_*``)
    and whose allocations, matched frees and their slots go to ``allocs``, ``matched`` and
    ``mslot`` from ``base`` on. ``recent[x & mask]``: the slot of the last allocation at an
    event index x modulo the table's length (checked before it is trusted)."""
    o = op[e]
    if o == _OP_ALLOC or o == _OP_KMALLOC:
        size = np.int64(bytes_alloc[e])
        if st[k, ST_SIZED] == 0:
            st[k, ST_SIZE] = size
        elif size != st[k, ST_SIZE]:
            st[k, ST_MIXED] = 1
        st[k, ST_SIZED] += 1
        if ptr[e] != 0:  # not a failed allocation
            na = st[k, ST_ALLOCS]
            allocs[base + na] = e
            recent[e & mask] = na
            st[k, ST_ALLOCS] = na + 1
            if reused_by[e] >= 0:
                st[k, ST_UNSEEN] += 1
            if live_at_end[e]:
                st[k, ST_LIVE] += 1
    elif ptr[e] != 0:  # (a free of NULL frees nothing)
        src = alloc_of[e]
        if src < 0:
            st[k, ST_BEFORE] += 1
        else:
            # the allocation precedes the free: among the cache's allocations if it is its own
            na = st[k, ST_ALLOCS]
            j = recent[src & mask]
            if not (0 <= j < na and allocs[base + j] == src):
                j = _find_back(allocs[base : base + na], na, src)
            if j >= 0:
                nm = st[k, ST_MATCHED]
                matched[base + nm] = e
                mslot[base + nm] = j
                st[k, ST_MATCHED] = nm + 1
            else:
                st[k, ST_OTHER] += 1


@_kjit
def group_and_scan(  # type: ignore[no-untyped-def]
    key, op, ptr, bytes_alloc, alloc_of, reused_by, live_at_end, nkeys,
    starts, rows, allocs, matched, mslot, st, recent, pos,
):  # fmt: skip
    """``group_by_key`` and every key's ``scan_cache`` in one pass over the table in time
    order: key k's rows go to ``rows[starts[k]:starts[k + 1]]``, its allocations and matched
    frees (with their slots) to the same range of ``allocs``, ``matched`` and ``mslot``, its
    counters to ``st[k]`` (``ST_*``), exactly what ``scan_cache`` of those rows gives.

    One pass reads each column once, where a scan per cache reads most of the table's cache
    lines again for every large cache. ``recent`` (scratch, a power of two long) is shared by
    the keys: an allocation's event index is unique, so a slot found there is checked against
    the freeing key's own allocations. ``pos``: scratch, one per key. Returns the number of
    rows grouped."""
    n = len(key)
    for k in range(nkeys + 1):
        starts[k] = 0
    for i in range(n):
        k = key[i]
        if 0 <= k < nkeys:
            starts[k + 1] += 1
    for k in range(nkeys):
        starts[k + 1] += starts[k]
        pos[k] = starts[k]
        for x in range(ST_LEN):
            st[k, x] = 0
    mask = len(recent) - 1
    for e in range(n):
        k = key[e]
        if not (0 <= k < nkeys):
            continue
        rows[pos[k]] = e
        pos[k] += 1
        _scan_event(e, op, ptr, bytes_alloc, alloc_of, reused_by, live_at_end, starts[k],
                    allocs, matched, mslot, st, k, recent, mask)  # fmt: skip
    return starts[nkeys]


@_kjit
def slot_size(rows, lo, hi, op, bytes_alloc, st):  # type: ignore[no-untyped-def]
    """The allocations' sizes among rows[lo:hi]: st = [allocations, first size, 1 if sizes
    differ], carried over chunks."""
    for p in range(lo, hi):
        e = rows[p]
        o = op[e]
        if o == _OP_ALLOC or o == _OP_KMALLOC:
            s = np.int64(bytes_alloc[e])
            if st[0] == 0:
                st[1] = s
            elif s != st[1]:
                st[2] = 1
            st[0] += 1
    return st[0]


@_kjit
def scan_cache(  # type: ignore[no-untyped-def]
    rows, lo, hi, op, ptr, bytes_alloc, alloc_of, reused_by, live_at_end, allocs, matched, mslot,
    st, recent,
):  # fmt: skip
    """One cache's rows[lo:hi] (in time order, after rows[:lo]): allocations that returned an
    object go to ``allocs`` (their slot is their position there), frees of those objects to
    ``matched`` with the object's slot in ``mslot``; ``st`` (``ST_*``) counts them and the frees
    skipped (object allocated before the trace, or as another cache), the unseen frees and
    the objects live at the end, and does ``slot_size``'s work on the way. Returns the
    allocations so far.

    ``recent`` (scratch, a power of two long, need not be initialised) remembers the slot of
    the last allocation at each event index modulo its length: a free's allocation is found
    there, checked, without a search unless another allocation took its place since.
    """
    mask = len(recent) - 1
    state = st.reshape((1, ST_LEN))  # (the cache's state is row 0 of the helper's table)
    for p in range(lo, hi):
        _scan_event(rows[p], op, ptr, bytes_alloc, alloc_of, reused_by, live_at_end, 0,
                    allocs, matched, mslot, state, 0, recent, mask)  # fmt: skip
    return st[ST_ALLOCS]


@_kjit
def link_unseen(allocs, reused_by, kf_at, f_r, f_slot, recent):  # type: ignore[no-untyped-def]
    """The kfree_rcu of each unseen free, by the reallocation that reveals it: ``kf_at[j]`` is
    the slot whose object allocs[j] reuses (-1: none); a reuse by another cache (not in
    ``allocs``) goes to ``f_r``/``f_slot`` instead, in slot order. Returns how many went there.
    ``recent``: scratch as ``scan_cache``'s (a walk from the last allocation back remembers
    the later ones)."""
    na = len(allocs)
    mask = len(recent) - 1
    nf = 0
    for i in range(na - 1, -1, -1):
        kf_at[i] = -1
        u = allocs[i]
        r = reused_by[u]
        if r >= 0:
            j = recent[r & mask]
            if not (i < j < na and allocs[j] == r):
                j = _find_fwd(allocs, i + 1, na, r)
            if j >= 0:
                kf_at[j] = i
            else:
                f_r[nf] = r
                f_slot[nf] = i
                nf += 1
        recent[u & mask] = i
    # (found walking back: put them in slot order)
    for x in range(nf // 2):
        y = nf - 1 - x
        f_r[x], f_r[y] = f_r[y], f_r[x]
        f_slot[x], f_slot[y] = f_slot[y], f_slot[x]
    return nf


@_kjit
def merge_unseen(allocs, kf_at, f_r, f_slot, kf_r, kf_slot):  # type: ignore[no-untyped-def]
    """``link_unseen``'s two lists (``f_r`` sorted) merged into one by reuse event: the
    kfree_rcu stream (``kf_r`` anchors, ``kf_slot`` objects). Returns its length."""
    na = len(allocs)
    nf = len(f_r)
    n = 0
    f = 0
    for j in range(na):
        if kf_at[j] < 0:
            continue
        e = allocs[j]
        while f < nf and f_r[f] < e:
            kf_r[n] = f_r[f]
            kf_slot[n] = f_slot[f]
            n += 1
            f += 1
        kf_r[n] = e
        kf_slot[n] = kf_at[j]
        n += 1
    while f < nf:
        kf_r[n] = f_r[f]
        kf_slot[n] = f_slot[f]
        n += 1
        f += 1
    return n


@_kjit
def sheaf_edges(allocs, pop_rows, pop_run, is_pop, fr, lr, lr_run, last):  # type: ignore[no-untyped-def]
    """Prefilled sheaves from the pops (``pop_run``: the run of each, runs numbered by first
    pop): ``is_pop`` marks the allocation each pop is (the next one if the pop failed),
    ``fr[r]`` is run r's first pop, ``lr``/``lr_run`` the runs' last pops in time order
    (``last``: scratch, one per run). Returns -1 if a pop follows every allocation."""
    na = len(allocs)
    nruns = len(fr)
    for r in range(nruns):
        fr[r] = -1
        last[r] = -1
    for j in range(na):
        is_pop[j] = False
    i = 0
    for k in range(len(pop_rows)):
        p = pop_rows[k]
        while i < na and allocs[i] < p:
            i += 1
        if i == na:
            return -1
        is_pop[i] = True
        r = pop_run[k]
        if fr[r] < 0:
            fr[r] = p
        last[r] = k
    s = 0
    for k in range(len(pop_rows)):
        r = pop_run[k]
        if last[r] == k:
            lr[s] = pop_rows[k]
            lr_run[s] = r
            s += 1
    return 0


@_inline
def _put(out, n, t, cmd, cpu, a, b, c, seq):  # type: ignore[no-untyped-def]
    """Write command n into ``out`` (the plan's columns ts, cmd, cpu, a, b, c, and the
    sequences when that array is not empty); returns n + 1."""
    out[0][n] = t
    out[1][n] = cmd
    out[2][n] = cpu
    out[3][n] = a
    out[4][n] = b
    out[5][n] = c
    if len(out[6]):
        out[6][n] = seq
    return n + 1


@_kjit
def emit(  # type: ignore[no-untyped-def]
    ts, cpu, gfp, node,
    allocs, a0, a1, is_pop,
    pop_rows, pop_run, p0, p1,
    fr, bound, f0, f1,
    lr, lr_run, l0, l1,
    matched, mslot, m0, m1,
    kf_r, kf_slot, k0, k1,
    gps, gp_anchor, g0, g1,
    o_ts, o_cmd, o_cpu, o_a, o_b, o_c, o_seq,
):  # fmt: skip
    """The commands anchored at the events of one window (each stream's window is [x0, x1) of
    its own arrays), in the plan's order: by time, then sequence (2 * event, -1 for a prefill
    or kfree_rcu before its event, +1 for a sheaf return after it; -1 for a grace period), then
    in the order prefill, alloc_from_sheaf, return_sheaf, alloc, free, kfree_rcu, rcu_gp.

    Every command but a grace period carries its anchor's time, so with the table in time
    order, walking the anchors in order is that order, except where a return at event e and a
    prefill at event e + 1 share a time (the prefill goes first); a grace period goes before
    the events at or after its time (``gp_anchor``). Returns the number of commands n, or
    -1 - n when the times it emitted were out of order (a table not in time order): then
    ``o_seq`` (if as long as the outputs, else unused) holds each command's sequence, and the
    caller sorts.
    """
    out = (o_ts, o_cmd, o_cpu, o_a, o_b, o_c, o_seq)
    big = np.int64(2**62)
    ok = True
    last_ts = np.int64(-(2**63))
    n = 0
    # each stream's position and next anchor (big: exhausted)
    i = a0
    k = p0
    q = f0
    s = l0
    j = m0
    h = k0
    g = g0
    na = np.int64(allocs[i]) if i < a1 else big
    np_ = np.int64(pop_rows[k]) if k < p1 else big
    nf = np.int64(fr[q]) if q < f1 else big
    nl = np.int64(lr[s]) if s < l1 else big
    nm = np.int64(matched[j]) if j < m1 else big
    nk = np.int64(kf_r[h]) if h < k1 else big
    ng = np.int64(gp_anchor[g]) if g < g1 else big
    pend = False
    pe = np.int64(0)
    psheaf = np.int64(0)
    has_pops = len(is_pop) > 0
    while True:
        # Most anchors are a plain allocation or a matched free and nothing else: the next
        # of the two is written without a branch on which it is (they alternate as a coin
        # flip would, and a mispredicted branch cost as much as the rest of the command).
        e = min(na, nm)
        if e < min(np_, nf, nl, nk) and ng > e and not pend:
            ia = np.int64(na == e)  # 1: the allocation (never both: an event is one or the other)
            # (an allocation that is a pop is the pop stream's: the general path below)
            pop = np.int64(is_pop[i]) if has_pops and i < a1 else np.int64(0)
            if not ia & pop:
                t = ts[e]
                ok &= t >= last_ts
                last_ts = t
                sf = np.int64(mslot[j]) if j < m1 else np.int64(0)
                rec = np.int64((gfp[e] & _DIRECT_RECLAIM) != 0)
                n = _put(
                    out, n, t, _FREE + ia * (_ALLOC - _FREE), cpu[e], sf + ia * (i - sf),
                    ia * rec, ia * np.int64(node[e]), 2 * e,
                )  # fmt: skip
                i += ia
                j += 1 - ia
                na = np.int64(allocs[i]) if i < a1 else big
                nm = np.int64(matched[j]) if j < m1 else big
                continue
        e = min(e, np_, nf, nl, nk)
        if e == big:
            break
        te = ts[e]
        if pend and not (nf == e and e == pe + 1 and te == ts[pe]):
            t = ts[pe]
            ok &= t >= last_ts
            last_ts = t
            n = _put(out, n, t, _RETURN_SHEAF, cpu[pe], psheaf, 0, 0, 2 * pe + 1)
            pend = False
        while ng <= e:
            t = gps[g]
            # (no grace period can tie with the first event: its time is after it)
            ok &= t > last_ts and e != 0
            last_ts = t
            n = _put(out, n, t, _RCU_GP, 0, 0, 0, 0, -1)
            g += 1
            ng = np.int64(gp_anchor[g]) if g < g1 else big
        ok &= te >= last_ts
        last_ts = te
        if nf == e:
            n = _put(out, n, te, _PREFILL, cpu[e], q, bound[q], 1, 2 * e - 1)
            q += 1
            nf = np.int64(fr[q]) if q < f1 else big
        if pend:  # (a return at the previous event, at the same time as this prefill)
            n = _put(out, n, te, _RETURN_SHEAF, cpu[pe], psheaf, 0, 0, 2 * pe + 1)
            pend = False
        if nk == e:
            u = allocs[kf_slot[h]]
            n = _put(out, n, te, _KFREE_RCU, cpu[u], kf_slot[h], 0, 0, 2 * e - 1)
            h += 1
            nk = np.int64(kf_r[h]) if h < k1 else big
        if np_ == e:
            # the object slot is the allocation's: the first at or after the pop
            n = _put(out, n, te, _ALLOC_FROM_SHEAF, cpu[e], i, pop_run[k], 0, 2 * e)
            k += 1
            np_ = np.int64(pop_rows[k]) if k < p1 else big
        if na == e:
            if len(is_pop) == 0 or not is_pop[i]:
                b = 1 if (gfp[e] & _DIRECT_RECLAIM) != 0 else 0
                n = _put(out, n, te, _ALLOC, cpu[e], i, b, node[e], 2 * e)
            i += 1
            na = np.int64(allocs[i]) if i < a1 else big
        elif nm == e:
            n = _put(out, n, te, _FREE, cpu[e], mslot[j], 0, 0, 2 * e)
            j += 1
            nm = np.int64(matched[j]) if j < m1 else big
        if nl == e:
            pend = True
            pe = e
            psheaf = np.int64(lr_run[s])
            s += 1
            nl = np.int64(lr[s]) if s < l1 else big
    if pend:
        t = ts[pe]
        ok &= t >= last_ts
        last_ts = t
        n = _put(out, n, t, _RETURN_SHEAF, cpu[pe], psheaf, 0, 0, 2 * pe + 1)
    while g < g1:
        t = gps[g]
        ok &= t > last_ts
        last_ts = t
        n = _put(out, n, t, _RCU_GP, 0, 0, 0, 0, -1)
        g += 1
    return n if ok else -1 - n


# Aliases: one export per index width (pycc compiles each name with its own signature).
group_by_key_i8 = group_by_key
slot_size_i8 = slot_size
scan_cache_i8 = scan_cache
link_unseen_i8 = link_unseen
merge_unseen_i8 = merge_unseen
sheaf_edges_i8 = sheaf_edges
emit_i8 = emit

_V = "i8[::1]"


def _sigs(x: str) -> dict[str, str]:
    """The exports for event index arrays of type ``x`` (``i4`` or ``i8``)."""
    ix = f"{x}[::1]"
    sfx = "" if x == "i4" else "_i8"
    # fmt: off
    emit_args = (
        _V, "u2[::1]", "u4[::1]", "i2[::1]",  # table: ts, cpu, gfp, node
        ix, "i8", "i8", "b1[::1]",  # allocs, span, is_pop
        ix, ix, "i8", "i8",  # pops, their runs, span
        ix, _V, "i8", "i8",  # prefills (first pops), bounds, span
        ix, ix, "i8", "i8",  # returns (last pops), their runs, span
        ix, ix, "i8", "i8",  # matched frees, slots, span
        ix, ix, "i8", "i8",  # kfree_rcu anchors, slots, span
        _V, _V, "i8", "i8",  # grace periods, anchors, span
        _V, "u1[::1]", "u2[::1]", _V, _V, _V, _V,  # plan columns (ts, cmd, cpu, a, b, c), seq
    )
    # fmt: on
    return {
        f"group_by_key{sfx}": f"i8(i4[::1], i8, i8[::1], {ix})",
        f"slot_size{sfx}": f"i8({ix}, i8, i8, u1[::1], u4[::1], i8[::1])",
        f"scan_cache{sfx}": (
            f"i8({ix}, i8, i8, u1[::1], u8[::1], u4[::1], {ix}, {ix}, b1[::1], {ix}, {ix}, {ix}, "
            f"i8[::1], {ix})"
        ),
        f"link_unseen{sfx}": f"i8({ix}, {ix}, {ix}, {ix}, {ix}, {ix})",
        f"merge_unseen{sfx}": f"i8({ix}, {ix}, {ix}, {ix}, {ix}, {ix})",
        f"sheaf_edges{sfx}": f"i8({ix}, {ix}, {ix}, b1[::1], {ix}, {ix}, {ix}, i8[::1])",
        f"emit{sfx}": "i8(" + ", ".join(emit_args) + ")",
    }


#: What ``sheaftune.compiled`` exports ahead of time (attribute -> numba signature).
AOT_EXPORTS = {
    **_sigs("i4"),
    **_sigs("i8"),
    "group_and_scan": (
        "i8(i4[::1], u1[::1], u8[::1], u4[::1], i4[::1], i4[::1], b1[::1], i8, i8[::1], "
        "i4[::1], i4[::1], i4[::1], i4[::1], i8[:, ::1], i4[::1], i8[::1])"
    ),
}
