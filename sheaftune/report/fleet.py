"""Terminal table and CSV for the fleet report (records of schema sheaftune/fleet), and the
table of several comparisons (sheaftune/comparison-set): each comparison's own table in turn.

Per cache: the fleet capacity and the share of machines it suits, the distribution of the
machines' own optima, the acceptable share of every candidate, and the outliers. Nothing is
computed here: every number is in the record.
"""

from __future__ import annotations

import csv
from typing import IO

from rich.table import Table

from sheaftune.report import console_for, register_csv, register_table
from sheaftune.results import Record


@register_table("sheaftune/fleet")
def render_fleet(record: Record, stream: IO[str]) -> None:
    d = record.to_dict()
    con = console_for(stream)
    con.print(
        f"{len(d['machines'])} machine(s), Linux {d['kernel']} semantics, objective "
        f"{d['objective']}, tolerance {d['tolerance']:.0%}"
    )
    t = Table(title="sheaf_capacity per cache across the fleet", title_justify="left")
    for col in (
        "cache",
        "machines",
        "fleet cap",
        "suits",
        "optima (capacity: machines)",
        "outliers",
    ):
        t.add_column(
            col, justify="left" if col in ("cache", "optima (capacity: machines)") else "right"
        )
    for name, c in d["caches"].items():
        t.add_row(
            name,
            str(c["machines"]),
            str(c["fleet_capacity"]),
            f"{100 * c['fleet_share']:.0f}%",
            "  ".join(f"{cap}: {n}" for cap, n in c["optima"].items()),
            str(len(c["outliers"])),
        )
    con.print(t)
    for name, c in d["caches"].items():
        if not c["outliers"]:
            continue
        con.print(f"{name}: outliers at {c['fleet_capacity']}")
        for o in c["outliers"]:
            pen = (
                f" ({100 * o['fleet_penalty']:+.1f}% time)"
                if o["fleet_penalty"] is not None
                else ""
            )
            con.print(f"  {o['machine']}: own optimum {o['recommended']}; {o['reason']}{pen}")
    for s in d["skipped"]:
        con.print(f"skipped {s['cache']} on {s['machine']}: {s['reason']}")


@register_csv("sheaftune/fleet")
def csv_fleet(record: Record, stream: IO[str]) -> None:
    """One row per (cache, machine)."""
    d = record.to_dict()
    w = csv.writer(stream, lineterminator="\n")
    w.writerow(
        [
            "cache",
            "machine",
            "recommended",
            "cost_ns_per_op",
            "fleet_capacity",
            "fleet_cost_ns_per_op",
            "fleet_acceptable",
        ]
    )
    for name, c in d["caches"].items():
        for r in c["per_machine"]:
            w.writerow(
                [
                    name,
                    r["machine"],
                    r["recommended"],
                    r["cost_ns_per_op"],
                    c["fleet_capacity"],
                    r["fleet_cost_ns_per_op"],
                    r["fleet_acceptable"],
                ]
            )


@register_table("sheaftune/comparison-set")
def render_comparison_set(record: Record, stream: IO[str]) -> None:
    from sheaftune.report.comparison import render_comparison

    for c in record.comparisons:  # type: ignore[attr-defined]
        render_comparison(c, stream)
