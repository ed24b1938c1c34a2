"""Recommend a ``sheaf_capacity`` for one cache, with the evidence behind the choice.

The question a kernel developer asks: which ``.sheaf_capacity`` should this cache's
``struct kmem_cache_args`` carry, for this workload, this many CPUs per node and this memory
budget? The answer is a :class:`Recommendation`: every candidate capacity replayed through the
sheaf model and priced by the cost model (``analysis.estimate``), its worst-case and typical
memory, the choice under a stated objective, why it won, what the runner-up would cost or save,
what the 7.3 kernel's autotuning gives (kernel-sheaves.md section 10), and the line of C.

Candidates: every capacity whose sheaf exactly fills a kmalloc bucket (``BUCKET_CAPACITIES``),
the cache's current value, the 7.3 kernel's autotuned value, and any the user adds. A capacity
that does not fill its bucket is noted: the sheaf struct is ``kmalloc_size_roundup(32 + 8*cap)``
bytes, so 32 pays for the 512-byte bucket of 60.

Demand, three ways:

* a trace: the trace's own CPU streams are replayed as they are (on the trace's CPUs, frees on
  the CPUs that did them); ``--cpus N --nodes M`` scales the *contention* in the estimate
  (``cpus_per_node = ceil(N / M)`` CPUs assumed to run this mix back to back) and the per-node
  memory, not the replay. Replicating a 2-CPU trace onto 64 CPUs would invent cross-CPU
  structure the trace does not have; the closed-loop estimate asks the honest question "if N
  CPUs per node did what these CPUs did".
* a workload file: regenerated for ``--cpus N`` (``events_per_cpu`` visible events per CPU), so
  the replay itself has N CPUs sharing each node's barn; the model's RCU grace period is the
  workload's ``rcu_delay_us``.
* ``--upper-bound`` alone: the default demand model (:func:`demand_plan`), a closed-loop
  maple-tree-like stream per CPU built from kernel-sheaves.md M5.

Measurement window: the first ``warmup_share`` of the replay's commands warms the sheaves and
slabs up; the counters of the window are those of the whole replay minus those of the warm-up
prefix. The fast engine reads the state at the cut during each capacity's one replay (a
checkpoint, ``fast.sweep``): the interpreter never looks ahead, so that is exactly what a
replay of the prefix alone ends with (the reference model replays the prefix). Without that,
a large capacity is charged for filling its sheaves once, which a long-running machine pays
only at boot.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sheaftune.analysis.estimate import uncontended
from sheaftune.analysis.sweep import BUCKET_CAPACITIES
from sheaftune.analysis.tracereplay import (
    EXPLICIT_CAPACITY,
    ReplayPolicy,
    StreamedPlan,
    StreamStats,
    build_plan,
    fit_plan_to_nodes,
    params_for,
    plan_for,
)
from sheaftune.costs import CostModel
from sheaftune.errors import NothingToAnalyse, UsageError
from sheaftune.model.plan import Cmd, Plan, PlanBuilder
from sheaftune.model.replay import ReplayResult, replay
from sheaftune.normalize import rows_of_cache
from sheaftune.params import (
    MAX_EMPTY_SHEAVES,
    MAX_FULL_SHEAVES,
    SHEAF_HEADER_BYTES,
    ModelParams,
    autotune_capacity,
    contiguous_cpu_nodes,
    kmalloc_size_roundup,
)
from sheaftune.results import Record

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sheaftune.model.fast import PlanStats
    from sheaftune.normalize import Normalized
    from sheaftune.synth.spec import WorkloadSpec

#: Objectives (docs/recommend.md). balanced: the smallest candidate within TOLERANCE of the
#: fastest; time: the fastest; memory: the least worst-case memory per node; scaling: the
#: smallest candidate whose lock contention costs at most CONTENTION_SHARE of its time.
OBJECTIVES = ("balanced", "time", "memory", "scaling")
#: balanced: a candidate this close to the fastest (relative) counts as "as fast".
TOLERANCE = 0.05
#: scaling: lock contention (estimated time minus uncontended time) may cost this share.
CONTENTION_SHARE = 0.10
#: A capacity below the upper bound makes every prefill oversize (P1: a kmalloc'd sheaf and an
#: all-or-nothing bulk allocation from slabs). Below this share of prefills, ignore it.
OVERSIZE_RARE = 0.01
#: Share of the replay's commands that warm the sheaves up and are not measured.
WARMUP_SHARE = 0.25
#: Slot size when nothing says otherwise: maple_node (kernel-sheaves.md M1).
DEFAULT_OBJECT_SIZE = 256
#: Workloads: visible events generated per CPU (the replay grows with the CPU count).
EVENTS_PER_CPU = 16000

# Default demand model (``--upper-bound`` alone), from kernel-sheaves.md M5 (VMA-tree churn
# measured with the kernel's own maple tree): ~62% of writes take one node with a plain
# allocation, ~22% use a prefilled sheaf (split, spanning, rebalance), the rest allocate nothing.
DEMAND_SINGLE_SHARE = 0.62
DEMAND_PREFILL_SHARE = 0.22
#: M5: sheaf-using writes use ~3 of ~5 requested nodes; used ~ Binomial(bound, 0.6), at least 1.
DEMAND_USED_FRACTION = 0.6
#: Tree nodes each CPU keeps live; every new node replaces the oldest, freed by kfree_rcu (M2).
DEMAND_LIVE_PER_CPU = 64
DEMAND_WRITES_PER_CPU = 1500
DEMAND_WRITE_NS = 1000
DEMAND_GP_NS = 2_000_000


def sheaf_struct_bytes(capacity: int) -> int:
    """Bytes a sheaf struct really occupies: ``kmalloc_size_roundup(32 + 8*cap)`` (D2, C2)."""
    return kmalloc_size_roundup(SHEAF_HEADER_BYTES + 8 * capacity) if capacity > 0 else 0


def bucket_capacity(capacity: int) -> int:
    """The capacity that would exactly fill the bucket ``capacity``'s sheaf lands in."""
    return (sheaf_struct_bytes(capacity) - SHEAF_HEADER_BYTES) // 8 if capacity > 0 else 0


