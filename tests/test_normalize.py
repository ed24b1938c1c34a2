"""Normalisation: pointer matching, kfree attribution, kmalloc cache names, unseen frees."""

from __future__ import annotations

import numpy as np

from sheaftune import gfp
from sheaftune.analysis.characterize import characterize
from sheaftune.events import COLUMNS, NO_CACHE, EventTable, Op, TraceMeta
from sheaftune.normalize import normalize

A, F, KM, KF = Op.KMEM_CACHE_ALLOC, Op.KMEM_CACHE_FREE, Op.KMALLOC, Op.KFREE


def table(rows: list[tuple], caches: list[str], hashed: bool = False) -> EventTable:
    """rows: (ts_ns, cpu, op, cache_id, ptr, bytes_alloc, gfp)"""
    cols = {k: np.zeros(len(rows), dtype=d) for k, d in COLUMNS.items()}
    for i, (ts, cpu, op, cid, ptr, size, flags) in enumerate(rows):
        cols["ts_ns"][i], cols["cpu"][i], cols["op"][i] = ts, cpu, op
        cols["cache_id"][i], cols["ptr"][i] = cid, ptr
        cols["bytes_alloc"][i] = cols["bytes_req"][i] = size
        cols["gfp"][i] = flags
    cols["node"][:] = -1
    cols["site_id"][:] = -1
    cols["comm_id"][:] = -1
    return EventTable(cols, caches, meta=TraceMeta(cpus=2, pointers_hashed=hashed))


K = gfp.GFP_KERNEL


def test_kfree_attributed_to_matching_allocation_and_kmalloc_names():
    t = table(
        [
            (1, 0, KM, NO_CACHE, 0x1000, 64, K),
            (2, 0, KM, NO_CACHE, 0x2000, 64, gfp.GFP_KERNEL_ACCOUNT),
            (3, 1, KM, NO_CACHE, 0x3000, 8192, gfp.GFP_KERNEL | gfp.__GFP_RECLAIMABLE),
            (4, 1, KF, NO_CACHE, 0x1000, 0, 0),
            (5, 1, KF, NO_CACHE, 0x0, 0, 0),  # kfree(NULL)
            (6, 0, KF, NO_CACHE, 0x9000, 0, 0),  # allocated before the trace
            (7, 0, KF, NO_CACHE, 0x10, 0, 0),  # ZERO_SIZE_PTR
        ],
        [],
    )
    n = normalize(t)
    names = [n.table.caches[c] if c >= 0 else None for c in n.table.cache_id]
    assert names == [
        "kmalloc-64",
        "kmalloc-cg-64",
        "kmalloc-rcl-8k",
        "kmalloc-64",
        None,
        None,
        None,
    ]
    assert n.alloc_of[3] == 0 and n.freed_by[0] == 3
    c = n.counts
    assert c["null_free"] == 1 and c["zero_size_free"] == 1 and c["unmatched_kfree"] == 1
    assert c["live_at_end"] == 2 and c["matched_free"] == 1
    a = characterize(n)
    st = a.caches["kmalloc-64"]
    assert (st["alloc"], st["free"], st["cross_cpu_free"], st["live_at_end"]) == (1, 1, 1, 0)
    assert st["lifetime_ns"]["p50"] == 3


def test_reuse_without_visible_free_is_an_unseen_free():
    t = table(
        [
            (1, 0, A, 0, 0xA, 256, gfp.GFP_NOWAIT),
            (2, 0, A, 0, 0xA, 256, K),  # 0xA allocated again: the first died unseen
            (3, 1, F, 0, 0xA, 0, 0),
            (4, 1, F, 0, 0xA, 0, 0),  # double free: unmatched
            (5, 1, F, 0, 0xB, 0, 0),  # freed before the trace: unmatched, still named
        ],
        ["maple_node"],
    )
    n = normalize(t)
    assert n.unseen_free.tolist() == [True, False, False, False, False]
    assert n.alloc_of.tolist() == [-1, -1, 1, -1, -1]
    st = characterize(n).caches["maple_node"]
    assert st["alloc"] == 2 and st["free"] == 3 and st["matched_free"] == 1
    assert st["unmatched_free"] == 2 and st["unseen_free"] == 1
    assert st["nowait_share"] == 0.5
    assert st["events_by_type"] == {"kmem_cache_alloc": 2, "kmem_cache_free": 3}


def test_hashed_pointers_do_not_treat_0x10_as_zero_size():
    t = table(
        [(1, 0, KM, NO_CACHE, 0x10, 32, K), (2, 0, KF, NO_CACHE, 0x10, 0, 0)], [], hashed=True
    )
    n = normalize(t)
    assert n.counts["zero_size_free"] == 0 and n.counts["matched_free"] == 1


def test_invisible_frees_flagged():
    rows = [(i, 0, A, 0, 0x100 + i, 256, K) for i in range(200)]
    rows += [(1000 + i, 0, F, 0, 0x100 + i, 0, 0) for i in range(10)]
    a = characterize(normalize(table(rows, ["maple_node"])))
    assert a.caches["maple_node"]["invisible_frees"] is True
    assert any("invisible" in note for note in a.notes)


def test_infer_operations_runs_of_sheaf_pops():
    from sheaftune.normalize import infer_operations

    N = gfp.GFP_NOWAIT
    sites = [
        "mas_preallocate+0x44",
        "mas_wr_bnode+0x10",
        "mas_dup_alloc.isra.0+0x1af",
        "mas_spanning_rebalance+0x3",
    ]
    rows = [
        # (ts, cpu, pid, site, gfp)
        (1_000, 0, 7, 0, K),  # plain single-node request: not a pop, ends nothing yet
        (2_000, 0, 7, 1, N),  # run 1: split store, 2 pops
        (3_000, 0, 7, 1, N),
        (4_000, 0, 7, 0, K),  # another operation of task 7
        (5_000, 0, 7, 3, N),  # run 2: spanning, 1 pop
        (5_500, 1, 8, 2, N),  # run 3: fork copy by task 8, 3 pops
        (6_000, 1, 8, 2, N),
        (6_500, 1, 8, 2, N),
        (900_000, 0, 7, 1, N),  # run 4: same task, far later
        (901_000, 0, 7, 0, N),  # GFP_NOWAIT at a non-pop site: not a pop
    ]
    cols = {k: np.zeros(len(rows), dtype=d) for k, d in COLUMNS.items()}
    for i, (ts, cpu, pid, site, flags) in enumerate(rows):
        cols["ts_ns"][i], cols["cpu"][i], cols["pid"][i] = ts, cpu, pid
        cols["site_id"][i], cols["gfp"][i] = site, flags
        cols["ptr"][i] = 0x1000 * (i + 1)
    cols["op"][:] = A
    t = EventTable(cols, ["maple_node"], sites, meta=TraceMeta(cpus=2))
    ops, counts = infer_operations(normalize(t), tree_height=3)
    assert ops.used.tolist() == [2, 1, 3, 1]
    assert ops.upper_bound.tolist() == [7, 10, 3, 7]  # 2H+1, 3H+1, used (fork), 2H+1
    assert ops.cpu.tolist() == [0, 0, 1, 0] and ops.source == "inferred"
    assert counts["sheaf_pops"] == 7 and counts["operations"] == 4
    ops2, _ = infer_operations(normalize(t), upper_bound=5)
    assert ops2.upper_bound.tolist() == [5, 5, 5, 5]
