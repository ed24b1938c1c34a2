"""Huge inputs: generate 1M, 10M and 50M-event traces and time `sheaftune analyze` on each.

For each size, ``sheaftune generate`` writes a native .npz (maple-vma-churn workload unless
--workload), then ``sheaftune analyze --format json -o ...`` runs on it in a child process; the
script prints wall time, events per second and the child's peak RSS (``ru_maxrss`` of the
waited-for child, one child per measurement so the maximum is that run's own). Events per second
that hold steady across sizes mean time linear in the event count; the target is 50M events
under 2 GB of peak RSS.

    .venv/bin/python benchmarks/bench_huge.py [--sizes 1e6,1e7,5e7] [--no-model] [--keep DIR]

The generated traces take ~45 bytes per event on disk (2.3 GB at 50M); they go to a temporary
folder removed at the end unless --keep names one.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_child(args: list[str]) -> tuple[float, int, int]:
    """Run ``python -m sheaftune ARGS``; (wall seconds, peak RSS bytes, exit code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sheaftune", *args], cwd=ROOT, stderr=subprocess.PIPE
    )
    # os.wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the max over all)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.stderr.write(err)
    return wall, usage.ru_maxrss * 1024, code


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e6,1e7,5e7", help="comma-separated event counts")
    ap.add_argument("--workload", default=str(ROOT / "workloads" / "maple-vma-churn.yaml"))
    ap.add_argument("--no-model", action="store_true", help="analyze --no-model (readers only)")
    ap.add_argument("--keep", default=None, help="keep the generated traces in this folder")
    args = ap.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    folder = args.keep or tempfile.mkdtemp(prefix="sheaftune-huge-")
    os.makedirs(folder, exist_ok=True)
    # warm-up: numba's compile cache, so the first size does not pay for compilation
    warm = os.path.join(folder, "warm.npz")
    run_child(["generate", args.workload, "--events", "20000", "-o", warm])
    run_child(["analyze", warm, "--format", "json", "-o", os.path.join(folder, "out.json")])
    print(
        f"{'events':>12} {'generate s':>10} {'gen RSS':>9} {'analyze s':>10} "
        f"{'events/s':>12} {'peak RSS':>9}"
    )
    try:
        for n in sizes:
            trace = os.path.join(folder, f"huge-{n}.npz")
            if not os.path.exists(trace):
                gen_s, gen_rss, code = run_child(
                    ["generate", args.workload, "--events", str(n), "-o", trace]
                )
                if code:
                    print(f"{n:>12,d} generate failed (exit {code})")
                    continue
            else:
                gen_s, gen_rss = float("nan"), 0
            cmd = ["analyze", trace, "--format", "json", "-o", os.path.join(folder, "out.json")]
            if args.no_model:
                cmd.insert(1, "--no-model")
            wall, rss, code = run_child(cmd)
            status = "" if code == 0 else f"  (exit {code})"
            print(
                f"{n:>12,d} {gen_s:>10.1f} {gen_rss / 2**30:>7.2f}GB {wall:>10.1f} "
                f"{n / wall:>12,.0f} {rss / 2**30:>7.2f}GB{status}",
                flush=True,
            )
    finally:
        if args.keep is None:
            for f in os.listdir(folder):
                os.unlink(os.path.join(folder, f))
            os.rmdir(folder)


if __name__ == "__main__":
    main()
