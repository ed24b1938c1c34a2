"""Issue 10's bounded-memory paths give exactly the results of the whole-array ones.

Huge traces are normalised in chunks and pointer buckets, characterised in chunks, and their big
caches replayed from windows of the plan (``StreamedPlan``); every test forces those paths on
small real traces (tiny chunks, buckets and windows) and compares with the plain computation.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sheaftune import normalize as normmod
from sheaftune.analysis import characterize as charmod
from sheaftune.analysis import pipeline
from sheaftune.analysis import tracereplay as tr
from sheaftune.events import COLUMNS, EventTable, load_native, save_native
from sheaftune.model.plan import Plan
from sheaftune.normalize import group_rows, normalize
from sheaftune.readers import read_trace

FIX = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "traces"
TRACES = ["vma-small.v7zstd.dat", "kmalloc-small.v7zstd.dat"]

pytestmark = pytest.mark.skipif(not FIX.is_dir(), reason=f"{FIX} (../shared/fixtures) is absent")


@pytest.fixture(scope="module", params=TRACES)
def table(request: pytest.FixtureRequest) -> EventTable:
    return read_trace(str(FIX / request.param))


def _concat(parts: list[Plan], like: Plan) -> Plan:
    cols = [np.concatenate([getattr(p, k) for p in parts]) for k in ("ts_ns", "cmd", "cpu", "a")]
    rest = [np.concatenate([getattr(p, k) for p in parts]) for k in ("b", "c")]
    return Plan(*cols, *rest, like.aux, like.n_objects, like.n_sheaves, dict(like.assumptions))


def _same_plan(a: Plan, b: Plan) -> None:
    for k in ("ts_ns", "cmd", "cpu", "a", "b", "c"):
        x, y = getattr(a, k), getattr(b, k)
        assert np.array_equal(x.astype(np.int64), y.astype(np.int64)), k
    assert (a.n_objects, a.n_sheaves) == (b.n_objects, b.n_sheaves)


def test_group_rows_is_a_stable_argsort(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(normmod, "CHUNK_ROWS", 37)
    rng = np.random.default_rng(1)
    key = rng.integers(0, 6, 1000).astype(np.int32)  # 5 is "left out"
    rows, starts = group_rows(key, 5)
    order = np.argsort(key, kind="stable")
    assert np.array_equal(rows, order[: int(starts[-1])])
    assert rows.dtype == np.int32


def test_bucketed_matching_equals_one_sort(
    table: EventTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = normalize(table)
    monkeypatch.setattr(normmod, "BUCKET_EVENTS", 500)
    monkeypatch.setattr(normmod, "CHUNK_ROWS", 999)
    parts = normalize(table)
    for k in ("alloc_of", "freed_by", "unseen_free", "live_at_end", "reused_by", "null_free"):
        assert np.array_equal(getattr(whole, k), getattr(parts, k)), k
    assert np.array_equal(whole.table.cache_id, parts.table.cache_id)
    assert whole.table.caches == parts.table.caches
    assert whole.counts == parts.counts
    assert whole.alloc_of.dtype == np.int32


def test_chunked_characterize_equals_whole(
    table: EventTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    norm = normalize(table)
    whole = json.dumps(charmod.characterize(norm).to_dict(), sort_keys=True)
    monkeypatch.setattr(charmod, "CHUNK_ROWS", 333)
    assert json.dumps(charmod.characterize(norm).to_dict(), sort_keys=True) == whole


@pytest.mark.parametrize("policy", [tr.ReplayPolicy(), tr.ReplayPolicy("none", "plain", 1000)])
def test_plan_windows_concatenate_to_the_plan(table: EventTable, policy: tr.ReplayPolicy) -> None:
    norm = normalize(table)
    rows = tr.cache_rows(norm)
    for cache in norm.table.caches:
        cc = tr.CacheCommands(norm, cache, policy, rows[cache])
        plan = cc.plan()
        assert plan.counts() == cc.counts() and len(plan) == len(cc)
        for events in (1, 7, 1000):
            parts = list(cc.windows(events))
            if parts:
                _same_plan(plan, _concat(parts, plan))
            else:
                assert len(plan) == 0


def test_session_fed_in_chunks_equals_one_run(table: EventTable) -> None:
    from sheaftune.model import fast

    norm = normalize(table)
    cache = max(norm.table.caches, key=lambda c: len(tr.cache_rows(norm)[c]))
    cc = tr.CacheCommands(norm, cache)
    plan = cc.plan()
    params = tr.params_for(norm, cache, "7.3")
    s = fast.Session(params, cc.n_objects, cc.n_sheaves, cc.max_prefill)
    for part in cc.windows(50):
        s.feed(part)
    assert s.result() == fast.run(plan, params)


def test_streamed_analysis_equals_whole(table: EventTable, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cache streamed in tiny windows, one engine state per pass, warm-up cut inside a
    window: the same analysis, replays and recommendations byte for byte."""
    whole = json.dumps(
        pipeline.analyze_table(table, None, pipeline.ModelOptions()).to_dict(), sort_keys=True
    )
    monkeypatch.setattr(tr, "STREAM_EVENTS", 0)
    monkeypatch.setattr(tr, "WINDOW_EVENTS", 777)
    monkeypatch.setattr(tr, "STREAM_STATE_BYTES", 1)
    monkeypatch.setattr(tr, "CHUNK_ROWS", 555)
    monkeypatch.setattr(normmod, "CHUNK_ROWS", 444)
    monkeypatch.setattr(normmod, "BUCKET_EVENTS", 300)  # pointer and task buckets
    monkeypatch.setattr(charmod, "CHUNK_ROWS", 333)
    monkeypatch.setattr(pipeline, "ROWS_AT_ONCE", 0)
    streamed = pipeline.analyze_table(table, None, pipeline.ModelOptions()).to_dict()
    assert any(c.get("recommendation") for c in streamed["caches"].values())
    assert json.dumps(streamed, sort_keys=True) == whole


def test_native_columns_are_mapped_and_released(table: EventTable, tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    save_native(table, path)
    back = load_native(str(path))
    assert back._maps, "uncompressed columns should be memory-mapped"
    for k in COLUMNS:
        assert np.array_equal(getattr(back, k), getattr(table, k)), k
    back.release()  # pages dropped; the data is still there
    assert np.array_equal(back.ts_ns, table.ts_ns)
    n1 = normalize(back)
    assert np.array_equal(n1.alloc_of, normalize(table).alloc_of)


def test_compressed_native_file_still_loads(table: EventTable, tmp_path: Path) -> None:
    plain = tmp_path / "t.npz"
    save_native(table, plain)
    packed = tmp_path / "z.npz"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    back = load_native(str(packed))
    assert not back._maps
    assert np.array_equal(back.ptr, table.ptr)
    assert os.path.getsize(packed) < os.path.getsize(plain)


def test_gather_from_a_mapped_table_in_chunks(table: EventTable, tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    save_native(table, path)
    mapped = load_native(str(path))
    idx = np.arange(0, len(table), 3)
    for name in ("ts_ns", "pid", "ptr"):
        assert np.array_equal(mapped.gather(name, idx, chunk=100), getattr(table, name)[idx])
    # the analysis of the mapped file equals the in-memory one
    whole = json.dumps(
        pipeline.analyze_table(table, None, pipeline.ModelOptions()).to_dict(), sort_keys=True
    )
    got = pipeline.analyze_table(mapped, None, pipeline.ModelOptions()).to_dict()
    got["trace"]["source"] = table.meta.source
    assert json.dumps(got, sort_keys=True) == whole
