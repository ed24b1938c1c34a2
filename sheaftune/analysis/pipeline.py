"""The shared front half of every command: inputs -> EventTables -> normalised events.

Commands call these instead of repeating reader selection, the bundled example, cache filters
and the "nothing to analyse" checks.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sheaftune.analysis.characterize import Analysis, characterize
from sheaftune.analysis.sweep import CapacitySpec
from sheaftune.analysis.tracereplay import (
    STREAM_EVENTS,
    ReplayPolicy,
    StreamedPlan,
    cache_rows,
    plan_for,
    replay_cache,
)
from sheaftune.errors import NothingToAnalyse
from sheaftune.events import EventTable
from sheaftune.model.plan import Plan
from sheaftune.normalize import Normalized, normalize
from sheaftune.readers import ReadOptions, read_trace

if TYPE_CHECKING:  # (recommend is imported when a recommendation is made)
    from sheaftune.analysis.recommend import Recommendation, RecommendOptions

#: The real trace shipped with the package (`--example`): a Linux 6.18 capture of VMA and
#: maple-tree churn on 2 CPUs (7,516 events), as trace-cmd's zstd-compressed trace.dat v7.
EXAMPLE_TRACE = "vma-small.dat"


def example_path() -> str:
    # (imported here: importlib.resources brings zipfile, tempfile and more, for --example only)
    from importlib import resources

    return str(Path(str(resources.files("sheaftune") / "data" / EXAMPLE_TRACE)))


#: ``load("workload:FILE.yaml")`` generates the workload instead of reading a trace.
WORKLOAD_PREFIX = "workload:"


def load(
    path: str, input_format: str | None = None, options: ReadOptions | None = None
) -> EventTable:
    """Read one trace (or generate ``workload:FILE.yaml`` with seed 0); a trace without a single
    kmem event is 'nothing to analyse'. A trace.dat written by ``sheaftune record`` also brings
    what was recorded (events, filters, per-CPU losses) into ``meta.extra["record"]``."""
    if path.startswith(WORKLOAD_PREFIX):
        from sheaftune.synth.generate import generate_file

        workload = path[len(WORKLOAD_PREFIX) :]
        table = generate_file(workload).events
        table.meta.source = workload
        table.meta.format = "workload"
    else:
        table = read_trace(path, input_format, options)
        if table.meta.format == "trace.dat" and table.meta.file_version == 6 and path != "-":
            from sheaftune.capture.tracedat_writer import record_facts

            try:
                facts = record_facts(path)
            except (OSError, ValueError, KeyError):
                facts = None
            if facts:
                table.meta.extra["record"] = facts
    if len(table) == 0:
        raise NothingToAnalyse(f"{table.meta.source}: the trace holds no kmem events")
    if len(table) > ROWS_AT_ONCE:
        _return_freed_memory()
    return table


def _return_freed_memory() -> None:
    """On glibc, serve every allocation of 1 MiB or more with its own mapping.

    glibc raises its mmap threshold as large blocks are freed (up to 32 MiB), after which
    arrays of a few MiB come from the heap and per-thread arenas and stay resident after they
    are freed. A huge trace's chunked passes allocate and free many such arrays, so a fixed
    threshold keeps peak memory at what is in use (issue 10). Elsewhere: nothing.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    m_mmap_threshold = -3
    mallopt(m_mmap_threshold, 1 << 20)


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
    result = characterize(norm, caches or None)
    if model is not None:
        _replay_and_recommend(norm, result, model, len(table) <= PARALLEL_EVENTS)
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


def _replay_and_recommend(
    norm: Normalized, result: Analysis, model: ModelOptions, parallel: bool
) -> None:
    """Replay every cache with allocations and recommend for the largest ones (in place).

    Each cache is independent of the others, so on a trace of modest size the caches run on
    a pool of threads, largest first (the big ones set the wall time); the answers are put
    back in the analysis's own order, so the output never depends on the thread count.
    """
    names = [name for name, st in result.caches.items() if st["alloc"] > 0]
    jobs: list[tuple[str, str]] = [("replay", name) for name in names]
    jobs += [("recommend", name) for name in recommended_caches(result, model)]
    workers = min(os.cpu_count() or 1, MAX_THREADS) if parallel else 1
    if workers <= 1 or len(jobs) <= 1:
        # every cache's rows at once (one pass) unless the trace is huge: then one cache's
        # rows at a time, so they never add a whole int32 column to the replay's memory
        rows = cache_rows(norm) if len(norm.table) <= ROWS_AT_ONCE else None
        for kind, name in jobs:
            if kind == "replay":
                # (None on a huge trace: replay_cache finds the rows and drops them once the
                # plan is made; an argument passed from here would live through the replay)
                cache_row = rows[name] if rows is not None else None
                result.caches[name]["replay"] = _replay(norm, name, model, cache_row)
            else:
                rows = None  # the recommendations find their own cache's rows
                result.caches[name]["recommendation"] = _recommendation(norm, name, model)
        return
    rows = cache_rows(norm)
    size = {name: st["alloc"] + st["free"] for name, st in result.caches.items()}
    recommended = {name for kind, name in jobs if kind == "recommend"}
    # a recommended cache's replay and recommendation are one job sharing the cache's plan
    # (built once); the recommendations first (each sweeps many capacities), largest first
    order = sorted(
        (name for kind, name in jobs if kind == "replay"),
        key=lambda name: (name not in recommended, -size[name], name),
    )
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures: dict[str, Future[Any]] = {
            name: (
                pool.submit(_replay_and_recommendation, norm, name, model, rows[name])
                if name in recommended
                else pool.submit(_replay, norm, name, model, rows[name])
            )
            for name in order
        }
        # (collected in the sequential order, so a failure reported is the one it would be)
        answers: dict[tuple[str, str], dict[str, Any]] = {}
        for kind, name in jobs:
            if name in recommended:
                replay, rec = futures[name].result()
                answers["replay", name], answers["recommend", name] = replay, rec
            else:
                answers["replay", name] = futures[name].result()
            key = "replay" if kind == "replay" else "recommendation"
            result.caches[name][key] = answers[kind, name]
    # (a dict built in submission order: re-insert the keys in the analysis's own order)
    for name in names:
        st = result.caches[name]
        rec = st.pop("recommendation", None)
        st["replay"] = st.pop("replay")
        if rec is not None:
            st["recommendation"] = rec


#: At most this many threads replay caches at once.
MAX_THREADS = 4


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


def _replay_and_recommendation(
    norm: Normalized, name: str, model: ModelOptions, rows: np.ndarray
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One cache's replay, then its recommendation, from one plan when they can share it: an
    in-memory plan (not a stream) fitted to the same single node by both."""
    shared = None
    if model.nodes == 1 and not (model.engine == "fast" and len(rows) > STREAM_EVENTS):
        plan = plan_for(norm, name, model.policy, model.engine, rows)
        shared = plan if isinstance(plan, Plan) else None
    replay = _replay(norm, name, model, rows, shared)
    return replay, _recommendation(norm, name, model, rows, shared)


def recommended_caches(result: Analysis, model: ModelOptions) -> list[str]:
    """The caches ``analyze`` recommends for: the largest by allocations (at most
    ``recommend_caches`` of them, each with at least ``recommend_min_allocs``)."""
    if not model.recommend:
        return []
    ranked = sorted(result.caches.items(), key=lambda kv: (-kv[1]["alloc"], kv[0]))
    chosen = [name for name, st in ranked if st["alloc"] >= model.recommend_min_allocs]
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
