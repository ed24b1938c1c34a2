"""Normalisation: pointer matching, kfree attribution, kmalloc cache names, unseen frees."""

from __future__ import annotations

import numpy as np
import pytest

from sheaftune import gfp
from sheaftune.analysis.characterize import characterize
from sheaftune.events import COLUMNS, NO_CACHE, EventTable, Op, TraceMeta
from sheaftune.normalize import normalize, sheaf_pop_runs
from tests.conftest import FIXTURES

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


# --- the compiled sweeps against a plain reading of the rules ------------------------------


def _random_trace(seed: int, n: int = 4000, hashed: bool = False) -> EventTable:
    """Reuse-heavy random events: few pointers (and NULL, ZERO_SIZE_PTR), many kmalloc sizes
    (the key table must grow), pop sites in two caches, many tasks, gaps around the run gap."""
    rng = np.random.default_rng(seed)
    caches = ["maple_node", "vm_area_struct", "dentry"]
    sites = ["mas_wr_split+0x1", "mas_wr_node_store+0x2", "mas_dup_alloc+0x3", "vm_area_dup+0x4"]
    cols = {k: np.zeros(n, dtype=d) for k, d in COLUMNS.items()}
    op = rng.integers(0, 4, n)
    cols["op"][:] = op
    cols["ts_ns"][:] = np.cumsum(rng.choice([1_000, 20_000, 60_000], n))
    named = (op == A) | (op == F)
    cid = rng.integers(0, len(caches), n)
    cid[(op == F) & (rng.random(n) < 0.1)] = NO_CACHE  # a pre-5.12 kmem_cache_free
    cols["cache_id"][:] = np.where(named, cid, NO_CACHE)
    pool = (np.arange(1, 300, dtype=np.uint64) * np.uint64(0x40)) | np.uint64(0xFFFF888000000000)
    ptr = rng.choice(pool, n)
    ptr[rng.random(n) < 0.03] = 0
    ptr[rng.random(n) < 0.03] = 0x10
    cols["ptr"][:] = ptr
    cols["bytes_alloc"][:] = rng.integers(1, 200, n) * 8
    flags = [K, gfp.GFP_NOWAIT, gfp.GFP_KERNEL_ACCOUNT, K | gfp.__GFP_RECLAIMABLE, gfp.__GFP_DMA]
    cols["gfp"][:] = rng.choice(flags, n)
    cols["site_id"][:] = rng.integers(-1, len(sites), n)
    cols["pid"][:] = rng.integers(1, 300, n)
    cols["node"][:] = -1
    cols["comm_id"][:] = -1
    return EventTable(cols, caches, sites, meta=TraceMeta(cpus=2, pointers_hashed=hashed))


def _family(flags: int) -> int:
    if flags & gfp.__GFP_DMA:
        return 3
    if flags & gfp.__GFP_RECLAIMABLE:
        return 2
    return 1 if flags & gfp.__GFP_ACCOUNT else 0


def _plain_normalize(
    t: EventTable,
) -> tuple[list[str], list[int], list[int], list[int], list, dict]:
    """caches, cache_id, alloc_of, reused_by, live_at_end and counts as the module docstring
    states them."""
    from sheaftune.normalize import _FAMILY_PREFIX

    caches = list(t.caches)
    cid = t.cache_id.tolist()
    ops, ptrs = t.op.tolist(), t.ptr.tolist()
    keys = set()
    for i, o in enumerate(ops):
        if o == KM:
            keys.add((int(t.bytes_alloc[i]), _family(int(t.gfp[i]))))
    for size, fam in sorted(keys):
        name = _FAMILY_PREFIX[fam] + gfp._size_name(size)
        if name not in caches:
            caches.append(name)
    for i, o in enumerate(ops):
        if o == KM:
            name = _FAMILY_PREFIX[_family(int(t.gfp[i]))] + gfp._size_name(int(t.bytes_alloc[i]))
            cid[i] = caches.index(name)
    n = len(ops)
    alloc_of, reused_by = [-1] * n, [-1] * n
    c = dict.fromkeys(["null_free", "zero_size_free", "failed_alloc", "matched_free"], 0)
    c |= dict.fromkeys(["unmatched_kfree", "unmatched_kmem_cache_free", "unseen_free"], 0)
    c |= {"live_at_end": 0, "free_cache_mismatch": 0}
    last: dict[int, int] = {}
    for i, (o, p) in enumerate(zip(ops, ptrs, strict=True)):
        alloc = o in (A, KM)
        if p == 0:
            c["failed_alloc" if alloc else "null_free"] += 1
            continue
        if p == 0x10 and not alloc and not t.meta.pointers_hashed:
            c["zero_size_free"] += 1
            continue
        j = last.get(p, -1)
        last[p] = i
        if j >= 0 and ops[j] in (A, KM):
            if alloc:
                reused_by[j] = i
                c["unseen_free"] += 1
                continue
            alloc_of[i] = j
            c["matched_free"] += 1
            if o == KF or (o == F and cid[i] == NO_CACHE):
                cid[i] = cid[j]
            elif o == F and cid[i] != cid[j]:
                c["free_cache_mismatch"] += 1
        elif not alloc:
            c["unmatched_kfree" if o == KF else "unmatched_kmem_cache_free"] += 1
    live = sorted(j for j in last.values() if ops[j] in (A, KM))
    c["live_at_end"] = len(live)
    return caches, cid, alloc_of, reused_by, live, c


