"""``sheaftune recommend``: which ``sheaf_capacity`` a cache should have, with the evidence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from sheaftune.cli.common import (
    executor_options,
    input_format_option,
    output_options,
    output_stream,
    rcu_gp_ms_option,
    recommend_engine_options,
    recommend_options,
    seed_option,
    upper_bound_option,
    workload_option,
)
from sheaftune.cli.completion import complete_path

if TYPE_CHECKING:
    from sheaftune.analysis.recommend import Recommendation, RecommendOptions


@click.command(
    "recommend",
    epilog="""\b
Examples:
  sheaftune recommend --workload workloads/will-it-scale-mmap2.yaml --cpus 64 --kernel 6.18
  sheaftune recommend trace.dat --cache maple_node --cpus 128 --nodes 2 --format json
  sheaftune recommend --upper-bound 13 --object-size 256 --cpus 16 --plot capacity.png""",
)
@click.argument("traces", nargs=-1, type=str, shell_complete=complete_path)
@workload_option("A workload file (workloads/*.yaml), regenerated for --cpus instead of a trace.")
@click.option(
    "--cache",
    default="maple_node",
    show_default=True,
    metavar="NAME",
    help="The cache to recommend for.",
)
@upper_bound_option(
    "Prefill size of the cache's prefill operations. Alone (no TRACE, no --workload): "
    "recommend from the default demand model (docs/recommend.md)."
)
@click.option(
    "--object-size",
    type=click.IntRange(8, 1 << 20),
    default=None,
    help="Slot size S.size in bytes for the default demand model [default: 256, maple_node]; "
    "a trace or workload says its own.",
)
@recommend_options(
    cpus_help="CPUs of the target machine [default: the trace's or workload's own; 1 for the "
    "demand model]. A trace is replayed as is and contention scaled to these CPUs; a "
    "workload is regenerated for them.",
    objective_help="balanced: the smallest capacity within --tolerance of the fastest; time: "
    "the fastest; memory: the least worst-case memory per node; scaling: the smallest "
    "capacity whose lock contention costs at most 10% of its time.",
    tolerance_help="balanced: how much slower than the fastest still counts as fast (0.05 = 5%).",
    memory_budget_help="Worst-case bytes per node the cache's sheaves may hold (e.g. 4M); "
    "larger candidates are excluded.",
)
@click.option(
    "--capacity",
    multiple=True,
    metavar="N[,N...]",
    help="Also consider these capacities. Repeatable.",
)
@recommend_engine_options(
    engine_help="Replay engine; auto: the compiled engine when installed (same results as the "
    "reference model, much faster).",
    costs_help="Cost model overrides (YAML mapping of cost names to ns).",
)
@click.option(
    "--events-per-cpu",
    type=click.IntRange(100, 10_000_000),
    default=16000,
    show_default=True,
    help="--workload: visible events generated per CPU (enough for several RCU grace periods "
    "of the bundled workloads).",
)
@seed_option("Seed of the workload generator or demand model.")
@rcu_gp_ms_option("TRACE: an RCU grace period ends every this many ms.")
@input_format_option
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also draw estimated time and memory against capacity to FILE (png, svg, pdf); "
    "needs matplotlib (pip install 'sheaftune[plot]').",
)
@executor_options
@output_options(("table", "json", "yaml"))
def command(
    traces: tuple[str, ...],
    workload: str | None,
    cache: str,
    upper_bound: int | None,
    object_size: int | None,
    cpus: int | None,
    nodes: int | None,
    kernel: str,
    objective: str,
    tolerance: float,
    memory_budget: str | None,
    capacity: tuple[str, ...],
    engine: str,
    costs_file: str | None,
    events_per_cpu: int,
    seed: int,
    rcu_gp_ms: float,
    input_format: str | None,
    plot: str | None,
    jobs: int | None,
    scheduler: str | None,
    fmt: str,
    output: str | None,
) -> None:
    """Recommend a sheaf_capacity for a cache, with the evidence.

    Every candidate (the capacities that fill a kmalloc bucket, 4 12 28 60 124 252 508, the
    cache's current and 7.3-autotuned values, and any --capacity) is replayed through the
    sheaf model and priced by the cost model with lock contention for the CPUs per node:
    estimated time per operation, fast-path share, barn and slab traffic, oversize prefills,
    worst-case and typical memory per CPU and per node. The objective picks the winner; the
    output says why, what the runner-up would cost or save, what the 7.3 kernel's autotuning
    gives, and the line for struct kmem_cache_args. Demand comes from one TRACE (replayed as
    is; --cpus scales the contention), a --workload (regenerated for --cpus), or
    --upper-bound alone (the default demand model).

    Several TRACEs (files, quoted globs, @FILE lists), one per machine, give the fleet report
    for the cache (as `sheaftune fleet --cache`): the distribution of the machines' own
    recommendations, the capacity that suits most of them, and the outliers; the work runs on
    all cores (--jobs N) or a dask.distributed cluster (--scheduler); docs/fleet.md.
    """
    from sheaftune.analysis.recommend import recommend_for_upper_bound, recommend_for_workload
    from sheaftune.cli.common import (
        build_recommend_options,
        expand_trace_args,
        parse_memory_budget,
        recommend_fleet,
        require_matplotlib,
    )
    from sheaftune.errors import UsageError
    from sheaftune.report import render

    if plot is not None:
        require_matplotlib()

    paths = expand_trace_args(traces)
    traces = tuple(paths)  # an empty @list is no TRACE
    fleet = len(paths) > 1 or scheduler is not None
    if fleet and (workload or plot is not None):
        raise UsageError("several TRACEs give a fleet report: drop --workload and --plot")
    if traces and workload:
        raise UsageError("give a TRACE or --workload, not both")
    if not traces and not workload and upper_bound is None:
        raise UsageError("give a TRACE, --workload, or --upper-bound N (see --help)")
    if object_size is not None and (traces or workload):
        raise UsageError("--object-size is for the default demand model; the input has its own")
    extra: list[int] = []
    for item in capacity:
        for part in item.split(","):
            try:
                n = int(part)
            except ValueError:
                raise UsageError(f"--capacity: {part!r} is not a number") from None
            if not 1 <= n <= 65535:
                raise UsageError(f"--capacity: {n} is out of range (1..65535)")
            extra.append(n)
    options = build_recommend_options(
        kernel=kernel,
        cpus=cpus,
        nodes=nodes,
        objective=objective,
        tolerance=tolerance,
        memory_budget=parse_memory_budget(memory_budget),
        engine=engine,
        costs_file=costs_file,
        capacities=tuple(extra),
        upper_bound=upper_bound,
    )
    from sheaftune.analysis.recommend import resolve_engine
    from sheaftune.cli.common import announce_compile

    announce_compile(resolve_engine(engine))
    record: Any
    if fleet:
        record = recommend_fleet(
            paths, input_format, options, rcu_gp_ms, (cache,), 1, jobs, scheduler
        )
    elif paths:
        record = _from_trace(paths[0], input_format, cache, options, rcu_gp_ms)
    elif workload:
        from sheaftune.synth.spec import load_spec

        record = recommend_for_workload(
            load_spec(workload), cache, options, events_per_cpu=events_per_cpu, seed=seed
        )
    else:
        assert upper_bound is not None
        record = recommend_for_upper_bound(
            upper_bound, options, cache=cache, object_size=object_size or 256, seed=seed
        )
    with output_stream(output) as out:
        render(record, fmt, out)
    if plot is not None:
        from sheaftune.report.recommendation import plot_recommendation

        plot_recommendation(record, plot)


def _from_trace(
    path: str, input_format: str | None, cache: str, options: RecommendOptions, rcu_gp_ms: float
) -> Recommendation:
    from sheaftune.analysis.pipeline import load
    from sheaftune.analysis.recommend import recommend_for_cache
    from sheaftune.cli.common import replay_policy
    from sheaftune.cli.console import warn_meta
    from sheaftune.cli.progress import read_options
    from sheaftune.normalize import normalize

    with read_options(path) as opts:
        table = load(path, input_format, opts)
    warn_meta(table.meta)
    return recommend_for_cache(normalize(table), cache, options, replay_policy(rcu_gp_ms))
