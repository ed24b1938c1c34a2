"""The fast engine equals the reference model: random plans (hypothesis) and every real fixture.

Equality is of the whole :class:`ReplayResult`: every kernel counter, every extra, the
occupancy (per-CPU and per-node peaks, time-weighted means, final values), the final state
snapshot and the skipped commands.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sheaftune.model import fast
from sheaftune.model.plan import Cmd, Plan
from sheaftune.model.reference import ModelError
from sheaftune.model.replay import ReplayResult, replay, run_reference
from sheaftune.params import ModelParams

#: Every test here runs twice: on the AOT build of the engine and on its numba JIT kernels
#: (``engine_mode`` in conftest.py); both must equal the reference.
pytestmark = pytest.mark.usefixtures("engine_mode")

FIXTURES = Path("/work/shared/fixtures")


def assert_same(ref: ReplayResult, got: ReplayResult) -> None:
    assert got.counters == ref.counters
    assert got.extras == ref.extras
    assert got.occupancy == ref.occupancy
    assert got.state == ref.state
    assert got.skipped == ref.skipped


def reference_with_state(plan: Plan, params: ModelParams) -> tuple[ReplayResult, dict]:
    """``run_reference`` and its model's final ``full_state()`` (every object's place): the
    driver builds its SheafModel internally, so a recording subclass is swapped in."""
    from sheaftune.model import reference

    made: list[reference.SheafModel] = []

    class Recording(reference.SheafModel):
        def __init__(self, p: ModelParams) -> None:
            super().__init__(p)
            made.append(self)

    orig = reference.SheafModel
    reference.SheafModel = Recording  # type: ignore[misc]
    try:
        res = run_reference(plan, params)
    finally:
        reference.SheafModel = orig  # type: ignore[misc]
    return res, made[0].full_state()


#: reference results of the real fixtures, computed once for both engine forms
_REFERENCE: dict[tuple[object, ...], tuple[ReplayResult, dict]] = {}


def check(plan: Plan, params: ModelParams, key: tuple[object, ...] | None = None) -> ReplayResult:
    """Both engines on ``plan``: either both raise ModelError, or the same result and the same
    final place of every object (sheaves, barns, rcu, slabs, freelists in order). ``key``
    names a plan the reference has replayed before with these params (its result is reused)."""
    try:
        if key is not None and key in _REFERENCE:
            ref, ref_state = _REFERENCE[key]
        else:
            ref, ref_state = reference_with_state(plan, params)
            if key is not None:
                _REFERENCE[key] = ref, ref_state
    except ModelError:
        with pytest.raises(ModelError):
            fast.run(plan, params)
        return ReplayResult({}, {}, {}, {})
    got, got_state = fast.run_with_state(plan, params)
    assert_same(ref, got)
    assert got_state == ref_state
    return ref


# ----------------------------------------------------------------------------- random plans
OPS = (
    "alloc", "alloc", "alloc", "alloc_node", "free", "free", "free", "kfree_rcu", "rcu_gp",
    "prefill", "pop", "pop", "return", "refill", "alloc_bulk", "free_bulk", "shrink",
)  # fmt: skip


@st.composite
def params_st(draw: st.DrawFn) -> ModelParams:
    kernel = draw(st.sampled_from(["7.3", "6.18"]))
    cpus = draw(st.integers(1, 4))
    nodes = draw(st.integers(1, 3))
    cpu_node = tuple(draw(st.integers(0, nodes - 1)) for _ in range(cpus))
    skip = draw(st.sampled_from([0.0, 0.0, 0.0, 0.5]))
    return ModelParams(
        kernel=kernel,
        sheaf_capacity=draw(st.integers(0, 8)),
        object_size=64,
        objects_per_slab=draw(st.integers(1, 8)),
        cpus=cpus,
        nodes=nodes,
        cpu_node=cpu_node,
        max_full_sheaves=draw(st.integers(0, 4)),
        max_empty_sheaves=draw(st.integers(0, 4)),
        min_partial=draw(st.integers(0, 4)),
        cpu_partial=draw(st.integers(0, 12)),
        remote_skip_probability=skip,
        seed=draw(st.integers(0, 3)),
    )


@st.composite
def ops_st(draw: st.DrawFn) -> list[tuple[int, ...]]:
    """Raw operations: (op index, cpu, x, y, z, dt); the plan builder resolves x/y/z modulo
    what is live, so every shrink of the list is still a valid plan."""
    n = draw(st.integers(1, 120))
    return [
        (
            draw(st.integers(0, len(OPS) - 1)),
            draw(st.integers(0, 3)),
            draw(st.integers(0, 1 << 16)),
            draw(st.integers(0, 12)),
            draw(st.integers(0, 1 << 16)),
            draw(st.sampled_from([0, 0, 1, 7, 1000])),
        )
        for _ in range(n)
    ]


def build_random_plan(p: ModelParams, raw: list[tuple[int, ...]]) -> Plan:
    """A valid command stream: objects are freed at most once (plus a few deliberate frees of
    never-allocated or already-freed slots, which both engines must skip the same way)."""
    cols: dict[str, list[int]] = {k: [] for k in ("ts", "cmd", "cpu", "a", "b", "c")}
    aux: list[int] = []
    live: list[int] = []  # object slots that may be live
    sheaves: list[int] = []  # sheaf slots prefilled and not returned
    n_obj = 0
    n_sh = 0
    ts = 0

    def add(cmd: Cmd, cpu: int, a: int = 0, b: int = 0, c: int = 0) -> None:
        cols["ts"].append(ts)
        cols["cmd"].append(int(cmd))
        cols["cpu"].append(cpu)
        cols["a"].append(a)
        cols["b"].append(b)
        cols["c"].append(c)

    for op_i, cpu_r, x, y, z, dt in raw:
        ts += dt
        op = OPS[op_i]
        cpu = cpu_r % p.cpus
        if op in ("alloc", "alloc_node"):
            node = -1 if op == "alloc" else x % p.nodes
            add(Cmd.ALLOC, cpu, n_obj, z & 1, node)
            live.append(n_obj)
            n_obj += 1
        elif op in ("free", "kfree_rcu"):
            if live and x % 16:
                slot = live.pop(x % len(live))
            else:
                slot = n_obj + 5  # never allocated: skipped by both engines
                n_obj += 6
            add(Cmd.FREE if op == "free" else Cmd.KFREE_RCU, cpu, slot)
        elif op == "rcu_gp":
            add(Cmd.RCU_GP, 0)
        elif op == "prefill":
            size = y % (p.sheaf_capacity + 4)
            add(Cmd.PREFILL, cpu, n_sh, size, z & 1)
            sheaves.append(n_sh)
            n_sh += 1
        elif op == "pop":
            sh = sheaves[x % len(sheaves)] if sheaves and x % 8 else n_sh + 3
            n_sh = max(n_sh, sh + 1)
            add(Cmd.ALLOC_FROM_SHEAF, cpu, n_obj, sh)
            live.append(n_obj)
            n_obj += 1
        elif op == "return":
            if sheaves:
                add(Cmd.RETURN_SHEAF, cpu, sheaves.pop(x % len(sheaves)))
        elif op == "refill":
            sh = sheaves[x % len(sheaves)] if sheaves and x % 8 else n_sh + 3
            n_sh = max(n_sh, sh + 1)
            add(Cmd.REFILL_SHEAF, cpu, sh, y % (p.sheaf_capacity + 6), z & 1)
        elif op == "alloc_bulk":
            k = y
            slots = list(range(n_obj, n_obj + k))
            n_obj += k
            add(Cmd.ALLOC_BULK, cpu, len(aux), k)
            aux.extend(slots)
            live.extend(slots)
        elif op == "free_bulk":
            k = min(y, len(live))
            rng = np.random.default_rng(x)
            pick = sorted(rng.choice(len(live), size=k, replace=False).tolist(), reverse=True)
            slots = [live.pop(i) for i in pick]
            if z % 5 == 0:
                slots.append(n_obj + 2)  # one never-allocated slot in the array
                n_obj += 3
            add(Cmd.FREE_BULK, cpu, len(aux), len(slots))
            aux.extend(slots)
        elif op == "shrink":
            add(Cmd.SHRINK, 0)
    return Plan(
        np.array(cols["ts"], dtype=np.int64),
        np.array(cols["cmd"], dtype=np.uint8),
        np.array(cols["cpu"], dtype=np.uint16),
        np.array(cols["a"], dtype=np.int64),
        np.array(cols["b"], dtype=np.int64),
        np.array(cols["c"], dtype=np.int64),
        np.array(aux, dtype=np.int64),
        n_obj,
        n_sh,
    )


@settings(
    max_examples=int(os.environ.get("SHEAFTUNE_FAST_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(p=params_st(), raw=ops_st())
def test_fast_equals_reference_on_random_plans(p: ModelParams, raw: list[tuple[int, ...]]) -> None:
    check(build_random_plan(p, raw), p)


def test_fast_equals_reference_on_long_random_plans() -> None:
    """Longer plans than hypothesis draws: many slabs, pool growth, partial-list churn."""
    rng = np.random.default_rng(7)
    for i in range(24):
        nodes = 1 + i % 3
        cpus = 1 + i % 4
        p = ModelParams(
            kernel="6.18" if i % 2 else "7.3",
            sheaf_capacity=[0, 1, 3, 8, 28, 60][i % 6],
            objects_per_slab=[1, 3, 8, 16][i % 4],
            cpus=cpus,
            nodes=nodes,
            cpu_node=tuple(int(x) for x in rng.integers(0, nodes, cpus)),
            min_partial=i % 5,
            max_full_sheaves=[10, 2, 0][i % 3],
            cpu_partial=[0, 6, 52][i % 3],
            remote_skip_probability=0.3 if i % 5 == 0 else 0.0,
            seed=i,
        )
        raw = [
            (
                int(rng.choice(len(OPS), p=_long_weights())),
                int(rng.integers(0, 4)),
                int(rng.integers(0, 1 << 16)),
                int(rng.integers(0, 40)),
                int(rng.integers(0, 1 << 16)),
                int(rng.choice([0, 1, 5, 1000])),
            )
            for _ in range(3000)
        ]
        check(build_random_plan(p, raw), p)


@functools.cache
def _long_weights() -> np.ndarray:
    w = np.array([8, 8, 8, 2, 9, 9, 9, 3, 1, 1, 2, 2, 1, 1, 1, 1, 0.05])
    return w / w.sum()


def test_remote_gate_draws_match_python_random() -> None:
    """The engine's Mersenne Twister gives CPython's ``random.random()`` sequence."""
    import random

    from sheaftune.model._engine_kernels import mt_random

    for seed in (0, 1, 12345):
        r = random.Random(seed)
        mt = np.zeros(626, dtype=np.int64)
        mt[:625] = r.getstate()[1]
        want = [random.Random(seed).random() for _ in range(1)]
        got = [mt_random(mt)]
        r2 = random.Random(seed)
        want = [r2.random() for _ in range(700)]
        mt[:625] = random.Random(seed).getstate()[1]
        got = [mt_random(mt) for _ in range(700)]
        assert got == want


def test_mt_state_is_random_randoms_state() -> None:
    """The state ``_mt_state`` takes from the C generator is ``random.Random(seed)``'s."""
    import random

    from sheaftune.model.fast import _mt_state

    for seed in (0, 1, 12345, 2**40 + 7):
        mt = _mt_state(seed, 0.25)
        assert mt[:625].tolist() == list(random.Random(seed).getstate()[1])
        assert mt[625:].view(np.float64).tolist() == [0.25]


