"""Start-up and output cost of the command line: what a run pays besides the analysis itself.

The package's bytecode is compiled first (``compileall``): a ``pip install .`` writes the .pyc
files, but an editable install under ``PYTHONDONTWRITEBYTECODE=1`` would otherwise compile every
module from source on every run and measure that instead. Then, each a fresh interpreter,
best and median of ``--repeat`` (wall and CPU time of the child, standard output to /dev/null):

1. ``python -c "import numpy"`` and ``python -c "import numpy, click"``: the floor;
2. ``sheaftune --version``, ``sheaftune analyze --help``;
3. ``sheaftune analyze TRACE --format json`` on the small and the large fixture;

then which optional heavy modules (rich, yaml, scipy, dask, matplotlib, numba) the JSON run of
the small trace imports (none should), and the CPU time of ``report.to_json`` on the large
fixture's record (best of 7, in this process).

    .venv/bin/python benchmarks/bench_startup.py [--repeat 9]
"""

from __future__ import annotations

import argparse
import compileall
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures"
SMALL = FIXTURES / "traces" / "kmalloc-small.v7zstd.dat"
LARGE = FIXTURES / "large" / "build.v7zstd.dat"
HEAVY = ("rich", "yaml", "scipy", "dask", "matplotlib", "numba")

IMPORTED = """
import runpy, sys
heavy = sys.argv[2:]
sys.argv = ["sheaftune", "analyze", sys.argv[1], "--format", "json", "-o", "/dev/null"]
try:
    runpy.run_module("sheaftune", run_name="__main__")
except SystemExit:
    pass
sys.stderr.write(" ".join(m for m in heavy if m in sys.modules) + "\\n")
"""


def timed(cmd: list[str], repeat: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system of the child) seconds of ``repeat`` runs, each sorted."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = os.times()
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, cwd=ROOT, check=True)
        walls.append(time.perf_counter() - t)
        after = os.times()
        cpus.append(
            after.children_user
            - before.children_user
            + after.children_system
            - before.children_system
        )
    return sorted(walls), sorted(cpus)


def line(label: str, cmd: list[str], repeat: int) -> None:
    w, c = timed(cmd, repeat)
    print(
        f"{label:40s} wall best {w[0] * 1e3:6.0f} ms, median {w[len(w) // 2] * 1e3:6.0f} ms;"
        f"  cpu best {c[0] * 1e3:6.0f} ms, median {c[len(c) // 2] * 1e3:6.0f} ms"
    )


def json_cost(trace: Path) -> float:
    """Best CPU seconds of ``to_json`` on the analysis of ``trace`` (default options)."""
    sys.path.insert(0, str(ROOT))
    from sheaftune.analysis.pipeline import analyze_table, load
    from sheaftune.cli.common import build_model_options
    from sheaftune.report import to_json

    model = build_model_options("7.3", (), "fast", "rcu", "prefill", 10.0, None)
    record = analyze_table(load(str(trace)), [], model)
    best = float("inf")
    for _ in range(7):
        t = time.process_time()
        to_json(record)
        best = min(best, time.process_time() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    # the `python -c` rows import numpy themselves: give them the setting `sheaftune` makes
    # before numpy loads (without it OpenBLAS starts a thread per core: twice the import's CPU)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    compileall.compile_dir(ROOT / "sheaftune", quiet=1)
    py = sys.executable
    st = [py, "-m", "sheaftune"]
    line("python -c 'import numpy'", [py, "-c", "import numpy"], args.repeat)
    line("python -c 'import numpy, click'", [py, "-c", "import numpy, click"], args.repeat)
    line("sheaftune --version", [*st, "--version"], args.repeat)
    line("sheaftune analyze --help", [*st, "analyze", "--help"], args.repeat)
    for trace in (SMALL, LARGE):
        if trace.exists():
            line(
                f"analyze {trace.name} --format json",
                [*st, "analyze", str(trace), "--format", "json"],
                max(3, args.repeat // 3 if trace is LARGE else args.repeat),
            )
    if SMALL.exists():
        out = subprocess.run(
            [py, "-c", IMPORTED, str(SMALL), *HEAVY], cwd=ROOT, capture_output=True, text=True
        )
        print(f"heavy modules imported by analyze --format json: {out.stderr.strip() or 'none'}")
    if LARGE.exists():
        print(f"report.to_json on {LARGE.name}: {json_cost(LARGE) * 1e3:.1f} ms CPU")


if __name__ == "__main__":
    main()
