"""The published-case sweep of docs/recommend.md: will-it-scale mmap2, maple_node, 1 node.

For each CPU count the workload is regenerated (``--events-per-cpu`` visible events per CPU),
every candidate capacity is replayed and priced (``sheaftune.analysis.recommend``), and one
Markdown table is printed per CPU count, with the recommendation under the default objective.

    .venv/bin/python benchmarks/recommend_sweep.py --kernel 6.18 --cpus 4,16,64,256

With --engine reference, 256 CPUs take about half an hour per kernel; the compiled engine
(the default) gives the same numbers much faster.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sheaftune.analysis.recommend import RecommendOptions, choose, recommend_for_workload
from sheaftune.synth.spec import load_spec

WORKLOAD = Path(__file__).resolve().parent.parent / "workloads" / "will-it-scale-mmap2.yaml"


def table(d: dict) -> str:
    rows = [
        "| capacity | ns/op | uncontended | contention | barn lock util. | barn ops/1k | "
        "slab objs/op | worst/CPU | typical/CPU | |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in d["candidates"]:
        mark = []
        if c["capacity"] == d["recommended"]:
            mark.append("**recommended**")
        if c["capacity"] == d["kernel_autotune"]:
            mark.append("7.3 autotune")
        if c["capacity"] == d["current"] and d["current"] != d["kernel_autotune"]:
            mark.append("current")
        rows.append(
            f"| {c['capacity']} | {c['cost_ns_per_op']:.1f} | {c['uncontended_ns_per_op']:.1f} "
            f"| {c['contention_ns_per_op']:.1f} | {c['barn_utilisation']:.2f} "
            f"| {c['barn_ops_per_k']:.1f} | {c['slab_objects_per_op']:.2f} "
            f"| {c['bytes_per_cpu'] / 1024:.1f} KiB | {c['typical_bytes_per_cpu'] / 1024:.1f} KiB "
            f"| {', '.join(mark)} |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="6.18", choices=("6.18", "7.3"))
    ap.add_argument("--cpus", default="4,16,64,256")
    ap.add_argument("--events-per-cpu", type=int, default=16000)
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the records (JSON lines) here")
    args = ap.parse_args()
    spec = load_spec(WORKLOAD)
    for cpus in (int(x) for x in args.cpus.split(",")):
        t0 = time.monotonic()
        rec = recommend_for_workload(
            spec,
            "maple_node",
            RecommendOptions(kernel=args.kernel, cpus=cpus, nodes=1, engine=args.engine),
            events_per_cpu=args.events_per_cpu,
            seed=args.seed,
        )
        d = rec.to_dict()
        if args.json:
            with open(args.json, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(d, sort_keys=True) + "\n")
        others = {
            obj: choose(d["candidates"], obj, upper_bound=d["upper_bound"])[0]["capacity"]
            for obj in ("scaling", "memory", "time")
        }
        print(
            f"\n#### {cpus} CPUs, 1 node, Linux {args.kernel} semantics: "
            f"recommended {d['recommended']} (runner-up {d['runner_up']}; "
            f"7.3 autotune {d['kernel_autotune']}); objective scaling: {others['scaling']}, "
            f"time: {others['time']}, memory: {others['memory']}\n"
        )
        print(table(d))
        print()
        for line in d["rationale"]:
            print(f"- {line}")
        print(
            f"\n<sub>{d['demand']['events']} events, plan {d['demand']['plan']}, "
            f"grace period {d['demand']['rcu_gp_ns'] / 1e6:g} ms, engine {d['engine']}, "
            f"{time.monotonic() - t0:.0f} s</sub>",
            flush=True,
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
