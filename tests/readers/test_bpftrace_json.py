"""The ``bpftrace -f json`` reader on real output of our kmem-tsv script (tests/data/bpftrace),
held equal to the plain kmem-tsv reader on the same lines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sheaftune.errors import InputError
from sheaftune.events import COLUMNS
from sheaftune.readers.base import ReadOptions, Source

bpftrace = pytest.importorskip("sheaftune.readers.bpftrace")
from sheaftune.readers.bpftrace_json import BpftraceJsonReader  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data" / "bpftrace"


def read_json(path: Path, salvage: bool = False):  # type: ignore[no-untyped-def]
    return BpftraceJsonReader().read(Source(str(path)), ReadOptions(salvage=salvage))


def test_sniff() -> None:
    r = BpftraceJsonReader()
    assert r.sniff(Source(str(DATA / "vma-kmem-tsv.json")).head)
    assert not r.sniff(Source(str(DATA / "vma-kmem-tsv.txt")).head)
    assert not bpftrace.BpftraceReader().sniff(Source(str(DATA / "vma-kmem-tsv.json")).head)
    assert not r.sniff(b'{"type": "printf", "data": "hello\\n"}\n')


def test_real_json_capture() -> None:
    t = read_json(DATA / "vma-kmem-tsv.json")
    assert t.meta.format == "bpftrace-json"
    assert len(t) == 400
    assert t.events_by_type() == {
        "kmem_cache_alloc": 212,
        "kmem_cache_free": 63,
        "kmalloc": 12,
        "kfree": 113,
    }
    assert set(t.caches) == {"maple_node", "vm_area_struct"}
    assert bool(np.all(np.diff(t.ts_ns) >= 0))  # sorted although the CPUs interleave
    assert "python3" in t.comms


def test_equal_to_the_text_reader(tmp_path: Path) -> None:
    """The text capture wrapped as bpftrace -f json would wrap it reads identically."""
    text_path = DATA / "vma-kmem-tsv.txt"
    wrapped = tmp_path / "wrapped.json"
    with open(text_path, encoding="utf-8") as src, open(wrapped, "w", encoding="utf-8") as out:
        out.write(json.dumps({"type": "attached_probes", "data": {"probes": 5}}) + "\n")
        for line in src:
            if line.startswith("Attaching") or not line.strip():
                continue
            out.write(json.dumps({"type": "printf", "data": line}) + "\n")
        out.write(json.dumps({"type": "lost_events", "data": {"events": 7}}) + "\n")
        out.write(json.dumps({"type": "map", "data": {"@x": 1}}) + "\n")
    a = bpftrace.BpftraceReader().read(Source(str(text_path)), ReadOptions())
    b = read_json(wrapped)
    for name in COLUMNS:
        assert np.array_equal(a.columns[name], b.columns[name]), name
    assert (a.caches, a.sites, a.comms) == (b.caches, b.sites, b.comms)
    assert sum(b.meta.lost_events.values()) == 7
    assert b.meta.skipped.get("bpftrace map record") == 1


def test_malformed_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    lines = (DATA / "vma-kmem-tsv.json").read_text().splitlines(keepends=True)
    bad.write_text("".join(lines[:10]) + '{"type": "printf", "data": \n' + "".join(lines[10:]))
    with pytest.raises(InputError, match="line 11"):
        read_json(bad)
    t = read_json(bad, salvage=True)
    assert t.meta.skipped.get("malformed JSON line") == 1
    assert len(t) == 400