def worst_case_memory(
    capacity: int, object_size: int, cpus_per_node: int, upper_bound: int | None
) -> dict[str, int]:
    """Worst-case bytes the cache's sheaves hold (D8).

    Per CPU: main + spare + rcu_free hold at most ``3*cap - 1`` objects (rcu_free < cap, D3)
    plus their three structs; a prefill of ``upper_bound > cap`` adds one oversize sheaf of
    ``upper_bound`` objects and its ``32 + 8*upper_bound`` struct (P1; a prefill that fits takes
    the spare, so it adds nothing). Per node: every CPU's worst case plus the barn at its soft
    limits, ``MAX_FULL_SHEAVES`` full sheaves and ``MAX_EMPTY_SHEAVES`` empty structs (D4).
    """
    if capacity <= 0:
        return {"bytes_per_cpu": 0, "bytes_per_node": 0, "barn_bytes": 0}
    struct = sheaf_struct_bytes(capacity)
    per_cpu = (3 * capacity - 1) * object_size + 3 * struct
    if upper_bound is not None and upper_bound > capacity:
        per_cpu += upper_bound * object_size + kmalloc_size_roundup(
            SHEAF_HEADER_BYTES + 8 * upper_bound
        )
    barn = MAX_FULL_SHEAVES * (capacity * object_size + struct) + MAX_EMPTY_SHEAVES * struct
    return {
        "bytes_per_cpu": per_cpu,
        "bytes_per_node": cpus_per_node * per_cpu + barn,
        "barn_bytes": barn,
    }


def candidate_capacities(current: int, autotuned: int, extra: tuple[int, ...] = ()) -> list[int]:
    """BUCKET_CAPACITIES, the current and autotuned values and ``extra``; sorted, > 0."""
    return sorted({c for c in (*BUCKET_CAPACITIES, current, autotuned, *extra) if c > 0})


def resolve_engine(engine: str) -> str:
    """``auto``: the compiled engine when it is installed (it gives the reference model's
    results, tested equal), else the reference model."""
    if engine != "auto":
        return engine
    return "fast" if importlib.util.find_spec("sheaftune.model.fast") is not None else "reference"


@dataclass(frozen=True)
class RecommendOptions:
    """How to recommend: the machine, the objective, the candidates, the engine."""

    kernel: str = "7.3"
    #: CPUs of the target machine; None: the trace's or workload's own
    cpus: int | None = None
    nodes: int | None = None
    objective: str = "scaling"
    #: worst-case bytes per node the sheaves may hold (None: no limit)
    memory_budget: int | None = None
    #: extra candidates (``--capacity``)
    capacities: tuple[int, ...] = ()
    #: prefill size (``--upper-bound``); None: what the input asks for
    upper_bound: int | None = None
    engine: str = "auto"
    costs: CostModel = field(default_factory=CostModel)
    tolerance: float = TOLERANCE
    oversize_rare: float = OVERSIZE_RARE
    warmup_share: float = WARMUP_SHARE

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise UsageError(f"objective must be one of {', '.join(OBJECTIVES)}")
        if not 0.0 <= self.warmup_share < 1.0:
            raise UsageError("warm-up share must be in [0, 1)")


@dataclass(frozen=True)
class Recommendation(Record):
    """The recommended ``sheaf_capacity`` for one cache and the evidence (docs/schemas.md).

    ``candidates``: one dict per capacity (time per operation, traffic, memory; see
    docs/schemas.md). ``rationale``: sentences saying why the winner won, what the runner-up
    would cost or save, and how it compares with the kernel's own value.
    """

    # history: 1 (2026-11) first version
    SCHEMA: ClassVar[str] = "sheaftune/recommendation"
    VERSION: ClassVar[int] = 1

    cache: str
    kernel: str
    object_size: int
    cpus: int
    nodes: int
    cpus_per_node: int
    objective: str
    tolerance: float
    oversize_rare: float
    memory_budget: int | None
    upper_bound: int | None
    recommended: int
    runner_up: int | None
    current: int
    kernel_autotune: int
    kernel_autotune_difference: int
    candidates: list[dict[str, Any]]
    rationale: list[str]
    snippet: str
    demand: dict[str, Any]
    engine: str
    costs: dict[str, float]


# ---------------------------------------------------------------------------------- replays
def _prefix(plan: Plan, k: int) -> Plan:
    return Plan(
        plan.ts_ns[:k],
        plan.cmd[:k],
        plan.cpu[:k],
        plan.a[:k],
        plan.b[:k],
        plan.c[:k],
        plan.aux,
        plan.n_objects,
        plan.n_sheaves,
        {},
    )


#: extras that accumulate (can be differenced between two replays); the rest are levels/peaks
_CUMULATIVE_EXTRAS = (
    "barn_lock",
    "spare_swap",
    "list_lock",
    "alloc_from_sheaf",
    "alloc_from_sheaf_null",
    "oversize_objects",
    "kfree_rcu_classic",
    "slabs_shrunk",
)


def solve_closed_loop(
    base_ns: float, locks: list[tuple[float, float]], cpus: int
) -> tuple[float, list[float]]:
    """``costs.closed_loop_time`` without the waits: (T, utilisations)."""
    from sheaftune.costs import closed_loop_time

    t, rhos, _ = closed_loop_time(base_ns, locks, cpus)
    return t, rhos


def _window_mean(
    full: float | None, pre: float | None, span_full: int, span_pre: int
) -> float | None:
    if full is None:
        return None
    if pre is None or span_pre <= 0:
        return full
    width = span_full - span_pre
    return (full * span_full - pre * span_pre) / width if width > 0 else full


def _warmup_cut(plan: Plan | StreamedPlan, warmup_share: float) -> int:
    """Commands of the replay that warm it up (not measured)."""
    return int(len(plan) * warmup_share)


