"""Scaling of a 16-trace capacity sweep with 1, 2 and 4 local worker processes.

The sweep is ``sheaftune analyze`` over 16 traces (the 8 workload files, 2 seeds each,
``--events`` visible events per trace) at the bucket capacities: one trace unit per trace, then
one replay unit per (trace, cache, capacity). Each worker count is timed end to end (pool
start-up, every worker's import of numba and load of the compiled engine included), best of
``--repeat`` runs; the results of every run are checked equal to the 1-process run.

    .venv/bin/python benchmarks/bench_fleet.py [--events 200000] [--jobs 1,2,4] [--repeat 1]

Beside each worker count, a control: the speed-up of the same number of pure busy loops in
as many processes, i.e. the parallelism the machine gives at that moment (on a shared machine,
other jobs take their share of the cores).

On a machine with P cores, expect the wall time to fall with the workers up to P and to stay
flat beyond (the extra processes wait for a core); the ratio to 1 process stays under the
worker count because each worker pays its start-up once and the trace units run before the
replay units.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sheaftune.analysis.distribute import (  # noqa: E402
    LocalExecutor,
    SerialExecutor,
    analyze_many,
    trace_inputs,
)
from sheaftune.analysis.pipeline import ModelOptions, analyze_table, load  # noqa: E402
from sheaftune.analysis.sweep import parse_capacities  # noqa: E402


def _traces(folder: Path, events: int) -> list[str]:
    from sheaftune.events import save_native
    from sheaftune.synth.generate import generate
    from sheaftune.synth.spec import load_spec

    out = []
    for seed in (1, 2):
        for f in sorted((ROOT / "workloads").glob("*.yaml")):
            p = folder / f"{f.stem}-{seed}.npz"
            save_native(generate(load_spec(str(f)), seed=seed, events=events).events, str(p))
            out.append(str(p))
    return out


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the pool's workers)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _busy(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def _control(jobs: int) -> float:
    """Speed-up of ``jobs`` pure-Python busy loops in ``jobs`` processes over one process:
    how much parallelism this machine gives right now (other jobs share its cores)."""
    n = [3_000_000] * (2 * jobs)
    t0 = time.perf_counter()
    SerialExecutor().map(_busy, n)
    one = time.perf_counter() - t0
    with LocalExecutor(jobs) as ex:
        t0 = time.perf_counter()
        ex.map(_busy, n)
        many = time.perf_counter() - t0
    return one / many


def _plain(analyses: list) -> list[dict]:
    out = []
    for a in analyses:
        d = a.to_dict()
        d["trace"].pop("page_engine", None)  # how the reading process walked pages
        out.append(d)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--jobs", default="1,2,4", help="worker counts; 1 must come first")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    model = ModelOptions(capacities=parse_capacities(["buckets"]))
    with tempfile.TemporaryDirectory() as tmp:
        paths = _traces(Path(tmp), args.events)
        inputs = trace_inputs(paths)
        # warm-up in this process: numba's cached compile, so no run pays for it
        analyze_many(inputs[:1], SerialExecutor(), (), model)
        # on a shared machine the wall clock also counts other jobs' turns: say how busy it is
        print(
            f"{len(paths)} traces x {args.events:,d} events, bucket capacities; "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
        )
        base_result = None
        base_time = None
        for jobs in [int(j) for j in args.jobs.split(",")]:
            best = cpu = float("inf")
            units = 0
            for _ in range(args.repeat):
                t0, c0 = time.perf_counter(), _cpu()
                if jobs == 1:
                    # what `analyze --jobs 1` runs: each trace read once, in this process
                    got = _plain([analyze_table(load(p), [], model) for p in paths])
                else:
                    with LocalExecutor(jobs) as ex:
                        got = _plain(analyze_many(inputs, ex, (), model))
                best = min(best, time.perf_counter() - t0)
                cpu = min(cpu, _cpu() - c0)
                units = sum(
                    len(c["replay"]["replays"])
                    for a in got
                    for c in a["caches"].values()
                    if "replay" in c
                )
                if base_result is None:
                    base_result = got
                else:
                    assert got == base_result, f"--jobs {jobs} differs from the 1-process run"
            base_time = base_time or best
            control = f"; busy-loop control x{_control(jobs):4.2f}" if jobs > 1 else ""
            print(
                f"  {jobs} worker process(es): {best:7.2f} s wall ({cpu:7.2f} s CPU)  "
                f"x{base_time / best:4.2f} against 1  ({len(paths)} trace units, "
                f"{units} replay units{control})"
            )


if __name__ == "__main__":
    main()
