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
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from sheaftune import gfp as gfpmod
from sheaftune.analysis.sweep import CapacitySpec, capacities_for, replay_capacities
from sheaftune.model.plan import Cmd, Plan, PlanBuilder
from sheaftune.model.replay import ReplayResult
from sheaftune.normalize import (
    CHUNK_ROWS,
    Normalized,
    alloc_mask,
    group_rows,
    index_dtype,
    rows_of_cache,
    sheaf_pop_runs,
)
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
    """Event indices of every cache, each in time order: one counting sort instead of a scan
    per cache (int32 indices when they fit)."""
    t = norm.table
    ncaches = len(t.caches)
    cid = t.cache_id
    key = np.where(cid >= 0, cid, ncaches).astype(np.int32 if ncaches < 2**31 - 1 else np.int64)
    rows, starts = group_rows(key, ncaches)
    del key
    return {name: rows[starts[i] : starts[i + 1]] for i, name in enumerate(t.caches)}


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


#: (a module constant: inside a class body the name would be mangled)
_DIRECT_RECLAIM = gfpmod.__GFP_DIRECT_RECLAIM

#: A cache with more events than this replays (fast engine) from a stream of plan windows,
#: so its whole plan never exists at once: issue 10's 2 GB bound on 50 million events.
STREAM_EVENTS = 1 << 20
#: Events of the trace per window of a streamed plan.
WINDOW_EVENTS = 1 << 18


