"""The trace-to-plan compiler: each rule of tracereplay's docstring, on small hand-made traces,
and the replay of the real fixture through the reference model."""

from __future__ import annotations

import numpy as np

from sheaftune import gfp
from sheaftune.analysis.sweep import BUCKET_CAPACITIES, capacities_for, parse_capacities
from sheaftune.analysis.tracereplay import (
    ReplayPolicy,
    build_plan,
    effective_capacity,
    params_for,
    replay_cache,
)
from sheaftune.events import COLUMNS, EventTable, Op, TraceMeta
from sheaftune.model.plan import Cmd
from sheaftune.normalize import normalize
from tests.conftest import fixture_path

A, F, KF = Op.KMEM_CACHE_ALLOC, Op.KMEM_CACHE_FREE, Op.KFREE
K, N = gfp.GFP_KERNEL, gfp.GFP_NOWAIT


def table(rows, sites=("mas_preallocate+0x1", "mas_wr_bnode+0x2")):
    """rows: (ts, cpu, op, ptr, site, gfp, pid)"""
    cols = {k: np.zeros(len(rows), dtype=d) for k, d in COLUMNS.items()}
    for i, (ts, cpu, op, ptr, site, flags, pid) in enumerate(rows):
        cols["ts_ns"][i], cols["cpu"][i], cols["op"][i], cols["ptr"][i] = ts, cpu, op, ptr
        cols["site_id"][i], cols["gfp"][i], cols["pid"][i] = site, flags, pid
    cols["node"][:] = -1
    cols["bytes_alloc"][:] = 256
    return EventTable(cols, ["maple_node"], list(sites), meta=TraceMeta(cpus=2))


def commands(plan):
    return [
        (Cmd(c).name, int(cpu), int(a))
        for c, cpu, a in zip(plan.cmd, plan.cpu, plan.a, strict=True)
    ]


def test_alloc_free_on_executing_cpu_and_pops_as_prefill():
    t = table(
        [
            (10, 0, A, 0x100, 0, K, 1),  # plain alloc, slot 0
            (20, 0, A, 0x200, 1, N, 1),  # pop, slot 1 } one prefill operation
            (21, 0, A, 0x300, 1, N, 1),  # pop, slot 2 }
            (30, 1, F, 0x100, 0, 0, 2),  # freed on CPU 1
            (40, 1, KF, 0x200, 0, 0, 2),  # kfree of a maple node: attributed by pointer
            (50, 0, F, 0x999, 0, 0, 1),  # allocated before the trace: skipped
        ]
    )
    plan = build_plan(normalize(t), "maple_node", ReplayPolicy(rcu_gp_ns=0, tree_height=3))
    assert commands(plan) == [
        ("ALLOC", 0, 0),
        ("PREFILL", 0, 0),
        ("ALLOC_FROM_SHEAF", 0, 1),
        ("ALLOC_FROM_SHEAF", 0, 2),
        ("RETURN_SHEAF", 0, 0),
        ("FREE", 1, 0),
        ("FREE", 1, 1),
    ]
    prefill = plan.b[plan.cmd == Cmd.PREFILL]
    assert prefill.tolist() == [7]  # split store at tree height 3: 2*3+1
    assert plan.c[plan.cmd == Cmd.ALLOC].tolist() == [-1]  # no node asked
    assert plan.b[plan.cmd == Cmd.ALLOC].tolist() == [1]  # GFP_KERNEL may block
    assert plan.assumptions["frees of objects allocated before the trace (skipped)"] == 1


def test_unseen_free_policy_and_grace_periods():
    rows = [(10, 1, A, 0x100, 0, K, 1), (5_000_000, 0, A, 0x100, 0, K, 1)]
    n = normalize(table(rows))
    plan = build_plan(n, "maple_node", ReplayPolicy(rcu_gp_ns=1_000_000))
    names = [c[0] for c in commands(plan)]
    assert names.count("RCU_GP") == 4
    i = names.index("KFREE_RCU")
    assert names[i + 1] == "ALLOC" and commands(plan)[i][1] == 1  # by the allocating CPU
    leaked = build_plan(n, "maple_node", ReplayPolicy(unseen_free="none", rcu_gp_ns=0))
    assert "KFREE_RCU" not in [c[0] for c in commands(leaked)]
    plain = build_plan(
        normalize(table([(1, 0, A, 0x1, 1, N, 1)])),
        "maple_node",
        ReplayPolicy(sheaf_pops="plain", rcu_gp_ns=0),
    )
    assert [c[0] for c in commands(plain)] == ["ALLOC"]


def test_effective_capacities_follow_the_kernel():
    assert effective_capacity("7.3", "maple_node", 256) == 32  # max(28, 32)
    assert effective_capacity("7.3", "vm_area_struct", 192) == 60  # max(60, 32)
    assert effective_capacity("7.3", "kmalloc-1k", 1024) == 12
    assert effective_capacity("6.18", "maple_node", 256) == 32
    assert effective_capacity("6.18", "dentry", 192) == 0


def test_capacity_option_parsing():
    spec = parse_capacities(["60", "4,12", "maple_node=120,kernel"])
    assert capacities_for(spec, "dentry", 60, 192, 0) == [4, 12, 60]
    assert capacities_for(spec, "maple_node", 32, 256, 32) == [32, 120]
    buckets = capacities_for(parse_capacities(["buckets"]), "maple_node", 32, 256, 32)
    assert buckets == sorted({*BUCKET_CAPACITIES, 32, 28})


def test_replay_of_the_real_trace_is_consistent():
    from sheaftune.analysis.pipeline import load

    n = normalize(load(str(fixture_path("traces/vma-small.v7zstd.dat"))))
    params = params_for(n, "vm_area_struct", "6.18")
    assert (params.sheaf_capacity, params.object_size, params.cpus) == (32, 192, 2)
    rep = replay_cache(n, "vm_area_struct", "6.18", parse_capacities(["4,32"]))
    small, big = rep["replays"]
    assert rep["plan"] == {"alloc": 2208, "free": 2208, "rcu_gp": 1}
    c = big["counters"]
    # every allocation and free went through the sheaf layer: hits plus misses add up
    assert c["alloc_cpu_sheaf"] + c["alloc_fastpath"] + c["alloc_slowpath"] >= 2208
    assert c["free_cpu_sheaf"] <= 2208 and c["free_cpu_sheaf"] > 2000
    # a smaller sheaf means more barn traffic
    assert small["barn_get_per_k"] > big["barn_get_per_k"]
    assert small["held_objects_max"] < big["held_objects_max"]


def test_node_specific_allocations_beyond_the_modelled_nodes_become_any_node():
    t = table([(10, 0, A, 0x100, 0, K, 1), (20, 1, A, 0x200, 0, K, 1)])
    t.node[:] = [1, 0]  # recorded on a two-node machine
    n = normalize(t)
    rep = replay_cache(n, "maple_node", "7.3", engine="reference")
    assert rep["nodes"] == 1
    assert any("node-specific" in k for k in rep["assumptions"])
    two = replay_cache(n, "maple_node", "7.3", engine="reference", nodes=2)
    assert not any("node-specific" in k for k in two["assumptions"])
