"""Terminal table and plot for ``sheaftune recommend`` (records of schema
sheaftune/recommendation).

The table lists every candidate capacity with its estimated time, traffic and memory, marks the
recommendation and the runner-up, then prints the rationale and the line of C. The plot draws
estimated time and worst-case memory against capacity. Nothing is computed here: every number is
in the record. matplotlib is imported only by :func:`plot_recommendation` (an optional extra).
"""

from __future__ import annotations

from typing import IO, Any

from rich.console import Console
from rich.table import Table

from sheaftune.report import console_for, fmt_bytes, register_table
from sheaftune.results import Record


def _console(stream: IO[str]) -> Console:
    return console_for(stream, 120)  # type: ignore[no-any-return]


def _mark(c: dict[str, Any], d: dict[str, Any]) -> str:
    marks = []
    if c["capacity"] == d["recommended"]:
        marks.append("recommended")
    elif c["capacity"] == d["runner_up"]:
        marks.append("runner-up")
    if c["capacity"] == d["kernel_autotune"]:
        marks.append("autotune")
    if c["capacity"] == d["current"] and d["current"] != d["kernel_autotune"]:
        marks.append("current")
    if c["wastes_bucket"]:
        marks.append(f"pays for {c['bucket_capacity']}")
    return ", ".join(marks)


@register_table("sheaftune/recommendation")
def render_recommendation(record: Record, stream: IO[str]) -> None:
    d = record.to_dict()
    con = _console(stream)
    title = (
        f"{d['cache']}: object size {d['object_size']} B, Linux {d['kernel']} semantics, "
        f"{d['cpus']} CPUs on {d['nodes']} node(s) ({d['cpus_per_node']} per node), "
        f"objective {d['objective']}"
    )
    t = Table(title=title, title_justify="left")
    for col in ("cap", "ns/op", "uncont.", "content.", "fast", "barn/1k", "slab/op", "oversize"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("", no_wrap=True)
    for c in d["candidates"]:
        t.add_row(
            str(c["capacity"]),
            f"{c['cost_ns_per_op']:.2f}",
            f"{c['uncontended_ns_per_op']:.2f}",
            f"{c['contention_ns_per_op']:.2f}",
            f"{100 * c['fastpath_share']:.1f}%",
            f"{c['barn_ops_per_k']:.2f}",
            f"{c['slab_objects_per_op']:.3f}",
            f"{100 * c['oversize_share']:.0f}%" if c["prefills"] else "-",
            _mark(c, d),
        )
    con.print(t)
    m = Table(
        title="Memory held by the sheaves (worst case: D8 limits; typical: replay mean)",
        title_justify="left",
    )
    for col in ("capacity", "sheaf", "worst/CPU", "worst/node", "typical/CPU", "typical/node"):
        m.add_column(col, justify="right")
    for c in d["candidates"]:
        m.add_row(
            str(c["capacity"]),
            f"{c['sheaf_bytes']} B",
            fmt_bytes(c["bytes_per_cpu"]),
            fmt_bytes(c["bytes_per_node"]),
            fmt_bytes(c["typical_bytes_per_cpu"]),
            fmt_bytes(c["typical_bytes_per_node"]),
        )
    con.print(m)
    diff = d["kernel_autotune_difference"]
    con.print(
        f"Recommended: {d['recommended']}   (7.3 autotuning gives {d['kernel_autotune']}; "
        f"difference {diff:+d})"
    )
    for line in d["rationale"]:
        con.print(f"  - {line}")
    con.print(f"Demand: {d['demand'].get('scaling', d['demand'].get('kind', ''))}")
    if "model" in d["demand"]:
        con.print(f"  {d['demand']['model']}")
    con.print("In struct kmem_cache_args:")
    con.print(f"    {d['snippet']}")


def plot_recommendation(record: Record, path: str) -> None:
    """Estimated time and worst-case memory per node against capacity, the winner marked.

    Requires matplotlib (``pip install 'sheaftune[plot]'``); raises ImportError without it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = record.to_dict()
    caps = [c["capacity"] for c in d["candidates"]]
    ns = [c["cost_ns_per_op"] for c in d["candidates"]]
    mem = [c["bytes_per_node"] / 1024 for c in d["candidates"]]
    typ = [c["typical_bytes_per_node"] / 1024 for c in d["candidates"]]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(caps, ns, "o-", color="tab:blue", label="estimated time (ns/op)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sheaf_capacity")
    ax.set_ylabel("estimated ns per operation", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(caps, mem, "s--", color="tab:red", label="worst case per node (KiB)")
    ax2.plot(caps, typ, "^:", color="tab:orange", label="typical per node (KiB)")
    ax2.set_ylabel("KiB per node", color="tab:red")
    ax.axvline(d["recommended"], color="tab:green", lw=2, label=f"recommended {d['recommended']}")
    ax.axvline(
        d["kernel_autotune"], color="grey", ls=":", label=f"7.3 autotune {d['kernel_autotune']}"
    )
    ax.set_xticks(caps)
    ax.set_xticklabels([str(c) for c in caps])
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper center", fontsize="small")
    ax.set_title(
        f"{d['cache']} ({d['object_size']} B), {d['cpus_per_node']} CPUs per node, "
        f"Linux {d['kernel']}"
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
