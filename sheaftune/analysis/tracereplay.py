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

from sheaftune.analysis._plan_layout import ST_ALLOCS, ST_BEFORE, ST_LEN, ST_MATCHED, ST_OTHER
from sheaftune.analysis.sweep import CapacitySpec, capacities_for, replay_all
from sheaftune.compiled import Kernels, kernels
from sheaftune.events import EventTable
from sheaftune.model.plan import Cmd, Plan
from sheaftune.model.replay import ReplayResult, replay
from sheaftune.normalize import (
    CHUNK_ROWS,
    Normalized,
    alloc_mask,
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


def policy_dict(policy: ReplayPolicy) -> dict[str, Any]:
    """``dataclasses.asdict(policy)`` (its fields are plain values), without its deep copies:
    every cache's report carries it."""
    return {f: getattr(policy, f) for f in _POLICY_FIELDS}


_POLICY_FIELDS = tuple(f.name for f in dataclasses.fields(ReplayPolicy))


def effective_capacity(kernel: str, cache: str, slot_size: int) -> int:
    """The capacity the kernel gives the cache: 7.3 autotunes with the explicit 32 of maple_node
    and vm_area_struct as floors; 6.18 gives those two 32 and the others no sheaves."""
    return capacity_for(kernel, slot_size, EXPLICIT_CAPACITY.get(cache, 0))


def cache_rows(norm: Normalized) -> dict[str, np.ndarray]:
    """Event indices of every cache, each in time order: one compiled counting sort instead of
    a scan per cache (int32 indices when they fit)."""
    t = norm.table
    n = len(t)
    idx = index_dtype(n)
    starts = np.empty(len(t.caches) + 1, dtype=np.int64)
    rows: np.ndarray = np.empty(n, dtype=idx)
    cid = np.ascontiguousarray(t.cache_id, dtype=np.int32)
    _kernel("group_by_key", idx)(cid, len(t.caches), starts, rows)
    at = starts.tolist()
    return {name: rows[at[i] : at[i + 1]] for i, name in enumerate(t.caches)}


def cache_rows_counted(norm: Normalized) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """``cache_rows``, and in the same pass each cache's allocations as ``characterize``
    counts them (events of the cache with a non-NULL pointer), for the caches it reports
    (those with a counted event), in the table's order. For traces whose indices are int32.

    The pass is ``group_and_scan``: it does every cache's ``CacheCommands`` scan on the way
    (one read of the table's columns instead of one per cache), and keeps the scans on
    ``norm``, where the first ``CacheCommands`` of a cache with these very rows takes its own
    (a later one scans again).
    """
    t = norm.table
    n, nc = len(t), len(t.caches)
    starts = np.empty(nc + 1, dtype=np.int64)
    rows: np.ndarray = np.empty(n, dtype=np.int32)
    allocs, matched, mslot = (np.empty(n, dtype=np.int32) for _ in range(3))
    st = np.empty((nc, ST_LEN), dtype=np.int64)
    recent = np.empty(1 << min(SCAN_RECENT_BITS, max(n, 1).bit_length()), dtype=np.int32)
    _kernel("group_and_scan", np.int32)(
        _c(t.cache_id, np.int32), _c(t.op, np.uint8), _c(t.ptr, np.uint64),
        _c(t.bytes_alloc, np.uint32), _c(norm.alloc_of, np.int32),
        _c(norm.reused_by, np.int32), _c(norm.live_at_end, np.bool_), nc,
        starts, rows, allocs, matched, mslot, st, recent, np.empty(nc, dtype=np.int64),
    )  # fmt: skip
    at = starts.tolist()
    by_cache: dict[str, np.ndarray] = {}
    scans: dict[str, _Scan] = {}
    counted: dict[str, int] = {}
    for name, lo, hi, c in zip(t.caches, at, at[1:], st.tolist(), strict=False):
        by_cache[name] = r = rows[lo:hi]
        na, nm = c[ST_ALLOCS], c[ST_MATCHED]
        scans[name] = (r, allocs[lo : lo + na], matched[lo : lo + nm], mslot[lo : lo + nm], c)
        # (the other events with a pointer: the frees, matched or skipped)
        if na or nm + c[ST_BEFORE] + c[ST_OTHER]:
            counted[name] = na
    norm.__dict__["_cache_scans"] = scans
    return by_cache, counted


#: ``group_and_scan``'s shared table of recent allocations has 2**this entries (a free finds
#: its allocation there, without a search, unless it was made that many events before).
SCAN_RECENT_BITS = 18

#: One cache's scan: its rows, allocations, matched frees and their slots, ``ST_*`` counters.
_Scan = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]


