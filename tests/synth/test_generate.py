"""Generation: determinism, overrides, trace realism, and statistics that match the spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sheaftune.errors import UsageError
from sheaftune.events import Op, save_native
from sheaftune.gfp import GFP_KERNEL, GFP_NOWAIT
from sheaftune.synth.generate import expected_rates, generate
from sheaftune.synth.spec import parse_spec
from sheaftune.synth.stats import workload_stats

ROOT = Path(__file__).resolve().parents[2]


def spec_of(streams: list[dict[str, Any]], **top: Any) -> Any:
    d: dict[str, Any] = {
        "workload": 1,
        "name": "t",
        "cpus": 4,
        "caches": {
            "maple_node": {"object_size": 256, "sheaf_capacity": 32},
            "vm_area_struct": {"object_size": 192, "sheaf_capacity": 32, "accounted": True},
            "kmalloc-64": {"object_size": 64, "sheaf_capacity": 0, "kmalloc": True},
        },
        "streams": streams,
    }
    d.update(top)
    return parse_spec(d, "test.yaml")


VMA = {
    "name": "vma",
    "cache": "vm_area_struct",
    "rate": 50_000,
    "call_site": "vm_area_alloc+0x1a/0x80",
    "lifetime_us": {"dist": "expon", "scale": 40},
    "free": {"call_site": "vms_complete_munmap_vmas+0xe1/0x190", "remote_cpu": 0.25},
}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    spec = parse_spec(
        __import__("yaml").safe_load((ROOT / "workloads" / "maple-vma-churn.yaml").read_text()),
        "maple-vma-churn.yaml",
    )
    paths = []
    for i, seed in enumerate((3, 3, 4)):
        p = tmp_path / f"{i}.npz"
        save_native(generate(spec, seed=seed, events=20_000).events, p)
        paths.append(p.read_bytes())
    assert paths[0] == paths[1]
    assert paths[0] != paths[2]


def test_overrides_cpus_and_events() -> None:
    spec = spec_of([VMA], events=5000)
    g = generate(spec, seed=1)
    assert len(g.events) == 5000 and g.events.meta.cpus == 4
    g = generate(spec, seed=1, cpus=16, events=12_345)
    assert len(g.events) == 12_345 and g.events.meta.cpus == 16
    assert set(np.unique(g.events.cpu).tolist()) == set(range(16))
    with pytest.raises(UsageError, match="--cpus"):
        generate(spec_of([VMA], nodes=2), cpus=1)
    with pytest.raises(UsageError, match="runs on CPU 3"):
        generate(spec_of([{**VMA, "cpus": [0, 3]}]), cpus=2)


def test_events_look_like_a_618_trace() -> None:
    streams = [
        VMA,
        {
            "name": "pre",
            "cache": "maple_node",
            "rate": 30_000,
            "call_site": "mas_preallocate+0x442/0x480",
            "lifetime_us": 100,
            "free": {"kfree_rcu": 1.0},
        },
        {
            "name": "pops",
            "cache": "maple_node",
            "kind": "prefill",
            "rate": 10_000,
            "call_site": "mas_wr_bnode+0x103b/0x1770",
            "prefill": {"upper_bound": 7, "used": 2},
            "lifetime_us": 100,
            "free": {"kfree_rcu": 0.5, "bulk": 0.5},
        },
        {
            "name": "km",
            "cache": "kmalloc-64",
            "rate": 20_000,
            "call_site": "foo+0x10/0x40",
            "bytes_req": {"dist": "randint", "low": 33, "high": 65},
            "lifetime_us": 10,
            "free": {"call_site": "bar+0x20/0x40"},
        },
    ]
    t = generate(spec_of(streams), seed=5, events=50_000).events
    # time-sorted, whole microseconds, per-CPU monotonic
    assert np.all(np.diff(t.ts_ns) >= 0) and np.all(t.ts_ns % 1000 == 0)
    for c in range(4):
        assert np.all(np.diff(t.ts_ns[t.cpu == c]) >= 0)
    ops = t.events_by_type()
    assert ops["kmem_cache_alloc"] and ops["kmem_cache_free"] and ops["kmalloc"] and ops["kfree"]
    km = t.op == Op.KMALLOC
    assert np.all((t.bytes_req[km] > 32) & (t.bytes_req[km] <= 64) & (t.bytes_alloc[km] == 64))
    site = np.asarray(t.sites, dtype=object)[t.site_id]
    pops = site == "mas_wr_bnode+0x103b"
    assert np.all(t.gfp[pops] == GFP_NOWAIT)
    assert np.all(t.gfp[site == "mas_preallocate+0x442"] == GFP_KERNEL)
    assert np.all(t.gfp[(t.op == Op.KMEM_CACHE_FREE) | (t.op == Op.KFREE)] == 0)
    # maple_node has no visible free: kfree_rcu and bulk frees are invisible, and counted
    mn = t.caches.index("maple_node")
    assert not np.any((t.op == Op.KMEM_CACHE_FREE) & (t.cache_id == mn))
    extra = t.meta.extra["synth"]
    assert extra["invisible"]["kfree_rcu"] > 0 and extra["invisible"]["bulk_free"] > 0
    by = extra["by_cache"]["maple_node"]
    assert by["alloc_visible"] == int(((t.op == Op.KMEM_CACHE_ALLOC) & (t.cache_id == mn)).sum())
    # prefill operations: OpTable rows, pops in runs of `used` at one site
    g_ops = generate(spec_of(streams), seed=5, events=50_000).ops
    assert len(g_ops) > 0 and np.all(g_ops.upper_bound == 7) and np.all(g_ops.used == 2)
    assert abs(int(pops.sum()) - int(g_ops.used.sum())) <= 4  # an op cut at the window's end
    runs = workload_stats(t)["caches"]["maple_node"]["pop_runs"]["mas_wr_bnode"]
    assert runs["mean"] == pytest.approx(2.0, abs=0.15)


def test_pointers_distinct_while_live_and_reused() -> None:
    t = generate(
        spec_of([{**VMA, "free": {**VMA["free"], "remote_cpu": 0.0}}]), seed=2, events=40_000
    ).events
    live: set[int] = set()
    allocs = 0
    for op, p in zip(t.op.tolist(), t.ptr.tolist(), strict=True):
        if op == Op.KMEM_CACHE_ALLOC:
            assert p not in live
            live.add(p)
            allocs += 1
        else:
            assert p in live
            live.remove(p)
    assert len(np.unique(t.ptr)) < allocs / 10  # sheaf-like LIFO reuse on each CPU


def test_rates_lifetimes_and_cross_cpu_share_match_spec() -> None:
    spec = spec_of([VMA])
    t = generate(spec, seed=11, events=200_000).events
    st = workload_stats(t)["caches"]["vm_area_struct"]
    want = expected_rates(spec)["vm_area_struct"]
    assert st["alloc_rate_per_cpu"] == pytest.approx(want["alloc"], rel=0.03)
    assert st["free_rate_per_cpu"] == pytest.approx(want["free"], rel=0.03)
    # exponential lifetime with scale 40 µs (µs-rounded timestamps: +-1 µs)
    assert st["lifetime_us"]["p50"] == pytest.approx(40 * np.log(2), abs=2.0)
    assert st["lifetime_us"]["p90"] == pytest.approx(40 * np.log(10), abs=4.0)
    assert st["remote_free_share"] == pytest.approx(0.25, abs=0.01)


def test_remote_node_share_and_next_cpu() -> None:
    s = {**VMA, "free": {**VMA["free"], "remote_cpu": 0.6, "remote_node": 0.4}}
    t = generate(spec_of([s], cpus=8, nodes=2), seed=3, events=100_000).events
    extra = t.meta.extra["synth"]
    assert extra["cpu_node"] == [0, 0, 0, 0, 1, 1, 1, 1]
    m = extra["frees_matched"]
    assert extra["frees_remote_cpu"] / m == pytest.approx(0.6, abs=0.015)
    assert extra["frees_remote_node"] / m == pytest.approx(0.4, abs=0.015)
    # producer -> next CPU: allocations only on even CPUs, frees only on odd ones
    s = {**VMA, "cpus": "even", "free": {**VMA["free"], "remote_cpu": 1.0, "remote_choice": "next"}}
    t = generate(spec_of([s]), seed=3, events=20_000).events
    alloc = t.op == Op.KMEM_CACHE_ALLOC
    assert set(np.unique(t.cpu[alloc]).tolist()) == {0, 2}
    assert set(np.unique(t.cpu[~alloc]).tolist()) == {1, 3}


def test_invisible_shares_and_bulk_users() -> None:
    streams = [
        {**VMA, "free": {"call_site": "f+0x1", "kfree_rcu": 0.3, "bulk": 0.2, "never": 0.1}},
        {
            "name": "bulk",
            "cache": "maple_node",
            "kind": "bulk",
            "rate": 5000,
            "call_site": "g+0x1",
            "bulk": {"size": 16},
            "lifetime_us": 20,
            "free": {"call_site": "h+0x1", "bulk": 0.75},
        },
    ]
    t = generate(spec_of(streams, warmup_ms=5), seed=8, events=100_000).events
    by = t.meta.extra["synth"]["by_cache"]
    v = by["vm_area_struct"]
    dead = v["free_visible"] + v["free_kfree_rcu"] + v["free_bulk"]
    assert v["free_kfree_rcu"] / dead == pytest.approx(0.3 / 0.9, abs=0.02)
    assert v["free_bulk"] / dead == pytest.approx(0.2 / 0.9, abs=0.02)
    assert v["free_visible"] / v["alloc_visible"] == pytest.approx(0.4, abs=0.02)
    b = by["maple_node"]
    assert b["alloc_visible"] == 0 and b["alloc_bulk"] > 0
    # bulk-allocated objects freed one by one are frees of allocations the trace never saw
    assert b["free_visible"] == b["free_of_unseen_alloc"] > 0
    assert b["free_visible"] / (b["free_visible"] + b["free_bulk"]) == pytest.approx(0.25, abs=0.03)


def test_bursts_are_batches_freed_together() -> None:
    s = {
        **VMA,
        "rate": 2000,
        "burst": {"size": 8},
        "spacing_ns": 200,
        "lifetime_us": 50,
        "free": {"call_site": "f+0x1", "spacing_ns": 100},
    }
    t = generate(spec_of([s], cpus=1), seed=4, events=16_000).events
    alloc = (t.op == Op.KMEM_CACHE_ALLOC).astype(np.int8)
    # runs of allocations and of frees come in multiples of the burst size
    edges = np.flatnonzero(np.diff(alloc)) + 1
    lengths = np.diff(np.concatenate([[0], edges, [len(alloc)]]))
    assert np.mean(lengths[1:-1] % 8 == 0) > 0.9


def test_packed_sort_equals_lexsort_fallback() -> None:
    from sheaftune.synth._replay import SUB
    from sheaftune.synth.generate import _merge_order

    rng = np.random.default_rng(0)
    n_alloc, n_free = 5000, 3000
    t = np.concatenate([rng.uniform(0, 50_000, n_alloc), np.zeros(n_free)])
    f_obj = rng.integers(0, n_alloc, n_free)
    t[n_alloc:] = t[f_obj] + rng.exponential(3000, n_free)
    cpu = rng.integers(0, 3, n_alloc + n_free).astype(np.int32)
    follow = np.zeros(n_alloc, dtype=np.int8)
    key, bits, base, *_ = _merge_order(t, cpu, follow, f_obj, n_alloc, 3)
    order = key & ((1 << bits) - 1)
    rest = (key >> bits) // SUB
    fast = (order, rest // 3 + base, rest % 3)
    _, _, _, *slow = _merge_order(t, cpu, follow, f_obj, n_alloc, 3, force_lexsort=True)
    for a, b in zip(fast, slow, strict=True):
        assert np.array_equal(a, b)
    order, t_us, _ = fast
    pos = np.empty_like(order)
    pos[order] = np.arange(len(order))
    assert np.all(pos[n_alloc:] > pos[f_obj])  # every free after its allocation
    assert np.all(t_us[pos[n_alloc:]] > t_us[pos[f_obj]])


def test_lexsort_fallback_generates_the_same_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    import sheaftune.synth.generate as gen

    spec = spec_of([VMA], events=5000)
    fast = generate(spec, seed=2).events
    calls = []
    real = gen._merge_order

    def spy(*a: Any, **kw: Any) -> Any:
        calls.append(kw)
        return real(*a, **kw)

    monkeypatch.setattr(gen, "_packed_fits", lambda *a: False)
    monkeypatch.setattr(gen, "_merge_order", spy)
    slow = generate(spec, seed=2).events
    assert calls  # the fallback did run
    assert np.array_equal(fast.ts_ns, slow.ts_ns) and np.array_equal(fast.op, slow.op)
    assert np.array_equal(fast.ptr, slow.ptr)


def test_kfree_null_calls() -> None:
    null = {
        "name": "null",
        "kind": "kfree_null",
        "rate": 20_000,
        "call_site": "vm_area_free+0x1c/0x80",
    }
    t = generate(spec_of([VMA, null]), seed=6, events=20_000).events
    rows = t.ptr == 0
    assert np.all(t.op[rows] == Op.KFREE) and np.all(t.cache_id[rows] == -1)
    assert int(rows.sum()) == t.meta.extra["synth"]["kfree_null"] > 0
    assert t.meta.extra["synth"]["invisible"]["bulk_alloc"] == 0
    # a NULL kfree is not a free of anything: vm_area_struct's counts are untouched
    assert t.meta.extra["synth"]["by_cache"]["vm_area_struct"]["free_of_unseen_alloc"] == 0
    assert int(rows.sum()) / len(t) == pytest.approx(20_000 / (20_000 + 2 * 50_000), abs=0.02)


def test_fused_records_equal_the_reference_sort_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The records one numba pass per stream writes (keys packed as it goes) are those of the
    reference: the times, CPUs and follow flags it writes for the fallback, packed by
    ``sort_key``. Bursts, prefill pops, kfree_rcu delays and a bulk user's hidden objects."""
    import sheaftune.synth.generate as gen
    from sheaftune.synth._replay import sort_key

    seen: list[Any] = []
    real = gen._fill

    def spy(streams: Any, ncpus: int, packed: Any = None) -> Any:
        seen.append((streams, ncpus))
        return real(streams, ncpus, packed)

    monkeypatch.setattr(gen, "_fill", spy)
    spec = spec_of(
        [
            {**VMA, "burst": {"size": {"dist": "poisson", "mu": 4, "min": 1}}, "spacing_ns": 250},
            {
                "name": "pops",
                "cache": "maple_node",
                "kind": "prefill",
                "rate": 20_000,
                "call_site": "mas_wr_bnode+0x103b/0x1770",
                "prefill": {"upper_bound": 7, "used": {"choice": {0: 1, 2: 5, 3: 2}}},
                "lifetime_us": {"dist": "lognorm", "s": 1.0, "scale": 50},
                "free": {"kfree_rcu": 0.7, "bulk": 0.1, "call_site": "f+0x1/0x10"},
            },
            {
                "name": "bulk",
                "cache": "maple_node",
                "kind": "bulk",
                "rate": 5_000,
                "call_site": "b+0x1/0x10",
                "bulk": {"size": 6},
                "lifetime_us": {"dist": "expon", "scale": 30},
                "free": {"call_site": "g+0x1/0x10", "bulk": 0.6, "never": 0.1},
            },
            {
                "name": "km",
                "cache": "kmalloc-64",
                "rate": 10_000,
                "call_site": {"a+0x1/0x10": 2, "b+0x2/0x10": 1},
                "bytes_req": {"dist": "randint", "low": 33, "high": 65},
                "lifetime_us": {"dist": "gamma", "a": 2.0, "scale": 20},
                "free": {"call_site": {"c+0x1/0x10": 1, "d+0x1/0x10": 1}, "kfree_rcu": 0.2},
            },
        ],
        events=20_000,
    )
    generate(spec, seed=5)
    streams, ncpus = seen[-1]
    fast = real(streams, ncpus, packed=True)
    ref = real(streams, ncpus, packed=False)
    assert fast.packed and not ref.packed and len(fast.key) == len(ref.tag) > 20_000
    for name in ("tag", "f_obj"):
        assert np.array_equal(getattr(fast, name), getattr(ref, name)), name
    # sites and sizes are written only for the streams that vary them per record
    stream = ref.tag >> 4
    is_free = (ref.tag & 1) == 1
    site_c = np.asarray([x.site_c for x in streams])
    fsite_c = np.asarray([x.fsite_c for x in streams])
    per = np.where(is_free, fsite_c[stream], site_c[stream]) == gen.PER_RECORD
    assert 0 < per.sum() < len(per)
    assert np.array_equal(fast.site[per], ref.site[per])
    per = np.asarray([len(x.obj_bytes) > 0 for x in streams])[stream[: ref.n_alloc]]
    assert 0 < per.sum() < len(per)
    assert np.array_equal(fast.nbytes[per], ref.nbytes[per])
    assert set(fast.nbytes[per].tolist()) <= set(range(33, 65))
    key = sort_key(
        ref.t_ns, ref.cpu, ref.follow, ref.f_obj, ref.n_alloc, ncpus, ref.base_us, ref.idx_bits
    )
    assert np.array_equal(fast.key, key)
    assert ref.base_us == int(np.floor(ref.t_ns.min() / 1000.0))
    assert set(ref.follow.tolist()) == {0, 1, 2}