class CacheCommands:
    """One cache's replay commands, derived once, laid out in time window by window.

    The rules are ``build_plan``'s (see the module docstring). Every command is anchored at
    one event of the trace: an allocation, free or pop at itself, a prefill at its first pop
    (sequence -1), a return at its last pop (+1), an unseen free's ``kfree_rcu`` at the
    reallocation that reveals it (-1), a grace period at the first event at or after its time.
    A window is a range of events whose edges fall between two different timestamps, so the
    commands of consecutive windows never tie on (time, sequence), and sorting each window
    gives exactly the whole plan's order.
    """

    def __init__(
        self,
        norm: Normalized,
        cache: str,
        policy: ReplayPolicy | None = None,
        rows: np.ndarray | None = None,
    ) -> None:
        self.policy = policy = policy or ReplayPolicy()
        t = self.table = norm.table
        self.n_events = len(t)
        self.n_sheaves = 0
        self.assumptions: dict[str, int] = {}
        idx = index_dtype(len(t))
        empty: np.ndarray = np.empty(0, dtype=idx)
        self.allocs = self.pop_rows = self.pop_run = self.fr = self.lr = self.lr_run = empty
        self.bound = np.empty(0, dtype=np.int64)
        self.matched = self.matched_slot = self.unseen = self.reuse = empty
        self.gps = np.empty(0, dtype=np.int64)
        self.gp_anchor = np.empty(0, dtype=np.int64)
        self.n_plain = 0
        self.is_pop = np.zeros(0, dtype=bool)
        if cache not in t.caches:
            self.n_objects = 0
            return
        if rows is None:
            rows = rows_of_cache(norm, cache)
        rows = rows.astype(idx, copy=False)
        is_alloc = alloc_mask(t.gather("op", rows))
        # not failed allocations (NULL pointer)
        allocs = self.allocs = rows[is_alloc & (t.gather("ptr", rows) != 0)]
        self.n_objects = len(allocs)

        if policy.sheaf_pops == "prefill":
            runs = sheaf_pop_runs(norm, cache, policy.upper_bound, policy.tree_height, rows=rows)
            if runs.n_runs:
                self.n_sheaves = runs.n_runs
                self.pop_rows = runs.rows.astype(idx)
                self.pop_run = runs.run.astype(idx)
                # each run's first and last pop (pops are in time order), without a sort
                npops = len(runs.run)
                at: np.ndarray = np.arange(npops, dtype=idx)
                first: np.ndarray = np.full(runs.n_runs, npops, dtype=idx)
                np.minimum.at(first, runs.run, at)
                last: np.ndarray = np.full(runs.n_runs, -1, dtype=idx)
                np.maximum.at(last, runs.run, at)
                del at
                self.fr = runs.rows[first].astype(idx)  # increasing: runs number by first pop
                lr = runs.rows[last]
                del first, last
                by_lr = np.argsort(lr, kind="stable")
                self.lr, self.lr_run = lr[by_lr].astype(idx), by_lr.astype(idx)
                self.bound = runs.bound
                self._assume("sheaf pops replayed as prefill operations", len(runs.rows))
                self._assume("prefill operations", runs.n_runs)
        self.n_plain = len(allocs) - len(self.pop_rows)

        # which allocations are pops (the plain ones are the rest), as a mask over allocs
        self.is_pop = np.zeros(len(allocs), dtype=bool)
        if len(self.pop_rows):
            self.is_pop[np.searchsorted(allocs, self.pop_rows)] = True

        # frees, a chunk of the cache's rows at a time (bounded temporaries on huge caches)
        matched: list[np.ndarray] = []
        matched_slot: list[np.ndarray] = []
        before = other = 0
        for lo in range(0, len(rows), CHUNK_ROWS):
            part = rows[lo : lo + CHUNK_ROWS]
            frees = part[~is_alloc[lo : lo + CHUNK_ROWS] & (t.ptr[part] != 0)]  # not NULL
            src = norm.alloc_of[frees]
            # a free matched to an allocation this cache replays (a kmem_cache_free naming
            # another cache than its allocation's stays with the cache it names, no object)
            pos = np.searchsorted(allocs, src)
            ok = (src >= 0) & (pos < len(allocs))
            ok[ok] = allocs[pos[ok]] == src[ok]
            matched.append(frees[ok])
            matched_slot.append(pos[ok].astype(idx))
            before += int(np.count_nonzero(src < 0))
            other += int(np.count_nonzero((src >= 0) & ~ok))
            t.release()
        del rows, is_alloc
        self.matched = np.concatenate(matched) if matched else empty
        self.matched_slot = np.concatenate(matched_slot) if matched_slot else empty
        del matched, matched_slot
        self._assume("frees of objects allocated before the trace (skipped)", before)
        self._assume("frees of objects allocated as another cache (skipped)", other)

        mask = norm.reused_by[allocs] >= 0
        unseen = allocs if mask.all() else allocs[mask]  # (share: often every one is unseen)
        del mask
        if policy.unseen_free == "rcu":
            # kept in allocation order: a window picks its reuses by range (no sort here)
            self.reuse = norm.reused_by[unseen]
            self.unseen = unseen
            self._assume("unseen frees replayed as kfree_rcu on the allocating CPU", len(unseen))
        else:
            self._assume("unseen frees left live (policy none)", len(unseen))
        del unseen
        self._assume(
            "objects live at the end of the trace",
            int(np.count_nonzero(norm.live_at_end[allocs])),
        )

        if len(allocs) and policy.rcu_gp_ns > 0:
            ts = t.ts_ns
            t0, t1 = int(ts[allocs[0]]), int(ts[-1])
            self.gps = np.arange(t0 + policy.rcu_gp_ns, t1 + 1, policy.rcu_gp_ns, dtype=np.int64)
            self.gp_anchor = np.searchsorted(ts, self.gps, side="left")
        t.release()

    def _assume(self, what: str, n: int) -> None:
        if n:
            self.assumptions[what] = self.assumptions.get(what, 0) + int(n)

    def counts(self) -> dict[str, int]:
        """Commands by name, as ``Plan.counts`` of the whole plan."""
        n = {
            "alloc": self.n_plain,
            "free": len(self.matched),
            "kfree_rcu": len(self.unseen),
            "rcu_gp": len(self.gps),
            "prefill": self.n_sheaves,
            "alloc_from_sheaf": len(self.pop_rows),
            "return_sheaf": self.n_sheaves,
        }
        return {c.name.lower(): n[c.name.lower()] for c in Cmd if n.get(c.name.lower(), 0)}

    def __len__(self) -> int:
        return sum(self.counts().values())

    @property
    def max_prefill(self) -> int:
        return int(self.bound.max()) if len(self.bound) else 0

    def plan(self) -> Plan:
        """The whole plan (one window over every event)."""
        pb = _LeanPlanBuilder()
        self._emit(pb, 0, self.n_events)
        return self._finish(pb)

    def windows(self, events: int = WINDOW_EVENTS) -> Iterator[Plan]:
        """The plan in consecutive windows of about ``events`` trace events each (empty
        windows skipped); their concatenation is :meth:`plan`."""
        ts = self.table.ts_ns
        n = self.n_events
        edges = [0]
        while edges[-1] < n:
            b = edges[-1] + max(1, events)
            if b < n:
                # move the edge past every event sharing the timestamp before it
                b = int(np.searchsorted(ts, ts[b - 1], side="right"))
            edges.append(min(b, n))
        for g0, g1 in zip(edges[:-1], edges[1:], strict=True):
            pb = _LeanPlanBuilder()
            self._emit(pb, g0, g1)
            if pb._parts:
                yield self._finish(pb)
            self.table.release()

    def _finish(self, pb: PlanBuilder) -> Plan:
        plan = pb.build()
        plan.n_objects, plan.n_sheaves = self.n_objects, self.n_sheaves
        plan.assumptions = dict(self.assumptions)
        return plan

    def _emit(self, pb: PlanBuilder, g0: int, g1: int) -> None:
        """Add the commands anchored at events g0..g1-1, in build_plan's order of groups."""
        t = self.table
        ts, cpu = t.ts_ns, t.cpu

        def span(anchors: np.ndarray) -> slice:
            lo, hi = np.searchsorted(anchors, (g0, g1))
            return slice(int(lo), int(hi))

        def seq(events: np.ndarray) -> np.ndarray:
            return 2 * events.astype(np.int64)

        allocs = self.allocs
        if self.n_sheaves:
            w = span(self.fr)
            fr = self.fr[w]
            sheaves = np.arange(w.start, w.stop, dtype=np.int64)
            pb.add(ts[fr], seq(fr) - 1, Cmd.PREFILL, cpu[fr], sheaves, self.bound[w], 1)
            w = span(self.pop_rows)
            pops = self.pop_rows[w]
            slots = np.searchsorted(allocs, pops)
            pb.add(ts[pops], seq(pops), Cmd.ALLOC_FROM_SHEAF, cpu[pops], slots, self.pop_run[w])
            w = span(self.lr)
            lr = self.lr[w]
            pb.add(ts[lr], seq(lr) + 1, Cmd.RETURN_SHEAF, cpu[lr], self.lr_run[w].astype(np.int64))
        w = span(allocs)
        keep = ~self.is_pop[w]
        plain = allocs[w][keep]
        blocking = (t.gfp[plain] & _DIRECT_RECLAIM) != 0
        pb.add(
            ts[plain],
            seq(plain),
            Cmd.ALLOC,
            cpu[plain],
            np.arange(w.start, w.stop, dtype=np.int64)[keep],
            blocking,
            t.node[plain].astype(np.int64),
        )
        w = span(self.matched)
        m = self.matched[w]
        pb.add(ts[m], seq(m), Cmd.FREE, cpu[m], self.matched_slot[w].astype(np.int64))
        if len(self.reuse):
            pick = np.nonzero((self.reuse >= g0) & (self.reuse < g1))[0]
            reuse, unseen = self.reuse[pick], self.unseen[pick]
            slots = np.searchsorted(allocs, unseen)
            pb.add(ts[reuse], seq(reuse) - 1, Cmd.KFREE_RCU, cpu[unseen], slots)
        if len(self.gps):
            w = span(self.gp_anchor)
            gps = self.gps[w]
            pb.add(
                gps,
                np.full(len(gps), -1, dtype=np.int64),
                Cmd.RCU_GP,
                np.zeros(len(gps), dtype=np.uint16),
            )