class Sweep:
    """The candidates' replays of one plan, each an independent job: ``run(i)`` replays
    candidate i (the full replay and, from the same replay, the state at the warm-up cut),
    ``run_all()`` every candidate. ``analyze`` schedules the ``run(i)`` of several caches on one
    pool of threads; ``evaluate`` runs them all at once.

    ``stats``: ``fast.plan_stats`` of an in-memory plan at the cut ``k`` (None for a stream,
    whose figures come from its one pass over the windows).
    """

    # (plain classes here: a dataclass costs its generated methods at every start-up)
    def __init__(
        self,
        plan: Plan | StreamedPlan,
        base: ModelParams,
        params: list[ModelParams],
        k: int,
        engine: str,
        stats: PlanStats | None,
    ) -> None:
        self.plan = plan
        self.base = base
        self.params = params
        self.k = k
        self.engine = engine
        self.stats = stats
        #: a streamed plan's statistics, known once ``run_all`` has passed over its windows
        self.stream: StreamStats | None = None
        self._floors: list[int] | None = None  # (oversize_floors, once)

    @classmethod
    def of(
        cls,
        plan: Plan | StreamedPlan,
        base: ModelParams,
        capacities: list[int],
        engine: str,
        warmup_share: float = WARMUP_SHARE,
        stats: PlanStats | None = None,
    ) -> Sweep:
        engine = resolve_engine(engine)
        params = [dataclasses.replace(base, sheaf_capacity=c) for c in capacities]
        k = _warmup_cut(plan, warmup_share)
        if isinstance(plan, StreamedPlan):
            return cls(plan, base, params, k, engine, None)
        if stats is None or stats.k != k:
            from sheaftune.model import fast

            stats = fast.plan_stats(plan, k)
        return cls(plan, base, params, k, engine, stats)

    def run(self, i: int) -> tuple[ReplayResult, ReplayResult | None]:
        """Candidate i's replay and its warm-up checkpoint (an in-memory plan)."""
        plan, p, k = self.plan, self.params[i], self.k
        assert isinstance(plan, Plan) and self.stats is not None
        if self.engine == "fast":
            from sheaftune.model import fast

            # the warm-up cut is read during the full replay (a checkpoint of the same state)
            return fast.sweep(plan, [p], k if k > 0 else None, 1, facts=self.stats.facts)[0]
        # the reference model has no checkpoint: the warm-up prefix is replayed on its own
        return replay(plan, p, self.engine), replay(_prefix(plan, k), p, self.engine) if k else None

    def run_all(self) -> list[tuple[ReplayResult, ReplayResult | None]]:
        """Every candidate's ``run`` (the fast engine's on all cores)."""
        plan, k = self.plan, self.k
        if isinstance(plan, StreamedPlan):
            # one pass over the windows gives the full replays, the warm-up cut and its figures
            full, pre_k, self.stream = plan.replay(self.params, checkpoint=k if k > 0 else None)
            pre = list(pre_k) if pre_k is not None else [None] * len(full)
            return list(zip(full, pre, strict=True))
        if self.engine == "fast":
            from sheaftune.model import fast

            assert self.stats is not None
            return fast.sweep(plan, self.params, k if k > 0 else None, facts=self.stats.facts)
        return [self.run(i) for i in range(len(self.params))]

    def oversize_floors(self) -> list[int]:
        """For each candidate (an in-memory plan): the prefills after the warm-up cut that ask
        for more than its capacity. Each is oversize whatever the state (P1: ``size >
        sheaf_capacity`` takes a kmalloc'd sheaf), so this is a floor of the window's
        ``sheaf_prefill_oversize`` (refills may add more)."""
        if self._floors is None:
            plan, k = self.plan, self.k
            assert isinstance(plan, Plan)
            sizes = np.sort(plan.b[k:][plan.cmd[k:] == Cmd.PREFILL])
            self._floors = [
                int(len(sizes) - np.searchsorted(sizes, p.sheaf_capacity, side="right"))
                for p in self.params
            ]
        return self._floors

    def window(self) -> tuple[int, int, set[int], int, int]:
        """After the warm-up cut: object-moving operations, prefills, active CPUs; and the
        time spans of the whole replay and of its warm-up."""
        plan, k = self.plan, self.k
        if isinstance(plan, StreamedPlan):
            st = self.stream
            assert st is not None, "run_all first"
            span_full = st.ts_last - st.ts_first if st.commands else 0
            span_pre = st.ts_before_cut - st.ts_first if k > 0 else 0
            return st.ops_after_cut, st.prefills_after_cut, st.active_after_cut, span_full, span_pre
        ps = self.stats
        assert ps is not None
        span_full = int(plan.ts_ns[-1] - plan.ts_ns[0]) if len(plan) else 0
        span_pre = int(plan.ts_ns[k - 1] - plan.ts_ns[0]) if k > 0 else 0
        return ps.ops_after, ps.prefills_after, ps.active_after, span_full, span_pre


def evaluate(
    plan: Plan | StreamedPlan,
    base: ModelParams,
    capacities: list[int],
    *,
    engine: str,
    costs: CostModel,
    cpus_per_node: int,
    upper_bound: int | None,
    warmup_share: float = WARMUP_SHARE,
    stats: PlanStats | None = None,
) -> list[dict[str, Any]]:
    """Replay ``plan`` at each capacity and describe each candidate (one dict each).
    ``stats``: ``fast.plan_stats`` of the plan at its warm-up cut, when already known."""
    sweep = Sweep.of(plan, base, capacities, engine, warmup_share, stats)
    return describe(sweep, sweep.run_all(), costs, cpus_per_node, upper_bound)


def describe(
    sweep: Sweep,
    results: Sequence[tuple[ReplayResult, ReplayResult | None] | None],
    costs: CostModel,
    cpus_per_node: int,
    upper_bound: int | None,
) -> list[dict[str, Any]]:
    """Each candidate of ``sweep`` priced and measured from its replay ``results`` (in
    ``sweep.params`` order): one dict each. A result of None is a candidate left unreplayed
    because ``choose`` excludes it whatever its replay says (:meth:`Pending.unneeded`), or
    because two smaller candidates are calm (:meth:`Pending.optional`): its dict holds only
    what the exclusion and the rationale read, and ``replayed: False``."""
    params = sweep.params
    window = sweep.window()
    if window[0] == 0:
        raise NothingToAnalyse("the replay has no allocator operation to measure")
    floors = sweep.oversize_floors() if any(r is None for r in results) else []
    out: list[dict[str, Any]] = []
    for i, (p, res) in enumerate(zip(params, results, strict=True)):
        if res is None:
            out.append(_unreplayed(p.sheaf_capacity, floors[i], window[1], upper_bound))
        else:
            out.append(
                _describe_one(
                    p, res, sweep.base.object_size, window, costs, cpus_per_node, upper_bound
                )
            )
    return out


