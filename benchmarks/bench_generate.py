"""Generation speed: events per second of `sheaftune.synth.generate` (target: 20 M in 10 s).

Times the library call (the EventTable in memory; writing is separate) for each workload file
after one warm-up call (numba's cached compile, scipy's import), best of --repeat runs.

    .venv/bin/python benchmarks/bench_generate.py [--events 20000000] [--repeat 2] [FILE...]
"""

from __future__ import annotations

import argparse
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
        best = cpu_best = float("inf")
        for r in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            out = generate(spec, seed=r, cpus=args.cpus, events=args.events)
            best = min(best, time.perf_counter() - t0)
            cpu_best = min(cpu_best, time.process_time() - c0)
            assert len(out.events) == args.events
            del out
        # CPU time too: on a shared machine the wall clock also counts other jobs' turns.
        print(
            f"{spec.name:24s} {args.events:>12,d} events  {best:6.2f} s wall "
            f"({cpu_best:6.2f} s CPU)  {args.events / best / 1e6:6.2f} M events/s"
        )


if __name__ == "__main__":
    main()
