"""The compiled passes of generation (numba): per object, per record, per row.

Imported only lazily (by :mod:`sheaftune.synth.generate` and the samplers of
:mod:`sheaftune.synth.spec`), so ``sheaftune --help`` never loads numba.

- :func:`stream_extent` and :func:`fill_stream` expand a stream's operations into its records
  (allocations and frees) and their packed sort keys, straight into the merged arrays;
  :func:`sort_key` is the reference they match, and what the lexsort fallback's tests use.
- :func:`walk`, the one sequential step, goes through the sorted records in time order: it
  hands out object addresses the way an allocator with per-CPU sheaves reuses them (an object
  freed on CPU c is the next one allocated on c: a per-(cache, CPU) LIFO list), picks the trace
  window (the first ``target`` visible records at or after time 0), writes its rows' EventTable
  columns and counts, per cache, what the window holds, visible or not;
  :func:`place_pointers` turns slots into addresses once every cache's slot count is known.
- :func:`count_hidden` counts a bulk user's objects that have no record; :func:`op_window`,
  :func:`op_keys` and :func:`op_rows` build the OpTable; :func:`choose` and :func:`fates` turn
  uniform draws into weighted choices and fates.
"""

from __future__ import annotations

import numba
import numpy as np

#: Columns of the per-cache counts the walk returns.
COUNT_NAMES = (
    "alloc_visible",
    "alloc_bulk",
    "free_visible",
    "free_kfree_rcu",
    "free_bulk",
    "free_of_unseen_alloc",
)


#: Fates of an operation's objects (as in :mod:`sheaftune.synth.generate`).
VISIBLE, RCU, BULK, NEVER = 0, 1, 2, 3
#: A per-stream constant (site, bytes) that says "per record: see the record's array".
PER_RECORD = -2
#: A kept row's ``ptr`` holds ``cache << SLOT_BITS | slot`` until :func:`place_pointers`.
SLOT_BITS = 40


@numba.njit(cache=True, nogil=True)
def stream_extent(op_t, k, life_ns, fate, spacing, fspacing, rcu_add, hide):  # type: ignore[no-untyped-def]  # noqa: E501
    """(allocation records, free records, earliest and latest time) of one stream's records.

    ``k`` is the objects of each operation (empty: one each); ``hide`` drops the operations
    whose objects are not freed visibly (a bulk user's, which no event shows). The times are
    those :func:`fill_stream` computes, float for float.
    """
    has_k = len(k) > 0
    n_a = 0
    n_f = 0
    tmin = np.inf
    tmax = -np.inf
    for i in range(len(op_t)):
        ki = k[i] if has_k else 1
        fi = np.int64(fate[i])
        if ki <= 0 or (hide and fi != VISIBLE):
            continue
        n_a += ki
        t = op_t[i]
        last = t + max(ki - 1, 0) * spacing
        tmin = min(tmin, t + 0 * spacing)
        tmax = max(tmax, last)
        if fi != NEVER:
            n_f += ki
            first = (last + life_ns[i]) + 0 * fspacing
            f = (last + life_ns[i]) + (ki - 1) * fspacing
            if fi == RCU:
                first = first + rcu_add
                f = f + rcu_add
            tmin = min(tmin, first)
            tmax = max(tmax, f)
    return n_a, n_f, tmin, tmax


