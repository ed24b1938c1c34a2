"""The shared front half of every command: inputs -> EventTables -> normalised events.

Commands call these instead of repeating reader selection, the bundled example, cache filters
and the "nothing to analyse" checks.
"""

from __future__ import annotations

import dataclasses
import heapq
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sheaftune import heap
from sheaftune.analysis.characterize import Analysis, characterize
from sheaftune.analysis.sweep import CapacitySpec
from sheaftune.analysis.tracereplay import (
    CacheReplay,
    ReplayPolicy,
    StreamedPlan,
    cache_rows,
    cache_rows_counted,
    planned,
    replay_cache,
)
from sheaftune.errors import NothingToAnalyse
from sheaftune.events import EventTable
from sheaftune.model.plan import Plan
from sheaftune.normalize import Normalized, find_sheaf_pops, normalize
from sheaftune.params import ModelParams
from sheaftune.readers import ReadOptions, read_trace

if TYPE_CHECKING:  # (recommend is imported when a recommendation is made)
    from sheaftune.analysis.recommend import Pending, Recommendation, RecommendOptions

#: The real trace shipped with the package (`--example`): a Linux 6.18 capture of VMA and
#: maple-tree churn on 2 CPUs (7,516 events), as trace-cmd's zstd-compressed trace.dat v7.
EXAMPLE_TRACE = "vma-small.dat"


def example_path() -> str:
    # (imported here: importlib.resources brings zipfile, tempfile and more, for --example only)
    from importlib import resources

    return str(resources.files("sheaftune") / "data" / EXAMPLE_TRACE)


#: ``load("workload:FILE.yaml")`` generates the workload instead of reading a trace.
WORKLOAD_PREFIX = "workload:"


def load(
    path: str, input_format: str | None = None, options: ReadOptions | None = None
) -> EventTable:
    """Read one trace (or generate ``workload:FILE.yaml`` with seed 0); a trace without a single
    kmem event is 'nothing to analyse'. (A trace.dat written by ``sheaftune record`` also brings
    what was recorded, events, filters, per-CPU losses, into ``meta.extra["record"]``: the
    reader reads it.) A trace.dat comes back normalised already (every caller normalises the
    whole table next; see ``_normalize_meanwhile``)."""
    if path.startswith(WORKLOAD_PREFIX):
        from sheaftune.synth.generate import generate_file

        workload = path[len(WORKLOAD_PREFIX) :]
        table = generate_file(workload).events
        table.meta.source = workload
        table.meta.format = "workload"
    else:
        options = dataclasses.replace(options or ReadOptions(), finish_later=True)
        table = read_trace(path, input_format, options)
    # (the heap's rules for what comes next, normalisation included)
    if len(table) > ROWS_AT_ONCE:
        heap.return_freed_memory()
    else:
        heap.many_events(len(table))
    if table.pending is not None:
        _normalize_meanwhile(table)
    if len(table) == 0:
        raise NothingToAnalyse(f"{table.meta.source}: the trace holds no kmem events")
    return table


#: The GIL's switch interval while normalisation and a reader's thread run side by side.
SWITCH_INTERVAL = 0.0005


def _normalize_meanwhile(table: EventTable) -> None:
    """Normalise a table whose reader still resolves its call sites and task names on a
    thread (``EventTable.pending``: a trace.dat's kallsyms lookups and cmdlines, ~7 ms on a
    715k-event trace), then settle it. Normalisation needs neither, and is compiled code on
    one core: the reader's thread has the other. Every caller of ``load`` normalises the whole
    table next; ``normalize`` gives it this result (``EventTable.normalized``)."""
    # The reader's thread runs Python between its compiled calls, as normalize does: with
    # the default 5 ms switch interval, each of normalize's steps back from a kernel could
    # wait that long for the GIL (measured: 3-6 ms per run); 0.5 ms meanwhile.
    # (Restored by the call that changed it only: loads on several threads at once leave the
    # program's own setting behind them.)
    interval = sys.getswitchinterval()
    lowered = interval > SWITCH_INTERVAL
    if lowered:
        sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        norm = normalize(table)
    finally:
        try:
            table.settle()  # (its error, should both fail, is the one met first)
        finally:
            if lowered:
                sys.setswitchinterval(interval)
    # normalize's table was made before the call sites and comms were: the final ones
    out = EventTable(
        {**table.columns, "cache_id": norm.table.cache_id},
        norm.table.caches,
        table.sites,
        table.comms,
        table.meta,
    )
    table.normalized = Normalized(out, norm.alloc_of, norm.live_at_end, norm.reused_by, norm.counts)


