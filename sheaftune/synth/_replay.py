"""The one sequential step of generation: walk the merged records in time order (numba).

Imported only by :mod:`sheaftune.synth.generate`, so ``sheaftune --help`` never loads numba.
The walk hands out object addresses the way an allocator with per-CPU sheaves reuses them
(an object freed on CPU c is the next one allocated on c: a per-(cache, CPU) LIFO list), picks
the trace window (the first ``target`` visible records at or after time 0), and counts, per
cache, what the window holds, visible or not.
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
    target,
):
    """Walk the records in time order; returns (record, µs and CPU of each kept row, slot of
    each kept row, counts[cache, COUNT_NAMES], remote counts, slots per cache).

    The order is either ``key`` (sorted packed keys, see :func:`sort_key`, decoded here so no
    full-size order, time and CPU arrays are ever built) or, when ``key`` is empty, the arrays
    ``order``, ``t_us`` and ``cpu`` of the lexsort fallback.

    ``tag`` per record (unsorted): stream << 4 | visible << 3 | fate << 1 | is_free; fate 1 is
    kfree_rcu, 2 bulk. A record index below ``n_alloc`` is the allocation of object = index; a
    free record r names its object in ``f_obj[r - n_alloc]``.
    """
    packed = len(key) > 0
    n = len(key) if packed else len(order)
    mask = (np.int64(1) << idx_bits) - 1
    head = np.full(ncaches * ncpus, -1, dtype=np.int64)
    nxt = np.full(n_alloc, -1, dtype=np.int64)  # free-list links, indexed by slot id
    slot_local = np.zeros(n_alloc, dtype=np.int64)
    next_local = np.zeros(ncaches, dtype=np.int64)
    slot_of = np.full(n_alloc, -1, dtype=np.int64)
    seen = np.zeros(n_alloc, dtype=np.bool_)
    alloc_cpu = np.zeros(n_alloc, dtype=np.int32)
    keep = np.empty(target, dtype=np.int64)
    keep_t = np.empty(target, dtype=np.int64)
    keep_cpu = np.empty(target, dtype=np.int32)
    keep_slot = np.empty(target, dtype=np.int64)
    counts = np.zeros((ncaches, 6), dtype=np.int64)
    remote = np.zeros(3, dtype=np.int64)  # matched frees, on another CPU, on another node
    nslots = 0
    nkeep = 0
    i = 0
    while i < n and nkeep < target:
        if packed:
            k = key[i]
            r = k & mask
            rest = (k >> idx_bits) // SUB
            p = rest % ncpus
            tu = rest // ncpus + base_us
        else:
            r = order[i]
            p = cpu[i]
            tu = t_us[i]
        tg = tag[r]
        is_free = (tg & 1) != 0
        visible = (tg & 8) != 0
        fate = (tg >> 1) & 3
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
            alloc_cpu[o] = p
        else:
            o = f_obj[r - n_alloc]
            s = slot_of[o]
            nxt[s] = head[lst]
            head[lst] = s
        if tu >= 0:
            if visible:
                keep[nkeep] = r
                keep_t[nkeep] = tu
                keep_cpu[nkeep] = p
                keep_slot[nkeep] = slot_local[s]
                nkeep += 1
            if not is_free:
                if visible:
                    counts[c, 0] += 1
                    seen[o] = True
                else:
                    counts[c, 1] += 1
            elif visible:
                counts[c, 2] += 1
                if seen[o]:
                    remote[0] += 1
                    a = alloc_cpu[o]
                    if a != p:
                        remote[1] += 1
                        if node_of[a] != node_of[p]:
                            remote[2] += 1
                else:
                    counts[c, 5] += 1
            elif fate == 1:
                counts[c, 3] += 1
            elif fate == 2:
                counts[c, 4] += 1
        i += 1
    return (
        keep[:nkeep],
        keep_t[:nkeep],
        keep_cpu[:nkeep],
        keep_slot[:nkeep],
        counts,
        remote,
        next_local,
    )


@numba.njit(cache=True, nogil=True)
def build_columns(  # type: ignore[no-untyped-def]
    keep,
    keep_t,
    keep_cpu,
    keep_slot,
    tag,
    site,
    nbytes,
    n_alloc,
    ts_offset_ns,
    s_cache,
    s_op_alloc,
    s_op_free,
    s_gfp,
    s_comm,
    pid_base,
    ncpus,
    c_base,
    c_stride,
    c_size,
    c_id,
):
    """The EventTable columns of the kept records, in their final dtypes (one pass).

    ``s_*`` are per-stream tables, ``c_*`` per-cache tables (``c_id`` maps the internal cache
    of kfree(NULL) calls to NO_CACHE); ``site`` is per record, ``nbytes`` per allocation
    record.
    """
    n = len(keep)
    ts = np.empty(n, np.int64)
    ocpu = np.empty(n, np.uint16)
    op = np.empty(n, np.uint8)
    cache_id = np.empty(n, np.int32)
    ptr = np.empty(n, np.uint64)
    breq = np.empty(n, np.uint32)
    balloc = np.empty(n, np.uint32)
    gfp = np.empty(n, np.uint32)
    node = np.full(n, -1, np.int16)
    site_id = np.empty(n, np.int32)
    pid = np.empty(n, np.int32)
    comm = np.empty(n, np.int32)
    for j in range(n):
        r = keep[j]
        tg = tag[r]
        st = tg >> 4
        c = s_cache[st]
        p = keep_cpu[j]
        ts[j] = (keep_t[j] * 1000) + ts_offset_ns
        ocpu[j] = p
        cache_id[j] = c_id[c]
        ptr[j] = c_base[c] + np.uint64(keep_slot[j]) * np.uint64(c_stride[c])
        site_id[j] = site[r]
        comm[j] = s_comm[st]
        pid[j] = pid_base + p + ncpus * s_comm[st]
        if (tg & 1) == 0:
            op[j] = s_op_alloc[st]
            breq[j] = nbytes[r]
            balloc[j] = c_size[c]
            gfp[j] = s_gfp[st]
        else:
            op[j] = s_op_free[st]
            breq[j] = 0
            balloc[j] = 0
            gfp[j] = 0
    return ts, ocpu, op, cache_id, ptr, breq, balloc, gfp, node, site_id, pid, comm


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
