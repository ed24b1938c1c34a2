"""``sheaftune recommend``: formats, output file, plot, errors and exit codes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ, NO_COLOR="1", COLUMNS="120")
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "sheaftune", "recommend", *args],
        capture_output=True,
        text=True,
        env=e,
        timeout=600,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def ub_json() -> dict:
    p = run("--upper-bound", "13", "--cpus", "2", "--capacity", "120", "--format", "json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert p.stdout == json.dumps(d, sort_keys=True, indent=2) + "\n"
    return d


def test_json_is_versioned_and_complete(ub_json: dict) -> None:
    d = ub_json
    assert d["schema"] == "sheaftune/recommendation" and d["version"] == 1
    for key in ("cache", "recommended", "kernel_autotune", "candidates", "rationale", "snippet"):
        assert key in d
    assert d["cache"] == "maple_node" and d["snippet"] == f".sheaf_capacity = {d['recommended']},"
    caps = [c["capacity"] for c in d["candidates"]]
    assert 120 in caps and 32 in caps and set(caps) >= {4, 12, 28, 60, 124, 252, 508}
    c120 = next(c for c in d["candidates"] if c["capacity"] == 120)
    assert c120["wastes_bucket"] and c120["bucket_capacity"] == 124
    assert any("120 costs the sheaf memory of 124" in r for r in d["rationale"])
    for c in d["candidates"]:
        assert {"cost_ns_per_op", "bytes_per_cpu", "bytes_per_node", "fastpath_share"} <= set(c)


def test_table_yaml_and_output_file(tmp_path: Path, ub_json: dict) -> None:
    out = tmp_path / "rec.yaml"
    p = run("--upper-bound", "13", "--cpus", "2", "--capacity", "120", "--format", "yaml",
            "-o", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""
    assert yaml.safe_load(out.read_text()) == ub_json
    p = run("--upper-bound", "13", "--cpus", "2")
    assert p.returncode == 0, p.stderr
    assert f".sheaf_capacity = {ub_json['recommended']}," in p.stdout
    assert "7.3 autotuning gives 32" in p.stdout and "runner-up" in p.stdout
    assert "worst/node" in p.stdout


def test_memory_budget_limits_the_choice() -> None:
    p = run("--upper-bound", "13", "--cpus", "2", "--memory-budget", "300K", "--format", "json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    win = next(c for c in d["candidates"] if c["capacity"] == d["recommended"])
    assert d["memory_budget"] == 300 * 1024 and win["bytes_per_node"] <= 300 * 1024


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "give a TRACE, --workload, or --upper-bound"),
        (("a.dat", "--workload", "w.yaml"), "not both"),
        # several TRACEs are a fleet (docs/fleet.md): one recommendation per machine
        (("a.dat", "b.dat", "--workload", "w.yaml"), "fleet report"),
        (("--workload", "workloads/will-it-scale-mmap2.yaml", "--object-size", "64"), "demand"),
        (("--upper-bound", "13", "--memory-budget", "lots"), "--memory-budget"),
        (("--upper-bound", "13", "--capacity", "x"), "--capacity"),
        (("--upper-bound", "13", "--cpus", "2", "--nodes", "4"), "--nodes 4"),
        (("--upper-bound", "13", "--objective", "fastest"), "fastest"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], message: str) -> None:
    p = run(*args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert message in p.stderr


def test_unknown_workload_cache_is_a_usage_error() -> None:
    p = run("--workload", "workloads/will-it-scale-mmap2.yaml", "--cache", "kmalloc-64")
    assert p.returncode == 2 and "has no cache 'kmalloc-64'" in p.stderr


def test_plot_without_matplotlib_says_how_to_install(tmp_path: Path) -> None:
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib')\n")
    p = run("--upper-bound", "13", "--plot", str(tmp_path / "p.png"),
            env={"PYTHONPATH": f"{fake}{os.pathsep}{ROOT}"})  # fmt: skip
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0
    assert "pip install 'sheaftune[plot]'" in p.stderr
    assert not (tmp_path / "p.png").exists()


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
def test_plot_draws_a_png(tmp_path: Path) -> None:
    out = tmp_path / "p.png"
    p = run("--upper-bound", "13", "--cpus", "2", "--plot", str(out), "--format", "json")
    assert p.returncode == 0, p.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trace_input() -> None:
    from sheaftune.analysis.pipeline import example_path

    p = run(example_path(), "--cpus", "16", "--format", "json", "--engine", "reference")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["cpus_per_node"] == 16 and d["demand"]["kind"] == "trace"
    p = run(example_path(), "--cache", "no_such_cache")
    assert p.returncode == 4


def test_help_ends_with_examples_and_imports_nothing_heavy() -> None:
    p = run("--help")
    assert p.returncode == 0
    tail = p.stdout.rstrip().splitlines()
    assert any(line.strip() == "Examples:" for line in tail[-4:])
    assert all(line.strip().startswith("sheaftune recommend") for line in tail[-3:])
    code = (
        "import sys\n"
        "from sheaftune.cli import main\n"
        "try:\n"
        "    main(['recommend', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('numba', 'scipy', 'matplotlib') if m in sys.modules]\n"
        "sys.stderr.write(','.join(heavy))\n"
    )
    q = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert q.stderr == ""


def test_costs_file_and_time_objective(tmp_path: Path) -> None:
    costs = tmp_path / "costs.yaml"
    costs.write_text("barn_lock: 100\nhandoff: 50\n")
    p = run("--upper-bound", "13", "--cpus", "2", "--costs", str(costs), "--objective", "time",
            "--format", "json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["costs"]["barn_lock"] == 100.0 and d["objective"] == "time"
    fastest = min(d["candidates"], key=lambda c: (c["cost_ns_per_op"], c["capacity"]))
    assert d["recommended"] == fastest["capacity"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("no_such_cost: 1\n")
    assert run("--upper-bound", "13", "--costs", str(bad)).returncode == 3