def _plain_pop_runs(norm, cache: str, height: int, gap: int) -> tuple[list, list, list, list]:
    """(rows, run, code, bound) of ``sheaf_pop_runs`` read straight from its docstring."""
    from sheaftune.normalize import _STORE_TYPES, SHEAF_POP_SITES, _site_func, request_bound

    t = norm.table
    cid = t.caches.index(cache)
    open_run: dict[int, tuple[int, int]] = {}  # pid -> (run, time of its last pop)
    rows, run, code, bound, used = [], [], [], [], []
    for i in range(len(t)):
        if t.cache_id[i] != cid or t.op[i] not in (A, KM):
            continue
        s = int(t.site_id[i])
        store = SHEAF_POP_SITES.get(_site_func(t.sites[s]), "") if s >= 0 else ""
        pid, ts = int(t.pid[i]), int(t.ts_ns[i])
        if not store or t.gfp[i] & gfp.__GFP_DIRECT_RECLAIM:
            open_run.pop(pid, None)
            continue
        if t.ptr[i] == 0:
            continue  # a failed pop: no pop, and the task's run goes on
        r, at = open_run.get(pid, (-1, 0))
        if r < 0 or ts - at > gap:
            r = len(bound)
            bound.append(0)
            used.append(0)
        open_run[pid] = (r, ts)
        rows.append(i)
        run.append(r)
        code.append(_STORE_TYPES.index(store))
        bound[r] = max(bound[r], request_bound(store, height, 0))
        used[r] += 1
    return rows, run, code, [max(b, u) for b, u in zip(bound, used, strict=True)]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("small", [False, True])
def test_sweeps_equal_the_plain_rules(seed: int, small: bool, monkeypatch: pytest.MonkeyPatch):
    """The kernels, with and without tiny chunks, buckets and first table sizes (every table
    grows, every sweep resumes), give what a plain reading of the rules gives."""
    from sheaftune import normalize as normmod
    from sheaftune.normalize import sheaf_pop_runs

    if small:
        for name, value in [("CHUNK_ROWS", 333), ("BUCKET_EVENTS", 500), ("FIRST_SLOTS", 2)]:
            monkeypatch.setattr(normmod, name, value)
        monkeypatch.setattr(normmod, "FIRST_SLOTS_SMALL", 2)
        monkeypatch.setattr(normmod, "FIRST_POPS", 2)
    for hashed in (False, True):
        t = _random_trace(seed, hashed=hashed)
        n = normalize(t)
        caches, cid, alloc_of, reused_by, live, counts = _plain_normalize(t)
        assert n.table.caches == caches
        assert n.table.cache_id.tolist() == cid
        assert n.alloc_of.tolist() == alloc_of and n.alloc_of.dtype == np.int32
        assert n.reused_by.tolist() == reused_by and n.reused_by.dtype == np.int32
        assert np.nonzero(n.live_at_end)[0].tolist() == live
        assert n.counts == counts
        for cache in ("maple_node", "vm_area_struct", "dentry", "kmalloc-64"):
            for height, gap in ((3, 50_000), (4, 30_000)):
                runs = sheaf_pop_runs(n, cache, tree_height=height, gap_ns=gap)
                rows, run, code, bound = _plain_pop_runs(n, cache, height, gap)
                assert runs.rows.tolist() == rows and runs.run.tolist() == run
                assert runs.code.tolist() == code and runs.bound.tolist() == bound
                assert runs.run.dtype == np.int64 and runs.bound.dtype == np.int64
                assert runs.code.dtype == np.int8
            fixed = sheaf_pop_runs(n, cache, upper_bound=2, gap_ns=gap)
            used = np.bincount(fixed.run, minlength=fixed.n_runs)
            assert fixed.bound.tolist() == np.maximum(2, used).tolist()
        assert sum(len(sheaf_pop_runs(n, c).rows) for c in ("maple_node", "vm_area_struct")) > 100


def test_a_failed_pop_is_no_pop_and_the_replay_gives_it_no_object() -> None:
    """A NULL allocation at a pop site took nothing from the sheaf: the runs skip it (the
    replay once gave it the next allocation's object, which was then allocated twice)."""
    from sheaftune.analysis.pipeline import ModelOptions, analyze_table
    from sheaftune.readers import read_trace

    path = FIXTURES / "traces" / "vma-small.v6.dat"
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared/fixtures)")
    table = read_trace(str(path))
    before = sheaf_pop_runs(normalize(table), "maple_node")
    failed = int(before.rows[3])
    table.ptr[failed] = 0
    after = sheaf_pop_runs(normalize(table), "maple_node")
    assert failed not in set(after.rows.tolist())
    assert len(after.rows) == len(before.rows) - 1
    assert after.n_runs == before.n_runs  # (its run goes on: it had pops before and after)
    replay = analyze_table(table, ["maple_node"], ModelOptions(recommend=False))
    plan = replay.caches["maple_node"]["replay"]["plan"]
    assert plan["alloc_from_sheaf"] == len(after.rows)
