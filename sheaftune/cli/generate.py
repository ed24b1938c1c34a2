"""``sheaftune generate``: a workload file -> the trace a real 6.18 kernel would have recorded."""

from __future__ import annotations

from typing import Any

import click

from sheaftune.cli.common import cpus_option, events_option, seed_option

GENERATE_FORMATS = ("npz", "ftrace", "report")


@click.command(
    "generate",
    epilog="""\b
Examples:
  sheaftune generate workloads/maple-vma-churn.yaml -o churn.npz
  sheaftune generate workloads/will-it-scale-mmap2.yaml --cpus 64 --events 20000000 -o wis.npz
  sheaftune generate workloads/fork-storm.yaml --format ftrace --seed 7 -o fork.txt""",
)
@click.argument("workload", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The file to write (atomically); `-` for standard output (text formats).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(GENERATE_FORMATS),
    default="npz",
    show_default=True,
    help="npz: sheaftune's columnar file; ftrace: /sys/kernel/tracing/trace text; "
    "report: trace-cmd report text.",
)
@seed_option("Seed of the random generator: the same seed gives the same bytes.")
@cpus_option("Override the workload's CPU count (per-CPU rates scale with it).")
@events_option("Override the number of visible events to generate.")
@click.option(
    "--ns",
    "ns_stamps",
    is_flag=True,
    help="report: nanosecond timestamps, as `trace-cmd report -t` prints them.",
)
def command(
    workload: str,
    output: str,
    fmt: str,
    seed: int,
    cpus: int | None,
    events: int | None,
    ns_stamps: bool,
) -> None:
    """Generate a synthetic kmem trace from WORKLOAD (a YAML file, see docs/workloads.md).

    The events are what a Linux 6.18 trace would show: kmem_cache_alloc/kmem_cache_free for
    named caches, kmalloc/kfree for kmalloc caches, real call sites and gfp flags, and no event
    for kfree_rcu, bulk and prefill traffic (their counts are kept in the .npz metadata)."""
    from sheaftune.cli.console import stderr
    from sheaftune.errors import UsageError
    from sheaftune.synth.generate import generate
    from sheaftune.synth.spec import load_spec

    if output == "-" and fmt == "npz":
        raise UsageError("--format npz cannot be written to standard output; give -o FILE")
    spec = load_spec(workload)
    n = events if events is not None else spec.events
    with _progress(n, stderr) as say:
        synth = generate(spec, seed=seed, cpus=cpus, events=events, progress=say)
        say("writing", 1.0)
        _write(synth.events, output, fmt, ns_stamps)
    extra = synth.events.meta.extra["synth"]["invisible"]
    stderr.print(
        f"sheaftune: wrote {len(synth.events)} events on {synth.events.meta.cpus} CPUs to "
        f"{output} ({fmt}); invisible: {extra['kfree_rcu']} kfree_rcu, {extra['bulk_free']} "
        f"bulk frees, {extra['bulk_alloc']} bulk allocations, {extra['prefill_ops']} prefill "
        "operations"
    )


def _write(table: Any, output: str, fmt: str, ns_stamps: bool) -> None:
    if fmt == "npz":
        from sheaftune.cli.common import save_events

        save_events(table, output)
        return
    from sheaftune.cli.common import output_stream
    from sheaftune.synth.writers import write_ftrace, write_report

    with output_stream(output) as fh:
        if fmt == "ftrace":
            write_ftrace(table, fh)
        else:
            write_report(table, fh, ns=ns_stamps)


class _progress:
    """A rich bar on standard error for big generations on a terminal; otherwise silent."""

    def __init__(self, events: int, console: Any):
        self.show = events >= 2_000_000 and console.is_terminal
        self.console = console
        self.bar: Any = None

    def __enter__(self) -> Any:
        if not self.show:
            return lambda stage, frac: None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.__enter__()
        task = self.bar.add_task("generating", total=1.0)

        def say(stage: str, frac: float) -> None:
            self.bar.update(task, description=stage, completed=frac)

        return say

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
