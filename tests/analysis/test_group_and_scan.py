"""``cache_rows_counted``'s one pass (``group_and_scan``) gives every cache exactly the scan
``CacheCommands`` makes of its rows alone, and ``analyze``'s replays take those scans.

The pass shares one table of recent allocations between all the caches, so the tests also run
it with a tiny table, where most frees must search their cache's allocations instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sheaftune.analysis import pipeline, tracereplay
from sheaftune.analysis.tracereplay import CacheCommands, ReplayPolicy, cache_rows_counted
from sheaftune.events import EventTable
from sheaftune.normalize import normalize
from sheaftune.readers import read_trace

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
TRACES = [
    "traces/vma-small.v7zstd.dat",
    "traces/kmalloc-small.v7zstd.dat",
    "traces/vma-small.ftrace.txt",
    "large/build.v7zstd.dat",
]

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} (../shared) is absent")


@pytest.fixture(scope="module", params=TRACES)
def table(request: pytest.FixtureRequest) -> EventTable:
    return read_trace(str(SHARED / request.param))


def _alone(
    table: EventTable, cache: str, rows: np.ndarray, policy: ReplayPolicy | None = None
) -> CacheCommands:
    """The cache's commands from a normalisation that never ran the one pass."""
    return CacheCommands(normalize(table), cache, policy or ReplayPolicy(), rows.copy())


def _same(a: CacheCommands, b: CacheCommands) -> None:
    for name in ("allocs", "matched", "matched_slot", "kf_r", "kf_slot", "pop_rows", "fr"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert (a.counts(), a.assumptions, a.slot) == (b.counts(), b.assumptions, b.slot)


@pytest.mark.parametrize("bits", [tracereplay.SCAN_RECENT_BITS, 1])
def test_one_pass_scans_equal_each_cache_scanned_alone(
    table: EventTable, bits: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracereplay, "SCAN_RECENT_BITS", bits)
    norm = normalize(table)
    rows, allocs = cache_rows_counted(norm)
    scans = dict(norm.__dict__["_cache_scans"])  # (CacheCommands takes its cache's)
    assert set(scans) == set(norm.table.caches)
    searched = 0
    for cache, (r, alloc_rows, matched, mslot, counters) in scans.items():
        assert r is rows[cache]
        alone = _alone(table, cache, r)
        assert np.array_equal(alloc_rows, alone.allocs)
        assert np.array_equal(matched, alone.matched)
        assert np.array_equal(mslot, alone.matched_slot)
        allocs_alone, *_, counters_alone = alone._scan(normalize(table), r, norm.reused_by)
        assert counters == counters_alone
        assert allocs.get(cache, 0) == len(alloc_rows)
        searched += len(matched)
        # the commands made from the pass's scan are those made from the rows alone, and so
        # are those of a second CacheCommands (the scan was taken: it scans again)
        _same(CacheCommands(norm, cache, ReplayPolicy(), r), alone)
        assert cache not in norm.__dict__["_cache_scans"]
        _same(CacheCommands(norm, cache, ReplayPolicy(), r), alone)
    assert searched > 0


def test_other_rows_are_scanned_anew(table: EventTable) -> None:
    """A scan is taken only for the very rows the pass grouped; other rows (a copy, a subset)
    are scanned as given."""
    norm = normalize(table)
    rows, allocs = cache_rows_counted(norm)
    cache = max(allocs, key=allocs.__getitem__)
    half = rows[cache][: len(rows[cache]) // 2].copy()
    # (plain pops: a half of a cache's rows may end between a sheaf's pops)
    plain = ReplayPolicy(sheaf_pops="plain")
    assert len(CacheCommands(norm, cache, plain, half).allocs) < allocs[cache]
    _same(CacheCommands(norm, cache, plain, half), _alone(table, cache, half, plain))


def test_analyze_replays_take_the_pass_scans(
    table: EventTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pooled replays make no scan of their own: the one pass made them all."""
    expected = pipeline.analyze_table(table, None, pipeline.ModelOptions()).to_dict()
    called: list[str] = []
    kernel = tracereplay._kernel

    def counting(name: str, idx: type) -> object:
        called.append(name)
        return kernel(name, idx)

    monkeypatch.setattr(tracereplay, "_kernel", counting)
    got = pipeline.analyze_table(table, None, pipeline.ModelOptions()).to_dict()
    assert got == expected
    assert "group_and_scan" in called
    assert "scan_cache" not in called