def test_replay_dispatches_to_the_fast_engine() -> None:
    p = ModelParams(sheaf_capacity=4, objects_per_slab=4)
    raw = [(0, 0, 0, 0, 0, 1)] * 10 + [(4, 0, 1, 0, 0, 1)] * 10
    plan = build_random_plan(p, raw)
    assert_same(run_reference(plan, p), replay(plan, p, "fast"))


def test_run_many_equals_single_runs() -> None:
    p = ModelParams(sheaf_capacity=4, objects_per_slab=4, cpus=2, cpu_node=(0, 0))
    rng = np.random.default_rng(3)
    raw = [
        (int(rng.integers(0, len(OPS) - 1)), int(rng.integers(0, 2)), int(rng.integers(0, 999)),
         int(rng.integers(0, 9)), int(rng.integers(0, 999)), 3)
        for _ in range(2000)
    ]  # fmt: skip
    plan = build_random_plan(p, raw)
    plist = [dataclasses.replace(p, sheaf_capacity=c) for c in (0, 1, 4, 12, 28, 60)]
    many = fast.run_many(plan, plist)
    for pp, r in zip(plist, many, strict=True):
        assert_same(run_reference(plan, pp), r)


def _head(plan: Plan, k: int) -> Plan:
    return Plan(
        plan.ts_ns[:k], plan.cmd[:k], plan.cpu[:k], plan.a[:k], plan.b[:k], plan.c[:k],
        plan.aux, plan.n_objects, plan.n_sheaves,
    )  # fmt: skip


