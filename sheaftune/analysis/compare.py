"""Prefill versus bulk: the same operations replayed both ways through the sheaf model.

A subsystem that must guarantee ``U`` objects inside a critical section and actually uses ``k``
can either prefill a sheaf (``kmem_cache_prefill_sheaf(U)``, ``k`` x
``kmem_cache_alloc_from_sheaf``, ``kmem_cache_return_sheaf``) or allocate in bulk
(``kmem_cache_alloc_bulk(U)``, then ``kmem_cache_free_bulk`` of the ``U - k`` it did not use).
:func:`run` (``sheaftune compare``; :func:`compare_events` for a trace or workload,
:func:`compare_synthetic` without one) answers which is cheaper, by how much, and from which used
share ``k/U`` bulk catches up, for the user's own operations:

* The operations (an :class:`~sheaftune.events.OpTable`) come from a workload's prefill streams
  (``workload``), from a trace by inference from runs of sheaf pops (``inferred``,
  ``normalize.infer_operations``), from our bpftrace prefill script's records (``capture``), or
  from ``--upper-bound``/``--used`` alone (``synthetic``).
* Everything else the cache does on each CPU (every allocation that is not a pop, every free,
  the unseen frees replayed as ``kfree_rcu``, the grace periods) is compiled as
  ``tracereplay.build_plan`` does and is identical in both plans. So are the *used* objects'
  lives: in the bulk plan the first ``k`` objects of the bulk array are the objects the trace
  shows being popped, and they are freed later exactly as in the prefill plan.
* Both plans replay through the same engine with the same :class:`ModelParams` (one NUMA node:
  compare does not model remote-node frees).

Cost. :func:`strategy_cost` prices the counters with ``analysis.estimate`` (closed-loop barn and
list_lock contention for ``cpus_per_node`` CPUs) and adds what that generic estimate cannot see:
each prefill/return/alloc_bulk/free_bulk call (``CostModel.api_call``) and each object a bulk
call copies between a sheaf and the caller's array (``CostModel.bulk_object`` instead of a
single fast-path allocation's ``sheaf_fast``; Brouer's bulk measurements). The split of the
sheaf hits between single calls and bulk calls uses a model invariant: with sheaves and memory
that never runs out, every single allocation and (on one node) every single free is one sheaf
hit, so the hits beyond the plan's single calls are the bulk calls' (on 6.18 a non-blocking
single allocation may miss when the barn has no full sheaf, X5: there the split can credit bulk
with fewer hits than it had, never more). On 7.3 with sheaves and one node every
ALLOC_SLOWPATH/FREE_SLOWPATH object is batch slab work (bulk remainders, oversize prefills,
``kfree_bulk``), priced as ``slab_batch_object``.

Crossover. The used share at which bulk catches up: synthetic streams with the same ``U`` and
every ``k`` held constant, coarse grid over ``0..U`` then every integer ``k`` in the bracket where
``bulk - prefill`` changes sign, linear interpolation of that difference between the two
neighbouring ``k``; ``None`` when bulk never catches up (or is cheaper from ``k = 0``: 0.0).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from sheaftune import gfp as gfpmod
from sheaftune.analysis.estimate import estimate
from sheaftune.analysis.tracereplay import effective_capacity
from sheaftune.costs import CostModel, closed_loop_time
from sheaftune.errors import NothingToAnalyse, UsageError
from sheaftune.events import OpTable
from sheaftune.model.plan import Cmd, Plan, PlanBuilder
from sheaftune.model.replay import ReplayResult, replay
from sheaftune.normalize import Normalized, infer_operations, sheaf_pop_runs
from sheaftune.params import SHEAF_HEADER_BYTES, ModelParams
from sheaftune.results import Record

STRATEGIES = ("prefill", "bulk")
OP_SOURCES = {
    "workload": "the workload's prefill streams (OpTable from the generator)",
    "inferred": "inferred from the trace: runs of pops from a prefilled sheaf, by call site",
    "capture": "the bpftrace prefill script's records (kmem_cache_prefill_sheaf/return)",
    "synthetic": "synthetic stream from --upper-bound and --used (no trace, no workload)",
}
#: Margins below this share of the loser's cost are within the model's noise (a tie).
TIE_SHARE = 0.01
#: Synthetic streams: one prefill operation per CPU every 25 µs (40,000/s, the rate of the
#: prefill-heavy workload and of the vma-small trace's pop runs), ordinary allocations of the
#: same cache alongside (about two per prefilled write in the VMA tree: kernel-sheaves.md M5),
#: every object freed with kmem_cache_free by its CPU 20 operations (500 µs) later. Plain frees,
#: not kfree_rcu: with kfree_rcu and 10 ms grace periods, 40,000 operations/s overflow the
#: barn and most objects cycle through the slabs in both strategies, which hides the
#: strategies' own mechanics behind list_lock traffic (``free="rcu"`` replays that case).
SYNTH_PERIOD_NS = 25_000
SYNTH_BACKGROUND = 2
SYNTH_LIFETIME_OPS = 20
SYNTH_RCU_GP_NS = 10_000_000
SYNTH_OPS = 4_000  # operations per stream, over all replayed CPUs
SYNTH_MAX_CPUS = 8  # CPUs replayed; contention is estimated for --cpus per node
SWEEP_OPS = 800
SWEEP_MAX_CPUS = 2
SWEEP_GRID = 7


# --- the used-object distribution (--used N|DIST) ------------------------------------------


@dataclass(frozen=True)
class UsedDist:
    """How many of ``U`` objects an operation uses: ``N``, ``uniform:A-B`` (integers, both
    included) or ``NAME:P1,P2,...`` with a ``scipy.stats`` distribution and its positional
    parameters (``binom:30,0.1``, ``poisson:2``, ``geom:0.4``); draws are rounded and clipped
    to ``0..U`` (the clipped draws are counted)."""

    text: str
    kind: str  # "const", "uniform", "scipy"
    params: tuple[float | int, ...]

    def sample(self, rng: np.random.Generator, n: int, upper: int) -> tuple[np.ndarray, int]:
        if self.kind == "const":
            x = np.full(n, self.params[0], dtype=np.float64)
        elif self.kind == "uniform":
            x = rng.integers(int(self.params[0]), int(self.params[1]) + 1, n).astype(np.float64)
        else:
            import scipy.stats

            dist = getattr(scipy.stats, self.text.split(":", 1)[0])
            x = np.asarray(dist(*self.params).rvs(size=n, random_state=rng), dtype=np.float64)
        k = np.rint(x).astype(np.int64)
        clipped = int(np.count_nonzero((k < 0) | (k > upper)))
        return np.clip(k, 0, upper), clipped

    def mean(self, upper: int) -> float:
        """Mean of the clipped distribution (estimated from a fixed-seed sample)."""
        k, _ = self.sample(np.random.default_rng(0), 20_000, upper)
        return float(k.mean())


def parse_used(text: str) -> UsedDist:
    """``--used``: see :class:`UsedDist`. Bad text is a usage error naming the forms."""
    forms = "N, uniform:A-B, or a scipy.stats NAME:P1,P2 (e.g. binom:30,0.1)"
    s = text.strip()
    if s.isdigit():
        return UsedDist(s, "const", (float(int(s)),))
    name, sep, rest = s.partition(":")
    if not sep or not rest:
        raise UsageError(f"--used {text!r}: expected {forms}")
    if name == "uniform" and "-" in rest:
        lo, _, hi = rest.partition("-")
        if not (lo.strip().isdigit() and hi.strip().isdigit()) or int(lo) > int(hi):
            raise UsageError(f"--used {text!r}: uniform:A-B needs integers A <= B")
        return UsedDist(s, "uniform", (float(lo), float(hi)))
    try:
        # integral values stay ints: binom's n must be an integer
        params = tuple(
            int(float(p)) if float(p).is_integer() else float(p) for p in rest.split(",")
        )
    except ValueError:
        raise UsageError(f"--used {text!r}: parameters must be numbers ({forms})") from None
    import scipy.stats

    dist = getattr(scipy.stats, name, None)
    if not isinstance(dist, (scipy.stats.rv_discrete, scipy.stats.rv_continuous)):
        raise UsageError(f"--used {text!r}: {name!r} is not a scipy.stats distribution ({forms})")
    try:
        med = float(dist(*params).ppf(0.5))
        dist(*params).rvs(size=2, random_state=np.random.default_rng(0))
    except (TypeError, ValueError) as e:
        raise UsageError(f"--used {text!r}: bad parameters for {name}: {e}") from None
    if not math.isfinite(med):
        raise UsageError(f"--used {text!r}: parameters {params} are invalid for {name}")
    return UsedDist(s, "scipy", params)


# --- the shared stream: background commands + operations with their used objects -----------


@dataclass
class Stream:
    """What both plans share. ``bg`` holds the background command columns (ts, seq, cmd, cpu,
    a, b, c) over object ids ``0..n_objects-1``: ordinary allocations, every free (of used
    objects too), grace periods. Operation ``i`` starts at ``(op_ts, op_seq)[i]``, pops its
    used objects ``use_obj[use_ptr[i]:use_ptr[i+1]]`` at ``use_ts/use_seq`` and ends at
    ``(end_ts, end_seq)[i]``."""

    source: str
    cpus: int
    bg: dict[str, np.ndarray]
    n_objects: int
    op_cpu: np.ndarray
    op_ts: np.ndarray
    op_seq: np.ndarray
    end_ts: np.ndarray
    end_seq: np.ndarray
    upper: np.ndarray
    use_ptr: np.ndarray
    use_obj: np.ndarray
    use_ts: np.ndarray
    use_seq: np.ndarray
    assumptions: dict[str, int] = field(default_factory=dict)

    @property
    def n_ops(self) -> int:
        return len(self.op_cpu)

    @property
    def used(self) -> np.ndarray:
        return np.diff(self.use_ptr)

    def assume(self, what: str, n: int) -> None:
        if n:
            self.assumptions[what] = self.assumptions.get(what, 0) + int(n)


def build_plan(stream: Stream, strategy: str) -> Plan:
    """The plan of one strategy: the background plus, per operation, PREFILL(U) +
    ALLOC_FROM_SHEAF x k + RETURN_SHEAF, or ALLOC_BULK(U) + FREE_BULK(U - k) at its end."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    pb = PlanBuilder()
    pb.new_objects(stream.n_objects)
    g = stream.bg
    pb.add(g["ts"], g["seq"], g["cmd"], g["cpu"], g["a"], g["b"], g["c"])
    for what, n in stream.assumptions.items():
        pb.assume(what, n)
    n = stream.n_ops
    if n == 0:
        return pb.build()
    k = stream.used.astype(np.int64)
    upper = stream.upper.astype(np.int64)
    op_of_use = np.repeat(np.arange(n), k)
    cpu = stream.op_cpu
    if strategy == "prefill":
        sh = pb.new_sheaves(n)
        pb.add(stream.op_ts, stream.op_seq, Cmd.PREFILL, cpu, sh, upper, 1)
        pb.add(
            stream.use_ts,
            stream.use_seq,
            Cmd.ALLOC_FROM_SHEAF,
            cpu[op_of_use],
            stream.use_obj,
            sh[op_of_use],
        )
        pb.add(stream.end_ts, stream.end_seq, Cmd.RETURN_SHEAF, cpu, sh)
        return pb.build()
    # bulk: the array holds the used objects first (the trace's pops), then the unused ones
    unused = upper - k
    fresh = pb.new_objects(int(unused.sum()))
    start = np.cumsum(upper) - upper
    aux = np.empty(int(upper.sum()), dtype=np.int64)
    aux[start[op_of_use] + np.arange(len(op_of_use)) - stream.use_ptr[op_of_use]] = stream.use_obj
    op_of_fresh = np.repeat(np.arange(n), unused)
    fptr = np.cumsum(unused) - unused
    aux[start[op_of_fresh] + k[op_of_fresh] + np.arange(len(fresh)) - fptr[op_of_fresh]] = fresh
    base = pb.add_aux(aux)
    pb.add(stream.op_ts, stream.op_seq, Cmd.ALLOC_BULK, cpu, base + start, upper)
    some = unused > 0
    pb.add(
        stream.end_ts[some],
        stream.end_seq[some],
        Cmd.FREE_BULK,
        cpu[some],
        base + start[some] + k[some],
        unused[some],
    )
    return pb.build()


