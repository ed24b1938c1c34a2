"""`analyze` on every real fixture equals the golden counts of the independent decoder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from sheaftune.analysis.pipeline import analyze_table, load
from tests.conftest import fixture_path, golden

# (trace, golden) pairs: every fixture format with the golden file that describes its events
CASES = [
    ("traces/vma-small.ftrace.txt", "traces/vma-small.golden.json"),
    ("traces/vma-small.report.txt", "traces/vma-small.golden.json"),
    ("traces/vma-small.v6.dat", "traces/vma-small.golden.json"),
    ("traces/vma-small.v7.dat", "traces/vma-small.golden.json"),
    ("traces/vma-small.v7zstd.dat", "traces/vma-small.golden.json"),
    ("traces/vma-small.perfscript.txt", "traces/vma-small.perfscript.golden.json"),
    ("traces/kmalloc-small.ftrace.txt", "traces/kmalloc-small.golden.json"),
    ("traces/kmalloc-small.v7zstd.dat", "traces/kmalloc-small.golden.json"),
    ("large/build.v7zstd.dat", "large/build.golden.json"),
    ("large/build.ftrace.txt.zst", "large/build.golden.json"),
]

# trace-formats.md pitfall 25: the kmalloc-small oracle says 0 NULL kfrees; the capture has 2994.
TRUE_KFREE_NULL = {"traces/kmalloc-small.golden.json": 2994}


@pytest.mark.parametrize("trace,gold", CASES, ids=[c[0] for c in CASES])
def test_analysis_equals_golden(trace: str, gold: str):
    g = golden(gold)
    a = analyze_table(load(str(fixture_path(trace)))).to_dict()
    tr = a["trace"]
    assert tr["events"] == g["events"]
    assert {k: v for k, v in tr["events_by_type"].items() if v} == g["by_event"]
    for name, kinds in g["by_cache"].items():
        got = a["caches"][name]["events_by_type"]
        for kind, n in kinds.items():
            assert got.get(kind, 0) == n, (name, kind)
        # alloc counts every allocation event of the cache; free adds attributed kfrees
        assert a["caches"][name]["alloc"] == kinds.get("kmem_cache_alloc", 0)
        assert a["caches"][name]["free"] >= kinds.get("kmem_cache_free", 0)
    # kmalloc events land in kmalloc caches by bytes_alloc
    by_size: Counter[str] = Counter()
    for st in a["caches"].values():
        if "kmalloc" in st["events_by_type"]:
            by_size[str(st["object_size"]["bytes_alloc"])] += st["events_by_type"]["kmalloc"]
    failed = a["normalization"]["failed_alloc"]
    assert sum(by_size.values()) + failed == g["by_event"].get("kmalloc", 0)
    if not failed:
        assert dict(by_size) == g.get("kmalloc_by_bytes_alloc", {})
    assert a["normalization"]["null_free"] == TRUE_KFREE_NULL.get(gold, g.get("kfree_null", 0))
    if "first_ts" in g:
        assert tr["first_ts"] == pytest.approx(g["first_ts"], abs=1e-6)
        assert tr["last_ts"] == pytest.approx(g["last_ts"], abs=1e-6)
    if "by_cpu" in g:
        assert tr["cpus"] == len(g["by_cpu"])


def test_maple_node_frees_are_invisible_in_vma_small():
    a = analyze_table(load(str(fixture_path("traces/vma-small.v7zstd.dat")))).to_dict()
    mn = a["caches"]["maple_node"]
    assert mn["invisible_frees"] is True and mn["free"] == 0
    assert mn["live_at_end"] + mn["unseen_free"] == mn["alloc"]
    assert a["caches"]["vm_area_struct"]["matched_free"] == 2208


def test_text_and_binary_forms_agree_on_every_statistic_but_pointers():
    """ftrace text (hashed pointers, µs) and trace.dat (raw pointers, ns) of one capture."""
    txt = analyze_table(load(str(fixture_path("traces/vma-small.ftrace.txt")))).to_dict()
    dat = analyze_table(load(str(fixture_path("traces/vma-small.v7zstd.dat")))).to_dict()
    for name in ("maple_node", "vm_area_struct"):
        a, b = txt["caches"][name], dat["caches"][name]
        for key in (
            "alloc",
            "free",
            "matched_free",
            "unseen_free",
            "live_at_end",
            "cross_cpu_free",
            "per_cpu",
            "nowait_share",
            "object_size",
        ):
            assert a[key] == b[key], (name, key)
        assert [s["site"] for s in a["alloc_sites"]] == [s["site"] for s in b["alloc_sites"]]


def test_analyze_cli_json_on_a_fixture():
    f = fixture_path("traces/vma-small.v7zstd.dat")
    p = subprocess.run(
        [sys.executable, "-m", "sheaftune", "analyze", str(f), "--format", "json"],
        capture_output=True,
        text=True,
        env=dict(os.environ, NO_COLOR="1"),
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["schema"] == "sheaftune/analysis" and d["caches"]["maple_node"]["alloc"] == 3100
