"""``sheaftune costs``: the cost model in use, each default with its source."""

from __future__ import annotations

import click

from sheaftune.cli.common import costs_yaml_option, output_options, output_stream


@click.command(
    "costs",
    epilog="""\b
Examples:
  sheaftune costs
  sheaftune costs --costs my-machine.yaml --format yaml
  sheaftune costs --format json -o costs.json""",
)
@costs_yaml_option("A YAML mapping of cost names to ns that replaces those defaults.")
@output_options(("table", "json", "yaml"))
def command(costs_file: str | None, fmt: str, output: str | None) -> None:
    """Print the cost model the estimates use: ns per allocator path, each default's source.

    No one has published per-event costs for barn exchanges, sheaf refills or prefill/return,
    so each default is derived from the nearest published measurement and says which. A
    --costs FILE.yaml (the same file `sheaftune compare --costs` takes) replaces any of them;
    its keys are the names listed here. The lock contention model is printed too.
    """
    from sheaftune.cli.common import load_costs
    from sheaftune.costs import CostReport
    from sheaftune.report import render

    model = load_costs(costs_file)
    with output_stream(output) as out:
        render(CostReport.of(model, costs_file), fmt, out)
