"""The trace-to-plan compiler: each rule of tracereplay's docstring, on small hand-made traces,
and the replay of the real fixture through the reference model."""

from __future__ import annotations

import numpy as np
import pytest

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


# --- the compiled plan builder against the sorting one it replaced ---------------------------


def _oracle_commands(norm, cache, policy):
    """Every command of the plan as the builder before the compiled one made them: each kind
    as numpy columns (ts, seq, cmd, cpu, a, b, c) plus the event it is anchored at, in the
    order that builder concatenated them; then ``_oracle_plan`` sorts a window of them."""
    from sheaftune.normalize import alloc_mask, index_dtype, rows_of_cache, sheaf_pop_runs

    t = norm.table
    idx = index_dtype(len(t))
    rows = rows_of_cache(norm, cache).astype(idx)
    is_alloc = alloc_mask(t.op[rows])
    allocs = rows[is_alloc & (t.ptr[rows] != 0)]
    parts = []
    assumptions = {}

    def assume(what, n):
        if n:
            assumptions[what] = assumptions.get(what, 0) + int(n)

    def add(anchor, ts, seq, cmd, cpu, a=0, b=0, c=0):
        n = len(ts)
        cols = [np.broadcast_to(np.asarray(x, dtype=d), (n,)).copy() for x, d in zip(
            (ts, seq, cmd, cpu, a, b, c, anchor),
            (np.int64, np.int64, np.uint8, np.uint16, np.int64, np.int64, np.int64, np.int64),
            strict=True,
        )]  # fmt: skip
        parts.append(cols)

    def seq(e, d):
        return 2 * e.astype(np.int64) + d

    ts, cpu = t.ts_ns, t.cpu
    n_sheaves = 0
    is_pop = np.zeros(len(allocs), dtype=bool)
    if policy.sheaf_pops == "prefill":
        runs = sheaf_pop_runs(norm, cache, policy.upper_bound, policy.tree_height, rows=rows)
        if runs.n_runs:
            n_sheaves = runs.n_runs
            pops, run = runs.rows.astype(idx), runs.run.astype(idx)
            first = np.full(runs.n_runs, len(run))
            np.minimum.at(first, run, np.arange(len(run)))
            last = np.full(runs.n_runs, -1)
            np.maximum.at(last, run, np.arange(len(run)))
            fr, lr = pops[first], pops[last]
            by_lr = np.argsort(lr, kind="stable")
            lr = lr[by_lr]
            assume("sheaf pops replayed as prefill operations", len(pops))
            assume("prefill operations", runs.n_runs)
            is_pop[np.searchsorted(allocs, pops)] = True
            add(fr, ts[fr], seq(fr, -1), Cmd.PREFILL, cpu[fr], np.arange(len(fr)), runs.bound, 1)
            add(pops, ts[pops], seq(pops, 0), Cmd.ALLOC_FROM_SHEAF, cpu[pops],
                np.searchsorted(allocs, pops), run)  # fmt: skip
            add(lr, ts[lr], seq(lr, 1), Cmd.RETURN_SHEAF, cpu[lr], by_lr)
    frees = rows[~is_alloc & (t.ptr[rows] != 0)]
    src = norm.alloc_of[frees]
    pos = np.searchsorted(allocs, src)
    ok = (src >= 0) & (pos < len(allocs))
    ok[ok] = allocs[pos[ok]] == src[ok]
    matched = frees[ok]
    assume("frees of objects allocated before the trace (skipped)", np.sum(src < 0))
    assume("frees of objects allocated as another cache (skipped)", np.sum((src >= 0) & ~ok))
    unseen = allocs[norm.reused_by[allocs] >= 0]
    reuse = norm.reused_by[unseen] if policy.unseen_free == "rcu" else unseen[:0]
    if policy.unseen_free == "rcu":
        assume("unseen frees replayed as kfree_rcu on the allocating CPU", len(unseen))
    else:
        assume("unseen frees left live (policy none)", len(unseen))
        unseen = unseen[:0]
    assume("objects live at the end of the trace", np.sum(norm.live_at_end[allocs]))
    plain = allocs[~is_pop]
    add(plain, ts[plain], seq(plain, 0), Cmd.ALLOC, cpu[plain], np.nonzero(~is_pop)[0],
        (t.gfp[plain] & gfp.__GFP_DIRECT_RECLAIM) != 0, t.node[plain])  # fmt: skip
    add(matched, ts[matched], seq(matched, 0), Cmd.FREE, cpu[matched], pos[ok])
    add(reuse, ts[reuse], seq(reuse, -1), Cmd.KFREE_RCU, cpu[unseen],
        np.searchsorted(allocs, unseen))  # fmt: skip
    if len(allocs) and policy.rcu_gp_ns > 0:
        gps = np.arange(int(ts[allocs[0]]) + policy.rcu_gp_ns, int(ts[-1]) + 1, policy.rcu_gp_ns)
        add(np.searchsorted(ts, gps), gps, np.full(len(gps), -1), Cmd.RCU_GP, 0)
    cols = [np.concatenate([p[i] for p in parts]) for i in range(8)]
    return cols, len(allocs), n_sheaves, assumptions