#: The plan-building kernels (``sheaftune.compiled.kernels``; numba is imported only when
#: there is no ahead-of-time build).
KERNELS = "sheaftune.analysis._plan_kernels"


def _kernel(name: str, idx: type) -> Any:
    """Kernel ``name`` for event index arrays of type ``idx`` (int32, or int64 on huge tables).

    The AOT build's entry point is called without ``compiled``'s argument check: every array
    passed here is made, or converted (``_c``), to the exact exported type by this module.
    """
    k = kernels(KERNELS)
    name = name if idx is np.int32 else name + "_i8"
    return getattr(k.extension, name) if isinstance(k, Kernels) else getattr(k, name)


def _fit(buf: np.ndarray, n: int, compact: bool) -> np.ndarray:
    """The first n entries of an output sized for the worst case: a view, or with ``compact``
    a copy (the arrays of a streamed cache live through its whole replay)."""
    return buf[:n].copy() if compact and n < len(buf) else buf[:n]


def _c(x: np.ndarray, dtype: type) -> np.ndarray:
    """``x`` as a contiguous array of ``dtype`` (the kernels' exact argument types), no copy
    when it already is one."""
    return np.ascontiguousarray(x, dtype=dtype)


#: Command names in ``Cmd`` order (``Plan.counts``'s keys and order).
_CMD_NAMES = tuple(c.name.lower() for c in Cmd)

#: dtypes of the plan's columns: ts, cmd, cpu, a, b, c
_PLAN_DTYPES = (np.int64, np.uint8, np.uint16, np.int64, np.int64, np.int64)