@numba.njit(cache=True, nogil=True)
def fill_stream(  # type: ignore[no-untyped-def]
    op_t,
    k,
    life_ns,
    fate,
    op_cpu,
    op_fcpu,
    op_site,
    site_c,
    op_fsite,
    fsite_c,
    obj_bytes,
    spacing,
    fspacing,
    rcu_add,
    hide,
    follow_kind,
    tag_base,
    alloc_visible,
    a0,
    f0,
    n_alloc,
    packed,
    ncpus,
    base_us,
    idx_bits,
    lead,
    key,
    t_ns,
    cpu,
    follow,
    tag,
    site,
    nbytes,
    f_obj,
):
    """Expand one stream's operations into its records, straight into the merged arrays.

    Allocation ``j`` of an operation is at ``op_t + j * spacing``; its free (unless the fate
    is "never") at ``op_t + (k - 1) * spacing + lifetime + j * fspacing``, plus ``rcu_add``
    for kfree_rcu. Allocation records go at ``a0...`` (record index = object id), frees at
    ``n_alloc + f0...``. ``packed``: write each record's sort key (exactly
    :func:`sort_key`'s, ``lead`` carrying the burst/prefill leader from stream to stream);
    otherwise the times, CPUs and follow flags the lexsort fallback sorts. ``tag``, ``site``,
    ``nbytes`` (per allocation) and ``f_obj`` are as :func:`walk` reads them.
    """
    has_k = len(k) > 0
    per_obj = len(obj_bytes) > 0
    per_site = len(op_site) > 0
    per_fsite = len(op_fsite) > 0
    lead_us = lead[0]
    lead_sub = lead[1]
    a = a0
    fr = f0
    ob = 0
    for i in range(len(op_t)):
        ki = k[i] if has_k else 1
        fi = np.int64(fate[i])
        if hide and fi != VISIBLE:
            ob += max(ki, 0)
            continue
        t = op_t[i]
        fbase = (t + max(ki - 1, 0) * spacing) + life_ns[i]
        dies = fi != NEVER
        atag = tag_base | (np.int64(alloc_visible) << 3) | (fi << 1)
        ftag = tag_base | (np.int64(fi == VISIBLE) << 3) | (fi << 1) | 1
        c = op_cpu[i]
        fc = op_fcpu[i]
        asite = op_site[i] if per_site else site_c
        fsite = op_fsite[i] if per_fsite else fsite_c
        for j in range(ki):
            at = t + j * spacing
            tag[a] = atag
            if per_site:
                site[a] = asite
            if per_obj:
                nbytes[a] = obj_bytes[ob]
            tu = np.int64(np.floor(at / 1000.0))
            au = tu + 1
            fol = follow_kind if j > 0 else 0
            if packed:
                sub = np.int64((at - tu * 1000.0) * (SUB / 1000.0))
                if sub < 0:
                    sub = 0
                elif sub > SUB - 1:
                    sub = SUB - 1
                if fol == 2:
                    tu = lead_us
                    sub = lead_sub
                elif fol == 1:
                    sub = lead_sub if tu == lead_us else 0
                else:
                    lead_us = tu
                    lead_sub = sub
                key[a] = ((((tu - base_us) * ncpus + c) * SUB + sub) << idx_bits) | a
            else:
                t_ns[a] = at
                cpu[a] = c
                follow[a] = fol
            if dies:
                ft = fbase + j * fspacing
                if fi == RCU:
                    ft = ft + rcu_add
                r = n_alloc + fr
                tag[r] = ftag
                if per_fsite:
                    site[r] = fsite
                f_obj[fr] = a
                if packed:
                    fu = np.int64(np.floor(ft / 1000.0))
                    if fu < au:
                        fu = au
                    key[r] = ((((fu - base_us) * ncpus + fc) * SUB + (SUB - 1)) << idx_bits) | r
                else:
                    t_ns[r] = ft
                    cpu[r] = fc
                fr += 1
            a += 1
            ob += 1
    lead[0] = lead_us
    lead[1] = lead_sub


@numba.njit(cache=True, nogil=True)
def count_hidden(op_t, k, life_ns, fate, spacing, fspacing, rcu_add, t1):  # type: ignore[no-untyped-def]  # noqa: E501
    """(allocations, kfree_rcu frees, bulk frees) of a bulk user's hidden objects whose
    microsecond is in ``[0, t1]``: the ones :func:`fill_stream` left out with ``hide``."""
    has_k = len(k) > 0
    n_a = 0
    n_rcu = 0
    n_bulk = 0
    for i in range(len(op_t)):
        fi = np.int64(fate[i])
        if fi == VISIBLE:
            continue
        ki = k[i] if has_k else 1
        t = op_t[i]
        fbase = (t + max(ki - 1, 0) * spacing) + life_ns[i]
        for j in range(ki):
            us = np.floor((t + j * spacing) / 1000.0)
            if us >= 0 and us <= t1:
                n_a += 1
            if fi != NEVER:
                ft = fbase + j * fspacing
                if fi == RCU:
                    ft = ft + rcu_add
                us = np.floor(ft / 1000.0)
                if us >= 0 and us <= t1:
                    if fi == RCU:
                        n_rcu += 1
                    else:
                        n_bulk += 1
    return n_a, n_rcu, n_bulk


