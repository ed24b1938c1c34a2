"""The kernel's SLUB stat counters, by kernel version, under their sysfs names (spec §8, X7).

Each tuple is the kernel's ``enum stat_item`` order, so a user can hold a result against
``/sys/kernel/slab/<cache>/<name>`` on a ``CONFIG_SLUB_STATS=y`` kernel. ``EXTRA`` lists what
the model also tracks though the kernel does not count it.
"""

from __future__ import annotations

#: 7.3 ``enum stat_item`` (slub.c:363; sysfs names slub.c:9520-9545).
STAT_ITEMS_7_3: tuple[str, ...] = (
    "alloc_fastpath",
    "alloc_slowpath",
    "free_rcu_sheaf",
    "free_rcu_sheaf_fail",
    "free_fastpath",
    "free_slowpath",
    "free_add_partial",
    "free_remove_partial",
    "alloc_slab",
    "alloc_node_mismatch",
    "free_slab",
    "order_fallback",
    "cmpxchg_double_fail",
    "sheaf_flush",
    "sheaf_refill",
    "sheaf_alloc",
    "sheaf_free",
    "barn_get",
    "barn_get_fail",
    "barn_put",
    "barn_put_fail",
    "sheaf_prefill_fast",
    "sheaf_prefill_slow",
    "sheaf_prefill_oversize",
    "sheaf_return_fast",
    "sheaf_return_slow",
)

#: 6.18 ``enum stat_item`` (6.18.35 mm/slub.c; X7): ALLOC_PCS/FREE_PCS are the sheaf hits, the
#: ``*_fastpath`` counters mean the old per-CPU slab freelist.
STAT_ITEMS_6_18: tuple[str, ...] = (
    "alloc_cpu_sheaf",
    "alloc_fastpath",
    "alloc_slowpath",
    "free_cpu_sheaf",
    "free_rcu_sheaf",
    "free_rcu_sheaf_fail",
    "free_fastpath",
    "free_slowpath",
    "free_frozen",
    "free_add_partial",
    "free_remove_partial",
    "alloc_from_partial",
    "alloc_slab",
    "alloc_refill",
    "alloc_node_mismatch",
    "free_slab",
    "cpuslab_flush",
    "deactivate_full",
    "deactivate_empty",
    "deactivate_to_head",
    "deactivate_to_tail",
    "deactivate_remote_frees",
    "deactivate_bypass",
    "order_fallback",
    "cmpxchg_double_cpu_fail",
    "cmpxchg_double_fail",
    "cpu_partial_alloc",
    "cpu_partial_free",
    "cpu_partial_node",
    "cpu_partial_drain",
    "sheaf_flush",
    "sheaf_refill",
    "sheaf_alloc",
    "sheaf_free",
    "barn_get",
    "barn_get_fail",
    "barn_put",
    "barn_put_fail",
    "sheaf_prefill_fast",
    "sheaf_prefill_slow",
    "sheaf_prefill_oversize",
    "sheaf_return_fast",
    "sheaf_return_slow",
)

STAT_ITEMS: dict[str, tuple[str, ...]] = {"7.3": STAT_ITEMS_7_3, "6.18": STAT_ITEMS_6_18}

#: name -> meaning of what the model tracks beyond the kernel's counters.
EXTRA: dict[str, str] = {
    "barn_lock": "barn spinlock acquisitions (BARN), all nodes",
    "spare_swap": "exchanges of main and spare (A3.2, F3.3, B2, B3; no kernel stat)",
    "list_lock": "slab partial-list lock acquisitions (LIST), all nodes",
    "sheaves_live": "sheaf structs currently allocated (per-CPU, barn, rcu, prefilled)",
    "sheaves_live_max": "peak of sheaves_live",
    "held_objects": "objects currently held in any sheaf (per-CPU, barn, rcu, prefilled)",
    "held_objects_max": "peak of held_objects",
    "barn_full_max": "peak number of full sheaves in any one barn",
    "barn_empty_max": "peak number of empty sheaves in any one barn",
    "slabs_live": "slabs currently allocated",
    "slabs_shrunk": "empty slabs freed by kmem_cache_shrink (not counted in free_slab)",
    "alloc_from_sheaf": "objects popped from prefilled sheaves (P3; the kernel counts none)",
    "alloc_from_sheaf_null": "kmem_cache_alloc_from_sheaf calls on an empty sheaf (NULL)",
    "oversize_objects": "objects bulk-allocated from slabs into oversize prefilled sheaves",
    "kfree_rcu_classic": "kfree_rcu objects that went to the classic batching (K6)",
}
