"""Terminal tables for ``sheaftune simulate`` (records of schema sheaftune/simulation).

Tables: the kernel's counters (in the order the record holds them), the per-CPU sheaves, the
barns, and any prefilled sheaves still outstanding. Nothing is computed here.
"""

from __future__ import annotations

from typing import IO, Any

from rich.console import Console
from rich.table import Table

from sheaftune.report import console_for, fmt_count, register_table
from sheaftune.results import Record


def _console(stream: IO[str]) -> Console:
    return console_for(stream, 120)  # type: ignore[no-any-return]


def _sheaf(n: Any) -> str:
    return "-" if n is None else str(n)


@register_table("sheaftune/simulation")
def render_simulation(record: Record, stream: IO[str]) -> None:
    d = record.to_dict()
    con = _console(stream)
    counters = Table(title=f"Linux {d['kernel']}, capacity {d['capacity']}", title_justify="left")
    counters.add_column("counter (sysfs name)")
    counters.add_column("value", justify="right")
    for name, value in d["counters"].items():
        counters.add_row(name, fmt_count(value))
    con.print(counters)

    cpus = Table(title="Per-CPU sheaves (- = none)", title_justify="left")
    for col in ("CPU", "node", "main", "spare", "rcu_free"):
        cpus.add_column(col, justify="right")
    for c in d["cpus"]:
        cpus.add_row(
            str(c["cpu"]),
            str(c["node"]),
            _sheaf(c["main"]),
            _sheaf(c["spare"]),
            _sheaf(c["rcu_free"]),
        )
    con.print(cpus)

    barns = Table(title="Barns (sheaves)", title_justify="left")
    for col in ("node", "full", "empty"):
        barns.add_column(col, justify="right")
    for b in d["barns"]:
        barns.add_row(str(b["node"]), str(b["full"]), str(b["empty"]))
    con.print(barns)

    if d["prefilled"]:
        pre = Table(title="Prefilled sheaves out", title_justify="left")
        pre.add_column("sheaf")
        pre.add_column("objects", justify="right")
        for h, n in d["prefilled"].items():
            pre.add_row(h, str(n))
        con.print(pre)
