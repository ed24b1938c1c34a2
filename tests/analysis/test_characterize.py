"""``characterize``'s compiled kernels: exact order statistics, in-place grouping, and every
fallback path of the counting pass (hash tables that grow, lifetimes beyond normalize's count,
the per-CPU split outside the histogram, small chunks) giving exactly the plain result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sheaftune.analysis import characterize as charmod
from sheaftune.compiled import kernels
from sheaftune.events import EventTable
from sheaftune.normalize import Normalized, normalize
from sheaftune.readers import read_trace

FIX = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "traces"
TRACES = ["vma-small.v7zstd.dat", "kmalloc-small.v7zstd.dat"]


def _k():  # type: ignore[no-untyped-def]
    return kernels(charmod._KERNELS)


def _lower(values: np.ndarray, p: int) -> int:
    return int(np.percentile(values, p, method="lower"))


@pytest.mark.parametrize("seed", range(6))
def test_order_stats_are_numpys_lower_percentiles(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = [0, 1, 2, 3, 16, 17, 100, 1000, 5001]
    groups = []
    for m in sizes:
        kind = rng.integers(0, 5)
        if kind == 0:  # few distinct values: many ties
            g = rng.integers(0, 3, m)
        elif kind == 1:
            g = np.full(m, 7)
        elif kind == 2:
            g = np.arange(m)[::-1].copy()
        elif kind == 3:
            g = np.arange(m)
        else:
            g = rng.integers(-(2**40), 2**40, m)
        groups.append(g.astype(np.int64))
    values = np.concatenate(groups)
    bounds = np.zeros(len(groups) + 1, dtype=np.int64)
    np.cumsum([len(g) for g in groups], out=bounds[1:])
    stats = charmod._lifetime_stats(_k(), values.copy(), bounds)
    for g, st in zip(groups, stats, strict=True):
        if len(g) == 0:
            assert st is None
            continue
        assert st == {
            "p50": _lower(g, 50),
            "p90": _lower(g, 90),
            "p99": _lower(g, 99),
            "max": int(g.max()),
            "min": int(g.min()),
        }


def test_selection_survives_bad_pivots() -> None:
    # organ pipe and sawtooth inputs defeat a median of three: the heapsort takes over
    m = 200_000
    for g in (
        np.concatenate([np.arange(m // 2), np.arange(m // 2)[::-1]]),
        np.arange(m) % 1000,
    ):
        g = g.astype(np.int64)
        bounds = np.array([0, m], dtype=np.int64)
        (st,) = charmod._lifetime_stats(_k(), g.copy(), bounds)
        assert st is not None
        assert [st["p50"], st["p90"], st["p99"]] == [_lower(g, p) for p in (50, 90, 99)]


def test_group_puts_each_value_in_its_cache() -> None:
    rng = np.random.default_rng(3)
    cid = rng.integers(0, 7, 10_000).astype(np.int32)
    cid[cid == 4] = 5  # an empty group
    values = rng.integers(0, 1 << 50, len(cid)).astype(np.int64)
    bounds = np.zeros(8, dtype=np.int64)
    np.cumsum(np.bincount(cid, minlength=7), out=bounds[1:])
    v, c = values.copy(), cid.copy()
    _k().group(v, c, bounds, np.empty(7, dtype=np.int64))
    for g in range(7):
        lo, hi = bounds[g], bounds[g + 1]
        assert (c[lo:hi] == g).all()
        assert np.array_equal(np.sort(v[lo:hi]), np.sort(values[cid == g]))


def test_site_functions_in_one_pass() -> None:
    sites = ["mas_wr_bnode+0x1af", "0xffffffff81234567", "f+0x1/0x20", "odd\nname+0x3", ""]
    assert charmod._site_functions(sites) == [charmod.site_function(s) for s in sites]
    assert charmod._site_functions(sites[:3]) == [charmod.site_function(s) for s in sites[:3]]
    assert charmod._site_functions([]) == []


@pytest.fixture(scope="module", params=TRACES)
def norm(request: pytest.FixtureRequest) -> Normalized:
    path = FIX / request.param
    if not path.exists():
        pytest.skip(f"{path} (../shared/fixtures) is absent")
    return normalize(read_trace(str(path)))


def _json(norm: Normalized) -> str:
    return json.dumps(charmod.characterize(norm).to_dict(), sort_keys=True)


def test_fallback_paths_give_the_same_result(
    norm: Normalized, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = _json(norm)
    # hash tables that start tiny and grow many times over, chunk after chunk
    monkeypatch.setattr(charmod, "SITE_SLOTS", 2)
    monkeypatch.setattr(charmod, "SIZE_SLOTS", 2)
    monkeypatch.setattr(charmod, "CHUNK_ROWS", 777)
    assert _json(norm) == whole
    # the per-CPU split in its own counters
    monkeypatch.setattr(charmod, "HIST_CPU_LIMIT", 0)
    assert _json(norm) == whole
    # fewer matched frees than there are: the lifetimes grow
    counts = dict(norm.counts, matched_free=1)
    short = Normalized(norm.table, norm.alloc_of, norm.live_at_end, norm.reused_by, counts)
    a = json.loads(_json(short))
    b = json.loads(whole)
    a.pop("normalization")
    b.pop("normalization")
    assert a == b


def test_int64_row_indices(norm: Normalized) -> None:
    wide = Normalized(
        norm.table,
        norm.alloc_of.astype(np.int64),
        norm.live_at_end,
        norm.reused_by.astype(np.int64),
        dict(norm.counts),
    )
    assert _json(wide) == _json(norm)


def test_cache_filter_and_empty_trace(norm: Normalized) -> None:
    full = charmod.characterize(norm)
    name = next(iter(full.caches))
    only = charmod.characterize(norm, [name])
    assert list(only.caches) == [name]
    assert only.caches[name] == full.caches[name]
    empty = charmod.characterize(normalize(EventTable.empty()))
    assert empty.caches == {} and empty.trace["events"] == 0