@numba.njit(cache=True, nogil=True)
def walk(  # type: ignore[no-untyped-def]
    key,
    idx_bits,
    base_us,
    order,
    t_us,
    cpu,
    tag,
    f_obj,
    n_alloc,
    cache_of_stream,
    node_of,
    ncaches,
    ncpus,
    site,
    nbytes,
    ts_offset_ns,
    s_op_alloc,
    s_op_free,
    s_gfp,
    s_comm,
    s_asite,
    s_fsite,
    s_bytes,
    pid_base,
    c_size,
    c_id,
    o_ts,
    o_cpu,
    o_op,
    o_cache,
    o_ptr,
    o_breq,
    o_balloc,
    o_gfp,
    o_site,
    o_pid,
    o_comm,
    seen_cpu,
):
    """Walk the records in time order, writing the kept rows' EventTable columns.

    Returns (rows kept, µs of the first and last kept row, counts[cache, COUNT_NAMES],
    remote counts, slots per cache). The window is the first ``len(o_ts)`` visible records at
    or after time 0. ``o_ptr`` gets ``cache << SLOT_BITS | slot``: the addresses depend on
    every cache's slot count, known only at the end (:func:`place_pointers`).

    The order is either ``key`` (sorted packed keys, see :func:`sort_key`, decoded here so no
    full-size order, time and CPU arrays are ever built) or, when ``key`` is empty, the arrays
    ``order``, ``t_us`` and ``cpu`` of the lexsort fallback.

    ``tag`` per record (unsorted): stream << 4 | visible << 3 | fate << 1 | is_free; fate 1 is
    kfree_rcu, 2 bulk. A record index below ``n_alloc`` is the allocation of object = index; a
    free record r names its object in ``f_obj[r - n_alloc]``. ``site`` is per record,
    ``nbytes`` per allocation; ``s_*`` are per-stream tables, ``c_*`` per-cache ones (``c_id``
    maps the internal cache of kfree(NULL) calls to NO_CACHE). ``seen_cpu`` (zeros, one per
    allocation record; np.zeros, so pages never written cost nothing) gets 1 + the CPU of each
    allocation the window shows whose object is freed visibly.
    """
    packed = len(key) > 0
    n = len(key) if packed else len(order)
    target = len(o_ts)
    mask = (np.int64(1) << idx_bits) - 1
    head = np.full(ncaches * ncpus, -1, dtype=np.int32)
    nxt = np.empty(n_alloc, dtype=np.int32)  # free-list links, indexed by slot id
    slot_local = np.empty(n_alloc, dtype=np.int32)
    next_local = np.zeros(ncaches, dtype=np.int64)
    slot_of = np.empty(n_alloc, dtype=np.int32)
    counts = np.zeros((ncaches, 6), dtype=np.int64)
    remote = np.zeros(3, dtype=np.int64)  # matched frees, on another CPU, on another node
    nslots = 0
    nkeep = 0
    first_us = np.int64(0)
    last_us = np.int64(0)
    i = 0
    while i < n and nkeep < target:
        if packed:
            k = key[i]
            r = k & mask
            rest = (k >> idx_bits) // SUB
            tq = rest // ncpus
            p = rest - tq * ncpus
            tu = tq + base_us
        else:
            r = order[i]
            p = cpu[i]
            tu = t_us[i]
        tg = tag[r]
        is_free = (tg & 1) != 0
        visible = (tg & 8) != 0
        c = cache_of_stream[tg >> 4]
        lst = c * ncpus + p
        if not is_free:
            o = r
            s = head[lst]
            if s >= 0:
                head[lst] = nxt[s]
            else:
                s = nslots
                nslots += 1
                slot_local[s] = next_local[c]
                next_local[c] += 1
            slot_of[o] = s
        else:
            o = f_obj[r - n_alloc]
            s = slot_of[o]
            nxt[s] = head[lst]
            head[lst] = s
        if tu >= 0:
            if visible:
                if nkeep == 0:
                    first_us = tu
                last_us = tu
                st = tg >> 4
                o_ts[nkeep] = tu * 1000 + ts_offset_ns
                o_cpu[nkeep] = p
                o_cache[nkeep] = c_id[c]
                o_ptr[nkeep] = (np.uint64(c) << np.uint64(SLOT_BITS)) | np.uint64(slot_local[s])
                o_comm[nkeep] = s_comm[st]
                o_pid[nkeep] = pid_base + p + ncpus * s_comm[st]
                if not is_free:
                    v = s_asite[st]
                    o_site[nkeep] = site[r] if v == PER_RECORD else v
                    b = s_bytes[st]
                    o_breq[nkeep] = nbytes[r] if b == PER_RECORD else b
                    o_op[nkeep] = s_op_alloc[st]
                    o_balloc[nkeep] = c_size[c]
                    o_gfp[nkeep] = s_gfp[st]
                else:
                    v = s_fsite[st]
                    o_site[nkeep] = site[r] if v == PER_RECORD else v
                    o_op[nkeep] = s_op_free[st]
                    o_breq[nkeep] = 0
                    o_balloc[nkeep] = 0
                    o_gfp[nkeep] = 0
                nkeep += 1
            if not is_free:
                if visible:
                    counts[c, 0] += 1
                    if (tg & 6) == 0:  # freed visibly: its free will ask where it was allocated
                        seen_cpu[o] = p + 1
                else:
                    counts[c, 1] += 1
            elif visible:
                counts[c, 2] += 1
                a = seen_cpu[o] - 1
                if a >= 0:
                    remote[0] += 1
                    if a != p:
                        remote[1] += 1
                        if node_of[a] != node_of[p]:
                            remote[2] += 1
                else:
                    counts[c, 5] += 1
            else:
                fate = (tg >> 1) & 3
                if fate == 1:
                    counts[c, 3] += 1
                elif fate == 2:
                    counts[c, 4] += 1
        i += 1
    return nkeep, first_us, last_us, counts, remote, next_local


