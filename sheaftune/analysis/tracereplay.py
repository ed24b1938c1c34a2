"""Replay a trace's cache through the sheaf model: the trace-to-plan compiler and metrics.

``build_plan`` turns one cache's normalised events into a :class:`~sheaftune.model.plan.Plan`:

* an allocation is ``kmem_cache_alloc`` (``_node`` when the event asked for a node) on the CPU
  that executed it, blocking or not by its gfp flags;
* a matched free (``kmem_cache_free``, or a ``kfree`` matched by pointer) frees that object on
  the CPU that executed the free, which may be another CPU or node than the allocation's;
* pops from prefilled sheaves (``normalize.sheaf_pop_runs``) become, per operation,
  ``kmem_cache_prefill_sheaf(bound)`` before the first pop, one
  ``kmem_cache_alloc_from_sheaf`` per pop and ``kmem_cache_return_sheaf`` after the last;
* what the trace cannot show is assumed, by a policy the user chooses and the report counts:
  an object whose pointer is allocated again with no visible free (an *unseen free*) was
  freed with ``kfree_rcu`` by the CPU that allocated it, just before the reuse (``rcu``), or
  leaked (``none``); objects still live at the end stay live; frees of objects allocated
  before the trace began are skipped (there is no object to free);
* a grace period ends every ``rcu_gp_ns`` of trace time (rcu_free sheaves return to the barn).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from sheaftune import gfp as gfpmod
from sheaftune.analysis.sweep import CapacitySpec, capacities_for, replay_capacities
from sheaftune.model.plan import Cmd, Plan, PlanBuilder
from sheaftune.model.replay import ReplayResult
from sheaftune.normalize import Normalized, sheaf_pop_runs
from sheaftune.params import ModelParams, capacity_for, contiguous_cpu_nodes

#: Caches that ask for ``sheaf_capacity = 32`` in ``kmem_cache_args`` (kernel-sheaves.md M0).
EXPLICIT_CAPACITY = {"maple_node": 32, "vm_area_struct": 32}
UNSEEN_FREE_POLICIES = ("rcu", "none")
SHEAF_POP_POLICIES = ("prefill", "plain")


@dataclass(frozen=True)
class ReplayPolicy:
    """What a replay assumes where the trace is silent (see the module docstring)."""

    unseen_free: str = "rcu"
    sheaf_pops: str = "prefill"
    rcu_gp_ns: int = 10_000_000  # a grace period every 10 ms of trace time
    upper_bound: int | None = None  # prefill size; None: the store type's request rule
    tree_height: int = 3


def effective_capacity(kernel: str, cache: str, slot_size: int) -> int:
    """The capacity the kernel gives the cache: 7.3 autotunes with the explicit 32 of maple_node
    and vm_area_struct as floors; 6.18 gives those two 32 and the others no sheaves."""
    return capacity_for(kernel, slot_size, EXPLICIT_CAPACITY.get(cache, 0))


def cache_rows(norm: Normalized) -> dict[str, np.ndarray]:
    """Event indices of every cache, each in time order: one sort instead of a scan per cache."""
    cid = norm.table.cache_id
    order = np.argsort(cid, kind="stable")
    bounds = np.searchsorted(cid[order], np.arange(len(norm.table.caches) + 1))
    return {name: order[bounds[i] : bounds[i + 1]] for i, name in enumerate(norm.table.caches)}


#: dtypes of the plan's columns (as ``PlanBuilder`` casts them): ts, seq, cmd, cpu, a, b, c
_PLAN_DTYPES = (np.int64, np.int64, np.uint8, np.uint16, np.int64, np.int64, np.int64)


class _LeanPlanBuilder(PlanBuilder):
    """``PlanBuilder`` with the same plan at a third of its peak memory on big traces.

    ``PlanBuilder`` copies every chunk on ``add``, concatenates the chunks while they are alive,
    then sorts into a third set of columns (~140 bytes per command at the peak). Here ``add``
    keeps the caller's fresh arrays (scalars stay scalars), ``build`` fills one preallocated
    column at a time from the chunks and releases each chunk's part as soon as it is copied,
    and the sort permutes one column at a time (~60 bytes per command). The result is
    identical: same dtypes, same stable (time, sequence) order.
    """

    def add(
        self,
        ts: np.ndarray,
        seq: np.ndarray,
        cmd: int | np.ndarray,
        cpu: np.ndarray,
        a: np.ndarray | int = 0,
        b: np.ndarray | int = 0,
        c: np.ndarray | int = 0,
    ) -> None:
        if len(ts) == 0:
            return
        # scalars stay scalars until build() broadcasts them (PlanBuilder's parts are arrays)
        self._parts.append((ts, seq, cmd, cpu, a, b, c))  # type: ignore[arg-type]

    def build(self) -> Plan:
        n = sum(len(p[0]) for p in self._parts)
        sizes = [len(p[0]) for p in self._parts]
        parts: list[list[Any]] = [list(p) for p in self._parts]
        self._parts = []
        cols: list[np.ndarray] = []
        for i, dtype in enumerate(_PLAN_DTYPES):
            col = np.empty(n, dtype=dtype)
            at = 0
            for part, size in zip(parts, sizes, strict=True):
                col[at : at + size] = part[i]  # a scalar broadcasts, as PlanBuilder's col()
                part[i] = None  # release the chunk's column now, not at the end
                at += size
            cols.append(col)
        ts, seq = cols[0], cols[1]
        order = np.lexsort((seq, ts))
        del cols[1], seq
        for i, col in enumerate(cols):
            cols[i] = col[order]
            del col
        del order
        ts, cmd, cpu, a, b, c = cols
        aux = np.concatenate(self._aux) if self._aux else np.empty(0, dtype=np.int64)
        return Plan(
            ts, cmd, cpu, a, b, c, aux, self.n_objects, self.n_sheaves, dict(self.assumptions)
        )


def build_plan(
    norm: Normalized, cache: str, policy: ReplayPolicy | None = None, rows: np.ndarray | None = None
) -> Plan:
    """Compile one cache's events into a plan (see the module docstring for the rules).

    ``rows``: the cache's event indices in time order (``cache_rows``), when already known.
    """
    policy = policy or ReplayPolicy()
    t = norm.table
    pb = _LeanPlanBuilder()
    if cache not in t.caches:
        return pb.build()
    if rows is None:
        rows = np.nonzero(t.cache_id == t.find_cache(cache))[0]
    is_alloc = norm.is_alloc[rows]
    allocs = rows[is_alloc & ~norm.failed_alloc[rows]]
    slots = pb.new_objects(len(allocs))

    def slot_of(events: np.ndarray) -> np.ndarray:
        """Object slot of allocation events (global indices) of this cache."""
        return slots[np.searchsorted(allocs, events)]

    ts = t.ts_ns
    cpu = t.cpu

    def seq(events: np.ndarray) -> np.ndarray:
        return 2 * events.astype(np.int64)

    pop_rows = np.empty(0, dtype=np.int64)
    if policy.sheaf_pops == "prefill":
        runs = sheaf_pop_runs(norm, cache, policy.upper_bound, policy.tree_height, rows=rows)
        pop_rows = runs.rows
        if runs.n_runs:
            sheaf_slots = pb.new_sheaves(runs.n_runs)
            _, first = np.unique(runs.run, return_index=True)
            last = len(runs.run) - 1 - np.unique(runs.run[::-1], return_index=True)[1]
            fr, lr = runs.rows[first], runs.rows[last]
            pb.add(ts[fr], seq(fr) - 1, Cmd.PREFILL, cpu[fr], sheaf_slots, runs.bound, 1)
            pb.add(
                ts[runs.rows],
                seq(runs.rows),
                Cmd.ALLOC_FROM_SHEAF,
                cpu[runs.rows],
                slot_of(runs.rows),
                sheaf_slots[runs.run],
            )
            pb.add(ts[lr], seq(lr) + 1, Cmd.RETURN_SHEAF, cpu[lr], sheaf_slots)
            pb.assume("sheaf pops replayed as prefill operations", len(runs.rows))
            pb.assume("prefill operations", runs.n_runs)

    plain = allocs[~np.isin(allocs, pop_rows, assume_unique=True)] if len(pop_rows) else allocs
    blocking = (t.gfp[plain] & gfpmod.__GFP_DIRECT_RECLAIM) != 0
    pb.add(
        ts[plain],
        seq(plain),
        Cmd.ALLOC,
        cpu[plain],
        slot_of(plain),
        blocking,
        t.node[plain].astype(np.int64),
    )

    frees = rows[~is_alloc & ~norm.null_free[rows]]
    src = norm.alloc_of[frees]
    # a free matched to an allocation this cache replays (a kmem_cache_free naming another
    # cache than its allocation's stays with the cache it names, without an object)
    pos = np.searchsorted(allocs, src)
    ok = (src >= 0) & (pos < len(allocs))
    ok[ok] = allocs[pos[ok]] == src[ok]
    matched = frees[ok]
    pb.add(ts[matched], seq(matched), Cmd.FREE, cpu[matched], slots[pos[ok]])
    pb.assume(
        "frees of objects allocated before the trace (skipped)", int(np.count_nonzero(src < 0))
    )
    pb.assume(
        "frees of objects allocated as another cache (skipped)",
        int(np.count_nonzero((src >= 0) & ~ok)),
    )

    unseen = allocs[norm.unseen_free[allocs]]
    if policy.unseen_free == "rcu":
        reuse = norm.reused_by[unseen]
        pb.add(ts[reuse], seq(reuse) - 1, Cmd.KFREE_RCU, cpu[unseen], slot_of(unseen))
        pb.assume("unseen frees replayed as kfree_rcu on the allocating CPU", len(unseen))
    else:
        pb.assume("unseen frees left live (policy none)", len(unseen))
    pb.assume(
        "objects live at the end of the trace", int(np.count_nonzero(norm.live_at_end[allocs]))
    )

    if len(allocs) and policy.rcu_gp_ns > 0:
        t0, t1 = int(ts[allocs[0]]), int(ts[-1])
        gps = np.arange(t0 + policy.rcu_gp_ns, t1 + 1, policy.rcu_gp_ns, dtype=np.int64)
        pb.add(
            gps,
            np.full(len(gps), -1, dtype=np.int64),
            Cmd.RCU_GP,
            np.zeros(len(gps), dtype=np.uint16),
        )
    return pb.build()


def fit_plan_to_nodes(plan: Plan, nodes: int) -> Plan:
    """Node-specific allocations for nodes the modelled machine lacks become "any node".

    A trace from a NUMA machine replayed on fewer modelled nodes would otherwise name a node
    the model does not have; the count is kept in the plan's assumptions.
    """
    bad = (plan.cmd == Cmd.ALLOC) & (plan.c >= nodes)
    n = int(np.count_nonzero(bad))
    if n:
        plan.c[bad] = -1
        what = f"node-specific allocations for nodes beyond the {nodes} modelled (any node)"
        plan.assumptions[what] = plan.assumptions.get(what, 0) + n
    return plan


def params_for(
    norm: Normalized,
    cache: str,
    kernel: str,
    capacity: int | None = None,
    cpus: int | None = None,
    nodes: int = 1,
    rows: np.ndarray | None = None,
) -> ModelParams:
    """ModelParams for one cache of the trace: its slot size (``bytes_alloc``), the trace's
    CPUs, and the kernel's effective capacity unless ``capacity`` forces one."""
    t = norm.table
    if rows is None:
        rows = np.nonzero(t.cache_id == t.find_cache(cache))[0]
    sizes = t.bytes_alloc[rows[norm.is_alloc[rows]]]
    slot = int(np.bincount(sizes).argmax()) if len(sizes) else 256
    ncpus = cpus or max(int(t.meta.cpus), int(t.cpu.max()) + 1 if len(t) else 1, 1)
    cap = capacity if capacity is not None else effective_capacity(kernel, cache, slot)
    return ModelParams.for_cache(
        kernel=kernel,
        object_size=max(slot, 8),
        capacity=cap,
        cpus=ncpus,
        nodes=nodes,
        cpu_node=contiguous_cpu_nodes(ncpus, nodes),
    )