def _describe_one(
    p: ModelParams,
    res: tuple[ReplayResult, ReplayResult | None],
    size: int,
    window: tuple[int, int, set[int], int, int],
    costs: CostModel,
    cpus_per_node: int,
    upper_bound: int | None,
) -> dict[str, Any]:
    """One replayed candidate of ``describe`` (``window``: its sweep's ``window()``)."""
    ops, prefills, active, span_full, span_pre = window
    rf, rp = res
    c = dict(rf.counters)
    ex = dict(rf.extras)
    if rp is not None:
        c = {name: v - rp.counters.get(name, 0) for name, v in c.items()}
        for name in _CUMULATIVE_EXTRAS:
            ex[name] = ex.get(name, 0) - rp.extras.get(name, 0)
    unc_ns, barn_per_op, list_per_op = uncontended(c, ex, ops, p.kernel, costs)
    # the same closed-loop equation as estimate(), solved exactly (solve_closed_loop)
    hand = costs.handoff if cpus_per_node > 1 else 0.0
    locks = [(barn_per_op, costs.barn_lock + hand), (list_per_op, costs.list_lock + hand)]
    base_ns = unc_ns - barn_per_op * costs.barn_lock - list_per_op * costs.list_lock
    ns_per_op, (barn_rho, list_rho) = solve_closed_loop(base_ns, locks, cpus_per_node)
    v618 = p.kernel == "6.18"
    a_hit = c.get("alloc_cpu_sheaf" if v618 else "alloc_fastpath", 0)
    f_hit = c.get("free_cpu_sheaf" if v618 else "free_fastpath", 0)
    fast_ops = a_hit + f_hit + c.get("free_rcu_sheaf", 0) + ex.get("alloc_from_sheaf", 0)
    barn_ops = sum(c.get(n, 0) for n in ("barn_get", "barn_get_fail", "barn_put"))
    barn_ops += c.get("barn_put_fail", 0)
    slab_objs = sum(
        c.get(n, 0) for n in ("sheaf_refill", "sheaf_flush", "alloc_slowpath", "free_slowpath")
    )
    oversize = c.get("sheaf_prefill_oversize", 0)
    # typical memory: time-weighted mean of the objects held over the window
    cpus_f = rf.occupancy["cpus"]
    cpus_p = rp.occupancy["cpus"] if rp is not None else [None] * len(cpus_f)
    means = []
    for cf, cp in zip(cpus_f, cpus_p, strict=True):
        if cf["cpu"] not in active:
            continue
        m = _window_mean(cf["mean"], cp["mean"] if cp else None, span_full, span_pre)
        if m is not None:
            means.append(m)
    barn_means = []
    for nf_i, nf in enumerate(rf.occupancy["nodes"]):
        np_ = rp.occupancy["nodes"][nf_i] if rp is not None else None
        m = _window_mean(nf["barn_mean"], np_["barn_mean"] if np_ else None, span_full, span_pre)
        if m is not None:
            barn_means.append(m)
    cpu_objs = sum(means) / len(means) if means else 0.0
    barn_objs = sum(barn_means) / len(barn_means) if barn_means else 0.0
    struct = sheaf_struct_bytes(p.sheaf_capacity)
    # main always exists, spare normally does (D3, D9): two structs per CPU
    typical_cpu = cpu_objs * size + 2 * struct
    typical_node = cpus_per_node * typical_cpu + barn_objs * size
    worst = worst_case_memory(p.sheaf_capacity, size, cpus_per_node, upper_bound)
    covers = upper_bound is None or p.sheaf_capacity >= upper_bound
    return {
        "capacity": p.sheaf_capacity,
        "sheaf_bytes": struct,
        "bucket_capacity": bucket_capacity(p.sheaf_capacity),
        "wastes_bucket": bucket_capacity(p.sheaf_capacity) > p.sheaf_capacity,
        "cost_ns_per_op": round(ns_per_op, 3),
        "uncontended_ns_per_op": round(unc_ns, 3),
        "contention_ns_per_op": round(ns_per_op - unc_ns, 3),
        "barn_utilisation": round(barn_rho, 4),
        "list_utilisation": round(list_rho, 4),
        "fastpath_share": round(fast_ops / ops, 6),
        "barn_ops_per_k": round(1000 * barn_ops / ops, 3),
        "barn_lock_per_op": round(barn_per_op, 6),
        "slab_objects_per_op": round(slab_objs / ops, 6),
        "list_lock_per_op": round(list_per_op, 6),
        "prefills": prefills,
        "oversize_prefills": oversize,
        "oversize_share": round(oversize / prefills, 6) if prefills else 0.0,
        "covers_upper_bound": covers,
        "bytes_per_cpu": worst["bytes_per_cpu"],
        "bytes_per_node": worst["bytes_per_node"],
        "typical_bytes_per_cpu": round(typical_cpu),
        "typical_bytes_per_node": round(typical_node),
        "operations": ops,
    }


def _unreplayed(
    capacity: int, oversize_floor: int, prefills: int, upper_bound: int | None
) -> dict[str, Any]:
    """A candidate ``choose`` drops before it reads a replayed figure, as ``describe`` gives
    it without the replay: its capacity and sheaf memory, and a floor of its oversize share
    (that floor alone drops it)."""
    return {
        "capacity": capacity,
        "sheaf_bytes": sheaf_struct_bytes(capacity),
        "bucket_capacity": bucket_capacity(capacity),
        "wastes_bucket": bucket_capacity(capacity) > capacity,
        "prefills": prefills,
        "oversize_prefills": oversize_floor,
        "oversize_share": round(oversize_floor / prefills, 6) if prefills else 0.0,
        "covers_upper_bound": upper_bound is None or capacity >= upper_bound,
        "replayed": False,
    }


