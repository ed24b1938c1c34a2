"""analysis.recommend: the kernel's autotune table, memory bounds, the objectives, the default
demand model, and the published maple_node case (will-it-scale mmap2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sheaftune.analysis.recommend import (
    CONTENTION_SHARE,
    RecommendOptions,
    bucket_capacity,
    candidate_capacities,
    choose,
    demand_plan,
    evaluate,
    recommend_for_cache,
    recommend_for_upper_bound,
    recommend_for_workload,
    sheaf_struct_bytes,
    solve_closed_loop,
    worst_case_memory,
)
from sheaftune.analysis.sweep import BUCKET_CAPACITIES
from sheaftune.costs import CostModel, closed_loop_time
from sheaftune.errors import UsageError
from sheaftune.model.plan import Cmd
from sheaftune.params import MAX_FULL_SHEAVES, ModelParams, autotune_capacity

ROOT = Path(__file__).resolve().parents[2]
MMAP2 = ROOT / "workloads" / "will-it-scale-mmap2.yaml"

# kernel-sheaves.md section 10, C3: slot size -> (capacity, sheaf bytes requested, bucket,
# max objects per CPU = 3*cap - 1, barn full limit in objects = 10 sheaves)
C3 = {
    8: (60, 512, 512, 179, 600),
    16: (60, 512, 512, 179, 600),
    32: (60, 512, 512, 179, 600),
    64: (60, 512, 512, 179, 600),
    96: (60, 512, 512, 179, 600),
    128: (60, 512, 512, 179, 600),
    192: (60, 512, 512, 179, 600),
    256: (28, 256, 256, 83, 280),
    512: (28, 256, 256, 83, 280),
    1024: (12, 128, 128, 35, 120),
    2048: (12, 128, 128, 35, 120),
    4096: (4, 64, 64, 11, 40),
    8192: (4, 64, 64, 11, 40),
}


@pytest.mark.parametrize("size", sorted(C3))
def test_autotune_table_of_section_10(size: int) -> None:
    cap, req, bucket, per_cpu, barn = C3[size]
    assert autotune_capacity(size) == cap
    assert 32 + 8 * cap == req  # C3's "sheaf bytes (req/bucket)": the request fills its bucket
    assert sheaf_struct_bytes(cap) == bucket
    assert bucket_capacity(cap) == cap
    mem = worst_case_memory(cap, size, 1, None)
    assert mem["bytes_per_cpu"] == per_cpu * size + 3 * bucket
    assert MAX_FULL_SHEAVES * cap == barn
    # the bracket edges of C3 (slot sizes just below the next bracket)
    assert autotune_capacity(255) == 60 and autotune_capacity(1023) == 28
    assert autotune_capacity(4095) == 12 and autotune_capacity(size, has_sheaves=False) == 0


def test_explicit_32_is_a_floor_and_wastes_its_bucket() -> None:
    # C3: maple_node (size 256, explicit 32) -> max(28, 32) = 32, sheaf struct 288 B in
    # kmalloc-512, which would hold 60 pointers
    assert autotune_capacity(256, 32) == 32
    assert sheaf_struct_bytes(32) == 512 and bucket_capacity(32) == 60
    assert bucket_capacity(120) == 124
    for cap in BUCKET_CAPACITIES:
        assert bucket_capacity(cap) == cap  # they exactly fill 64..4096-byte buckets


def test_worst_case_memory_counts_oversize_prefills_and_the_barn() -> None:
    m = worst_case_memory(32, 256, 64, None)
    per_cpu = (3 * 32 - 1) * 256 + 3 * 512
    barn = 10 * (32 * 256 + 512) + 10 * 512
    assert m == {
        "bytes_per_cpu": per_cpu,
        "bytes_per_node": 64 * per_cpu + barn,
        "barn_bytes": barn,
    }
    # an upper bound above the capacity adds one oversize sheaf per CPU (P1)
    over = worst_case_memory(4, 256, 1, 13)
    # the oversize struct: kmalloc_size_roundup(32 + 8*13 = 136) = 192
    assert over["bytes_per_cpu"] == (3 * 4 - 1) * 256 + 3 * 64 + 13 * 256 + 192
    assert worst_case_memory(32, 256, 1, 13)["bytes_per_cpu"] == per_cpu


def test_candidates() -> None:
    assert candidate_capacities(32, 32, (120, 0)) == [4, 12, 28, 32, 60, 120, 124, 252, 508]
    assert candidate_capacities(0, 60) == list(BUCKET_CAPACITIES)


def _cand(cap: int, ns: float, uncont: float | None = None, **kw: object) -> dict:
    mem = worst_case_memory(cap, 256, 4, kw.pop("ub", None))  # type: ignore[arg-type]
    d = {
        "capacity": cap,
        "cost_ns_per_op": ns,
        "contention_ns_per_op": ns - (uncont if uncont is not None else ns),
        "covers_upper_bound": True,
        "oversize_share": 0.0,
        "bytes_per_cpu": mem["bytes_per_cpu"],
        "bytes_per_node": mem["bytes_per_node"],
        "typical_bytes_per_node": mem["bytes_per_node"] // 3,
    }
    d.update(kw)
    return d


def test_balanced_takes_the_smallest_within_tolerance() -> None:
    cands = [_cand(28, 30.0), _cand(60, 20.5), _cand(124, 20.0), _cand(252, 19.9)]
    win, runner, why = choose(cands, "balanced")
    assert win["capacity"] == 60 and runner is not None and runner["capacity"] == 124
    assert "smallest capacity within 5% of the fastest" in why[0]
    assert any(line.startswith("runner-up 124") for line in why)
    assert choose(cands, "time")[0]["capacity"] == 252
    assert choose(cands, "memory")[0]["capacity"] == 28
    assert choose(cands, "balanced", tolerance=0.0)[0]["capacity"] == 252


def test_oversize_rule_and_memory_budget() -> None:
    cands = [
        _cand(4, 10.0, covers_upper_bound=False, oversize_share=1.0),
        _cand(12, 10.0, covers_upper_bound=False, oversize_share=0.005),
        _cand(28, 10.2),
    ]
    win, _, why = choose(cands, "balanced", upper_bound=13)
    assert win["capacity"] == 12  # under the 1% threshold, oversize prefills are ignored
    assert "excluded 4" in why[1]
    big = [_cand(28, 30.0), _cand(124, 20.0), _cand(508, 19.0)]
    budget = big[1]["bytes_per_node"]
    win, _, why = choose(big, "balanced", memory_budget=budget)
    assert win["capacity"] == 124 and any("excluded 508" in w for w in why)
    win, _, why = choose(big, "balanced", memory_budget=1)
    assert win["capacity"] == 28 and any("no candidate fits" in w for w in why)


def test_scaling_objective() -> None:
    cands = [_cand(28, 40.0, 20.0), _cand(60, 22.0, 20.0), _cand(124, 19.0, 18.5)]
    win, _, why = choose(cands, "scaling")
    assert win["capacity"] == 60 and "at most 10%" in why[0]
    hot = [_cand(28, 40.0, 20.0), _cand(60, 30.0, 20.0)]
    assert choose(hot, "scaling")[0]["capacity"] == 60


def test_solve_closed_loop_is_the_fixed_point() -> None:
    locks = [(0.0333, 43.2), (0.0248, 43.2)]
    t4, _ = solve_closed_loop(18.0, locks, 4)
    assert t4 == pytest.approx(closed_loop_time(18.0, locks, 4)[0], rel=1e-6)
    for n in (16, 64, 256):
        t, rhos = solve_closed_loop(18.0, locks, n)
        from sheaftune.costs import queue_wait

        rhs = 18.0 + sum(a * (s + queue_wait(s, (n - 1) * a * s / t)) for a, s in locks)
        assert t == pytest.approx(rhs, rel=1e-6)
        assert all(0 <= r <= 0.99 for r in rhos)


def test_closed_loop_time_is_its_definition_to_the_bit() -> None:
    """closed_loop_time's written-out right-hand side performs the definition's floating-point
    operations in the same order: the same root, utilisations and waits, bit for bit."""
    import random

    from sheaftune.costs import queue_wait

    def literal(base_ns: float, locks: list[tuple[float, float]], cpus: int) -> tuple:
        others = max(cpus - 1, 0)

        def rhs(t: float) -> float:
            return base_ns + sum(a * (s + queue_wait(s, others * a * s / t)) for a, s in locks)

        lo = base_ns + sum(a * s for a, s in locks)
        if lo <= 0:
            return 0.0, [0.0] * len(locks), [0.0] * len(locks)
        hi = rhs(lo)
        for _ in range(200):
            if hi - lo <= 1e-12 * hi:
                break
            mid = 0.5 * (lo + hi)
            if mid < rhs(mid):
                lo = mid
            else:
                hi = mid
        t = 0.5 * (lo + hi)
        rhos = [min(others * a * s / t, 0.99) for a, s in locks]
        return t, rhos, [queue_wait(s, r) for (_, s), r in zip(locks, rhos, strict=True)]

    r = random.Random(7)
    for _ in range(5000):
        locks = [
            (r.choice([0.0, r.random(), 5 * r.random(), r.expovariate(1.0)]),
             r.choice([26.2, 43.2, 100 * r.random()]))
            for _ in range(r.choice([0, 1, 2, 2, 2, 3]))
        ]  # fmt: skip
        base = r.choice([0.0, 50 * r.random(), r.expovariate(0.1)])
        cpus = r.choice([0, 1, 2, 4, 64, 256])
        assert closed_loop_time(base, locks, cpus) == literal(base, locks, cpus)


def test_fast_evaluate_equals_the_reference_with_prefix_replays() -> None:
    """The fast engine's warm-up cut is read during each capacity's one replay; the reference
    replays the warm-up prefix on its own: every candidate's figures are the same."""
    from sheaftune.analysis.pipeline import example_path, load
    from sheaftune.analysis.tracereplay import build_plan, params_for
    from sheaftune.normalize import normalize

    norm = normalize(load(example_path()))
    plans = [("upper", demand_plan(13, 2, writes_per_cpu=300, seed=1), ModelParams(cpus=2,
              cpu_node=(0, 0)))]  # fmt: skip
    for cache in ("maple_node", "vm_area_struct"):
        plans.append((cache, build_plan(norm, cache), params_for(norm, cache, "7.3")))
    for _, plan, base in plans:
        for share, cpn in ((0.25, 2), (0.5, 64), (0.0, 1)):
            kw = dict(
                costs=CostModel(), cpus_per_node=cpn, upper_bound=13, warmup_share=share
            )  # fmt: skip
            caps = [4, 12, 28, 32, 60]
            fast_c = evaluate(plan, base, caps, engine="fast", **kw)  # type: ignore[arg-type]
            ref_c = evaluate(plan, base, caps, engine="reference", **kw)  # type: ignore[arg-type]
            assert fast_c == ref_c


