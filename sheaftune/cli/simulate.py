"""``sheaftune simulate``: replay a scenario file through the sheaf model."""

from __future__ import annotations

import click

from sheaftune.cli.common import output_options, output_stream
from sheaftune.cli.completion import complete_path


@click.command(
    "simulate",
    epilog="""\b
Examples:
  sheaftune simulate tests/data/scenarios/f3_e2big_flush_spare.yaml
  sheaftune simulate scenario.yaml --format json -o result.json
  sheaftune simulate scenario.yaml --format yaml | less""",
)
@click.argument("scenario", type=str, shell_complete=complete_path)
@click.option(
    "--engine",
    type=click.Choice(["reference"]),
    default="reference",
    show_default=True,
    help="Which implementation of the model runs the scenario.",
)
@output_options(("table", "json", "yaml"))
def command(scenario: str, engine: str, fmt: str, output: str | None) -> None:
    """Replay SCENARIO (a YAML list of allocator calls) through the sheaf model.

    A scenario names the kernel ("7.3" or "6.18"), the cache (object_size, sheaf_capacity,
    an optional forced capacity, objects_per_slab), the CPUs and NUMA nodes, and a list of
    ops such as [0, alloc, 5], [1, free, 3], [0, prefill, s1, 6], [0, kfree_rcu, 2], [rcu],
    [shrink] or [offline, 1] (docs/simulation.md). The result holds every SLUB stat counter
    of that kernel under its sysfs name, the per-CPU sheaves, the barns and the prefilled
    sheaves still outstanding.
    """
    from sheaftune.model.scenario import simulate_file
    from sheaftune.report import render

    record = simulate_file(scenario, engine)
    with output_stream(output) as out:
        render(record, fmt, out)
