"""Generation speed: events per second of `sheaftune.synth.generate` (target: 20 M in 10 s).

Times the library call (the EventTable in memory; writing is separate) for each workload file
after one warm-up call (numba's cached compile, scipy's import), best of --repeat runs.

    .venv/bin/python benchmarks/bench_generate.py [--events 20000000] [--repeat 2] [FILE...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sheaftune.synth.generate import generate  # noqa: E402
from sheaftune.synth.spec import load_spec  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", default=[str(ROOT / "workloads" / "maple-vma-churn.yaml")])
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=None)
    args = ap.parse_args()
    for f in args.files:
        spec = load_spec(f)
        generate(spec, seed=0, cpus=args.cpus, events=1000)  # warm-up: imports, numba cache
        best = cpu_best = sys_best = float("inf")
        for r in range(args.repeat):
            t0, c0 = time.perf_counter(), os.times()
            out = generate(spec, seed=r, cpus=args.cpus, events=args.events)
            best = min(best, time.perf_counter() - t0)
            c1 = os.times()
            cpu = c1.user - c0.user + c1.system - c0.system
            if cpu < cpu_best:
                cpu_best, sys_best = cpu, c1.system - c0.system
            assert len(out.events) == args.events
            del out
        # CPU time too: on a shared machine the wall clock also counts other jobs' turns. The
        # system part is mostly page faults of fresh memory (it varies with the machine's load).
        print(
            f"{spec.name:24s} {args.events:>12,d} events  {best:6.2f} s wall "
            f"({cpu_best:6.2f} s CPU, {sys_best:5.2f} s of it system)  "
            f"{args.events / best / 1e6:6.2f} M events/s"
        )


if __name__ == "__main__":
    main()