#: The plan's order of command kinds among commands of equal time and sequence (prefill,
#: alloc_from_sheaf, return_sheaf, alloc, free, kfree_rcu, rcu_gp), indexed by ``Cmd`` value:
#: the sort key of a table out of time order, where the compiled merge cannot be used.
_TIE_RANK = np.array([3, 4, 5, 6, 0, 1, 2], dtype=np.int8)

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
    Each kind of command is kept as a stream of anchors in event order; a window is a range of
    events, and a compiled merge of the streams emits its commands directly in the plan's
    order (time, then sequence). Window edges fall between two different timestamps, so the
    commands of consecutive windows never tie on (time, sequence), and the windows'
    concatenation is exactly the whole plan.
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
        idx = self._idx = index_dtype(len(t))
        empty: np.ndarray = np.empty(0, dtype=idx)
        # the streams (event indices in increasing order) and what each command needs
        self.allocs = self.pop_rows = self.pop_run = self.fr = self.lr = self.lr_run = empty
        self.matched = self.matched_slot = self.kf_r = self.kf_slot = empty
        self.bound = np.empty(0, dtype=np.int64)
        self.gps = np.empty(0, dtype=np.int64)
        self.gp_anchor = np.empty(0, dtype=np.int64)
        self.n_plain = 0
        self.n_unseen = 0
        # which allocations are pops (empty: none), as a mask over allocs
        self.is_pop = np.zeros(0, dtype=bool)
        #: the cache's ``slot_size``, found on the way (None: the cache has no event)
        self.slot: int | None = None
        if cache not in t.caches:
            self.n_objects = 0
            return
        reused_by = _c(norm.reused_by, idx)
        # this cache's part of cache_rows_counted's pass, when these are its rows (taken: the
        # pass's arrays are freed once every cache has made its commands and dropped them)
        scans: dict[str, _Scan] = norm.__dict__.get("_cache_scans", {})
        scanned = scans.get(cache)
        if rows is None:
            rows = rows_of_cache(norm, cache)
        if scanned is not None and scanned[0] is rows:
            scans.pop(cache, None)
            rows, allocs, matched, mslot, counters = scanned
            m = len(rows)
        else:
            rows = _c(rows, idx)
            m = len(rows)
            allocs, matched, mslot, counters = self._scan(norm, rows, reused_by)
        na, nm, before, other, unseen, n_live, *sizes = counters
        self.slot = _slot_of(t, rows, sizes)
        compact = m > STREAM_EVENTS
        self.allocs = allocs = _fit(allocs, na, compact)
        self.matched, self.matched_slot = _fit(matched, nm, compact), _fit(mslot, nm, compact)
        del matched, mslot
        self.n_objects = na

        if policy.sheaf_pops == "prefill":
            runs = sheaf_pop_runs(norm, cache, policy.upper_bound, policy.tree_height, rows=rows)
            if runs.n_runs:
                nr = self.n_sheaves = runs.n_runs
                self.pop_rows, self.pop_run = _c(runs.rows, idx), _c(runs.run, idx)
                self.bound = _c(runs.bound, np.int64)
                self.is_pop = np.empty(na, dtype=bool)
                self.fr, self.lr, self.lr_run = (np.empty(nr, dtype=idx) for _ in range(3))
                edges = _kernel("sheaf_edges", idx)
                last = np.empty(nr, dtype=np.int64)
                pops, run = self.pop_rows, self.pop_run
                if edges(allocs, pops, run, self.is_pop, self.fr, self.lr, self.lr_run, last) < 0:
                    raise IndexError("a sheaf pop after the cache's last allocation")
                self._assume("sheaf pops replayed as prefill operations", len(runs.rows))
                self._assume("prefill operations", runs.n_runs)
        self.n_plain = na - len(self.pop_rows)
        self._assume("frees of objects allocated before the trace (skipped)", before)
        self._assume("frees of objects allocated as another cache (skipped)", other)

        if policy.unseen_free == "rcu":
            self.n_unseen = unseen
            if unseen:
                self._link_unseen(reused_by, unseen)
            self._assume("unseen frees replayed as kfree_rcu on the allocating CPU", unseen)
        else:
            self._assume("unseen frees left live (policy none)", unseen)
        self._assume("objects live at the end of the trace", n_live)

        if na and policy.rcu_gp_ns > 0:
            ts = t.ts_ns
            t0, t1 = int(ts[allocs[0]]), int(ts[-1])
            self.gps = np.arange(t0 + policy.rcu_gp_ns, t1 + 1, policy.rcu_gp_ns, dtype=np.int64)
            self.gp_anchor = np.searchsorted(ts, self.gps, side="left").astype(np.int64)
        t.release()

    def _scan(
        self, norm: Normalized, rows: np.ndarray, reused_by: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
        """The cache's allocations, matched frees, their slots and the ``ST_*`` counters: its
        rows scanned a chunk at a time, the mapped columns' pages given back between."""
        t, idx, m = self.table, self._idx, len(rows)
        allocs: np.ndarray = np.empty(m, dtype=idx)
        matched: np.ndarray = np.empty(m, dtype=idx)
        mslot: np.ndarray = np.empty(m, dtype=idx)
        st = np.zeros(ST_LEN, dtype=np.int64)
        scan = _kernel("scan_cache", idx)
        recent: np.ndarray = np.empty(1 << min(16, max(m, 1).bit_length()), dtype=idx)
        op, ptr, size = _c(t.op, np.uint8), _c(t.ptr, np.uint64), _c(t.bytes_alloc, np.uint32)
        alloc_of = _c(norm.alloc_of, idx)
        live = _c(norm.live_at_end, np.bool_)
        for lo in range(0, m, CHUNK_ROWS):
            scan(rows, lo, min(m, lo + CHUNK_ROWS), op, ptr, size, alloc_of, reused_by, live,
                 allocs, matched, mslot, st, recent)  # fmt: skip
            t.release()
        counters: list[int] = st.tolist()
        return allocs, matched, mslot, counters

    def _link_unseen(self, reused_by: np.ndarray, unseen: int) -> None:
        """The kfree_rcu stream: each unseen free's reallocation (its anchor) in event order,
        with the freed object's slot."""
        idx = self._idx
        allocs = self.allocs
        kf_at: np.ndarray = np.empty(len(allocs), dtype=idx)
        f_r: np.ndarray = np.empty(unseen, dtype=idx)
        f_slot: np.ndarray = np.empty(unseen, dtype=idx)
        recent: np.ndarray = np.empty(1 << min(16, len(allocs).bit_length()), dtype=idx)
        nf = _kernel("link_unseen", idx)(allocs, reused_by, kf_at, f_r, f_slot, recent)
        # reallocations as another cache: few, sorted here
        f_r, f_slot = f_r[:nf], f_slot[:nf]
        if nf > 1:
            order = np.argsort(f_r, kind="stable")
            f_r, f_slot = f_r[order], f_slot[order]
        self.kf_r = np.empty(unseen, dtype=idx)
        self.kf_slot = np.empty(unseen, dtype=idx)
        _kernel("merge_unseen", idx)(allocs, kf_at, f_r, f_slot, self.kf_r, self.kf_slot)

    def _assume(self, what: str, n: int) -> None:
        if n:
            self.assumptions[what] = self.assumptions.get(what, 0) + int(n)

    def counts(self) -> dict[str, int]:
        """Commands by name, as ``Plan.counts`` of the whole plan."""
        n = {
            "alloc": self.n_plain,
            "free": len(self.matched),
            "kfree_rcu": self.n_unseen,
            "rcu_gp": len(self.gps),
            "prefill": self.n_sheaves,
            "alloc_from_sheaf": len(self.pop_rows),
            "return_sheaf": self.n_sheaves,
        }
        return {name: n[name] for name in _CMD_NAMES if n.get(name, 0)}

    def __len__(self) -> int:
        return sum(self.counts().values())

    @property
    def max_prefill(self) -> int:
        return int(self.bound.max()) if len(self.bound) else 0

    def plan(self) -> Plan:
        """The whole plan (one window over every event)."""
        return self._window(0, self.n_events)

    def windows(self, events: int = WINDOW_EVENTS) -> Iterator[Plan]:
        """The plan in consecutive windows of about ``events`` trace events each (empty
        windows skipped); their concatenation is :meth:`plan`."""
        ts = self.table.ts_ns
        n = self.n_events
        edges = [0]
        while edges[-1] < n:
            b = edges[-1] + max(1, events)
            if b < n:
                b = _past_ties(ts, b)
            edges.append(min(b, n))
        for g0, g1 in zip(edges[:-1], edges[1:], strict=True):
            plan = self._window(g0, g1)
            if len(plan):
                yield plan
            self.table.release()

    def _window(self, g0: int, g1: int) -> Plan:
        """The plan of the commands anchored at events g0..g1-1."""
        t = self.table
        streams = (self.allocs, self.pop_rows, self.fr, self.lr, self.matched, self.kf_r,
                   self.gp_anchor)  # fmt: skip
        spans: list[int] = []
        if g0 == 0 and g1 >= self.n_events:
            # every stream whole but the grace periods (one may anchor past the last event)
            for s in streams[:-1]:
                spans += (0, len(s))
            spans += np.searchsorted(self.gp_anchor, (g0, g1)).tolist()
        else:
            for s in streams:
                # (the keys in the stream's own dtype: Python ints would make numpy cast the
                # whole int32 stream to int64 at every window)
                spans += np.searchsorted(s, np.array((g0, g1), dtype=s.dtype)).tolist()
        size = sum(spans[1::2]) - sum(spans[0::2])
        cols = [np.empty(size, dtype=d) for d in _PLAN_DTYPES]
        ts, cmd, cpu, a, b, c = cols
        (a0, a1, p0, p1, f0, f1, l0, l1, m0, m1, k0, k1, q0, q1) = spans
        emit = _kernel("emit", self._idx)

        def run(seq: np.ndarray) -> int:
            return int(
                emit(
                    _c(t.ts_ns, np.int64), _c(t.cpu, np.uint16), _c(t.gfp, np.uint32),
                    _c(t.node, np.int16),
                    self.allocs, a0, a1, self.is_pop,
                    self.pop_rows, self.pop_run, p0, p1,
                    self.fr, self.bound, f0, f1,
                    self.lr, self.lr_run, l0, l1,
                    self.matched, self.matched_slot, m0, m1,
                    self.kf_r, self.kf_slot, k0, k1,
                    self.gps, self.gp_anchor, q0, q1,
                    ts, cmd, cpu, a, b, c, seq,
                )
            )  # fmt: skip

        n = run(np.empty(0, dtype=np.int64))
        if n < 0:
            # a table out of time order: the streams' merge is not the plan's order, so sort
            # by (time, sequence, kind) as the plan defines it
            seq = np.empty(size, dtype=np.int64)
            n = -1 - run(seq)
            ts, cmd, cpu, a, b, c = (col[:n] for col in cols)
            order = np.lexsort((_TIE_RANK[cmd], seq[:n], ts))
            del seq
            ts, cmd, cpu, a, b, c = (col[order] for col in (ts, cmd, cpu, a, b, c))
        elif n < size:
            ts, cmd, cpu, a, b, c = (col[:n] for col in cols)
        return Plan(
            ts, cmd, cpu, a, b, c, np.empty(0, dtype=np.int64), self.n_objects, self.n_sheaves,
            dict(self.assumptions),
        )  # fmt: skip


#: Events looked at a time when moving a window's edge past equal timestamps.
_TIE_LOOK = 4096


def _past_ties(ts: np.ndarray, b: int) -> int:
    """The first event after ``b - 1`` with a later timestamp than it (``ts`` non-decreasing).

    A search over short slices near ``b``, not over the whole column: a memory-mapped column
    is not aligned in its .npz file, and numpy copies an unaligned array whole before each
    ``searchsorted`` (80 MB per window edge on 10 million events).
    """
    v = ts[b - 1]
    while b < len(ts):
        part = np.array(ts[b : b + _TIE_LOOK])
        k = int(np.searchsorted(part, v, side="right"))
        b += k
        if k < len(part):
            break
    return b


def build_plan(
    norm: Normalized, cache: str, policy: ReplayPolicy | None = None, rows: np.ndarray | None = None
) -> Plan:
    """Compile one cache's events into a plan (see the module docstring for the rules).

    ``rows``: the cache's event indices in time order (``cache_rows``), when already known.
    """
    return CacheCommands(norm, cache, policy, rows).plan()


def fit_plan_to_nodes(
    plan: Plan | StreamedPlan, nodes: int, norm: Normalized | None = None
) -> Plan | StreamedPlan:
    """Node-specific allocations for nodes the modelled machine lacks become "any node".

    A trace from a NUMA machine replayed on fewer modelled nodes would otherwise name a node
    the model does not have; the count is kept in the plan's assumptions. ``norm``: the trace
    the plan was made from, when known (then a trace naming no such node costs no pass over
    the plan).
    """
    if norm is not None and _trace_max_node(norm) < nodes:
        return plan
    if isinstance(plan, StreamedPlan):
        plan.fit_nodes(nodes)
        return plan
    _note_node_fit(plan.assumptions, _fit_nodes(plan, nodes), nodes)
    return plan


def _fit_nodes(plan: Plan, nodes: int) -> int:
    # (one pass over c: few commands name a node at all, a prefill's c is its flag)
    high = np.flatnonzero(plan.c >= nodes)
    bad = high[plan.cmd[high] == Cmd.ALLOC]
    if len(bad):
        plan.c[bad] = -1
    return len(bad)


def _note_node_fit(assumptions: dict[str, int], n: int, nodes: int) -> None:
    if n:
        what = f"node-specific allocations for nodes beyond the {nodes} modelled (any node)"
        assumptions[what] = assumptions.get(what, 0) + n


#: Memory the engine states of one streamed cache may take at once (each holds an 8-byte slot
#: per object of the cache); more capacities than fit replay in further passes over the trace.
STREAM_STATE_BYTES = 256 << 20


class StreamStats:
    """What a streamed replay saw of its plan (``recommend.evaluate`` needs these)."""

    def __init__(self) -> None:
        self.commands = 0
        self.ts_first = 0
        self.ts_last = 0
        self.ts_before_cut = 0  # time of the last command before the checkpoint
        self.ops_after_cut = 0  # object-moving calls after the checkpoint
        self.prefills_after_cut = 0
        self.active_after_cut: set[int] = set()


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
            bad = t.node[a] >= nodes
            if len(cc.is_pop):
                bad &= ~cc.is_pop[lo : lo + CHUNK_ROWS]
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
    return planned(norm, cache, policy, engine, rows)[0]


def planned(
    norm: Normalized,
    cache: str,
    policy: ReplayPolicy | None,
    engine: str,
    rows: np.ndarray | None = None,
) -> tuple[Plan | StreamedPlan, dict[str, int], int | None]:
    """``plan_for``, the plan's ``counts()`` and the cache's ``slot_size`` (None: no event of
    the cache), known from its making (no pass over the plan or the rows)."""
    if cache in norm.table.caches:
        if rows is None:
            rows = rows_of_cache(norm, cache)
        cc = CacheCommands(norm, cache, policy, rows)
        if engine == "fast" and len(rows) > STREAM_EVENTS:
            plan: Plan | StreamedPlan = StreamedPlan(cc)
        else:
            plan = cc.plan()
        return plan, cc.counts(), cc.slot
    plan = build_plan(norm, cache, policy, rows)
    return plan, plan.counts(), None


def params_for(
    norm: Normalized,
    cache: str,
    kernel: str,
    capacity: int | None = None,
    cpus: int | None = None,
    nodes: int = 1,
    rows: np.ndarray | None = None,
    slot: int | None = None,
) -> ModelParams:
    """ModelParams for one cache of the trace: its slot size (``bytes_alloc``), the trace's
    CPUs, and the kernel's effective capacity unless ``capacity`` forces one. ``slot``: the
    cache's ``slot_size`` when the caller has it."""
    if slot is None:
        slot = slot_size(norm, cache, rows)
    ncpus = cpus or _trace_cpus(norm)
    cap = capacity if capacity is not None else effective_capacity(kernel, cache, slot)
    return ModelParams.for_cache(
        kernel=kernel,
        object_size=max(slot, 8),
        capacity=cap,
        cpus=ncpus,
        nodes=nodes,
        cpu_node=contiguous_cpu_nodes(ncpus, nodes),
    )


def slot_size(norm: Normalized, cache: str, rows: np.ndarray | None = None) -> int:
    """The slot size of one cache: its allocations' most common ``bytes_alloc`` (almost always
    their only one); 256 when it has none."""
    t = norm.table
    if rows is None:
        rows = rows_of_cache(norm, cache)
    idx = index_dtype(len(t))
    rows = _c(rows, idx)
    st = np.zeros(3, dtype=np.int64)
    sizes_of = _kernel("slot_size", idx)
    op, size = _c(t.op, np.uint8), _c(t.bytes_alloc, np.uint32)
    for lo in range(0, len(rows), CHUNK_ROWS):
        sizes_of(rows, lo, min(len(rows), lo + CHUNK_ROWS), op, size, st)
        t.release()
    return _slot_of(t, rows, st.tolist())


def _slot_of(t: EventTable, rows: np.ndarray, sizes: list[int]) -> int:
    """``slot_size`` from its kernel's answer (allocations, first size, 1 if sizes differ)."""
    n_allocs, slot, mixed = sizes
    if not n_allocs:
        return 256
    if mixed:
        sizes_ = t.gather("bytes_alloc", rows[alloc_mask(t.gather("op", rows))])
        return int(np.bincount(sizes_).argmax())
    return int(slot)


def _trace_cpus(norm: Normalized) -> int:
    """CPUs of the trace: its header's, or more if events name more (found once per trace)."""
    n = norm.__dict__.get("_trace_cpus")
    if n is None:
        t = norm.table
        n = max(int(t.meta.cpus), int(t.cpu.max()) + 1 if len(t) else 1, 1)
        t.release()
        norm.__dict__["_trace_cpus"] = n
    return int(n)


def _trace_max_node(norm: Normalized) -> int:
    """The highest node an event of the trace names (-1: none; found once per trace)."""
    n = norm.__dict__.get("_max_node")
    if n is None:
        t = norm.table
        n = int(t.node.max()) if len(t) else -1
        t.release()
        norm.__dict__["_max_node"] = n
    return int(n)


def metrics(
    plan: Plan | StreamedPlan,
    params: ModelParams,
    res: ReplayResult,
    counts: dict[str, int] | None = None,
) -> dict[str, Any]:
    """What a user compares between capacities, derived from one replay's counters
    (``counts``: the plan's ``counts()``, when known)."""
    c = res.counters
    ex = res.extras
    n = counts if counts is not None else plan.counts()
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
    plan: Plan | StreamedPlan | None = None,
) -> dict[str, Any]:
    """Replay one cache at the capacities ``capacities`` asks for (default: the kernel's own)
    and return the report dict: parameters, what was assumed, one row per capacity.

    ``plan``: the cache's ``plan_for(norm, cache, policy, engine, rows)`` when the caller
    already has it; it is fitted to the modelled nodes here, in place.
    """
    job = CacheReplay.of(norm, cache, kernel, capacities, engine, policy, cpus, nodes, rows, plan)
    del rows  # a streamed plan keeps what it needs; the cache's rows can go
    return job.report(job.run_all())


