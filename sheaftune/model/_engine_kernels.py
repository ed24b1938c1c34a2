"""The fast engine's compiled kernels: the sheaf and slab layers and the plan interpreter.

Only the interpreter ``exec_plan`` and the one-pass ``plan_stats`` are called from Python
(``AOT_EXPORTS``); ``sheaftune.compiled`` builds them ahead of time with ``numba.pycc`` (every
other function here is inlined or linked into them), so a run imports the extension and not
numba. With ``SHEAFTUNE_AOT=0``, or when no build is
possible, ``fast`` imports this module and numba compiles it just in time (``cache=True``).
Nothing but ``sheaftune.compiled`` (and tests) should import this module. See ``fast`` for the
state layout and the driver; the layout constants live in ``_engine_layout``.
"""

import numpy as np
from numba import njit

from sheaftune.model._engine_layout import (
    ALLOC_CPU_SHEAF,
    ALLOC_FASTPATH,
    ALLOC_FROM_PARTIAL,
    ALLOC_NODE_MISMATCH,
    ALLOC_REFILL,
    ALLOC_SLAB,
    ALLOC_SLOWPATH,
    BARN_GET,
    BARN_GET_FAIL,
    BARN_PUT,
    BARN_PUT_FAIL,
    BATCH,
    C_ALLOC,
    C_ALLOC_BULK,
    C_ALLOC_FROM_SHEAF,
    C_FREE,
    C_FREE_BULK,
    C_KFREE_RCU,
    C_PREFILL,
    C_RCU_GP,
    C_REFILL_SHEAF,
    C_RETURN_SHEAF,
    C_SHRINK,
    CPU_PARTIAL_ALLOC,
    CPU_PARTIAL_DRAIN,
    CPU_PARTIAL_FREE,
    CPU_PARTIAL_NODE,
    CPUSLAB_FLUSH,
    DEACTIVATE_BYPASS,
    DEACTIVATE_EMPTY,
    DEACTIVATE_FULL,
    DEACTIVATE_REMOTE_FREES,
    DEACTIVATE_TO_HEAD,
    DEACTIVATE_TO_TAIL,
    FREE_ADD_PARTIAL,
    FREE_CPU_SHEAF,
    FREE_FASTPATH,
    FREE_FROZEN,
    FREE_RCU_SHEAF,
    FREE_RCU_SHEAF_FAIL,
    FREE_REMOVE_PARTIAL,
    FREE_SLAB,
    FREE_SLOWPATH,
    G_CRQ_N,
    G_NSLABS,
    G_OVFREE_N,
    G_PSEQ,
    G_RFREE_N,
    G_RQ_HEAD,
    G_RQ_TAIL,
    G_SFREE_N,
    G_STATUS,
    G_T_FIRST,
    G_T_LAST,
    G_T_SET,
    K_BULK_FREE,
    K_FREE,
    K_KFREE_RCU,
    K_POP_EMPTY,
    K_POP_NONE,
    K_REFILL_NONE,
    ND_BHELD,
    ND_EH,
    ND_EN,
    ND_FH,
    ND_FN,
    ND_INT,
    ND_MAX,
    ND_PH,
    ND_PN,
    ND_PT,
    ND_SINCE,
    ND_VAL,
    NUMA_NO_NODE,
    OV_BASE,
    OV_CAP,
    OV_PSEQ,
    OV_SZ,
    P_CAP,
    P_CPSLABS,
    P_CPUPARTIAL,
    P_CPUS,
    P_HASPCS,
    P_MAXEMPTY,
    P_MAXFULL,
    P_MINPARTIAL,
    P_NODES,
    P_OPS,
    P_V618,
    PC_CFN,
    PC_CPH,
    PC_CPN,
    PC_CSLAB,
    PC_INT,
    PC_MAIN,
    PC_MAX,
    PC_RCU,
    PC_SINCE,
    PC_SPARE,
    PC_VAL,
    PS_HIST,
    PS_LEN,
    PS_MAX_BULK,
    PS_MAX_CPU,
    PS_MAX_NODE,
    PS_MAX_PREFILL,
    PS_MAX_SIZE,
    PS_N_CMDS,
    PS_NONE,
    PS_OPS,
    PS_PREFILLS,
    SH_NODE,
    SH_NX,
    SH_PSEQ,
    SH_RCPU,
    SH_RKIND,
    SH_SZ,
    SHEAF_ALLOC,
    SHEAF_FLUSH,
    SHEAF_FREE,
    SHEAF_HEADROOM,
    SHEAF_PREFILL_FAST,
    SHEAF_PREFILL_OVERSIZE,
    SHEAF_PREFILL_SLOW,
    SHEAF_REFILL,
    SHEAF_RETURN_FAST,
    SHEAF_RETURN_SLOW,
    SHRINK_PROMOTE_MAX,
    SL_INUSE,
    SL_NEXT,
    SL_NFREE,
    SL_NODE,
    SL_OWNER,
    SL_PREV,
    SL_SID,
    SL_WHERE,
    ST_DONE,
    ST_ERROR,
    ST_GROW,
    W_CPU_PARTIAL,
    W_CPU_SLAB,
    W_FREED,
    W_FULL,
    W_NODE_PARTIAL,
    X_ALLOC_FROM_SHEAF,
    X_ALLOC_FROM_SHEAF_NULL,
    X_BARN_EMPTY_MAX,
    X_BARN_FULL_MAX,
    X_BARN_LOCK,
    X_HELD,
    X_HELD_MAX,
    X_KFREE_RCU_CLASSIC,
    X_LIST_LOCK,
    X_OVERSIZE_OBJECTS,
    X_SHEAVES_LIVE,
    X_SHEAVES_LIVE_MAX,
    X_SLABS_LIVE,
    X_SLABS_SHRUNK,
    X_SPARE_SWAP,
)

#: No NRT: every array is allocated by ``_State`` in Python, and without NRT a call passing
#: arrays costs no atomic reference-count updates (they dominated the replay's time before).
_jit = njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
#: For the few small functions called once per object or per command on common paths: numba
#: inlines them into their callers (its IR inliner), so a call does not pass every array
#: argument's fields (about nine words each) on the stack.
_jit_inline = njit(cache=True, nogil=True, _nrt=False, inline="always")  # type: ignore[call-overload]


# ------------------------------------------------------------------ random (R4 gate)
@_jit
def mt_next(mt):
    """One tempered 32-bit MT19937 output (CPython ``genrand_uint32``)."""
    if mt[624] >= 624:
        for kk in range(624):
            y = (mt[kk] & 0x80000000) | (mt[(kk + 1) % 624] & 0x7FFFFFFF)
            v = mt[(kk + 397) % 624] ^ (y >> 1)
            if y & 1:
                v ^= 0x9908B0DF
            mt[kk] = v
        mt[624] = 0
    y = mt[mt[624]]
    mt[624] += 1
    y ^= y >> 11
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    y ^= y >> 18
    return y & 0xFFFFFFFF


@_jit
def mt_random(mt):
    """CPython ``random.random()`` on the MT19937 state ``mt[:624]``, index ``mt[624]``."""
    a = mt_next(mt) >> 5
    b = mt_next(mt) >> 6
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0)


@_jit
def remote_gate_skips(P, mt):
    """R4/A6 gate: ``q > 0 and rng.random() < q`` with ``q`` stored as float bits in mt[625]."""
    q = mt[625:626].view(np.float64)[0]
    return q > 0 and mt_random(mt) < q