@dataclass(frozen=True)
class ModelOptions:
    """How ``analyze`` replays each cache through the sheaf model."""

    kernel: str = "7.3"
    capacities: CapacitySpec = field(default_factory=CapacitySpec)
    engine: str = "fast"
    policy: ReplayPolicy = field(default_factory=ReplayPolicy)
    cpus: int | None = None
    nodes: int = 1
    #: recommend a capacity for the largest caches (at most ``recommend_caches`` of them, each
    #: with at least ``recommend_min_allocs`` allocations), with recommend's own code
    recommend: bool = True
    recommend_caches: int = 5
    recommend_min_allocs: int = 1000


#: Traces up to this many events find all their caches' rows in one pass.
ROWS_AT_ONCE = 1 << 24


def analyze_table(
    table: EventTable, caches: list[str] | None = None, model: ModelOptions | None = None
) -> Analysis:
    """Normalise and characterise one trace, optionally only the named caches; with ``model``,
    replay every reported cache through the sheaf model too."""
    norm: Normalized = normalize(table)
    if model is not None and len(table) <= PARALLEL_EVENTS:
        # the replays need only the normalised events and which caches allocate: they start
        # now, on a pool of threads, while this thread characterises the trace
        replays = _Replays(norm, caches or None, model)
        try:
            result = characterize(norm, caches or None)
        finally:
            replays.close()
        replays.answer(result)
    else:
        result = characterize(norm, caches or None)
        if model is not None:
            _replay_and_recommend(norm, result, model)
    if caches and not result.caches:
        raise NothingToAnalyse(
            f"{table.meta.source}: no event of cache {', '.join(caches)} "
            f"(the trace has {len(norm.table.caches)} caches; see `sheaftune analyze` without "
            "--cache)"
        )
    if model is not None:
        result = dataclasses.replace(
            result,
            model={
                "kernel": model.kernel,
                "engine": model.engine,
                "policy": dataclasses.asdict(model.policy),
                "note": f"replayed with Linux {model.kernel} sheaf semantics",
            },
        )
    return result


#: Traces up to this many events replay their caches on several threads at once (the
#: compiled kernels release the GIL); bigger ones one cache at a time, so memory holds one
#: cache's plan and engine states, not one per thread (issue 10's bound).
PARALLEL_EVENTS = 1 << 22


def _replay_and_recommend(norm: Normalized, result: Analysis, model: ModelOptions) -> None:
    """Replay every cache with allocations and recommend for the largest ones (in place), one
    cache at a time (a huge trace)."""
    names = [name for name, st in result.caches.items() if st["alloc"] > 0]
    # every cache's rows at once (one pass) unless the trace is huge: then one cache's rows
    # at a time, so they never add a whole int32 column to the replay's memory
    rows = cache_rows(norm) if len(norm.table) <= ROWS_AT_ONCE else None
    for name in names:
        # (None on a huge trace: replay_cache finds the rows and drops them once the plan is
        # made; an argument passed from here would live through the replay)
        cache_row = rows[name] if rows is not None else None
        result.caches[name]["replay"] = _replay(norm, name, model, cache_row)
    rows = None  # the recommendations find their own cache's rows
    for name in recommended_caches(result, model):
        result.caches[name]["recommendation"] = _recommendation(norm, name, model)


#: Caches of fewer rows than this, replayed at one capacity, are replayed in
#: ``SMALL_BATCHES`` jobs rather than one job each; a replay's fixed cost, in commands, is
#: about ``SMALL_COST`` (the order of jobs only). One batch: two would run at once on two
#: threads, both mostly Python, and take turns at the GIL (measured on the 715k-event
#: fixture, 2 cores: the pool's span 115 -> 102 ms, median of 20, with one batch beside the
#: large replays instead of two side by side).
SMALL_ROWS = 16384
SMALL_BATCHES = 1
SMALL_COST = 8192
#: At most this many threads replay caches at once.
MAX_THREADS = 4
#: The priority of the jobs that come first (above any replay's cost).
_FIRST = float(1 << 62)
#: Added to the priority of the jobs that come last (below any other job's: a replay's cost
#: stays far below it, and exact).
_LAST = -float(1 << 50)


