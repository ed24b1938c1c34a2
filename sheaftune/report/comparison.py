"""Terminal tables and the plot of ``sheaftune compare`` (records of schema sheaftune/comparison).

The table shows, side by side for prefill and bulk, the estimated cost per operation and its
breakdown, the slow-path share, memory held, lock and slab traffic and the kernel's counters
that differ; then the verdict and the crossover. :func:`plot_comparison` draws the crossover
sweep the record holds (matplotlib, imported only when a plot is asked for). Nothing is
computed here beyond formatting.
"""

from __future__ import annotations

from typing import IO, Any

from rich import box
from rich.console import Console
from rich.table import Table

from sheaftune.report import console_for, fmt_bytes, fmt_count, fmt_share, register_table
from sheaftune.results import Record

STRATEGIES = ("prefill", "bulk")


def _console(stream: IO[str]) -> Console:
    return console_for(stream, 120)  # type: ignore[no-any-return]


def fmt_ns1(x: Any) -> str:
    """ns with one decimal: 12.345 -> '12.3 ns'."""
    return "-" if x is None else f"{float(x):,.1f} ns"


def fmt_share_or_none(x: Any, none: str) -> str:
    return none if x is None else f"{100 * float(x):.1f}%"


@register_table("sheaftune/comparison")
def render_comparison(record: Record, stream: IO[str]) -> None:
    d = record.to_dict()
    con = _console(stream)
    st = d["strategies"]
    ops = d["operations"]

    head = Table(
        title=f"Prefill versus bulk: {d['cache']}", show_header=False, title_justify="left"
    )
    head.add_column("what")
    head.add_column("value")
    head.add_row("input", d["input"] or "(none)")
    head.add_row("operations from", f"{d['source']}: {d['source_note']}")
    ub, used = ops["upper_bound"], ops["used"]
    head.add_row(
        "operations",
        f"{fmt_count(ops['count'])}; upper bound {ub['min']}..{ub['max']} (mean {ub['mean']}), "
        f"used {used['min']}..{used['max']} (mean {used['mean']}, "
        f"{fmt_share(ops['used_share_mean'])} of U); oversize {fmt_share(ops['oversize_share'])}",
    )
    head.add_row(
        "model",
        f"Linux {d['kernel']}, capacity {d['capacity']}, {d['object_size']}-byte objects, "
        f"{d['cpus_replayed']} CPUs replayed ({d['engine']} engine), contention for "
        f"{d['cpus_per_node']} CPUs per node",
    )
    con.print(head)

    t = Table(title="Per strategy (ns per operation)", title_justify="left", box=box.SIMPLE_HEAD)
    t.add_column("")
    for s in STRATEGIES:
        t.add_column(s, justify="right")

    def row(label: str, fn: Any) -> None:
        t.add_row(label, *(fn(st[s]) for s in STRATEGIES))

    row("cost per operation", lambda x: fmt_ns1(x["cost_ns_per_op"]))
    row("  without contention", lambda x: fmt_ns1(x["uncontended_ns_per_op"]))
    parts = sorted(
        {k for s in STRATEGIES for k, v in st[s]["breakdown_ns_per_op"].items() if v >= 0.05}
    )
    for k in parts:
        row(f"  {k}", lambda x, k=k: fmt_ns1(x["breakdown_ns_per_op"].get(k, 0.0)))
    row("slow-path share of the cost", lambda x: fmt_share(x["slow_path_share"]))
    row("objects held (max)", lambda x: fmt_count(x["held_objects_max"]))
    row(
        "objects held (mean)",
        lambda x: "-" if x["held_objects_mean"] is None else f"{x['held_objects_mean']:,.1f}",
    )
    row("memory held (max, incl. sheaf structs)", lambda x: fmt_bytes(x["memory_held_bytes_max"]))
    row("memory held (mean, objects)", lambda x: fmt_bytes(x["memory_held_bytes_mean"]))
    row("barn lock acquisitions", lambda x: fmt_count(x["barn_lock"]))
    row("list_lock acquisitions", lambda x: fmt_count(x["list_lock"]))
    row("barn lock utilisation", lambda x: fmt_share(x["barn_utilisation"]))
    row("list_lock utilisation", lambda x: fmt_share(x["list_utilisation"]))
    for k in ("slabs_to_sheaves", "sheaves_to_slabs", "slabs_to_callers", "callers_to_slabs"):
        row(f"objects {k.replace('_', ' ')}", lambda x, k=k: fmt_count(x["objects_moved"][k]))
    row("sheaf structs allocated", lambda x: fmt_count(x["sheaf_structs_allocated"]))
    row("oversize prefills", lambda x: fmt_count(x["oversize_prefills"]))
    con.print(t)

    ct = Table(title="Kernel counters that differ", title_justify="left", box=box.SIMPLE_HEAD)
    ct.add_column("counter (sysfs name)")
    for s in STRATEGIES:
        ct.add_column(s, justify="right")
    for name in st["prefill"]["counters"]:
        a, b = st["prefill"]["counters"][name], st["bulk"]["counters"].get(name, 0)
        if a != b:
            ct.add_row(name, fmt_count(a), fmt_count(b))
    con.print(ct)

    verdict = Table(title="Verdict", show_header=False, title_justify="left")
    verdict.add_column("what")
    verdict.add_column("value")
    tie = " (a tie: within the model's noise)" if d["tie"] else ""
    verdict.add_row(
        "winner",
        f"{d['winner']}, cheaper by {fmt_ns1(d['margin_ns'])} per operation "
        f"({fmt_share(d['margin'])} of the other's cost){tie}",
    )
    cr = d["crossover"]
    share = d["crossover_used_share"]
    if share is None:
        text = "bulk never catches up with prefill, even when all of U is used"
    elif share == 0.0:
        text = "bulk is as cheap as prefill already when nothing is used"
    else:
        text = f"bulk catches up when {fmt_share(share)} of U is used"
    verdict.add_row("crossover", f"{text} (U = {cr.get('upper_bound', '-')})")
    verdict.add_row("crossover method", cr.get("method", "-"))
    con.print(verdict)

    if cr.get("points"):
        pt = Table(title="Crossover sweep", title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("used", "share of U", "prefill", "bulk"):
            pt.add_column(col, justify="right")
        for p in cr["points"]:
            pt.add_row(
                str(p["used"]),
                fmt_share(p["used_share"]),
                fmt_ns1(p["prefill_ns_per_op"]),
                fmt_ns1(p["bulk_ns_per_op"]),
            )
        con.print(pt)

    if d["assumptions"] or d["notes"]:
        at = Table(title="Assumptions and notes", show_header=False, title_justify="left")
        at.add_column("what")
        at.add_column("count", justify="right")
        for what, n in sorted(d["assumptions"].items()):
            at.add_row(what, fmt_count(n))
        for note in d["notes"]:
            at.add_row(note, "")
        con.print(at)


def plot_comparison(record: Record, path: str) -> None:
    """Cost per operation of both strategies against the used share (the crossover sweep),
    to ``path`` (.svg or .png). Needs matplotlib (``pip install 'sheaftune[plot]'``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = record.to_dict()
    pts = d["crossover"].get("points", [])
    x = [p["used_share"] for p in pts]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(x, [p["prefill_ns_per_op"] for p in pts], marker="o", label="prefill + return")
    ax.plot(x, [p["bulk_ns_per_op"] for p in pts], marker="s", label="alloc_bulk + free_bulk")
    mean_share = d["operations"].get("used_share_mean")
    if mean_share is not None:
        for s, marker in (("prefill", "o"), ("bulk", "s")):
            ax.scatter(
                [mean_share],
                [d["strategies"][s]["cost_ns_per_op"]],
                marker=marker,
                facecolors="none",
                edgecolors="black",
                zorder=3,
                label=f"{s}, this input (mean share used)",
            )
    share = d["crossover_used_share"]
    if share is not None and 0 < share < 1:
        ax.axvline(share, color="grey", linestyle="--", linewidth=1)
        ax.annotate(
            f"crossover {100 * share:.0f}%",
            (share, ax.get_ylim()[1]),
            textcoords="offset points",
            xytext=(4, -14) if share < 0.6 else (-86, -14),
            color="grey",
        )
    ax.set_xlabel(f"share of the upper bound used (U = {d['crossover'].get('upper_bound')})")
    ax.set_ylabel("estimated ns per operation")
    ax.set_title(
        f"{d['cache']}: prefill vs bulk, Linux {d['kernel']}, capacity {d['capacity']}, "
        f"{d['cpus_per_node']} CPUs/node",
        fontsize=10,
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
