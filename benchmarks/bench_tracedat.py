"""Time sheaftune's native trace.dat reader against ``trace-cmd report``, side by side.

For the large fixture (trace-cmd v7 + zstd, 715k kmem events) and its v6 conversion, runs

* ``trace-cmd report FILE > /dev/null`` (the oracle we must beat tenfold),
* ``python -m sheaftune analyze FILE --format json > /dev/null`` (read, normalise, characterise,
  replay every cache, recommend for the five largest), and the same with ``--no-recommend``,
* the reader alone (``read_trace`` in a fresh interpreter, plus a JSON dump of its counts),
* the reader warm, in-process (best of 5 ``read_trace`` calls after one; CPU time is of all
  its threads),

each in a fresh process, best of ``--repeat`` runs after one warm-up (which fills numba's cache),
and prints wall times, the ratios, events per second and each process's peak RSS.

    .venv/bin/python benchmarks/bench_tracedat.py [TRACE.dat] [--repeat N]

trace-cmd is installed with ``apt-get install -y trace-cmd`` when missing (needs root); without
it the script still times sheaftune and says what it could not measure.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT.parent / "shared" / "fixtures" / "large" / "build.v7zstd.dat"

READER_ONLY = """
import json, sys
import numpy as np
from sheaftune.readers import read_trace
t = read_trace(sys.argv[1])
counts = {"events": len(t), "by_event": t.events_by_type(),
          "by_cpu": {int(c): int(n) for c, n in enumerate(np.bincount(t.cpu))}}
json.dump(counts, sys.stdout)
"""

#: the reader alone, warm and in-process (what the CLI's read costs once Python and the
#: compiled kernels are loaded): best wall and CPU seconds of N reads after one warm-up
READER_WARM = """
import json, sys, time
from sheaftune.readers import read_trace
read_trace(sys.argv[1])
runs = []
for _ in range(int(sys.argv[2])):
    t0, c0 = time.perf_counter(), time.process_time()
    read_trace(sys.argv[1])
    runs.append((time.perf_counter() - t0, time.process_time() - c0))
json.dump([min(r[0] for r in runs), min(r[1] for r in runs), "numba" in sys.modules], sys.stdout)
"""


def ensure_trace_cmd() -> str | None:
    path = shutil.which("trace-cmd")
    if path:
        return path
    print("trace-cmd not found: apt-get install -y trace-cmd", file=sys.stderr)
    try:
        subprocess.run(
            ["apt-get", "install", "-y", "trace-cmd"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=600,
        )
    except (OSError, subprocess.SubprocessError) as e:
        print(f"could not install trace-cmd: {e}", file=sys.stderr)
        return None
    return shutil.which("trace-cmd")


def run_timed(cmd: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds (user+sys), peak RSS in KiB) of one child, stdout discarded.

    CPU time is reported beside wall time because it barely moves when other processes load
    the machine, while wall time does."""
    with open(os.devnull, "wb") as null:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=null, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {err.strip().splitlines()[-1:]}")
    return wall, usage.ru_utime + usage.ru_stime, int(usage.ru_maxrss)


def best(cmd: list[str], repeat: int, warmup: bool = True) -> tuple[float, float, int]:
    """Best wall and best CPU time of ``repeat`` runs, and the largest peak RSS."""
    if warmup:
        run_timed(cmd)
    runs = [run_timed(cmd) for _ in range(repeat)]
    return min(r[0] for r in runs), min(r[1] for r in runs), max(r[2] for r in runs)


def count_events(path: Path) -> int:
    out = subprocess.run(
        [sys.executable, "-c", READER_ONLY, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(json.loads(out)["events"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace", nargs="?", default=str(DEFAULT))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    # the `python -c` rows import numpy themselves: give them the setting `sheaftune` makes
    # before numpy loads (without it OpenBLAS starts a thread per core: twice the import's CPU)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    src = Path(args.trace)
    if not src.exists():
        raise SystemExit(f"{src}: no such file (the large fixture lives in ../shared/fixtures)")
    tc = ensure_trace_cmd()
    py = sys.executable
    # as a pip install leaves it: bytecode compiled (PYTHONDONTWRITEBYTECODE=1 or a read-only
    # tree would otherwise compile every module from source on every run)
    compileall.compile_dir(ROOT / "sheaftune", quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        files = [("as given", src)]
        if tc:
            v6 = Path(tmp) / (src.stem + ".v6.dat")
            subprocess.run(
                [
                    tc,
                    "convert",
                    "-i",
                    str(src),
                    "-o",
                    str(v6),
                    "--file-version",
                    "6",
                    "--compression",
                    "none",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            files.append(("v6 conversion", v6))
        else:
            print("(no trace-cmd: no v6 conversion and no trace-cmd timings)")
        print(
            f"{'file':<14} {'events':>7} {'tool':<32} {'wall s':>7} {'x':>5} {'cpu s':>6} "
            f"{'x':>5} {'Mev/s':>6} {'RSS MiB':>8}"
        )
        for label, path in files:
            events = count_events(path)
            rows: list[tuple[str, float, float, int]] = []
            ref: tuple[float, float] | None = None
            if tc:
                w, c, rss = best([tc, "report", str(path)], args.repeat, warmup=False)
                ref = (w, c)
                rows.append(("trace-cmd report > /dev/null", w, c, rss))
            try:
                w, c, rss = best(
                    [py, "-m", "sheaftune", "analyze", str(path), "--format", "json"], args.repeat
                )
                rows.append(("sheaftune analyze --format json", w, c, rss))
                w, c, rss = best(
                    [py, "-m", "sheaftune", "analyze", str(path), "--format", "json",
                     "--no-recommend"],
                    args.repeat,
                )  # fmt: skip
                rows.append(("  the same, --no-recommend", w, c, rss))
            except RuntimeError as e:  # the analyze command is someone else's moving part
                print(f"{label:<14} sheaftune analyze failed, not timed: {e}")
            w, c, rss = best([py, "-c", READER_ONLY, str(path)], args.repeat)
            rows.append(("sheaftune reader + json counts", w, c, rss))
            warm = subprocess.run(
                [py, "-c", READER_WARM, str(path), "5"], check=True, capture_output=True, text=True
            )
            ww, wc, numba_loaded = json.loads(warm.stdout)
            label_warm = "read_trace warm in-process" + (" (numba)" if numba_loaded else "")
            rows.append((label_warm, ww, wc, 0))
            for tool, wall, cpu, rss in rows:
                rw = f"{ref[0] / wall:5.1f}" if ref else f"{'-':>5}"
                rc = f"{ref[1] / cpu:5.1f}" if ref else f"{'-':>5}"
                mem = f"{rss / 1024:8.1f}" if rss else f"{'-':>8}"
                print(
                    f"{label:<14} {events:>7} {tool:<32} {wall:7.3f} {rw} {cpu:6.3f} {rc} "
                    f"{events / wall / 1e6:6.2f} {mem}"
                )
        sizes = ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for _, p in files)
        print(
            f"(best of {args.repeat}; x = trace-cmd's time / this time, wall and CPU; "
            f"target: analyze 10x; {sizes}; load average {os.getloadavg()[0]:.1f})"
        )


if __name__ == "__main__":
    main()
