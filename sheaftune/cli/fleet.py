"""``sheaftune fleet``: one sheaf_capacity per cache for many machines' traces, and the
machines it does not suit."""

from __future__ import annotations

import click

from sheaftune.cli.common import (
    executor_options,
    input_format_option,
    output_options,
    output_stream,
)
from sheaftune.cli.completion import complete_path


@click.command(
    "fleet",
    epilog="""\b
Examples:
  sheaftune fleet trace.dat kmem.dat --cache maple_node --jobs 2
  sheaftune fleet trace.dat kmem.dat --format json -o fleet.json""",
)
@click.argument("traces", nargs=-1, type=str, shell_complete=complete_path)
@click.option(
    "--cache",
    "caches",
    multiple=True,
    metavar="NAME",
    help="Only this cache (repeatable); default: every cache with --min-allocs allocations.",
)
@click.option(
    "--min-allocs",
    type=click.IntRange(1, None),
    default=100,
    show_default=True,
    help="Without --cache: skip a machine's caches with fewer allocations.",
)
@click.option(
    "--cpus",
    type=click.IntRange(1, 8192),
    default=None,
    help="CPUs of the target machines (scales contention); default: each trace's own.",
)
@click.option(
    "--nodes", type=click.IntRange(1, 1024), default=None, help="NUMA nodes [default: 1]."
)
@click.option(
    "--kernel",
    type=click.Choice(("7.3", "6.18")),
    default="7.3",
    show_default=True,
    help="Whose sheaf semantics the replays apply.",
)
@click.option(
    "--objective",
    type=click.Choice(("balanced", "time", "memory", "scaling")),
    default="scaling",
    show_default=True,
    help="How each machine's own recommendation is chosen, as `sheaftune recommend` chooses "
    "(docs/recommend.md).",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(0.0, 10.0),
    default=0.05,
    show_default=True,
    help="A capacity suits a machine when its time per operation is within this share of "
    "its time at the machine's own recommendation.",
)
@click.option(
    "--memory-budget",
    default=None,
    metavar="BYTES",
    help="Worst-case bytes per node the cache's sheaves may hold on every machine (e.g. 4M); "
    "larger candidates are excluded from each machine's choice and suit no machine.",
)
@click.option(
    "--engine",
    type=click.Choice(("auto", "fast", "reference")),
    default="auto",
    show_default=True,
    help="Replay engine of the recommendations (auto: what `recommend` uses).",
)
@click.option(
    "--costs",
    "costs_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Cost model YAML (`sheaftune costs`); default: the built-in costs.",
)
@click.option(
    "--rcu-gp-ms",
    type=click.FloatRange(0.001, 1e6),
    default=10.0,
    show_default=True,
    help="An RCU grace period ends every this many ms.",
)
@input_format_option
@executor_options
@output_options()
def command(
    traces: tuple[str, ...],
    caches: tuple[str, ...],
    min_allocs: int,
    cpus: int | None,
    nodes: int | None,
    kernel: str,
    objective: str,
    tolerance: float,
    memory_budget: str | None,
    engine: str,
    costs_file: str | None,
    rcu_gp_ms: float,
    input_format: str | None,
    jobs: int | None,
    scheduler: str | None,
    fmt: str,
    output: str | None,
) -> None:
    """Recommend one sheaf_capacity per cache for a fleet: one TRACE per machine.

    Each machine gets its own recommendation per cache (as `sheaftune recommend` makes it);
    the report gives, per cache, how many machines recommend each capacity, the capacity that
    suits the largest share of machines (time within --tolerance of each one's own choice,
    no oversize prefills; ties to the smaller), and the outliers it does not suit. TRACE may
    be a quoted glob or @FILE (a list of paths or globs, one a line). The work runs on all
    cores (--jobs N) or on a dask.distributed cluster (--scheduler); docs/fleet.md.
    """
    from sheaftune.analysis.distribute import make_executor, recommend_many, trace_inputs
    from sheaftune.analysis.fleet import fleet_report
    from sheaftune.analysis.recommend import RecommendOptions
    from sheaftune.analysis.tracereplay import ReplayPolicy
    from sheaftune.cli.common import expand_trace_args
    from sheaftune.cli.console import warn_meta
    from sheaftune.costs import CostModel
    from sheaftune.errors import UsageError
    from sheaftune.report import render

    budget = None
    if memory_budget is not None:
        from sheaftune.cli.recommend import parse_bytes

        try:
            budget = parse_bytes(memory_budget)
        except click.BadParameter as e:
            raise UsageError(f"--memory-budget: {e.message}") from None
    paths = expand_trace_args(traces)
    if not paths:
        raise UsageError("give at least one TRACE (one per machine); see `sheaftune fleet --help`")
    options = RecommendOptions(
        kernel=kernel,
        cpus=cpus,
        nodes=nodes,
        objective=objective,
        memory_budget=budget,
        engine=engine,
        costs=CostModel.from_yaml(costs_file) if costs_file else CostModel(),
        tolerance=tolerance,
    )
    policy = ReplayPolicy(rcu_gp_ns=int(rcu_gp_ms * 1e6))
    inputs = trace_inputs(paths, input_format)
    with make_executor(jobs, scheduler) as ex:
        per_machine = recommend_many(
            inputs, ex, options, policy, caches, 1 if caches else min_allocs, on_meta=warn_meta
        )
    record = fleet_report(
        paths, per_machine, kernel=kernel, objective=objective, tolerance=tolerance
    )
    if not record.caches:
        from sheaftune.errors import NothingToAnalyse

        why = "; ".join(sorted({s["reason"] for s in record.skipped})) or "no cache qualified"
        raise NothingToAnalyse(f"no machine could be recommended for: {why}")
    with output_stream(output) as out:
        render(record, fmt, out)