class _Replays:
    """Every replay and recommendation of a trace of modest size, as jobs on one pool of
    threads, started before the trace is characterised.

    Which caches to replay (those with allocations) and recommend for (the largest) are read
    off the normalised events here, the way ``characterize`` counts them; ``answer`` checks
    that against its analysis. A cache's jobs: one to make its plan and parameters, then one
    per replay: each capacity of its replay and each candidate of its recommendation, the
    candidate replay at the replay's own parameters serving both (the recommendation's
    replay, whose warm-up checkpoint is read on the way, is that replay); the small caches
    replayed at one capacity are a few jobs, each replaying several. Jobs run largest first,
    so both cores stay busy to the end; a cache's last job writes its answers. A candidate
    the choice can do without once two smaller ones are calm (``Pending.optional``: the
    scaling objective's winner and runner-up are then known) runs after every other job, and
    only if that has not happened by then (the answers are the same either way). The answers go
    back in the analysis's own order, so the output never depends on the thread
    count or timing; a failure reported is the one the sequential order meets first.
    """

    def __init__(self, norm: Normalized, caches: list[str] | None, model: ModelOptions) -> None:
        self.norm = norm
        self.model = model
        self.caches = caches
        self.names: list[str] = []
        self.recommended: list[str] = []
        self.rows: dict[str, np.ndarray] = {}
        self.jobs: dict[str, _CacheJobs] = {}
        self.pool = _Pool(min(os.cpu_count() or 1, MAX_THREADS))
        # (the grouping by cache is a job too: the caller characterises meanwhile; beside it,
        # on the other thread, the sweep for sheaf pops, which the first plan would otherwise
        # make while the others wait for it)
        self.pool.add(_FIRST, self._start)
        if model.policy.sheaf_pops == "prefill":
            self.pool.add(_FIRST, self._find_pops)
        self.pool.start()

    def _start(self) -> None:
        """Group the rows by cache, count their allocations, and queue every cache's jobs."""
        self.rows, allocs = cache_rows_counted(self.norm)
        if self.caches:
            allocs = {name: n for name, n in allocs.items() if name in self.caches}
        self.names = [name for name, n in allocs.items() if n > 0]
        self.recommended = _largest(allocs, self.model)
        rec = set(self.recommended)
        batch: list[tuple[_CacheJobs, int]] = []
        for name in self.names:
            n = len(self.rows[name])
            job = self.jobs[name] = _CacheJobs(name, name in rec)
            if not job.recommend and n < SMALL_ROWS and _single_capacity(self.model, name):
                batch.append((job, n))
                continue
            # (the recommendations' plans first, each opening many replays, the longest first:
            # a plan has about two commands per allocation, its free seen or not)
            cost = _FIRST / 2 + allocs[name] if job.recommend else 2 * n
            self.pool.add(cost, self._prepare, job, n)
        # The small caches' replays are mostly Python (setting up, the report): two threads
        # running them at once take turns holding the GIL, each handover a wake-up of the
        # other, so they go in one batch (SMALL_BATCHES), one thread's series, beside the
        # large replays' compiled code, which needs no GIL.
        for i in range(SMALL_BATCHES):
            part = batch[i::SMALL_BATCHES]
            if part:
                cost = sum(2 * n + SMALL_COST for _, n in part)
                self.pool.add(cost, self._prepare_all, part)

    def _find_pops(self) -> None:
        try:
            find_sheaf_pops(self.norm)
        except Exception:  # noqa: BLE001 - no memo then: each plan sweeps and reports it in order
            pass

    def close(self) -> None:
        """Wait for every job."""
        self.pool.join()

    def answer(self, result: Analysis) -> None:
        """Put the replays and recommendations into ``result`` (in its order), or raise the
        first failure of the sequential order (every replay, then every recommendation)."""
        names = [name for name, st in result.caches.items() if st["alloc"] > 0]
        if names != self.names or recommended_caches(result, self.model) != self.recommended:
            raise AssertionError("analyze: the caches replayed differ from the analysis's")
        for kind in ("replay", "recommendation"):
            for name in names:
                job = self.jobs[name]
                if kind in job.errors:
                    raise job.errors[kind]
        for name in names:
            job = self.jobs[name]
            st = result.caches[name]
            st["replay"] = job.replay_out
            if job.recommend:
                st["recommendation"] = job.rec_out

    # -- jobs
    def _prepare(self, job: _CacheJobs, n: int) -> None:
        norm, model, name = self.norm, self.model, job.name
        rows = self.rows[name]
        if not job.recommend and _single_capacity(model, name):
            # one short replay (most caches) is one job
            job.run("replay", lambda: _replay(norm, name, model, rows))
            return
        try:
            plan, counts, slot = planned(norm, name, model.policy, model.engine, rows)
        except Exception as e:  # noqa: BLE001 - reported by answer(), in order
            # (the recommendation would fail the same way, after the replay)
            job.errors["replay"] = job.errors["recommendation"] = e
            return
        if not isinstance(plan, Plan):
            # a huge cache streams its plan: its replay, then its recommendation, in this job
            job.run("replay", lambda: _replay(norm, name, model, rows, plan))
            if job.recommend:
                self._whole_recommendation(job)
            return
        # a recommendation shares the replay's plan when both fit it to the same single node
        shared = job.recommend and model.nodes == 1
        if job.recommend and not shared:
            self.pool.add(2 * n, self._whole_recommendation, job)
        try:
            rep = job.rep = CacheReplay.of(
                norm, name, model.kernel, model.capacities, model.engine, model.policy,
                model.cpus, model.nodes, rows, plan, slot, counts,
            )  # fmt: skip
        except Exception as e:  # noqa: BLE001
            job.errors["replay"] = e
            if shared:
                job.errors["recommendation"] = e
            return
        units: list[tuple[str, int, ModelParams]] = []
        # candidates the choice drops whatever they measure are not replayed: their results
        # stay None, which the recommendation takes for "not needed"
        skip: set[int] = set()
        optional: set[int] = set()
        if shared:
            try:
                from sheaftune.analysis.recommend import prepare_for_cache

                options = recommend_options(model)
                pend = job.pending = prepare_for_cache(
                    norm, name, options, model.policy, rows=rows, plan=plan, slot=slot
                )
                skip = pend.unneeded()
                optional = pend.optional() - skip
            except Exception as e:  # noqa: BLE001
                job.errors["recommendation"] = e
                job.pending = None
            else:
                units += [
                    ("candidate", j, p) for j, p in enumerate(pend.sweep.params) if j not in skip
                ]
                job.candidates = [None] * len(pend.sweep.params)
        job.results = [None] * len(rep.params)
        for i, p in enumerate(rep.params):
            j = _index(job.pending.sweep.params, p) if job.pending is not None else None
            if j in skip:
                j = None  # (an unreplayed candidate has no replay to share)
            if j is None:
                units.append(("replay", i, p))
            else:
                job.shared[i] = j
        # (a candidate the replay shares is needed whatever the choice)
        job.optional = optional - set(job.shared.values())
        job.left = len(units)
        if not units:
            self._finish(job)
        for kind, i, p in units:
            cost = _replay_cost(len(plan), p.sheaf_capacity)
            # the optional candidates after every other job, so that the smaller candidates
            # that may make them needless are replayed by the time they come up
            self.pool.add(cost + _LAST if kind == "candidate" and i in job.optional else cost,
                          self._unit, job, kind, i)  # fmt: skip

    def _prepare_all(self, jobs: list[tuple[_CacheJobs, int]]) -> None:
        for job, n in jobs:
            self._prepare(job, n)

    def _unit(self, job: _CacheJobs, kind: str, i: int) -> None:
        out: Any
        try:
            if kind == "candidate":
                pend = job.pending
                assert pend is not None
                capacity = pend.sweep.params[i].sheaf_capacity
                if i in job.optional and job.calm_below(capacity) >= 2:
                    out = None  # (the choice needs it no more: Pending.optional)
                else:
                    out = pend.sweep.run(i)
                    if job.optional:
                        job.note_calm(pend, i, capacity, out)
            else:
                assert job.rep is not None
                stats = job.pending.sweep.stats if job.pending is not None else None
                out = job.rep.run(i, stats.facts if stats is not None else None)
        except Exception as e:  # noqa: BLE001 - reported by answer(), in order
            out = e
        (job.candidates if kind == "candidate" else job.results)[i] = out
        if job.unit_done():
            self._finish(job)

    def _finish(self, job: _CacheJobs) -> None:
        """A cache's answers, once its last replay is done (a failed replay's result is its
        exception; the first in order is the one the sequential order would meet)."""
        cands = job.candidates
        failed = [c for c in cands if isinstance(c, Exception)]
        if failed:
            job.errors.setdefault("recommendation", failed[0])
        rep = job.rep
        if rep is not None and "replay" not in job.errors:
            results = []
            for i, r in enumerate(job.results):
                if i in job.shared:  # the candidate's replay at the same parameters
                    r = cands[job.shared[i]]
                    r = r if isinstance(r, Exception) else r[0]
                if isinstance(r, Exception):
                    job.errors["replay"] = r
                    break
                results.append(r)
            else:
                job.run("replay", lambda: rep.report(results))
        pend = job.pending
        if pend is not None and "recommendation" not in job.errors:
            job.run("recommendation", lambda: recommendation_entry(pend.finish(cands)))

    def _whole_recommendation(self, job: _CacheJobs) -> None:
        rows = self.rows[job.name]
        job.run("recommendation", lambda: _recommendation(self.norm, job.name, self.model, rows))