def _cols(
    ts: Any, seq: Any, cmd: Any, cpu: Any, a: Any = 0, b: Any = 0, c: Any = 0
) -> dict[str, np.ndarray]:
    ts = np.asarray(ts, dtype=np.int64)
    n = len(ts)

    def col(x: Any) -> np.ndarray:
        return np.broadcast_to(np.asarray(x, dtype=np.int64), (n,)).copy()

    return {
        "ts": ts,
        "seq": col(seq),
        "cmd": col(cmd),
        "cpu": col(cpu),
        "a": col(a),
        "b": col(b),
        "c": col(c),
    }


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    keys = ("ts", "seq", "cmd", "cpu", "a", "b", "c")
    parts = [p for p in parts if len(p["ts"])]
    if not parts:
        return {k: np.empty(0, dtype=np.int64) for k in keys}
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


# --- streams from events (trace or workload) ------------------------------------------------


def stream_from_events(
    norm: Normalized,
    cache: str,
    ops: OpTable,
    pop_rows: np.ndarray,
    pop_op: np.ndarray,
    source: str,
    rcu_gp_ns: int = 10_000_000,
) -> Stream:
    """Compile one cache's events around ``ops``: ``pop_rows[i]`` (event index) is a pop of
    operation ``pop_op[i]`` (-1: not a pop of any operation, replayed as an ordinary
    allocation). Unseen frees are ``kfree_rcu`` on the allocating CPU just before the reuse,
    frees of objects allocated before the trace are skipped, objects live at the end stay live
    (``tracereplay`` policy ``rcu``)."""
    t = norm.table
    n_ev = len(t)
    cid = t.find_cache(cache)
    mine = t.cache_id == cid
    allocs = np.nonzero(mine & norm.is_alloc & ~norm.failed_alloc)[0]
    slot_of = np.full(n_ev, -1, dtype=np.int64)
    slot_of[allocs] = np.arange(len(allocs))
    n_objects = len(allocs)
    ts = t.ts_ns.astype(np.int64)
    cpu = t.cpu.astype(np.int64)
    seq = 8 * np.arange(n_ev, dtype=np.int64)
    n = len(ops)
    stream_assume: dict[str, int] = {}

    def assume(what: str, k: int) -> None:
        if k:
            stream_assume[what] = stream_assume.get(what, 0) + int(k)

    # pops of operations, grouped by operation in time order
    keep = pop_op >= 0
    rows, op_idx = pop_rows[keep], pop_op[keep]
    order = np.lexsort((rows, op_idx))
    rows, op_idx = rows[order], op_idx[order]
    is_pop = np.zeros(n_ev, dtype=bool)
    is_pop[rows] = True
    got = np.bincount(op_idx, minlength=n).astype(np.int64)
    want = ops.used.astype(np.int64)
    # an operation the OpTable says used more than the trace shows: the rest are objects taken
    # from the sheaf whose pops fall outside the trace window; they stay live
    missing = np.maximum(want - got, 0)
    used = got + missing
    assume("used objects with no pop in the trace (left live)", int(missing.sum()))
    upper = np.maximum(ops.upper_bound.astype(np.int64), used)
    assume(
        "operations whose upper bound was raised to the objects used",
        int((upper > ops.upper_bound).sum()),
    )
    extra = np.arange(n_objects, n_objects + int(missing.sum()), dtype=np.int64)
    n_objects += len(extra)
    use_ptr = np.concatenate([[0], np.cumsum(used)])
    op_of_use = np.repeat(np.arange(n), used)
    rank = np.arange(len(op_of_use)) - use_ptr[op_of_use]
    from_trace = rank < got[op_of_use]
    use_obj = np.empty(len(op_of_use), dtype=np.int64)
    use_ts = np.empty(len(op_of_use), dtype=np.int64)
    use_seq = np.empty(len(op_of_use), dtype=np.int64)
    use_obj[from_trace] = slot_of[rows]
    use_ts[from_trace] = ts[rows]
    use_seq[from_trace] = seq[rows]
    # operation start: just before its first pop (or where its OpTable time falls)
    pos = np.searchsorted(ts, ops.ts_ns.astype(np.int64), side="left")
    op_ts = ops.ts_ns.astype(np.int64).copy()
    op_seq = 8 * pos - 5
    has = got > 0
    first_pop = rows[(np.cumsum(got) - got)[has]]
    last_pop = rows[np.cumsum(got)[has] - 1]
    op_ts[has] = ts[first_pop]
    op_seq[has] = seq[first_pop] - 2
    end_ts = op_ts.copy()
    end_seq = op_seq + 2
    end_ts[has] = ts[last_pop]
    end_seq[has] = seq[last_pop] + 2
    # missing pops happen at the operation's end
    miss = ~from_trace
    use_obj[miss] = extra
    use_ts[miss] = end_ts[op_of_use[miss]]
    use_seq[miss] = end_seq[op_of_use[miss]] - 1

    parts = []
    plain = allocs[~is_pop[allocs]]
    blocking = (t.gfp[plain] & gfpmod.__GFP_DIRECT_RECLAIM) != 0
    parts.append(
        _cols(ts[plain], seq[plain], Cmd.ALLOC, cpu[plain], slot_of[plain], blocking, t.node[plain])
    )
    frees = np.nonzero(mine & ~norm.is_alloc & ~norm.null_free)[0]
    matched = frees[norm.alloc_of[frees] >= 0]
    parts.append(
        _cols(ts[matched], seq[matched], Cmd.FREE, cpu[matched], slot_of[norm.alloc_of[matched]])
    )
    assume("frees of objects allocated before the trace (skipped)", len(frees) - len(matched))
    unseen = allocs[norm.unseen_free[allocs]]
    reuse = norm.reused_by[unseen]
    parts.append(_cols(ts[reuse], seq[reuse] - 1, Cmd.KFREE_RCU, cpu[unseen], slot_of[unseen]))
    assume("unseen frees replayed as kfree_rcu on the allocating CPU", len(unseen))
    assume("objects live at the end of the trace", int(np.count_nonzero(norm.live_at_end[allocs])))
    if len(allocs) and rcu_gp_ns > 0:
        gps = np.arange(int(ts[allocs[0]]) + rcu_gp_ns, int(ts[-1]) + 1, rcu_gp_ns)
        parts.append(_cols(gps, -1, Cmd.RCU_GP, 0))
    ncpus = max(int(t.meta.cpus), int(t.cpu.max()) + 1 if n_ev else 1, 1)
    if n and len(ops.cpu):
        ncpus = max(ncpus, int(ops.cpu.max()) + 1)
    s = Stream(
        source=source,
        cpus=ncpus,
        bg=_concat(parts),
        n_objects=n_objects,
        op_cpu=ops.cpu.astype(np.int64),
        op_ts=op_ts,
        op_seq=op_seq,
        end_ts=end_ts,
        end_seq=end_seq,
        upper=upper,
        use_ptr=use_ptr,
        use_obj=use_obj,
        use_ts=use_ts,
        use_seq=use_seq,
    )
    for what, k in stream_assume.items():
        s.assume(what, k)
    s.assume("prefill operations", n)
    return s