# ----------------------------------------------------------------------------------- choice
def _pct(a: float, b: float) -> str:
    """a relative to b as a signed percentage."""
    return f"{100 * (a - b) / b:+.1f}%" if b else "n/a"


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def choose(
    cands: list[dict[str, Any]],
    objective: str,
    *,
    tolerance: float = TOLERANCE,
    oversize_rare: float = OVERSIZE_RARE,
    memory_budget: int | None = None,
    upper_bound: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None, list[str]]:
    """Apply the objective (docs/recommend.md): (winner, runner-up, rationale)."""
    why: list[str] = []
    pool = list(cands)
    if upper_bound is not None:
        ok = [c for c in pool if c["covers_upper_bound"] or c["oversize_share"] < oversize_rare]
        dropped = [c["capacity"] for c in pool if c not in ok]
        if ok and dropped:
            why.append(
                f"excluded {', '.join(map(str, dropped))}: below the upper bound {upper_bound}, "
                f"they make {oversize_rare:.0%} or more of prefills oversize (a kmalloc'd sheaf "
                "and an all-or-nothing bulk allocation from slabs each time)"
            )
            pool = ok
        elif not ok:
            why.append(f"no candidate covers the upper bound {upper_bound}; all are considered")
    if memory_budget is not None:
        fit = [c for c in pool if c["bytes_per_node"] <= memory_budget]
        if fit:
            over = [c["capacity"] for c in pool if c not in fit]
            if over:
                why.append(
                    f"excluded {', '.join(map(str, over))}: worst case per node above the "
                    f"budget of {_kib(memory_budget)}"
                )
            pool = fit
        else:
            pool = [min(pool, key=lambda c: c["bytes_per_node"])]
            why.append(
                f"no candidate fits the budget of {_kib(memory_budget)} per node; "
                f"{pool[0]['capacity']} needs the least ({_kib(pool[0]['bytes_per_node'])})"
            )
    # (a candidate left unreplayed here is one of Pending.optional, skipped because two smaller
    # candidates are calm: under the scaling objective, the only one that skips, it can be
    # neither the winner nor the runner-up, and it is in the pool whatever its replay says)
    pool = [c for c in pool if c.get("replayed", True)]
    best = min(pool, key=lambda c: (c["cost_ns_per_op"], c["capacity"]))
    if objective == "time":
        ranked = sorted(pool, key=lambda c: (c["cost_ns_per_op"], c["capacity"]))
        win = ranked[0]
        why.insert(
            0,
            f"{win['capacity']} has the lowest estimated time per operation "
            f"({win['cost_ns_per_op']:.2f} ns)",
        )
    elif objective == "scaling":
        share = contention_share
        calm = sorted(
            (c for c in pool if share(c) <= CONTENTION_SHARE), key=lambda c: c["capacity"]
        )
        rest = sorted((c for c in pool if share(c) > CONTENTION_SHARE), key=share)
        ranked = calm + rest
        win = ranked[0]
        if calm:
            msg = (
                f"{win['capacity']} is the smallest capacity whose lock contention costs at most "
                f"{CONTENTION_SHARE:.0%} of its time ({win['contention_ns_per_op']:.2f} of "
                f"{win['cost_ns_per_op']:.2f} ns per operation)"
            )
        else:
            msg = (
                f"no candidate keeps lock contention under {CONTENTION_SHARE:.0%} of its time; "
                f"{win['capacity']} has the least ({share(win):.0%})"
            )
        why.insert(0, msg)
    elif objective == "memory":
        ranked = sorted(pool, key=lambda c: (c["bytes_per_node"], c["cost_ns_per_op"]))
        win = ranked[0]
        why.insert(
            0,
            f"{win['capacity']} holds the least memory in the worst case "
            f"({_kib(win['bytes_per_node'])} per node); time: "
            f"{_pct(win['cost_ns_per_op'], best['cost_ns_per_op'])} against the fastest "
            f"({best['capacity']})",
        )
    else:
        limit = best["cost_ns_per_op"] * (1 + tolerance)
        near = sorted(
            (c for c in pool if c["cost_ns_per_op"] <= limit), key=lambda c: c["capacity"]
        )
        rest = sorted(
            (c for c in pool if c["cost_ns_per_op"] > limit),
            key=lambda c: (c["cost_ns_per_op"], c["capacity"]),
        )
        ranked = near + rest
        win = ranked[0]
        if win is best:
            msg = (
                f"{win['capacity']} is the fastest ({win['cost_ns_per_op']:.2f} ns per "
                "operation) and no smaller candidate comes within "
                f"{tolerance:.0%} of it"
            )
        else:
            msg = (
                f"{win['capacity']} is the smallest capacity within {tolerance:.0%} of the "
                f"fastest ({best['capacity']}: {best['cost_ns_per_op']:.2f} ns per operation; "
                f"{win['capacity']}: {win['cost_ns_per_op']:.2f} ns, "
                f"{_pct(win['cost_ns_per_op'], best['cost_ns_per_op'])})"
            )
        why.insert(0, msg)
    runner = ranked[1] if len(ranked) > 1 else None
    if runner is not None:
        why.append(
            f"runner-up {runner['capacity']}: time "
            f"{_pct(runner['cost_ns_per_op'], win['cost_ns_per_op'])} "
            f"({runner['cost_ns_per_op']:.2f} ns), worst-case memory per node "
            f"{_signed_kib(runner['bytes_per_node'] - win['bytes_per_node'])}, typical per node "
            f"{_signed_kib(runner['typical_bytes_per_node'] - win['typical_bytes_per_node'])}"
        )
    return win, runner, why


def contention_share(c: dict[str, Any]) -> float:
    """The share of a described candidate's time that lock contention costs (the scaling
    objective's measure)."""
    return c["contention_ns_per_op"] / c["cost_ns_per_op"] if c["cost_ns_per_op"] else 0.0


def _signed_kib(n: float) -> str:
    return ("+" if n >= 0 else "-") + _kib(abs(n))


# ----------------------------------------------------------------------------- entry points
def recommend(
    plan: Plan | StreamedPlan,
    base: ModelParams,
    *,
    cache: str,
    options: RecommendOptions,
    current: int,
    demand: dict[str, Any],
    upper_bound: int | None,
    cpus: int,
    nodes: int,
    stats: PlanStats | None = None,
) -> Recommendation:
    """Evaluate the candidates on ``plan`` (replayed with ``base``) and choose (``stats``:
    ``fast.plan_stats`` of the plan at its warm-up cut, when already known)."""
    pending = Pending.of(
        plan, base, cache=cache, options=options, current=current, demand=demand,
        upper_bound=upper_bound, cpus=cpus, nodes=nodes, stats=stats,
    )  # fmt: skip
    return pending.finish(pending.sweep.run_all())