@pytest.mark.parametrize(
    ("ncpus", "nodes", "choice"), [(7, 3, "random"), (5, 4, "next"), (4, 1, "random")]
)
def test_free_cpus_kernel_equals_the_vectorised_rule(ncpus: int, nodes: int, choice: str) -> None:
    """The compiled choice of freeing CPUs is the numpy rule it replaced, draw for draw."""
    from sheaftune.synth._replay import free_cpus
    from sheaftune.synth.generate import _node_blocks

    rng = np.random.default_rng(ncpus)
    n, remote_cpu, remote_node = 20_000, 0.6, (0.3 if nodes > 1 else 0.0)
    cpu = rng.integers(0, ncpus, n).astype(np.int32)
    u, pick = rng.random(n), rng.random(n)
    node_of, start, count = _node_blocks(ncpus, nodes)
    far = u < remote_node
    draw = rng.integers(0, max(nodes - 1, 1), size=int(far.sum()))
    want = cpu.copy()
    if nodes > 1:
        idx = np.flatnonzero(far)
        other = (node_of[cpu[idx]] + 1 + draw) % nodes
        want[idx] = start[other] + (pick[idx] * count[other]).astype(np.int64)
    idx = np.flatnonzero((u < remote_cpu) & ~far)
    c = cpu[idx]
    own = node_of[c]
    size = count[own]
    if choice == "next":
        nxt = start[own] + (c - start[own] + 1) % np.maximum(size, 1)
    else:
        r = (pick[idx] * np.maximum(size - 1, 1)).astype(np.int64)
        nxt = start[own] + np.where(r >= c - start[own], r + 1, r)
    want[idx] = np.where(size < 2, (c + 1) % ncpus, nxt)
    got = free_cpus(
        cpu,
        u,
        pick,
        draw,
        remote_cpu,
        remote_node,
        nodes,
        node_of,
        start,
        count,
        choice == "next",
        ncpus,
    )
    assert np.array_equal(got, want)
    assert np.mean(got != cpu) == pytest.approx(remote_cpu, abs=0.03)