def metrics(plan: Plan, params: ModelParams, res: ReplayResult) -> dict[str, Any]:
    """What a user compares between capacities, derived from one replay's counters."""
    c = res.counters
    ex = res.extras
    n = plan.counts()
    allocs = n.get("alloc", 0)
    frees = n.get("free", 0)
    ops = allocs + frees + n.get("kfree_rcu", 0) + n.get("alloc_from_sheaf", 0)
    v618 = params.kernel == "6.18"
    alloc_hits = c.get("alloc_cpu_sheaf" if v618 else "alloc_fastpath", 0)
    free_hits = c.get("free_cpu_sheaf" if v618 else "free_fastpath", 0)

    def per_k(x: int) -> float | None:
        return round(1000 * x / ops, 3) if ops else None

    occ = res.occupancy
    held_max = [cpu["max"] for cpu in occ["cpus"]]
    held_mean = [cpu["mean"] for cpu in occ["cpus"] if cpu["mean"] is not None]
    barn_max = [node["barn_max"] for node in occ["nodes"]]
    size = params.object_size
    return {
        "capacity": params.sheaf_capacity,
        "operations": ops,
        "alloc_sheaf_share": round(alloc_hits / allocs, 6) if allocs else None,
        "free_sheaf_share": round(free_hits / frees, 6) if frees else None,
        "barn_get_per_k": per_k(c.get("barn_get", 0)),
        "barn_get_fail_per_k": per_k(c.get("barn_get_fail", 0)),
        "barn_put_per_k": per_k(c.get("barn_put", 0)),
        "barn_put_fail_per_k": per_k(c.get("barn_put_fail", 0)),
        "refilled_objects": c.get("sheaf_refill", 0),
        "flushed_objects": c.get("sheaf_flush", 0),
        "sheaf_structs_allocated": c.get("sheaf_alloc", ex.get("sheaves_allocated", 0)),
        "held_objects_max": ex.get("held_objects_max", 0),
        "held_bytes_max": ex.get("held_objects_max", 0) * size,
        "cpu_held_objects_max": held_max,
        "cpu_held_objects_mean": [round(x, 3) for x in held_mean],
        "cpu_held_objects_mean_total": round(sum(held_mean), 3) if held_mean else None,
        "barn_held_objects_max": barn_max,
    }


