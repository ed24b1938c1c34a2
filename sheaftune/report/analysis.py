"""Terminal tables and CSV for ``sheaftune analyze`` (records of schema sheaftune/analysis)."""

from __future__ import annotations

import csv
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.table import Table

from sheaftune.report import (
    console_for,
    fmt_bytes,
    fmt_count,
    fmt_ns,
    fmt_share,
    register_csv,
    register_table,
)
from sheaftune.results import Record

#: caches shown with their per-CPU split and call sites in the terminal output
DETAIL_CACHES = 3
CACHE_ROWS = 25


def _console(stream: IO[str]) -> Console:
    return console_for(stream, 120)  # type: ignore[no-any-return]


def _largest_first(caches: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return sorted(caches.items(), key=lambda kv: (-(kv[1]["alloc"] + kv[1]["free"]), kv[0]))


@register_table("sheaftune/analysis-set")
def render_set(record: Record, stream: IO[str]) -> None:
    for a in record.analyses:  # type: ignore[attr-defined]
        render_analysis(a, stream)


@register_table("sheaftune/analysis")
def render_analysis(record: Record, stream: IO[str]) -> None:
    d = record.to_dict()
    tr = d["trace"]
    con = _console(stream)
    # the path on a line of its own that never wraps: a long path must not break the table
    con.print(f"Trace {tr['source']}", soft_wrap=True)
    head = Table(show_header=False)
    head.add_column("what")
    head.add_column("value")
    head.add_row(
        "format", f"{tr['format']}" + (f" v{tr['file_version']}" if tr.get("file_version") else "")
    )
    if tr.get("kernel_release"):
        head.add_row("kernel", str(tr["kernel_release"]))
    head.add_row(
        "events",
        fmt_count(tr["events"])
        + "  ("
        + ", ".join(f"{k} {fmt_count(v)}" for k, v in tr["events_by_type"].items() if v)
        + ")",
    )
    head.add_row("CPUs", str(tr["cpus"]))
    if tr.get("duration_s") is not None:
        head.add_row(
            "time span",
            f"{tr['first_ts']:.6f} .. {tr['last_ts']:.6f} s "
            f"({tr['duration_s']:.3f} s, clock {tr.get('clock') or 'unknown'})",
        )
    head.add_row("NULL frees", fmt_count(tr["null_free"]))
    if tr["lost_events"] or tr["lost_markers"]:
        head.add_row(
            "lost events",
            f"{fmt_count(tr['lost_events'])} counted, {tr['lost_markers']} loss markers",
        )
    skipped = {k: v for k, v in tr["skipped"].items() if k not in ("comment", "blank")}
    if skipped:
        head.add_row("skipped", ", ".join(f"{k} {fmt_count(v)}" for k, v in skipped.items()))
    if not d["complete"]:
        head.add_row("complete", "NO: damaged input, partial result")
    con.print(head)

    caches = _largest_first(d["caches"])
    t = Table(title="Caches (largest first)", title_justify="left")
    for col, just in (
        ("cache", "left"),
        ("alloc", "right"),
        ("free", "right"),
        ("matched", "right"),
        ("unmatched", "right"),
        ("live@end", "right"),
        ("unseen", "right"),
        ("x-CPU", "right"),
        ("life p50", "right"),
        ("life p99", "right"),
        ("nowait", "right"),
        ("size", "right"),
    ):
        t.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    t.columns[0].min_width = min(32, max((len(n) + 2 for n, _ in caches), default=8))
    for name, st in caches[:CACHE_ROWS]:
        lt = st["lifetime_ns"] or {}
        size = st["object_size"] or {}
        flag = " *" if st["invisible_frees"] else ""
        t.add_row(
            name + flag,
            fmt_count(st["alloc"]),
            fmt_count(st["free"]),
            fmt_count(st["matched_free"]),
            fmt_count(st["unmatched_free"]),
            fmt_count(st["live_at_end"]),
            fmt_count(st["unseen_free"]),
            fmt_share(st["cross_cpu_free_share"]),
            fmt_ns(lt.get("p50")),
            fmt_ns(lt.get("p99")),
            fmt_share(st["nowait_share"]),
            fmt_count(size.get("bytes_alloc")),
        )
    con.print(t)
    if len(caches) > CACHE_ROWS:
        con.print(f"... {len(caches) - CACHE_ROWS} more caches (--cache NAME, or --format json)")
    for name, st in caches[:DETAIL_CACHES]:
        dt = Table(title=f"{name}: per CPU and call sites", title_justify="left")
        dt.add_column("CPU", justify="right")
        dt.add_column("alloc", justify="right")
        dt.add_column("free", justify="right")
        dt.add_column("top allocating sites")
        dt.add_column("top freeing sites")
        cpus = list(st["per_cpu"].items())
        rows = max(len(cpus), len(st["alloc_sites"]), len(st["free_sites"]))
        for i in range(rows):
            c = cpus[i] if i < len(cpus) else None
            a = st["alloc_sites"][i] if i < len(st["alloc_sites"]) else None
            f = st["free_sites"][i] if i < len(st["free_sites"]) else None
            dt.add_row(
                c[0] if c else "",
                fmt_count(c[1]["alloc"]) if c else "",
                fmt_count(c[1]["free"]) if c else "",
                f"{a['site']} {fmt_share(a['share'])}" if a else "",
                f"{f['site']} {fmt_share(f['share'])}" if f else "",
            )
        con.print(dt)
    _render_replays(con, d, caches)
    for note in d["notes"]:
        con.print(f"note: {note}")
    if any(st["invisible_frees"] for _, st in caches):
        con.print("* most allocations never die visibly in this trace")


CSV_COLUMNS = (
    "alloc",
    "free",
    "matched_free",
    "unmatched_free",
    "unseen_free",
    "live_at_end",
    "alloc_per_s",
    "free_per_s",
    "cross_cpu_free",
    "cross_cpu_free_share",
    "nowait_share",
    "invisible_frees",
)


@register_csv("sheaftune/analysis")
def csv_analysis(record: Record, stream: IO[str]) -> None:
    _csv_rows([record], stream)


@register_csv("sheaftune/analysis-set")
def csv_set(record: Record, stream: IO[str]) -> None:
    _csv_rows(record.analyses, stream)  # type: ignore[attr-defined]


def _csv_rows(records: list[Any], stream: IO[str]) -> None:
    w = csv.writer(stream, lineterminator="\n")
    w.writerow(
        ("trace", "cache", *CSV_COLUMNS, "lifetime_p50_ns", "lifetime_p99_ns", "bytes_alloc")
    )
    for rec in records:
        d = rec.to_dict()
        for name, st in _largest_first(d["caches"]):
            lt = st["lifetime_ns"] or {}
            size = st["object_size"] or {}
            w.writerow(
                (
                    d["trace"]["source"],
                    name,
                    *(st[c] for c in CSV_COLUMNS),
                    lt.get("p50"),
                    lt.get("p99"),
                    size.get("bytes_alloc"),
                )
            )


def _render_replays(
    con: Console, d: dict[str, Any], caches: list[tuple[str, dict[str, Any]]]
) -> None:
    """One row per (cache, capacity) replayed; what each replay assumed, below."""
    model = d.get("model")
    replayed = [(name, st["replay"]) for name, st in caches if st.get("replay")]
    if not model or not replayed:
        return
    t = Table(
        title=f"Sheaf model: Linux {model['kernel']} semantics, {model['engine']} engine "
        "(* the kernel's capacity; barn/k: barn gets+puts per 1000 operations)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for col in (
        "cache",
        "cap",
        "alloc@pcs",
        "free@pcs",
        "barn/k",
        "fail/k",
        "refilled",
        "flushed",
        "sheaves",
        "held",
        "held bytes",
    ):
        t.add_column(col, justify="left" if col == "cache" else "right")
    t.columns[0].min_width = min(32, max(len(n) for n, _ in replayed) + 1)
    for name, rep in replayed[:CACHE_ROWS]:
        for row in rep["replays"]:
            mark = "*" if row["capacity"] == rep["kernel_capacity"] else ""
            t.add_row(
                name,
                f"{row['capacity']}{mark}",
                fmt_share(row["alloc_sheaf_share"]),
                fmt_share(row["free_sheaf_share"]),
                _num(_add(row["barn_get_per_k"], row["barn_put_per_k"])),
                _num(_add(row["barn_get_fail_per_k"], row["barn_put_fail_per_k"])),
                fmt_count(row["refilled_objects"]),
                fmt_count(row["flushed_objects"]),
                fmt_count(row["sheaf_structs_allocated"]),
                fmt_count(row["held_objects_max"]),
                fmt_bytes(row["held_bytes_max"]),
            )
    con.print(t)
    recs = [(name, st["recommendation"]) for name, st in caches if st.get("recommendation")]
    if recs:
        rt = Table(
            title="Recommended sheaf_capacity (sheaftune recommend; --no-recommend skips)",
            title_justify="left",
            box=box.SIMPLE_HEAD,
        )
        for col in (
            "cache",
            "recommended",
            "kernel autotune",
            "current",
            "objective",
            "kmem_cache_args",
        ):
            rt.add_column(
                col, justify="left" if col in ("cache", "objective", "kmem_cache_args") else "right"
            )
        for name, rec in recs:
            rt.add_row(
                name,
                str(rec["recommended"]),
                str(rec["kernel_autotune"]),
                str(rec["current"]),
                rec["objective"],
                rec["snippet"],
            )
        con.print(rt)
        for name, rec in recs[:DETAIL_CACHES]:
            if rec["rationale"]:
                con.print(f"{name}: {rec['rationale'][0]}")
    for name, rep in replayed[:DETAIL_CACHES]:
        if rep["assumptions"]:
            con.print(
                f"{name}: assumed "
                + "; ".join(f"{k}: {fmt_count(v)}" for k, v in rep["assumptions"].items())
            )


def _add(x: float | None, y: float | None) -> float | None:
    return None if x is None or y is None else x + y


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.2f}"