@numba.njit(cache=True, nogil=True)
def place_pointers(ptr, c_base, c_stride):  # type: ignore[no-untyped-def]
    """Turn the walk's ``cache << SLOT_BITS | slot`` into addresses: base + slot * stride."""
    low = (np.uint64(1) << np.uint64(SLOT_BITS)) - np.uint64(1)
    for j in range(len(ptr)):
        v = np.uint64(ptr[j])
        c = np.int64(v >> np.uint64(SLOT_BITS))
        ptr[j] = c_base[c] + (v & low) * np.uint64(c_stride[c])


@numba.njit(cache=True, nogil=True)
def op_window(t_ns, t0_us, t1_us):  # type: ignore[no-untyped-def]
    """The slice ``[lo, hi)`` of time-ordered operations whose µs is in ``[t0_us, t1_us]``."""

    def first(bound):  # type: ignore[no-untyped-def]
        lo, hi = 0, len(t_ns)
        while lo < hi:
            mid = (lo + hi) // 2
            if np.floor(t_ns[mid] / 1000.0) < bound:
                lo = mid + 1
            else:
                hi = mid
        return lo

    return first(t0_us), first(t1_us + 1)


@numba.njit(cache=True, nogil=True)
def op_keys(t_ns, cpu, t0_us, ncpus, bits):  # type: ignore[no-untyped-def]
    """Sort keys of operations: (µs since ``t0_us``, CPU, position), packed in one int64."""
    n = len(t_ns)
    key = np.empty(n, np.int64)
    for i in range(n):
        tu = np.int64(np.floor(t_ns[i] / 1000.0))
        key[i] = (((tu - t0_us) * ncpus + cpu[i]) << bits) | i
    return key


@numba.njit(cache=True, nogil=True)
def op_rows(  # type: ignore[no-untyped-def]
    order,
    t_ns,
    cpu,
    upper,
    used,
    site,
    stream,
    cache_of_stream,
    comm_of_stream,
    pid_base,
    ncpus,
    ts_offset_us,
    o_ts,
    o_cpu,
    o_cache,
    o_upper,
    o_used,
    o_pid,
    o_site,
):
    """The OpTable columns of the operations in ``order`` (``stream`` per operation, or one)."""
    one = len(stream) == 1
    for j in range(len(order)):
        i = order[j]
        st = stream[0] if one else stream[i]
        p = np.int64(cpu[i])
        o_ts[j] = (np.int64(np.floor(t_ns[i] / 1000.0)) + ts_offset_us) * 1000
        o_cpu[j] = p
        o_cache[j] = cache_of_stream[st]
        o_upper[j] = upper[i]
        o_used[j] = used[i]
        o_pid[j] = pid_base + p + ncpus * comm_of_stream[st]
        o_site[j] = site[i]


