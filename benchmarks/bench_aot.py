"""What ahead-of-time kernels (``sheaftune.compiled``) buy: start-up with and without numba.

Each line is a fresh interpreter, best of ``--repeat`` (after one warm-up that fills numba's
JIT cache and the AOT cache):

1. the first-run AOT build of the replay engine in an empty cache directory (``--build``;
   about a minute, once per machine and source version);
2. ``from sheaftune.model import fast`` plus one small replay: AOT build vs numba JIT (its
   on-disk cache warm), and whether numba got imported;
3. ``sheaftune analyze TRACE --format json > /dev/null`` with AOT kernels vs ``SHEAFTUNE_AOT=0``.

    .venv/bin/python benchmarks/bench_aot.py [TRACE.dat] [--repeat 3] [--build]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT.parent / "shared" / "fixtures" / "large" / "build.v7zstd.dat"

REPLAY = """
import sys, time
t0 = time.perf_counter()
import numpy as np
from sheaftune.model import fast
from sheaftune.model.plan import Plan
from sheaftune.params import ModelParams
t1 = time.perf_counter()
n = 1000
z = np.zeros(n, np.int64)
plan = Plan(np.arange(n, dtype=np.int64), np.zeros(n, np.uint8), np.zeros(n, np.uint16),
            np.arange(n, dtype=np.int64), z, np.full(n, -1, np.int64), np.zeros(0, np.int64),
            n, 0)
fast.run(plan, ModelParams(sheaf_capacity=4))
t2 = time.perf_counter()
print(t1 - t0, t2 - t1, 'numba' in sys.modules)
"""

BUILD = """
import time
from sheaftune import compiled
t = time.perf_counter()
k = compiled.kernels("sheaftune.model._engine_kernels")
print(time.perf_counter() - t, type(k).__name__)
"""


def py(code: str, **env: str) -> str:
    e = dict(os.environ, **env)
    out = subprocess.run(
        [sys.executable, "-c", code], env=e, capture_output=True, text=True, check=True
    )
    return out.stdout


def wall(cmd: list[str], **env: str) -> float:
    e = dict(os.environ, **env)
    t = time.perf_counter()
    subprocess.run(cmd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--build", action="store_true", help="also time a cold AOT build")
    a = ap.parse_args()

    if a.build:
        with tempfile.TemporaryDirectory() as d:
            secs, kind = py(BUILD, SHEAFTUNE_CACHE_DIR=d).split()
            print(f"first-run AOT build of the engine: {float(secs):.1f} s ({kind})")

    modes = {"AOT": {}, "JIT": {"SHEAFTUNE_AOT": "0"}}
    for name, env in modes.items():
        py(REPLAY, **env)  # warm-up: fills the caches
        runs = [py(REPLAY, **env).split() for _ in range(a.repeat)]
        imp = min(float(r[0]) for r in runs)
        first = min(float(r[1]) for r in runs)
        print(
            f"import fast + one replay, {name}: import {imp:.3f} s, first replay {first:.3f} s, "
            f"numba imported: {runs[0][2]}"
        )
    if a.trace.exists():
        cmd = [sys.executable, "-m", "sheaftune", "analyze", str(a.trace), "--format", "json"]
        for name, env in modes.items():
            wall(cmd, **env)
            best = min(wall(cmd, **env) for _ in range(a.repeat))
            print(f"analyze {a.trace.name} --format json, {name}: {best:.2f} s")
    else:
        print(f"{a.trace} is absent: analyze not timed")


if __name__ == "__main__":
    main()
