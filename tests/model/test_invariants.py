"""Property tests of the reference model: invariants that hold after every operation.

Random scenarios (hypothesis) over both kernels, 1-2 nodes, small capacities and slabs, all ops
of the scenario format. After every op:
- every object is accounted for exactly once: live, in a sheaf (per-CPU, barn, rcu in flight,
  prefilled), on a 6.18 CPU freelist, in the classic kfree_rcu batch, or free in a slab; and the
  slab layer's ``inuse`` equals everything but the slab-free ones;
- sheaf sizes within bounds (D3: rcu_free < cap; D4: barn full sheaves are full, empty ones
  empty, ``nr_full <= 10`` since every sequential put-full is checked or follows a check);
- SHEAF_ALLOC - SHEAF_FREE = live sheaf structs (7.3; spec §8);
- spec §8 identity: ΔH = SHEAF_REFILL + FREE_FASTPATH + FREE_RCU_SHEAF + oversize objects
  − ALLOC_FASTPATH − SHEAF_FLUSH − P3 pops (7.3; 6.18 with ALLOC_PCS/FREE_PCS);
- per single allocation exactly one of ALLOC_FASTPATH/ALLOC_SLOWPATH (7.3), per single free of
  exactly one of FREE_FASTPATH/FREE_SLOWPATH (7.3);
- slab lists consistent with slab contents (7.3: on the partial list iff it has a free object).
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sheaftune.model.reference import SheafModel
from sheaftune.model.slab import CPU_SLAB, FREED, NODE_PARTIAL
from sheaftune.params import ModelParams

OPS = [
    "alloc",
    "alloc_node",
    "free",
    "free_oldest",
    "free_bulk",
    "alloc_bulk",
    "kfree_rcu",
    "prefill",
    "alloc_from_sheaf",
    "refill",
    "return",
    "rcu",
    "shrink",
    "offline",
]


def all_sheaves(m: SheafModel) -> list:
    out = []
    for pcs in m.pcs:
        for sh in (pcs.main, pcs.spare, pcs.rcu_free):
            if sh is not None:
                out.append(sh)
    for b in m.barns:
        out.extend(b.full)
        out.extend(b.empty)
    out.extend(sh for sh, _, _ in m.rcu_pending)
    out.extend(m.prefilled.values())
    return out


def check(m: SheafModel, live: list[int], h0: int, before: dict, op: str, n: int) -> None:
    cap = m.cap
    s = m.stat
    slab = m.slab
    # -- every object exactly once
    places: list[int] = list(live)
    for sh in all_sheaves(m):
        places.extend(sh.objs)
    if m.v618:
        for fl in slab.c_free:  # type: ignore[union-attr]
            places.extend(fl)
    for q in m.classic_rcu:
        places.extend(q)
    in_use = len(places)
    for sid, w in enumerate(slab.sl_where):
        if w != FREED:
            places.extend(slab.sl_free[sid])
    dup = [o for o, c in Counter(places).items() if c > 1]
    assert not dup, f"objects in two places: {dup[:5]}"
    assert slab.objects_from_slabs() == in_use
    # every object of every live slab is somewhere
    live_slabs = sum(1 for w in slab.sl_where if w != FREED)
    assert len(places) == live_slabs * slab.ops
    assert m.extra["slabs_live"] == live_slabs
    # -- slab lists
    for node, part in enumerate(slab.partial):
        assert len(set(part)) == len(part)
        for sid in part:
            assert slab.sl_where[sid] == NODE_PARTIAL and slab.sl_node[sid] == node
            assert slab.sl_free[sid], "a slab on the partial list has free objects"
    for sid, w in enumerate(slab.sl_where):
        if w == FREED:
            continue
        assert slab.sl_inuse[sid] == slab.ops - len(slab.sl_free[sid])
        if not m.v618:
            assert (w == NODE_PARTIAL) == bool(slab.sl_free[sid])
        elif w == NODE_PARTIAL:
            assert sid in slab.partial[slab.sl_node[sid]]
        if w == CPU_SLAB:
            assert slab.c_slab[slab.sl_owner[sid]] == sid  # type: ignore[union-attr]
    # -- sheaf bounds
    for pcs in m.pcs:
        for sh in (pcs.main, pcs.spare):
            if sh is not None:
                assert 0 <= sh.size <= cap
        if pcs.rcu_free is not None:
            assert 1 <= pcs.rcu_free.size < cap
    for b in m.barns:
        assert all(sh.size == cap for sh in b.full)
        assert all(sh.size == 0 for sh in b.empty)
        assert len(b.full) <= m.p.max_full_sheaves
    for sh in m.prefilled.values():
        assert sh.size <= sh.capacity
    for sh, _, _ in m.rcu_pending:
        assert sh.size <= cap
    # -- sheaf structs
    structs = len(all_sheaves(m))
    if cap == 0 and not m.v618:
        structs -= len(m.pcs)  # bootstrap sheaves
    assert m.extra["sheaves_live"] == structs
    if not m.v618:
        assert s["sheaf_alloc"] - s["sheaf_free"] == structs
    # -- §8 identity on held objects
    hit_a = s["alloc_cpu_sheaf" if m.v618 else "alloc_fastpath"]
    hit_f = s["free_cpu_sheaf" if m.v618 else "free_fastpath"]
    held = m.held_objects()
    assert m.held_objects_fast() == held == m.extra["held_objects"]
    assert held - h0 == (
        s["sheaf_refill"]
        + hit_f
        + s["free_rcu_sheaf"]
        + m.extra["oversize_objects"]
        - hit_a
        - s["sheaf_flush"]
        - m.extra["alloc_from_sheaf"]
    )

    # -- per-call identities
    def d(name: str) -> int:
        return s[name] - before[name]

    if not m.v618:
        if op in ("alloc", "alloc_node"):
            assert d("alloc_fastpath") + d("alloc_slowpath") == n
        if op in ("free", "free_oldest"):
            assert d("free_fastpath") + d("free_slowpath") == n
        if op in ("free_bulk",):
            assert d("free_fastpath") + d("free_slowpath") == n
        if op == "alloc_bulk":
            assert d("alloc_fastpath") + d("alloc_slowpath") == n
    elif op in ("free", "free_oldest") and d("sheaf_flush") == 0:
        # 6.18 sheaf flushes go through do_slab_free and move these counters too (X7)
        assert d("free_cpu_sheaf") + d("free_fastpath") + d("free_slowpath") <= n


op_strategy = st.tuples(
    st.sampled_from(OPS),
    st.integers(0, 7),
    st.integers(0, 40),
    st.integers(0, 3),
    st.sampled_from([True, True, False]),
)


@st.composite
def setups(draw):
    kernel = draw(st.sampled_from(["7.3", "6.18"]))
    cpus = draw(st.integers(1, 4))
    nodes = draw(st.integers(1, 2))
    cap = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 8]))
    ops_per_slab = draw(st.sampled_from([1, 2, 3, 4, 7, 16]))
    p = ModelParams.for_cache(
        kernel=kernel,
        object_size=256,
        capacity=cap,
        objects_per_slab=ops_per_slab,
        cpus=cpus,
        nodes=nodes,
    )
    import dataclasses

    p = dataclasses.replace(
        p,
        min_partial=draw(st.integers(0, 3)),
        cpu_partial=draw(st.sampled_from([0, 2, 6])),
        max_full_sheaves=draw(st.sampled_from([1, 2, 10])),
        max_empty_sheaves=draw(st.sampled_from([1, 2, 10])),
    )
    ops = draw(st.lists(op_strategy, max_size=60))
    return p, ops


def run_ops(p: ModelParams, ops) -> None:
    m = SheafModel(p)
    live: list[int] = []
    handles: dict[int, object] = {}
    h0 = m.held_objects()
    # occupancy integrals, brute force: the state after each op holds for 10 ns
    t = 0
    m.advance(t)
    brute_cpu = [0] * p.cpus
    brute_node = [0] * p.nodes
    for name, cpu_raw, n, h, blocking in ops:
        for c in range(p.cpus):
            brute_cpu[c] += m.cpu_held(c) * 10
        for nd in range(p.nodes):
            brute_node[nd] += m.node_barn_held(nd) * 10
        t += 10
        m.advance(t)
        online = [c for c in range(p.cpus) if m.online[c]]
        cpu = online[cpu_raw % len(online)]
        before = dict(m.stat)
        done = n
        if name == "alloc":
            for _ in range(n):
                live.append(m.kmem_cache_alloc(cpu, blocking))
        elif name == "alloc_node":
            node = h % p.nodes
            for _ in range(n):
                live.append(m.kmem_cache_alloc_node(cpu, node, blocking))
        elif name in ("free", "kfree_rcu", "free_bulk"):
            done = min(n, len(live))
            objs = live[len(live) - done :][::-1]
            del live[len(live) - done :]
            if name == "free":
                for o in objs:
                    m.kmem_cache_free(cpu, o)
            elif name == "kfree_rcu":
                for o in objs:
                    m.kfree_rcu(cpu, o)
            else:
                m.kmem_cache_free_bulk(cpu, objs)
        elif name == "free_oldest":
            done = min(n, len(live))
            objs = live[:done]
            del live[:done]
            for o in objs:
                m.kmem_cache_free(cpu, o)
        elif name == "alloc_bulk":
            live.extend(m.kmem_cache_alloc_bulk(cpu, n, blocking))
        elif name == "prefill":
            if h in handles:
                continue
            if p.kernel == "6.18" and p.sheaf_capacity == 0 and n == 0:
                continue
            sh = m.kmem_cache_prefill_sheaf(cpu, n, blocking)
            if sh is not None:
                handles[h] = sh
        elif name == "alloc_from_sheaf":
            if h not in handles:
                continue
            for _ in range(n % 8):
                o = m.kmem_cache_alloc_from_sheaf(cpu, handles[h])
                if o is not None:
                    live.append(o)
        elif name == "refill":
            if h not in handles:
                continue
            handles[h] = m.kmem_cache_refill_sheaf(cpu, handles[h], n, blocking)
        elif name == "return":
            if h not in handles:
                continue
            m.kmem_cache_return_sheaf(cpu, handles.pop(h))
        elif name == "rcu":
            m.rcu_grace_period()
        elif name == "shrink":
            m.kmem_cache_shrink()
        elif name == "offline":
            if len(online) > 1:
                m.cpu_offline(cpu)
        check(m, live, h0, before, name, done)
        for c in range(p.cpus):
            assert m.cpu_held_max[c] >= m.cpu_held(c)
    cpu_int, node_int = m._integrals()
    assert cpu_int == brute_cpu and node_int == brute_node


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setups())
def test_invariants_hold_on_random_scenarios(setup) -> None:
    p, ops = setup
    run_ops(p, ops)


def test_invariants_long_mixed_run() -> None:
    import random

    rng = random.Random(7)
    for kernel in ("7.3", "6.18"):
        p = ModelParams.for_cache(
            kernel=kernel, object_size=256, capacity=6, objects_per_slab=5, cpus=4, nodes=2
        )
        ops = [
            (
                rng.choice(OPS),
                rng.randrange(8),
                rng.randrange(30),
                rng.randrange(4),
                rng.random() < 0.7,
            )
            for _ in range(800)
        ]
        run_ops(p, ops)