@numba.njit(cache=True, nogil=True)
def choose(u, cdf, values, out):  # type: ignore[no-untyped-def]
    """``out[i] = values[searchsorted(cdf, u[i], side="right")]``; ``out`` may be ``u``'s
    memory (each element is read before it is written)."""
    last = len(values) - 1
    for i in range(len(u)):
        x = u[i]
        j = 0
        while j < len(cdf) and cdf[j] <= x:
            j += 1
        out[i] = values[min(j, last)]


@numba.njit(cache=True, nogil=True)
def fates(u, rcu, bulk, never):  # type: ignore[no-untyped-def]
    """Each operation's fate from a uniform draw: below ``rcu`` kfree_rcu, then bulk, never,
    visible (the thresholds are cumulative)."""
    out = np.empty(len(u), np.int8)
    for i in range(len(u)):
        x = u[i]
        if x < rcu:
            out[i] = RCU
        elif x < bulk:
            out[i] = BULK
        elif x < never:
            out[i] = NEVER
        else:
            out[i] = VISIBLE
    return out


@numba.njit(cache=True, nogil=True)
def free_cpus(  # type: ignore[no-untyped-def]
    cpu,
    u,
    pick,
    far_draw,
    remote_cpu,
    remote_node,
    nodes,
    node_of,
    start,
    count,
    next_choice,
    ncpus,
):
    """The CPU that frees each operation's objects (int32), from its draws: ``u`` below
    ``remote_node`` frees on a CPU (``pick``) of another node (``far_draw``, one per such
    operation, in order; none with one node); below ``remote_cpu`` on another CPU of its own
    node (the next one, or one by ``pick``; the next CPU of the machine when alone on its
    node); otherwise on the allocating CPU."""
    out = np.empty(len(cpu), np.int32)
    fi = 0
    for i in range(len(cpu)):
        c = np.int64(cpu[i])
        x = u[i]
        if x < remote_node:
            if nodes > 1:
                other = (node_of[c] + 1 + far_draw[fi]) % nodes
                fi += 1
                out[i] = start[other] + np.int64(pick[i] * count[other])
            else:
                out[i] = c
        elif x < remote_cpu:
            own = node_of[c]
            size = count[own]
            first = start[own]
            if size < 2:
                out[i] = (c + 1) % ncpus
            elif next_choice:
                out[i] = first + (c - first + 1) % size
            else:
                r = np.int64(pick[i] * (size - 1))
                out[i] = first + (r + 1 if r >= c - first else r)
        else:
            out[i] = c
    return out


#: Sub-microsecond order within one CPU's microsecond, in steps of 100 ns.
SUB = 10


@numba.njit(cache=True, nogil=True)
def sort_key(t_ns, cpu, follow, f_obj, n_alloc, ncpus, base_us, idx_bits):  # type: ignore[no-untyped-def]  # noqa: E501
    """One int64 per record: (µs, CPU, 100-ns step, record index), packed most significant first.

    A free lands strictly after its allocation's microsecond and after every allocation of its
    own microsecond on that CPU. The later objects of a burst (``follow`` 1) take the step of
    the burst's first object within its microsecond and the first step of the next ones, so a
    task's burst mostly stays together; the pops of one prefill operation (``follow`` 2) take
    the first pop's microsecond and step, so they are never interleaved, as in a real trace
    where one task does them inside one tree operation.
    """
    n = len(t_ns)
    key = np.empty(n, np.int64)
    lead_us = np.int64(0)
    lead_sub = np.int64(0)
    for r in range(n):
        t = t_ns[r]
        tu = np.int64(np.floor(t / 1000.0))
        if r < n_alloc:
            sub = np.int64((t - tu * 1000.0) * (SUB / 1000.0))
            if sub < 0:
                sub = 0
            elif sub > SUB - 1:
                sub = SUB - 1
            if follow[r] == 2:
                tu = lead_us
                sub = lead_sub
            elif follow[r] == 1:
                sub = lead_sub if tu == lead_us else 0
            else:
                lead_us = tu
                lead_sub = sub
        else:
            au = np.int64(np.floor(t_ns[f_obj[r - n_alloc]] / 1000.0)) + 1
            if tu < au:
                tu = au
            sub = SUB - 1
        key[r] = ((((tu - base_us) * ncpus + cpu[r]) * SUB + sub) << idx_bits) | r
    return key
