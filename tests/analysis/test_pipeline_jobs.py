"""``analyze``'s pool of replay jobs gives exactly the one-cache-at-a-time answers.

A trace of modest size replays its caches as jobs on a pool of threads, started before the
trace is characterised, one job per capacity and per recommendation candidate, with a
recommended cache's replay taken from its sweep; a huge trace replays one cache at a time, a
replay then a recommendation, each making its own plan. Both must give the same analysis, in
any order of the jobs and with any number of threads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sheaftune.analysis import pipeline
from sheaftune.analysis.sweep import parse_capacities
from sheaftune.analysis.tracereplay import ReplayPolicy, cache_rows, cache_rows_counted
from sheaftune.events import EventTable
from sheaftune.normalize import normalize
from sheaftune.readers import read_trace

FIX = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "traces"
TRACES = ["vma-small.v7zstd.dat", "kmalloc-small.v7zstd.dat"]

pytestmark = pytest.mark.skipif(not FIX.is_dir(), reason=f"{FIX} (../shared/fixtures) is absent")


@pytest.fixture(scope="module", params=TRACES)
def table(request: pytest.FixtureRequest) -> EventTable:
    return read_trace(str(FIX / request.param))


MODELS = [
    pipeline.ModelOptions(),
    # several capacities per cache (one job each), one of them the recommendation's
    pipeline.ModelOptions(
        kernel="6.18",
        capacities=parse_capacities(["0,16,32,64"]),
        policy=ReplayPolicy(unseen_free="none"),
    ),
    # parameters the recommendation does not share (its replay is on the trace's CPUs)
    pipeline.ModelOptions(cpus=8, recommend_min_allocs=1),
    pipeline.ModelOptions(nodes=2, recommend_caches=2),
]


def _analysis(table: EventTable, model: pipeline.ModelOptions) -> str:
    return json.dumps(pipeline.analyze_table(table, None, model).to_dict(), sort_keys=True)


@pytest.mark.parametrize("m", range(len(MODELS)))
def test_jobs_equal_one_cache_at_a_time(
    table: EventTable, m: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = MODELS[m]
    pooled = _analysis(table, model)
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "MAX_THREADS", 1)  # the same jobs, in this thread
        assert _analysis(table, model) == pooled
    monkeypatch.setattr(pipeline, "PARALLEL_EVENTS", 0)  # the huge-trace path
    assert _analysis(table, model) == pooled


def test_jobs_in_any_order_give_the_same_analysis(
    table: EventTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = pipeline.ModelOptions()
    pooled = _analysis(table, model)
    rng = np.random.default_rng(3)
    monkeypatch.setattr(pipeline, "_replay_cost", lambda n, cap: float(rng.random()))
    monkeypatch.setattr(pipeline, "_FIRST", 1.0)
    assert _analysis(table, model) == pooled


def test_candidates_the_choice_drops_are_not_replayed(
    table: EventTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sheaftune.analysis.recommend import Pending, Sweep

    model = pipeline.ModelOptions()
    ran: list[tuple[int, int]] = []
    skipped: dict[int, set[int]] = {}
    run, unneeded = Sweep.run, Pending.unneeded

    def counted(self: Sweep, i: int):  # type: ignore[no-untyped-def]
        ran.append((id(self), i))
        return run(self, i)

    def noted(self: Pending) -> set[int]:
        skipped[id(self.sweep)] = out = unneeded(self)
        return out

    monkeypatch.setattr(Sweep, "run", counted)
    monkeypatch.setattr(Pending, "unneeded", noted)
    lean = _analysis(table, model)
    assert all(i not in skipped.get(sweep, set()) for sweep, i in ran)
    monkeypatch.setattr(Pending, "unneeded", lambda self: set())
    assert _analysis(table, model) == lean  # replaying them all says the same
    if table.meta.source.endswith("vma-small.v7zstd.dat"):
        assert any(skipped.values()), "maple_node's capacity 4 should go unreplayed"


def test_optional_candidates_are_left_out_once_two_smaller_are_calm(
    table: EventTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sheaftune.analysis.recommend import Pending, Sweep

    model = pipeline.ModelOptions()
    ran: dict[int, list[int]] = {}
    optional: dict[int, tuple[Pending, set[int]]] = {}
    run, opt = Sweep.run, Pending.optional

    def counted(self: Sweep, i: int):  # type: ignore[no-untyped-def]
        ran.setdefault(id(self), []).append(i)
        return run(self, i)

    def noted(self: Pending) -> set[int]:
        out = opt(self)
        optional[id(self.sweep)] = (self, out)
        return out

    monkeypatch.setattr(Sweep, "run", counted)
    monkeypatch.setattr(Pending, "optional", noted)
    lean = _analysis(table, model)
    left_out = 0
    for key, (pend, opts) in optional.items():
        done = list(ran.get(key, []))
        caps = [p.sheaf_capacity for p in pend.sweep.params]
        for i in set(range(len(caps))) - set(done) - pend.unneeded():
            # left out: optional, and two smaller candidates replayed and calm
            assert i in opts
            calm = [j for j in done if caps[j] < caps[i] and pend.calm(j, run(pend.sweep, j))]
            assert len(calm) >= 2
            left_out += 1
    assert left_out, "no candidate was left out: the test tests nothing"
    monkeypatch.setattr(Pending, "optional", lambda self: set())
    assert _analysis(table, model) == lean  # replaying them all says the same


def test_counts_by_cache_are_the_analysis_allocations(table: EventTable) -> None:
    norm = normalize(table)
    rows, allocs = cache_rows_counted(norm)
    plain = cache_rows(norm)
    assert rows.keys() == plain.keys()
    assert all(np.array_equal(rows[k], plain[k]) for k in rows)
    analysis = pipeline.characterize(norm)
    assert allocs == {name: st["alloc"] for name, st in analysis.caches.items()}


def test_a_cache_filter_replays_only_those_caches(table: EventTable) -> None:
    norm = normalize(table)
    name = next(iter(cache_rows_counted(norm)[1]))
    got = pipeline.analyze_table(table, [name], pipeline.ModelOptions()).to_dict()
    assert list(got["caches"]) == [name]


def test_a_failing_replay_is_reported(table: EventTable, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("replay failed")

    from sheaftune.analysis.recommend import Sweep

    monkeypatch.setattr(Sweep, "run", broken)
    monkeypatch.setattr(pipeline.CacheReplay, "run", broken)
    monkeypatch.setattr(pipeline, "_replay", broken)
    with pytest.raises(RuntimeError, match="replay failed"):
        pipeline.analyze_table(table, None, pipeline.ModelOptions())


def test_small_caches_batched_or_alone_give_the_same_analysis(
    table: EventTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = pipeline.ModelOptions()
    batches: list[int] = []
    prepare_all = pipeline._Replays._prepare_all

    def counted(self: pipeline._Replays, jobs: list[tuple[object, int]]) -> None:
        batches.append(len(jobs))
        prepare_all(self, jobs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline._Replays, "_prepare_all", counted)
    batched = _analysis(table, model)
    # every cache of these small traces that is not recommended for is in a batch
    allocs = cache_rows_counted(normalize(table))[1]
    alone = len([a for a in allocs.values() if a > 0]) - len(pipeline._largest(allocs, model))
    assert sum(batches) == alone
    assert len(batches) == min(alone, pipeline.SMALL_BATCHES)
    monkeypatch.setattr(pipeline, "SMALL_ROWS", 0)  # one job per cache
    batches.clear()
    assert _analysis(table, model) == batched and not batches
    monkeypatch.setattr(pipeline, "SMALL_ROWS", 1 << 30)
    monkeypatch.setattr(pipeline, "SMALL_BATCHES", 3)
    assert _analysis(table, model) == batched


def test_the_sheaf_pop_sweep_runs_as_a_job_and_a_failed_one_leaves_no_memo(
    table: EventTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``analyze`` sweeps for sheaf pops in a job beside its grouping. A failed sweep memoises
    nothing, so the plans sweep again (the same analysis) and a failure the plans meet too is
    the analysis's failure, as without that job."""
    from sheaftune import normalize as nmod

    model = pipeline.ModelOptions()
    expected = _analysis(table, model)
    sweep = nmod._sweep_pop_runs
    calls: list[str] = []

    def once_broken(norm: object, gap_ns: int) -> object:
        calls.append("sweep")
        if len(calls) == 1:
            raise RuntimeError("sweep failed")
        return sweep(norm, gap_ns)  # type: ignore[arg-type]

    # (one thread: the jobs run in their order, the sweep's job before any plan)
    monkeypatch.setattr(pipeline, "MAX_THREADS", 1)
    monkeypatch.setattr(nmod, "_sweep_pop_runs", once_broken)
    assert _analysis(table, model) == expected
    assert calls == ["sweep", "sweep"]  # the job's, then the first plan's (memoised)

    def broken(norm: object, gap_ns: int) -> object:
        raise RuntimeError("sweep failed")

    monkeypatch.undo()
    monkeypatch.setattr(nmod, "_sweep_pop_runs", broken)
    with pytest.raises(RuntimeError, match="sweep failed"):
        _analysis(table, model)