def assign_pops(
    ops: OpTable, pop_rows: np.ndarray, pop_cpu: np.ndarray, pop_ts: np.ndarray
) -> np.ndarray:
    """Operation of each pop (-1: none), for an OpTable known apart from the trace (workload,
    capture): per CPU in time order, a pop belongs to the oldest operation that started at or
    before it and still lacks pops (first in, first out)."""
    out = np.full(len(pop_rows), -1, dtype=np.int64)
    op_order = np.lexsort((np.arange(len(ops)), ops.ts_ns, ops.cpu))
    pop_order = np.lexsort((pop_rows, pop_cpu))
    need = ops.used.astype(np.int64).tolist()
    op_cpu_l = ops.cpu[op_order].tolist()
    op_ts_l = ops.ts_ns[op_order].tolist()
    op_ix_l = op_order.tolist()
    pc_l = pop_cpu[pop_order].tolist()
    pt_l = pop_ts[pop_order].tolist()
    j = 0
    open_ops: list[int] = []
    cur_cpu = -1
    for i, (c, t) in enumerate(zip(pc_l, pt_l, strict=True)):
        if c != cur_cpu:
            cur_cpu = c
            open_ops = []
            while j < len(op_cpu_l) and op_cpu_l[j] < c:
                j += 1
        while j < len(op_cpu_l) and op_cpu_l[j] == c and op_ts_l[j] <= t:
            if need[op_ix_l[j]] > 0:
                open_ops.append(op_ix_l[j])
            j += 1
        while open_ops and need[open_ops[0]] == 0:
            open_ops.pop(0)
        if open_ops:
            o = open_ops[0]
            out[pop_order[i]] = o
            need[o] -= 1
    return out


