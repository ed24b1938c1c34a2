"""Many traces and large sweeps: the same work on local processes or a Dask cluster.

A fleet run is a list of *units of work*, each a plain picklable call that names a trace by
path, never by content: the trace is read where the unit runs (a worker process here, or a
``dask.distributed`` worker elsewhere), so only paths go out and only result dicts come back.

Units:

* ``trace unit`` (one per trace): read, normalise, characterise; say which caches the model
  will replay and at which capacities (the replay's header: slot size, kernel capacity,
  plan counts, what the plan assumed). Everything that is *not* exactly mergeable (the lifetime
  percentiles, the top call sites, the size statistics) is computed here, over the whole trace,
  so nothing needs merging: the per-trace record is the same object a single-machine run makes.
* ``replay unit`` (trace, cache, capacity): one replay of one cache's plan at one
  ``sheaf_capacity``; returns the same row ``tracereplay.replay_cache`` makes. Rows are
  counters and peaks of one deterministic replay, so "merging" is placing each row in its
  cache's list, sorted by capacity as ``capacities_for`` sorts them: exact.
* ``recommend unit`` (trace, cache): ``recommend.recommend_for_cache`` on one cache; its
  candidates share a warm-up cut and the choice compares them, so the cache, not the
  capacity, is the unit (see ``analysis.fleet``).
* ``compare unit`` (trace): ``compare.run`` on one trace's prefill operations; prefill and
  bulk replay the same operations against the same background, so they stay together.

A trace is not cut into time chunks: a replay carries the sheaves, barns and slabs of the
whole trace from one event to the next, so a chunked replay would differ from the single-run
one; the trace is the smallest unit that keeps results identical. A worker keeps the
normalised traces and plans it built last in memory, up to ``WORKER_CACHE_BYTES`` (``_LRU``),
so the units of one trace that land on the same worker read it once; and with enough traces
to keep every worker busy (``WHOLE_TRACE_SHARE`` per worker), a trace's units run together
where it was read, so no trace is read twice.

Executors: :class:`SerialExecutor` (this process), :class:`LocalExecutor` (a process pool,
default all cores), :class:`DaskExecutor` (a ``dask.distributed`` scheduler address; dask is
the optional extra ``sheaftune[dask]``). Every executor returns results in the order of the
units, so the merged record does not depend on which worker finished first.
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sheaftune.analysis.inputs import expand_inputs  # noqa: F401 - re-exported (tests, library users)
from sheaftune.errors import UsageError

if TYPE_CHECKING:
    from sheaftune.analysis.characterize import Analysis
    from sheaftune.analysis.compare import CompareRequest, Comparison
    from sheaftune.analysis.pipeline import ModelOptions
    from sheaftune.analysis.recommend import Recommendation, RecommendOptions
    from sheaftune.analysis.tracereplay import ReplayPolicy
    from sheaftune.events import TraceMeta
    from sheaftune.normalize import Normalized

T = TypeVar("T")
R = TypeVar("R")

#: What `--scheduler` says when dask is not installed (one line, exit 2).
DASK_MISSING = (
    "--scheduler needs dask.distributed: pip install 'sheaftune[dask]' "
    "(or: pip install 'dask[distributed]>=2024.1')"
)


# ------------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class TraceInput:
    """One trace as a unit of work names it.

    ``path`` is the spelling the user gave (the record's ``trace.source``); ``location`` is the
    absolute path the task opens, since a worker's working directory need not be ours.
    """

    path: str
    location: str
    input_format: str | None = None
    salvage: bool = False
    buffer: str | None = None


def trace_inputs(
    paths: Sequence[str],
    input_format: str | None = None,
    salvage: bool = False,
    buffer: str | None = None,
) -> list[TraceInput]:
    if "-" in paths:
        raise UsageError("standard input (`-`) cannot be sent to workers; give a file")
    return [TraceInput(p, os.path.abspath(p), input_format, salvage, buffer) for p in paths]


# --------------------------------------------------------------------------------- executors
class Executor(Protocol):
    """Runs ``fn`` over ``items`` somewhere; results in the order of ``items``."""

    jobs: int

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]: ...

    def close(self) -> None: ...


class SerialExecutor:
    """Everything in this process, one unit after another (``--jobs 1``)."""

    jobs = 1

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        return [fn(x) for x in items]

    def close(self) -> None:
        pass

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor:
    """A pool of ``jobs`` worker processes on this machine (default: all cores).

    Workers are forked when this process runs a single thread: they inherit the imported
    modules and numba's loaded engine, so a worker costs milliseconds instead of the second or
    more a fresh interpreter spends importing numba and loading the compiled engine. With
    other threads alive (a fork would copy their locks mid-use) workers start from a
    ``forkserver`` instead. Each worker runs the compiled engine on one thread, so ``jobs``
    processes use ``jobs`` cores.
    """

    def __init__(self, jobs: int | None = None):
        import multiprocessing
        import threading
        from concurrent.futures import ProcessPoolExecutor  # with multiprocessing: ~15 ms

        self.jobs = jobs or os.cpu_count() or 1
        ctx: Any
        if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
            ctx = multiprocessing.get_context("fork")
        else:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["sheaftune.analysis.distribute"])
        self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx)

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        # consecutive units (same trace) run as one batch on one worker, which reads the
        # trace once; several batches per worker keep the load even
        return _unbatch(self._pool.map(_apply, [(fn, b) for b in _batches(items, self.jobs)]))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DaskExecutor:
    """Units submitted to a running ``dask.distributed`` scheduler at ``address``.

    The workers must have sheaftune installed (the same version) and see the trace paths
    (a shared file system, or the same layout on every host).
    """

    def __init__(self, address: str, timeout: float = 30.0):
        try:
            from distributed import Client
        except ImportError:
            raise UsageError(DASK_MISSING) from None
        try:
            self._client = Client(address, timeout=timeout, set_as_default=False)
        except OSError as e:
            raise UsageError(f"--scheduler {address}: cannot connect: {e}") from None
        info = self._client.scheduler_info()
        self.jobs = max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))
        # another sheaftune on a worker could replay other semantics: refuse, not mix
        from sheaftune import __version__

        theirs = self._client.run(_version)
        odd = {w: v for w, v in theirs.items() if v != __version__}
        if odd:
            self._client.close()
            w, v = next(iter(odd.items()))
            raise UsageError(
                f"--scheduler {address}: worker {w} runs sheaftune {v}, this is {__version__}; "
                "install the same version on every worker"
            )

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if not items:
            return []
        # pure=False: two units with equal arguments are still two replays to run (the key
        # would otherwise deduplicate them, which is right only by accident)
        batches = [(fn, b) for b in _batches(items, self.jobs)]
        futures = self._client.map(_apply, batches, pure=False)
        return _unbatch(self._client.gather(futures))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: traces per worker from which analyze runs each trace's units together (no trace is read
#: twice; the traces alone balance the load)
WHOLE_TRACE_SHARE = 3
#: batches per worker: enough to even out units of different cost, few enough that a worker
#: sees a trace's units together and reads the trace once per batch
BATCHES_PER_WORKER = 4


def _batches(items: Sequence[T], workers: int) -> list[list[T]]:
    """Consecutive runs of ``items`` (units are ordered by trace), about BATCHES_PER_WORKER
    per worker."""
    n = len(items)
    size = max(1, -(-n // (workers * BATCHES_PER_WORKER)))
    return [list(items[i : i + size]) for i in range(0, n, size)]


def _apply(job: tuple[Callable[[T], R], list[T]]) -> list[R]:
    fn, batch = job
    return [fn(x) for x in batch]


def _unbatch(results: Iterable[list[R]]) -> list[R]:
    return [r for batch in results for r in batch]


def _version() -> str:
    from sheaftune import __version__

    return __version__


def make_executor(
    jobs: int | None = None, scheduler: str | None = None
) -> SerialExecutor | LocalExecutor | DaskExecutor:
    """``--scheduler`` wins; ``--jobs 1``: this process; otherwise a local pool."""
    if scheduler:
        if jobs not in (None, 0):
            raise UsageError("--jobs and --scheduler exclude each other")
        return DaskExecutor(scheduler)
    if jobs is not None and jobs < 0:
        raise UsageError("--jobs must be 0 (all cores) or more")
    n = jobs or os.cpu_count() or 1
    return SerialExecutor() if n == 1 else LocalExecutor(n)


# ------------------------------------------------------------------------- worker-side state
def _nbytes(obj: Any) -> int:
    """Bytes of the numpy columns an object holds (itself, or its attributes two levels down:
    a Normalized and its EventTable, a Plan)."""
    import numpy as np

    def arrays(o: Any) -> int:
        return sum(v.nbytes for v in vars(o).values() if isinstance(v, np.ndarray))

    if isinstance(obj, tuple):
        return sum(_nbytes(o) for o in obj)
    if not hasattr(obj, "__dict__"):
        return 0
    inner = [v for v in vars(obj).values() if hasattr(v, "__dict__")]
    return arrays(obj) + sum(arrays(v) for v in inner)


class _LRU:
    """The objects a worker built last (normalised traces, plans), by key, up to ``budget``
    bytes of columns (the most recent one is kept whatever its size).

    Units of one trace run on several workers and in several batches; a worker that keeps the
    traces it read serves their later units without reading them again. A Dask worker may run
    units on threads: the dict is guarded by a lock, while building (reading a trace) happens
    outside it, so two threads may build the same object once each rather than wait."""

    def __init__(self, budget: int):
        import threading

        self.budget = budget
        self._d: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key][0]
        value = make()
        size = _nbytes(value)
        with self._lock:
            if key not in self._d:
                self._d[key] = (value, size)
                self._used += size
            while self._used > self.budget and len(self._d) > 1:
                _, (_, old) = self._d.popitem(last=False)
                self._used -= old
        return value


#: bytes of trace columns a worker keeps between units (SHEAFTUNE_WORKER_CACHE_MB overrides)
WORKER_CACHE_BYTES = int(os.environ.get("SHEAFTUNE_WORKER_CACHE_MB", "1024")) << 20
_TRACES = _LRU(WORKER_CACHE_BYTES)
_PLANS = _LRU(WORKER_CACHE_BYTES // 4)


def _stamp(trace: TraceInput) -> tuple[Any, ...]:
    # a file replaced between two units must not be served from memory
    try:
        st = os.stat(trace.location)
        return (trace, st.st_size, st.st_mtime_ns)
    except OSError:
        return (trace, None, None)


def _read(trace: TraceInput) -> tuple[Normalized, TraceMeta]:
    from sheaftune.analysis.pipeline import load
    from sheaftune.normalize import normalize
    from sheaftune.readers import ReadOptions

    def make() -> tuple[Normalized, TraceMeta]:
        table = load(trace.location, trace.input_format, ReadOptions(trace.salvage, trace.buffer))
        table.meta.source = trace.path  # the user's spelling, as a single-machine run has it
        return normalize(table), table.meta

    result: tuple[Normalized, TraceMeta] = _TRACES.get(_stamp(trace), make)
    return result


def _plan(trace: TraceInput, cache: str, policy: ReplayPolicy) -> Any:
    from sheaftune.analysis.tracereplay import build_plan

    norm, _ = _read(trace)
    return _PLANS.get((_stamp(trace), cache, policy), lambda: build_plan(norm, cache, policy))


# ------------------------------------------------------------------------------------- units
@dataclass(frozen=True)
class TraceUnit:
    trace: TraceInput
    caches: tuple[str, ...]
    model: ModelOptions | None


@dataclass(frozen=True)
class TraceSummary:
    """What a trace unit returns: the record without replays, and the replays to run."""

    analysis: Analysis
    meta: TraceMeta
    #: cache -> (replay header, capacities), in the record's cache order
    replays: dict[str, tuple[dict[str, Any], list[int]]]


@dataclass(frozen=True)
class ReplayUnit:
    trace: TraceInput
    cache: str
    capacity: int
    model: ModelOptions


def run_trace_unit(unit: TraceUnit) -> TraceSummary:
    """Characterise one trace; list each cache's replay header and capacities."""
    from sheaftune.analysis.characterize import characterize
    from sheaftune.analysis.sweep import capacities_for
    from sheaftune.analysis.tracereplay import effective_capacity, params_for
    from sheaftune.errors import NothingToAnalyse

    norm, meta = _read(unit.trace)
    result = characterize(norm, list(unit.caches) or None)
    if unit.caches and not result.caches:
        raise NothingToAnalyse(
            f"{meta.source}: no event of cache {', '.join(unit.caches)} "
            f"(the trace has {len(norm.table.caches)} caches; see `sheaftune analyze` without "
            "--cache)"
        )
    replays: dict[str, tuple[dict[str, Any], list[int]]] = {}
    m = unit.model
    if m is not None:
        for name, st in result.caches.items():
            if st["alloc"] == 0:
                continue
            # the header replay_cache writes, field for field
            plan = _plan(unit.trace, name, m.policy)
            base = params_for(norm, name, m.kernel, None, m.cpus, m.nodes)
            current = effective_capacity("6.18", name, base.object_size)
            caps = capacities_for(
                m.capacities, name, base.sheaf_capacity, base.object_size, current
            )
            header = {
                "kernel": m.kernel,
                "engine": m.engine,
                "object_size": base.object_size,
                "kernel_capacity": base.sheaf_capacity,
                "traced_capacity": current,
                "cpus": base.cpus,
                "nodes": base.nodes,
                "policy": dataclasses.asdict(m.policy),
                "plan": plan.counts(),
                "assumptions": plan.assumptions,
            }
            replays[name] = (header, caps)
    return TraceSummary(result, meta, replays)


def run_replay_unit(unit: ReplayUnit) -> dict[str, Any]:
    """One cache of one trace replayed at one capacity: a ``replays`` row."""
    from sheaftune.analysis.tracereplay import metrics, params_for
    from sheaftune.model.replay import replay

    m = unit.model
    norm, _ = _read(unit.trace)
    plan = _plan(unit.trace, unit.cache, m.policy)
    base = params_for(norm, unit.cache, m.kernel, None, m.cpus, m.nodes)
    params = dataclasses.replace(base, sheaf_capacity=unit.capacity)
    res = replay(plan, params, m.engine)
    return {
        **metrics(plan, params, res),
        "counters": res.counters,
        "extras": res.extras,
        "skipped": res.skipped,
    }


def _run_any(unit: ReplayUnit | RecommendUnit) -> Any:
    if isinstance(unit, ReplayUnit):
        return run_replay_unit(unit)
    return run_recommend_unit(unit)


def _trace_work(
    trace: TraceInput, s: TraceSummary, model: ModelOptions
) -> list[ReplayUnit | RecommendUnit]:
    """One trace's replay units (cache by cache, capacities ascending), then its
    recommendation units: the order the merge reads them back in."""
    replays: list[ReplayUnit | RecommendUnit] = [
        ReplayUnit(trace, name, cap, model) for name, (_, caps) in s.replays.items() for cap in caps
    ]
    from sheaftune.analysis.pipeline import recommend_options, recommended_caches

    recs = [
        RecommendUnit(trace, name, recommend_options(model), model.policy)
        for name in recommended_caches(s.analysis, model)
    ]
    return [*replays, *recs]


def run_whole_trace(unit: TraceUnit) -> tuple[TraceSummary, list[Any]]:
    """A trace unit followed, in the same process, by all of that trace's replay and
    recommendation units: the same functions, so the same results, with one read."""
    s = run_trace_unit(unit)
    assert unit.model is not None
    return s, [_run_any(u) for u in _trace_work(unit.trace, s, unit.model)]


def analyze_many(
    traces: Sequence[TraceInput],
    executor: Executor,
    caches: Sequence[str] = (),
    model: ModelOptions | None = None,
    on_meta: Callable[[TraceMeta], None] | None = None,
) -> list[Analysis]:
    """``analyze_table`` for every trace, spread over ``executor``, one Analysis per trace in
    input order, identical in content to single-machine runs (the module docstring says why).
    ``on_meta`` sees each trace's metadata as its unit returns (the CLI's reader warnings).

    With at least ``WHOLE_TRACE_SHARE`` traces per worker, each trace's units run together
    where its trace unit ran (``run_whole_trace``): the traces alone keep every worker busy,
    and no trace is read twice. With fewer traces, the (trace, cache, capacity) units are
    spread over the workers after the trace units, so a large sweep of one trace uses them all.
    """
    tunits = [TraceUnit(t, tuple(caches), model) for t in traces]
    results: list[list[Any]]
    if model is not None and len(traces) >= WHOLE_TRACE_SHARE * executor.jobs:
        whole = executor.map(run_whole_trace, tunits)
        summaries = [w[0] for w in whole]
        results = [w[1] for w in whole]
    else:
        summaries = executor.map(run_trace_unit, tunits)
        if model is not None:
            per_trace = [_trace_work(t, s, model) for t, s in zip(traces, summaries, strict=True)]
            flat = iter(executor.map(_run_any, [u for work in per_trace for u in work]))
            results = [[next(flat) for _ in work] for work in per_trace]
    if on_meta is not None:
        for s in summaries:
            on_meta(s.meta)
    if model is None:
        return [s.analysis for s in summaries]
    from sheaftune.analysis.pipeline import recommendation_entry, recommended_caches

    out = []
    for s, res in zip(summaries, results, strict=True):
        it = iter(res)
        cache_stats = {name: dict(st) for name, st in s.analysis.caches.items()}
        for name, (header, caps) in s.replays.items():
            cache_stats[name]["replay"] = {**header, "replays": [next(it) for _ in caps]}
        for name in recommended_caches(s.analysis, model):
            rec = next(it)
            if isinstance(rec, str):
                from sheaftune.errors import NothingToAnalyse

                raise NothingToAnalyse(rec)  # as analyze_table would have raised it
            cache_stats[name]["recommendation"] = recommendation_entry(rec)
        out.append(
            dataclasses.replace(
                s.analysis,
                caches=cache_stats,
                model={
                    "kernel": model.kernel,
                    "engine": model.engine,
                    "policy": dataclasses.asdict(model.policy),
                    "note": f"replayed with Linux {model.kernel} sheaf semantics",
                },
            )
        )
    return out


# ---------------------------------------------------------------------------- recommend units
@dataclass(frozen=True)
class RecommendUnit:
    trace: TraceInput
    cache: str
    options: RecommendOptions
    policy: ReplayPolicy


def run_recommend_unit(unit: RecommendUnit) -> Recommendation | str:
    """One cache of one trace through ``recommend_for_cache``; a string says why it could not
    be recommended on this machine (e.g. no allocator operation after the warm-up)."""
    from sheaftune.analysis.recommend import recommend_for_cache
    from sheaftune.errors import NothingToAnalyse

    norm, _ = _read(unit.trace)
    try:
        return recommend_for_cache(norm, unit.cache, unit.options, unit.policy)
    except NothingToAnalyse as e:
        return str(e)


@dataclass(frozen=True)
class FleetTraceUnit:
    trace: TraceInput
    caches: tuple[str, ...]
    min_allocs: int
    options: RecommendOptions
    policy: ReplayPolicy


def _wanted(s: TraceSummary, caches: Sequence[str], min_allocs: int) -> list[str]:
    return [
        n
        for n, st in s.analysis.caches.items()
        if (n in caches if caches else True) and st["alloc"] >= min_allocs
    ]


def run_fleet_trace(unit: FleetTraceUnit) -> tuple[TraceSummary, list[Recommendation | str]]:
    """A trace unit and, in the same process, the recommendation of each wanted cache."""
    s = run_trace_unit(TraceUnit(unit.trace, (), None))
    return s, [
        run_recommend_unit(RecommendUnit(unit.trace, n, unit.options, unit.policy))
        for n in _wanted(s, unit.caches, unit.min_allocs)
    ]


def recommend_many(
    traces: Sequence[TraceInput],
    executor: Executor,
    options: RecommendOptions,
    policy: ReplayPolicy,
    caches: Sequence[str] = (),
    min_allocs: int = 1,
    on_meta: Callable[[TraceMeta], None] | None = None,
) -> list[dict[str, Recommendation | str]]:
    """Per trace (in input order), cache -> its recommendation or the reason there is none.

    Caches are those named, or every cache of the trace with at least ``min_allocs``
    allocations. A named cache a machine never allocated from gets the reason, not an error:
    one machine without the cache must not stop the fleet. As in ``analyze_many``, with
    ``WHOLE_TRACE_SHARE`` traces per worker a trace's units run where it was read."""
    # no cache filter in the trace unit: it would raise for a machine without the cache
    results: list[list[Recommendation | str]]
    if len(traces) >= WHOLE_TRACE_SHARE * executor.jobs:
        whole = executor.map(
            run_fleet_trace,
            [FleetTraceUnit(t, tuple(caches), min_allocs, options, policy) for t in traces],
        )
        summaries = [w[0] for w in whole]
        results = [w[1] for w in whole]
    else:
        summaries = executor.map(run_trace_unit, [TraceUnit(t, (), None) for t in traces])
        per_trace = [
            [RecommendUnit(t, n, options, policy) for n in _wanted(s, caches, min_allocs)]
            for t, s in zip(traces, summaries, strict=True)
        ]
        flat = iter(executor.map(run_recommend_unit, [u for us in per_trace for u in us]))
        results = [[next(flat) for _ in us] for us in per_trace]
    if on_meta is not None:
        for s in summaries:
            on_meta(s.meta)
    out: list[dict[str, Recommendation | str]] = []
    for s, recs in zip(summaries, results, strict=True):
        got: dict[str, Recommendation | str] = dict(
            zip(_wanted(s, caches, min_allocs), recs, strict=True)
        )
        for n in caches:
            got.setdefault(n, f"no allocation of cache {n} in the trace")
        out.append(got)
    return out


# ------------------------------------------------------------------------------ compare units
@dataclass(frozen=True)
class CompareUnit:
    trace: TraceInput
    request: CompareRequest


def run_compare_unit(unit: CompareUnit) -> Comparison:
    """Prefill versus bulk on one trace (``compare.run``); both strategies replay the same
    operations against the same background, so the trace is the unit."""
    from sheaftune.analysis.compare import run

    req = dataclasses.replace(
        unit.request, trace=unit.trace.location, input_format=unit.trace.input_format
    )
    # the record names the input as the user spelled it, as a single-machine run does
    return dataclasses.replace(run(req), input=unit.trace.path)


def compare_many(
    traces: Sequence[TraceInput], executor: Executor, request: CompareRequest
) -> list[Comparison]:
    """``compare.run`` for every trace, one Comparison per trace in input order."""
    if request.ops_file:
        raise UsageError("--ops belongs to one TRACE; compare several traces without it")
    return executor.map(run_compare_unit, [CompareUnit(t, request) for t in traces])