def test_the_pool_runs_every_job_on_its_threads_and_the_caller() -> None:
    import threading

    pool = pipeline._Pool(3)  # two threads, and the caller at join
    assert len(pool._threads) == 2
    ran: list[tuple[int, str]] = []
    lock = threading.Lock()

    def job(i: int) -> None:
        with lock:
            ran.append((i, threading.current_thread().name))
        if i < 20:  # (a job may add jobs)
            pool.add(float(i), job, i + 20)

    for i in range(20):
        pool.add(float(i), job, i)
    pool.start()
    pool.join()
    assert sorted(i for i, _ in ran) == list(range(40))
    assert not any(t.is_alive() for t in pool._threads)


def test_a_pool_bug_is_raised_by_join_and_ctrl_c_at_once() -> None:
    pool = pipeline._Pool(1)  # no thread: the caller runs every job

    def bug() -> None:
        raise RuntimeError("a bug")

    pool.add(1.0, bug)
    pool.add(0.0, lambda: None)
    with pytest.raises(RuntimeError, match="a bug"):
        pool.join()
    pool = pipeline._Pool(1)
    later: list[int] = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    pool.add(1.0, interrupt)
    pool.add(0.0, lambda: later.append(1))
    with pytest.raises(KeyboardInterrupt):
        pool.join()
    assert later == []  # (no job is taken after it)
