"""Terminal table of ``sheaftune costs`` (records of schema sheaftune/costs)."""

from __future__ import annotations

from typing import IO

from rich import box
from rich.console import Console
from rich.table import Table

from sheaftune.report import console_for, register_table
from sheaftune.results import Record


def _console(stream: IO[str]) -> Console:
    return console_for(stream, 140)  # type: ignore[no-any-return]


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
