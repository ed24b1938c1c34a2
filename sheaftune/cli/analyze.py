"""``sheaftune analyze``: what a trace contains, per cache, CPU and call site, and what the
sheaf model makes of it at the kernel's capacity or at the capacities asked for."""

from __future__ import annotations

from typing import Any

import click

from sheaftune.cli.common import (
    executor_options,
    input_format_option,
    model_options,
    output_options,
    output_stream,
)
from sheaftune.cli.completion import complete_path


@click.command(
    "analyze",
    epilog="""\b
Examples:
  sheaftune analyze --example
  sheaftune analyze trace.dat --cache maple_node --capacity buckets
  sheaftune analyze trace.dat trace.txt.zst --kernel 6.18 --jobs 2 --format json -o out.json""",
)
@click.argument("traces", nargs=-1, type=str, shell_complete=complete_path)
@click.option(
    "--example", is_flag=True, help="Analyse the real Linux 6.18 trace bundled with sheaftune."
)
@click.option(
    "--workload",
    "workloads",
    multiple=True,
    metavar="FILE.yaml",
    type=click.Path(dir_okay=False),
    help="Analyse a synthetic workload (workloads/*.yaml, generated with seed 0) as if it were "
    "a trace. Repeatable.",
)
@click.option(
    "--cache",
    "caches",
    multiple=True,
    metavar="NAME",
    help="Only this cache (repeatable). Exit 4 when it has no event.",
)
@input_format_option
@click.option(
    "--buffer",
    default=None,
    metavar="NAME",
    help="trace.dat: read this instance's buffer instead of the top one.",
)
@click.option(
    "--salvage",
    is_flag=True,
    help="Read what can be read of a damaged input; the result says it is incomplete.",
)
@model_options
@executor_options
@output_options()
def command(
    traces: tuple[str, ...],
    example: bool,
    workloads: tuple[str, ...],
    caches: tuple[str, ...],
    input_format: str | None,
    buffer: str | None,
    salvage: bool,
    kernel: str,
    capacity: tuple[str, ...],
    engine: str,
    unseen_free: str,
    sheaf_pops: str,
    rcu_gp_ms: float,
    upper_bound: int | None,
    no_model: bool,
    recommend: bool,
    jobs: int | None,
    scheduler: str | None,
    fmt: str,
    output: str | None,
) -> None:
    """Report what kmem traces contain and replay each cache through the sheaf model.

    For each cache: allocations and frees by event kind, frees matched by pointer, unmatched
    and unseen frees, objects live at the end, rates, cross-CPU frees, object lifetimes, top
    call sites, the share of allocations that may not block, object sizes. Then the replay at
    the capacity the chosen kernel gives the cache (or every --capacity): share of operations
    served by the per-CPU sheaves, barn and slab traffic, sheaf structs, objects held, the
    kernel's counters, and what the replay had to assume. TRACE may be `-` for standard input.

    Many traces: TRACE may be a quoted glob or @FILE (a list of paths or globs, one a line).
    Several traces run on all cores (--jobs N to choose), or on a dask.distributed cluster
    with --scheduler; each trace is read where its work runs, and the report is the same as
    one process would make (docs/fleet.md).
    """
    from sheaftune.analysis.characterize import AnalysisSet
    from sheaftune.analysis.pipeline import WORKLOAD_PREFIX, example_path
    from sheaftune.cli.common import build_model_options, distributed, expand_trace_args
    from sheaftune.errors import UsageError
    from sheaftune.report import render

    paths = expand_trace_args(traces)
    if example:
        paths.insert(0, example_path())
    paths += [WORKLOAD_PREFIX + w for w in workloads]
    if not paths:
        raise UsageError(
            "give at least one TRACE (or --example, --workload); see `sheaftune analyze --help`"
        )
    model = None
    if not no_model:
        model = build_model_options(
            kernel, capacity, engine, unseen_free, sheaf_pops, rcu_gp_ms, upper_bound, recommend
        )
    if distributed(paths, jobs, scheduler):
        results = _analyze_distributed(
            paths, jobs, scheduler, input_format, salvage, buffer, caches, model
        )
    else:
        results = _analyze_here(paths, input_format, salvage, buffer, caches, model)
    record = results[0] if len(results) == 1 else AnalysisSet(results)
    with output_stream(output) as out:
        render(record, fmt, out)


def _analyze_here(
    paths: list[str],
    input_format: str | None,
    salvage: bool,
    buffer: str | None,
    caches: tuple[str, ...],
    model: Any,
) -> list[Any]:
    """One trace after another in this process (the replay engine still uses every core
    across the capacities of a sweep)."""
    from sheaftune.analysis.pipeline import analyze_table, load
    from sheaftune.cli.common import announce_compile
    from sheaftune.cli.console import warn_meta
    from sheaftune.cli.progress import read_options

    results = []
    announce_compile(model.engine if model is not None else "none")
    for path in paths:
        with read_options(path, salvage=salvage, buffer=buffer) as opts:
            table = load(path, input_format, opts)
        warn_meta(table.meta)
        results.append(analyze_table(table, list(caches), model))
    return results


def _analyze_distributed(
    paths: list[str],
    jobs: int | None,
    scheduler: str | None,
    input_format: str | None,
    salvage: bool,
    buffer: str | None,
    caches: tuple[str, ...],
    model: Any,
) -> list[Any]:
    """Units of work (trace; trace x cache x capacity) on local processes or a cluster."""
    from sheaftune.analysis.distribute import analyze_many, make_executor, trace_inputs
    from sheaftune.cli.common import announce_compile
    from sheaftune.cli.console import warn_meta

    inputs = trace_inputs(paths, input_format, salvage, buffer)
    if model is not None and scheduler is None:
        announce_compile(model.engine)  # local workers share this machine's compiled cache
    with make_executor(jobs, scheduler) as ex:
        return analyze_many(inputs, ex, caches, model, on_meta=warn_meta)
