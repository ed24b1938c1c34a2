"""White-box tests of rules whose effect is not visible in a scenario's counters and final state:
orders (LIFO barns, partial-list head/tail placement, shrink promotion, detached freelists,
flush batches) and the derived cache parameters (autotuning, min_partial)."""

from __future__ import annotations

import dataclasses

import pytest

from sheaftune.model.reference import SheafModel
from sheaftune.model.scenario import ScenarioRun, parse_scenario
from sheaftune.model.slab import Slub73
from sheaftune.params import (
    ModelParams,
    autotune_capacity,
    default_min_partial,
    kmalloc_size_roundup,
)


# -- §10 C1-C3 capacity autotuning -------------------------------------------------------------
@pytest.mark.parametrize(
    "size,cap",
    [
        (8, 60),
        (16, 60),
        (32, 60),
        (64, 60),
        (96, 60),
        (128, 60),
        (192, 60),
        (255, 60),
        (256, 28),
        (512, 28),
        (1023, 28),
        (1024, 12),
        (2048, 12),
        (4095, 12),
        (4096, 4),
        (8192, 4),
    ],
)
def test_c3_capacity_table(size: int, cap: int) -> None:
    assert autotune_capacity(size) == cap


def test_c1_request_is_a_floor_not_rounded() -> None:
    assert autotune_capacity(256, 32) == 32  # maple_node (C3)
    assert autotune_capacity(192, 32) == 60  # vm_area_struct with a 192-byte slot
    assert autotune_capacity(256, 29) == 29
    assert autotune_capacity(64, has_sheaves=False) == 0  # D6: debug caches


def test_c2_kmalloc_size_roundup() -> None:
    assert [kmalloc_size_roundup(n) for n in (1, 9, 65, 97, 129, 193, 257, 8193)] == [
        8,
        16,
        96,
        128,
        192,
        256,
        512,
        12288,
    ]


def test_x2_618_capacity_is_the_request() -> None:
    p = ModelParams.for_cache(kernel="6.18", object_size=256, requested_capacity=32)
    assert p.sheaf_capacity == 32
    assert ModelParams.for_cache(kernel="6.18", object_size=256).sheaf_capacity == 0
    assert ModelParams.for_cache(kernel="7.3", object_size=256).sheaf_capacity == 28


def test_d1_min_partial_and_618_cpu_partial() -> None:
    assert [default_min_partial(s) for s in (8, 256, 1024, 4096, 1 << 20, 1 << 22)] == [
        5,
        5,
        5,
        6,
        10,
        10,
    ]
    p = ModelParams.for_cache(kernel="6.18", object_size=256, requested_capacity=32)
    assert p.objects_per_slab == 16 and p.cpu_partial == 52 and p.cpu_partial_slabs == 7


# -- D4 barn lists are LIFO --------------------------------------------------------------------
def test_d4_barn_full_list_is_lifo() -> None:
    p = ModelParams.for_cache(object_size=256, capacity=2, objects_per_slab=8, cpus=2)
    m = SheafModel(p)
    objs = [m.kmem_cache_alloc(0) for _ in range(8)]
    for o in objs:  # CPU 1: frees 5 and 7 each push a full main into the barn (ENOMEM, F4)
        m.kmem_cache_free(1, o)
    barn = m.barns[0]
    assert len(barn.full) == 2
    first, newest = barn.full
    assert m.pcs[0].main.size == 0 and m.pcs[0].spare.size == 0  # type: ignore[union-attr]
    top = newest.objs[-1]
    # CPU 0's exchange (A3.4) takes the most recently put sheaf, not the first
    assert m.kmem_cache_alloc(0) == top
    assert barn.full == [first]
    assert m.pcs[0].main is newest


# -- R1/R2/R5 partial-list placement -------------------------------------------------------------
def _partial(run: ScenarioRun, node: int = 0) -> list[tuple[int, int]]:
    s = run.model.slab
    return [(sid, len(s.sl_free[sid])) for sid in s.partial[node]]


def test_r2_overshoot_slab_goes_to_the_tail_r5_leftovers_to_the_head() -> None:
    run = ScenarioRun(
        parse_scenario(
            "scenario: 1\ncache: {object_size: 256, capacity: 6, objects_per_slab: 8}\n"
            "cpus: 1\nops:\n  - [0, alloc_bulk, 24]\n  - [0, free_bulk, 6]\n"
            "  - [0, free_bulk, 6]\n  - [0, free_bulk, 3]\n  - [0, alloc, 7]\n"
            "  - [0, alloc, 6]\n"
        )
    )
    ops = run.scn.ops
    for op in ops[:4]:
        run.step(op)
    assert _partial(run) == [(1, 7), (2, 2)]
    run.step(ops[4])  # refill of 6 takes s1 whole, 1 left: to the tail
    assert _partial(run) == [(2, 2), (1, 1)]
    run.step(ops[5])  # takes s2 and s1 (3), then a new slab s3 whose 5 left go to the head
    assert _partial(run) == [(3, 5)]