def _oracle_plan(oracle, g0, g1):
    """The plan of the commands anchored at events g0..g1-1: a stable sort by (ts, seq)."""
    from sheaftune.model.plan import Plan

    cols, n_objects, n_sheaves, assumptions = oracle
    anchor = cols[7]
    pick = np.nonzero((anchor >= g0) & (anchor < g1))[0]
    ts, seq, cmd, cpu, a, b, c = (col[pick] for col in cols[:7])
    order = np.lexsort((seq, ts))
    return Plan(ts[order], cmd[order], cpu[order], a[order], b[order], c[order],
                np.empty(0, dtype=np.int64), n_objects, n_sheaves, dict(assumptions))  # fmt: skip


def _assert_same(new, old):
    for k in ("ts_ns", "cmd", "cpu", "a", "b", "c", "aux"):
        x, y = getattr(new, k), getattr(old, k)
        assert x.dtype == y.dtype and np.array_equal(x, y), k
    assert (new.n_objects, new.n_sheaves) == (old.n_objects, old.n_sheaves)
    assert list(new.assumptions.items()) == list(old.assumptions.items())


POLICIES = [
    ReplayPolicy(),
    ReplayPolicy("none", "plain", 1000),
    ReplayPolicy(rcu_gp_ns=50_000, upper_bound=5),  # grace periods between most events
]


def _same_plans(norm, policies=POLICIES, windows=(1, 7, 1000)):
    from sheaftune.analysis import tracereplay as tr

    rows = tr.cache_rows(norm)
    ts = norm.table.ts_ns
    for cache in norm.table.caches:
        for policy in policies:
            try:
                oracle = _oracle_commands(norm, cache, policy)
            except IndexError:  # a failed sheaf pop after the cache's last object: refused
                with pytest.raises(IndexError):
                    tr.CacheCommands(norm, cache, policy, rows[cache])
                continue
            cc = tr.CacheCommands(norm, cache, policy, rows[cache])
            _assert_same(cc.plan(), _oracle_plan(oracle, 0, len(ts)))
            for events in windows:
                # the edges windows() takes (never between two events of one time)
                edges = [0]
                while edges[-1] < len(ts):
                    b = edges[-1] + events
                    if b < len(ts):
                        b = int(np.searchsorted(ts, ts[b - 1], side="right"))
                    edges.append(min(b, len(ts)))
                want = [
                    _oracle_plan(oracle, g0, g1)
                    for g0, g1 in zip(edges[:-1], edges[1:], strict=True)
                ]
                want = [p for p in want if len(p)]
                got = list(cc.windows(events))
                assert len(got) == len(want)
                for new, old in zip(got, want, strict=True):
                    _assert_same(new, old)


def test_compiled_plans_equal_the_sorted_ones_on_real_traces():
    from sheaftune.readers import read_trace

    for name in ("traces/vma-small.v7zstd.dat", "traces/kmalloc-small.v7zstd.dat"):
        _same_plans(normalize(read_trace(str(fixture_path(name)))), windows=())


def test_compiled_plans_equal_the_sorted_ones_with_sheaf_pops():
    from sheaftune.synth.generate import generate
    from sheaftune.synth.spec import load_spec
    from tests.conftest import ROOT

    syn = generate(
        load_spec(ROOT / "workloads" / "will-it-scale-mmap2.yaml"), seed=0, cpus=4, events=8000
    )
    _same_plans(normalize(syn.events), windows=())


def test_compiled_plans_equal_the_sorted_ones_on_ties_and_disorder():
    """Random small traces with many equal timestamps (returns and prefills of adjacent events
    tie, grace periods land on event times), some failed allocations and frees of NULL, pointers
    reused across caches; then the same events out of time order (the builder sorts)."""
    rng = np.random.default_rng(7)
    for trial in range(60):
        n = int(rng.integers(1, 400))
        ops = rng.choice([A, A, F, KF, Op.KMALLOC], n)
        ptrs = rng.integers(0, 12, n) * 0x40  # 0: failed allocation or free of NULL
        rows = [
            (int(ts), int(cpu), int(op), int(p), int(site), int(fl), int(pid))
            for ts, cpu, op, p, site, fl, pid in zip(
                np.cumsum(rng.integers(0, 3, n)), rng.integers(0, 3, n), ops, ptrs,
                rng.integers(0, 2, n), rng.choice([K, N], n), rng.integers(1, 4, n), strict=True,
            )
        ]  # fmt: skip
        t = table(rows)
        t.bytes_alloc[:] = rng.choice([64, 256], n)
        if trial % 3 == 2:  # out of time order
            t.ts_ns[:] = rng.permutation(t.ts_ns)
        norm = normalize(t)
        policies = [ReplayPolicy(rcu_gp_ns=int(rng.integers(1, 6))), ReplayPolicy("none")]
        _same_plans(norm, policies, windows=(1, 5) if trial % 3 != 2 else ())


def test_window_edges_move_past_equal_timestamps() -> None:
    """``_past_ties`` (short slices, never the whole column) agrees with a whole-column
    search: ties shorter and longer than one slice, and up to the end of the trace."""
    from sheaftune.analysis import tracereplay

    rng = np.random.default_rng(7)
    ts = np.cumsum(rng.integers(0, 2, 20_000)).astype(np.int64)
    ts[5_000:15_000] = ts[5_000]  # a run of ties longer than two slices
    ts[-3_000:] = ts[-3_000]  # ties up to the last event
    for b in [1, 2, 4_999, 5_001, 9_000, 15_001, 17_001, 19_999, 20_000]:
        want = int(np.searchsorted(ts, ts[b - 1], side="right"))
        assert tracereplay._past_ties(ts, b) == want, b