def build_plan(
    norm: Normalized, cache: str, policy: ReplayPolicy | None = None, rows: np.ndarray | None = None
) -> Plan:
    """Compile one cache's events into a plan (see the module docstring for the rules).

    ``rows``: the cache's event indices in time order (``cache_rows``), when already known.
    """
    return CacheCommands(norm, cache, policy, rows).plan()


def fit_plan_to_nodes(plan: Plan | StreamedPlan, nodes: int) -> Plan | StreamedPlan:
    """Node-specific allocations for nodes the modelled machine lacks become "any node".

    A trace from a NUMA machine replayed on fewer modelled nodes would otherwise name a node
    the model does not have; the count is kept in the plan's assumptions.
    """
    if isinstance(plan, StreamedPlan):
        plan.fit_nodes(nodes)
        return plan
    _note_node_fit(plan.assumptions, _fit_nodes(plan, nodes), nodes)
    return plan


def _fit_nodes(plan: Plan, nodes: int) -> int:
    bad = (plan.cmd == Cmd.ALLOC) & (plan.c >= nodes)
    n = int(np.count_nonzero(bad))
    if n:
        plan.c[bad] = -1
    return n


def _note_node_fit(assumptions: dict[str, int], n: int, nodes: int) -> None:
    if n:
        what = f"node-specific allocations for nodes beyond the {nodes} modelled (any node)"
        assumptions[what] = assumptions.get(what, 0) + n


