"""Every trace.dat fixture cut short: never a truncated trace that reads as complete.

Each file is cut at page boundaries and at seeded random offsets (every boundary of the small
fixtures; a sample of the big ones, whose full sweep is ``benchmarks/bench_huge.py``'s job to
time, not the test suite's). Without salvage every cut is an InputError naming the file and a
byte offset; with salvage a cut is either still refused (the metadata is gone) or read as a
partial table marked ``complete: False``, and once the metadata is whole, a longer file never
yields fewer events.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sheaftune.errors import InputError
from sheaftune.readers import ReadOptions, read_trace
from tests.conftest import FIXTURES, ROOT
from tests.hardening.conftest import one_error_line, run_cli

SMALL = sorted((FIXTURES / "edge").glob("*.dat")) + [ROOT / "sheaftune" / "data" / "vma-small.dat"]
BIG = [
    FIXTURES / "traces" / "vma-small.v6.dat",
    FIXTURES / "traces" / "vma-small.v7.dat",
    FIXTURES / "traces" / "kmalloc-small.v7zstd.dat",
    FIXTURES / "large" / "build.v7zstd.dat",
]
PAGE = 4096


def cut_offsets(size: int, sample: int | None, seed: int) -> list[int]:
    """Page boundaries (all, or ``sample`` of them) plus random offsets, all inside the file."""
    rng = np.random.default_rng(seed)
    pages = list(range(PAGE, size, PAGE))
    if sample is not None and len(pages) > sample:
        pages = sorted(rng.choice(pages, sample, replace=False).tolist())
    randoms = rng.integers(1, size, 12 if sample is None else sample // 2).tolist()
    # a compressed v7 file is smaller than a few pages: cut it every 512 bytes as well
    extra = list(range(512, size, 512)) if size < 4 * PAGE else []
    return sorted(set(pages + randoms + extra + [size - 1]))


def sweep(path: Path, tmp_path: Path, sample: int | None) -> None:
    data = path.read_bytes()
    full = len(read_trace(str(path)))
    cut = tmp_path / f"cut-{path.name}"
    accepted_from: int | None = None
    last_events = 0
    for off in cut_offsets(len(data), sample, seed=len(data)):
        cut.write_bytes(data[:off])
        with pytest.raises(InputError) as err:
            read_trace(str(cut))
        msg = str(err.value)
        assert msg.startswith(f"{cut}: ") and "offset" in msg and "\n" not in msg, (off, msg)
        try:
            t = read_trace(str(cut), options=ReadOptions(salvage=True))
        except InputError:
            assert accepted_from is None, (
                f"salvage refused a cut at {off} but read one at {accepted_from}"
            )
            continue
        assert not t.meta.complete, off
        assert t.meta.warnings, off
        assert len(t) <= full
        assert len(t) >= last_events, f"cut at {off} gave fewer events than a shorter cut"
        accepted_from = accepted_from if accepted_from is not None else off
        last_events = len(t)
    assert accepted_from is not None, "salvage never read anything"


@pytest.mark.parametrize("path", SMALL, ids=[p.name for p in SMALL])
def test_small_trace_dat_cut_everywhere(tmp_path: Path, path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} is absent")
    sweep(path, tmp_path, sample=None)


@pytest.mark.parametrize("path", BIG, ids=[p.name for p in BIG])
def test_big_trace_dat_cut_at_a_sample(tmp_path: Path, path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} is absent")
    sweep(path, tmp_path, sample=10)


def test_cli_cut_trace(tmp_path: Path) -> None:
    src = FIXTURES / "traces" / "vma-small.v6.dat"
    if not src.exists():
        pytest.skip(f"{src} is absent")
    cut = tmp_path / "cut.dat"
    cut.write_bytes(src.read_bytes()[:7_500_000])
    r = run_cli("analyze", "--no-model", str(cut))
    assert r.returncode == 3
    line = one_error_line(r.stderr)
    assert str(cut) in line and "offset" in line
    out = tmp_path / "salvaged.json"
    r = run_cli("analyze", "--no-model", "--salvage", "--format", "json", "-o", str(out), str(cut))
    assert r.returncode == 0, r.stderr
    assert "incomplete" in r.stderr and "Traceback" not in r.stderr
    report = json.loads(out.read_text())
    assert report["complete"] is False