def test_demand_plan_is_deterministic_and_has_the_stated_shape() -> None:
    a = demand_plan(13, 2, writes_per_cpu=400, seed=3)
    b = demand_plan(13, 2, writes_per_cpu=400, seed=3)
    assert (a.cmd == b.cmd).all() and (a.a == b.a).all()
    n = a.counts()
    assert n["prefill"] == n["return_sheaf"]
    assert 0.15 < n["prefill"] / 800 < 0.30 and 0.5 < n["alloc"] / 800 < 0.75
    assert set(a.b[a.cmd == Cmd.PREFILL].tolist()) == {13}
    live = n["alloc"] + n["alloc_from_sheaf"] - n["kfree_rcu"]
    assert live == 2 * 64  # every CPU keeps its live nodes, the rest die through kfree_rcu


def test_upper_bound_alone_gives_a_versioned_record() -> None:
    rec = recommend_for_upper_bound(
        13, RecommendOptions(cpus=2, engine="reference"), writes_per_cpu=400
    )
    d = rec.to_dict()
    assert d["schema"] == "sheaftune/recommendation" and d["version"] == 1
    assert d["snippet"] == f".sheaf_capacity = {d['recommended']},"
    assert d["kernel_autotune"] == 32 and d["current"] == 32
    assert d["kernel_autotune_difference"] == d["recommended"] - 32
    caps = [c["capacity"] for c in d["candidates"]]
    assert caps == [4, 12, 28, 32, 60, 124, 252, 508]
    assert d["recommended"] >= 13  # 4 and 12 make every prefill oversize
    small = {c["capacity"]: c for c in d["candidates"]}
    assert small[4]["oversize_share"] == 1.0 and small[32]["oversize_share"] == 0.0
    assert small[32]["wastes_bucket"] and small[32]["bucket_capacity"] == 60
    assert d["demand"]["kind"] == "demand-model" and "kfree_rcu" in d["demand"]["model"]
    assert json.loads(json.dumps(d)) == d
    for c in d["candidates"]:
        assert c["bytes_per_node"] >= 2 * c["bytes_per_cpu"]
        assert 0 < c["typical_bytes_per_cpu"] <= c["bytes_per_cpu"]


