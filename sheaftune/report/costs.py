"""Terminal table of ``sheaftune costs`` (records of schema sheaftune/costs)."""

from __future__ import annotations

import os
from typing import IO

from rich import box
from rich.console import Console
from rich.table import Table

from sheaftune.report import register_table
from sheaftune.results import Record


def _console(stream: IO[str]) -> Console:
    width = None
    if not (hasattr(stream, "isatty") and stream.isatty()):
        width = int(os.environ.get("COLUMNS", "0") or 0) or 140
    return Console(
        file=stream, width=width, highlight=False, markup=False, emoji=False, soft_wrap=False
    )


@register_table("sheaftune/costs")
def render_costs(record: Record, stream: IO[str]) -> None:
    d = record.to_dict()
    con = _console(stream)
    title = "Cost model (ns)" + (f", overrides from {d['file']}" if d["file"] else ", defaults")
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_lines=False)
    t.add_column("name")
    t.add_column("ns", justify="right")
    t.add_column("what it prices")
    t.add_column("source of the default")
    for c in d["costs"]:
        value = f"{c['ns']:.2f}" + (f" (default {c['default_ns']:.2f})" if c["overridden"] else "")
        t.add_row(c["name"], value, c["meaning"], c["source"])
    con.print(t)
    con.print(f"Contention: {d['contention_model']}.")
    con.print(f"Cycles are converted at {d['cycle_ns']:.4f} ns (3.6 GHz).")
