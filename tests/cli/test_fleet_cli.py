"""``sheaftune fleet`` and many-trace ``analyze``: inputs (globs, @list), formats, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import fixture_path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "sheaftune" / "data" / "vma-small.dat"


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sheaftune", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, NO_COLOR="1", COLUMNS="120"),
        timeout=600,
        cwd=cwd,
    )


def test_fleet_json_table_csv(tmp_path: Path) -> None:
    a = tmp_path / "host-a.dat"
    b = tmp_path / "host-b.dat"
    shutil.copy(EXAMPLE, a)
    shutil.copy(fixture_path("traces/vma-small.v7zstd.dat"), b)
    (tmp_path / "fleet.txt").write_text("host-*.dat\n")
    p = run("fleet", "@fleet.txt", "--cache", "maple_node", "--format", "json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["schema"] == "sheaftune/fleet" and d["version"] == 1
    # list-file entries resolve against the list file's folder
    assert [os.path.basename(m) for m in d["machines"]] == ["host-a.dat", "host-b.dat"]
    c = d["caches"]["maple_node"]
    assert c["machines"] == 2 and sum(c["optima"].values()) == 2
    assert c["snippet"] == f".sheaf_capacity = {c['fleet_capacity']},"
    t = run("fleet", str(a), str(b), "--cache", "maple_node", "--jobs", "2")
    assert t.returncode == 0, t.stderr
    assert "maple_node" in t.stdout and "fleet cap" in t.stdout
    csv = run("fleet", str(a), str(b), "--cache", "maple_node", "--jobs", "1", "--format", "csv")
    assert csv.returncode == 0, csv.stderr
    lines = csv.stdout.splitlines()
    assert lines[0].startswith("cache,machine,recommended") and len(lines) == 3


def test_fleet_and_analyze_errors(tmp_path: Path) -> None:
    p = run("fleet", str(tmp_path / "*.dat"))
    assert p.returncode == 2 and "no file matches" in p.stderr
    p = run("fleet", str(fixture_path("traces/kmalloc-small.v7zstd.dat")), "--cache", "maple_node")
    assert p.returncode == 4 and "maple_node" in p.stderr
    p = run("analyze", str(EXAMPLE), "--jobs", "2", "--scheduler", "tcp://127.0.0.1:1")
    assert p.returncode == 2 and "exclude" in p.stderr
    p = run("analyze", "-", "--jobs", "2")
    assert p.returncode == 2 and "standard input" in p.stderr


def test_analyze_glob_on_local_workers_equals_one_process(tmp_path: Path) -> None:
    for n in ("a", "b"):
        shutil.copy(EXAMPLE, tmp_path / f"{n}.dat")
    args = ["analyze", "*.dat", "--capacity", "4,60", "--no-recommend", "--format", "json"]
    one = run(*args, "--jobs", "1", cwd=tmp_path)
    two = run(*args, "--jobs", "2", cwd=tmp_path)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    x, y = json.loads(one.stdout), json.loads(two.stdout)
    for d in (x, y):
        for a in d["analyses"]:
            a["trace"].pop("page_engine", None)
    assert x == y and len(x["analyses"]) == 2


def test_recommend_many_traces_is_the_fleet_report(tmp_path: Path) -> None:
    b = str(fixture_path("traces/vma-small.v7zstd.dat"))
    p = run(
        "recommend", str(EXAMPLE), b, "--cache", "maple_node", "--jobs", "2", "--format", "json"
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["schema"] == "sheaftune/fleet" and d["machines"] == [str(EXAMPLE), b]
    one = run("recommend", str(EXAMPLE), "--cache", "maple_node", "--format", "json")
    assert one.returncode == 0, one.stderr
    own = json.loads(one.stdout)["recommended"]
    assert d["caches"]["maple_node"]["per_machine"][0]["recommended"] == own
    p = run("recommend", str(EXAMPLE), b, "--workload", "x.yaml")
    assert p.returncode == 2 and "fleet report" in p.stderr


def test_compare_many_traces(tmp_path: Path) -> None:
    b = str(fixture_path("traces/vma-small.v7zstd.dat"))
    args = ["compare", "--engine", "fast", "--format", "json"]
    p = run(*args, str(EXAMPLE), b, "--jobs", "2")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["schema"] == "sheaftune/comparison-set"
    singles = []
    for t in (str(EXAMPLE), b):
        q = run(*args, t)
        assert q.returncode == 0, q.stderr
        singles.append(json.loads(q.stdout))
    got = d["comparisons"]
    for c in singles:
        c.pop("schema"), c.pop("version")
    assert got == singles