def test_options_are_checked() -> None:
    with pytest.raises(UsageError):
        RecommendOptions(objective="fastest")
    with pytest.raises(UsageError):
        recommend_for_upper_bound(13, RecommendOptions(cpus=2, nodes=4))


def test_example_trace_replayed_as_is_and_scaled() -> None:
    from sheaftune.analysis.pipeline import example_path, load
    from sheaftune.normalize import normalize

    norm = normalize(load(example_path()))
    rec = recommend_for_cache(norm, "maple_node", RecommendOptions(cpus=64, engine="reference"))
    d = rec.to_dict()
    assert d["cpus"] == 64 and d["cpus_per_node"] == 64
    assert d["demand"]["replayed_cpus"] == 2 and "as they are" in d["demand"]["scaling"]
    assert d["kernel_autotune"] == 32 and d["object_size"] == 256


def test_workload_is_regenerated_for_the_cpus() -> None:
    from sheaftune.synth.spec import load_spec

    rec = recommend_for_workload(
        load_spec(MMAP2),
        "maple_node",
        RecommendOptions(cpus=2, kernel="6.18", engine="reference"),
        events_per_cpu=1500,
    )
    d = rec.to_dict()
    assert d["demand"]["kind"] == "workload" and d["demand"]["replayed_cpus"] == 2
    assert d["demand"]["rcu_gp_ns"] == 2_000_000  # the workload's rcu_delay_us
    assert d["current"] == 32 and d["kernel"] == "6.18"
    with pytest.raises(UsageError):
        recommend_for_workload(load_spec(MMAP2), "kmalloc-64", RecommendOptions(cpus=2))