# -- B5 detached freelists ----------------------------------------------------------------------
def test_b5_build_detached_freelist_lookahead_and_swaps() -> None:
    p = ModelParams.for_cache(object_size=256, capacity=4, objects_per_slab=10)
    s = Slub73(p, {k: 0 for k in ("alloc_slab",)}, {"slabs_live": 0, "list_lock": 0})
    a = [0, 1, 2]  # slab 0
    b, c, d = 10, 20, 30  # slabs 1, 2, 3
    # from the end: a[2] fixes slab 0; a[1] matches; b, c mismatch (2); a[0] matches; d is the
    # third mismatch and ends the scan
    arr = [d, a[0], c, b, a[1], a[2]]
    size, sid, chain = s.build_detached_freelist(arr, len(arr))
    assert sid == 0 and chain == [a[2], a[1], a[0]]
    # the kernel's swaps move matched objects to the end; the rest stay in front for the next
    # call: [d, a0, c, b, a1, a2] -> a0 swapped with b: [d, b, c, a0, a1, a2]
    assert size == 3 and arr == [d, b, c, a[0], a[1], a[2]]
    size, sid, chain = s.build_detached_freelist(arr, size)
    assert sid == 2 and chain == [c] and size == 2


# -- F6 batches of 32 ---------------------------------------------------------------------------
def test_f6_flush_main_in_batches_of_32() -> None:
    p = ModelParams.for_cache(object_size=64, capacity=70, objects_per_slab=64)
    m = SheafModel(p)
    objs = [m.kmem_cache_alloc(0) for _ in range(70)]
    for o in objs:
        m.kmem_cache_free(0, o)
    main = m.pcs[0].main
    assert main is not None and main.size > 32
    calls: list[int] = []
    orig = m.slab.free_bulk

    def spy(cpu: int, arr: list[int]) -> None:
        calls.append(len(arr))
        orig(cpu, arr)

    m.slab.free_bulk = spy  # type: ignore[method-assign]
    n = main.size
    m.flush_all()
    # the spare (if any) is flushed whole first, then main in batches of at most 32
    main_calls = calls[-((n + 31) // 32) :]
    assert main_calls == [32] * (n // 32) + ([n % 32] if n % 32 else [])


# -- L2 shrink: empty slabs discarded, 1..32 free promoted by count ------------------------------
def test_l2_shrink_promotes_by_free_count() -> None:
    p = dataclasses.replace(
        ModelParams.for_cache(object_size=256, capacity=0, objects_per_slab=40), min_partial=10
    )
    m = SheafModel(p)
    s = m.slab
    sids = [s._new_slab_raw(0) for _ in range(5)]
    frees = {sids[0]: 40, sids[1]: 35, sids[2]: 3, sids[3]: 1, sids[4]: 3}
    for sid, nfree in frees.items():
        fl = s.sl_free[sid]
        del fl[: 40 - nfree]
        s.sl_inuse[sid] = 40 - nfree
        s._add_partial(0, sid, tail=True)
    m.kmem_cache_shrink()
    # s0 (all free) discarded; s3 (1 free) first; s2 and s4 (3 free) in reversed scan order
    # (list_move adds at the bucket head); s1 (35 free > 32) keeps its place behind them
    assert s.partial[0] == [sids[3], sids[4], sids[2], sids[1]]
    assert m.extra["slabs_shrunk"] == 1 and m.stat["free_slab"] == 0


# -- A2/A7: a node mismatch leaves the sheaf alone ----------------------------------------------
def test_a7_top_object_mismatch_keeps_refill() -> None:
    scn = parse_scenario(
        "scenario: 1\ncache: {object_size: 256, capacity: 4, "
        "objects_per_slab: 2}\ncpus: 2\nnodes: 2\nops:\n"
        "  - [1, alloc_node, 1, 1]\n"
    )
    run = ScenarioRun(scn)
    run.run()
    m = run.model
    # CPU 1's main was empty: refill (from node 1, a new slab) happened and is kept; its top
    # object is local so the allocation is a fast-path hit
    assert m.stat["alloc_fastpath"] == 1 and m.stat["alloc_node_mismatch"] == 0
    assert m.pcs[1].main is not None and m.pcs[1].main.size == 3


def test_occupancy_peaks_and_time_weighted_means() -> None:
    p = ModelParams.for_cache(object_size=256, capacity=4, objects_per_slab=8, cpus=2)
    m = SheafModel(p)
    m.advance(0)
    a = m.kmem_cache_alloc(0)  # CPU 0 holds 3 (main) + 0 (spare)
    m.advance(100)  # 3 objects for 100 ns
    m.kmem_cache_free(0, a)  # 4
    m.advance(300)  # 4 objects for 200 ns
    occ = m.occupancy()
    assert occ["cpus"][0] == {"cpu": 0, "now": 4, "max": 4, "mean": (3 * 100 + 4 * 200) / 300}
    assert occ["cpus"][1]["mean"] == 0.0 and occ["nodes"][0]["barn_max"] == 0


def test_full_state_is_deterministic_and_complete() -> None:
    p = ModelParams.for_cache(
        kernel="6.18", object_size=256, requested_capacity=3, objects_per_slab=4, cpus=3, nodes=2
    )
    states = []
    for _ in range(2):
        m = SheafModel(p)
        objs = [m.kmem_cache_alloc(c % 3) for c in range(20)]
        for i, o in enumerate(objs[::2]):
            m.kfree_rcu(i % 3, o)
        m.kmem_cache_free_bulk(1, objs[1::2])
        m.rcu_grace_period()
        states.append(m.full_state())
    assert states[0] == states[1]
    st = states[0]
    held = sum(len(x) for pcs in st["pcs"] for x in pcs if x is not None)
    held += sum(len(sh) for full, _ in st["barns"] for sh in full)
    assert held == m.held_objects()
    assert set(st["slab"]) == {"slabs", "partial", "cpu_slab", "cpu_freelist", "cpu_partial"}