# ------------------------------------------------------------------ slab layer, shared
@_jit
def obj_node(obj, P, slm, sidr):
    return slm[sidr[obj // P[P_OPS]], SL_NODE]


@_jit
def list_lock(g):
    g[X_LIST_LOCK] += 1


@_jit
def new_slab_raw(node, P, g, slm, slf, sidr, rfree):
    """``new_slab``: a fresh slab on ``node``, freelist in slot order (head = slot 0)."""
    ops = P[P_OPS]
    sid = g[G_NSLABS]
    g[G_NSLABS] += 1
    g[G_RFREE_N] -= 1
    row = rfree[g[G_RFREE_N]]
    sidr[sid] = row
    slm[row, SL_NODE] = node
    slm[row, SL_INUSE] = 0
    slm[row, SL_WHERE] = W_FULL
    slm[row, SL_OWNER] = -1
    slm[row, SL_PREV] = -1
    slm[row, SL_NEXT] = -1
    slm[row, SL_NFREE] = ops
    slm[row, SL_SID] = sid
    base = sid * ops
    for i in range(ops):
        slf[row, i] = base + ops - 1 - i
    g[ALLOC_SLAB] += 1
    g[X_SLABS_LIVE] += 1
    return row


@_jit
def discard(row, g, slm, sidr, rfree):
    slm[row, SL_WHERE] = W_FREED
    slm[row, SL_NFREE] = 0
    g[X_SLABS_LIVE] -= 1
    sidr[slm[row, SL_SID]] = -1
    rfree[g[G_RFREE_N]] = row
    g[G_RFREE_N] += 1


@_jit
def remove_partial(node, row, nd, slm):
    p = slm[row, SL_PREV]
    n = slm[row, SL_NEXT]
    if p >= 0:
        slm[p, SL_NEXT] = n
    else:
        nd[node, ND_PH] = n
    if n >= 0:
        slm[n, SL_PREV] = p
    else:
        nd[node, ND_PT] = p
    nd[node, ND_PN] -= 1
    slm[row, SL_PREV] = -1
    slm[row, SL_NEXT] = -1
    slm[row, SL_WHERE] = W_FULL


@_jit
def pop_partial_head(node, nd, slm):
    row = nd[node, ND_PH]
    remove_partial(node, row, nd, slm)
    return row


@_jit
def add_partial(node, row, tail, nd, slm):
    if tail:
        t = nd[node, ND_PT]
        slm[row, SL_PREV] = t
        slm[row, SL_NEXT] = -1
        if t >= 0:
            slm[t, SL_NEXT] = row
        else:
            nd[node, ND_PH] = row
        nd[node, ND_PT] = row
    else:
        h = nd[node, ND_PH]
        slm[row, SL_PREV] = -1
        slm[row, SL_NEXT] = h
        if h >= 0:
            slm[h, SL_PREV] = row
        else:
            nd[node, ND_PT] = row
        nd[node, ND_PH] = row
    nd[node, ND_PN] += 1
    slm[row, SL_WHERE] = W_NODE_PARTIAL


@_jit
def build_detached_freelist(p, size, P):
    """B5 ``build_detached_freelist`` on ``p[:size]`` in place: the taken objects end up in
    ``p[same:size]``, the chain (push order) is that range read backwards."""
    # (objects, sizes and indices are >= 0: unsigned arithmetic and indexing skip the sign
    # fix-ups of a floor division and of negative indices)
    ops = P[P_OPS]
    size -= 1
    sid = np.int64(np.uint64(p[np.uint64(size)]) // np.uint64(ops))
    # o // ops == sid exactly when lo <= o < lo + ops (ops > 0): no division per object
    lo = sid * ops
    # Whether the next object is the slab's is as good as random: the scan decides it without
    # a branch (a taken object swaps with p[same - 1], one that is not is written back in
    # place), and only the lookahead's end, once per group, branches.
    uops = np.uint64(ops)
    lookahead = 3
    same = size
    while size:
        size -= 1
        o = p[np.uint64(size)]
        m = np.int64(np.uint64(o - lo) < uops)  # lo <= o < lo + ops
        same -= m
        t = p[np.uint64(same)]
        p[np.uint64(size)] = t if m else o
        p[np.uint64(same)] = o if m else t
        lookahead -= 1 - m
        if not lookahead:
            break
    return same, sid


@_jit
def shrink_node(node, P, g, nd, slm, sidr, rfree, bk):
    """L2 partial-list shrink (Slub73.shrink_node): discard free slabs, promote slabs with
    1..32 free objects to the head ordered by free count (``list_move`` to a bucket's head, so
    reverse scan order within one count), the rest after them in scan order. ``bk`` holds the
    bucket heads (``bk[f]``), then the rest's head and tail (``bk[33]``, ``bk[34]``)."""
    list_lock(g)
    ops = P[P_OPS]
    for f in range(35):
        bk[f] = -1
    r = nd[node, ND_PH]
    while r >= 0:
        nxt = slm[r, SL_NEXT]
        fr = slm[r, SL_NFREE]
        if fr == ops:
            slm[r, SL_NEXT] = -1
            g[X_SLABS_SHRUNK] += 1
            discard(r, g, slm, sidr, rfree)
        elif fr <= SHRINK_PROMOTE_MAX:
            f = fr if fr > 0 else SHRINK_PROMOTE_MAX  # the reference's promote[-1]
            slm[r, SL_NEXT] = bk[f]
            bk[f] = r
        else:
            slm[r, SL_NEXT] = -1
            if bk[34] >= 0:
                slm[bk[34], SL_NEXT] = r
            else:
                bk[33] = r
            bk[34] = r
        r = nxt
    nd[node, ND_PH] = -1
    nd[node, ND_PT] = -1
    nd[node, ND_PN] = 0
    for f in range(1, SHRINK_PROMOTE_MAX + 2):
        r = bk[f] if f <= SHRINK_PROMOTE_MAX else bk[33]
        while r >= 0:
            nxt = slm[r, SL_NEXT]
            add_partial(node, r, True, nd, slm)
            r = nxt


# ------------------------------------------------------------------ slab layer, 7.3
@_jit
def s73_refill_node(node, k, got, out, P, g, nd, slm, slf):
    """R1 + R2: whole slabs from the partial head until their free objects cover what is
    missing; the overshoot slab (always the last taken) goes to the tail."""
    if nd[node, ND_PN] == 0:
        return got
    want = k - got
    list_lock(g)
    total = 0
    ops = P[P_OPS]
    while nd[node, ND_PN] > 0 and total < want:
        row = pop_partial_head(node, nd, slm)
        nf = slm[row, SL_NFREE]
        total += nf
        n_take = min(k - got, nf)
        r = np.uint64(row)
        for _ in range(n_take):
            nf -= 1
            out[np.uint64(got)] = slf[r, np.uint64(nf)]
            got += 1
        slm[r, SL_NFREE] = nf
        slm[r, SL_INUSE] = ops - nf
        if nf:
            list_lock(g)
            add_partial(node, row, True, nd, slm)
    return got


@_jit
def s73_alloc_from_new_slab(node, count, got, out, P, g, nd, slm, slf, sidr, rfree):
    row = new_slab_raw(node, P, g, slm, slf, sidr, rfree)
    nf = slm[row, SL_NFREE]
    n_take = min(count, P[P_OPS])
    for _ in range(n_take):
        nf -= 1
        out[got] = slf[row, nf]
        got += 1
    slm[row, SL_NFREE] = nf
    slm[row, SL_INUSE] = n_take
    if nf:
        list_lock(g)
        add_partial(node, row, False, nd, slm)
    return got


@_jit
def s73_refill_objects(cpu, k, out, P, cn, g, nd, slm, slf, sidr, rfree, mt):
    """A5 ``refill_objects(min=max=k)`` into ``out[:k]``; returns the count (always k)."""
    got = 0
    if k <= 0:
        return got
    local = cn[cpu]
    got = s73_refill_node(local, k, got, out, P, g, nd, slm, slf)
    if got >= k:
        return got
    nodes = P[P_NODES]
    if nodes > 1 and not remote_gate_skips(P, mt):
        for i in range(nodes):
            n = (local + i) % nodes
            if nd[n, ND_PN] > P[P_MINPARTIAL]:
                got = s73_refill_node(n, k, got, out, P, g, nd, slm, slf)
                if got >= k:
                    return got
    while got < k:
        got = s73_alloc_from_new_slab(local, k - got, got, out, P, g, nd, slm, slf, sidr, rfree)
    return got


@_jit
def s73_get_from_partial_node(node, g, nd, slm, slf):
    if nd[node, ND_PN] == 0:
        return -1
    list_lock(g)
    row = nd[node, ND_PH]
    nf = slm[row, SL_NFREE] - 1
    obj = slf[row, nf]
    slm[row, SL_NFREE] = nf
    slm[row, SL_INUSE] += 1
    if nf == 0:
        remove_partial(node, row, nd, slm)
    return obj


@_jit
def s73_new_slab_one(node, P, g, nd, slm, slf, sidr, rfree):
    row = new_slab_raw(node, P, g, slm, slf, sidr, rfree)
    nf = slm[row, SL_NFREE] - 1
    obj = slf[row, nf]
    slm[row, SL_NFREE] = nf
    slm[row, SL_INUSE] = 1
    if nf:
        list_lock(g)
        add_partial(node, row, False, nd, slm)
    return obj


@_jit
def s73_alloc_one(cpu, node, P, cn, g, nd, slm, slf, sidr, rfree, mt):
    """A6 ``___slab_alloc``: one object, never through a sheaf. stat ALLOC_SLOWPATH."""
    g[ALLOC_SLOWPATH] += 1
    if node != NUMA_NO_NODE:
        obj = s73_get_from_partial_node(node, g, nd, slm, slf)
        if obj < 0:
            obj = s73_new_slab_one(node, P, g, nd, slm, slf, sidr, rfree)
        return obj
    local = cn[cpu]
    obj = s73_get_from_partial_node(local, g, nd, slm, slf)
    nodes = P[P_NODES]
    if obj < 0 and nodes > 1 and not remote_gate_skips(P, mt):
        for i in range(nodes):
            n = (local + i) % nodes
            if nd[n, ND_PN] > P[P_MINPARTIAL]:
                obj = s73_get_from_partial_node(n, g, nd, slm, slf)
                if obj >= 0:
                    break
    if obj < 0:
        obj = s73_new_slab_one(local, P, g, nd, slm, slf, sidr, rfree)
    return obj


@_jit_inline
def s73_slab_free(row, p, lo, hi, P, g, nd, slm, slf, sidr, rfree):
    """F5 ``__slab_free`` of the chain ``p[hi-1], p[hi-2], ..., p[lo]`` (push order)."""
    r = np.uint64(row)  # (a live slab's row: unsigned indexing skips the wrap-around)
    node = slm[r, SL_NODE]
    nf = slm[r, SL_NFREE]
    was_full = nf == 0
    on_partial = slm[r, SL_WHERE] == W_NODE_PARTIAL
    for j in range(hi - 1, lo - 1, -1):
        slf[r, np.uint64(nf)] = p[np.uint64(j)]
        nf += 1
    slm[r, SL_NFREE] = nf
    inuse = slm[r, SL_INUSE] - (hi - lo)
    slm[r, SL_INUSE] = inuse
    if not (inuse == 0 or was_full):
        return
    if not on_partial and not was_full:
        return
    list_lock(g)
    if inuse == 0 and nd[node, ND_PN] >= P[P_MINPARTIAL]:
        if on_partial:
            remove_partial(node, row, nd, slm)
            g[FREE_REMOVE_PARTIAL] += 1
        g[FREE_SLAB] += 1
        discard(row, g, slm, sidr, rfree)
    elif was_full:
        add_partial(node, row, True, nd, slm)
        g[FREE_ADD_PARTIAL] += 1


# ------------------------------------------------------------------ slab layer, 6.18
@_jit
def s618_load_freelist(cpu, row, pc, slm, slf, cfree):
    """Move the slab's freelist to the CPU freelist (``get_freelist``/``freeze_slab`` +
    ``_load_freelist``) and pop its head."""
    nf = slm[row, SL_NFREE]
    for i in range(nf - 1):
        cfree[cpu, i] = slf[row, i]
    obj = slf[row, nf - 1]
    slm[row, SL_NFREE] = 0
    pc[cpu, PC_CFN] = nf - 1
    return obj


@_jit
def s618_put_partials(head, P, g, nd, slm, sidr, rfree):
    """``__put_partials`` of the linked rows from ``head``."""
    last_node = -1
    row = head
    while row >= 0:
        nxt = slm[row, SL_NEXT]
        node = slm[row, SL_NODE]
        if node != last_node:
            list_lock(g)
            last_node = node
        if slm[row, SL_INUSE] == 0 and nd[node, ND_PN] >= P[P_MINPARTIAL]:
            g[DEACTIVATE_EMPTY] += 1
            discard(row, g, slm, sidr, rfree)
            g[FREE_SLAB] += 1
        else:
            add_partial(node, row, True, nd, slm)
            slm[row, SL_OWNER] = -1
            g[FREE_ADD_PARTIAL] += 1
        row = nxt


@_jit
def s618_put_cpu_partial(cpu, row, drain, P, g, pc, nd, slm, sidr, rfree):
    old = pc[cpu, PC_CPH]
    to_put = -1
    if pc[cpu, PC_CPN] > 0 and drain and pc[cpu, PC_CPN] >= P[P_CPSLABS]:
        to_put = old
        old = -1
        pc[cpu, PC_CPN] = 0
    slm[row, SL_NEXT] = old
    slm[row, SL_PREV] = -1
    pc[cpu, PC_CPH] = row
    pc[cpu, PC_CPN] += 1
    slm[row, SL_WHERE] = W_CPU_PARTIAL
    slm[row, SL_OWNER] = cpu
    if to_put >= 0:
        s618_put_partials(to_put, P, g, nd, slm, sidr, rfree)
        g[CPU_PARTIAL_DRAIN] += 1


@_jit
def s618_deactivate_slab(cpu, row, P, g, pc, nd, slm, slf, cfree, sidr, rfree):
    """``deactivate_slab`` of ``row`` with the CPU freelist of ``cpu`` as the chain."""
    node = slm[row, SL_NODE]
    tail = False
    nf = slm[row, SL_NFREE]
    if nf:
        g[DEACTIVATE_REMOTE_FREES] += 1
        tail = True
    n = pc[cpu, PC_CFN]
    for i in range(n):
        slf[row, nf] = cfree[cpu, i]
        nf += 1
    pc[cpu, PC_CFN] = 0
    slm[row, SL_NFREE] = nf
    slm[row, SL_INUSE] -= n
    slm[row, SL_WHERE] = W_FULL
    slm[row, SL_OWNER] = -1
    if slm[row, SL_INUSE] == 0 and nd[node, ND_PN] >= P[P_MINPARTIAL]:
        g[DEACTIVATE_EMPTY] += 1
        discard(row, g, slm, sidr, rfree)
        g[FREE_SLAB] += 1
    elif nf:
        list_lock(g)
        add_partial(node, row, tail, nd, slm)
        if tail:
            g[DEACTIVATE_TO_TAIL] += 1
        else:
            g[DEACTIVATE_TO_HEAD] += 1
    else:
        g[DEACTIVATE_FULL] += 1


@_jit
def s618_get_partial_node(cpu, node, P, g, pc, nd, slm, sidr, rfree):
    if nd[node, ND_PN] == 0:
        return -1
    list_lock(g)
    first = -1
    moved = 0
    while nd[node, ND_PN] > 0:
        row = pop_partial_head(node, nd, slm)
        if first < 0:
            first = row
            g[ALLOC_FROM_PARTIAL] += 1
            if P[P_CPUPARTIAL] == 0:
                break
        else:
            s618_put_cpu_partial(cpu, row, False, P, g, pc, nd, slm, sidr, rfree)
            g[CPU_PARTIAL_NODE] += 1
            moved += 1
            if moved > P[P_CPSLABS] // 2:
                break
    return first


@_jit
def s618_get_partial(cpu, node, P, cn, g, pc, nd, slm, sidr, rfree, mt):
    search = node if node != NUMA_NO_NODE else cn[cpu]
    row = s618_get_partial_node(cpu, search, P, g, pc, nd, slm, sidr, rfree)
    if row >= 0 or node != NUMA_NO_NODE:
        return row
    nodes = P[P_NODES]
    if nodes > 1 and not remote_gate_skips(P, mt):
        for i in range(nodes):
            n = (search + i) % nodes
            if nd[n, ND_PN] > P[P_MINPARTIAL]:
                row = s618_get_partial_node(cpu, n, P, g, pc, nd, slm, sidr, rfree)
                if row >= 0:
                    return row
    return -1


@_jit
def s618_slab_alloc(cpu, node, P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt):
    """``___slab_alloc`` (pre-sheaf SLUB, 6.8+), as ``Slub618._slab_alloc``."""
    g[ALLOC_SLOWPATH] += 1
    row = pc[cpu, PC_CSLAB]
    if row >= 0:
        if not (node == NUMA_NO_NODE or slm[row, SL_NODE] == node):
            g[ALLOC_NODE_MISMATCH] += 1
            pc[cpu, PC_CSLAB] = -1
            s618_deactivate_slab(cpu, row, P, g, pc, nd, slm, slf, cfree, sidr, rfree)
        else:
            if pc[cpu, PC_CFN] > 0:
                pc[cpu, PC_CFN] -= 1
                return cfree[cpu, pc[cpu, PC_CFN]]
            # get_freelist: the slab's remote frees, or unfreeze a slab with none
            slm[row, SL_INUSE] = P[P_OPS]
            if slm[row, SL_NFREE] == 0:
                slm[row, SL_WHERE] = W_FULL
                slm[row, SL_OWNER] = -1
                pc[cpu, PC_CSLAB] = -1
                g[DEACTIVATE_BYPASS] += 1
            else:
                slm[row, SL_WHERE] = W_CPU_SLAB
                g[ALLOC_REFILL] += 1
                return s618_load_freelist(cpu, row, pc, slm, slf, cfree)
    while pc[cpu, PC_CPN] > 0:
        row = pc[cpu, PC_CPH]
        pc[cpu, PC_CPH] = slm[row, SL_NEXT]
        pc[cpu, PC_CPN] -= 1
        slm[row, SL_NEXT] = -1
        if node == NUMA_NO_NODE or slm[row, SL_NODE] == node:
            pc[cpu, PC_CSLAB] = row
            slm[row, SL_OWNER] = cpu
            slm[row, SL_INUSE] = P[P_OPS]
            if slm[row, SL_NFREE] == 0:
                slm[row, SL_WHERE] = W_FULL
                slm[row, SL_OWNER] = -1
            else:
                slm[row, SL_WHERE] = W_CPU_SLAB
            g[CPU_PARTIAL_ALLOC] += 1
            return s618_load_freelist(cpu, row, pc, slm, slf, cfree)
        s618_put_partials(row, P, g, nd, slm, sidr, rfree)
    row = s618_get_partial(cpu, node, P, cn, g, pc, nd, slm, sidr, rfree, mt)
    if row < 0:
        nn = node if node != NUMA_NO_NODE else cn[cpu]
        row = new_slab_raw(nn, P, g, slm, slf, sidr, rfree)
    slm[row, SL_INUSE] = P[P_OPS]
    slm[row, SL_WHERE] = W_CPU_SLAB
    slm[row, SL_OWNER] = cpu
    pc[cpu, PC_CSLAB] = row
    return s618_load_freelist(cpu, row, pc, slm, slf, cfree)


@_jit
def s618_alloc_one(cpu, node, P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt):
    """X4 ``__slab_alloc_node``: the CPU freelist (ALLOC_FASTPATH) or ``___slab_alloc``."""
    row = pc[cpu, PC_CSLAB]
    n = pc[cpu, PC_CFN]
    if n == 0 or row < 0 or not (node == NUMA_NO_NODE or slm[row, SL_NODE] == node):
        return s618_slab_alloc(cpu, node, P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt)
    g[ALLOC_FASTPATH] += 1
    pc[cpu, PC_CFN] = n - 1
    return cfree[cpu, n - 1]


@_jit
def s618_bulk_alloc(cpu, k, out, P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt):
    """X6: objects one by one from the CPU freelist, ``___slab_alloc`` when it is empty."""
    for j in range(k):
        n = pc[cpu, PC_CFN]
        if n == 0:
            out[j] = s618_slab_alloc(
                cpu, NUMA_NO_NODE, P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt
            )
            continue
        pc[cpu, PC_CFN] = n - 1
        out[j] = cfree[cpu, n - 1]
        g[ALLOC_FASTPATH] += 1
    return k


@_jit
def s618_slab_free(cpu, row, p, lo, hi, P, g, pc, nd, slm, slf, sidr, rfree):
    """6.18 ``__slab_free`` of the chain ``p[hi-1] .. p[lo]``."""
    g[FREE_SLOWPATH] += 1
    nf = slm[row, SL_NFREE]
    prior = nf > 0
    was_frozen = slm[row, SL_WHERE] == W_CPU_SLAB
    for j in range(hi - 1, lo - 1, -1):
        slf[row, nf] = p[j]
        nf += 1
    slm[row, SL_NFREE] = nf
    slm[row, SL_INUSE] -= hi - lo
    inuse = slm[row, SL_INUSE]
    node = slm[row, SL_NODE]
    if not (prior and inuse == 0 and not was_frozen):
        if was_frozen:
            g[FREE_FROZEN] += 1
        elif not prior:
            s618_put_cpu_partial(cpu, row, True, P, g, pc, nd, slm, sidr, rfree)
            g[CPU_PARTIAL_FREE] += 1
        return
    list_lock(g)
    if slm[row, SL_WHERE] != W_NODE_PARTIAL:
        return
    if nd[node, ND_PN] >= P[P_MINPARTIAL]:
        remove_partial(node, row, nd, slm)
        g[FREE_REMOVE_PARTIAL] += 1
        g[FREE_SLAB] += 1
        discard(row, g, slm, sidr, rfree)


@_jit_inline
def s618_do_slab_free(cpu, row, p, lo, hi, P, g, pc, nd, slm, slf, cfree, sidr, rfree):
    """X9 ``do_slab_free``: the CPU freelist if ``row`` is the CPU slab, else ``__slab_free``."""
    if row == pc[cpu, PC_CSLAB]:
        n = pc[cpu, PC_CFN]
        for j in range(hi - 1, lo - 1, -1):
            cfree[cpu, n] = p[j]
            n += 1
        pc[cpu, PC_CFN] = n
        g[FREE_FASTPATH] += hi - lo
        return
    s618_slab_free(cpu, row, p, lo, hi, P, g, pc, nd, slm, slf, sidr, rfree)


@_jit
def s618_flush_cpu(cpu, P, g, pc, nd, slm, slf, cfree, sidr, rfree):
    row = pc[cpu, PC_CSLAB]
    if row >= 0:
        pc[cpu, PC_CSLAB] = -1
        s618_deactivate_slab(cpu, row, P, g, pc, nd, slm, slf, cfree, sidr, rfree)
        g[CPUSLAB_FLUSH] += 1
    if pc[cpu, PC_CPN] > 0:
        head = pc[cpu, PC_CPH]
        pc[cpu, PC_CPH] = -1
        pc[cpu, PC_CPN] = 0
        s618_put_partials(head, P, g, nd, slm, sidr, rfree)


# ------------------------------------------------------------------ slab layer, dispatch
@_jit
def slab_alloc_one(cpu, node, P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt):
    if P[P_V618]:
        return s618_alloc_one(cpu, node, P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt)
    return s73_alloc_one(cpu, node, P, cn, g, nd, slm, slf, sidr, rfree, mt)


@_jit
def slab_free_one(cpu, obj, P, g, pc, nd, slm, slf, cfree, sidr, rfree, one):
    """F1 fallback (7.3: ``__slab_free`` + FREE_SLOWPATH; 6.18: ``do_slab_free``)."""
    row = sidr[obj // P[P_OPS]]
    one[0] = obj
    if P[P_V618]:
        s618_do_slab_free(cpu, row, one, 0, 1, P, g, pc, nd, slm, slf, cfree, sidr, rfree)
    else:
        s73_slab_free(row, one, 0, 1, P, g, nd, slm, slf, sidr, rfree)
        g[FREE_SLOWPATH] += 1


@_jit
def slab_free_bulk(cpu, p, size, P, g, pc, nd, slm, slf, cfree, sidr, rfree):
    """B5 ``__kmem_cache_free_bulk`` of ``p[:size]``, destroying ``p`` (the reference frees
    a copy; callers pass arrays they no longer need)."""
    while size:
        hi = size
        size, sid = build_detached_freelist(p, size, P)
        row = sidr[np.uint64(sid)]
        if P[P_V618]:
            s618_do_slab_free(cpu, row, p, size, hi, P, g, pc, nd, slm, slf, cfree, sidr, rfree)
        else:
            s73_slab_free(row, p, size, hi, P, g, nd, slm, slf, sidr, rfree)


@_jit
def slab_bulk_alloc(cpu, k, out, P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt):
    """``__kmem_cache_alloc_bulk`` from slabs into ``out[:k]`` (7.3 ALLOC_SLOWPATH += k)."""
    if P[P_V618]:
        return s618_bulk_alloc(cpu, k, out, P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt)
    got = s73_refill_objects(cpu, k, out, P, cn, g, nd, slm, slf, sidr, rfree, mt)
    g[ALLOC_SLOWPATH] += got
    return got


@_jit
def slab_refill_for_sheaf(cpu, k, out, P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt):
    if P[P_V618]:
        return s618_bulk_alloc(cpu, k, out, P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt)
    return s73_refill_objects(cpu, k, out, P, cn, g, nd, slm, slf, sidr, rfree, mt)


# ------------------------------------------------------------------ sheaf structs
@_jit
def sheaf_new(g, shm, sfree):
    g[G_SFREE_N] -= 1
    s = sfree[g[G_SFREE_N]]
    shm[s, SH_SZ] = 0
    shm[s, SH_NX] = -1
    shm[s, SH_NODE] = -1
    return s


@_jit
def alloc_empty_sheaf(g, shm, sfree):
    g[SHEAF_ALLOC] += 1
    g[X_SHEAVES_LIVE] += 1
    return sheaf_new(g, shm, sfree)


@_jit
def free_empty_sheaf(s, g, sfree):
    g[SHEAF_FREE] += 1
    g[X_SHEAVES_LIVE] -= 1
    sfree[g[G_SFREE_N]] = s
    g[G_SFREE_N] += 1


# ------------------------------------------------------------------ barn
@_jit
def barn_pop_full(node, nd, shm):
    s = nd[node, ND_FH]
    nd[node, ND_FH] = shm[s, SH_NX]
    nd[node, ND_FN] -= 1
    nd[node, ND_BHELD] -= shm[s, SH_SZ]
    return s


@_jit
def barn_pop_empty(node, nd, shm):
    s = nd[node, ND_EH]
    nd[node, ND_EH] = shm[s, SH_NX]
    nd[node, ND_EN] -= 1
    return s


@_jit
def barn_push_full(node, s, nd, shm):
    shm[s, SH_NX] = nd[node, ND_FH]
    nd[node, ND_FH] = s
    nd[node, ND_FN] += 1
    nd[node, ND_BHELD] += shm[s, SH_SZ]


@_jit
def barn_push_empty(node, s, nd, shm):
    shm[s, SH_NX] = nd[node, ND_EH]
    nd[node, ND_EH] = s
    nd[node, ND_EN] += 1


@_jit
def barn_get_empty_sheaf(node, g, nd, shm):
    if nd[node, ND_EN] == 0:
        return -1
    g[X_BARN_LOCK] += 1
    return barn_pop_empty(node, nd, shm)


@_jit
def barn_put_empty_sheaf(node, s, g, nd, shm):
    g[X_BARN_LOCK] += 1
    barn_push_empty(node, s, nd, shm)


@_jit
def barn_put_full_sheaf(node, s, g, nd, shm):
    g[X_BARN_LOCK] += 1
    barn_push_full(node, s, nd, shm)


@_jit
def barn_replace_empty_sheaf(node, empty, g, nd, shm):
    if nd[node, ND_FN] == 0:
        return -1
    g[X_BARN_LOCK] += 1
    full = barn_pop_full(node, nd, shm)
    barn_push_empty(node, empty, nd, shm)
    return full


@_jit
def barn_replace_full_sheaf(node, full, P, g, nd, shm):
    """F3.4: -2 for E2BIG, -3 for ENOMEM, else the empty sheaf."""
    if nd[node, ND_FN] >= P[P_MAXFULL]:
        return -2
    if nd[node, ND_EN] == 0:
        return -3
    g[X_BARN_LOCK] += 1
    empty = barn_pop_empty(node, nd, shm)
    barn_push_full(node, full, nd, shm)
    return empty


# ------------------------------------------------------------------ occupancy
@_jit
def sample_node(n, g, nd):
    if nd[n, ND_FN] > g[X_BARN_FULL_MAX]:
        g[X_BARN_FULL_MAX] = nd[n, ND_FN]
    if nd[n, ND_EN] > g[X_BARN_EMPTY_MAX]:
        g[X_BARN_EMPTY_MAX] = nd[n, ND_EN]
    v = nd[n, ND_BHELD]
    if v > nd[n, ND_MAX]:
        nd[n, ND_MAX] = v
    if g[G_T_SET]:
        now = g[G_T_LAST]
        nd[n, ND_INT] += nd[n, ND_VAL] * (now - nd[n, ND_SINCE])
        nd[n, ND_SINCE] = now
    nd[n, ND_VAL] = v


@_jit
def cpu_held(c, pc, shm):
    v = 0
    for f in (PC_MAIN, PC_SPARE, PC_RCU):
        s = pc[c, f]
        if s >= 0:
            v += shm[s, SH_SZ]
    return v


@_jit
def sample_cpu(c, g, pc, shm):
    v = cpu_held(c, pc, shm)
    if v > pc[c, PC_MAX]:
        pc[c, PC_MAX] = v
    if g[G_T_SET]:
        now = g[G_T_LAST]
        pc[c, PC_INT] += pc[c, PC_VAL] * (now - pc[c, PC_SINCE])
        pc[c, PC_SINCE] = now
    pc[c, PC_VAL] = v


@_jit
def sample_global(P, g):
    if P[P_V618]:
        hit_a = g[ALLOC_CPU_SHEAF]
        hit_f = g[FREE_CPU_SHEAF]
    else:
        hit_a = g[ALLOC_FASTPATH]
        hit_f = g[FREE_FASTPATH]
    held = (
        g[SHEAF_REFILL]
        + hit_f
        + g[FREE_RCU_SHEAF]
        + g[X_OVERSIZE_OBJECTS]
        - hit_a
        - g[SHEAF_FLUSH]
        - g[X_ALLOC_FROM_SHEAF]
    )
    g[X_HELD] = held
    if held > g[X_HELD_MAX]:
        g[X_HELD_MAX] = held
    if g[X_SHEAVES_LIVE] > g[X_SHEAVES_LIVE_MAX]:
        g[X_SHEAVES_LIVE_MAX] = g[X_SHEAVES_LIVE]


@_jit_inline
def sample(cpu, P, cn, g, pc, nd, shm):
    """``_sample(cpu)``: peaks and lazy integrals of ``cpu`` and its node; ``cpu < 0``: of
    every CPU and node."""
    sample_global(P, g)
    if cpu >= 0:
        sample_node(cn[cpu], g, nd)
        sample_cpu(cpu, g, pc, shm)
    else:
        for n in range(P[P_NODES]):
            sample_node(n, g, nd)
        for c in range(P[P_CPUS]):
            sample_cpu(c, g, pc, shm)


# ------------------------------------------------------------------ the engine proper
@_jit
def exec_plan(
    ts,
    cmd,
    cpu,
    a,
    b,
    c,
    aux,
    P,
    cn,
    g,
    pc,
    nd,
    shm,
    sho,
    sfree,
    ovm,
    ovo,
    ovfree,
    slm,
    slf,
    sidr,
    rfree,
    cfree,
    crq,
    crq2,
    mt,
    objs,
    pslot,
    skips,
    scr,
    one,
    bk,
    i0,
):
    """Interpret ``plan[i0:]``; returns the index of the first command not run (status in
    ``g[G_STATUS]``: done, grow a pool, or a model error)."""
    cap = P[P_CAP]
    ops = P[P_OPS]
    v618 = P[P_V618] != 0
    has_pcs = P[P_HASPCS] != 0

    # ---- sheaf layer helpers that need most of the state: nested closures are inlined
    def refill_sheaf(cp, s):
        """A4 ``refill_sheaf``: to full capacity; SHEAF_REFILL += got; success iff full."""
        size = shm[s, SH_SZ]
        want = cap - size
        if want <= 0:
            return True
        got = slab_refill_for_sheaf(
            cp, want, sho[s, size:], P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt
        )
        shm[s, SH_SZ] = size + got
        g[SHEAF_REFILL] += got
        return got == want

    def sheaf_flush_unused(cp, s):
        n = shm[s, SH_SZ]
        if n:
            shm[s, SH_SZ] = 0
            slab_free_bulk(cp, sho[s], n, P, g, pc, nd, slm, slf, cfree, sidr, rfree)
            g[SHEAF_FLUSH] += n

    def sheaf_flush_main(cp):
        """F6: the top ``min(32, size)`` objects at a time, each batch freed with B5."""
        m = pc[cp, PC_MAIN]
        while shm[m, SH_SZ]:
            size = shm[m, SH_SZ]
            batch = min(BATCH, size)
            shm[m, SH_SZ] = size - batch
            slab_free_bulk(
                cp, sho[m, size - batch : size], batch, P, g, pc, nd, slm, slf, cfree, sidr, rfree
            )
            g[SHEAF_FLUSH] += batch

    def swap(cp):
        t = pc[cp, PC_MAIN]
        pc[cp, PC_MAIN] = pc[cp, PC_SPARE]
        pc[cp, PC_SPARE] = t
        g[X_SPARE_SWAP] += 1

    def pcs_replace_empty_main(cp, blocking):
        """A3 ``__pcs_replace_empty_main`` (X5 for 6.18)."""
        if cap == 0:
            return False
        spare = pc[cp, PC_SPARE]
        if spare >= 0 and shm[spare, SH_SZ] > 0:
            swap(cp)
            return True
        node = cn[cp]
        full = barn_replace_empty_sheaf(node, pc[cp, PC_MAIN], g, nd, shm)
        if full >= 0:
            pc[cp, PC_MAIN] = full
            g[BARN_GET] += 1
            return True
        g[BARN_GET_FAIL] += 1
        if v618 and not blocking:
            return False
        if spare >= 0:
            empty = spare
            pc[cp, PC_SPARE] = -1
        else:
            empty = barn_get_empty_sheaf(node, g, nd, shm)
        if empty < 0:
            empty = alloc_empty_sheaf(g, shm, sfree)
        if not refill_sheaf(cp, empty):
            sheaf_flush_unused(cp, empty)
            free_empty_sheaf(empty, g, sfree)
            return False
        full = empty
        main = pc[cp, PC_MAIN]
        spare = pc[cp, PC_SPARE]
        if shm[main, SH_SZ] == 0:
            if spare < 0 and not v618:
                pc[cp, PC_SPARE] = main
            else:
                barn_put_empty_sheaf(node, main, g, nd, shm)
            pc[cp, PC_MAIN] = full
            return True
        if spare < 0:
            pc[cp, PC_SPARE] = full
            return True
        if shm[spare, SH_SZ] == 0:
            barn_put_empty_sheaf(node, spare, g, nd, shm)
            pc[cp, PC_SPARE] = full
            return True
        barn_put_full_sheaf(node, full, g, nd, shm)
        g[BARN_PUT] += 1
        return True

    def pcs_install_empty_sheaf(cp, empty):
        """F4 ``__pcs_install_empty_sheaf``."""
        node = cn[cp]
        main = pc[cp, PC_MAIN]
        spare = pc[cp, PC_SPARE]
        if spare < 0:
            pc[cp, PC_SPARE] = main
            pc[cp, PC_MAIN] = empty
        elif shm[main, SH_SZ] < cap:
            barn_put_empty_sheaf(node, empty, g, nd, shm)
        elif shm[spare, SH_SZ] < cap:
            swap(cp)
            barn_put_empty_sheaf(node, empty, g, nd, shm)
        else:
            barn_put_full_sheaf(node, main, g, nd, shm)
            g[BARN_PUT] += 1
            pc[cp, PC_MAIN] = empty

    def pcs_replace_full_main(cp):
        """F3 ``__pcs_replace_full_main``."""
        if cap == 0:
            return False
        node = cn[cp]
        spare = pc[cp, PC_SPARE]
        if spare < 0:
            empty = barn_get_empty_sheaf(node, g, nd, shm)
            if empty >= 0:
                pc[cp, PC_SPARE] = pc[cp, PC_MAIN]
                pc[cp, PC_MAIN] = empty
                return True
        elif shm[spare, SH_SZ] < cap:
            swap(cp)
            return True
        else:
            r = barn_replace_full_sheaf(node, pc[cp, PC_MAIN], P, g, nd, shm)
            if r >= 0:
                g[BARN_PUT] += 1
                pc[cp, PC_MAIN] = r
                return True
            if r == -2:  # E2BIG: flush the spare and reuse it
                g[BARN_PUT_FAIL] += 1
                pc[cp, PC_SPARE] = -1
                sheaf_flush_unused(cp, spare)
                pcs_install_empty_sheaf(cp, spare)
                return True
        empty = alloc_empty_sheaf(g, shm, sfree)
        pcs_install_empty_sheaf(cp, empty)
        return True

    def alloc_from_pcs(cp, node, blocking):
        """A2 ``alloc_from_pcs``; -1 when the sheaves cannot serve."""
        node_req = node != NUMA_NO_NODE
        if node_req and node != cn[cp]:
            if not v618:
                g[ALLOC_NODE_MISMATCH] += 1
            return -1
        if shm[pc[cp, PC_MAIN], SH_SZ] == 0:
            if not pcs_replace_empty_main(cp, blocking):
                return -1
        m = pc[cp, PC_MAIN]
        size = shm[m, SH_SZ]
        obj = sho[m, size - 1]
        if node_req and obj_node(obj, P, slm, sidr) != node:
            if not v618:
                g[ALLOC_NODE_MISMATCH] += 1
            return -1
        shm[m, SH_SZ] = size - 1
        if v618:
            g[ALLOC_CPU_SHEAF] += 1
        else:
            g[ALLOC_FASTPATH] += 1
        return obj

    def free_to_pcs_batch_prepare(cp):
        """B3 ``__free_to_pcs_batch`` decisions."""
        main = pc[cp, PC_MAIN]
        if shm[main, SH_SZ] < cap:
            return True
        node = cn[cp]
        spare = pc[cp, PC_SPARE]
        if spare < 0:
            empty = barn_get_empty_sheaf(node, g, nd, shm)
            if empty < 0:
                return False
            pc[cp, PC_SPARE] = main
            pc[cp, PC_MAIN] = empty
            return True
        if shm[spare, SH_SZ] < cap:
            swap(cp)
            return True
        r = barn_replace_full_sheaf(node, main, P, g, nd, shm)
        if r < 0:
            g[BARN_PUT_FAIL] += 1
            return False
        g[BARN_PUT] += 1
        pc[cp, PC_MAIN] = r
        return True

    def push_to_main(cp, p, lo, n):
        m = pc[cp, PC_MAIN]
        size = shm[m, SH_SZ]
        for j in range(n):
            sho[m, size + j] = p[lo + j]
        shm[m, SH_SZ] = size + n
        if v618:
            g[FREE_CPU_SHEAF] += n
        else:
            g[FREE_FASTPATH] += n

    def free_to_pcs_bulk_73(cp, p, n):
        """B3 7.3 ``free_to_pcs_bulk`` on ``p[:n]`` (Lomuto partition of remote objects)."""
        node = cn[cp]
        nr_remote = 0
        for i in range(n):
            if obj_node(p[i], P, slm, sidr) != node:
                t = p[i]
                p[i] = p[nr_remote]
                p[nr_remote] = t
                nr_remote += 1
        nloc = n - nr_remote
        i = 0
        while i < nloc:
            if not free_to_pcs_batch_prepare(cp):
                rest = nloc - i
                slab_free_bulk(
                    cp, p[nr_remote + i : n], rest, P, g, pc, nd, slm, slf, cfree, sidr, rfree
                )
                g[FREE_SLOWPATH] += rest
                break
            m = pc[cp, PC_MAIN]
            batch = min(nloc - i, cap - shm[m, SH_SZ])
            push_to_main(cp, p, nr_remote + i, batch)
            i += batch
        if nr_remote:
            slab_free_bulk(cp, p[:nr_remote], nr_remote, P, g, pc, nd, slm, slf, cfree, sidr, rfree)
            g[FREE_SLOWPATH] += nr_remote

    def free_to_pcs_bulk_618(cp, p, n, remote):
        """X11 6.18 ``free_to_pcs_bulk``, literally (``remote`` holds up to 32 objects)."""
        node = cn[cp]
        size = n
        i = 0
        nrem = 0
        off = 0
        while True:
            remote_full = False
            while i < size:
                if obj_node(p[off + i], P, slm, sidr) != node:
                    remote[nrem] = p[off + i]
                    nrem += 1
                    size -= 1
                    p[off + i] = p[off + size]
                    if nrem >= BATCH:
                        remote_full = True
                        break
                    continue
                i += 1
            if remote_full:
                slab_free_bulk(cp, remote, nrem, P, g, pc, nd, slm, slf, cfree, sidr, rfree)
                nrem = 0
                if i < size:
                    continue
            while True:
                if not free_to_pcs_batch_prepare(cp):
                    slab_free_bulk(
                        cp, p[off : off + size], size, P, g, pc, nd, slm, slf, cfree, sidr, rfree
                    )
                    break
                m = pc[cp, PC_MAIN]
                batch = min(size, cap - shm[m, SH_SZ])
                push_to_main(cp, p, off, batch)
                if batch < size:
                    off += batch
                    size -= batch
                    continue
                break
            if nrem:
                slab_free_bulk(cp, remote, nrem, P, g, pc, nd, slm, slf, cfree, sidr, rfree)
                nrem = 0
            return

    def rcu_submit(s, cp, kind):
        shm[s, SH_RCPU] = cp
        shm[s, SH_RKIND] = kind
        shm[s, SH_NX] = -1
        t = g[G_RQ_TAIL]
        if t >= 0:
            shm[t, SH_NX] = s
        else:
            g[G_RQ_HEAD] = s
        g[G_RQ_TAIL] = s

    def kfree_rcu_sheaf(cp, obj):
        """K2 ``__kfree_rcu_sheaf``."""
        if pc[cp, PC_RCU] < 0:
            if cap == 0:
                g[FREE_RCU_SHEAF_FAIL] += 1
                return False
            spare = pc[cp, PC_SPARE]
            if spare >= 0 and shm[spare, SH_SZ] == 0:
                pc[cp, PC_RCU] = spare
                pc[cp, PC_SPARE] = -1
            else:
                empty = barn_get_empty_sheaf(cn[cp], g, nd, shm)
                if empty < 0:
                    empty = alloc_empty_sheaf(g, shm, sfree)
                pc[cp, PC_RCU] = empty
        r = pc[cp, PC_RCU]
        size = shm[r, SH_SZ]
        sho[r, size] = obj
        shm[r, SH_SZ] = size + 1
        if size + 1 == cap:
            pc[cp, PC_RCU] = -1
            shm[r, SH_NODE] = cn[cp]
            rcu_submit(r, cp, 0)
        g[FREE_RCU_SHEAF] += 1
        return True

    def rcu_free_sheaf(cp, s):
        """K4 ``rcu_free_sheaf``."""
        node = shm[s, SH_NODE]
        if shm[s, SH_SZ] > 0:
            if nd[node, ND_FN] < P[P_MAXFULL]:
                g[BARN_PUT] += 1
                barn_put_full_sheaf(node, s, g, nd, shm)
                return
            g[BARN_PUT_FAIL] += 1
            sheaf_flush_unused(cp, s)
        if nd[node, ND_EN] < P[P_MAXEMPTY]:
            barn_put_empty_sheaf(node, s, g, nd, shm)
            return
        free_empty_sheaf(s, g, sfree)

    def rcu_grace_period():
        s = g[G_RQ_HEAD]
        g[G_RQ_HEAD] = -1
        g[G_RQ_TAIL] = -1
        while s >= 0:
            nxt = shm[s, SH_NX]
            cp = shm[s, SH_RCPU]
            if shm[s, SH_RKIND] == 0:
                rcu_free_sheaf(cp, s)
            else:
                sheaf_flush_unused(cp, s)
                free_empty_sheaf(s, g, sfree)
            s = nxt
        # classic kfree_rcu batches, CPU by CPU, each in submission order (stable gather)
        nq = g[G_CRQ_N]
        if nq:
            g[G_CRQ_N] = 0
            for cp in range(P[P_CPUS]):
                k = 0
                for j in range(nq):
                    if crq[j, 0] == cp:
                        crq2[k] = crq[j, 1]
                        k += 1
                if k:
                    slab_free_bulk(cp, crq2, k, P, g, pc, nd, slm, slf, cfree, sidr, rfree)
                    if not v618:
                        g[FREE_SLOWPATH] += k
        sample(-1, P, cn, g, pc, nd, shm)

    def barn_shrink(cp, node):
        g[X_BARN_LOCK] += 1
        s = nd[node, ND_FH]
        nd[node, ND_FH] = -1
        nd[node, ND_FN] = 0
        nd[node, ND_BHELD] = 0
        while s >= 0:
            nxt = shm[s, SH_NX]
            sheaf_flush_unused(cp, s)
            free_empty_sheaf(s, g, sfree)
            s = nxt
        s = nd[node, ND_EH]
        nd[node, ND_EH] = -1
        nd[node, ND_EN] = 0
        while s >= 0:
            nxt = shm[s, SH_NX]
            free_empty_sheaf(s, g, sfree)
            s = nxt

    def kmem_cache_shrink():
        """L2: ``flush_all`` (L1 on every CPU ascending), then barns and partial lists."""
        for cp in range(P[P_CPUS]):
            if has_pcs:
                spare = pc[cp, PC_SPARE]
                r = pc[cp, PC_RCU]
                pc[cp, PC_SPARE] = -1
                pc[cp, PC_RCU] = -1
                if spare >= 0:
                    sheaf_flush_unused(cp, spare)
                    free_empty_sheaf(spare, g, sfree)
                if r >= 0:
                    rcu_submit(r, cp, 1)
                sheaf_flush_main(cp)
            if v618:
                s618_flush_cpu(cp, P, g, pc, nd, slm, slf, cfree, sidr, rfree)
        sample(-1, P, cn, g, pc, nd, shm)
        ex = 0
        if v618:
            for node in range(P[P_NODES]):
                barn_shrink(ex, node)
                shrink_node(node, P, g, nd, slm, sidr, rfree, bk)
        else:
            for node in range(P[P_NODES]):
                barn_shrink(ex, node)
            for node in range(P[P_NODES]):
                shrink_node(node, P, g, nd, slm, sidr, rfree, bk)
        sample(-1, P, cn, g, pc, nd, shm)

    def prefill(cp, size):
        """P1 ``kmem_cache_prefill_sheaf``: a sheaf handle, or -1 (NULL)."""
        if size == 0 and not v618:
            return -1
        if size > cap or not has_pcs:
            if not has_pcs and size == 0:
                g[G_STATUS] = ST_ERROR
                return -1
            if not v618:
                g[SHEAF_ALLOC] += 1
            g[X_SHEAVES_LIVE] += 1
            g[G_OVFREE_N] -= 1
            o = ovfree[g[G_OVFREE_N]]
            ovm[o, OV_CAP] = size
            ovm[o, OV_PSEQ] = g[G_PSEQ]
            g[G_PSEQ] += 1
            g[SHEAF_PREFILL_OVERSIZE] += 1
            got = slab_bulk_alloc(
                cp, size, ovo[o], P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt
            )
            ovm[o, OV_SZ] = got
            g[X_OVERSIZE_OBJECTS] += size
            sample(cp, P, cn, g, pc, nd, shm)
            return OV_BASE + o
        spare = pc[cp, PC_SPARE]
        if spare >= 0:
            s2 = spare
            pc[cp, PC_SPARE] = -1
            g[SHEAF_PREFILL_FAST] += 1
        else:
            g[SHEAF_PREFILL_SLOW] += 1
            node = cn[cp]
            if nd[node, ND_FN] == 0 and nd[node, ND_EN] == 0:
                s2 = -1
            else:
                g[X_BARN_LOCK] += 1
                if nd[node, ND_FN] > 0:
                    s2 = barn_pop_full(node, nd, shm)
                else:
                    s2 = barn_pop_empty(node, nd, shm)
            if s2 >= 0 and shm[s2, SH_SZ] > 0:
                g[BARN_GET] += 1
            else:
                g[BARN_GET_FAIL] += 1
        if s2 < 0:
            s2 = alloc_empty_sheaf(g, shm, sfree)
        if shm[s2, SH_SZ] < size:
            if not refill_sheaf(cp, s2):
                sheaf_flush_unused(cp, s2)
                free_empty_sheaf(s2, g, sfree)
                sample(cp, P, cn, g, pc, nd, shm)
                return -1
        shm[s2, SH_PSEQ] = g[G_PSEQ]
        g[G_PSEQ] += 1
        sample(cp, P, cn, g, pc, nd, shm)
        return s2

    def return_sheaf(cp, h):
        """P6 ``kmem_cache_return_sheaf`` (X14)."""
        if h >= OV_BASE or not has_pcs:
            o = h - OV_BASE
            n = ovm[o, OV_SZ]
            if n:
                ovm[o, OV_SZ] = 0
                slab_free_bulk(cp, ovo[o], n, P, g, pc, nd, slm, slf, cfree, sidr, rfree)
                g[SHEAF_FLUSH] += n
            if not v618:
                g[SHEAF_FREE] += 1
            g[X_SHEAVES_LIVE] -= 1
            ovfree[g[G_OVFREE_N]] = o
            g[G_OVFREE_N] += 1
            sample(cp, P, cn, g, pc, nd, shm)
            return
        if pc[cp, PC_SPARE] < 0:
            pc[cp, PC_SPARE] = h
            g[SHEAF_RETURN_FAST] += 1
            sample(cp, P, cn, g, pc, nd, shm)
            return
        g[SHEAF_RETURN_SLOW] += 1
        node = cn[cp]
        if nd[node, ND_FN] >= P[P_MAXFULL] or not refill_sheaf(cp, h):
            sheaf_flush_unused(cp, h)
            free_empty_sheaf(h, g, sfree)
        else:
            barn_put_full_sheaf(node, h, g, nd, shm)
            g[BARN_PUT] += 1
        sample(cp, P, cn, g, pc, nd, shm)

    def refill_prefilled(cp, h, size):
        """P5 ``kmem_cache_refill_sheaf``: returns the handle to use."""
        o = h - OV_BASE
        if h >= OV_BASE:
            cur = ovm[o, OV_SZ]
            capacity = ovm[o, OV_CAP]
        else:
            cur = shm[h, SH_SZ]
            capacity = cap
        if cur >= size:
            return h
        if size <= capacity:
            if h < OV_BASE:
                refill_sheaf(cp, h)
            else:
                n = capacity - cur
                got = slab_bulk_alloc(
                    cp, n, ovo[o, cur:], P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt
                )
                ovm[o, OV_SZ] = cur + got
                g[X_OVERSIZE_OBJECTS] += n
            sample(cp, P, cn, g, pc, nd, shm)
            return h
        new = prefill(cp, size)
        return_sheaf(cp, h)
        return new

    # ---- the command loop
    n_cmd = len(cmd)
    nnodes = P[P_NODES]
    hit_a = ALLOC_CPU_SHEAF if v618 else ALLOC_FASTPATH
    hit_f = FREE_CPU_SHEAF if v618 else FREE_FASTPATH
    base_rows = cap // ops + 3
    # advance(ts) of the first command ever run: the occupancy clocks start there (the
    # reference's first SheafModel.advance); later commands only move the clock forward
    if g[G_T_SET] == 0 and i0 < n_cmd:
        t = ts[i0]
        g[G_T_SET] = 1
        g[G_T_FIRST] = t
        g[G_T_LAST] = t
        for x in range(P[P_CPUS]):
            pc[x, PC_SINCE] = t
        for x in range(nnodes):
            nd[x, ND_SINCE] = t
    one_node_pcs = has_pcs and nnodes == 1  # every object is local to every CPU
    i = i0
    while True:
        # ---- sheaf hits: a run of commands served by a per-CPU or prefilled sheaf, or
        # skipped, touches no pool, barn or slab, so it needs no headroom check, and its
        # _sample(cpu) reduces to the CPU's held objects moving by one (no barn, sheaf struct
        # or, on a pop, held peak can change), applied inline with the same lazy integrals.
        # The counters it moves stay in locals until the run ends. A command that is not
        # one of these leaves the run untouched for the general path below.
        now = g[G_T_LAST]
        held = g[X_HELD]
        held_max = g[X_HELD_MAX]
        n_ha = 0  # sheaf-hit allocations (ALLOC_CPU_SHEAF / ALLOC_FASTPATH)
        n_hf = 0  # sheaf-hit frees (FREE_CPU_SHEAF / FREE_FASTPATH)
        n_rcu = 0  # FREE_RCU_SHEAF
        n_pop = 0  # X_ALLOC_FROM_SHEAF
        while i < n_cmd:
            # (indices known to be >= 0 are cast to uint64: numba then skips the negative
            # index wrap-around, three instructions per access on this path)
            ix = np.uint64(i)
            k = cmd[ix]
            cq = np.uint64(cpu[ix])
            if k == C_ALLOC:
                # A2 hit
                if not has_pcs or c[ix] != NUMA_NO_NODE:
                    break
                mu = np.uint64(pc[cq, PC_MAIN])
                size = shm[mu, SH_SZ]
                if size == 0:
                    break
                t = ts[ix]
                if t > now:
                    now = t
                shm[mu, SH_SZ] = size - 1
                objs[np.uint64(a[ix])] = sho[mu, np.uint64(size - 1)]
                n_ha += 1
                # the CPU's occupancy integral up to any later T is INT + VAL * (T - SINCE)
                # (the lazy form sample_cpu and _result read): a step of -1 at `now` keeps it
                # exact by moving INT by +(now - SINCE), SINCE unchanged (no multiply)
                pc[cq, PC_INT] += now - pc[cq, PC_SINCE]
                pc[cq, PC_VAL] -= 1
                held -= 1
            elif k == C_FREE or k == C_KFREE_RCU:
                slot = np.uint64(a[ix])
                obj = objs[slot]
                if obj >= 0:
                    # F2 hit into the main sheaf, or K2 into the CPU's rcu_free sheaf without
                    # filling it. (One node: every slab and CPU is on node 0, so the object
                    # is local: no obj_node division and its two dependent loads.)
                    if not one_node_pcs and (not has_pcs or obj_node(obj, P, slm, sidr) != cn[cq]):
                        break
                    if k == C_FREE:
                        sm = pc[cq, PC_MAIN]
                        mu = np.uint64(sm)
                        size = shm[mu, SH_SZ]
                        if size == cap:
                            break
                        n_hf += 1
                    else:
                        sm = pc[cq, PC_RCU]
                        if sm < 0:
                            break
                        mu = np.uint64(sm)
                        size = shm[mu, SH_SZ]
                        if size + 1 >= cap:
                            break
                        n_rcu += 1
                    t = ts[ix]
                    if t > now:
                        now = t
                    sho[mu, np.uint64(size)] = obj
                    shm[mu, SH_SZ] = size + 1
                    objs[slot] = -1
                    v = pc[cq, PC_VAL] + 1
                    pc[cq, PC_INT] -= now - pc[cq, PC_SINCE]  # a step of +1 (as above)
                    pc[cq, PC_VAL] = v
                    if v > pc[cq, PC_MAX]:
                        pc[cq, PC_MAX] = v
                    held += 1
                    if held > held_max:
                        held_max = held
                else:
                    t = ts[ix]
                    if t > now:
                        now = t
                    skips[K_FREE if k == C_FREE else K_KFREE_RCU] += 1
            elif k == C_ALLOC_FROM_SHEAF:
                # P4 kmem_cache_alloc_from_sheaf, always here: a prefilled sheaf is no CPU's
                # and no barn's, so only the held objects change (one fewer)
                t = ts[ix]
                if t > now:
                    now = t
                h = pslot[np.uint64(b[ix])]
                if h < 0:
                    skips[K_POP_NONE] += 1
                else:
                    o = np.uint64(h - OV_BASE)
                    hu = np.uint64(h)
                    if h >= OV_BASE:
                        size = ovm[o, OV_SZ]
                    else:
                        size = shm[hu, SH_SZ]
                    if size == 0:
                        g[X_ALLOC_FROM_SHEAF_NULL] += 1
                        skips[K_POP_EMPTY] += 1
                    else:
                        n_pop += 1
                        top = np.uint64(size - 1)
                        if h >= OV_BASE:
                            ovm[o, OV_SZ] = size - 1
                            objs[np.uint64(a[ix])] = ovo[o, top]
                        else:
                            shm[hu, SH_SZ] = size - 1
                            objs[np.uint64(a[ix])] = sho[hu, top]
                        held -= 1
            else:
                break
            i += 1
        g[G_T_LAST] = now
        g[X_HELD] = held
        g[X_HELD_MAX] = held_max
        g[hit_a] += n_ha
        g[hit_f] += n_hf
        g[FREE_RCU_SHEAF] += n_rcu
        g[X_ALLOC_FROM_SHEAF] += n_pop
        if i >= n_cmd:
            break

        # ---- the general path: one command (ic), in the reference's shape
        ic = i
        i += 1
        k = cmd[ic]
        cp = np.int64(cpu[ic])
        # room for what this command may create (see run: pools grow, then we resume)
        if g[G_SFREE_N] < SHEAF_HEADROOM:
            g[G_STATUS] = ST_GROW
            return ic
        if k != C_FREE and k != C_RCU_GP:
            need_rows = base_rows
            if k == C_ALLOC_BULK or k == C_PREFILL or k == C_REFILL_SHEAF:
                need_rows += b[ic] // ops + 2
            if (
                g[G_OVFREE_N] < 2
                or g[G_RFREE_N] < need_rows
                or len(sidr) - g[G_NSLABS] < need_rows
                or (k == C_KFREE_RCU and g[G_CRQ_N] >= len(crq))
            ):
                g[G_STATUS] = ST_GROW
                return ic
        # advance(ts): lazy occupancy integration (reference SheafModel.advance)
        t = ts[ic]
        if t > g[G_T_LAST]:
            g[G_T_LAST] = t

        if k == C_ALLOC:
            node = c[ic]
            if not has_pcs:
                # a 6.18 cache without sheaves: nothing the sample looks at can change (no
                # sheaf, no barn, no term of the held-objects identity), so it is skipped
                row = pc[cp, PC_CSLAB]
                n = pc[cp, PC_CFN]
                if n > 0 and row >= 0 and (node == NUMA_NO_NODE or slm[row, SL_NODE] == node):
                    g[ALLOC_FASTPATH] += 1  # X4 CPU freelist, inline
                    pc[cp, PC_CFN] = n - 1
                    objs[a[ic]] = cfree[cp, n - 1]
                else:
                    objs[a[ic]] = s618_slab_alloc(
                        cp, node, P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt
                    )
                continue
            obj = alloc_from_pcs(cp, node, b[ic] != 0)
            if obj < 0:
                obj = slab_alloc_one(cp, node, P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt)
            sample(cp, P, cn, g, pc, nd, shm)
            objs[a[ic]] = obj
        elif k == C_FREE:
            obj = objs[a[ic]]
            if obj < 0:
                skips[K_FREE] += 1
                continue
            objs[a[ic]] = -1
            if not has_pcs:
                # 6.18 without sheaves: X9 do_slab_free; the sample would be a no-op (above)
                row = sidr[obj // ops]
                if row == pc[cp, PC_CSLAB]:
                    n = pc[cp, PC_CFN]
                    cfree[cp, n] = obj
                    pc[cp, PC_CFN] = n + 1
                    g[FREE_FASTPATH] += 1
                else:
                    one[0] = obj
                    s618_slab_free(cp, row, one, 0, 1, P, g, pc, nd, slm, slf, sidr, rfree)
                continue
            if not (nnodes == 1 or obj_node(obj, P, slm, sidr) == cn[cp]) or cap == 0:
                # straight to the slab (a remote object; F3.1 with no sheaves): no sheaf
                # changes, so the sample would be a no-op
                slab_free_one(cp, obj, P, g, pc, nd, slm, slf, cfree, sidr, rfree, one)
                continue
            # F2: into the main sheaf, replacing it first when full
            if shm[pc[cp, PC_MAIN], SH_SZ] < cap or pcs_replace_full_main(cp):
                m = pc[cp, PC_MAIN]
                size = shm[m, SH_SZ]
                sho[m, size] = obj
                shm[m, SH_SZ] = size + 1
                g[hit_f] += 1
            else:
                slab_free_one(cp, obj, P, g, pc, nd, slm, slf, cfree, sidr, rfree, one)
            sample(cp, P, cn, g, pc, nd, shm)
        elif k == C_KFREE_RCU:
            obj = objs[a[ic]]
            if obj < 0:
                skips[K_KFREE_RCU] += 1
                continue
            local = has_pcs and (nnodes == 1 or obj_node(obj, P, slm, sidr) == cn[cp])
            if not (local and kfree_rcu_sheaf(cp, obj)):
                q = g[G_CRQ_N]
                crq[q, 0] = cp
                crq[q, 1] = obj
                g[G_CRQ_N] = q + 1
                g[X_KFREE_RCU_CLASSIC] += 1
            sample(cp, P, cn, g, pc, nd, shm)
            objs[a[ic]] = -1
        elif k == C_RCU_GP:
            rcu_grace_period()
        elif k == C_PREFILL:
            h = prefill(cp, b[ic])
            if g[G_STATUS] == ST_ERROR:
                return ic
            pslot[a[ic]] = h
        elif k == C_RETURN_SHEAF:
            h = pslot[a[ic]]
            if h >= 0:
                return_sheaf(cp, h)
                pslot[a[ic]] = -1
        elif k == C_REFILL_SHEAF:
            h = pslot[a[ic]]
            if h < 0:
                skips[K_REFILL_NONE] += 1
                continue
            pslot[a[ic]] = refill_prefilled(cp, h, b[ic])
            if g[G_STATUS] == ST_ERROR:
                return ic
        elif k == C_ALLOC_BULK:
            off = a[ic]
            kk = b[ic]
            got = 0
            if has_pcs:
                # B2 alloc_from_pcs_bulk
                while got < kk:
                    m = pc[cp, PC_MAIN]
                    if shm[m, SH_SZ] == 0:
                        if cap == 0:
                            break
                        spare = pc[cp, PC_SPARE]
                        if spare >= 0 and shm[spare, SH_SZ] > 0:
                            swap(cp)
                        else:
                            full = barn_replace_empty_sheaf(cn[cp], m, g, nd, shm)
                            if full < 0:
                                g[BARN_GET_FAIL] += 1
                                break
                            g[BARN_GET] += 1
                            pc[cp, PC_MAIN] = full
                        m = pc[cp, PC_MAIN]
                    size = shm[m, SH_SZ]
                    batch = min(kk - got, size)
                    for j in range(batch):
                        scr[got + j] = sho[m, size - batch + j]
                    shm[m, SH_SZ] = size - batch
                    got += batch
                    if v618:
                        g[ALLOC_CPU_SHEAF] += batch
                    else:
                        g[ALLOC_FASTPATH] += batch
            if got < kk:
                got += slab_bulk_alloc(
                    cp, kk - got, scr[got:], P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt
                )
            sample(cp, P, cn, g, pc, nd, shm)
            for j in range(got):
                objs[aux[off + j]] = scr[j]
        elif k == C_FREE_BULK:
            off = a[ic]
            kk = b[ic]
            n = 0
            for j in range(kk):
                o2 = objs[aux[off + j]]
                if o2 < 0:
                    skips[K_BULK_FREE] += 1
                else:
                    scr[n] = o2
                    n += 1
                objs[aux[off + j]] = -1
            if n == 0:
                continue
            p = scr[:n]
            if not has_pcs or cap == 0:
                slab_free_bulk(cp, p, n, P, g, pc, nd, slm, slf, cfree, sidr, rfree)
                if not v618:
                    g[FREE_SLOWPATH] += n
            elif v618:
                free_to_pcs_bulk_618(cp, p, n, scr[n : n + BATCH])
            else:
                free_to_pcs_bulk_73(cp, p, n)
            sample(cp, P, cn, g, pc, nd, shm)
        elif k == C_SHRINK:
            kmem_cache_shrink()
        else:
            g[G_STATUS] = ST_ERROR
            return ic
    g[G_STATUS] = ST_DONE
    return n_cmd


@_jit
def plan_stats(cmd, cpu, b, c, k, out, active):
    """One pass over a plan's columns for what its replays need to know beforehand (pool
    sizes, parameter checks, counts) and ``recommend``'s figures of the window after the first
    ``k`` commands; ``out`` as ``PS_*`` says, ``active[cpu]`` set to 1 for every CPU making an
    object-moving call or a prefill after the cut (``active`` zeroed by the caller).
    Returns the number of commands."""
    for j in range(PS_LEN):
        out[j] = 0
    out[PS_MAX_CPU] = -1
    out[PS_MAX_NODE] = PS_NONE
    out[PS_MAX_SIZE] = PS_NONE
    out[PS_MAX_PREFILL] = PS_NONE
    out[PS_MAX_BULK] = PS_NONE
    n = len(cmd)
    max_cpu = -1
    n_ops = 0
    n_prefills = 0
    for i in range(n):
        x = cmd[i]
        cp = np.int64(cpu[i])
        if x < PS_N_CMDS:
            out[PS_HIST + x] += 1
        if cp > max_cpu:
            max_cpu = cp
        after = i >= k
        if x == C_ALLOC or x == C_FREE or x == C_KFREE_RCU or x == C_ALLOC_FROM_SHEAF:
            if x == C_ALLOC and c[i] > out[PS_MAX_NODE]:
                out[PS_MAX_NODE] = c[i]
            if after:
                n_ops += 1
                active[cp] = 1
        elif x == C_PREFILL or x == C_REFILL_SHEAF:
            if b[i] > out[PS_MAX_SIZE]:
                out[PS_MAX_SIZE] = b[i]
            if x == C_PREFILL:
                if b[i] > out[PS_MAX_PREFILL]:
                    out[PS_MAX_PREFILL] = b[i]
                if after:
                    n_prefills += 1
                    active[cp] = 1
        elif x == C_ALLOC_BULK or x == C_FREE_BULK:
            if b[i] > out[PS_MAX_BULK]:
                out[PS_MAX_BULK] = b[i]
            if after:
                n_ops += b[i]
                active[cp] = 1
    out[PS_MAX_CPU] = max_cpu
    out[PS_OPS] = n_ops
    out[PS_PREFILLS] = n_prefills
    return n


_V = "i8[::1]"  # a C-contiguous int64 vector
_M = "i8[:, ::1]"  # a C-contiguous int64 matrix
# fmt: off
_EXEC_ARGS = (
    _V, "u1[::1]", "u2[::1]", _V, _V, _V, _V,  # plan: ts, cmd, cpu, a, b, c, aux
    _V, _V, _V, _M, _M,  # P, cn, g, pc, nd
    _M, _M, _V, _M, _M, _V,  # shm, sho, sfree, ovm, ovo, ovfree
    _M, _M, _V, _V, _M, _M, _V,  # slm, slf, sidr, rfree, cfree, crq, crq2
    _V, _V, _V, _V, _V, _V, _V, "i8",  # mt, objs, pslot, skips, scr, one, bk, i0
)
# fmt: on
#: What ``sheaftune.compiled`` exports ahead of time (attribute -> numba signature): exactly
#: the dtypes and layouts ``fast._columns`` and ``fast._State`` pass.
AOT_EXPORTS = {
    "exec_plan": "i8(" + ", ".join(_EXEC_ARGS) + ")",
    "plan_stats": "i8(u1[::1], u2[::1], i8[::1], i8[::1], i8, i8[::1], u1[::1])",
}