def replay_cache(
    norm: Normalized,
    cache: str,
    kernel: str = "7.3",
    capacities: CapacitySpec | None = None,
    engine: str = "reference",
    policy: ReplayPolicy | None = None,
    cpus: int | None = None,
    nodes: int = 1,
    rows: np.ndarray | None = None,
) -> dict[str, Any]:
    """Replay one cache at the capacities ``capacities`` asks for (default: the kernel's own)
    and return the report dict: parameters, what was assumed, one row per capacity."""
    policy = policy or ReplayPolicy()
    plan = build_plan(norm, cache, policy, rows)
    base = params_for(norm, cache, kernel, None, cpus, nodes, rows)
    fit_plan_to_nodes(plan, base.nodes)
    current = effective_capacity("6.18", cache, base.object_size)
    caps = capacities_for(
        capacities or CapacitySpec(), cache, base.sheaf_capacity, base.object_size, current
    )
    replays = []
    for params, res in replay_capacities(plan, base, caps, engine):
        replays.append(
            {
                **metrics(plan, params, res),
                "counters": res.counters,
                "extras": res.extras,
                "skipped": res.skipped,
            }
        )
    return {
        "kernel": kernel,
        "engine": engine,
        "object_size": base.object_size,
        "kernel_capacity": base.sheaf_capacity,
        "traced_capacity": current,
        "cpus": base.cpus,
        "nodes": base.nodes,
        "policy": dataclasses.asdict(policy),
        "plan": plan.counts(),
        "assumptions": plan.assumptions,
        "replays": replays,
    }
