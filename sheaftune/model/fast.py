"""The fast replay engine: a compiled twin of the reference sheaf model over flat arrays.

``run(plan, params)`` interprets the same :class:`~sheaftune.model.plan.Plan` as
``replay.run_reference`` and must return the same :class:`~sheaftune.model.replay.ReplayResult`
field for field (``tests/model/test_fast_engine.py`` holds them equal). Every function below
mirrors the method of ``reference.SheafModel`` / ``slab.Slub73`` / ``slab.Slub618`` of the same
name, in the same order of effects, so the two can be read side by side.

State is plain int64 arrays (numba-friendly, proportional to live sheaves, live slabs and CPUs):

* sheaves: a pool of fixed-capacity stacks ``sho[id, :cap]`` with metadata ``shm`` (size, list
  link, rcu node/cpu/callback); ids are recycled. Barn lists and the rcu-pending queue are linked
  through ``shm[id, SH_NX]``; a barn list's head is its last pushed sheaf (LIFO, as the
  reference's ``list.append``/``pop``). Oversize prefilled sheaves live in a second pool
  (``ovo``), as wide as the plan's largest prefill, and are named ``OV_BASE + id``.
* slabs: object handles are ``slab_id * objects_per_slab + slot`` as in the reference; a slab's
  metadata and freelist stack sit in a recycled *row* (``sidr[slab_id]``), so freed slabs cost
  one int each. Node partial lists are doubly linked rows; 6.18's per-CPU partial lists are
  singly linked rows; 6.18's per-CPU freelist is ``cfree[cpu]``.
* counters: one int64 array ``g`` indexed by the 6.18 stat items (a superset of 7.3's), then the
  model's extras, then engine scalars.
* the plan's slot tables (object slot -> handle, sheaf slot -> sheaf), one int64 per slot the
  plan names, as in ``run_reference``: the one part sized by the plan rather than by live state
  (slots are dense per allocation in ``tracereplay.build_plan``).

The interpreter stops before a command when a pool might overflow; ``run`` grows the pool and
resumes at that command, so no command is ever half done. The remote-partial gate's random draw
(``remote_skip_probability``) is reproduced exactly: the reference's ``random.Random(seed)``
Mersenne Twister state is copied in and stepped here.

Where the reference samples occupancy after an API call (``_sample``), the engine does the same
work incrementally: barn held counts are kept at each push and pop, and on a sheaf hit (or a
call that touches no sheaf) the sample reduces to the CPU's held count moving by one (or to
nothing), applied inline with the same lazy integrals.

The compiled functions run without numba's reference counting (``_nrt=False``): every array is
allocated here in Python, and per-call reference counting of array arguments cost more than the
model itself. Compiled code is cached on disk (``cache=True``); ``needs_compile`` tells the CLI
whether the next run will compile. This module imports numba at import time; nothing imports
this module except ``replay.replay(engine="fast")`` and the commands that replay, lazily, so
``sheaftune --help`` never loads numba.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numba import njit

from sheaftune.model.counters import EXTRA, STAT_ITEMS
from sheaftune.model.plan import Plan
from sheaftune.model.replay import ReplayResult
from sheaftune.params import PCS_BATCH_MAX, ModelParams

# ----------------------------------------------------------------------------- layout
#: Counter slots: the 6.18 stat items (7.3's are a subset), then the extras. The compiled code
#: uses the integer constants below; names are mapped back in ``_result``.
_STAT_NAMES = (
    "alloc_cpu_sheaf", "alloc_fastpath", "alloc_slowpath", "free_cpu_sheaf", "free_rcu_sheaf",
    "free_rcu_sheaf_fail", "free_fastpath", "free_slowpath", "free_frozen", "free_add_partial",
    "free_remove_partial", "alloc_from_partial", "alloc_slab", "alloc_refill",
    "alloc_node_mismatch", "free_slab", "cpuslab_flush", "deactivate_full", "deactivate_empty",
    "deactivate_to_head", "deactivate_to_tail", "deactivate_remote_frees", "deactivate_bypass",
    "order_fallback", "cmpxchg_double_cpu_fail", "cmpxchg_double_fail", "cpu_partial_alloc",
    "cpu_partial_free", "cpu_partial_node", "cpu_partial_drain", "sheaf_flush", "sheaf_refill",
    "sheaf_alloc", "sheaf_free", "barn_get", "barn_get_fail", "barn_put", "barn_put_fail",
    "sheaf_prefill_fast", "sheaf_prefill_slow", "sheaf_prefill_oversize", "sheaf_return_fast",
    "sheaf_return_slow",
)  # fmt: skip
_EXTRA_NAMES = (
    "barn_lock", "spare_swap", "list_lock", "sheaves_live", "sheaves_live_max", "held_objects",
    "held_objects_max", "barn_full_max", "barn_empty_max", "slabs_live", "slabs_shrunk",
    "alloc_from_sheaf", "alloc_from_sheaf_null", "oversize_objects", "kfree_rcu_classic",
)  # fmt: skip
(
    ALLOC_CPU_SHEAF, ALLOC_FASTPATH, ALLOC_SLOWPATH, FREE_CPU_SHEAF, FREE_RCU_SHEAF,
    FREE_RCU_SHEAF_FAIL, FREE_FASTPATH, FREE_SLOWPATH, FREE_FROZEN, FREE_ADD_PARTIAL,
    FREE_REMOVE_PARTIAL, ALLOC_FROM_PARTIAL, ALLOC_SLAB, ALLOC_REFILL, ALLOC_NODE_MISMATCH,
    FREE_SLAB, CPUSLAB_FLUSH, DEACTIVATE_FULL, DEACTIVATE_EMPTY, DEACTIVATE_TO_HEAD,
    DEACTIVATE_TO_TAIL, DEACTIVATE_REMOTE_FREES, DEACTIVATE_BYPASS, ORDER_FALLBACK,
    CMPXCHG_DOUBLE_CPU_FAIL, CMPXCHG_DOUBLE_FAIL, CPU_PARTIAL_ALLOC, CPU_PARTIAL_FREE,
    CPU_PARTIAL_NODE, CPU_PARTIAL_DRAIN, SHEAF_FLUSH, SHEAF_REFILL, SHEAF_ALLOC, SHEAF_FREE,
    BARN_GET, BARN_GET_FAIL, BARN_PUT, BARN_PUT_FAIL, SHEAF_PREFILL_FAST, SHEAF_PREFILL_SLOW,
    SHEAF_PREFILL_OVERSIZE, SHEAF_RETURN_FAST, SHEAF_RETURN_SLOW,
    X_BARN_LOCK, X_SPARE_SWAP, X_LIST_LOCK, X_SHEAVES_LIVE, X_SHEAVES_LIVE_MAX, X_HELD,
    X_HELD_MAX, X_BARN_FULL_MAX, X_BARN_EMPTY_MAX, X_SLABS_LIVE, X_SLABS_SHRUNK,
    X_ALLOC_FROM_SHEAF, X_ALLOC_FROM_SHEAF_NULL, X_OVERSIZE_OBJECTS, X_KFREE_RCU_CLASSIC,
    # engine scalars
    G_SFREE_N, G_RFREE_N, G_OVFREE_N, G_NSLABS, G_RQ_HEAD, G_RQ_TAIL, G_T_FIRST, G_T_LAST,
    G_T_SET, G_CRQ_N, G_STATUS, G_MTI, G_PSEQ,
    G_LEN,
) = range(72)  # fmt: skip
assert len(_STAT_NAMES) + len(_EXTRA_NAMES) == G_MTI - 11

# ModelParams as ints (P)
P_CAP, P_OPS, P_CPUS, P_NODES, P_V618, P_MAXFULL, P_MAXEMPTY, P_MINPARTIAL = range(8)
P_CPUPARTIAL, P_CPSLABS, P_HASPCS, P_SKIPQ, P_LEN = range(8, 13)
# per CPU (pc): sheaf ids (-1 none), 6.18 CPU slab row / freelist length / partial list,
# occupancy (value at last sample, since, peak, integral)
PC_MAIN, PC_SPARE, PC_RCU, PC_CSLAB, PC_CFN, PC_CPH, PC_CPN = range(7)
PC_VAL, PC_SINCE, PC_MAX, PC_INT, PC_LEN = range(7, 12)
# per node (nd): barn lists (head id, count), objects in full barn sheaves, partial list
# (head row, tail row, count), occupancy
ND_FH, ND_FN, ND_EH, ND_EN, ND_BHELD, ND_PH, ND_PT, ND_PN = range(8)
ND_VAL, ND_SINCE, ND_MAX, ND_INT, ND_LEN = range(8, 13)
# per sheaf (shm): size, next in its list, rcu node, submitting cpu, callback (0 barn, 1 nobarn),
# and for a prefilled sheaf its creation number (the reference's ``prefilled`` dict order)
SH_SZ, SH_NX, SH_NODE, SH_RCPU, SH_RKIND, SH_PSEQ, SH_LEN = range(7)
# per oversize sheaf (ovm)
OV_SZ, OV_CAP, OV_PSEQ, OV_LEN = range(4)
# per slab row (slm)
SL_NODE, SL_INUSE, SL_WHERE, SL_OWNER, SL_PREV, SL_NEXT, SL_NFREE, SL_SID, SL_LEN = range(9)
# where a slab is (as slab.py)
W_FULL, W_NODE_PARTIAL, W_CPU_SLAB, W_CPU_PARTIAL, W_FREED = range(5)
# plan commands (plan.Cmd)
C_ALLOC, C_FREE, C_KFREE_RCU, C_RCU_GP, C_PREFILL, C_ALLOC_FROM_SHEAF = range(6)
C_RETURN_SHEAF, C_ALLOC_BULK, C_FREE_BULK, C_REFILL_SHEAF, C_SHRINK = range(6, 11)
# skip reasons (replay.run_reference's wording)
SKIP_NAMES = (
    "free of an object that was never allocated",
    "kfree_rcu of an object that was never allocated",
    "pop from a sheaf that was not prefilled",
    "pop from an empty prefilled sheaf",
    "refill of a sheaf that was not prefilled",
    "bulk-freed objects never allocated",
)
K_FREE, K_KFREE_RCU, K_POP_NONE, K_POP_EMPTY, K_REFILL_NONE, K_BULK_FREE = range(6)
# interpreter status
ST_DONE, ST_GROW, ST_ERROR = range(3)
#: oversize prefilled sheaves are named OV_BASE + pool id
OV_BASE = 1 << 40
NUMA_NO_NODE = -1
BATCH = PCS_BATCH_MAX
SHRINK_PROMOTE_MAX = 32
#: headroom checked before each command (a command allocates at most two sheaf structs)
SHEAF_HEADROOM = 4

#: No NRT: every array is allocated by ``_State`` in Python, and without NRT a call passing
#: arrays costs no atomic reference-count updates (they dominated the replay's time before).
_jit = njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]


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
    ops = P[P_OPS]
    size -= 1
    sid = p[size] // ops
    lookahead = 3
    same = size
    while size:
        size -= 1
        o = p[size]
        if o // ops == sid:
            same -= 1
            if size != same:
                t = p[same]
                p[same] = p[size]
                p[size] = t
            continue
        lookahead -= 1
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
        for _ in range(n_take):
            nf -= 1
            out[got] = slf[row, nf]
            got += 1
        slm[row, SL_NFREE] = nf
        slm[row, SL_INUSE] = ops - nf
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


@_jit
def s73_slab_free(row, p, lo, hi, P, g, nd, slm, slf, sidr, rfree):
    """F5 ``__slab_free`` of the chain ``p[hi-1], p[hi-2], ..., p[lo]`` (push order)."""
    node = slm[row, SL_NODE]
    nf = slm[row, SL_NFREE]
    was_full = nf == 0
    on_partial = slm[row, SL_WHERE] == W_NODE_PARTIAL
    for j in range(hi - 1, lo - 1, -1):
        slf[row, nf] = p[j]
        nf += 1
    slm[row, SL_NFREE] = nf
    slm[row, SL_INUSE] -= hi - lo
    inuse = slm[row, SL_INUSE]
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


@_jit
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
        row = sidr[sid]
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


@_jit
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
def _exec(
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
    ncpus = P[P_CPUS]
    nnodes = P[P_NODES]
    hit_a = ALLOC_CPU_SHEAF if v618 else ALLOC_FASTPATH
    hit_f = FREE_CPU_SHEAF if v618 else FREE_FASTPATH
    base_rows = cap // ops + 3
    for i in range(i0, n_cmd):
        k = cmd[i]
        cp = np.int64(cpu[i])
        # room for what this command may create (see run: pools grow, then we resume)
        if g[G_SFREE_N] < SHEAF_HEADROOM:
            g[G_STATUS] = ST_GROW
            return i
        if k != C_FREE and k != C_RCU_GP:
            need_rows = base_rows
            if k == C_ALLOC_BULK or k == C_PREFILL or k == C_REFILL_SHEAF:
                need_rows += b[i] // ops + 2
            if (
                g[G_OVFREE_N] < 2
                or g[G_RFREE_N] < need_rows
                or len(sidr) - g[G_NSLABS] < need_rows
                or (k == C_KFREE_RCU and g[G_CRQ_N] >= len(crq))
            ):
                g[G_STATUS] = ST_GROW
                return i
        # advance(ts): lazy occupancy integration (reference SheafModel.advance)
        t = ts[i]
        if g[G_T_SET] == 0:
            g[G_T_SET] = 1
            g[G_T_FIRST] = t
            g[G_T_LAST] = t
            for x in range(ncpus):
                pc[x, PC_SINCE] = t
            for x in range(nnodes):
                nd[x, ND_SINCE] = t
        elif t > g[G_T_LAST]:
            g[G_T_LAST] = t
        now = g[G_T_LAST]

        if k == C_ALLOC:
            node = c[i]
            if has_pcs and node == NUMA_NO_NODE:
                m = pc[cp, PC_MAIN]
                size = shm[m, SH_SZ]
                if size > 0:
                    # A2 hit, inline. Its _sample(cpu) reduces to the CPU's held objects going
                    # down by one: no barn, sheaf struct or held peak can change.
                    obj = sho[m, size - 1]
                    shm[m, SH_SZ] = size - 1
                    g[hit_a] += 1
                    v = pc[cp, PC_VAL]
                    pc[cp, PC_INT] += v * (now - pc[cp, PC_SINCE])
                    pc[cp, PC_SINCE] = now
                    pc[cp, PC_VAL] = v - 1
                    g[X_HELD] -= 1
                    objs[a[i]] = obj
                    continue
            if not has_pcs:
                # a 6.18 cache without sheaves: nothing the sample looks at can change (no
                # sheaf, no barn, no term of the held-objects identity), so it is skipped
                row = pc[cp, PC_CSLAB]
                n = pc[cp, PC_CFN]
                if n > 0 and row >= 0 and (node == NUMA_NO_NODE or slm[row, SL_NODE] == node):
                    g[ALLOC_FASTPATH] += 1  # X4 CPU freelist, inline
                    pc[cp, PC_CFN] = n - 1
                    objs[a[i]] = cfree[cp, n - 1]
                else:
                    objs[a[i]] = s618_slab_alloc(
                        cp, node, P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt
                    )
                continue
            obj = alloc_from_pcs(cp, node, b[i] != 0)
            if obj < 0:
                obj = slab_alloc_one(cp, node, P, cn, g, pc, nd, slm, slf, cfree, sidr, rfree, mt)
            sample(cp, P, cn, g, pc, nd, shm)
            objs[a[i]] = obj
        elif k == C_FREE:
            obj = objs[a[i]]
            if obj < 0:
                skips[K_FREE] += 1
                continue
            objs[a[i]] = -1
            local = has_pcs and (nnodes == 1 or obj_node(obj, P, slm, sidr) == cn[cp])
            if local:
                m = pc[cp, PC_MAIN]
                size = shm[m, SH_SZ]
                if size != cap:
                    # F2 hit, inline; _sample(cpu) reduces to one more held object
                    sho[m, size] = obj
                    shm[m, SH_SZ] = size + 1
                    g[hit_f] += 1
                    v = pc[cp, PC_VAL]
                    pc[cp, PC_INT] += v * (now - pc[cp, PC_SINCE])
                    pc[cp, PC_SINCE] = now
                    pc[cp, PC_VAL] = v + 1
                    if v + 1 > pc[cp, PC_MAX]:
                        pc[cp, PC_MAX] = v + 1
                    held = g[X_HELD] + 1
                    g[X_HELD] = held
                    if held > g[X_HELD_MAX]:
                        g[X_HELD_MAX] = held
                    continue
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
            if not local or cap == 0:
                # straight to the slab (a remote object; F3.1 with no sheaves): no sheaf
                # changes, so the sample would be a no-op
                slab_free_one(cp, obj, P, g, pc, nd, slm, slf, cfree, sidr, rfree, one)
                continue
            if pcs_replace_full_main(cp):
                m = pc[cp, PC_MAIN]
                size = shm[m, SH_SZ]
                sho[m, size] = obj
                shm[m, SH_SZ] = size + 1
                g[hit_f] += 1
            else:
                slab_free_one(cp, obj, P, g, pc, nd, slm, slf, cfree, sidr, rfree, one)
            sample(cp, P, cn, g, pc, nd, shm)
        elif k == C_KFREE_RCU:
            obj = objs[a[i]]
            if obj < 0:
                skips[K_KFREE_RCU] += 1
                continue
            if not (has_pcs and obj_node(obj, P, slm, sidr) == cn[cp] and kfree_rcu_sheaf(cp, obj)):
                q = g[G_CRQ_N]
                crq[q, 0] = cp
                crq[q, 1] = obj
                g[G_CRQ_N] = q + 1
                g[X_KFREE_RCU_CLASSIC] += 1
            sample(cp, P, cn, g, pc, nd, shm)
            objs[a[i]] = -1
        elif k == C_RCU_GP:
            rcu_grace_period()
        elif k == C_PREFILL:
            h = prefill(cp, b[i])
            if g[G_STATUS] == ST_ERROR:
                return i
            pslot[a[i]] = h
        elif k == C_ALLOC_FROM_SHEAF:
            h = pslot[b[i]]
            if h < 0:
                skips[K_POP_NONE] += 1
                continue
            o = h - OV_BASE
            if h >= OV_BASE:
                size = ovm[o, OV_SZ]
            else:
                size = shm[h, SH_SZ]
            if size == 0:
                g[X_ALLOC_FROM_SHEAF_NULL] += 1
                skips[K_POP_EMPTY] += 1
                continue
            g[X_ALLOC_FROM_SHEAF] += 1
            if h >= OV_BASE:
                ovm[o, OV_SZ] = size - 1
                obj = ovo[o, size - 1]
            else:
                shm[h, SH_SZ] = size - 1
                obj = sho[h, size - 1]
            sample(cp, P, cn, g, pc, nd, shm)
            objs[a[i]] = obj
        elif k == C_RETURN_SHEAF:
            h = pslot[a[i]]
            if h >= 0:
                return_sheaf(cp, h)
                pslot[a[i]] = -1
        elif k == C_REFILL_SHEAF:
            h = pslot[a[i]]
            if h < 0:
                skips[K_REFILL_NONE] += 1
                continue
            pslot[a[i]] = refill_prefilled(cp, h, b[i])
            if g[G_STATUS] == ST_ERROR:
                return i
        elif k == C_ALLOC_BULK:
            off = a[i]
            kk = b[i]
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
            off = a[i]
            kk = b[i]
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
            return i
    g[G_STATUS] = ST_DONE
    return n_cmd


# ----------------------------------------------------------------------------- compile cache
def needs_compile() -> bool:
    """True when the next ``run`` will compile the engine (no usable on-disk cache yet).

    Library code does not print; the CLI asks this before the first replay and says on
    standard error that it is compiling. A best guess: the on-disk index of the interpreter
    must exist and match this source file.
    """
    ex = _exec
    if ex.signatures:
        return False
    try:
        cache = ex._cache  # numba internals: FunctionCache
        overloads = cache._cache_file._load_index()
        return not overloads
    except Exception:  # noqa: BLE001 - any doubt means "may compile"
        return True


# ----------------------------------------------------------------------------- driver
class _State:
    """The engine's arrays; pools grow between commands (never during one)."""

    def __init__(self, plan: Plan, params: ModelParams) -> None:
        p = params
        v618 = p.kernel == "6.18"
        cap = p.sheaf_capacity
        ops = p.objects_per_slab
        has_pcs = (not v618) or cap > 0
        cmd = plan.cmd
        sizes = plan.b[(cmd == 4) | (cmd == 9)]
        ov_width = int(sizes.max()) if len(sizes) else 1
        bulk = plan.b[(cmd == 7) | (cmd == 8)]
        max_bulk = int(bulk.max()) if len(bulk) else 0
        q = float(p.remote_skip_probability)
        self.P = np.array(
            [
                cap,
                ops,
                p.cpus,
                p.nodes,
                int(v618),
                p.max_full_sheaves,
                p.max_empty_sheaves,
                p.min_partial,
                p.cpu_partial,
                p.cpu_partial_slabs,
                int(has_pcs),
                0,  # the gate probability travels as float bits in mt[625]
            ],
            dtype=np.int64,
        )
        assert len(self.P) == P_LEN
        self.cn = np.array(p.cpu_node, dtype=np.int64)
        self.g = np.zeros(G_LEN, dtype=np.int64)
        self.g[G_RQ_HEAD] = -1
        self.g[G_RQ_TAIL] = -1
        self.pc = np.zeros((p.cpus, PC_LEN), dtype=np.int64)
        self.pc[:, [PC_MAIN, PC_SPARE, PC_RCU, PC_CSLAB, PC_CPH]] = -1
        self.nd = np.zeros((p.nodes, ND_LEN), dtype=np.int64)
        self.nd[:, [ND_FH, ND_EH, ND_PH, ND_PT]] = -1
        n_sh = 16 + 4 * p.cpus
        self.shm = np.zeros((0, SH_LEN), dtype=np.int64)
        self.sho = np.zeros((0, max(cap, 1)), dtype=np.int64)
        self.sfree = np.zeros(0, dtype=np.int64)
        self.g[G_SFREE_N] = 0
        self._grow_sheaves(n_sh)
        self.ovm = np.zeros((0, OV_LEN), dtype=np.int64)
        self.ovo = np.zeros((0, max(ov_width, 1)), dtype=np.int64)
        self.ovfree = np.zeros(0, dtype=np.int64)
        self._grow_oversize(4)
        self.slm = np.zeros((0, SL_LEN), dtype=np.int64)
        self.slf = np.zeros((0, ops), dtype=np.int64)
        self.rfree = np.zeros(0, dtype=np.int64)
        self._grow_rows(64 + 2 * (cap + max_bulk + ov_width) // ops)
        self.sidr = np.full(256 + len(self.rfree), -1, dtype=np.int64)
        self.cfree = np.zeros((p.cpus, ops if v618 else 1), dtype=np.int64)
        self.crq = np.zeros((64, 2), dtype=np.int64)
        self.crq2 = np.zeros(64, dtype=np.int64)
        rs = random.Random(p.seed).getstate()[1]
        self.mt = np.zeros(626, dtype=np.int64)
        self.mt[:625] = rs
        self.mt[625:626] = np.array([q], dtype=np.float64).view(np.int64)
        self.objs = np.full(plan.n_objects, -1, dtype=np.int64)
        self.pslot = np.full(plan.n_sheaves, -1, dtype=np.int64)
        self.skips = np.zeros(len(SKIP_NAMES), dtype=np.int64)
        self.scr = np.zeros(max(max_bulk, cap, ov_width) + BATCH + 8, dtype=np.int64)
        self.one = np.zeros(1, dtype=np.int64)
        self.bk = np.zeros(35, dtype=np.int64)
        # initial per-CPU sheaves (D9; D6 bootstrap sheaf for a 7.3 cache with cap 0; X1: none
        # for a 6.18 cache without sheaves)
        for cpu in range(p.cpus):
            if not has_pcs:
                continue
            self.g[G_SFREE_N] -= 1
            s = self.sfree[self.g[G_SFREE_N]]
            self.shm[s, SH_SZ] = 0
            self.shm[s, SH_NX] = -1
            self.shm[s, SH_NODE] = -1
            self.pc[cpu, PC_MAIN] = s
            if cap > 0:
                self.g[SHEAF_ALLOC] += 1
                self.g[X_SHEAVES_LIVE] += 1
        # the reference samples once at construction (every CPU and node)
        self.g[X_SHEAVES_LIVE_MAX] = self.g[X_SHEAVES_LIVE]

    def _grow_sheaves(self, n: int) -> None:
        old = len(self.shm)
        self.shm = np.concatenate([self.shm, np.zeros((n, SH_LEN), dtype=np.int64)])
        self.sho = np.concatenate([self.sho, np.zeros((n, self.sho.shape[1]), dtype=np.int64)])
        free_n = int(self.g[G_SFREE_N])
        # new ids go under the free stack so recycled ids keep being reused first
        self.sfree = _free_stack(old, n, self.sfree[:free_n])
        self.g[G_SFREE_N] = free_n + n

    def _grow_oversize(self, n: int) -> None:
        old = len(self.ovm)
        self.ovm = np.concatenate([self.ovm, np.zeros((n, OV_LEN), dtype=np.int64)])
        self.ovo = np.concatenate([self.ovo, np.zeros((n, self.ovo.shape[1]), dtype=np.int64)])
        free_n = int(self.g[G_OVFREE_N])
        self.ovfree = _free_stack(old, n, self.ovfree[:free_n])
        self.g[G_OVFREE_N] = free_n + n

    def _grow_rows(self, n: int) -> None:
        old = len(self.slm)
        self.slm = np.concatenate([self.slm, np.zeros((n, SL_LEN), dtype=np.int64)])
        self.slf = np.concatenate([self.slf, np.zeros((n, self.slf.shape[1]), dtype=np.int64)])
        free_n = int(self.g[G_RFREE_N])
        self.rfree = _free_stack(old, n, self.rfree[:free_n])
        self.g[G_RFREE_N] = free_n + n

    def grow(self, need_rows: int) -> None:
        """Double every pool that is short of the headroom the next command may need."""
        g = self.g
        if g[G_SFREE_N] < SHEAF_HEADROOM:
            self._grow_sheaves(max(len(self.shm), SHEAF_HEADROOM))
        if g[G_OVFREE_N] < 2:
            self._grow_oversize(max(len(self.ovm), 2))
        if g[G_RFREE_N] < need_rows:
            self._grow_rows(max(len(self.slm), need_rows))
        if len(self.sidr) - g[G_NSLABS] < need_rows:
            extra = max(len(self.sidr), need_rows)
            self.sidr = np.concatenate([self.sidr, np.full(extra, -1, dtype=np.int64)])
        if g[G_CRQ_N] >= len(self.crq):
            self.crq = np.concatenate([self.crq, np.zeros_like(self.crq)])
            self.crq2 = np.zeros(len(self.crq), dtype=np.int64)


def _free_stack(old: int, n: int, free: np.ndarray) -> np.ndarray:
    """A free-id stack as long as the grown pool (every id may be free at once): the new ids
    ``old..old+n-1`` below the ids already free, so recycled ids keep being reused first."""
    stack = np.empty(old + n, dtype=np.int64)
    stack[:n] = np.arange(old + n - 1, old - 1, -1, dtype=np.int64)
    stack[n : n + len(free)] = free
    return stack


def _columns(plan: Plan) -> tuple[np.ndarray, ...]:
    """The plan's columns with the exact dtypes the engine is compiled for (one signature)."""
    return (
        np.ascontiguousarray(plan.ts_ns, dtype=np.int64),
        np.ascontiguousarray(plan.cmd, dtype=np.uint8),
        np.ascontiguousarray(plan.cpu, dtype=np.uint16),
        np.ascontiguousarray(plan.a, dtype=np.int64),
        np.ascontiguousarray(plan.b, dtype=np.int64),
        np.ascontiguousarray(plan.c, dtype=np.int64),
        np.ascontiguousarray(plan.aux, dtype=np.int64),
    )


def _check(plan: Plan, params: ModelParams) -> None:
    """Reject plans the reference would fail on with an IndexError (and we would corrupt)."""
    if len(plan) == 0:
        return
    if int(plan.cpu.max()) >= params.cpus:
        raise ValueError(f"plan uses CPU {int(plan.cpu.max())} but params has {params.cpus}")
    alloc = plan.cmd == 0
    if np.any(alloc) and int(plan.c[alloc].max()) >= params.nodes:
        raise ValueError(f"plan allocates on node {int(plan.c[alloc].max())} of {params.nodes}")


def _run_cols(cols: tuple[np.ndarray, ...], plan: Plan, params: ModelParams) -> ReplayResult:
    return _result(_run_state(cols, plan, params), params)


def _run_state(cols: tuple[np.ndarray, ...], plan: Plan, params: ModelParams) -> _State:
    ex = _exec
    s = _State(plan, params)
    ts, cmd, cpu, a, b, c, aux = cols
    cap, ops = params.sheaf_capacity, params.objects_per_slab
    i = 0
    n = len(cmd)
    while True:
        i = ex(
            ts,
            cmd,
            cpu,
            a,
            b,
            c,
            aux,
            s.P,
            s.cn,
            s.g,
            s.pc,
            s.nd,
            s.shm,
            s.sho,
            s.sfree,
            s.ovm,
            s.ovo,
            s.ovfree,
            s.slm,
            s.slf,
            s.sidr,
            s.rfree,
            s.cfree,
            s.crq,
            s.crq2,
            s.mt,
            s.objs,
            s.pslot,
            s.skips,
            s.scr,
            s.one,
            s.bk,
            i,
        )
        st = int(s.g[G_STATUS])
        if st == ST_DONE:
            break
        if st == ST_ERROR:
            from sheaftune.model.reference import ModelError

            if cmd[i] in (4, 9):
                raise ModelError(
                    "6.18 kmem_cache_prefill_sheaf(size=0) on a cache without "
                    "sheaves dereferences NULL in the kernel"
                )
            raise ValueError(f"unknown plan command {int(cmd[i])}")
        k = int(cmd[i])
        need = cap // ops + 3 + (int(b[i]) // ops + 2 if k in (4, 7, 9) else 0)
        s.grow(need)
        s.g[G_STATUS] = ST_DONE
    assert i == n
    return s


def _result(s: _State, params: ModelParams) -> ReplayResult:
    g = s.g.tolist()
    idx = {name: i for i, name in enumerate(_STAT_NAMES)}
    counters = {}
    for name in STAT_ITEMS[params.kernel]:
        if name not in idx:
            raise RuntimeError(f"the fast engine does not model counter {name!r}")
        counters[name] = int(g[idx[name]])
    xidx = {name: len(_STAT_NAMES) + i for i, name in enumerate(_EXTRA_NAMES)}
    extras = {}
    for name in EXTRA:
        if name not in xidx:
            raise RuntimeError(f"the fast engine does not model extra {name!r}")
        extras[name] = int(g[xidx[name]])
    pc = s.pc
    nd = s.nd
    shm = s.shm
    t_set = bool(g[G_T_SET])
    span = int(g[G_T_LAST] - g[G_T_FIRST]) if t_set else 0

    def size(sid: int) -> int | None:
        return None if sid < 0 else int(shm[sid, SH_SZ])

    def mean(integral: int) -> float | None:
        return integral / span if span > 0 else None

    cpus = []
    snap_cpus = []
    now = int(g[G_T_LAST])
    for c in range(params.cpus):
        held = sum(
            x or 0 for x in (size(pc[c, PC_MAIN]), size(pc[c, PC_SPARE]), size(pc[c, PC_RCU]))
        )
        integral = int(pc[c, PC_INT])
        if t_set:
            integral += int(pc[c, PC_VAL]) * (now - int(pc[c, PC_SINCE]))
        cpus.append({"cpu": c, "now": held, "max": int(pc[c, PC_MAX]), "mean": mean(integral)})
        snap_cpus.append(
            {
                "cpu": c,
                "node": params.cpu_node[c],
                "main": size(pc[c, PC_MAIN]),
                "spare": size(pc[c, PC_SPARE]),
                "rcu_free": size(pc[c, PC_RCU]),
            }
        )
    nodes = []
    barns = []
    for n in range(params.nodes):
        integral = int(nd[n, ND_INT])
        if t_set:
            integral += int(nd[n, ND_VAL]) * (now - int(nd[n, ND_SINCE]))
        nodes.append(
            {
                "node": n,
                "barn_now": int(nd[n, ND_BHELD]),
                "barn_max": int(nd[n, ND_MAX]),
                "barn_mean": mean(integral),
            }
        )
        barns.append({"node": n, "full": int(nd[n, ND_FN]), "empty": int(nd[n, ND_EN])})
    skipped = {SKIP_NAMES[i]: int(v) for i, v in enumerate(s.skips.tolist()) if v}
    return ReplayResult(
        counters, extras, {"cpus": cpus, "nodes": nodes}, {"cpus": snap_cpus, "barns": barns},
        skipped,
    )  # fmt: skip


def _walk(head: int, nxt: np.ndarray, col: int) -> list[int]:
    out = []
    while head >= 0:
        out.append(int(head))
        head = int(nxt[head, col])
    return out


def full_state(s: _State, params: ModelParams) -> dict[str, Any]:
    """Every object's place, in the canonical form of ``SheafModel.full_state()`` (per-CPU
    sheaves bottom first, barn lists head last, rcu sheaves in flight, classic kfree_rcu
    batches, prefilled sheaves in creation order, the slab layer), for equality tests."""
    shm, sho, slm, slf = s.shm, s.sho, s.slm, s.slf

    def objs(sid: int) -> tuple[int, ...] | None:
        return None if sid < 0 else tuple(int(x) for x in sho[sid, : shm[sid, SH_SZ]])

    pcs = tuple(
        (objs(s.pc[c, PC_MAIN]), objs(s.pc[c, PC_SPARE]), objs(s.pc[c, PC_RCU]))
        for c in range(params.cpus)
    )
    barns = tuple(
        (
            tuple(objs(x) for x in reversed(_walk(s.nd[n, ND_FH], shm, SH_NX))),
            int(s.nd[n, ND_EN]),
        )
        for n in range(params.nodes)
    )
    rcu = tuple(
        (objs(x), int(shm[x, SH_RCPU]), ("barn", "nobarn")[shm[x, SH_RKIND]], int(shm[x, SH_NODE]))
        for x in _walk(s.g[G_RQ_HEAD], shm, SH_NX)
    )
    nq = int(s.g[G_CRQ_N])
    classic = tuple(
        tuple(int(o) for cc, o in s.crq[:nq].tolist() if cc == c) for c in range(params.cpus)
    )
    pre: list[tuple[int, int, tuple[int, ...] | None]] = []
    for h in s.pslot.tolist():
        if h >= OV_BASE:
            o = h - OV_BASE
            n_o = s.ovm[o, OV_SZ]
            pre.append(
                (int(s.ovm[o, OV_PSEQ]), int(s.ovm[o, OV_CAP]), tuple(s.ovo[o, :n_o].tolist()))
            )
        elif h >= 0:
            pre.append((int(shm[h, SH_PSEQ]), params.sheaf_capacity, objs(h)))
    prefilled = tuple((cap, ob) for _, cap, ob in sorted(pre))
    live = [sid for sid in range(int(s.g[G_NSLABS])) if s.sidr[sid] >= 0]
    slabs = []
    for sid in live:
        r = s.sidr[sid]
        slabs.append(
            (
                sid,
                int(slm[r, SL_NODE]),
                int(slm[r, SL_INUSE]),
                tuple(slf[r, : slm[r, SL_NFREE]].tolist()),
                int(slm[r, SL_WHERE]),
                int(slm[r, SL_OWNER]),
            )
        )
    slab: dict[str, object] = {
        "slabs": tuple(slabs),
        "partial": tuple(
            tuple(int(slm[r, SL_SID]) for r in _walk(s.nd[n, ND_PH], slm, SL_NEXT))
            for n in range(params.nodes)
        ),
    }
    if params.kernel == "6.18":
        slab["cpu_slab"] = tuple(
            -1 if s.pc[c, PC_CSLAB] < 0 else int(slm[s.pc[c, PC_CSLAB], SL_SID])
            for c in range(params.cpus)
        )
        slab["cpu_freelist"] = tuple(
            tuple(s.cfree[c, : s.pc[c, PC_CFN]].tolist()) for c in range(params.cpus)
        )
        slab["cpu_partial"] = tuple(
            tuple(int(slm[r, SL_SID]) for r in _walk(s.pc[c, PC_CPH], slm, SL_NEXT))
            for c in range(params.cpus)
        )
    return {
        "pcs": pcs,
        "barns": barns,
        "rcu_pending": rcu,
        "classic_rcu": classic,
        "prefilled": prefilled,
        "online": (True,) * params.cpus,
        "slab": slab,
    }


def run_with_state(plan: Plan, params: ModelParams) -> tuple[ReplayResult, dict[str, Any]]:
    """``run`` plus the final :func:`full_state` (for tests holding the engines equal)."""
    _check(plan, params)
    s = _run_state(_columns(plan), plan, params)
    return _result(s, params), full_state(s, params)


def run(plan: Plan, params: ModelParams) -> ReplayResult:
    """Replay ``plan`` with the compiled engine; the same result as ``run_reference``."""
    _check(plan, params)
    return _run_cols(_columns(plan), plan, params)


def run_many(
    plan: Plan,
    params_list: Sequence[ModelParams],
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[ReplayResult]:
    """Replay one plan under several parameter sets (a capacity sweep) in parallel threads.

    The compiled interpreter releases the GIL, so threads share the plan's columns without
    copying them; results come back in ``params_list`` order. ``progress(i)`` is called as
    each replay finishes (from the worker thread).
    """
    if not params_list:
        return []
    for p in params_list:
        _check(plan, p)
    cols = _columns(plan)
    workers = workers or min(len(params_list), os.cpu_count() or 1)

    def one(i: int) -> ReplayResult:
        r = _run_cols(cols, plan, params_list[i])
        if progress is not None:
            progress(i)
        return r

    if workers <= 1:
        return [one(i) for i in range(len(params_list))]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(len(params_list))))