@pytest.fixture(scope="module")
def mmap2_4cpu() -> tuple:
    """will-it-scale mmap2 on 4 CPUs, 12,000 visible events per CPU (three grace periods)."""
    from sheaftune.analysis.tracereplay import ReplayPolicy, build_plan
    from sheaftune.normalize import normalize
    from sheaftune.synth.generate import generate
    from sheaftune.synth.spec import load_spec

    syn = generate(load_spec(MMAP2), seed=0, cpus=4, events=4 * 12_000)
    plan = build_plan(normalize(syn.events), "maple_node", ReplayPolicy(rcu_gp_ns=2_000_000))
    base = ModelParams.for_cache(kernel="6.18", object_size=256, requested_capacity=32, cpus=4)
    return plan, base


def test_published_case_64_cpus_per_node(mmap2_4cpu: tuple) -> None:
    """costs-and-results.md: maple_node at 32 on a 64-core machine is barn-lock bound, and a
    larger capacity removes most of it. The trace of 4 CPUs is replayed as is and contention
    scaled to 64 CPUs per node (the trace route; docs/recommend.md has the regenerated sweep)."""
    plan, base = mmap2_4cpu
    cands = evaluate(
        plan,
        base,
        [32, 124, 252],
        engine="reference",
        costs=CostModel(),
        cpus_per_node=64,
        upper_bound=None,
    )
    by = {c["capacity"]: c for c in cands}
    c32 = by[32]
    assert c32["barn_utilisation"] > 0.5  # heavy barn traffic, a hot lock
    assert c32["contention_ns_per_op"] > 0.5 * c32["cost_ns_per_op"]
    assert by[124]["barn_lock_per_op"] < c32["barn_lock_per_op"] / 3
    assert by[124]["cost_ns_per_op"] < 0.75 * c32["cost_ns_per_op"]
    assert choose(cands, "balanced")[0]["capacity"] >= 124
    assert choose(cands, "scaling")[0]["capacity"] >= 124


def test_published_case_4_cpus_is_not_contended(mmap2_4cpu: tuple) -> None:
    """With 4 CPUs the same capacity 32 is not lock bound, and the scaling objective stays at
    the kernel's capacities. (The balanced objective still grows: see docs/recommend.md, the
    RCU flood that overflows the barn is independent of the CPU count.)"""
    plan, base = mmap2_4cpu
    cands = evaluate(
        plan,
        base,
        [12, 28, 32, 60],
        engine="reference",
        costs=CostModel(),
        cpus_per_node=4,
        upper_bound=None,
    )
    by = {c["capacity"]: c for c in cands}
    assert by[32]["contention_ns_per_op"] < CONTENTION_SHARE * by[32]["cost_ns_per_op"]
    assert by[32]["barn_utilisation"] < 0.3
    assert choose(cands, "scaling")[0]["capacity"] <= 32


