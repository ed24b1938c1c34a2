"""``sheaftune simulate``: formats, output file, errors and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from sheaftune.model.scenario import simulate_file

SCN = Path(__file__).resolve().parents[1] / "data" / "scenarios"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="120")
    return subprocess.run(
        [sys.executable, "-m", "sheaftune", "simulate", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_json_is_the_record_sorted() -> None:
    path = SCN / "p_prefill_api.yaml"
    p = run(str(path), "--format", "json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d == simulate_file(path).to_dict()
    assert list(d) == sorted(d)
    assert d["schema"] == "sheaftune/simulation" and d["version"] == 1
    assert set(d) == {
        "schema",
        "version",
        "kernel",
        "capacity",
        "counters",
        "cpus",
        "barns",
        "prefilled",
    }
    assert d["prefilled"] == {"c": 9, "e": 4, "f": 4}
    assert p.stdout == json.dumps(d, sort_keys=True, indent=2) + "\n"


def test_yaml_and_output_file(tmp_path: Path) -> None:
    out = tmp_path / "r.yaml"
    p = run(str(SCN / "x5_nowait_618.yaml"), "--format", "yaml", "-o", str(out))
    assert p.returncode == 0 and p.stdout == ""
    d = yaml.safe_load(out.read_text())
    assert d["kernel"] == "6.18" and d["counters"]["alloc_cpu_sheaf"] == 5


def test_table_shows_counters_cpus_barns() -> None:
    p = run(str(SCN / "k_kfree_rcu_batch.yaml"))
    assert p.returncode == 0, p.stderr
    for word in ("free_rcu_sheaf", "barn_get", "rcu_free", "Barns", "Linux 7.3, capacity 4"):
        assert word in p.stdout


def test_invalid_scenario_exits_3_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenario: 1\nops:\n  - [0, free, 1]\n")
    p = run(str(bad))
    assert p.returncode == 3
    assert p.stderr.count("\n") == 1
    assert "bad.yaml: line 3, ops[0]" in p.stderr


def test_help_ends_with_examples() -> None:
    p = run("--help")
    assert p.returncode == 0
    assert p.stdout.rstrip().splitlines()[-4].strip() == "Examples:"
