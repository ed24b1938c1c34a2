"""``sheaftune convert``: any supported trace -> sheaftune's native columnar file (.npz)."""

from __future__ import annotations

import click

from sheaftune.cli.common import input_format_option, save_events
from sheaftune.cli.completion import complete_path


@click.command(
    "convert",
    epilog="""\b
Examples:
  sheaftune convert trace.dat -o trace.npz
  sheaftune convert --input-format ftrace - -o live.npz < trace.txt""",
)
@click.argument("trace", type=str, shell_complete=complete_path)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The .npz file to write (atomically).",
)
@input_format_option
@click.option("--salvage", is_flag=True, help="Keep what can be read of a damaged input.")
def command(trace: str, output: str, input_format: str | None, salvage: bool) -> None:
    """Convert TRACE to the native columnar event file that every command reads fast."""
    from sheaftune.cli.console import warn_meta
    from sheaftune.readers import ReadOptions, read_trace

    table = read_trace(trace, input_format, ReadOptions(salvage=salvage))
    warn_meta(table.meta)
    save_events(table, output)