class _CacheJobs:
    """One cache's state across its jobs (see :class:`_Replays`)."""

    def __init__(self, name: str, recommend: bool) -> None:
        self.name = name
        self.recommend = recommend
        self.rep: CacheReplay | None = None
        self.pending: Pending | None = None
        #: results of the replay's capacities, of the recommendation's candidates (or the
        #: exception a replay raised)
        self.results: list[Any] = []
        self.candidates: list[Any] = []
        #: replay capacity -> the candidate with the same parameters
        self.shared: dict[int, int] = {}
        #: candidates not replayed once two smaller ones are calm (Pending.optional), and the
        #: capacities of the candidates replayed and found calm so far
        self.optional: set[int] = set()
        self.calm: list[int] = []
        self.left = 0
        self._lock = threading.Lock()
        self.errors: dict[str, BaseException] = {}
        self.replay_out: dict[str, Any] = {}
        self.rec_out: dict[str, Any] = {}

    def run(self, kind: str, f: Callable[[], dict[str, Any]]) -> None:
        """``f()`` as the cache's replay or recommendation answer, or its failure."""
        try:
            out = f()
        except Exception as e:  # noqa: BLE001 - reported by _Replays.answer, in order
            self.errors[kind] = e
            return
        if kind == "replay":
            self.replay_out = out
        else:
            self.rec_out = out

    def note_calm(self, pend: Pending, i: int, capacity: int, result: Any) -> None:
        """Candidate ``i``'s replay done: note its capacity if it is calm."""
        try:
            calm = pend.calm(i, result)
        except Exception:  # noqa: BLE001 - not calm then: the recommendation reports it in order
            return
        if calm:
            with self._lock:
                self.calm.append(capacity)

    def calm_below(self, capacity: int) -> int:
        """How many candidates smaller than ``capacity`` are known to be calm."""
        with self._lock:
            return sum(1 for c in self.calm if c < capacity)

    def unit_done(self) -> bool:
        """One replay job done: True for the last."""
        with self._lock:
            self.left -= 1
            return self.left == 0


