"""Fitted versus real: workloads/maple-vma-churn.yaml against the real 6.18 fixture vma-small.

Computes the workload statistics (sheaftune.synth.stats) of the real trace and of generated
traces (several seeds, a window 20 times longer so rare streams such as forks average out) and
prints them side by side as the Markdown table in docs/workloads.md.

    .venv/bin/python benchmarks/fit_maple_vma.py [--fixture PATH] [--seeds 5] [--scale 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sheaftune.readers import read_trace  # noqa: E402
from sheaftune.synth.generate import generate  # noqa: E402
from sheaftune.synth.spec import load_spec  # noqa: E402
from sheaftune.synth.stats import workload_stats  # noqa: E402

SHARED = Path(os.environ.get("SHEAFTUNE_SHARED", ROOT.parent / "shared"))
FIXTURE = SHARED / "fixtures" / "traces" / "vma-small.report.txt"
WORKLOAD = ROOT / "workloads" / "maple-vma-churn.yaml"


def rows(st: dict[str, Any]) -> dict[str, float]:
    """Flatten the statistics worth comparing into metric -> value."""
    out: dict[str, float] = {}
    for cache in ("vm_area_struct", "maple_node"):
        c = st["caches"][cache]
        out[f"{cache}: allocations /s /CPU"] = c["alloc_rate_per_cpu"]
        out[f"{cache}: visible frees /s /CPU"] = c["free_rate_per_cpu"]
        out[f"{cache}: visible frees / allocations"] = c["visible_free_share"]
        out[f"{cache}: GFP_NOWAIT share"] = c["nowait_share"]
        for site, share in c["alloc_sites"].items():
            out[f"{cache}: alloc site {site}"] = share
        for site, share in c["free_sites"].items():
            out[f"{cache}: free site {site}"] = share
        for site, runs in c["pop_runs"].items():
            out[f"{cache}: pop run length at {site} (mean)"] = runs["mean"]
        if "lifetime_us" in c:
            for q in ("p10", "p50", "p90"):
                out[f"{cache}: lifetime {q} (µs)"] = c["lifetime_us"][q]
            out[f"{cache}: frees on another CPU"] = c["remote_free_share"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixture", default=str(FIXTURE))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--scale", type=int, default=20)
    args = ap.parse_args()
    real_table = read_trace(args.fixture)
    real = rows(workload_stats(real_table))
    spec = load_spec(WORKLOAD)
    fitted: dict[str, list[float]] = {}
    for seed in range(args.seeds):
        gen = generate(spec, seed=seed, events=len(real_table) * args.scale)
        for k, v in rows(workload_stats(gen.events)).items():
            fitted.setdefault(k, []).append(float(v))
    print(
        f"Real: {Path(args.fixture).name} ({len(real_table)} events). Fitted: {WORKLOAD.name}, "
        f"{args.seeds} seeds x {len(real_table) * args.scale} events, mean over seeds.\n"
    )
    print("| statistic | real (vma-small) | fitted (generated) |")
    print("| --- | ---: | ---: |")
    for k in list(real) + [k for k in fitted if k not in real]:
        r = real.get(k)
        f = statistics.mean(fitted[k]) if k in fitted else None
        print(f"| {k} | {_fmt(r)} | {_fmt(f)} |")


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


if __name__ == "__main__":
    main()