def test_published_case_regenerated_for_64_and_4_cpus() -> None:
    """The docs/recommend.md sweep itself (6.18, 16,000 events per CPU), 64 and 4 CPUs."""
    from sheaftune.synth.spec import load_spec

    spec = load_spec(MMAP2)
    opts = RecommendOptions(cpus=64, nodes=1, kernel="6.18", engine="fast")
    d64 = recommend_for_workload(spec, "maple_node", opts, events_per_cpu=16_000).to_dict()
    by = {c["capacity"]: c for c in d64["candidates"]}
    assert by[32]["barn_utilisation"] > 0.9
    assert by[32]["contention_ns_per_op"] > 0.5 * by[32]["cost_ns_per_op"]
    assert d64["recommended"] >= 124 and by[124]["cost_ns_per_op"] < 0.9 * by[32]["cost_ns_per_op"]
    opts4 = RecommendOptions(cpus=4, nodes=1, kernel="6.18", engine="fast")
    d4 = recommend_for_workload(spec, "maple_node", opts4, events_per_cpu=16_000).to_dict()
    by4 = {c["capacity"]: c for c in d4["candidates"]}
    assert by4[32]["contention_ns_per_op"] < CONTENTION_SHARE * by4[32]["cost_ns_per_op"]
    assert choose(d4["candidates"], "scaling")[0]["capacity"] <= 32


# --------------------------------------------------- candidates analyze need not replay
def _pending_cases() -> list:
    """Pending recommendations with prefills: the bundled trace's maple_node (prefills of
    many sizes, the largest 33), and the default demand model at bounds 16 and 40 (every
    prefill of the bound) on 2 CPUs, at both kernels."""
    from sheaftune.analysis.pipeline import example_path, load
    from sheaftune.analysis.recommend import Pending, prepare_for_cache
    from sheaftune.normalize import normalize

    norm = normalize(load(example_path()))
    cases = [prepare_for_cache(norm, "maple_node", RecommendOptions())]
    for bound, kernel in ((16, "7.3"), (40, "6.18")):
        plan = demand_plan(bound, 2, writes_per_cpu=300, seed=1)
        base = ModelParams.for_cache(
            kernel=kernel, object_size=256, requested_capacity=32, cpus=2, nodes=1
        )
        cases.append(
            Pending.of(
                plan,
                base,
                cache="maple_node",
                options=RecommendOptions(kernel=kernel),
                current=32 if kernel == "6.18" else base.sheaf_capacity,
                demand={},
                upper_bound=bound,
                cpus=2,
                nodes=1,
            )  # fmt: skip
        )
    return cases


def test_unneeded_candidates_change_nothing_the_recommendation_says() -> None:
    skipped_any = False
    for pend in _pending_cases():
        full = pend.sweep.run_all()
        whole = pend.finish(full)
        skip = pend.unneeded()
        skipped_any |= bool(skip)
        caps = [p.sheaf_capacity for p in pend.sweep.params]
        by_cap = {c["capacity"]: c for c in whole.candidates}
        for i in skip:
            c = by_cap[caps[i]]
            # what the replay measured drops it: below the bound, oversize too often
            assert not c["covers_upper_bound"] and c["oversize_share"] >= whole.oversize_rare
            assert caps[i] not in (whole.current, whole.kernel_autotune)
        # and the rationale names them all among the excluded
        if skip:
            line = next(w for w in whole.rationale if "below the upper bound" in w)
            named = {int(x) for x in line.split(":")[0].removeprefix("excluded ").split(", ")}
            assert {caps[i] for i in skip} <= named, line
        part = pend.finish([None if i in skip else r for i, r in enumerate(full)])
        assert part.rationale == whole.rationale
        assert (part.recommended, part.runner_up, part.snippet) == (
            whole.recommended,
            whole.runner_up,
            whole.snippet,
        )
        for c_whole, c_part in zip(whole.candidates, part.candidates, strict=True):
            if c_part.get("replayed", True):
                assert c_part == c_whole
            else:
                # a floor of the share the replay measures, enough to drop it
                assert c_part["oversize_prefills"] <= c_whole["oversize_prefills"]
                assert whole.oversize_rare <= c_part["oversize_share"] <= c_whole["oversize_share"]
    assert skipped_any, "no case had a candidate to leave out: the test tests nothing"


