"""Rule-pinning scenarios: every file in tests/data/scenarios, with counters and state derived by
hand from spec/kernel-sheaves.md (the derivation is in each file's comments).

``counters`` lists the non-zero counters; every other counter of the kernel version must be 0.
``cpus`` is (main, spare, rcu_free) per CPU, ``barns`` (full, empty) per node.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sheaftune.model.counters import STAT_ITEMS
from sheaftune.model.scenario import load_scenario, run_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "data" / "scenarios"

EXPECT: dict[str, dict] = {
    "a3_first_alloc_refill": dict(
        counters=dict(
            alloc_fastpath=1, alloc_slab=1, sheaf_refill=4, sheaf_alloc=3, barn_get_fail=1
        ),
        cpus=[(3, 0, None), (0, None, None)],
        barns=[(0, 0)],
    ),
    "a3_spare_swap": dict(
        counters=dict(
            alloc_fastpath=7,
            free_fastpath=2,
            alloc_slab=1,
            sheaf_refill=8,
            sheaf_alloc=2,
            barn_get_fail=2,
        ),
        cpus=[(3, 0, None)],
        barns=[(0, 0)],
    ),
    "barn_exchange": dict(
        counters=dict(
            alloc_fastpath=20,
            alloc_slowpath=2,
            free_fastpath=20,
            free_slowpath=2,
            free_add_partial=1,
            alloc_slab=2,
            sheaf_refill=12,
            sheaf_alloc=5,
            barn_get=2,
            barn_get_fail=4,
            barn_put=3,
            barn_put_fail=1,
        ),
        cpus=[(0, 0, None), (4, 4, None)],
        barns=[(1, 0)],
    ),
    "f3_e2big_flush_spare": dict(
        counters=dict(
            alloc_slowpath=26,
            free_fastpath=26,
            alloc_slab=4,
            sheaf_flush=2,
            sheaf_alloc=12,
            barn_get_fail=1,
            barn_put=10,
            barn_put_fail=1,
        ),
        cpus=[(2, 2, None)],
        barns=[(10, 0)],
    ),
    "r1_refill_whole_slabs": dict(
        counters=dict(
            alloc_fastpath=13,
            alloc_slowpath=24,
            free_fastpath=6,
            free_slowpath=9,
            free_add_partial=2,
            alloc_slab=4,
            sheaf_refill=12,
            sheaf_alloc=2,
            barn_get_fail=3,
        ),
        cpus=[(5, 0, None)],
        barns=[(0, 0)],
    ),
    "numa_remote": dict(
        counters=dict(
            alloc_fastpath=1,
            alloc_slowpath=15,
            free_slowpath=13,
            free_add_partial=7,
            alloc_slab=8,
            alloc_node_mismatch=1,
            sheaf_refill=4,
            sheaf_alloc=3,
            barn_get_fail=2,
        ),
        cpus=[(0, None, None), (3, 0, None)],
        barns=[(0, 0), (0, 0)],
    ),
    "k_kfree_rcu_batch": dict(
        counters=dict(
            alloc_fastpath=9,
            free_rcu_sheaf=5,
            alloc_slab=1,
            sheaf_refill=8,
            sheaf_alloc=3,
            barn_get=1,
            barn_get_fail=2,
            barn_put=1,
        ),
        cpus=[(3, None, 1)],
        barns=[(0, 1)],
    ),
    "k4_barn_limits": dict(
        counters=dict(
            alloc_slowpath=23,
            free_rcu_sheaf=23,
            free_add_partial=2,
            alloc_slab=3,
            sheaf_flush=13,
            sheaf_alloc=22,
            sheaf_free=1,
            barn_get_fail=1,
            barn_put=10,
            barn_put_fail=13,
        ),
        cpus=[(0, None, None)],
        barns=[(10, 10)],
    ),
    "p_prefill_api": dict(
        counters=dict(
            alloc_fastpath=1,
            alloc_slowpath=17,
            free_add_partial=1,
            alloc_slab=5,
            sheaf_flush=6,
            sheaf_refill=16,
            sheaf_alloc=5,
            sheaf_free=1,
            barn_get=1,
            barn_get_fail=2,
            barn_put=1,
            sheaf_prefill_fast=2,
            sheaf_prefill_slow=2,
            sheaf_prefill_oversize=2,
            sheaf_return_fast=1,
            sheaf_return_slow=1,
        ),
        cpus=[(3, None, None)],
        barns=[(0, 0)],
        prefilled={"c": 9, "e": 4, "f": 4},
    ),
    "p6_return_barn_full": dict(
        counters=dict(
            alloc_slowpath=12,
            free_rcu_sheaf=12,
            free_add_partial=1,
            alloc_slab=2,
            sheaf_flush=1,
            sheaf_alloc=13,
            sheaf_free=1,
            barn_get=2,
            barn_get_fail=1,
            barn_put=12,
            sheaf_prefill_slow=2,
            sheaf_return_fast=1,
            sheaf_return_slow=1,
        ),
        cpus=[(0, 1, None)],
        barns=[(10, 0)],
    ),
    "l_flush_shrink_offline": dict(
        counters=dict(
            alloc_fastpath=4,
            free_rcu_sheaf=1,
            free_add_partial=2,
            alloc_slab=2,
            sheaf_flush=17,
            sheaf_refill=20,
            sheaf_alloc=6,
            sheaf_free=4,
            barn_get_fail=4,
            barn_put=1,
            sheaf_prefill_fast=1,
            sheaf_prefill_slow=1,
            sheaf_return_fast=1,
            sheaf_return_slow=1,
        ),
        cpus=[(0, None, None), (0, None, None)],
        barns=[(0, 0)],
    ),
    "d6_no_sheaves_slab_layer": dict(
        counters=dict(
            alloc_slowpath=20,
            free_rcu_sheaf_fail=1,
            free_slowpath=18,
            free_add_partial=9,
            free_remove_partial=3,
            alloc_slab=7,
            free_slab=3,
            sheaf_flush=2,
            sheaf_alloc=1,
            sheaf_free=1,
            sheaf_prefill_oversize=1,
        ),
        cpus=[(0, None, None)],
        barns=[(0, 0)],
    ),
    "b_bulk": dict(
        counters=dict(
            alloc_fastpath=9,
            alloc_slowpath=14,
            free_fastpath=17,
            free_slowpath=6,
            free_add_partial=1,
            alloc_slab=2,
            sheaf_alloc=2,
            barn_get_fail=3,
            barn_put_fail=1,
        ),
        cpus=[(4, 4, None)],
        barns=[(0, 0)],
    ),
    "p1_size0_73": dict(counters=dict(sheaf_alloc=1), cpus=[(0, None, None)], barns=[(0, 0)]),
    "x5_nowait_73": dict(
        counters=dict(
            alloc_fastpath=6,
            free_fastpath=2,
            alloc_slab=1,
            sheaf_refill=8,
            sheaf_alloc=2,
            barn_get_fail=2,
        ),
        cpus=[(4, 0, None)],
        barns=[(0, 0)],
    ),
    "x5_nowait_618": dict(
        counters=dict(
            alloc_cpu_sheaf=5,
            alloc_fastpath=7,
            alloc_slowpath=2,
            free_cpu_sheaf=2,
            alloc_slab=2,
            deactivate_bypass=1,
            sheaf_refill=8,
            sheaf_alloc=2,
            barn_get_fail=3,
        ),
        cpus=[(1, 4, None)],
        barns=[(0, 0)],
    ),
    "x1_no_sheaves_618": dict(
        counters=dict(
            alloc_fastpath=6,
            alloc_slowpath=1,
            free_fastpath=7,
            alloc_slab=1,
            sheaf_flush=2,
            sheaf_prefill_oversize=1,
        ),
        cpus=[(None, None, None)],
        barns=[(0, 0)],
    ),
    "x19_node_618": dict(
        counters=dict(
            alloc_fastpath=5,
            alloc_slowpath=2,
            free_fastpath=1,
            alloc_slab=2,
            alloc_node_mismatch=1,
            deactivate_to_head=1,
            sheaf_refill=4,
            sheaf_alloc=3,
            barn_get_fail=2,
        ),
        cpus=[(4, None, None), (0, None, None)],
        barns=[(0, 1), (0, 0)],
    ),
    "x18_shrink_618": dict(
        counters=dict(
            alloc_cpu_sheaf=1,
            alloc_fastpath=3,
            alloc_slowpath=1,
            free_cpu_sheaf=1,
            free_fastpath=3,
            alloc_slab=1,
            cpuslab_flush=1,
            deactivate_to_head=1,
            sheaf_flush=3,
            sheaf_refill=4,
            sheaf_alloc=2,
            sheaf_free=1,
            barn_get_fail=1,
        ),
        cpus=[(1, None, None)],
        barns=[(0, 0)],
    ),
    "x13_prefill_size0_618": dict(
        counters=dict(sheaf_alloc=2, barn_get_fail=1, sheaf_prefill_slow=1, sheaf_return_fast=1),
        cpus=[(0, 0, None)],
        barns=[(0, 0)],
    ),
    "l3_offline_rcu": dict(
        counters=dict(
            alloc_fastpath=2,
            free_rcu_sheaf=1,
            free_fastpath=1,
            alloc_slab=1,
            sheaf_flush=3,
            sheaf_refill=4,
            sheaf_alloc=3,
            sheaf_free=1,
            barn_get_fail=1,
        ),
        cpus=[(1, None, None), (0, None, None)],
        barns=[(0, 0)],
    ),
    "x9_classic_frees_618": dict(
        counters=dict(
            alloc_fastpath=6,
            alloc_slowpath=3,
            free_cpu_sheaf=1,
            free_slowpath=5,
            free_frozen=4,
            free_add_partial=1,
            alloc_slab=2,
            alloc_refill=1,
            deactivate_bypass=1,
            cpu_partial_free=1,
            sheaf_alloc=2,
            barn_get_fail=2,
        ),
        cpus=[(1, None, None), (0, None, None)],
        barns=[(0, 0), (0, 0)],
    ),
    "x12_kfree_rcu_618": dict(
        counters=dict(
            alloc_cpu_sheaf=3,
            alloc_fastpath=1,
            alloc_slowpath=1,
            free_rcu_sheaf=2,
            alloc_slab=1,
            sheaf_refill=2,
            sheaf_alloc=2,
            barn_get=1,
            barn_get_fail=1,
            barn_put=1,
        ),
        cpus=[(1, None, None)],
        barns=[(0, 1)],
    ),
    "d3_spare_any_level": dict(
        counters=dict(
            alloc_fastpath=6,
            free_fastpath=2,
            alloc_slab=2,
            sheaf_refill=16,
            sheaf_alloc=2,
            barn_get_fail=2,
            sheaf_prefill_fast=2,
            sheaf_return_fast=2,
        ),
        cpus=[(3, 4, None)],
        barns=[(0, 0)],
    ),
    "l3_offline_keeps_barn": dict(
        counters=dict(
            alloc_fastpath=1,
            alloc_slab=1,
            sheaf_flush=2,
            sheaf_refill=4,
            sheaf_alloc=4,
            sheaf_free=1,
            barn_get=1,
            barn_get_fail=2,
            barn_put=1,
            sheaf_prefill_slow=2,
            sheaf_return_fast=1,
            sheaf_return_slow=1,
        ),
        cpus=[(0, None, None), (1, None, None)],
        barns=[(0, 1)],
    ),
}


def test_every_scenario_file_has_expectations() -> None:
    names = {p.stem for p in SCENARIOS.glob("*.yaml")}
    assert names == set(EXPECT)


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_scenario(name: str) -> None:
    exp = EXPECT[name]
    scn = load_scenario(SCENARIOS / f"{name}.yaml")
    res = run_scenario(scn).to_dict()
    assert list(res["counters"]) == list(STAT_ITEMS[scn.kernel])
    want = {k: 0 for k in STAT_ITEMS[scn.kernel]}
    for k, v in exp["counters"].items():
        assert k in want, f"{k} is not a {scn.kernel} counter"
        want[k] = v
    got_nonzero = {k: v for k, v in res["counters"].items() if v}
    assert res["counters"] == want, f"non-zero counters: {got_nonzero}"
    assert [(c["main"], c["spare"], c["rcu_free"]) for c in res["cpus"]] == exp["cpus"]
    assert [(b["full"], b["empty"]) for b in res["barns"]] == exp["barns"]
    assert res["prefilled"] == exp.get("prefilled", {})