class Pending:
    """A recommendation whose candidates are still to be replayed: ``sweep`` holds the
    replays, ``finish`` prices them and chooses. (``recommend`` is ``finish(sweep.run_all())``;
    ``analyze`` runs the sweep's replays as jobs of its own pool.)"""

    def __init__(
        self,
        sweep: Sweep,
        cache: str,
        options: RecommendOptions,
        current: int,
        kernel_auto: int,
        demand: dict[str, Any],
        upper_bound: int | None,
        cpus: int,
        nodes: int,
    ) -> None:
        self.sweep = sweep
        self.cache = cache
        self.options = options
        self.current = current
        self.kernel_auto = kernel_auto
        self.demand = demand
        self.upper_bound = upper_bound
        self.cpus = cpus
        self.nodes = nodes

    @classmethod
    def of(
        cls,
        plan: Plan | StreamedPlan,
        base: ModelParams,
        *,
        cache: str,
        options: RecommendOptions,
        current: int,
        demand: dict[str, Any],
        upper_bound: int | None,
        cpus: int,
        nodes: int,
        stats: PlanStats | None = None,
    ) -> Pending:
        kernel_auto = autotune_capacity(base.object_size, EXPLICIT_CAPACITY.get(cache, 0))
        caps = candidate_capacities(current, kernel_auto, options.capacities)
        engine = resolve_engine(options.engine)
        sweep = Sweep.of(plan, base, caps, engine, options.warmup_share, stats)
        return cls(sweep, cache, options, current, kernel_auto, demand, upper_bound, cpus, nodes)

    def unneeded(self) -> set[int]:
        """Candidates (indices into ``sweep.params``) whose replays cannot change what
        ``finish`` answers, so need not run (``finish`` takes None for their results).

        Those ``choose`` excludes before it reads any replayed figure: below the upper bound,
        with a floor of their oversize share (:meth:`Sweep.oversize_floors`, rounded as
        ``describe`` rounds, which keeps the order) already at ``oversize_rare``, while some
        candidate covers the bound (so the exclusion is not waived). Never the current or
        the autotuned value, which the rationale compares the winner with. A streamed plan
        (one pass for all candidates) has none.
        """
        sweep, ub = self.sweep, self.upper_bound
        plan, stats = sweep.plan, sweep.stats
        if ub is None or not isinstance(plan, Plan) or stats is None or not stats.prefills_after:
            return set()
        caps = [p.sheaf_capacity for p in sweep.params]
        if not any(c >= ub for c in caps):
            return set()
        keep = {self.current, self.kernel_auto}
        prefills = stats.prefills_after
        floors = sweep.oversize_floors()
        return {
            i
            for i, (c, floor) in enumerate(zip(caps, floors, strict=True))
            if c < ub and c not in keep and round(floor / prefills, 6) >= self.options.oversize_rare
        }

    def optional(self) -> set[int]:
        """Candidates (indices into ``sweep.params``) whose replays ``finish`` needs only
        while fewer than two smaller candidates are known to be calm (:meth:`calm`): the
        scaling objective wins with the smallest calm candidate and runs up with the next, so
        a larger one can be neither, and ``finish`` reads no other figure of it (the
        rationale names the winner, the runner-up, the current and the autotuned value, and
        notes a wasted bucket from the capacity alone). ``analyze``, which reports the choice
        and not the candidates, leaves such a candidate unreplayed once two smaller ones are
        calm (None for its result: :func:`describe`).

        Only under the scaling objective, without a memory budget, for an in-memory plan;
        never the current or the autotuned value; never one below the upper bound (whether
        ``choose`` keeps it in the pool depends on its replay).
        """
        o, ub = self.options, self.upper_bound
        if o.objective != "scaling" or o.memory_budget is not None:
            return set()
        if not isinstance(self.sweep.plan, Plan):
            return set()
        keep = {self.current, self.kernel_auto}
        return {
            i
            for i, p in enumerate(self.sweep.params)
            if p.sheaf_capacity not in keep and (ub is None or p.sheaf_capacity >= ub)
        }

    def calm(self, i: int, result: tuple[ReplayResult, ReplayResult | None]) -> bool:
        """Whether candidate ``i``, replayed with ``result``, is one the scaling objective
        ranks as calm: in ``choose``'s pool (it covers the upper bound, or is rarely
        oversize) and with lock contention at most ``CONTENTION_SHARE`` of its time."""
        sweep = self.sweep
        c = _describe_one(
            sweep.params[i],
            result,
            sweep.base.object_size,
            sweep.window(),
            self.options.costs,
            math.ceil(self.cpus / self.nodes),
            self.upper_bound,
        )
        kept = c["covers_upper_bound"] or c["oversize_share"] < self.options.oversize_rare
        return bool(kept) and contention_share(c) <= CONTENTION_SHARE

    def finish(
        self, results: Sequence[tuple[ReplayResult, ReplayResult | None] | None]
    ) -> Recommendation:
        """The recommendation from the sweep's ``results`` (in ``sweep.params`` order; None
        for a candidate of :meth:`unneeded` left unreplayed)."""
        options, cache, current = self.options, self.cache, self.current
        upper_bound, cpus, nodes, demand = self.upper_bound, self.cpus, self.nodes, self.demand
        base, engine, kernel_auto = self.sweep.base, self.sweep.engine, self.kernel_auto
        size = base.object_size
        requested = EXPLICIT_CAPACITY.get(cache, 0)
        cpn = math.ceil(cpus / nodes)
        cands = describe(self.sweep, results, options.costs, cpn, upper_bound)
        win, runner, why = choose(
            cands,
            options.objective,
            tolerance=options.tolerance,
            oversize_rare=options.oversize_rare,
            memory_budget=options.memory_budget,
            upper_bound=upper_bound,
        )
        by_cap = {c["capacity"]: c for c in cands}
        refs = [(kernel_auto, "the 7.3 kernel's autotuned value")]
        if current != kernel_auto:
            refs.append((current, "the current value"))
        for ref, label in refs:
            if ref == win["capacity"] or ref not in by_cap:
                continue
            r = by_cap[ref]
            why.append(
                f"against {label} {ref}: time "
                f"{_pct(win['cost_ns_per_op'], r['cost_ns_per_op'])}, worst-case memory per node "
                f"{_signed_kib(win['bytes_per_node'] - r['bytes_per_node'])}"
                f" ({_signed_kib(win['bytes_per_cpu'] - r['bytes_per_cpu'])} per CPU)"
            )
        size_only = autotune_capacity(size)
        if size_only != kernel_auto:
            why.append(
                f"7.3 autotuning gives a {size}-byte slot {size_only}; the cache's explicit "
                f"request of {requested} is a floor, so the kernel uses {kernel_auto}"
            )
        if win["wastes_bucket"]:
            why.append(
                f"note: {win['capacity']} does not fill its kmalloc bucket; its "
                f"{win['sheaf_bytes']}-byte sheaf would hold {win['bucket_capacity']} pointers "
                "for the same memory"
            )
        for c in cands:
            if c["wastes_bucket"] and c["capacity"] != win["capacity"]:
                why.append(
                    f"note: {c['capacity']} costs the sheaf memory of {c['bucket_capacity']} "
                    f"({c['sheaf_bytes']}-byte kmalloc bucket)"
                )
        return Recommendation(
            cache=cache,
            kernel=base.kernel,
            object_size=size,
            cpus=cpus,
            nodes=nodes,
            cpus_per_node=cpn,
            objective=options.objective,
            tolerance=options.tolerance,
            oversize_rare=options.oversize_rare,
            memory_budget=options.memory_budget,
            upper_bound=upper_bound,
            recommended=win["capacity"],
            runner_up=runner["capacity"] if runner else None,
            current=current,
            kernel_autotune=kernel_auto,
            kernel_autotune_difference=win["capacity"] - kernel_auto,
            candidates=cands,
            rationale=why,
            snippet=f".sheaf_capacity = {win['capacity']},",
            demand=demand,
            engine=engine,
            costs=options.costs.to_dict(),
        )