class _Pool:
    """Threads taking jobs from one queue, the largest (highest priority) first; a job may add
    jobs. ``join`` makes the calling thread a worker too, the last one: the caller
    characterises the trace while the others start the jobs, then joins them, so that the
    threads running never outnumber the ``workers`` (cores): a third thread on two cores
    would take turns with the others, and the one preempted may hold the GIL the others
    wait for. With one worker, ``join`` runs them all in the calling thread."""

    def __init__(self, workers: int) -> None:
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._cv = threading.Condition()
        self._count = 0  # jobs added (the tie-break: first added, first run)
        self._open = 0  # jobs added and not finished
        self._closing = False
        self._failed: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._work, name=f"replay_{i}", daemon=True)
            for i in range(max(0, workers - 1))
        ]

    def add(self, priority: float, job: Callable[..., None], *args: Any) -> None:
        with self._cv:
            heapq.heappush(self._heap, (-priority, self._count, job, args))
            self._count += 1
            self._open += 1
            self._cv.notify()

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def join(self) -> None:
        """Take jobs until every job is done (the threads' too), then end the threads."""
        while True:
            with self._cv:
                while not self._heap and self._open:
                    self._cv.wait()
                if not self._heap:
                    self._closing = True
                    self._cv.notify_all()
                    break
                _, _, job, args = heapq.heappop(self._heap)
            try:
                self._run(job, args, caller=True)
            except BaseException:
                # (Ctrl-C here: no job is taken any more; the threads end theirs, then stop)
                with self._cv:
                    self._heap.clear()
                    self._closing = True
                    self._cv.notify_all()
                raise
        for t in self._threads:
            t.join()
        if self._failed is not None:
            raise self._failed

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._heap and not self._closing:
                    self._cv.wait()
                if not self._heap:
                    return
                _, _, job, args = heapq.heappop(self._heap)
            self._run(job, args)

    def _run(self, job: Callable[..., None], args: tuple[Any, ...], caller: bool = False) -> None:
        try:
            job(*args)
        except BaseException as e:  # (a bug: jobs keep their own failures) - join raises it
            if caller and not isinstance(e, Exception):
                raise  # (KeyboardInterrupt on the calling thread: at once)
            self._failed = self._failed or e
        with self._cv:
            self._open -= 1
            if not self._open:
                self._cv.notify_all()


