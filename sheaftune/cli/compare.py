"""``sheaftune compare``: prefilled sheaves versus bulk allocation for the same operations."""

from __future__ import annotations

import click

from sheaftune.cli.common import (
    costs_yaml_option,
    cpus_option,
    events_option,
    executor_options,
    kernel_option,
    output_options,
    output_stream,
    seed_option,
    upper_bound_option,
    workload_option,
)
from sheaftune.cli.completion import complete_path

PLOT_SUFFIXES = (".svg", ".png")


@click.command(
    "compare",
    epilog="""\b
Examples:
  sheaftune compare --upper-bound 30 --used uniform:1-3 --cpus 64
  sheaftune compare trace.dat --cache maple_node --format json -o cmp.json
  sheaftune compare --workload workloads/prefill-heavy.yaml --format yaml""",
)
@click.argument("traces", nargs=-1, type=str, shell_complete=complete_path)
@workload_option("Generate the events and prefill operations from this workload file instead.")
@click.option(
    "--ops",
    "ops_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Prefill operations from our bpftrace prefill script's output, captured with TRACE "
    "(default: inferred from the trace's sheaf pops).",
)
@click.option("--cache", default="maple_node", show_default=True, help="The cache to compare.")
@upper_bound_option(
    "Objects each operation must be guaranteed (replaces the input's bounds; with --used "
    "and no input, builds a synthetic stream).",
    metavar="U",
)
@click.option(
    "--used",
    default=None,
    metavar="N|DIST",
    help="Objects each synthetic operation uses: N, uniform:A-B, or a scipy.stats NAME:P1,P2 "
    "(e.g. binom:30,0.1); draws are rounded and clipped to 0..U.",
)
@click.option(
    "--capacity",
    type=click.IntRange(0, 65535),
    default=None,
    help="Force this sheaf capacity (default: the kernel's own for the cache).",
)
@cpus_option(
    "CPUs per node for the contention estimate, and the CPUs of a synthetic stream "
    "(default: the input's CPUs; 4 for a synthetic stream)."
)
@kernel_option()
@click.option(
    "--engine",
    type=click.Choice(("fast", "reference")),
    default="reference",
    show_default=True,
    help="The readable reference model, or the compiled engine.",
)
@costs_yaml_option("Replace cost-model defaults (see `sheaftune costs`).")
@seed_option("Seed of --workload generation and of --used draws.")
@events_option("Visible events to generate from --workload (default: its own, at most 50,000).")
@click.option(
    "--plot",
    type=str,
    default=None,
    metavar="FILE.svg|png",
    help="Also draw cost per operation of both strategies against the used share "
    "(needs matplotlib: pip install 'sheaftune[plot]').",
)
@executor_options
@output_options(("table", "json", "yaml"))
def command(
    traces: tuple[str, ...],
    workload: str | None,
    ops_file: str | None,
    cache: str,
    upper_bound: int | None,
    used: str | None,
    capacity: int | None,
    cpus: int | None,
    kernel: str,
    engine: str,
    costs_file: str | None,
    seed: int,
    events: int | None,
    plot: str | None,
    jobs: int | None,
    scheduler: str | None,
    fmt: str,
    output: str | None,
) -> None:
    """Compare kmem_cache_prefill_sheaf with kmem_cache_alloc_bulk for the same operations.

    Each operation must be guaranteed U objects and uses k of them. Prefill: prefill_sheaf(U),
    k x alloc_from_sheaf, return_sheaf. Bulk: alloc_bulk(U), then free_bulk of the U - k
    unused. Both replay through the sheaf model with the same background allocations and frees
    and the same lives of the used objects. Prints, per strategy, the estimated cost per
    operation with its breakdown, the slow-path share, memory held, lock and slab traffic and
    the kernel's counters; the winner and margin; and the crossover: the share of U used at
    which bulk catches up. Operations come from TRACE (inferred from its sheaf pops, or --ops),
    from --workload, or, with neither, from --upper-bound and --used alone (a synthetic stream).

    Several TRACEs (files, quoted globs, @FILE lists) give one comparison per trace, run on all
    cores (--jobs N) or a dask.distributed cluster (--scheduler); docs/fleet.md.
    """
    from sheaftune.cli.common import expand_trace_args, require_matplotlib

    paths = expand_trace_args(traces)
    many = len(paths) > 1 or scheduler is not None
    trace = paths[0] if paths else None
    from sheaftune.analysis.compare import CompareRequest, run
    from sheaftune.cli.console import stderr
    from sheaftune.costs import CostModel
    from sheaftune.errors import UsageError
    from sheaftune.report import render

    if plot is not None:
        if not plot.lower().endswith(PLOT_SUFFIXES):
            raise UsageError(f"--plot {plot!r}: give a .svg or .png file")
        require_matplotlib()
    costs = CostModel.from_yaml(costs_file) if costs_file else None
    req = CompareRequest(
        trace=trace,
        workload=workload,
        ops_file=ops_file,
        cache=cache,
        upper_bound=upper_bound,
        used=used,
        capacity=capacity,
        cpus=cpus,
        kernel=kernel,
        engine=engine,
        costs=costs,
        seed=seed,
        events=events,
    )
    req.check()
    if many:
        from sheaftune.analysis.compare import ComparisonSet
        from sheaftune.analysis.distribute import compare_many, make_executor, trace_inputs

        if plot is not None:
            raise UsageError("--plot draws one comparison; give one TRACE")
        with make_executor(jobs, scheduler) as ex:
            records = compare_many(trace_inputs(paths), ex, req)
        with output_stream(output) as out:
            render(ComparisonSet(records), fmt, out)
        return

    def say(msg: str) -> None:
        if stderr.is_terminal:
            stderr.print(f"sheaftune: {msg}...")

    record = run(req, say)
    with output_stream(output) as out:
        render(record, fmt, out)
    if plot is not None:
        from sheaftune.report.comparison import plot_comparison

        plot_comparison(record, plot)