#: Memory the engine states of one streamed cache may take at once (each holds an 8-byte slot
#: per object of the cache); more capacities than fit replay in further passes over the trace.
STREAM_STATE_BYTES = 256 << 20


@dataclass
class StreamStats:
    """What a streamed replay saw of its plan (``recommend.evaluate`` needs these)."""

    commands: int = 0
    ts_first: int = 0
    ts_last: int = 0
    ts_before_cut: int = 0  # time of the last command before the checkpoint
    ops_after_cut: int = 0  # object-moving calls after the checkpoint
    prefills_after_cut: int = 0
    active_after_cut: set[int] = dataclasses.field(default_factory=set)


class StreamedPlan:
    """A cache's plan replayed window by window (fast engine only): the plan of a huge cache
    never exists whole. It answers what reports ask of a :class:`Plan` (counts, assumptions,
    object and sheaf counts) and replays several capacities in one pass over the windows."""

    def __init__(self, commands: CacheCommands, window: int = WINDOW_EVENTS) -> None:
        self.commands = commands
        self.window = window
        self.assumptions = dict(commands.assumptions)
        self.n_objects = commands.n_objects
        self.n_sheaves = commands.n_sheaves
        self.max_prefill = commands.max_prefill
        self.nodes: int | None = None

    def counts(self) -> dict[str, int]:
        return self.commands.counts()

    def __len__(self) -> int:
        return len(self.commands)

    def fit_nodes(self, nodes: int) -> None:
        """As ``fit_plan_to_nodes``: counted now over the plain allocations, applied to each
        window as it is made."""
        cc = self.commands
        t = cc.table
        n = 0
        for lo in range(0, len(cc.allocs), CHUNK_ROWS):
            a = cc.allocs[lo : lo + CHUNK_ROWS]
            bad = (t.node[a] >= nodes) & ~cc.is_pop[lo : lo + CHUNK_ROWS]
            n += int(np.count_nonzero(bad))
            t.release()
        _note_node_fit(self.assumptions, n, nodes)
        self.nodes = nodes

    def replay(
        self, params_list: list[ModelParams], checkpoint: int | None = None
    ) -> tuple[list[ReplayResult], list[ReplayResult] | None, StreamStats]:
        """Replay every parameter set; with ``checkpoint`` k, also the results after the first k
        commands (as a replay of ``plan[:k]`` would give), and the plan's statistics."""
        from concurrent.futures import ThreadPoolExecutor

        from sheaftune.model import fast

        per_state = 8 * max(1, self.n_objects)
        group = max(1, min(len(params_list), STREAM_STATE_BYTES // per_state))
        full: list[ReplayResult] = []
        pre: list[ReplayResult] = []
        stats = StreamStats()
        workers = min(group, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for g0 in range(0, len(params_list), group):
                params = params_list[g0 : g0 + group]
                sessions = [
                    fast.Session(p, self.n_objects, self.n_sheaves, self.max_prefill)
                    for p in params
                ]

                def feed(part: Plan, sessions: list[fast.Session] = sessions) -> None:
                    list(pool.map(lambda one: one.feed(part), sessions))

                done = 0
                for chunk in self.commands.windows(self.window):
                    if self.nodes is not None:
                        _fit_nodes(chunk, self.nodes)
                    if g0 == 0:
                        _stream_stats(stats, chunk, done, checkpoint)
                    m = len(chunk)
                    if checkpoint is not None and done < checkpoint <= done + m:
                        k = checkpoint - done
                        feed(_slice(chunk, 0, k))
                        pre += [s.result() for s in sessions]
                        if k < m:
                            feed(_slice(chunk, k, m))
                    else:
                        feed(chunk)
                    done += m
                full += [s.result() for s in sessions]
        return full, (pre if checkpoint else None), stats


def _slice(plan: Plan, lo: int, hi: int) -> Plan:
    return Plan(
        plan.ts_ns[lo:hi], plan.cmd[lo:hi], plan.cpu[lo:hi], plan.a[lo:hi], plan.b[lo:hi],
        plan.c[lo:hi], plan.aux, plan.n_objects, plan.n_sheaves, {},
    )  # fmt: skip


def _stream_stats(stats: StreamStats, chunk: Plan, done: int, checkpoint: int | None) -> None:
    m = len(chunk)
    if m == 0:
        return
    if stats.commands == 0:
        stats.ts_first = int(chunk.ts_ns[0])
    stats.commands += m
    stats.ts_last = int(chunk.ts_ns[-1])
    k = checkpoint or 0
    if done < k <= done + m:
        stats.ts_before_cut = int(chunk.ts_ns[k - done - 1])
    ops, prefills, active = window_ops(chunk, min(m, max(0, k - done)))
    stats.ops_after_cut += ops
    stats.prefills_after_cut += prefills
    stats.active_after_cut |= active


def window_ops(plan: Plan, k: int) -> tuple[int, int, set[int]]:
    """After the first k commands: object-moving allocator calls, prefills, active CPUs."""
    cmd = plan.cmd[k:]
    single = np.isin(cmd, (Cmd.ALLOC, Cmd.FREE, Cmd.KFREE_RCU, Cmd.ALLOC_FROM_SHEAF))
    bulk = np.isin(cmd, (Cmd.ALLOC_BULK, Cmd.FREE_BULK))
    ops = int(np.count_nonzero(single)) + int(plan.b[k:][bulk].sum())
    prefills = int(np.count_nonzero(cmd == Cmd.PREFILL))
    active = set(np.unique(plan.cpu[k:][single | bulk | (cmd == Cmd.PREFILL)]).tolist())
    return ops, prefills, active


def plan_for(
    norm: Normalized,
    cache: str,
    policy: ReplayPolicy | None,
    engine: str,
    rows: np.ndarray | None = None,
) -> Plan | StreamedPlan:
    """``build_plan``, or for a cache of more than ``STREAM_EVENTS`` events replayed by the
    fast engine, a :class:`StreamedPlan`."""
    if engine == "fast" and cache in norm.table.caches:
        if rows is None:
            rows = rows_of_cache(norm, cache)
        if len(rows) > STREAM_EVENTS:
            return StreamedPlan(CacheCommands(norm, cache, policy, rows))
    return build_plan(norm, cache, policy, rows)


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
        rows = rows_of_cache(norm, cache)
    sizes = t.gather("bytes_alloc", rows[alloc_mask(t.gather("op", rows))])
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


def metrics(plan: Plan | StreamedPlan, params: ModelParams, res: ReplayResult) -> dict[str, Any]:
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
    if rows is None:
        rows = rows_of_cache(norm, cache)
    base = params_for(norm, cache, kernel, None, cpus, nodes, rows)
    plan = plan_for(norm, cache, policy, engine, rows)
    del rows  # a streamed plan keeps what it needs; the cache's rows can go
    fit_plan_to_nodes(plan, base.nodes)
    current = effective_capacity("6.18", cache, base.object_size)
    caps = capacities_for(
        capacities or CapacitySpec(), cache, base.sheaf_capacity, base.object_size, current
    )
    if isinstance(plan, StreamedPlan):
        plist = [dataclasses.replace(base, sheaf_capacity=c) for c in caps]
        pairs = list(zip(plist, plan.replay(plist)[0], strict=True))
    else:
        pairs = replay_capacities(plan, base, caps, engine)
    replays = []
    for params, res in pairs:
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