def _replay_cost(commands: int, capacity: int) -> float:
    """A replay's expected CPU time, in commands: small capacities go to the barn and the
    slabs often, so cost more per command (the order of jobs only, never their results)."""
    return commands * (3.0 if capacity <= 4 else 1.5 if capacity <= 12 else 1.0)


def _index(params: list[ModelParams], p: ModelParams) -> int | None:
    """Where ``params`` holds ``p`` (equal in every field), if anywhere."""
    for j, q in enumerate(params):
        if q == p:
            return j
    return None


def _single_capacity(model: ModelOptions, cache: str) -> bool:
    """Whether the cache replays at one capacity only (the kernel's, by default)."""
    spec = model.capacities
    items = spec.per_cache.get(cache, spec.default)
    return len(items) == 1 and items[0] != "buckets"


def _replay(
    norm: Normalized,
    name: str,
    model: ModelOptions,
    rows: np.ndarray | None,
    plan: Plan | StreamedPlan | None = None,
) -> dict[str, Any]:
    return replay_cache(
        norm,
        name,
        model.kernel,
        model.capacities,
        model.engine,
        model.policy,
        model.cpus,
        model.nodes,
        rows,
        plan,
    )


def recommended_caches(result: Analysis, model: ModelOptions) -> list[str]:
    """The caches ``analyze`` recommends for: the largest by allocations (at most
    ``recommend_caches`` of them, each with at least ``recommend_min_allocs``)."""
    return _largest({name: st["alloc"] for name, st in result.caches.items()}, model)


def _largest(allocs: dict[str, int], model: ModelOptions) -> list[str]:
    """``recommended_caches`` from the caches' allocation counts."""
    if not model.recommend:
        return []
    ranked = sorted(allocs.items(), key=lambda kv: (-kv[1], kv[0]))
    chosen = [name for name, n in ranked if n >= model.recommend_min_allocs]
    return chosen[: model.recommend_caches]


def recommend_options(model: ModelOptions) -> RecommendOptions:
    """``recommend``'s options for the analysis's model."""
    from sheaftune.analysis.recommend import RecommendOptions

    return RecommendOptions(
        kernel=model.kernel, cpus=model.cpus, nodes=model.nodes, engine=model.engine
    )


def recommendation_entry(rec: Recommendation) -> dict[str, Any]:
    """A recommendation as the analysis reports it, under its cache's ``recommendation``."""
    return {
        "recommended": rec.recommended,
        "kernel_autotune": rec.kernel_autotune,
        "current": rec.current,
        "objective": rec.objective,
        "snippet": rec.snippet,
        "rationale": rec.rationale,
    }


def _recommendation(
    norm: Normalized,
    name: str,
    model: ModelOptions,
    rows: np.ndarray | None = None,
    plan: Plan | None = None,
) -> dict[str, Any]:
    """``recommend``'s answer for one cache, as the analysis reports it."""
    from sheaftune.analysis.recommend import recommend_for_cache

    options = recommend_options(model)
    rec = recommend_for_cache(norm, name, options, model.policy, rows=rows, plan=plan)
    return recommendation_entry(rec)