def test_oversize_floors_count_the_prefills_above_each_capacity() -> None:
    pend = _pending_cases()[0]
    sweep = pend.sweep
    plan = sweep.plan
    sizes = plan.b[sweep.k :][plan.cmd[sweep.k :] == Cmd.PREFILL]
    assert len(sizes) == sweep.stats.prefills_after > 0
    floors = sweep.oversize_floors()
    for p, floor in zip(sweep.params, floors, strict=True):
        assert floor == sum(1 for s in sizes.tolist() if s > p.sheaf_capacity)
    # each prefill above the capacity is oversize in the replay (refills may add more)
    for (full, pre), floor in zip(sweep.run_all(), floors, strict=True):
        got = full.counters.get("sheaf_prefill_oversize", 0)
        got -= pre.counters.get("sheaf_prefill_oversize", 0) if pre is not None else 0
        assert got >= floor


def test_nothing_is_left_out_when_no_candidate_covers_the_bound() -> None:
    from sheaftune.analysis.recommend import Pending

    plan = demand_plan(600, 1, writes_per_cpu=40, seed=1)
    base = ModelParams.for_cache(
        kernel="7.3", object_size=256, requested_capacity=32, cpus=1, nodes=1
    )
    pend = Pending.of(
        plan, base, cache="maple_node", options=RecommendOptions(), current=32, demand={},
        upper_bound=600, cpus=1, nodes=1,
    )  # fmt: skip
    assert max(p.sheaf_capacity for p in pend.sweep.params) < 600
    # every candidate is below the bound and oversize on every prefill, yet all are replayed:
    # with none covering the bound, the choice considers them all
    assert all(f > 0 for f in pend.sweep.oversize_floors())
    assert pend.unneeded() == set()


def _optional_cases() -> list:
    """The pending recommendation of the bundled trace's vm_area_struct (no upper bound: every
    candidate but the current and autotuned values is optional), and those of
    :func:`_pending_cases` (optional only at or above their bounds)."""
    from sheaftune.analysis.pipeline import example_path, load
    from sheaftune.analysis.recommend import prepare_for_cache
    from sheaftune.normalize import normalize

    norm = normalize(load(example_path()))
    return [prepare_for_cache(norm, "vm_area_struct", RecommendOptions()), *_pending_cases()]


def test_optional_candidates_change_nothing_analyze_reports() -> None:
    """Left unreplayed once two smaller candidates are calm (what analyze's pool does), an
    optional candidate changes no word of the choice: winner, runner-up, rationale, snippet."""
    from sheaftune.analysis.recommend import contention_share

    skipped_any = False
    for pend in _optional_cases():
        full = pend.sweep.run_all()
        whole = pend.finish(full)
        caps = [p.sheaf_capacity for p in pend.sweep.params]
        by_cap = {c["capacity"]: c for c in whole.candidates}
        optional = pend.optional()
        assert not optional & {caps.index(whole.current), caps.index(whole.kernel_autotune)}
        if pend.upper_bound is not None:
            assert all(caps[i] >= pend.upper_bound for i in optional)
        # calm as choose's scaling objective ranks it
        calm = []
        for i, r in enumerate(full):
            c = by_cap[caps[i]]
            kept = c["covers_upper_bound"] or c["oversize_share"] < whole.oversize_rare
            assert pend.calm(i, r) == (kept and contention_share(c) <= CONTENTION_SHARE)
            if pend.calm(i, r):
                calm.append(caps[i])
        skip = {i for i in optional if sum(1 for c in calm if c < caps[i]) >= 2}
        skipped_any |= bool(skip)
        part = pend.finish([None if i in skip else r for i, r in enumerate(full)])
        assert (part.recommended, part.runner_up, part.snippet, part.rationale) == (
            whole.recommended,
            whole.runner_up,
            whole.snippet,
            whole.rationale,
        )
        assert {c["capacity"] for c in part.candidates if c.get("replayed") is False} == {
            caps[i] for i in skip
        }
    assert skipped_any, "no case had a candidate to leave out: the test tests nothing"


def test_no_candidate_is_optional_under_other_objectives_or_a_budget() -> None:
    from sheaftune.analysis.pipeline import example_path, load
    from sheaftune.analysis.recommend import prepare_for_cache
    from sheaftune.normalize import normalize

    norm = normalize(load(example_path()))
    assert prepare_for_cache(norm, "vm_area_struct", RecommendOptions()).optional()
    for options in (
        RecommendOptions(objective="balanced"),
        RecommendOptions(objective="time"),
        RecommendOptions(objective="memory"),
        RecommendOptions(memory_budget=1 << 20),
    ):
        assert prepare_for_cache(norm, "vm_area_struct", options).optional() == set()
