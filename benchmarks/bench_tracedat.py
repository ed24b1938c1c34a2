"""Time sheaftune's native trace.dat reader against ``trace-cmd report``, side by side.

For the large fixture (trace-cmd v7 + zstd, 715k kmem events) and its v6 conversion, runs

* ``trace-cmd report FILE > /dev/null`` (the oracle we must beat tenfold),
* ``sheaftune analyze FILE --format json > /dev/null`` (read, normalise, characterise, replay
  every cache, recommend for the five largest): the command the user types, the ``sheaftune``
  console script beside the interpreter (``python -m sheaftune`` when there is none, as in a
  source tree without an install); the same with ``--no-recommend``, and as ``python -m
  sheaftune`` (whose ``runpy`` costs a few ms more),
* the reader alone (``read_trace`` in a fresh interpreter, plus a JSON dump of its counts),
* the reader warm, in-process (best of 5 ``read_trace`` calls after one; CPU time is of all
  its threads),

each in a fresh process, ``--repeat`` rounds after one warm-up run of each (which fills the
page cache and the kernel caches); every round runs each command once, in turn, so that all of
them see the same moments of a machine whose speed drifts (a VM's does, by tens of percent over
minutes). It prints the best wall and CPU times and the median wall time of each, the ratios to
trace-cmd's, events per second, each process's peak RSS, and which sheaftune it timed: run it
with the interpreter of an install as the README makes it (``pip install .``), since an
editable install's import hook adds some 10 ms to every start-up.

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
import statistics
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


def interleaved(
    cmds: dict[str, list[str]], repeat: int, cold: tuple[str, ...] = ()
) -> dict[str, tuple[float, float, int, float]]:
    """Each command ``repeat`` times, taking them in turn (one run of each per round, so that
    every command sees the same moments of a machine whose speed drifts; their ratio is what
    counts): best wall, best CPU, largest peak RSS and median wall of each. Commands not named
    in ``cold`` run once first, unmeasured (page cache, compiled kernels)."""
    for name, cmd in cmds.items():
        if name not in cold:
            run_timed(cmd)
    runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in cmds}
    for _ in range(repeat):
        for name, cmd in cmds.items():
            runs[name].append(run_timed(cmd))
    return {
        name: (
            min(r[0] for r in rs),
            min(r[1] for r in rs),
            max(r[2] for r in rs),
            statistics.median(r[0] for r in rs),
        )
        for name, rs in runs.items()
    }


def _console_script() -> list[str] | None:
    """The ``sheaftune`` console script of this interpreter's install (beside it, as pip puts
    it), or None."""
    script = Path(sys.executable).with_name("sheaftune")
    return [str(script)] if os.access(script, os.X_OK) else None


def _installed() -> str:
    """Which sheaftune ``python -m sheaftune`` runs, and whether it is an editable install
    (whose import hook costs every start-up some 10 ms that a ``pip install .`` does not)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, sheaftune; print(sheaftune.__file__); "
            "print(any('editable' in type(f).__module__ for f in sys.meta_path))",
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    if len(out) != 2:
        return "unknown"
    return f"{out[0]}" + (" (with an editable install's import hook)" if out[1] == "True" else "")


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
    # before numpy loads (without it OpenBLAS starts a thread per core: twice the import's CPU;
    # numpy's huge pages cost several ms each on a VM, see sheaftune.heap)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
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
            f"{'x':>5} {'median':>7} {'x':>5} {'Mev/s':>6} {'RSS MiB':>8}"
        )
        for label, path in files:
            events = count_events(path)
            cmds: dict[str, list[str]] = {}
            if tc:
                cmds["trace-cmd report > /dev/null"] = [tc, "report", str(path)]
            as_module = [py, "-m", "sheaftune"]
            analyze = [*(_console_script() or as_module), "analyze", str(path), "--format", "json"]
            cmds["sheaftune analyze --format json"] = analyze
            cmds["  the same, --no-recommend"] = [*analyze, "--no-recommend"]
            if analyze[0] != py:
                cmds["  the same, python -m sheaftune"] = [*as_module, *analyze[1:]]
            cmds["sheaftune reader + json counts"] = [py, "-c", READER_ONLY, str(path)]
            try:
                timed = interleaved(cmds, args.repeat, cold=("trace-cmd report > /dev/null",))
            except RuntimeError as e:  # the analyze command is someone else's moving part
                print(f"{label:<14} a command failed, not timed: {e}")
                continue
            rows: list[tuple[str, float, float, int, float]] = [
                (name, *t) for name, t in timed.items()
            ]
            ref = timed.get("trace-cmd report > /dev/null")
            warm = subprocess.run(
                [py, "-c", READER_WARM, str(path), "5"], check=True, capture_output=True, text=True
            )
            ww, wc, numba_loaded = json.loads(warm.stdout)
            label_warm = "read_trace warm in-process" + (" (numba)" if numba_loaded else "")
            rows.append((label_warm, ww, wc, 0, 0.0))
            for tool, wall, cpu, rss, med in rows:
                rw = f"{ref[0] / wall:5.1f}" if ref else f"{'-':>5}"
                rc = f"{ref[1] / cpu:5.1f}" if ref else f"{'-':>5}"
                rm = f"{ref[3] / med:5.1f}" if ref and med else f"{'-':>5}"
                mem = f"{rss / 1024:8.1f}" if rss else f"{'-':>8}"
                print(
                    f"{label:<14} {events:>7} {tool:<32} {wall:7.3f} {rw} {cpu:6.3f} {rc} "
                    f"{med:7.3f} {rm} {events / wall / 1e6:6.2f} {mem}"
                )
        sizes = ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for _, p in files)
        print(
            f"(best and median of {args.repeat} rounds, the commands taken in turn in each; x = "
            f"trace-cmd's time / this time; target: analyze 10x; {sizes}; load average "
            f"{os.getloadavg()[0]:.1f})"
        )
        script = _console_script()
        print(
            f"(sheaftune timed: {_installed()}, run as "
            f"{script[0] if script else f'{py} -m sheaftune'})"
        )


if __name__ == "__main__":
    main()
