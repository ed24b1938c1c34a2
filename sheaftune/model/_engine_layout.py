"""The fast engine's array layout: slot numbers, codes and limits shared by the compiled
kernels (``_engine_kernels``) and their Python driver (``fast``).

numba-free and import-free on purpose: the driver imports it without numba, and the AOT build
of the kernels hashes it (see ``sheaftune.compiled``), so every edit here rebuilds them.
"""

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
BATCH = 32  # params.PCS_BATCH_MAX (fast.py asserts it; not imported: params.py
#: would join the AOT cache key of the kernels)
SHRINK_PROMOTE_MAX = 32
#: headroom checked before each command (a command allocates at most two sheaf structs)
SHEAF_HEADROOM = 4

# ----------------------------------------------------------------------------- plan statistics
#: ``plan_stats``'s output: commands by code (``PS_HIST + code``), then the plan's highest CPU
#: (-1 when empty) and, over the commands that have them, the highest allocation node, prefill
#: or refill size, prefill size and bulk count (PS_NONE when there is no such command), then
#: after the first k commands: object-moving calls (a bulk call counts its objects), prefills.
PS_HIST = 0
PS_N_CMDS = 11
(
    PS_MAX_CPU, PS_MAX_NODE, PS_MAX_SIZE, PS_MAX_PREFILL, PS_MAX_BULK, PS_OPS, PS_PREFILLS,
    PS_LEN,
) = range(PS_N_CMDS, PS_N_CMDS + 8)  # fmt: skip
PS_NONE = -(1 << 62)
#: ``plan_stats``'s active-CPU flags: one byte per possible CPU number (plan CPUs are u16)
PS_CPUS = 1 << 16
