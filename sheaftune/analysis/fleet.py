"""The fleet view: one ``sheaf_capacity`` per cache for many machines, and who disagrees.

Each machine (one trace) gets its own recommendation per cache from
``recommend.recommend_for_cache`` (every candidate replayed and priced; the objective picks).
A kernel ships one ``.sheaf_capacity`` per cache for all of them, so the fleet question is:

* the *distribution of per-machine optima*: how many machines recommend each capacity, and
  the smallest, median and largest optimum;
* the *fleet capacity*: the candidate that is *acceptable* on the largest share of machines,
  ties to the smaller capacity (less memory on every CPU); when no candidate suits any
  machine, the most common per-machine optimum. A capacity is acceptable on a machine when
  its estimated time per operation is at most ``tolerance`` above that at the machine's own
  recommendation (so "acceptable" follows whatever objective chose it: under ``scaling`` a
  machine whose own choice is 28 accepts 28 and anything as fast or faster, not only the
  fastest candidate), it does not make that machine's prefills oversize (it covers the upper
  bound, or fewer than ``oversize_rare`` of the prefills exceed it) and, with a memory budget,
  it fits the budget;
* the *outliers*: machines on which the fleet capacity is not acceptable, with their own
  optimum and what the fleet capacity costs them.

Every number is a count, a share of machines or a value read from one machine's candidates, so
nothing is estimated across machines and the report is the same however the work was spread
(``analysis.distribute``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sheaftune.results import Record

if TYPE_CHECKING:
    from sheaftune.analysis.recommend import Recommendation


@dataclass(frozen=True)
class FleetReport(Record):
    """Per cache, the capacity for a fleet of machines (docs/fleet.md, docs/schemas.md).

    ``machines``: the traces, one per machine, in input order. ``caches``: name -> the
    distribution of optima, the acceptable share per candidate, the fleet capacity, the
    outliers and one row per machine. ``skipped``: (machine, cache) pairs with no
    recommendation and why.
    """

    # Version history:
    # 1 - first schema.
    SCHEMA: ClassVar[str] = "sheaftune/fleet"
    VERSION: ClassVar[int] = 1

    kernel: str
    objective: str
    tolerance: float
    machines: list[str]
    caches: dict[str, dict[str, Any]]
    skipped: list[dict[str, str]]


def acceptable(cand: dict[str, Any], rec: Recommendation, tolerance: float) -> bool:
    """Whether candidate ``cand`` serves machine ``rec`` as well as its own choice (module
    docstring)."""
    if cand["cost_ns_per_op"] > _own_cost(rec) * (1 + tolerance):
        return False
    if not (cand["covers_upper_bound"] or cand["oversize_share"] < rec.oversize_rare):
        return False
    return rec.memory_budget is None or cand["bytes_per_node"] <= rec.memory_budget


def _own_cost(rec: Recommendation) -> float:
    """Estimated time per operation at the machine's own recommendation."""
    return float(
        next(c for c in rec.candidates if c["capacity"] == rec.recommended)["cost_ns_per_op"]
    )


def _lower_median(values: list[int]) -> int:
    s = sorted(values)
    return s[(len(s) - 1) // 2]


def cache_view(
    cache: str, recs: list[tuple[str, Recommendation]], tolerance: float
) -> dict[str, Any]:
    """The fleet view of one cache from its machines' recommendations (machine, record)."""
    optima = [r.recommended for _, r in recs]
    caps = sorted({c["capacity"] for _, r in recs for c in r.candidates})
    ok: dict[int, set[str]] = {cap: set() for cap in caps}
    by_machine: dict[str, dict[int, dict[str, Any]]] = {}
    for machine, r in recs:
        by_machine[machine] = {c["capacity"]: c for c in r.candidates}
        for c in r.candidates:
            if acceptable(c, r, tolerance):
                ok[c["capacity"]].add(machine)
    n = len(recs)
    # most machines first, then the smaller capacity (less memory held on every CPU)
    fleet = min(caps, key=lambda cap: (-len(ok[cap]), cap))
    counts = Counter(optima)
    basis = "acceptable"
    if not ok[fleet]:
        # no candidate suits any machine (e.g. nothing fits the memory budget, so each
        # machine took its least-memory candidate): the machines' own choices decide
        fleet = min(counts, key=lambda cap: (-counts[cap], cap))
        basis = "most common optimum"
    rows = []
    outliers = []
    for machine, r in recs:
        cands = by_machine[machine]
        own = cands[r.recommended]
        at_fleet = cands.get(fleet)
        row = {
            "machine": machine,
            "recommended": r.recommended,
            "cpus": r.cpus,
            "object_size": r.object_size,
            "cost_ns_per_op": own["cost_ns_per_op"],
            "fleet_cost_ns_per_op": at_fleet["cost_ns_per_op"] if at_fleet else None,
            "fleet_acceptable": machine in ok[fleet],
        }
        rows.append(row)
        # without an acceptable capacity, an outlier is a machine that chose otherwise
        suited = machine in ok[fleet] if basis == "acceptable" else r.recommended == fleet
        if not suited:
            penalty = (
                round(at_fleet["cost_ns_per_op"] / own["cost_ns_per_op"] - 1, 6)
                if at_fleet and own["cost_ns_per_op"]
                else None
            )
            if at_fleet is None:
                why = f"{fleet} was not among its candidates"
            elif basis != "acceptable":
                why = f"no candidate suits any machine; its own choice is {r.recommended}"
            elif at_fleet["cost_ns_per_op"] > _own_cost(r) * (1 + tolerance):
                why = (
                    f"{fleet} is more than {tolerance:.0%} slower than its own choice "
                    f"{r.recommended}"
                )
            elif not (
                at_fleet["covers_upper_bound"] or at_fleet["oversize_share"] < r.oversize_rare
            ):
                why = f"{fleet} makes its prefills oversize (upper bound {r.upper_bound})"
            else:
                why = f"{fleet} exceeds its memory budget"
            outliers.append(
                {
                    "machine": machine,
                    "recommended": r.recommended,
                    "fleet_penalty": penalty,
                    "reason": why,
                }
            )
    return {
        "machines": n,
        "optima": {str(cap): counts[cap] for cap in sorted(counts)},
        "optimum_min": min(optima),
        "optimum_median": _lower_median(optima),
        "optimum_max": max(optima),
        "acceptable_share": {str(cap): round(len(ok[cap]) / n, 6) for cap in caps},
        "fleet_capacity": fleet,
        "fleet_share": round(len(ok[fleet]) / n, 6),
        "fleet_basis": basis,
        "snippet": f".sheaf_capacity = {fleet},",
        "outliers": outliers,
        "per_machine": rows,
    }


def fleet_report(
    machines: list[str],
    per_machine: list[dict[str, Recommendation | str]],
    *,
    kernel: str,
    objective: str,
    tolerance: float,
) -> FleetReport:
    """Assemble the report from each machine's cache -> recommendation (or reason for none),
    in ``machines`` order; caches are listed by name."""
    by_cache: dict[str, list[tuple[str, Recommendation]]] = {}
    skipped = []
    for machine, recs in zip(machines, per_machine, strict=True):
        for cache, rec in recs.items():
            if isinstance(rec, str):
                skipped.append({"machine": machine, "cache": cache, "reason": rec})
            else:
                by_cache.setdefault(cache, []).append((machine, rec))
    caches = {name: cache_view(name, by_cache[name], tolerance) for name in sorted(by_cache)}
    return FleetReport(kernel, objective, tolerance, list(machines), caches, skipped)