def _prefill_bound(plan: Plan | StreamedPlan, stats: PlanStats | None = None) -> int | None:
    if isinstance(plan, StreamedPlan):
        return plan.max_prefill if plan.n_sheaves else None
    if stats is not None:
        return stats.max_prefill
    sizes = plan.b[plan.cmd == Cmd.PREFILL]
    return int(sizes.max()) if len(sizes) else None


def recommend_for_cache(
    norm: Normalized,
    cache: str,
    options: RecommendOptions | None = None,
    policy: ReplayPolicy | None = None,
    source: str = "trace",
    rows: np.ndarray | None = None,
    plan: Plan | StreamedPlan | None = None,
) -> Recommendation:
    """The recommendation for one cache of a normalised trace (``analyze`` calls this too).

    The trace is replayed as it is, on its own CPUs; ``options.cpus``/``nodes`` scale the
    contention and per-node memory (see the module docstring). ``rows``: the cache's event
    indices (``tracereplay.cache_rows``), ``plan``: its ``plan_for(norm, cache, policy,
    engine)`` not yet fitted to nodes (this function fits it), when the caller has them.
    """
    pending = prepare_for_cache(norm, cache, options, policy, source, rows, plan)
    return pending.finish(pending.sweep.run_all())


def prepare_for_cache(
    norm: Normalized,
    cache: str,
    options: RecommendOptions | None = None,
    policy: ReplayPolicy | None = None,
    source: str = "trace",
    rows: np.ndarray | None = None,
    plan: Plan | StreamedPlan | None = None,
    slot: int | None = None,
) -> Pending:
    """``recommend_for_cache`` up to its replays: the :class:`Pending` recommendation
    (``slot``: the cache's slot size, ``tracereplay.slot_size``, when the caller has it)."""
    options = options or RecommendOptions()
    policy = policy or ReplayPolicy()
    if options.upper_bound is not None and policy.upper_bound is None:
        policy = dataclasses.replace(policy, upper_bound=options.upper_bound)
    t = norm.table
    if cache not in t.caches:
        raise NothingToAnalyse(f"no event of cache {cache}")
    if rows is None:
        rows = rows_of_cache(norm, cache)
    if plan is None:
        plan = plan_for(norm, cache, policy, resolve_engine(options.engine), rows)
    base = params_for(norm, cache, options.kernel, rows=rows, slot=slot)
    del rows
    replay_nodes = min(options.nodes or 1, base.cpus)
    base = dataclasses.replace(
        base, nodes=replay_nodes, cpu_node=contiguous_cpu_nodes(base.cpus, replay_nodes)
    )
    fit_plan_to_nodes(plan, base.nodes, norm)
    cpus = options.cpus or base.cpus
    nodes = options.nodes or 1
    if nodes > cpus:
        raise UsageError(f"--nodes {nodes} is more than --cpus {cpus}")
    stats = None
    if isinstance(plan, Plan) and resolve_engine(options.engine) == "fast":
        from sheaftune.model import fast

        # one pass for the counts, the prefill bound and the warm-up window (evaluate)
        stats = fast.plan_stats(plan, _warmup_cut(plan, options.warmup_share))
    demand = {
        "kind": source,
        "replayed_cpus": base.cpus,
        "scaling": (
            f"the trace's {base.cpus} CPU streams replayed as they are; contention and per-node "
            f"memory scaled to {math.ceil(cpus / nodes)} CPUs per node running this mix back to "
            "back (closed loop)"
        ),
        "plan": plan.counts() if stats is None else stats.counts,
        "assumptions": plan.assumptions,
        "rcu_gp_ns": policy.rcu_gp_ns,
        "warmup_share": options.warmup_share,
    }
    current = EXPLICIT_CAPACITY.get(cache, 0) if options.kernel == "6.18" else base.sheaf_capacity
    return Pending.of(
        plan,
        base,
        cache=cache,
        options=options,
        current=current,
        demand=demand,
        upper_bound=options.upper_bound or _prefill_bound(plan, stats),
        cpus=cpus,
        nodes=nodes,
        stats=stats,
    )


def recommend_for_workload(
    spec: WorkloadSpec,
    cache: str,
    options: RecommendOptions | None = None,
    *,
    events_per_cpu: int = EVENTS_PER_CPU,
    seed: int = 0,
) -> Recommendation:
    """Regenerate ``spec`` for ``options.cpus`` CPUs and recommend for one of its caches."""
    from sheaftune.normalize import normalize
    from sheaftune.synth.generate import generate

    options = options or RecommendOptions()
    try:
        cspec = spec.cache(cache)
    except KeyError:
        names = ", ".join(c.name for c in spec.caches)
        raise UsageError(
            f"workload {spec.name!r} has no cache {cache!r} (it has {names})"
        ) from None
    cpus = options.cpus or spec.cpus
    nodes = options.nodes or spec.nodes
    syn = generate(spec, seed=seed, cpus=cpus, events=events_per_cpu * cpus)
    norm = normalize(syn.events)
    streams = [s for s in spec.streams if s.cache == cache]
    delays = [s.free.rcu_delay_us for s in streams if s.free.kfree_rcu > 0]
    policy = ReplayPolicy(rcu_gp_ns=int(max(delays) * 1000)) if delays else ReplayPolicy()
    if options.upper_bound is not None:
        policy = dataclasses.replace(policy, upper_bound=options.upper_bound)
    plan = build_plan(norm, cache, policy)
    if len(plan) == 0:
        raise NothingToAnalyse(f"workload {spec.name!r} generated no event of cache {cache}")
    base = ModelParams.for_cache(
        kernel=options.kernel,
        object_size=cspec.object_size,
        requested_capacity=cspec.sheaf_capacity,
        cpus=cpus,
        nodes=nodes,
    )
    bounds = [s.upper_bound.maximum() for s in streams if s.upper_bound is not None]
    upper = options.upper_bound or (max(bounds) if bounds else _prefill_bound(plan))
    current = cspec.sheaf_capacity if options.kernel == "6.18" else base.sheaf_capacity
    demand = {
        "kind": "workload",
        "workload": spec.name,
        "seed": seed,
        "events": events_per_cpu * cpus,
        "replayed_cpus": cpus,
        "scaling": f"the workload regenerated for {cpus} CPUs on {nodes} node(s)",
        "plan": plan.counts(),
        "assumptions": plan.assumptions,
        "rcu_gp_ns": policy.rcu_gp_ns,
        "warmup_share": options.warmup_share,
    }
    return recommend(
        plan,
        base,
        cache=cache,
        options=options,
        current=current,
        demand=demand,
        upper_bound=upper,
        cpus=cpus,
        nodes=nodes,
    )


