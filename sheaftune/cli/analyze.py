"""``sheaftune analyze``: what a trace contains, per cache, per CPU and per call site."""

from __future__ import annotations

import click

from sheaftune.cli.common import input_format_option, output_options, output_stream


@click.command(
    "analyze",
    epilog="""\b
Examples:
  sheaftune analyze --example
  sheaftune analyze trace.dat --cache maple_node --cache vm_area_struct
  sheaftune analyze trace.txt.zst --format json -o analysis.json""",
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
@output_options()
def command(
    traces: tuple[str, ...],
    example: bool,
    caches: tuple[str, ...],
    input_format: str | None,
    buffer: str | None,
    salvage: bool,
    fmt: str,
    output: str | None,
) -> None:
    """Report what kmem traces contain, per cache, per CPU and per call site.

    For each cache: allocations and frees by event kind, frees matched by pointer, unmatched
    and unseen frees, objects live at the end, rates, cross-CPU frees, object lifetimes, top
    call sites, the share of allocations that may not block, object sizes. TRACE may be `-`
    for standard input."""
    from sheaftune.analysis.characterize import AnalysisSet
    from sheaftune.analysis.pipeline import analyze_table, example_path, load
    from sheaftune.cli.console import warn_meta
    from sheaftune.cli.progress import read_options
    from sheaftune.errors import UsageError
    from sheaftune.report import render

    paths = list(traces)
    if example:
        paths.insert(0, example_path())
    if not paths:
        raise UsageError("give at least one TRACE (or --example); see `sheaftune analyze --help`")
    results = []
    for path in paths:
        with read_options(path, salvage=salvage, buffer=buffer) as opts:
            table = load(path, input_format, opts)
        warn_meta(table.meta)
        results.append(analyze_table(table, list(caches)))
    record = results[0] if len(results) == 1 else AnalysisSet(results)
    with output_stream(output) as out:
        render(record, fmt, out)
