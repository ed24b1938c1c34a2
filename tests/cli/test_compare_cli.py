"""``sheaftune compare`` and ``sheaftune costs`` at the CLI boundary: inputs, formats, cost
files, usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli_basics import one_line_error, run
from tests.conftest import ROOT, fixture_path


def test_synthetic_json_says_so_and_has_the_schema(tmp_path: Path):
    out = tmp_path / "cmp.json"
    p = run("compare", "--upper-bound", "30", "--used", "2", "--format", "json", "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""
    d = json.loads(out.read_text())
    assert d["schema"] == "sheaftune/comparison" and d["version"] == 1
    assert d["source"] == "synthetic"
    assert any(n.startswith("synthetic stream") for n in d["notes"])
    assert d["winner"] == "prefill"
    assert set(d["strategies"]) == {"prefill", "bulk"}
    assert d["strategies"]["prefill"]["cost_ns_per_op"] < d["strategies"]["bulk"]["cost_ns_per_op"]
    assert 0 < d["crossover_used_share"] < 1
    assert d["cpus_per_node"] == 4


def test_table_on_real_trace_with_cost_override(tmp_path: Path):
    costs = tmp_path / "costs.yaml"
    costs.write_text("bulk_object: 7.5\nhandoff: 40\n")
    trace = str(fixture_path("traces/vma-small.v7zstd.dat"))
    p = run("compare", trace, "--cache", "maple_node", "--costs", str(costs))
    assert p.returncode == 0, p.stderr
    assert "Prefill versus bulk: maple_node" in p.stdout
    assert "inferred from the trace" in p.stdout
    assert "cost per operation" in p.stdout and "crossover" in p.stdout
    p = run("compare", trace, "--costs", str(costs), "--format", "yaml", "--cpus", "16")
    assert p.returncode == 0, p.stderr
    assert "bulk_object: 7.5" in p.stdout
    assert "cpus_per_node: 16" in p.stdout


def test_workload():
    wl = str(ROOT / "workloads" / "prefill-heavy.yaml")
    p = run("compare", "--workload", wl, "--events", "4000", "--format", "json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["source"] == "workload"
    # upper bound 40 > capacity 32: every prefill is oversize, bulk wins
    assert d["operations"]["oversize_share"] == 1.0
    assert d["winner"] == "bulk"


@pytest.mark.parametrize(
    "args,words",
    [
        ((), ["--upper-bound", "--used"]),
        (("--upper-bound", "30"), ["--used"]),
        (("--used", "3"), ["--upper-bound"]),
        (("--upper-bound", "30", "--used", "lots"), ["--used", "uniform:A-B"]),
        (("--upper-bound", "30", "--used", "nosuch:1"), ["nosuch"]),
        (("x.dat", "--workload", "w.yaml"), ["not both"]),
        (("x.dat", "--used", "3"), ["--used"]),
        (("--ops", "p.tsv", "--upper-bound", "3", "--used", "1"), ["--ops"]),
        (("--upper-bound", "30", "--used", "2", "--plot", "x.pdf"), ["--plot", ".svg"]),
        (("--upper-bound", "0", "--used", "2"), ["--upper-bound"]),
        (("--upper-bound", "30", "--used", "2", "--format", "csv"), ["csv"]),
    ],
)
def test_bad_usage_exit_2(args, words):
    p = run("compare", *args)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr
    for w in words:
        assert w in p.stderr, p.stderr


def test_plot(tmp_path: Path):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        p = run("compare", "--upper-bound", "30", "--used", "2", "--plot", str(tmp_path / "a.svg"))
        one_line_error(p, 2, "matplotlib", "pip install")
        return
    out = tmp_path / "a.svg"
    p = run("compare", "--upper-bound", "30", "--used", "2", "--plot", str(out), "-o", "/dev/null")
    assert p.returncode == 0, p.stderr
    assert out.read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize(
    "content,words",
    [
        ("nosuch: 3\n", ["costs.yaml", "nosuch", "key"]),
        ("sheaf_fast: -1\n", ["costs.yaml", "key sheaf_fast", "non-negative"]),
        ("sheaf_fast: fast\n", ["costs.yaml", "key sheaf_fast"]),
        ("[1, 2]\n", ["costs.yaml", "mapping"]),
        ("a: [\n", ["costs.yaml", "invalid YAML"]),
    ],
)
@pytest.mark.parametrize("command", ["compare", "costs"])
def test_bad_cost_file_exit_3(tmp_path: Path, content, words, command):
    f = tmp_path / "costs.yaml"
    f.write_text(content)
    extra = ("--upper-bound", "30", "--used", "2") if command == "compare" else ()
    p = run(command, *extra, "--costs", str(f))
    one_line_error(p, 3, *words)


def test_missing_cost_file_exit_3(tmp_path: Path):
    p = run("costs", "--costs", str(tmp_path / "absent.yaml"))
    one_line_error(p, 3, "absent.yaml", "cannot read")


def test_costs_command(tmp_path: Path):
    p = run("costs")
    assert p.returncode == 0, p.stderr
    for word in ("sheaf_fast", "Brouer", "bulk_object", "Contention", "M/M/1"):
        assert word in p.stdout
    f = tmp_path / "c.yaml"
    f.write_text("barn_lock: 40\n")
    p = run("costs", "--costs", str(f), "--format", "json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["schema"] == "sheaftune/costs" and d["file"] == str(f)
    barn = next(c for c in d["costs"] if c["name"] == "barn_lock")
    assert barn["ns"] == 40.0 and barn["overridden"] and barn["default_ns"] == 26.2
    assert all(c["source"] for c in d["costs"])


def test_help_ends_with_examples():
    for cmd in ("compare", "costs"):
        p = run(cmd, "--help")
        assert p.returncode == 0
        tail = p.stdout.rstrip().splitlines()[-4:]
        assert tail[0].strip() == "Examples:", tail
        assert all(line.strip().startswith("sheaftune " + cmd) for line in tail[1:])


def test_capture_records_with_their_trace(tmp_path: Path):
    from sheaftune.events import save_native
    from sheaftune.synth.generate import generate
    from sheaftune.synth.spec import load_spec
    from tests.analysis.test_compare import prefill_records_for

    syn = generate(load_spec(str(ROOT / "workloads" / "maple-vma-churn.yaml")), events=3000)
    trace, records = tmp_path / "t.npz", tmp_path / "prefill.tsv"
    save_native(syn.events, trace)
    records.write_text(prefill_records_for(syn.ops, syn.events.caches))
    p = run("compare", str(trace), "--ops", str(records), "--format", "json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["source"] == "capture"
    assert d["operations"]["count"] == len(syn.ops)
    assert any("prefill.tsv" in n for n in d["notes"])
    p = run("compare", str(trace), "--ops", str(tmp_path / "absent.tsv"))
    one_line_error(p, 3, "absent.tsv")


def test_cache_without_prefill_operations_exit_4():
    trace = str(fixture_path("traces/vma-small.v7zstd.dat"))
    p = run("compare", trace, "--cache", "vm_area_struct")
    one_line_error(p, 4, "no prefill operation of vm_area_struct")
    p = run("compare", trace, "--cache", "no_such_cache")
    one_line_error(p, 4, "no_such_cache")