def demand_plan(
    upper_bound: int,
    cpus: int,
    *,
    writes_per_cpu: int = DEMAND_WRITES_PER_CPU,
    seed: int = 0,
    write_ns: int = DEMAND_WRITE_NS,
    gp_ns: int = DEMAND_GP_NS,
    live_per_cpu: int = DEMAND_LIVE_PER_CPU,
) -> Plan:
    """The default demand model: a closed-loop maple-tree-like write stream on every CPU.

    Every ``write_ns`` each CPU performs one tree write: with probability
    ``DEMAND_PREFILL_SHARE`` a prefill operation (``kmem_cache_prefill_sheaf(upper_bound)``,
    ``used ~ max(1, Binomial(upper_bound, 0.6))`` pops, ``kmem_cache_return_sheaf``); with
    probability ``DEMAND_SINGLE_SHARE`` one plain ``kmem_cache_alloc`` (GFP_KERNEL); otherwise
    nothing. Each new node replaces the oldest of the CPU's ``live_per_cpu`` live nodes, which
    is freed with ``kfree_rcu`` on that CPU (M2: replaced nodes die through RCU). A grace period
    ends every ``gp_ns``. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    pb = PlanBuilder()
    rows: list[tuple[int, int, int, int, int, int, int]] = []
    n_sheaf = 0
    n_obj = 0
    for cpu in range(cpus):
        kind = rng.random(writes_per_cpu)
        used_all = np.maximum(rng.binomial(upper_bound, DEMAND_USED_FRACTION, writes_per_cpu), 1)
        live: deque[int] = deque()
        seq = 0
        for w in range(writes_per_cpu):
            ts = w * write_ns + cpu  # CPUs slightly staggered, in a fixed order
            new: list[int] = []
            if kind[w] < DEMAND_PREFILL_SHARE:
                sh = n_sheaf
                n_sheaf += 1
                rows.append((ts, seq, Cmd.PREFILL, cpu, sh, upper_bound, 1))
                seq += 1
                for _ in range(int(min(used_all[w], upper_bound))):
                    rows.append((ts, seq, Cmd.ALLOC_FROM_SHEAF, cpu, n_obj, sh, 0))
                    new.append(n_obj)
                    n_obj += 1
                    seq += 1
                rows.append((ts, seq, Cmd.RETURN_SHEAF, cpu, sh, 0, 0))
                seq += 1
            elif kind[w] < DEMAND_PREFILL_SHARE + DEMAND_SINGLE_SHARE:
                rows.append((ts, seq, Cmd.ALLOC, cpu, n_obj, 1, -1))
                new.append(n_obj)
                n_obj += 1
                seq += 1
            for o in new:
                live.append(o)
                if len(live) > live_per_cpu:
                    rows.append((ts, seq, Cmd.KFREE_RCU, cpu, live.popleft(), 0, 0))
                    seq += 1
    pb.new_objects(n_obj)
    pb.new_sheaves(n_sheaf)
    if rows:
        arr = np.array(rows, dtype=np.int64)
        # order: time, then CPU, then the CPU's own sequence
        seq_key = arr[:, 3] * (1 << 32) + arr[:, 1]
        pb.add(arr[:, 0], seq_key, arr[:, 2], arr[:, 3], arr[:, 4], arr[:, 5], arr[:, 6])
        t_end = int(arr[:, 0].max())
        gps = np.arange(gp_ns, t_end + 1, gp_ns, dtype=np.int64)
        pb.add(gps, np.full(len(gps), -1, dtype=np.int64), Cmd.RCU_GP, np.zeros(len(gps), np.int64))
    pb.assume("default demand model (no trace or workload)", 1)
    return pb.build()


def recommend_for_upper_bound(
    upper_bound: int,
    options: RecommendOptions | None = None,
    *,
    cache: str = "maple_node",
    object_size: int = DEFAULT_OBJECT_SIZE,
    writes_per_cpu: int = DEMAND_WRITES_PER_CPU,
    seed: int = 0,
) -> Recommendation:
    """Recommend from the default demand model alone (:func:`demand_plan`)."""
    options = options or RecommendOptions()
    cpus = options.cpus or 1
    nodes = options.nodes or 1
    if nodes > cpus:
        raise UsageError(f"--nodes {nodes} is more than --cpus {cpus}")
    plan = demand_plan(upper_bound, cpus, writes_per_cpu=writes_per_cpu, seed=seed)
    requested = EXPLICIT_CAPACITY.get(cache, 0)
    base = ModelParams.for_cache(
        kernel=options.kernel,
        object_size=object_size,
        requested_capacity=requested,
        cpus=cpus,
        nodes=nodes,
    )
    current = requested if options.kernel == "6.18" else base.sheaf_capacity
    demand = {
        "kind": "demand-model",
        "replayed_cpus": cpus,
        "scaling": f"{cpus} CPUs on {nodes} node(s), each running the default demand model",
        "model": (
            f"per CPU one tree write every {DEMAND_WRITE_NS} ns: {DEMAND_PREFILL_SHARE:.0%} "
            f"prefill {upper_bound} and use Binomial({upper_bound}, {DEMAND_USED_FRACTION}) "
            f"(at least 1), {DEMAND_SINGLE_SHARE:.0%} one plain allocation, the rest nothing; "
            f"each new object replaces the oldest of {DEMAND_LIVE_PER_CPU} live ones, freed by "
            f"kfree_rcu; a grace period every {DEMAND_GP_NS / 1e6:g} ms "
            "(kernel-sheaves.md M2, M5)"
        ),
        "writes_per_cpu": writes_per_cpu,
        "seed": seed,
        "plan": plan.counts(),
        "rcu_gp_ns": DEMAND_GP_NS,
        "warmup_share": options.warmup_share,
    }
    return recommend(
        plan,
        base,
        cache=cache,
        options=options,
        current=current,
        demand=demand,
        upper_bound=upper_bound,
        cpus=cpus,
        nodes=nodes,
    )
