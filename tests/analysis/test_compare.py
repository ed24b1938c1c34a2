"""Prefill versus bulk: the issue's sanity (U = 30), the plans' equivalence, the record's keys,
and compare on a real trace and on a workload."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sheaftune.analysis.compare import (
    STRATEGIES,
    TIE_SHARE,
    Comparison,
    assign_pops,
    build_plan,
    compare_events,
    compare_synthetic,
    parse_used,
    synthetic_stream,
)
from sheaftune.costs import CostModel
from sheaftune.errors import NothingToAnalyse, UsageError
from sheaftune.events import OpTable
from sheaftune.model.plan import Cmd
from sheaftune.normalize import infer_operations, normalize
from tests.conftest import ROOT, fixture_path

OPS = 2_000  # per stream: enough for a steady state, fast with the reference engine


def cost(c: Comparison, strategy: str) -> float:
    return c.strategies[strategy]["cost_ns_per_op"]


@pytest.fixture(scope="module")
def few_used() -> dict[str, Comparison]:
    return {
        u: compare_synthetic(30, parse_used(u), cpus=4, ops_total=OPS, sweep=False)
        for u in ("1", "2", "3", "uniform:1-3")
    }


@pytest.fixture(scope="module")
def all_used() -> Comparison:
    return compare_synthetic(30, parse_used("30"), cpus=4, ops_total=OPS)


# --- the sanity -----------------------------------------------------------------------


@pytest.mark.parametrize("used", ["1", "2", "3", "uniform:1-3"])
def test_prefill_is_cheaper_when_few_of_30_are_used(few_used, used):
    c = few_used[used]
    assert c.winner == "prefill"
    assert cost(c, "prefill") < cost(c, "bulk")
    assert not c.tie


def test_bulk_is_at_least_as_cheap_when_all_30_are_used(all_used):
    assert cost(all_used, "bulk") <= cost(all_used, "prefill") * (1 + TIE_SHARE)


def test_crossover_lies_between(all_used):
    share = all_used.crossover_used_share
    assert share is not None
    assert 3 / 30 < share < 1.0
    pts = {p["used"]: p for p in all_used.crossover["points"]}
    assert pts[0]["prefill_ns_per_op"] < pts[0]["bulk_ns_per_op"]
    assert pts[30]["bulk_ns_per_op"] <= pts[30]["prefill_ns_per_op"]
    # the bracket was refined to neighbouring integers around the sign change
    k = int(share * 30)
    assert k in pts and k + 1 in pts
    assert "interpolation" in all_used.crossover["method"]


def test_oversize_bound_makes_bulk_win_everywhere():
    # U = 40 > capacity 32: every prefill is an oversize sheaf kmalloc'd and filled from slabs
    c = compare_synthetic(40, parse_used("2"), cpus=4, ops_total=OPS)
    assert c.winner == "bulk"
    assert c.strategies["prefill"]["oversize_prefills"] == c.operations["count"]
    assert c.crossover_used_share == 0.0


def test_costs_override_moves_the_verdict():
    expensive_bulk = CostModel(bulk_object=40.0)
    c = compare_synthetic(
        30, parse_used("30"), cpus=4, ops_total=OPS, sweep=False, costs=expensive_bulk
    )
    assert c.winner == "prefill"
    assert c.costs["bulk_object"] == 40.0


# --- the plans ----------------------------------------------------------------------------------


def test_plans_share_background_and_the_used_objects_lives():
    s = synthetic_stream(30, np.array([1, 3, 0, 2] * 50), cpus=2, ops_total=200)
    pre, bulk = build_plan(s, "prefill"), build_plan(s, "bulk")
    for cmd in (Cmd.ALLOC, Cmd.FREE, Cmd.KFREE_RCU, Cmd.RCU_GP):
        assert np.array_equal(pre.a[pre.cmd == cmd], bulk.a[bulk.cmd == cmd]), cmd
    k = s.used
    assert pre.counts()["prefill"] == pre.counts()["return_sheaf"] == s.n_ops
    assert pre.counts()["alloc_from_sheaf"] == k.sum()
    assert bulk.b[bulk.cmd == Cmd.ALLOC_BULK].sum() == 30 * s.n_ops
    assert bulk.b[bulk.cmd == Cmd.FREE_BULK].sum() == (30 - k).sum()

    # the objects bulk allocates and does not free right away are those the prefill plan pops
    def arrays(cmd: Cmd) -> set[int]:
        sel = bulk.cmd == cmd
        return {
            int(x)
            for a, b in zip(bulk.a[sel], bulk.b[sel], strict=True)
            for x in bulk.aux[a : a + b]
        }

    popped = set(pre.a[pre.cmd == Cmd.ALLOC_FROM_SHEAF].tolist())
    assert arrays(Cmd.ALLOC_BULK) - arrays(Cmd.FREE_BULK) == popped
    assert popped.isdisjoint(arrays(Cmd.FREE_BULK))


def test_prefill_plan_has_no_bulk_objects(few_used):
    st = few_used["2"].strategies
    assert st["prefill"]["bulk_objects_via_sheaves"] == {"alloc": 0, "free": 0}
    assert st["bulk"]["bulk_objects_via_sheaves"]["alloc"] > 0
    assert st["prefill"]["plan"]["prefill"] == few_used["2"].operations["count"]


def test_assign_pops_first_in_first_out():
    ops = OpTable(
        ts_ns=np.array([100, 150, 100]),
        cpu=np.array([0, 0, 1], dtype=np.uint16),
        cache_id=np.zeros(3, dtype=np.int32),
        upper_bound=np.array([5, 5, 5], dtype=np.uint32),
        used=np.array([2, 1, 1], dtype=np.uint32),
        pid=np.zeros(3, dtype=np.int32),
        site_id=np.zeros(3, dtype=np.int32),
    )
    rows = np.arange(6)
    cpu = np.array([0, 0, 0, 0, 1, 1])
    ts = np.array([90, 110, 160, 170, 120, 130])
    # the pop at 90 precedes every operation; op 0 takes 110 and 160, op 1 170; op 2 takes 120
    assert assign_pops(ops, rows, cpu, ts).tolist() == [-1, 0, 0, 1, 2, -1]


# --- --used -----------------------------------------------------------------------------------


def test_parse_used_forms():
    rng = np.random.default_rng(1)
    k, clipped = parse_used("uniform:1-3").sample(rng, 1000, 30)
    assert set(k.tolist()) == {1, 2, 3} and clipped == 0
    k, _ = parse_used("binom:30,0.1").sample(rng, 1000, 30)
    assert 2 < k.mean() < 4
    k, clipped = parse_used("7").sample(rng, 10, 5)
    assert k.tolist() == [5] * 10 and clipped == 10
    assert parse_used("poisson:2").kind == "scipy"


@pytest.mark.parametrize("bad", ["", "x", "uniform:3-1", "nosuch:1", "binom:a,b", "norm:"])
def test_parse_used_rejects(bad):
    with pytest.raises(UsageError):
        parse_used(bad)


# --- the record ---------------------------------------------------------------------------------


def test_record_keys(all_used):
    d = all_used.to_dict()
    assert d["schema"] == "sheaftune/comparison" and d["version"] == 1
    for key in ("strategies", "winner", "margin", "crossover_used_share", "source", "costs"):
        assert key in d
    assert d["winner"] in STRATEGIES
    assert set(d["strategies"]) == set(STRATEGIES)
    for s in STRATEGIES:
        st = d["strategies"][s]
        for key in (
            "cost_ns_per_op",
            "breakdown_ns_per_op",
            "slow_path_share",
            "counters",
            "objects_moved",
            "barn_lock",
            "list_lock",
            "sheaf_structs_allocated",
            "oversize_prefills",
            "held_objects_max",
            "held_objects_mean",
            "memory_held_bytes_max",
        ):
            assert key in st, key
        assert "alloc_fastpath" in st["counters"]
        assert abs(sum(st["breakdown_ns_per_op"].values()) - st["cost_ns_per_op"]) < 0.05
    assert d["source"] == "synthetic"
    assert any("synthetic stream" in n for n in d["notes"])


# --- real inputs ----------------------------------------------------------------------------


def test_real_trace_inferred_operations():
    from sheaftune.analysis.pipeline import load

    norm = normalize(load(str(fixture_path("traces/vma-small.v7zstd.dat"))))
    c = compare_events(norm, "maple_node", input_name="vma-small", sweep=False)
    assert c.source == "inferred"
    assert "inferred" in c.source_note
    assert c.operations["count"] > 200
    for s in STRATEGIES:
        assert c.strategies[s]["skipped"] == {}
        assert c.strategies[s]["cost_ns_per_op"] > 0
    ops, counts = infer_operations(norm, "maple_node")
    assert c.operations["count"] == len(ops)
    assert c.strategies["prefill"]["plan"]["alloc_from_sheaf"] == counts["sheaf_pops"]
    assert c.strategies["bulk"]["plan"]["alloc_bulk"] == c.operations["count"]
    assert any("inferred from" in n for n in c.notes)
    # --upper-bound replaces the store type's rule
    c2 = compare_events(norm, "maple_node", upper_bound=30, sweep=False)
    assert c2.operations["upper_bound"]["max"] >= 30


def test_workload_operations():
    from sheaftune.synth.generate import generate
    from sheaftune.synth.spec import load_spec

    spec = load_spec(str(ROOT / "workloads" / "maple-vma-churn.yaml"))
    syn = generate(spec, seed=0, events=4000)
    c = compare_events(
        normalize(syn.events), "maple_node", ops=syn.ops, source="workload", sweep=False
    )
    assert c.source == "workload"
    cid = syn.events.caches.index("maple_node")
    assert c.operations["count"] == int(np.count_nonzero(syn.ops.cache_id == cid))
    assert "sheaf pops not in any operation (replayed as ordinary allocations)" not in (
        c.assumptions
    )
    assert c.strategies["prefill"]["plan"]["alloc_from_sheaf"] == int(syn.ops.used.sum()) - (
        c.assumptions.get("used objects with no pop in the trace (left live)", 0)
    )


def test_no_operations_is_nothing_to_analyse():
    from sheaftune.analysis.pipeline import load

    norm = normalize(load(str(fixture_path("traces/vma-small.v7zstd.dat"))))
    with pytest.raises(NothingToAnalyse):
        compare_events(norm, "vm_area_struct", sweep=False)
    with pytest.raises(NothingToAnalyse):
        compare_events(norm, "no_such_cache", sweep=False)


def test_replace_kernel_618():
    c = compare_synthetic(30, parse_used("2"), cpus=2, ops_total=400, kernel="6.18", sweep=False)
    assert c.kernel == "6.18"
    assert "alloc_cpu_sheaf" in c.strategies["prefill"]["counters"]
    assert dataclasses.asdict(c)["capacity"] == 32


def prefill_records_for(ops: OpTable, caches: list[str]) -> str:
    """The bpftrace prefill script's lines for ``ops`` (no real capture exists: this machine has
    no kprobes), on the trace's clock: prefill at the operation's time, its pops, return."""
    lines = ["# kmem-tsv/1 clock=bpftrace-nsecs source=kmem-prefill\n"]
    for i in range(len(ops)):
        ts, cpu, pid = int(ops.ts_ns[i]), int(ops.cpu[i]), int(ops.pid[i])
        u, k = int(ops.upper_bound[i]), int(ops.used[i])
        who = f"{cpu}\t{pid}\t{pid}"
        what = f"{0xFFFF888200000000 + 0x1000 * i:#x}\t0xffffffff81234567"
        tail = f"\t0xcc0\t-\t{caches[int(ops.cache_id[i])]}\tvmachurn\n"
        lines.append(f"{ts}\t{who}\tprefill_sheaf\t{what}\t{u}\t32{tail}")
        lines += [
            f"{ts + 1 + j}\t{who}\talloc_from_sheaf\t{what}\t1\t{32 - j}{tail}" for j in range(k)
        ]
        lines.append(f"{ts + 900}\t{who}\treturn_sheaf\t{what}\t{32 - k}\t32{tail}")
    return "".join(lines)


def test_capture_records_source(tmp_path):
    from sheaftune.capture.prefill_ops import ops_from_prefill_records, read_prefill_records
    from sheaftune.synth.generate import generate
    from sheaftune.synth.spec import load_spec

    syn = generate(load_spec(str(ROOT / "workloads" / "maple-vma-churn.yaml")), events=3000)
    path = tmp_path / "prefill.tsv"
    path.write_text(prefill_records_for(syn.ops, syn.events.caches))
    ops = ops_from_prefill_records(
        read_prefill_records(str(path)), list(syn.events.caches), list(syn.events.sites)
    )
    assert ops.source == "capture" and len(ops) == len(syn.ops)
    c = compare_events(normalize(syn.events), "maple_node", ops=ops, source="capture", sweep=False)
    assert c.source == "capture"
    assert "bpftrace" in c.source_note
    # every operation found its pops in the trace
    assert "used objects with no pop in the trace (left live)" not in c.assumptions
    assert c.strategies["prefill"]["plan"]["alloc_from_sheaf"] == int(syn.ops.used.sum())