# --- synthetic streams ----------------------------------------------------------------------


def synthetic_stream(
    upper: int,
    used: np.ndarray | int,
    cpus: int,
    ops_total: int = SYNTH_OPS,
    background: int = SYNTH_BACKGROUND,
    lifetime_ops: int = SYNTH_LIFETIME_OPS,
    period_ns: int = SYNTH_PERIOD_NS,
    rcu_gp_ns: int = SYNTH_RCU_GP_NS,
    free: str = "free",
) -> Stream:
    """A stream with no trace behind it (see the SYNTH_* constants): ``cpus`` CPUs each run
    ``ops_total / cpus`` operations of bound ``upper`` using ``used`` objects (one value, or
    one per operation in CPU-major order), with ``background`` ordinary allocations each."""
    per_cpu = max(1, ops_total // cpus)
    n = per_cpu * cpus
    period_ns = max(period_ns, 8 * upper)  # room for U pops between start and end
    k = np.broadcast_to(np.asarray(used, dtype=np.int64), (n,)).copy()
    k = np.clip(k, 0, upper)
    op_cpu = np.repeat(np.arange(cpus, dtype=np.int64), per_cpu)
    j = np.tile(np.arange(per_cpu, dtype=np.int64), cpus)
    t0 = 1_000_000
    op_ts = t0 + j * period_ns + op_cpu * (period_ns // (cpus + 1))
    spacing = max(1, min(100, (period_ns // 4) // max(upper, 1)))
    # object ids: per operation its background objects then its used objects
    per_op = background + k
    obj_ptr = np.concatenate([[0], np.cumsum(per_op)])
    n_objects = int(obj_ptr[-1])
    op_of_obj = np.repeat(np.arange(n), per_op)
    rank = np.arange(n_objects) - obj_ptr[op_of_obj]
    is_bg = rank < background
    seq = op_cpu  # ties across CPUs: lower CPU first
    parts = []
    bg_obj = np.nonzero(is_bg)[0]
    bo = op_of_obj[bg_obj]
    parts.append(
        _cols(op_ts[bo] + 100 * (rank[bg_obj] + 1), seq[bo], Cmd.ALLOC, op_cpu[bo], bg_obj, 1, -1)
    )
    use_obj = np.nonzero(~is_bg)[0]
    uo = op_of_obj[use_obj]
    use_ts = op_ts[uo] + period_ns // 8 + spacing * (rank[use_obj] - background)
    use_seq = seq[uo]
    end_ts = op_ts + period_ns // 2
    # every object dies on its CPU lifetime_ops operations later (kmem_cache_free or kfree_rcu)
    die_op = op_of_obj + lifetime_ops
    dies = (j[op_of_obj] + lifetime_ops) < per_cpu
    d_obj = np.nonzero(dies)[0]
    d_at = die_op[d_obj]
    parts.append(
        _cols(
            op_ts[d_at] + period_ns // 2 + 100 + (d_obj - obj_ptr[op_of_obj[d_obj]]),
            seq[d_at],
            Cmd.KFREE_RCU if free == "rcu" else Cmd.FREE,
            op_cpu[d_at],
            d_obj,
        )
    )
    if rcu_gp_ns > 0 and free == "rcu":
        gps = np.arange(t0 + rcu_gp_ns, int(op_ts.max()) + period_ns + 1, rcu_gp_ns)
        parts.append(_cols(gps, -1, Cmd.RCU_GP, 0))
    s = Stream(
        source="synthetic",
        cpus=cpus,
        bg=_concat(parts),
        n_objects=n_objects,
        op_cpu=op_cpu,
        op_ts=op_ts,
        op_seq=seq - 0,
        end_ts=end_ts,
        end_seq=seq,
        upper=np.full(n, upper, dtype=np.int64),
        use_ptr=np.concatenate([[0], np.cumsum(k)]),
        use_obj=use_obj,
        use_ts=use_ts,
        use_seq=use_seq,
    )
    s.assume("prefill operations", n)
    s.assume("objects live at the end of the stream", int(n_objects - len(d_obj)))
    return s


# --- replay and cost ------------------------------------------------------------------------

_LOCK_PARTS = ("barn_lock", "list_lock", "barn_wait", "list_wait")
_FAST_PARTS = ("sheaf_fast", "cpu_slab_fast", "spare_swap", "sheaf_pop", "bulk_copy", "api_call")


def strategy_cost(
    plan: Plan,
    params: ModelParams,
    res: ReplayResult,
    n_ops: int,
    costs: CostModel,
    cpus_per_node: int,
) -> dict[str, Any]:
    """ns per operation of one strategy's replay (see the module docstring for what is added to
    ``analysis.estimate`` and why), with its breakdown, lock state and slow-path share."""
    c = res.counters
    ex = res.extras
    v618 = params.kernel == "6.18"
    hit_a = "alloc_cpu_sheaf" if v618 else "alloc_fastpath"
    hit_f = "free_cpu_sheaf" if v618 else "free_fastpath"
    counts = plan.counts()
    bulk_a_objs = int(plan.b[plan.cmd == Cmd.ALLOC_BULK].sum())
    bulk_f_objs = int(plan.b[plan.cmd == Cmd.FREE_BULK].sum())
    bulk_a = min(max(c.get(hit_a, 0) - counts.get("alloc", 0), 0), bulk_a_objs)
    bulk_f = min(max(c.get(hit_f, 0) - counts.get("free", 0), 0), bulk_f_objs)
    adj = dict(c)
    adj[hit_a] = c.get(hit_a, 0) - bulk_a
    adj[hit_f] = c.get(hit_f, 0) - bulk_f
    batch_slow = 0
    if not v618 and params.sheaf_capacity > 0 and params.nodes == 1:
        batch_slow = (
            c.get("alloc_slowpath", 0) - c.get("alloc_node_mismatch", 0) + c.get("free_slowpath", 0)
        )
        adj["alloc_slowpath"] = c.get("alloc_node_mismatch", 0)
        adj["free_slowpath"] = 0
    ops = max(n_ops, 1)
    est = estimate(adj, ex, ops, params.kernel, costs, cpus_per_node)
    parts = {k: v for k, v in est.breakdown.items() if k not in _LOCK_PARTS}
    parts["slab_bulk"] = batch_slow * costs.slab_batch_object / ops
    parts["bulk_copy"] = (bulk_a + bulk_f) * costs.bulk_object / ops
    calls = sum(counts.get(k, 0) for k in ("prefill", "return_sheaf", "alloc_bulk", "free_bulk"))
    parts["api_call"] = calls * costs.api_call / ops
    base = sum(parts.values())
    contended = cpus_per_node > 1
    barn_s = costs.barn_lock + (costs.handoff if contended else 0.0)
    list_s = costs.list_lock + (costs.handoff if contended else 0.0)
    barn, lst = est.barn_lock_per_op, est.list_lock_per_op
    t, rhos, waits = closed_loop_time(base, [(barn, barn_s), (lst, list_s)], cpus_per_node)
    parts["barn_lock"] = barn * barn_s
    parts["list_lock"] = lst * list_s
    parts["barn_wait"] = barn * waits[0]
    parts["list_wait"] = lst * waits[1]
    fast = sum(parts[k] for k in _FAST_PARTS if k in parts)
    return {
        "cost_ns_per_op": round(t, 3),
        "uncontended_ns_per_op": round(base + barn * costs.barn_lock + lst * costs.list_lock, 3),
        "breakdown_ns_per_op": {k: round(v, 3) for k, v in sorted(parts.items())},
        "slow_path_share": round(1.0 - fast / t, 4) if t > 0 else None,
        "barn_lock_per_op": round(barn, 4),
        "list_lock_per_op": round(lst, 4),
        "barn_utilisation": round(rhos[0], 4),
        "list_utilisation": round(rhos[1], 4),
        "barn_wait_ns": round(waits[0], 3),
        "list_wait_ns": round(waits[1], 3),
        "bulk_objects_via_sheaves": {"alloc": bulk_a, "free": bulk_f},
    }


def strategy_metrics(
    plan: Plan,
    params: ModelParams,
    res: ReplayResult,
    n_ops: int,
    costs: CostModel,
    cpus_per_node: int,
) -> dict[str, Any]:
    """Everything the comparison reports for one strategy."""
    c = res.counters
    ex = res.extras
    occ = res.occupancy
    means = [x["mean"] for x in occ["cpus"] if x["mean"] is not None]
    means += [x["barn_mean"] for x in occ["nodes"] if x["barn_mean"] is not None]
    held_mean = float(sum(means)) if means else None
    sheaf_bytes = SHEAF_HEADER_BYTES + 8 * params.sheaf_capacity
    out = strategy_cost(plan, params, res, n_ops, costs, cpus_per_node)
    out.update(
        {
            "counters": dict(c),
            "objects_moved": {
                "slabs_to_sheaves": c.get("sheaf_refill", 0) + ex.get("oversize_objects", 0),
                "sheaves_to_slabs": c.get("sheaf_flush", 0),
                "slabs_to_callers": c.get("alloc_slowpath", 0) - ex.get("oversize_objects", 0)
                if params.kernel != "6.18"
                else c.get("alloc_slowpath", 0),
                "callers_to_slabs": c.get("free_slowpath", 0),
            },
            "barn_lock": ex.get("barn_lock", 0),
            "list_lock": ex.get("list_lock", 0),
            "sheaf_structs_allocated": c.get("sheaf_alloc", 0),
            "oversize_prefills": c.get("sheaf_prefill_oversize", 0),
            "held_objects_max": ex.get("held_objects_max", 0),
            "held_objects_mean": round(held_mean, 3) if held_mean is not None else None,
            "memory_held_bytes_max": ex.get("held_objects_max", 0) * params.object_size
            + ex.get("sheaves_live_max", 0) * sheaf_bytes,
            "memory_held_bytes_mean": round(held_mean * params.object_size)
            if held_mean is not None
            else None,
            "plan": plan.counts(),
            "skipped": dict(res.skipped),
        }
    )
    return out


def replay_both(
    stream: Stream,
    params: ModelParams,
    engine: str,
    costs: CostModel,
    cpus_per_node: int,
) -> dict[str, dict[str, Any]]:
    """Both strategies' metrics for one stream."""
    out = {}
    for strategy in STRATEGIES:
        plan = build_plan(stream, strategy)
        res = replay(plan, params, engine)
        out[strategy] = strategy_metrics(plan, params, res, stream.n_ops, costs, cpus_per_node)
    return out


# --- crossover ------------------------------------------------------------------------------


def crossover(
    upper: int,
    params: ModelParams,
    engine: str,
    costs: CostModel,
    cpus_per_node: int,
    background: int = SYNTH_BACKGROUND,
    ops_total: int = SWEEP_OPS,
) -> dict[str, Any]:
    """The used share at which bulk catches up with prefill (method in the module docstring).
    Returns the share (or None), the method, and every point evaluated."""
    cpus = params.cpus
    points: dict[int, tuple[float, float]] = {}

    def at(k: int) -> float:
        if k not in points:
            s = synthetic_stream(upper, k, cpus, ops_total, background)
            r = replay_both(s, params, engine, costs, cpus_per_node)
            points[k] = (r["prefill"]["cost_ns_per_op"], r["bulk"]["cost_ns_per_op"])
        return points[k][1] - points[k][0]

    grid = sorted({int(round(x)) for x in np.linspace(0, upper, min(SWEEP_GRID, upper + 1))})
    share: float | None = None
    prev = None
    for k in grid:
        d = at(k)
        if d <= 0:
            if prev is None:
                share = 0.0
                break
            lo = prev
            for kk in range(prev + 1, k + 1):  # refine the bracket to every integer
                if at(kk) <= 0:
                    d_lo, d_hi = at(lo), at(kk)
                    share = (lo + d_lo / (d_lo - d_hi)) / upper if d_lo != d_hi else kk / upper
                    break
                lo = kk
            break
        prev = k
    return {
        "used_share": None if share is None else round(min(max(share, 0.0), 1.0), 4),
        "upper_bound": upper,
        "background_per_op": background,
        "method": (
            f"synthetic streams with U = {upper}, every operation using k objects (k held "
            f"constant per stream), {background} ordinary allocations per operation, "
            f"{ops_total // cpus * cpus} operations on {cpus} CPUs; k on a grid over 0..U, then "
            "every integer k where bulk - prefill changes sign; the share is k/U where the "
            "linear interpolation of bulk - prefill between neighbouring k reaches 0"
        ),
        "points": [
            {
                "used": k,
                "used_share": round(k / upper, 4),
                "prefill_ns_per_op": p,
                "bulk_ns_per_op": b,
            }
            for k, (p, b) in sorted(points.items())
        ],
    }


# --- the record -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison(Record):
    """Prefill versus bulk for one cache's operations (``docs/schemas.md``, comparison).

    ``strategies[name]`` holds ``cost_ns_per_op`` (ns per prefill operation, the same background
    work included in both), its ``breakdown_ns_per_op``, ``slow_path_share``, the kernel
    ``counters``, ``objects_moved``, ``barn_lock``/``list_lock`` acquisitions, sheaf structs,
    oversize prefills, objects and memory held. ``margin`` is the share of the loser's cost the
    winner saves; ``tie`` says it is below ``TIE_SHARE``.
    """

    # history: 1 (2026-11) first version
    SCHEMA: ClassVar[str] = "sheaftune/comparison"
    VERSION: ClassVar[int] = 1

    source: str
    source_note: str
    input: str | None
    cache: str
    kernel: str
    engine: str
    capacity: int
    object_size: int
    cpus_replayed: int
    cpus_per_node: int
    operations: dict[str, Any]
    strategies: dict[str, dict[str, Any]]
    winner: str
    margin: float
    margin_ns: float
    tie: bool
    crossover_used_share: float | None
    crossover: dict[str, Any]
    costs: dict[str, float]
    assumptions: dict[str, int]
    notes: list[str]


def _op_summary(stream: Stream, capacity: int) -> dict[str, Any]:
    u = stream.upper.astype(np.int64)
    k = stream.used.astype(np.int64)
    n = len(u)
    if n == 0:
        return {"count": 0}
    vals, cnt = np.unique(u, return_counts=True)
    return {
        "count": n,
        "upper_bound": {
            "min": int(u.min()),
            "mean": round(float(u.mean()), 3),
            "max": int(u.max()),
            "most_common": int(vals[cnt.argmax()]),
        },
        "used": {"min": int(k.min()), "mean": round(float(k.mean()), 3), "max": int(k.max())},
        "used_share_mean": round(float((k / np.maximum(u, 1)).mean()), 4),
        "oversize_share": round(float((u > capacity).mean()), 4),
    }


def compare_stream(
    stream: Stream,
    params: ModelParams,
    *,
    cache: str,
    engine: str = "reference",
    costs: CostModel | None = None,
    cpus_per_node: int | None = None,
    input_name: str | None = None,
    sweep_upper: int | None = None,
    sweep_background: int | None = None,
    notes: list[str] | None = None,
    sweep: bool = True,
) -> Comparison:
    """Replay ``stream`` with both strategies and compute the crossover."""
    costs = costs or CostModel()
    if stream.n_ops == 0:
        raise NothingToAnalyse(
            f"no prefill operation of {cache} to compare (source: {stream.source})"
        )
    cpn = cpus_per_node or params.cpus
    strategies = replay_both(stream, params, engine, costs, cpn)
    p, b = strategies["prefill"]["cost_ns_per_op"], strategies["bulk"]["cost_ns_per_op"]
    winner = "prefill" if p <= b else "bulk"
    loser_cost, winner_cost = max(p, b), min(p, b)
    margin = (loser_cost - winner_cost) / loser_cost if loser_cost > 0 else 0.0
    summary = _op_summary(stream, params.sheaf_capacity)
    if sweep:
        u = sweep_upper or summary["upper_bound"]["most_common"]
        bg = SYNTH_BACKGROUND if sweep_background is None else sweep_background
        sweep_params = dataclasses.replace(
            params,
            cpus=min(params.cpus, SWEEP_MAX_CPUS),
            cpu_node=(0,) * min(params.cpus, SWEEP_MAX_CPUS),
        )
        cross = crossover(u, sweep_params, engine, costs, cpn, bg)
    else:
        cross = {"used_share": None, "method": "not computed", "points": []}
    notes = list(notes or [])
    notes.append(
        f"cost per operation: every allocator call of the cache divided by the {stream.n_ops} "
        "prefill operations (the same background work in both strategies); contention for "
        f"{cpn} CPUs per node running this mix back to back (closed loop)"
    )
    notes.append("replayed on one NUMA node: remote-node frees are not modelled")
    return Comparison(
        source=stream.source,
        source_note=OP_SOURCES[stream.source],
        input=input_name,
        cache=cache,
        kernel=params.kernel,
        engine=engine,
        capacity=params.sheaf_capacity,
        object_size=params.object_size,
        cpus_replayed=params.cpus,
        cpus_per_node=cpn,
        operations=summary,
        strategies=strategies,
        winner=winner,
        margin=round(margin, 4),
        margin_ns=round(loser_cost - winner_cost, 3),
        tie=margin < TIE_SHARE,
        crossover_used_share=cross["used_share"],
        crossover=cross,
        costs=costs.to_dict(),
        assumptions=dict(stream.assumptions),
        notes=notes,
    )


def _params(
    kernel: str, cache: str, object_size: int, capacity: int | None, cpus: int
) -> ModelParams:
    cap = capacity if capacity is not None else effective_capacity(kernel, cache, object_size)
    return ModelParams.for_cache(
        kernel=kernel,
        object_size=max(object_size, 8),
        capacity=cap,
        cpus=cpus,
        nodes=1,
        cpu_node=(0,) * cpus,
    )


def compare_synthetic(
    upper: int,
    used: UsedDist,
    *,
    cpus: int = 4,
    cache: str = "maple_node",
    object_size: int = 256,
    kernel: str = "7.3",
    capacity: int | None = None,
    engine: str = "reference",
    costs: CostModel | None = None,
    seed: int = 0,
    ops_total: int = SYNTH_OPS,
    sweep: bool = True,
) -> Comparison:
    """Prefill versus bulk with no trace: ``--upper-bound`` and ``--used`` on ``cpus`` CPUs."""
    if upper < 1:
        raise UsageError("--upper-bound must be at least 1")
    rcpus = min(cpus, SYNTH_MAX_CPUS)
    per_cpu = max(1, ops_total // rcpus)
    k, clipped = used.sample(np.random.default_rng(seed), per_cpu * rcpus, upper)
    stream = synthetic_stream(upper, k, rcpus, ops_total)
    stream.assume(f"--used draws clipped to 0..{upper}", clipped)
    params = _params(kernel, cache, object_size, capacity, rcpus)
    notes = [
        f"synthetic stream: no trace or workload; U = {upper}, used {used.text}, "
        f"{stream.n_ops} operations on {rcpus} CPUs (one every {SYNTH_PERIOD_NS // 1000} µs "
        f"per CPU), {SYNTH_BACKGROUND} ordinary allocations per operation, every object freed "
        f"with kmem_cache_free by its CPU {SYNTH_LIFETIME_OPS} operations later; {cache} with "
        f"{object_size}-byte objects"
    ]
    return compare_stream(
        stream,
        params,
        cache=cache,
        engine=engine,
        costs=costs,
        cpus_per_node=cpus,
        sweep_upper=upper,
        notes=notes,
        sweep=sweep,
    )


def _slot_size(norm: Normalized, cache: str) -> int:
    t = norm.table
    rows = (t.cache_id == t.find_cache(cache)) & norm.is_alloc
    sizes = t.bytes_alloc[rows]
    return int(np.bincount(sizes).argmax()) if len(sizes) else 256


def _background_per_op(stream: Stream) -> int:
    n_alloc = int(np.count_nonzero(stream.bg["cmd"] == Cmd.ALLOC))
    return int(min(8, round(n_alloc / max(stream.n_ops, 1))))


def compare_events(
    norm: Normalized,
    cache: str,
    *,
    ops: OpTable | None = None,
    source: str = "inferred",
    upper_bound: int | None = None,
    tree_height: int = 3,
    kernel: str = "7.3",
    capacity: int | None = None,
    engine: str = "reference",
    costs: CostModel | None = None,
    cpus_per_node: int | None = None,
    rcu_gp_ns: int = 10_000_000,
    input_name: str | None = None,
    notes: list[str] | None = None,
    sweep: bool = True,
) -> Comparison:
    """Prefill versus bulk for a trace's (or a generated workload's) cache.

    Without ``ops`` the operations are inferred from runs of sheaf pops (``source``
    "inferred"; ``upper_bound`` replaces the store type's request rule). With ``ops`` (a
    workload's or a capture's OpTable) the pops the trace shows are assigned to them
    (:func:`assign_pops`); ``upper_bound``, if given, replaces theirs too.
    """
    t = norm.table
    if cache not in t.caches or not np.any(t.cache_id == t.find_cache(cache)):
        raise NothingToAnalyse(f"{t.meta.source}: no event of cache {cache}")
    runs = sheaf_pop_runs(norm, cache, upper_bound, tree_height)
    counts: dict[str, int] = {}
    if ops is None:
        ops, counts = infer_operations(norm, cache, upper_bound, tree_height)
        pop_op = runs.run
        source = "inferred"
    else:
        cid = t.find_cache(cache)
        mine = ops.cache_id == cid
        ops = OpTable(
            ts_ns=ops.ts_ns[mine],
            cpu=ops.cpu[mine],
            cache_id=ops.cache_id[mine],
            upper_bound=ops.upper_bound[mine],
            used=ops.used[mine],
            pid=ops.pid[mine],
            site_id=ops.site_id[mine],
            source=source,
        )
        if upper_bound is not None:
            ops = dataclasses.replace(
                ops, upper_bound=np.full(len(ops), upper_bound, dtype=np.uint32)
            )
        pop_op = assign_pops(ops, runs.rows, t.cpu[runs.rows], t.ts_ns[runs.rows])
    stream = stream_from_events(norm, cache, ops, runs.rows, pop_op, source, rcu_gp_ns)
    stream.assume(
        "sheaf pops not in any operation (replayed as ordinary allocations)",
        int((pop_op < 0).sum()),
    )
    params = _params(kernel, cache, _slot_size(norm, cache), capacity, stream.cpus)
    notes = list(notes or [])
    if source == "inferred":
        rule = (
            f"--upper-bound {upper_bound}"
            if upper_bound is not None
            else f"the maple tree's request rule for the store type (tree height {tree_height})"
        )
        notes.append(
            f"operations inferred from {counts.get('sheaf_pops', 0)} sheaf pops; upper bound from "
            f"{rule}"
        )
    return compare_stream(
        stream,
        params,
        cache=cache,
        engine=engine,
        costs=costs,
        cpus_per_node=cpus_per_node,
        input_name=input_name,
        sweep_background=_background_per_op(stream),
        notes=notes,
        sweep=sweep,
    )


#: A workload's events replayed by default (the reference engine runs ~50,000 commands/s).
WORKLOAD_EVENTS = 50_000


@dataclass(frozen=True)
class CompareRequest:
    """What ``sheaftune compare`` asks for; :func:`run` checks the combination and runs it."""

    trace: str | None = None
    workload: str | None = None
    ops_file: str | None = None
    cache: str = "maple_node"
    upper_bound: int | None = None
    used: str | None = None
    capacity: int | None = None
    cpus: int | None = None
    kernel: str = "7.3"
    engine: str = "reference"
    costs: CostModel | None = None
    seed: int = 0
    events: int | None = None
    input_format: str | None = None

    def check(self) -> UsedDist | None:
        """Usage errors for impossible combinations; the parsed ``--used`` if synthetic."""
        if self.trace and self.workload:
            raise UsageError("give a TRACE or --workload, not both")
        if self.ops_file and not self.trace:
            raise UsageError("--ops (prefill capture records) needs the TRACE captured with them")
        if self.trace or self.workload:
            if self.used is not None:
                raise UsageError(
                    "--used builds a synthetic stream; with a TRACE or --workload the objects "
                    "used come from the input (drop --used, or drop the input)"
                )
            return None
        if self.upper_bound is None or self.used is None:
            raise UsageError(
                "give a TRACE, --workload FILE, or both --upper-bound U and --used N|DIST "
                "for a synthetic stream; see `sheaftune compare --help`"
            )
        return parse_used(self.used)


def run(req: CompareRequest, say: Callable[[str], None] | None = None) -> Comparison:
    """Load the input the request names and compare prefill with bulk on it."""
    used = req.check()
    tell = say or (lambda msg: None)
    common: dict[str, Any] = {
        "kernel": req.kernel,
        "capacity": req.capacity,
        "engine": req.engine,
        "costs": req.costs,
    }
    if used is not None:
        assert req.upper_bound is not None
        tell(f"synthetic stream: U = {req.upper_bound}, used {used.text}")
        return compare_synthetic(
            req.upper_bound, used, cpus=req.cpus or 4, cache=req.cache, seed=req.seed, **common
        )
    from sheaftune.normalize import normalize

    notes: list[str] = []
    if req.workload:
        from sheaftune.synth.generate import generate
        from sheaftune.synth.spec import load_spec

        spec = load_spec(req.workload)
        n_events = req.events or min(spec.events, WORKLOAD_EVENTS)
        tell(f"generating {n_events} events of workload {spec.name} (seed {req.seed})")
        syn = generate(spec, seed=req.seed, events=n_events)
        notes.append(
            f"workload {spec.name}: {n_events} visible events (seed {req.seed}) of its "
            f"{spec.events}; --events to change"
        )
        norm = normalize(syn.events)
        tell("replaying prefill and bulk")
        return compare_events(
            norm,
            req.cache,
            ops=syn.ops,
            source="workload",
            upper_bound=req.upper_bound,
            cpus_per_node=req.cpus,
            input_name=req.workload,
            notes=notes,
            **common,
        )
    from sheaftune.analysis.pipeline import load

    assert req.trace is not None
    table = load(req.trace, req.input_format)
    norm = normalize(table)
    ops = None
    source = "inferred"
    if req.ops_file:
        from sheaftune.capture.prefill_ops import ops_from_prefill_records, read_prefill_records

        stats: dict[str, int] = {}
        ops = ops_from_prefill_records(
            read_prefill_records(req.ops_file), list(table.caches), list(table.sites), stats
        )
        source = "capture"
        notes.append(
            f"operations from {req.ops_file}: "
            + ", ".join(f"{k} {v}" for k, v in sorted(stats.items()))
            + "; its pops are matched to the trace's by CPU and time (same clock needed)"
        )
    tell("replaying prefill and bulk")
    return compare_events(
        norm,
        req.cache,
        ops=ops,
        source=source,
        upper_bound=req.upper_bound,
        cpus_per_node=req.cpus,
        input_name=req.trace,
        notes=notes,
        **common,
    )


@dataclass(frozen=True)
class ComparisonSet(Record):
    """Several traces compared in one run (``compare TRACE...``), in the order given."""

    # Version history:
    # 1 - first schema.
    SCHEMA: ClassVar[str] = "sheaftune/comparison-set"
    VERSION: ClassVar[int] = 1

    comparisons: list[Comparison]