@settings(
    max_examples=int(os.environ.get("SHEAFTUNE_FAST_EXAMPLES", "400")) // 4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(p=params_st(), raw=ops_st(), cut=st.floats(0.0, 1.0))
def test_checkpoint_is_the_replay_of_the_prefix(
    p: ModelParams, raw: list[tuple[int, ...]], cut: float
) -> None:
    """``sweep``'s checkpoint after k commands, read during the whole replay, is exactly the
    result of replaying the first k commands alone (``recommend``'s warm-up cut relies on it),
    and reading it leaves the whole replay's result unchanged."""
    plan = build_random_plan(p, raw)
    k = int(len(plan) * cut)
    plist = [dataclasses.replace(p, sheaf_capacity=c) for c in sorted({0, 1, p.sheaf_capacity})]
    try:
        got = fast.sweep(plan, plist, k, workers=1)
    except ModelError:
        return
    for pp, (full, pre) in zip(plist, got, strict=True):
        assert_same(fast.run(plan, pp), full)
        if k == 0:
            assert pre is None
        else:
            assert pre is not None
            assert_same(fast.run(_head(plan, k), pp), pre)
            assert_same(run_reference(_head(plan, k), pp), pre)


def _slice(plan: Plan, lo: int, hi: int) -> Plan:
    return Plan(
        plan.ts_ns[lo:hi], plan.cmd[lo:hi], plan.cpu[lo:hi], plan.a[lo:hi], plan.b[lo:hi],
        plan.c[lo:hi], plan.aux, plan.n_objects, plan.n_sheaves,
    )  # fmt: skip


@settings(
    max_examples=int(os.environ.get("SHEAFTUNE_FAST_EXAMPLES", "400")) // 4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(p=params_st(), raw=ops_st(), cuts=st.lists(st.floats(0.0, 1.0), max_size=4))
def test_session_chunks_equal_one_run(
    p: ModelParams, raw: list[tuple[int, ...]], cuts: list[float]
) -> None:
    """A plan fed to a ``Session`` in consecutive chunks (``tracereplay``'s streamed replay),
    cut anywhere (inside a run of sheaf hits too) and led by an empty chunk, gives ``run``'s
    result: the interpreter's hit runs and occupancy clock carry over between calls."""
    plan = build_random_plan(p, raw)
    try:
        whole = fast.run(plan, p)
    except ModelError:
        return
    ks = sorted({0, len(plan), *(int(len(plan) * c) for c in cuts)})
    session = fast.Session(p, plan.n_objects, plan.n_sheaves, fast._facts(plan).ov_width)
    session.feed(_slice(plan, 0, 0))
    for lo, hi in zip(ks, ks[1:], strict=False):
        session.feed(_slice(plan, lo, hi))
    assert_same(whole, session.result())


def test_checkpoint_on_a_real_trace() -> None:
    """The same on the biggest cache of the example trace, cut at a quarter (as recommend),
    every bucket capacity, in parallel threads."""
    from sheaftune.analysis.tracereplay import build_plan, params_for

    n = _norm("traces/vma-small.v7zstd.dat")
    for cache in ("maple_node", "vm_area_struct"):
        plan = build_plan(n, cache)
        base = params_for(n, cache, "7.3")
        plist = [dataclasses.replace(base, sheaf_capacity=c) for c in (4, 12, 28, 32, 60, 124)]
        k = len(plan) // 4
        for pp, (full, pre) in zip(plist, fast.sweep(plan, plist, k), strict=True):
            assert_same(fast.run(plan, pp), full)
            assert pre is not None
            assert_same(fast.run(_head(plan, k), pp), pre)


@settings(
    max_examples=int(os.environ.get("SHEAFTUNE_FAST_EXAMPLES", "400")) // 4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(p=params_st(), raw=ops_st(), cut=st.floats(0.0, 1.0))
def test_plan_stats_equals_numpy(p: ModelParams, raw: list[tuple[int, ...]], cut: float) -> None:
    """``plan_stats``' one compiled pass gives what the numpy passes it replaces give."""
    from sheaftune.analysis.tracereplay import window_ops

    plan = build_random_plan(p, raw)
    k = int(len(plan) * cut)
    got = fast.plan_stats(plan, k)
    cmd = plan.cmd
    assert got.counts == plan.counts()
    alloc = cmd == Cmd.ALLOC
    sizes = plan.b[(cmd == Cmd.PREFILL) | (cmd == Cmd.REFILL_SHEAF)]
    bulk = plan.b[(cmd == Cmd.ALLOC_BULK) | (cmd == Cmd.FREE_BULK)]
    prefills = plan.b[cmd == Cmd.PREFILL]
    assert got.facts == (
        int(plan.cpu.max()) if len(plan) else -1,
        int(plan.c[alloc].max()) if alloc.any() else -1,
        int(sizes.max()) if len(sizes) else 1,
        int(bulk.max()) if len(bulk) else 0,
    )
    assert got.max_prefill == (int(prefills.max()) if len(prefills) else None)
    assert (got.ops_after, got.prefills_after, got.active_after) == window_ops(plan, k)
    assert got.k == k


def test_needs_compile_reports_a_cold_cache(tmp_path: Path) -> None:
    """With fresh caches the engine must compile: the AOT build (checked without importing
    numba), or numba's JIT with ``SHEAFTUNE_AOT=0``; once the engine ran here, it must not."""
    code = (
        "import sys; from sheaftune.model import fast; "
        "print(fast.needs_compile(), 'numba' in sys.modules)"
    )
    for extra, numba_loaded in (
        ({"SHEAFTUNE_CACHE_DIR": str(tmp_path / "aot")}, "False"),
        ({"SHEAFTUNE_AOT": "0", "NUMBA_CACHE_DIR": str(tmp_path / "numba")}, "True"),
    ):
        env = dict(os.environ, **extra)
        if "SHEAFTUNE_AOT" not in extra:  # (the AOT case, whatever the test run itself uses)
            env.pop("SHEAFTUNE_AOT", None)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.stdout.split() == ["True", numba_loaded], out.stderr
    fast.run(build_random_plan(ModelParams(), [(0, 0, 0, 0, 0, 1)]), ModelParams())
    assert fast.needs_compile() is False


# ----------------------------------------------------------------------------- real fixtures
@functools.cache
def _norm(name: str):  # type: ignore[no-untyped-def]
    from sheaftune.analysis.pipeline import load
    from sheaftune.normalize import normalize

    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return normalize(load(str(path)))


def _fixture_check(name: str, cache: str, kernel: str, caps: list[int | None], **kw) -> None:  # type: ignore[no-untyped-def]
    from sheaftune.analysis.tracereplay import build_plan, params_for

    n = _norm(name)
    plan = build_plan(n, cache)
    for cap in caps:
        params = params_for(n, cache, kernel, cap, nodes=kw.get("nodes", 1))
        ref = check(plan, params, (name, cache, params))
        assert ref.counters  # the replay really ran


@pytest.mark.parametrize("kernel", ["7.3", "6.18"])
@pytest.mark.parametrize("cache", ["maple_node", "vm_area_struct"])
def test_vma_small(cache: str, kernel: str) -> None:
    _fixture_check("traces/vma-small.v7zstd.dat", cache, kernel, [None, 0, 1, 4, 12, 32, 124])


@pytest.mark.parametrize("kernel", ["7.3", "6.18"])
def test_vma_small_two_nodes(kernel: str) -> None:
    """CPUs split over two nodes: the trace's cross-CPU frees become remote frees."""
    for cache in ("maple_node", "vm_area_struct"):
        _fixture_check("traces/vma-small.v7zstd.dat", cache, kernel, [None, 4], nodes=2)


def _busiest(name: str, k: int, prefix: str = "") -> list[str]:
    n = _norm(name)
    t = n.table
    ids = t.cache_id[t.cache_id >= 0]
    counts = np.bincount(ids, minlength=len(t.caches))
    order = np.argsort(-counts, kind="stable")
    names = [t.caches[i] for i in order if counts[i] and t.caches[i].startswith(prefix)]
    return names[:k]


@pytest.mark.parametrize("kernel", ["7.3", "6.18"])
def test_kmalloc_small_busiest_caches(kernel: str) -> None:
    name = "traces/kmalloc-small.v7zstd.dat"
    for cache in _busiest(name, 4, "kmalloc"):
        _fixture_check(name, cache, kernel, [None, 4, 28])


@pytest.mark.parametrize("kernel", ["7.3", "6.18"])
def test_large_build_biggest_caches(kernel: str) -> None:
    """The whole 715k-event trace (the reference replays its biggest caches in seconds)."""
    name = "large/build.v7zstd.dat"
    for cache in _busiest(name, 3):
        _fixture_check(name, cache, kernel, [None, 4, 60])


@pytest.mark.parametrize("kernel", ["7.3", "6.18"])
def test_large_build_all_caches_two_nodes(kernel: str) -> None:
    """Every cache of the large trace at its kernel capacity, CPUs over two nodes."""
    name = "large/build.v7zstd.dat"
    for cache in _busiest(name, 100):
        _fixture_check(name, cache, kernel, [None], nodes=2)
