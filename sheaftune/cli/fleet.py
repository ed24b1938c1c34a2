"""``sheaftune fleet``: one sheaf_capacity per cache for many machines' traces, and the
machines it does not suit."""

from __future__ import annotations

import click

from sheaftune.cli.common import (
    executor_options,
    input_format_option,
    output_options,
    output_stream,
    rcu_gp_ms_option,
    recommend_engine_options,
    recommend_options,
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
@recommend_options(
    cpus_help="CPUs of the target machines (scales contention); default: each trace's own.",
    objective_help="How each machine's own recommendation is chosen, as `sheaftune recommend` "
    "chooses (docs/recommend.md).",
    tolerance_help="A capacity suits a machine when its time per operation is within this "
    "share of its time at the machine's own recommendation.",
    memory_budget_help="Worst-case bytes per node the cache's sheaves may hold on every "
    "machine (e.g. 4M); larger candidates are excluded from each machine's choice and suit "
    "no machine.",
)
@recommend_engine_options(
    engine_help="Replay engine of the recommendations (auto: what `recommend` uses).",
    costs_help="Cost model YAML (`sheaftune costs`); default: the built-in costs.",
)
@rcu_gp_ms_option()
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
    from sheaftune.cli.common import (
        build_recommend_options,
        expand_trace_args,
        parse_memory_budget,
        recommend_fleet,
    )
    from sheaftune.errors import UsageError
    from sheaftune.report import render

    budget = parse_memory_budget(memory_budget)
    paths = expand_trace_args(traces)
    if not paths:
        raise UsageError("give at least one TRACE (one per machine); see `sheaftune fleet --help`")
    options = build_recommend_options(
        kernel=kernel,
        cpus=cpus,
        nodes=nodes,
        objective=objective,
        tolerance=tolerance,
        memory_budget=budget,
        engine=engine,
        costs_file=costs_file,
    )
    record = recommend_fleet(
        paths,
        input_format,
        options,
        rcu_gp_ms,
        caches,
        1 if caches else min_allocs,
        jobs,
        scheduler,
    )
    if not record.caches:
        from sheaftune.errors import NothingToAnalyse

        why = "; ".join(sorted({s["reason"] for s in record.skipped})) or "no cache qualified"
        raise NothingToAnalyse(f"no machine could be recommended for: {why}")
    with output_stream(output) as out:
        render(record, fmt, out)
