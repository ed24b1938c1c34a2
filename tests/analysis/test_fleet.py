"""The fleet report: distribution of per-machine optima, the capacity that suits most machines,
outliers; and the same report from a process pool as from this process."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sheaftune.analysis.distribute import (
    LocalExecutor,
    SerialExecutor,
    recommend_many,
    trace_inputs,
)
from sheaftune.analysis.fleet import cache_view, fleet_report
from sheaftune.analysis.recommend import RecommendOptions
from sheaftune.analysis.tracereplay import ReplayPolicy
from tests.conftest import ROOT, fixture_path


def _cand(cap: int, ns: float, covers: bool = True, oversize: float = 0.0) -> dict[str, Any]:
    return {
        "capacity": cap,
        "cost_ns_per_op": ns,
        "covers_upper_bound": covers,
        "oversize_share": oversize,
        "bytes_per_node": 1000 * cap,
    }


def _rec(recommended: int, cands: list[dict[str, Any]]) -> Any:
    return SimpleNamespace(
        recommended=recommended,
        candidates=cands,
        cpus=2,
        object_size=256,
        oversize_rare=0.01,
        memory_budget=None,
        upper_bound=None,
    )


def test_fleet_capacity_suits_most_machines_and_names_outliers() -> None:
    recs = [
        # 12 is within 5% of the best (60) here and on b; not on c
        ("a", _rec(12, [_cand(4, 20), _cand(12, 10.4), _cand(60, 10.0)])),
        ("b", _rec(12, [_cand(4, 12), _cand(12, 10.2), _cand(60, 10.0)])),
        ("c", _rec(60, [_cand(4, 30), _cand(12, 20.0), _cand(60, 10.0)])),
    ]
    v = cache_view("maple_node", recs, 0.05)
    assert v["optima"] == {"12": 2, "60": 1}
    assert (v["optimum_min"], v["optimum_median"], v["optimum_max"]) == (12, 12, 60)
    # 60 suits all three (as fast as each one's own choice); 12 only two
    assert v["acceptable_share"] == {"4": 0.0, "12": round(2 / 3, 6), "60": 1.0}
    assert v["fleet_capacity"] == 60 and v["fleet_share"] == 1.0
    assert v["outliers"] == []


def test_ties_go_to_the_smaller_capacity_and_outliers_say_why() -> None:
    recs = [
        ("a", _rec(12, [_cand(12, 10.0), _cand(60, 10.0)])),
        ("b", _rec(60, [_cand(12, 20.0), _cand(60, 10.0)])),
        ("c", _rec(12, [_cand(12, 10.0), _cand(60, 12.0)])),
        ("d", _rec(60, [_cand(12, 10.0, covers=False, oversize=0.5), _cand(60, 10.2)])),
    ]
    v = cache_view("maple_node", recs, 0.05)
    assert v["acceptable_share"] == {"12": 0.5, "60": 0.75}
    assert v["fleet_capacity"] == 60
    (out,) = v["outliers"]
    assert out["machine"] == "c" and out["recommended"] == 12
    assert out["fleet_penalty"] == 0.2 and "slower" in out["reason"]
    recs[2] = ("c", _rec(12, [_cand(12, 10.0), _cand(60, 10.0)]))
    recs[3] = ("d", _rec(12, [_cand(12, 10.0), _cand(60, 20.0)]))
    assert cache_view("maple_node", recs, 0.05)["fleet_capacity"] == 12  # 3 of 4 each: smaller


def test_report_skips_and_orders_caches() -> None:
    r = _rec(12, [_cand(12, 10.0)])
    rep = fleet_report(
        ["m1", "m2"],
        [{"vm_area_struct": r, "maple_node": r}, {"maple_node": "no allocator operation"}],
        kernel="7.3",
        objective="balanced",
        tolerance=0.05,
    )
    d = rep.to_dict()
    assert d["schema"] == "sheaftune/fleet" and d["version"] == 1
    assert list(d["caches"]) == ["maple_node", "vm_area_struct"]
    assert d["skipped"] == [
        {"machine": "m2", "cache": "maple_node", "reason": "no allocator operation"}
    ]


def test_real_traces_pool_equals_this_process() -> None:
    paths = [
        str(ROOT / "sheaftune" / "data" / "vma-small.dat"),
        str(fixture_path("traces/vma-small.v7zstd.dat")),
        str(fixture_path("traces/kmalloc-small.v7zstd.dat")),
    ]
    opts = RecommendOptions()
    policy = ReplayPolicy()
    inputs = trace_inputs(paths)
    here = recommend_many(inputs, SerialExecutor(), opts, policy, (), 100)
    with LocalExecutor(2) as ex:
        there = recommend_many(inputs, ex, opts, policy, (), 100)
    a = fleet_report(paths, here, kernel="7.3", objective="balanced", tolerance=0.05)
    b = fleet_report(paths, there, kernel="7.3", objective="balanced", tolerance=0.05)
    assert a.to_dict() == b.to_dict()
    assert a.caches["maple_node"]["machines"] == 2
    assert set(a.caches) >= {"maple_node", "vm_area_struct"}


def test_no_capacity_suits_any_machine_takes_the_most_common_optimum() -> None:
    def over(cap: int, ns: float) -> dict[str, Any]:
        return _cand(cap, ns) | {"bytes_per_node": 10**9}

    recs = []
    for machine, own in (("a", 12), ("b", 12), ("c", 4)):
        r = _rec(own, [over(4, 11.0), over(12, 10.0), over(60, 9.0)])
        r.memory_budget = 1000
        recs.append((machine, r))
    v = cache_view("maple_node", recs, 0.05)
    assert v["fleet_capacity"] == 12 and v["fleet_basis"] == "most common optimum"
    assert [o["machine"] for o in v["outliers"]] == ["c"]


def test_named_cache_absent_on_a_machine_is_skipped_not_fatal() -> None:
    paths = [
        str(ROOT / "sheaftune" / "data" / "vma-small.dat"),
        str(fixture_path("traces/kmalloc-small.v7zstd.dat")),
    ]
    per = recommend_many(
        trace_inputs(paths), SerialExecutor(), RecommendOptions(), ReplayPolicy(), ("maple_node",)
    )
    rep = fleet_report(paths, per, kernel="7.3", objective="balanced", tolerance=0.05)
    assert rep.caches["maple_node"]["machines"] == 1
    assert rep.skipped == [
        {
            "machine": paths[1],
            "cache": "maple_node",
            "reason": "no allocation of cache maple_node in the trace",
        }
    ]
