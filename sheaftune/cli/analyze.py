"""``sheaftune analyze``: what a trace contains, per cache, CPU and call site, and what the
sheaf model makes of it at the kernel's capacity or at the capacities asked for."""

from __future__ import annotations

import click

from sheaftune.cli.common import (
    input_format_option,
    model_options,
    output_options,
    output_stream,
)


@click.command(
    "analyze",
    epilog="""\b
Examples:
  sheaftune analyze --example
  sheaftune analyze trace.dat --cache maple_node --capacity buckets
  sheaftune analyze trace.txt.zst --kernel 6.18 --format json -o analysis.json""",
)
@click.argument("traces", nargs=-1, type=str)
@click.option(
    "--example", is_flag=True, help="Analyse the real Linux 6.18 trace bundled with sheaftune."
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
@output_options()
def command(
    traces: tuple[str, ...],
    example: bool,
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
    """
    from sheaftune.analysis.characterize import AnalysisSet
    from sheaftune.analysis.pipeline import analyze_table, example_path, load
    from sheaftune.cli.common import announce_compile, build_model_options
    from sheaftune.cli.console import warn_meta
    from sheaftune.cli.progress import read_options
    from sheaftune.errors import UsageError
    from sheaftune.report import render

    paths = list(traces)
    if example:
        paths.insert(0, example_path())
    if not paths:
        raise UsageError("give at least one TRACE (or --example); see `sheaftune analyze --help`")
    model = None
    if not no_model:
        model = build_model_options(
            kernel, capacity, engine, unseen_free, sheaf_pops, rcu_gp_ms, upper_bound
        )
    results = []
    for path in paths:
        with read_options(path, salvage=salvage, buffer=buffer) as opts:
            table = load(path, input_format, opts)
        warn_meta(table.meta)
        if model is not None:
            announce_compile(engine)
        results.append(analyze_table(table, list(caches), model))
    record = results[0] if len(results) == 1 else AnalysisSet(results)
    with output_stream(output) as out:
        render(record, fmt, out)
