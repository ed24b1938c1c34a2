"""Every workload file, generated in every output format and read back: identical events.

`sheaftune generate` writes; :func:`sheaftune.readers.read_trace` (what `analyze` uses) reads.
Counts per event kind, CPU, cache and kmalloc size must be equal, and so must every timestamp,
call site, gfp value and pid; pointers must map one to one (ftrace text hashes them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sheaftune.cli import main
from sheaftune.events import EventTable, Op
from sheaftune.readers import read_trace
from sheaftune.synth.generate import generate
from sheaftune.synth.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = sorted((ROOT / "workloads").glob("*.yaml"))
FORMATS = ("npz", "ftrace", "report")
EVENTS = 3000


def run_cli(*argv: str) -> int:
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    return int(e.value.code or 0)


def test_the_issue_workloads_exist() -> None:
    names = {p.stem for p in WORKLOADS}
    assert {
        "maple-vma-churn",
        "will-it-scale-mmap2",
        "fork-storm",
        "kfree-rcu-heavy",
        "producer-consumer",
        "numa-remote-frees",
        "bulk-batches",
        "prefill-heavy",
    } <= names


@pytest.mark.parametrize("path", WORKLOADS, ids=[p.stem for p in WORKLOADS])
def test_workload_is_documented_and_generates(path: Path) -> None:
    text = path.read_text()
    header = text.split("\nworkload:", 1)[0]
    assert header.startswith("# "), "a workload starts with a comment block"
    assert "what it models" in header.lower()
    assert "where the numbers come from" in header.lower()
    spec = load_spec(path)
    g = generate(spec, seed=1, events=EVENTS)
    assert len(g.events) == EVENTS
    assert g.events.meta.extra["synth"]["workload"] == spec.name
    # scaled by --cpus: twice the CPUs, every one of them busy
    g2 = generate(spec, seed=1, cpus=spec.cpus * 2, events=EVENTS * 4)
    assert len(np.unique(g2.events.cpu)) == spec.cpus * 2


def _by_name(t: EventTable, op: Op) -> dict[str, int]:
    m = t.op == op
    ids, n = np.unique(t.cache_id[m], return_counts=True)
    return {t.caches[i]: int(k) for i, k in zip(ids.tolist(), n.tolist(), strict=True)}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("path", WORKLOADS, ids=[p.stem for p in WORKLOADS])
def test_generate_then_read_back(tmp_path: Path, path: Path, fmt: str) -> None:
    out = tmp_path / f"out.{fmt}"
    assert (
        run_cli(
            "generate",
            str(path),
            "-o",
            str(out),
            "--format",
            fmt,
            "--seed",
            "9",
            "--events",
            str(EVENTS),
        )
        == 0
    )
    want = generate(load_spec(path), seed=9, events=EVENTS).events
    got = read_trace(str(out))
    assert len(got) == len(want)
    assert got.events_by_type() == want.events_by_type()
    assert np.array_equal(np.bincount(got.cpu, minlength=64), np.bincount(want.cpu, minlength=64))
    for op in (Op.KMEM_CACHE_ALLOC, Op.KMEM_CACHE_FREE):
        assert _by_name(got, op) == _by_name(want, op)
    km = want.op == Op.KMALLOC
    assert np.array_equal(got.bytes_alloc[km], want.bytes_alloc[km])
    assert np.array_equal(got.bytes_req, want.bytes_req)
    assert np.array_equal(got.ts_ns, want.ts_ns)
    assert np.array_equal(got.op, want.op)
    assert np.array_equal(got.gfp, want.gfp)
    assert np.array_equal(got.pid, want.pid)
    got_sites = np.asarray(got.sites + ["?"], dtype=object)[got.site_id]
    want_sites = np.asarray(want.sites + ["?"], dtype=object)[want.site_id]
    assert np.array_equal(got_sites, want_sites)
    # pointers: the same where the format prints them; otherwise a one-to-one renaming
    pairs = set(zip(want.ptr.tolist(), got.ptr.tolist(), strict=True))
    assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})
    if fmt != "ftrace":
        assert np.array_equal(got.ptr, want.ptr)


def test_report_ns_stamps(tmp_path: Path) -> None:
    out = tmp_path / "ns.txt"
    path = ROOT / "workloads" / "producer-consumer.yaml"
    assert (
        run_cli(
            "generate", str(path), "-o", str(out), "--format", "report", "--ns", "--events", "500"
        )
        == 0
    )
    assert ".000000000: " in out.read_text() or "000: kmem" in out.read_text()
    got = read_trace(str(out))
    want = generate(load_spec(path), seed=0, events=500).events
    assert np.array_equal(got.ts_ns, want.ts_ns)