def _with_capacity(base: ModelParams, capacity: int) -> ModelParams:
    """``base`` at ``capacity`` (itself when that is its own: a replace validates anew)."""
    if capacity == base.sheaf_capacity:
        return base
    return dataclasses.replace(base, sheaf_capacity=capacity)


class CacheReplay:
    """One cache's replays for ``replay_cache``, made ready: the plan fitted to the modelled
    nodes, the parameters of each capacity. ``analyze`` runs ``params`` as jobs of its own
    pool (or takes a replay from the cache's recommendation, when it has the same
    parameters) and hands the results to ``report``."""

    # (a plain class: a dataclass would cost its generated methods at every start-up)
    def __init__(
        self,
        plan: Plan | StreamedPlan,
        base: ModelParams,
        params: list[ModelParams],
        current: int,
        kernel: str,
        engine: str,
        policy: ReplayPolicy,
        counts: dict[str, int],
    ) -> None:
        self.plan = plan
        self.base = base
        self.params = params
        self.current = current  # the traced (6.18) capacity
        self.kernel = kernel
        self.engine = engine
        self.policy = policy
        self.counts = counts  # the plan's ``counts()``

    @classmethod
    def of(
        cls,
        norm: Normalized,
        cache: str,
        kernel: str = "7.3",
        capacities: CapacitySpec | None = None,
        engine: str = "reference",
        policy: ReplayPolicy | None = None,
        cpus: int | None = None,
        nodes: int = 1,
        rows: np.ndarray | None = None,
        plan: Plan | StreamedPlan | None = None,
        slot: int | None = None,
        counts: dict[str, int] | None = None,
    ) -> CacheReplay:
        """(``slot``: the cache's ``slot_size``, ``counts``: the plan's ``counts()``, when the
        caller has them.)"""
        policy = policy or ReplayPolicy()
        if rows is None:
            rows = rows_of_cache(norm, cache)
        if plan is None:
            plan, counts, found = planned(norm, cache, policy, engine, rows)
            slot = found if slot is None else slot
        base = params_for(norm, cache, kernel, None, cpus, nodes, rows, slot)
        del rows
        fit_plan_to_nodes(plan, base.nodes, norm)
        current = effective_capacity("6.18", cache, base.object_size)
        caps = capacities_for(
            capacities or CapacitySpec(), cache, base.sheaf_capacity, base.object_size, current
        )
        params = [_with_capacity(base, c) for c in caps]
        counts = counts if counts is not None else plan.counts()
        return cls(plan, base, params, current, kernel, engine, policy, counts)

    def run(self, i: int, facts: Any = None) -> ReplayResult:
        """The replay of ``params[i]`` (an in-memory plan; ``facts``: the plan's
        ``fast.plan_stats(...).facts``, when known)."""
        plan = self.plan
        assert isinstance(plan, Plan)
        if self.engine == "fast":
            from sheaftune.model import fast

            return fast.sweep(plan, [self.params[i]], None, 1, facts=facts)[0][0]
        return replay(plan, self.params[i], self.engine)

    def run_all(self) -> list[ReplayResult]:
        plan = self.plan
        if isinstance(plan, StreamedPlan):
            return plan.replay(self.params)[0]
        return replay_all(plan, self.params, self.engine)

    def report(self, results: list[ReplayResult]) -> dict[str, Any]:
        """The report dict of the replays ``results`` (in ``params`` order)."""
        plan, base = self.plan, self.base
        replays = []
        for params, res in zip(self.params, results, strict=True):
            replays.append(
                {
                    **metrics(plan, params, res, self.counts),
                    "counters": res.counters,
                    "extras": res.extras,
                    "skipped": res.skipped,
                }
            )
        return {
            "kernel": self.kernel,
            "engine": self.engine,
            "object_size": base.object_size,
            "kernel_capacity": base.sheaf_capacity,
            "traced_capacity": self.current,
            "cpus": base.cpus,
            "nodes": base.nodes,
            "policy": policy_dict(self.policy),
            "plan": dict(self.counts),
            "assumptions": plan.assumptions,
            "replays": replays,
        }
