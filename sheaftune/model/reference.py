"""The readable reference model of SLUB's per-CPU sheaves (Linux 7.3 and 6.18).

One method per kernel function it mirrors, named after it, each citing the rules of
``spec/kernel-sheaves.md`` it implements. :class:`SheafModel` is the object-level API the trace
replay and the scenario runner drive (one call per allocator API call, on the CPU that executed
it); a fast engine must stay equal to it counter for counter, so its state is plain: sheaves are
lists of int object handles, barns are lists of sheaves, the slab layer (``slab.py``) is lists of
ints.

Conventions (spec §0, scenario-format.md "Rules that keep scenarios exact"): no interrupts, no
preemption, no migration: every trylock succeeds and racy checks are exact. Memory never runs
out: every sheaf allocation and every refill succeeds in full.

Simplifications (everything the model does not do that the kernel can):
- Memory never runs out (so A3.9/P1/P6 refill-failure flushes, F3.7 main flush, A6 failures,
  ORDER_FALLBACK never happen) and no trylock fails (Q4); counters fed only by those branches stay
  0: ``order_fallback``, ``cmpxchg_double_fail``, 6.18 ``cmpxchg_double_cpu_fail``. The failure
  branches are still written where they are cheap to state, and commented.
- No KFENCE, KASAN, memcg, failslab, free hooks, pfmemalloc slabs or ``__GFP_MEMALLOC`` reserves:
  P2's second attempt and the pfmemalloc flushes of P6/K4 never run.
- ``kmalloc_nolock``/``kfree_nolock``/``kfree_call_rcu_nolock`` (A8, F7) and PREEMPT_RT are not
  modelled; every barn lock spins.
- No memoryless nodes (so ``mem_node == node_of`` and every node has a barn, D4/X8); the CPU-to-node
  map is fixed; no memory hotplug (L5), no cache destruction (L6), no ``kvfree_rcu_barrier`` (L7).
- Order of deferred work: a grace period ([rcu]) first runs every submitted rcu sheaf callback
  (K4/K5) in submission order, then the classic kfree_rcu batch of each CPU in CPU order, each
  as one ``kfree_bulk`` (B4/K6) of its objects in submission order. Deferred work runs on the CPU
  that submitted it, or the lowest-numbered online CPU if that one is offline; ``flush_all``
  visits the online CPUs in ascending order (in the kernel the works run concurrently); the
  shrink of barns and partial lists runs on the lowest-numbered online CPU.
- 7.3 ``free_to_pcs_bulk`` partitions remote objects to the front of the array with an in-place
  swap (Lomuto: each remote object found is swapped with the first local one); the spec states the
  partition, not its exact permutation.
- CPU offline (L3) flushes ``main`` with ``sheaf_flush_unused`` (one bulk free of the whole sheaf,
  as ``__pcs_flush_all_cpu`` does), not in batches of 32.
- A 7.3 cache with capacity 0 (a forced what-if) is modelled as a non-debug cache without sheaves
  (like ``SLAB_NO_SHEAVES``): bootstrap ``main``, fast paths fall through, bulk allocation and
  free use ``refill_objects``/``slab_free_bulk`` rather than a debug cache's per-object paths.
  Caches without sheaves have no barns in the kernel; the model keeps empty barns and reports
  0 full / 0 empty for them.
- 6.18 ``free_to_pcs_bulk`` is mirrored literally (remote objects 32 at a time), except one
  kernel quirk: when the 32nd remote object is the last one scanned, 6.18.35 returns without
  freeing the local objects (they leak); the model frees them as the other branches do.
- 6.18 ``kmem_cache_prefill_sheaf(size=0)`` on a cache without sheaves dereferences NULL in the
  kernel; the model raises :class:`ModelError`.
- Counters are kept summed over CPUs (the kernel's sysfs total), not per CPU.
- Slab-layer simplifications are listed in ``sheaftune.model.slab``.

Cross-check: the 7.3 decisions above agree with a line-by-line Rust port of a 7.x ``mm/slub.c``
found in public code (``free_to_pcs_bulk``'s swap partition, ``__kmem_cache_do_shrink`` shrinking
every barn before the partial lists, ``__pcs_flush_all_cpu`` flushing main whole).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sheaftune.model.counters import EXTRA, STAT_ITEMS
from sheaftune.model.slab import NUMA_NO_NODE, Slub73, Slub618
from sheaftune.params import PCS_BATCH_MAX, ModelParams

E2BIG = "E2BIG"
ENOMEM = "ENOMEM"


@dataclass(eq=False)
class Sheaf:
    """D2 ``struct slab_sheaf``: ``objs`` is the object stack (top = last), ``capacity`` is
    meaningful for prefilled sheaves, ``node`` for submitted rcu_free sheaves."""

    objs: list[int] = field(default_factory=list)
    capacity: int = 0
    node: int = -1

    @property
    def size(self) -> int:
        return len(self.objs)


@dataclass(eq=False)
class PerCpuSheaves:
    """D3 ``struct slub_percpu_sheaves``."""

    main: Sheaf | None
    spare: Sheaf | None = None
    rcu_free: Sheaf | None = None


@dataclass(eq=False)
class Barn:
    """D4 ``struct node_barn``: LIFO lists; the *last* element of each list is its head."""

    node: int = 0
    full: list[Sheaf] = field(default_factory=list)
    empty: list[Sheaf] = field(default_factory=list)


class SheafModel:
    """The sheaf layer of one cache on ``params.cpus`` CPUs and ``params.nodes`` nodes.

    Object handles are ints (``slab_id * objects_per_slab + slot``); ``obj_node(h)`` is the
    node of its slab. Methods named after kernel API calls take the executing CPU first.
    """

    def __init__(self, params: ModelParams):
        self.p = params
        self.cap = params.sheaf_capacity
        self.v618 = params.kernel == "6.18"
        self.stat: dict[str, int] = {name: 0 for name in STAT_ITEMS[params.kernel]}
        self.extra: dict[str, int] = {name: 0 for name in EXTRA}
        self.slab: Slub73 | Slub618 = (Slub618 if self.v618 else Slub73)(
            params, self.stat, self.extra
        )
        self.online = [True] * params.cpus
        # X1: a 6.18 cache without sheaves has no cpu_sheaves at all; D6: a 7.3 cache with
        # cap == 0 points every main at the bootstrap sheaf (capacity 0, size 0).
        self.has_pcs = not self.v618 or self.cap > 0
        self.pcs: list[PerCpuSheaves] = []
        for _ in range(params.cpus):
            if not self.has_pcs:
                self.pcs.append(PerCpuSheaves(main=None))
            elif self.cap == 0:
                self.pcs.append(PerCpuSheaves(main=Sheaf(capacity=0)))  # bootstrap sheaf
            else:
                self.pcs.append(PerCpuSheaves(main=self.alloc_empty_sheaf()))  # D9
        self.barns = [Barn(node=n) for n in range(params.nodes)]
        #: BARN acquisitions per node (for the contention model)
        self.barn_lock_by_node = [0] * params.nodes
        #: sheaves submitted to RCU: (sheaf, submitting cpu, callback) with callback "barn"
        #: (K4 rcu_free_sheaf) or "nobarn" (K5 rcu_free_sheaf_nobarn)
        self.rcu_pending: list[tuple[Sheaf, int, str]] = []
        #: K6 classic kfree_rcu batch per CPU (objects in submission order)
        self.classic_rcu: list[list[int]] = [[] for _ in range(params.cpus)]
        #: outstanding prefilled sheaves (P1..P6), by identity
        self.prefilled: dict[int, Sheaf] = {}
        # occupancy over time (not counted by the kernel): per CPU the objects in main, spare
        # and rcu_free; per node the objects in the barn's full sheaves. Peaks are sampled after
        # every API call; the time integrals advance with advance(ts_ns).
        self.cpu_held_max = [0] * params.cpus
        self.node_barn_held_max = [0] * params.nodes
        self.cpu_held_integral = [0] * params.cpus
        self.node_barn_held_integral = [0] * params.nodes
        self.t_first: int | None = None
        self.t_last: int | None = None
        self._cpu_val = [0] * params.cpus
        self._cpu_since = [0] * params.cpus
        self._node_val = [0] * params.nodes
        self._node_since = [0] * params.nodes
        self._sample()

    # ---------------------------------------------------------------------------- helpers
    def mem_node(self, cpu: int) -> int:
        return self.p.cpu_node[cpu]

    def obj_node(self, obj: int) -> int:
        return self.slab.obj_node(obj)

    def get_barn(self, cpu: int) -> Barn:
        """``get_barn``: the barn of the CPU's node (D4; X8 ``mem_node``)."""
        return self.barns[self.mem_node(cpu)]

    def _st(self, name: str, n: int = 1) -> None:
        self.stat[name] += n

    def _alloc_hit(self, n: int = 1) -> None:
        # X7: 6.18 counts sheaf hits as ALLOC_PCS/FREE_PCS, 7.3 as ALLOC/FREE_FASTPATH
        self.stat["alloc_cpu_sheaf" if self.v618 else "alloc_fastpath"] += n

    def _swap(self, pcs: PerCpuSheaves) -> None:
        """Exchange main and spare (A3.2, F3.3, B2, B3): no stat; counted in ``spare_swap``."""
        pcs.main, pcs.spare = pcs.spare, pcs.main
        self.extra["spare_swap"] += 1

    def _free_hit(self, n: int = 1) -> None:
        self.stat["free_cpu_sheaf" if self.v618 else "free_fastpath"] += n

    def exec_cpu(self, cpu: int) -> int:
        """The CPU deferred work of ``cpu`` runs on: itself, or the lowest online CPU."""
        if 0 <= cpu < self.p.cpus and self.online[cpu]:
            return cpu
        return self.online.index(True)

    # ------------------------------------------------------------------- sheaf structs
    def alloc_empty_sheaf(self) -> Sheaf:
        """``alloc_empty_sheaf``/``__alloc_empty_sheaf``: kmalloc of the struct, stat
        SHEAF_ALLOC (A3.8, F3.6, K2, P1, D9). Never fails here."""
        self._st("sheaf_alloc")
        self.extra["sheaves_live"] += 1
        return Sheaf(capacity=self.cap)

    def free_empty_sheaf(self, sh: Sheaf, oversize: bool = False) -> None:
        """``free_empty_sheaf``: stat SHEAF_FREE. X7/X14: 6.18 ``kfree``s an oversize sheaf
        directly, without the stat."""
        assert not sh.objs
        if not (oversize and self.v618):
            self._st("sheaf_free")
        self.extra["sheaves_live"] -= 1

    def refill_sheaf(self, cpu: int, sh: Sheaf) -> bool:
        """A4 ``refill_sheaf``: always to full capacity; stat SHEAF_REFILL += got; success iff
        full. 7.3 takes objects with A5 (no ALLOC_* stat); 6.18 with the CPU-slab bulk loop,
        all-or-nothing (X6)."""
        want = self.cap - sh.size
        if want <= 0:
            return True
        got = self.slab.refill_for_sheaf(cpu, want, True)
        sh.objs.extend(got)
        self._st("sheaf_refill", len(got))
        return len(got) == want

    def sheaf_flush_unused(self, cpu: int, sh: Sheaf) -> None:
        """``sheaf_flush_unused``: all objects back to their slabs with one
        ``__kmem_cache_free_bulk`` (B5), stat SHEAF_FLUSH += size."""
        n = sh.size
        if n:
            objs = sh.objs
            sh.objs = []
            self.slab.free_bulk(cpu, objs)
            self._st("sheaf_flush", n)

    def sheaf_flush_main(self, cpu: int) -> None:
        """F6 ``sheaf_flush_main``: the top ``min(32, size)`` objects at a time (ascending slot
        order in the batch array), each batch freed with B5; SHEAF_FLUSH += batch."""
        main = self.pcs[cpu].main
        assert main is not None
        while main.objs:
            batch = min(PCS_BATCH_MAX, main.size)
            arr = main.objs[main.size - batch :]
            del main.objs[main.size - batch :]
            self.slab.free_bulk(cpu, arr)
            self._st("sheaf_flush", batch)

    # --------------------------------------------------------------------------- barn
    def _barn_lock(self, barn: Barn) -> None:
        self.extra["barn_lock"] += 1
        self.barn_lock_by_node[barn.node] += 1

    def barn_get_empty_sheaf(self, barn: Barn) -> Sheaf | None:
        """``barn_get_empty_sheaf``: racy ``nr_empty`` check, BARN, head of ``empty``; no stat."""
        if not barn.empty:
            return None
        self._barn_lock(barn)
        return barn.empty.pop()

    def barn_put_empty_sheaf(self, barn: Barn, sh: Sheaf) -> None:
        """``barn_put_empty_sheaf``: head of ``empty``; the limit is not checked (D4)."""
        self._barn_lock(barn)
        barn.empty.append(sh)

    def barn_put_full_sheaf(self, barn: Barn, sh: Sheaf) -> None:
        """``barn_put_full_sheaf``: head of ``full``; the limit is not checked (D4)."""
        self._barn_lock(barn)
        barn.full.append(sh)

    def barn_replace_empty_sheaf(self, barn: Barn, empty: Sheaf) -> Sheaf | None:
        """A3.4 ``barn_replace_empty_sheaf``: racy ``nr_full == 0`` → none; else BARN, unlink the
        head of ``full`` and push ``empty`` at the head of ``empty`` (limit ignored)."""
        if not barn.full:
            return None
        self._barn_lock(barn)
        full = barn.full.pop()
        barn.empty.append(empty)
        return full

    def barn_replace_full_sheaf(self, barn: Barn, full: Sheaf) -> Sheaf | str:
        """F3.4 ``barn_replace_full_sheaf``: E2BIG if ``nr_full >= 10`` (racy, checked first),
        ENOMEM if ``nr_empty == 0`` (racy); else BARN, pop the head of ``empty`` and push
        ``full`` at the head of ``full``."""
        if len(barn.full) >= self.p.max_full_sheaves:
            return E2BIG
        if not barn.empty:
            return ENOMEM
        self._barn_lock(barn)
        empty = barn.empty.pop()
        barn.full.append(full)
        return empty

    def barn_get_full_or_empty_sheaf(self, barn: Barn) -> Sheaf | None:
        """P1 ``barn_get_full_or_empty_sheaf``: head of ``full`` if any, else head of ``empty``."""
        if not barn.full and not barn.empty:
            return None
        self._barn_lock(barn)
        if barn.full:
            return barn.full.pop()
        return barn.empty.pop()

    # ---------------------------------------------------------------- allocation (§2)
    def kmem_cache_alloc(self, cpu: int, blocking: bool = True) -> int:
        """A0/A1 ``kmem_cache_alloc`` = ``slab_alloc_node(NUMA_NO_NODE)``."""
        return self.slab_alloc_node(cpu, NUMA_NO_NODE, blocking)

    def kmem_cache_alloc_node(self, cpu: int, node: int, blocking: bool = True) -> int:
        """A7 ``kmem_cache_alloc_node``."""
        return self.slab_alloc_node(cpu, node, blocking)

    def slab_alloc_node(self, cpu: int, node: int = NUMA_NO_NODE, blocking: bool = True) -> int:
        """A1 (7.3) / X4 (6.18) ``slab_alloc_node``: ``alloc_from_pcs``, else the slab layer
        (7.3 A6 ``___slab_alloc``; 6.18 the CPU-slab ``__slab_alloc_node``)."""
        obj = self.alloc_from_pcs(cpu, node, blocking) if self.has_pcs else None
        if obj is None:
            obj = self.slab.alloc_one(cpu, node)
        self._sample(cpu)
        return obj

    def alloc_from_pcs(self, cpu: int, node: int, blocking: bool) -> int | None:
        """A2 ``alloc_from_pcs``: node requests other than the local node are rejected; an empty
        ``main`` is replaced (A3); a node request checks the top object, which stays on a
        mismatch. 7.3 counts ALLOC_NODE_MISMATCH for both rejections and ALLOC_FASTPATH per
        hit; 6.18 rejects silently (X19) and counts ALLOC_PCS (X7)."""
        node_req = node != NUMA_NO_NODE
        if node_req and node != self.mem_node(cpu):
            if not self.v618:
                self._st("alloc_node_mismatch")
            return None
        pcs = self.pcs[cpu]
        assert pcs.main is not None
        if pcs.main.size == 0:
            if not self.pcs_replace_empty_main(cpu, blocking):
                return None
        main = pcs.main
        obj = main.objs[-1]
        if node_req and self.obj_node(obj) != node:
            if not self.v618:
                self._st("alloc_node_mismatch")
            return None
        main.objs.pop()
        self._alloc_hit()
        return obj

    def pcs_replace_empty_main(self, cpu: int, blocking: bool) -> bool:
        """A3 ``__pcs_replace_empty_main`` (X5 for 6.18).

        A3.1 no sheaves → fail; A3.2 non-empty spare → swap; A3.4 barn exchange (BARN_GET);
        A3.5 BARN_GET_FAIL; 6.18 stops here unless the gfp may block (X5), 7.3 never looks at
        the gfp; A3.6 empty candidate = the spare, else the barn's head empty; A3.8 else a new
        sheaf (SHEAF_ALLOC); A3.9 refill to full capacity (A4); A3.10-12 install: the old empty
        main becomes the spare when there is none (7.3) / always goes to the barn (6.18 X5,
        X21).
        """
        pcs = self.pcs[cpu]
        assert pcs.main is not None
        if self.cap == 0:  # A3.1
            return False
        if pcs.spare is not None and pcs.spare.size > 0:  # A3.2
            self._swap(pcs)
            return True
        barn = self.get_barn(cpu)  # A3.3
        full = self.barn_replace_empty_sheaf(barn, pcs.main)  # A3.4
        if full is not None:
            pcs.main = full
            self._st("barn_get")
            return True
        self._st("barn_get_fail")  # A3.5
        if self.v618 and not blocking:  # X5: gfpflags_allow_blocking() is false
            return False
        empty: Sheaf | None
        if pcs.spare is not None:  # A3.6 (the spare is empty here)
            empty = pcs.spare
            pcs.spare = None
        else:
            empty = self.barn_get_empty_sheaf(barn)
        if empty is None:  # A3.8 (6.18: alloc_full_sheaf = allocate + refill)
            empty = self.alloc_empty_sheaf()
        if not self.refill_sheaf(cpu, empty):  # A3.9: a partial refill is a failure
            self.sheaf_flush_unused(cpu, empty)
            self.free_empty_sheaf(empty)
            return False
        full = empty
        # A3.10: PCS re-taken (trylock in 7.3, local_lock in 6.18); always succeeds here.
        # A3.11 install
        if pcs.main.size == 0:
            if pcs.spare is None and not self.v618:
                pcs.spare = pcs.main
            else:
                self.barn_put_empty_sheaf(barn, pcs.main)  # X5: 6.18 always parks it
            pcs.main = full
            return True
        if pcs.spare is None:
            pcs.spare = full
            return True
        if pcs.spare.size == 0:
            self.barn_put_empty_sheaf(barn, pcs.spare)
            pcs.spare = full
            return True
        self.barn_put_full_sheaf(barn, full)  # A3.12
        self._st("barn_put")
        return True

    # ---------------------------------------------------------------------- free (§3)
    def kmem_cache_free(self, cpu: int, obj: int) -> None:
        """F0/F1 ``kmem_cache_free`` → ``slab_free``."""
        self.slab_free(cpu, obj)
        self._sample(cpu)

    def can_free_to_pcs(self, cpu: int, obj: int) -> bool:
        """F1 ``can_free_to_pcs`` (7.3) / X9 (6.18): the object's slab is on the CPU's node
        (no memoryless nodes, no pfmemalloc slabs in this model)."""
        return self.obj_node(obj) == self.mem_node(cpu)

    def slab_free(self, cpu: int, obj: int) -> None:
        """F1 ``slab_free``: sheaves for local objects (F2), else the slab (7.3 F5 + stat
        FREE_SLOWPATH; 6.18 ``do_slab_free``, X9). Remote objects bypass sheaves."""
        if self.has_pcs and self.can_free_to_pcs(cpu, obj) and self.free_to_pcs(cpu, obj):
            return
        self.slab.free_one(cpu, obj)

    def free_to_pcs(self, cpu: int, obj: int) -> bool:
        """F2 ``free_to_pcs``: a full ``main`` is replaced (F3), then push; FREE_FASTPATH
        (7.3) / FREE_PCS (6.18). With cap == 0, ``main.size == cap`` and F3.1 rejects."""
        pcs = self.pcs[cpu]
        assert pcs.main is not None
        if pcs.main.size == self.cap:
            if not self.pcs_replace_full_main(cpu):
                return False
        pcs.main.objs.append(obj)
        self._free_hit()
        return True

    def pcs_replace_full_main(self, cpu: int) -> bool:
        """F3 ``__pcs_replace_full_main``.

        F3.1 no sheaves → fail; F3.2 no spare: the barn's head empty becomes main (old main →
        spare), else allocate (F3.6); F3.3 spare not full → swap; F3.4 barn exchange: success
        BARN_PUT (F3.5); E2BIG: BARN_PUT_FAIL, flush the *spare* and reuse it as the empty
        sheaf (F3.5); ENOMEM: allocate an empty sheaf (F3.6, put_fail); F4 installs it.
        F3.7 (allocation failure, flush main) cannot happen in this model.
        """
        pcs = self.pcs[cpu]
        assert pcs.main is not None
        if self.cap == 0:  # F3.1
            return False
        barn = self.get_barn(cpu)
        if pcs.spare is None:  # F3.2
            empty = self.barn_get_empty_sheaf(barn)
            if empty is not None:
                pcs.spare = pcs.main
                pcs.main = empty
                return True
        elif pcs.spare.size < self.cap:  # F3.3
            self._swap(pcs)
            return True
        else:
            r = self.barn_replace_full_sheaf(barn, pcs.main)  # F3.4
            if isinstance(r, Sheaf):
                self._st("barn_put")  # F3.5
                pcs.main = r
                return True
            if r == E2BIG:
                self._st("barn_put_fail")
                to_flush = pcs.spare
                pcs.spare = None
                self.sheaf_flush_unused(cpu, to_flush)
                self.pcs_install_empty_sheaf(cpu, to_flush)  # F3.8 got_empty
                return True
            # ENOMEM: put_fail = True; BARN_PUT_FAIL would only be counted if the allocation
            # below failed (F3.7), which it never does here.
        empty = self.alloc_empty_sheaf()  # F3.6 (6.18: GFP_NOWAIT, X10)
        self.pcs_install_empty_sheaf(cpu, empty)  # F3.8
        return True

    def pcs_install_empty_sheaf(self, cpu: int, empty: Sheaf) -> None:
        """F4 ``__pcs_install_empty_sheaf``: no spare → spare = main, main = empty; the raced
        cases park ``empty`` in the barn; both full → main to the barn's full list (limit not
        re-checked), stat BARN_PUT, main = empty."""
        pcs = self.pcs[cpu]
        assert pcs.main is not None
        barn = self.get_barn(cpu)
        if pcs.spare is None:
            pcs.spare = pcs.main
            pcs.main = empty
        elif pcs.main.size < self.cap:
            self.barn_put_empty_sheaf(barn, empty)
        elif pcs.spare.size < self.cap:
            self._swap(pcs)
            self.barn_put_empty_sheaf(barn, empty)
        else:
            self.barn_put_full_sheaf(barn, pcs.main)
            self._st("barn_put")
            pcs.main = empty

    # ------------------------------------------------------------------------ bulk (§4)
    def kmem_cache_alloc_bulk(self, cpu: int, k: int, blocking: bool = True) -> list[int]:
        """B1 ``kmem_cache_alloc_bulk``: sheaves first (B2), the remainder straight from slabs
        (7.3: ``refill_objects``, ALLOC_SLOWPATH += k-i; 6.18: CPU-slab loop, X11). Returns the
        array in the order the kernel fills it."""
        out = self.alloc_from_pcs_bulk(cpu, k) if self.has_pcs else []
        if len(out) < k:
            out.extend(self.slab.bulk_alloc(cpu, k - len(out)))
        self._sample(cpu)
        return out

    def alloc_from_pcs_bulk(self, cpu: int, k: int) -> list[int]:
        """B2 ``alloc_from_pcs_bulk``: batches from ``main``; an empty main is replaced by a
        non-empty spare or a barn exchange (BARN_GET/BARN_GET_FAIL); never allocates or
        refills a sheaf. ALLOC_FASTPATH (6.18 ALLOC_PCS) += batch."""
        pcs = self.pcs[cpu]
        out: list[int] = []
        while len(out) < k:
            assert pcs.main is not None
            if pcs.main.size == 0:
                if self.cap == 0:
                    break
                if pcs.spare is not None and pcs.spare.size > 0:
                    self._swap(pcs)
                else:
                    full = self.barn_replace_empty_sheaf(self.get_barn(cpu), pcs.main)
                    if full is None:
                        self._st("barn_get_fail")
                        break
                    self._st("barn_get")
                    pcs.main = full
            main = pcs.main
            batch = min(k - len(out), main.size)
            out.extend(main.objs[main.size - batch :])
            del main.objs[main.size - batch :]
            self._alloc_hit(batch)
        return out

    def kmem_cache_free_bulk(self, cpu: int, objs: list[int]) -> None:
        """B3 ``kmem_cache_free_bulk`` (``objs[0]`` is index 0 of the caller's array)."""
        if not objs:
            return
        if not self.has_pcs or self.cap == 0:
            self.slab.free_bulk(cpu, list(objs))
            if not self.v618:
                self._st("free_slowpath", len(objs))
        elif self.v618:
            self._free_to_pcs_bulk_618(cpu, list(objs))
        else:
            self.free_to_pcs_bulk(cpu, list(objs))
        self._sample(cpu)

    def free_to_pcs_bulk(self, cpu: int, p: list[int]) -> None:
        """B3 7.3 ``free_to_pcs_bulk``: remote objects partitioned to the front (see
        Simplifications), local objects in batches onto ``main`` (``__free_to_pcs_batch``:
        never allocates a sheaf, no E2BIG flush; a failure sends the rest to slabs with
        FREE_SLOWPATH += rest), remote objects last to slabs (FREE_SLOWPATH += remote)."""
        node = self.mem_node(cpu)
        nr_remote = 0
        for i in range(len(p)):
            if self.obj_node(p[i]) != node:
                p[i], p[nr_remote] = p[nr_remote], p[i]
                nr_remote += 1
        remote = p[:nr_remote]
        local = p[nr_remote:]
        i = 0
        while i < len(local):
            if not self._free_to_pcs_batch_prepare(cpu):
                rest = local[i:]
                self.slab.free_bulk(cpu, rest)
                self._st("free_slowpath", len(rest))
                break
            main = self.pcs[cpu].main
            assert main is not None
            batch = min(len(local) - i, self.cap - main.size)
            main.objs.extend(local[i : i + batch])
            self._free_hit(batch)
            i += batch
        if remote:
            self.slab.free_bulk(cpu, remote)
            self._st("free_slowpath", len(remote))

    def _free_to_pcs_batch_prepare(self, cpu: int) -> bool:
        """B3 ``__free_to_pcs_batch`` decisions: make room in ``main`` or fail (BARN_PUT_FAIL on
        a failed exchange)."""
        pcs = self.pcs[cpu]
        assert pcs.main is not None
        if pcs.main.size < self.cap:
            return True
        barn = self.get_barn(cpu)
        if pcs.spare is None:
            empty = self.barn_get_empty_sheaf(barn)
            if empty is None:
                return False
            pcs.spare = pcs.main
            pcs.main = empty
            return True
        if pcs.spare.size < self.cap:
            self._swap(pcs)
            return True
        r = self.barn_replace_full_sheaf(barn, pcs.main)
        if not isinstance(r, Sheaf):
            self._st("barn_put_fail")
            return False
        self._st("barn_put")
        pcs.main = r
        return True

    def _free_to_pcs_bulk_618(self, cpu: int, p: list[int]) -> None:
        """X11 6.18 ``free_to_pcs_bulk``, literally: remote objects collected 32 at a time
        (each replaced in the array by the last element) and freed interleaved with the local
        batches; fallbacks through ``do_slab_free`` (X9 counters, no extra FREE_SLOWPATH)."""
        node = self.mem_node(cpu)
        size = len(p)
        i = 0
        remote: list[int] = []
        off = 0  # the kernel advances p itself; we keep an offset
        while True:
            # next_remote_batch
            remote_full = False
            while i < size:
                if self.obj_node(p[off + i]) != node:
                    remote.append(p[off + i])
                    size -= 1
                    p[off + i] = p[off + size]
                    if len(remote) >= PCS_BATCH_MAX:
                        remote_full = True
                        break
                    continue
                i += 1
            if remote_full:
                # flush_remote
                self.slab.free_bulk(cpu, remote)
                remote = []
                if i < size:
                    continue
                # Deviation: when the 32nd remote object is the last one scanned the kernel
                # returns here without freeing the local objects (a leak); the model goes on.
            # next_batch
            while True:
                if not self._free_to_pcs_batch_prepare(cpu):
                    self.slab.free_bulk(cpu, p[off : off + size])  # no_empty / fallback
                    break
                main = self.pcs[cpu].main
                assert main is not None
                batch = min(size, self.cap - main.size)
                main.objs.extend(p[off : off + batch])
                self._free_hit(batch)
                if batch < size:
                    off += batch
                    size -= batch
                    continue
                break
            if remote:  # flush_remote
                self.slab.free_bulk(cpu, remote)
                remote = []
            return

    def kfree_bulk(self, cpu: int, objs: list[int]) -> None:
        """B4 ``kfree_bulk``: bypasses sheaves; one slab free per detached group. 7.3: stat
        FREE_SLOWPATH += count; 6.18: ``do_slab_free`` per group (X9)."""
        if not objs:
            return
        self.slab.free_bulk(cpu, list(objs))
        if not self.v618:
            self._st("free_slowpath", len(objs))

    # ---------------------------------------------------------------- prefill API (§5)
    def kmem_cache_prefill_sheaf(self, cpu: int, size: int, blocking: bool = True) -> Sheaf | None:
        """P1 ``kmem_cache_prefill_sheaf`` (X13 for 6.18).

        ``size == 0`` → NULL (7.3 only); oversize (``size > cap``, every cache with cap 0): a
        new sheaf of capacity ``size`` (7.3 SHEAF_ALLOC; 6.18 plain kzalloc), stat
        SHEAF_PREFILL_OVERSIZE, filled by a bulk allocation from slabs (7.3 ALLOC_SLOWPATH +=
        size). Otherwise the spare (SHEAF_PREFILL_FAST, any fill level), else the barn's head
        full-or-empty sheaf (SHEAF_PREFILL_SLOW + BARN_GET if it holds objects, else
        BARN_GET_FAIL), else a new sheaf; refilled to full capacity only when it holds fewer
        than ``size`` objects (P2).
        """
        if size == 0 and not self.v618:
            return None
        if size > self.cap or not self.has_pcs:
            if not self.has_pcs and size == 0:
                # 6.18 would dereference the missing cpu_sheaves (no size check, X13)
                raise ModelError(
                    "6.18 kmem_cache_prefill_sheaf(size=0) on a cache without "
                    "sheaves dereferences NULL in the kernel"
                )
            if not self.v618:
                self._st("sheaf_alloc")
            self.extra["sheaves_live"] += 1
            sh = Sheaf(capacity=size)
            self._st("sheaf_prefill_oversize")
            sh.objs = self.slab.bulk_alloc(cpu, size)
            self.extra["oversize_objects"] += size
            self.prefilled[id(sh)] = sh
            self._sample(cpu)
            return sh
        pcs = self.pcs[cpu]
        sh2: Sheaf | None
        if pcs.spare is not None:
            sh2 = pcs.spare
            pcs.spare = None
            self._st("sheaf_prefill_fast")
        else:
            self._st("sheaf_prefill_slow")
            sh2 = self.barn_get_full_or_empty_sheaf(self.get_barn(cpu))
            self._st("barn_get" if sh2 is not None and sh2.size > 0 else "barn_get_fail")
        if sh2 is None:
            sh2 = self.alloc_empty_sheaf()
        sh2.capacity = self.cap
        if sh2.size < size:
            # P2 __prefill_sheaf_pfmemalloc: one refill attempt for ordinary callers
            if not self.refill_sheaf(cpu, sh2):
                self.sheaf_flush_unused(cpu, sh2)
                self.free_empty_sheaf(sh2)
                self._sample(cpu)
                return None
        self.prefilled[id(sh2)] = sh2
        self._sample(cpu)
        return sh2

    def kmem_cache_alloc_from_sheaf(self, cpu: int, sh: Sheaf) -> int | None:
        """P3 ``kmem_cache_alloc_from_sheaf``: pop; NULL when empty (no fallback); no stat."""
        if not sh.objs:
            self.extra["alloc_from_sheaf_null"] += 1
            return None
        self.extra["alloc_from_sheaf"] += 1
        obj = sh.objs.pop()
        self._sample(cpu)
        return obj

    @staticmethod
    def kmem_cache_sheaf_size(sh: Sheaf) -> int:
        """P4 ``kmem_cache_sheaf_size``."""
        return sh.size

    def kmem_cache_refill_sheaf(
        self, cpu: int, sh: Sheaf, size: int, blocking: bool = True
    ) -> Sheaf:
        """P5 ``kmem_cache_refill_sheaf`` (X15): nothing if ``size`` objects are there; a
        regular sheaf is refilled to full capacity (P2); an oversize one is topped up to its
        capacity by a bulk allocation (7.3 ALLOC_SLOWPATH); a larger request gets a new
        oversize sheaf (P1) and the old one is returned (P6). Returns the sheaf to use."""
        if sh.size >= size:
            return sh
        if size <= sh.capacity:
            if sh.capacity == self.cap:
                self.refill_sheaf(cpu, sh)
            else:
                n = sh.capacity - sh.size
                sh.objs.extend(self.slab.bulk_alloc(cpu, n))
                self.extra["oversize_objects"] += n
            self._sample(cpu)
            return sh
        new = self.kmem_cache_prefill_sheaf(cpu, size, blocking)
        assert new is not None
        self.kmem_cache_return_sheaf(cpu, sh)
        return new

    def kmem_cache_return_sheaf(self, cpu: int, sh: Sheaf) -> None:
        """P6 ``kmem_cache_return_sheaf`` (X14): an oversize sheaf is flushed and freed
        (SHEAF_FLUSH, SHEAF_FREE in 7.3 only); else it becomes the spare as it is
        (SHEAF_RETURN_FAST, no refill); else SHEAF_RETURN_SLOW and, unless the barn holds 10
        full sheaves, it is refilled to capacity and put in the barn (BARN_PUT), otherwise
        flushed and freed."""
        self.prefilled.pop(id(sh), None)
        if sh.capacity != self.cap or not self.has_pcs:
            self.sheaf_flush_unused(cpu, sh)
            self.free_empty_sheaf(sh, oversize=True)
            self._sample(cpu)
            return
        pcs = self.pcs[cpu]
        if pcs.spare is None:
            pcs.spare = sh
            self._st("sheaf_return_fast")
            self._sample(cpu)
            return
        self._st("sheaf_return_slow")
        barn = self.get_barn(cpu)
        if len(barn.full) >= self.p.max_full_sheaves or not self.refill_sheaf(cpu, sh):
            self.sheaf_flush_unused(cpu, sh)
            self.free_empty_sheaf(sh)
        else:
            self.barn_put_full_sheaf(barn, sh)
            self._st("barn_put")
        self._sample(cpu)

    # ------------------------------------------------------------------- kfree_rcu (§6)
    def kfree_rcu(self, cpu: int, obj: int) -> None:
        """K1 ``kvfree_call_rcu``: a local-node slab object tries ``__kfree_rcu_sheaf`` (6.18:
        only caches with sheaves, X12); remote objects and failures go to the classic batch
        (K6), freed at the next grace period with ``kfree_bulk``."""
        if self.has_pcs and self.obj_node(obj) == self.mem_node(cpu):
            if self.kfree_rcu_sheaf(cpu, obj):
                self._sample(cpu)
                return
        self.classic_rcu[cpu].append(obj)
        self.extra["kfree_rcu_classic"] += 1
        self._sample(cpu)

    def kfree_rcu_sheaf(self, cpu: int, obj: int) -> bool:
        """K2 ``__kfree_rcu_sheaf``: the rcu_free sheaf is the empty spare, else the barn's head
        empty, else a new sheaf (SHEAF_ALLOC); push; at ``cap`` objects it is detached, records
        the CPU's node and is submitted to RCU (K4). FREE_RCU_SHEAF, or FREE_RCU_SHEAF_FAIL for
        a 7.3 cache without sheaves."""
        pcs = self.pcs[cpu]
        if pcs.rcu_free is None:
            if self.cap == 0:
                self._st("free_rcu_sheaf_fail")
                return False
            if pcs.spare is not None and pcs.spare.size == 0:
                pcs.rcu_free = pcs.spare
                pcs.spare = None
            else:
                empty = self.barn_get_empty_sheaf(self.get_barn(cpu))
                if empty is None:
                    empty = self.alloc_empty_sheaf()  # 7.3 __GFP_NOWARN, 6.18 GFP_NOWAIT
                pcs.rcu_free = empty
        rcu = pcs.rcu_free
        rcu.objs.append(obj)
        if rcu.size == self.cap:
            pcs.rcu_free = None
            rcu.node = self.mem_node(cpu)
            self.rcu_pending.append((rcu, cpu, "barn"))
        self._st("free_rcu_sheaf")
        return True

    def rcu_free_sheaf(self, cpu: int, sh: Sheaf) -> None:
        """K4 ``rcu_free_sheaf`` after the grace period: into the barn of ``sh.node`` as a full
        sheaf when it has fewer than 10 (BARN_PUT), else BARN_PUT_FAIL and flush; an empty
        sheaf goes to the empty list below 10, else it is freed (SHEAF_FREE)."""
        barn = self.barns[sh.node]
        if sh.size > 0:
            if len(barn.full) < self.p.max_full_sheaves:
                self._st("barn_put")
                self.barn_put_full_sheaf(barn, sh)
                return
            self._st("barn_put_fail")
            self.sheaf_flush_unused(cpu, sh)
        if len(barn.empty) < self.p.max_empty_sheaves:
            self.barn_put_empty_sheaf(barn, sh)
            return
        self.free_empty_sheaf(sh)

    def rcu_free_sheaf_nobarn(self, cpu: int, sh: Sheaf) -> None:
        """K5 ``rcu_free_sheaf_nobarn``: flush every object to slabs and free the sheaf."""
        self.sheaf_flush_unused(cpu, sh)
        self.free_empty_sheaf(sh)

    def rcu_grace_period(self) -> None:
        """A grace period ends: the submitted rcu sheaves' callbacks (K4/K5), then the classic
        kfree_rcu batches (K6 → B4). Order: see Simplifications."""
        pending = self.rcu_pending
        self.rcu_pending = []
        for sh, cpu, kind in pending:
            ex = self.exec_cpu(cpu)
            if kind == "barn":
                self.rcu_free_sheaf(ex, sh)
            else:
                self.rcu_free_sheaf_nobarn(ex, sh)
        for cpu in range(self.p.cpus):
            objs = self.classic_rcu[cpu]
            if objs:
                self.classic_rcu[cpu] = []
                self.kfree_bulk(self.exec_cpu(cpu), objs)
        self._sample()

    # --------------------------------------------------------------- flush/lifecycle (§7)
    def pcs_flush_all(self, cpu: int) -> None:
        """L1 work ``pcs_flush_all`` on ``cpu``: flush and free the spare, submit rcu_free with
        K5, flush ``main`` (F6); ``main`` stays; the barn is not touched."""
        pcs = self.pcs[cpu]
        spare, rcu = pcs.spare, pcs.rcu_free
        pcs.spare = None
        pcs.rcu_free = None
        if spare is not None:
            self.sheaf_flush_unused(cpu, spare)
            self.free_empty_sheaf(spare)
        if rcu is not None:
            self.rcu_pending.append((rcu, cpu, "nobarn"))
        self.sheaf_flush_main(cpu)

    def flush_all(self) -> None:
        """L1 ``flush_all``: the flush work on every online CPU, ascending (6.18 X18: sheaves,
        then the CPU slab and CPU partial slabs)."""
        for cpu in range(self.p.cpus):
            if not self.online[cpu]:
                continue
            if self.has_pcs:
                self.pcs_flush_all(cpu)
            if self.v618:
                self.slab.flush_cpu(cpu)
        self._sample()

    def barn_shrink(self, cpu: int, barn: Barn) -> None:
        """L2 ``barn_shrink``: detach both lists under BARN; flush and free every full sheaf
        (head first), free every empty one."""
        self._barn_lock(barn)
        full = barn.full[::-1]
        empty = barn.empty[::-1]
        barn.full = []
        barn.empty = []
        for sh in full:
            self.sheaf_flush_unused(cpu, sh)
            self.free_empty_sheaf(sh)
        for sh in empty:
            self.free_empty_sheaf(sh)

    def kmem_cache_shrink(self) -> None:
        """L2 ``kmem_cache_shrink``: L1, then ``barn_shrink`` and the partial-list shrink (empty
        slabs freed, nearly-full slabs promoted). 7.3 ``__kmem_cache_do_shrink`` shrinks every
        node's barn first and then every node's partial list; 6.18 does both node by node
        (barn, then partial list)."""
        self.flush_all()
        ex = self.exec_cpu(-1)
        if self.v618:
            for node in range(self.p.nodes):
                self.barn_shrink(ex, self.barns[node])
                self.slab.shrink_node(node)
        else:
            for node in range(self.p.nodes):
                self.barn_shrink(ex, self.barns[node])
            for node in range(self.p.nodes):
                self.slab.shrink_node(node)
        self._sample()

    def cpu_offline(self, cpu: int) -> None:
        """L3 ``slub_cpu_dead`` (X18 for 6.18: CPU slab first), run on another CPU once ``cpu``
        is dead: flush ``main`` (kept, empty), flush and free the spare, submit rcu_free with
        K5; the barn keeps its sheaves."""
        self.online[cpu] = False
        ex = self.exec_cpu(cpu)
        if self.v618:
            self.slab.flush_cpu(cpu)
        if self.has_pcs:
            pcs = self.pcs[cpu]
            assert pcs.main is not None
            self.sheaf_flush_unused(ex, pcs.main)
            if pcs.spare is not None:
                spare = pcs.spare
                pcs.spare = None
                self.sheaf_flush_unused(ex, spare)
                self.free_empty_sheaf(spare)
            if pcs.rcu_free is not None:
                self.rcu_pending.append((pcs.rcu_free, cpu, "nobarn"))
                pcs.rcu_free = None
        self._sample()

    # ------------------------------------------------------------------ state and stats
    def held_objects(self) -> int:
        """Objects in every sheaf: per-CPU, barns, rcu in flight, outstanding prefilled."""
        n = 0
        for pcs in self.pcs:
            for sh in (pcs.main, pcs.spare, pcs.rcu_free):
                if sh is not None:
                    n += sh.size
        for barn in self.barns:
            n += sum(sh.size for sh in barn.full) + sum(sh.size for sh in barn.empty)
        n += sum(sh.size for sh, _, _ in self.rcu_pending)
        n += sum(sh.size for sh in self.prefilled.values())
        return n

    def cpu_held(self, cpu: int) -> int:
        """Objects in the CPU's main, spare and rcu_free sheaves."""
        pcs = self.pcs[cpu]
        return sum(sh.size for sh in (pcs.main, pcs.spare, pcs.rcu_free) if sh is not None)

    def node_barn_held(self, node: int) -> int:
        """Objects in the node's barn (full sheaves; K4 sheaves may hold fewer than cap)."""
        return sum(sh.size for sh in self.barns[node].full)

    def held_objects_fast(self) -> int:
        """Objects in all sheaves from the §8 identity (O(1)): SHEAF_REFILL + FREE_FASTPATH +
        FREE_RCU_SHEAF + oversize bulk objects − ALLOC_FASTPATH − SHEAF_FLUSH − P3 pops (6.18:
        FREE_PCS/ALLOC_PCS). Equal to :meth:`held_objects` (tested); no free hooks here."""
        st = self.stat
        hit_a = st["alloc_cpu_sheaf" if self.v618 else "alloc_fastpath"]
        hit_f = st["free_cpu_sheaf" if self.v618 else "free_fastpath"]
        ex = self.extra
        return (
            st["sheaf_refill"]
            + hit_f
            + st["free_rcu_sheaf"]
            + ex["oversize_objects"]
            - hit_a
            - st["sheaf_flush"]
            - ex["alloc_from_sheaf"]
        )

    def _sample(self, cpu: int | None = None) -> None:
        """Update peaks and the occupancy integrals after an API call: of ``cpu`` and its node
        for a per-CPU call, of every CPU and node for global work (flushes, grace periods)."""
        ex = self.extra
        held = self.held_objects_fast()
        ex["held_objects"] = held
        if held > ex["held_objects_max"]:
            ex["held_objects_max"] = held
        if ex["sheaves_live"] > ex["sheaves_live_max"]:
            ex["sheaves_live_max"] = ex["sheaves_live"]
        cpus = range(self.p.cpus) if cpu is None else (cpu,)
        nodes = range(self.p.nodes) if cpu is None else (self.mem_node(cpu),)
        now = self.t_last
        for n in nodes:
            barn = self.barns[n]
            if len(barn.full) > ex["barn_full_max"]:
                ex["barn_full_max"] = len(barn.full)
            if len(barn.empty) > ex["barn_empty_max"]:
                ex["barn_empty_max"] = len(barn.empty)
            v = self.node_barn_held(n)
            if v > self.node_barn_held_max[n]:
                self.node_barn_held_max[n] = v
            if now is not None:
                self.node_barn_held_integral[n] += self._node_val[n] * (now - self._node_since[n])
                self._node_since[n] = now
            self._node_val[n] = v
        for c in cpus:
            v = self.cpu_held(c)
            if v > self.cpu_held_max[c]:
                self.cpu_held_max[c] = v
            if now is not None:
                self.cpu_held_integral[c] += self._cpu_val[c] * (now - self._cpu_since[c])
                self._cpu_since[c] = now
            self._cpu_val[c] = v

    def advance(self, ts_ns: int) -> None:
        """Move the model's clock to ``ts_ns`` (trace replay). Occupancy is integrated lazily:
        each CPU's (and node's) held objects count from the time they last changed, so this is
        O(1); ``occupancy()`` gives the time-weighted means up to the last ``advance``."""
        if self.t_last is None:
            self.t_first = self.t_last = ts_ns
            self._cpu_since = [ts_ns] * self.p.cpus
            self._node_since = [ts_ns] * self.p.nodes
            return
        if ts_ns > self.t_last:
            self.t_last = ts_ns

    def _integrals(self) -> tuple[list[int], list[int]]:
        """The occupancy integrals completed up to ``t_last`` (without changing state)."""
        now = self.t_last
        if now is None:
            return list(self.cpu_held_integral), list(self.node_barn_held_integral)
        cpu = [
            self.cpu_held_integral[c] + self._cpu_val[c] * (now - self._cpu_since[c])
            for c in range(self.p.cpus)
        ]
        node = [
            self.node_barn_held_integral[n] + self._node_val[n] * (now - self._node_since[n])
            for n in range(self.p.nodes)
        ]
        return cpu, node

    def occupancy(self) -> dict[str, Any]:
        """Objects held per CPU (sheaves) and per node (barn): now, peak, time-weighted mean
        (None until ``advance`` has spanned some time)."""
        span = (
            (self.t_last - self.t_first)
            if self.t_first is not None and self.t_last is not None
            else 0
        )

        cpu_int, node_int = self._integrals()

        def mean(x: int) -> float | None:
            return x / span if span > 0 else None

        return {
            "cpus": [
                {
                    "cpu": c,
                    "now": self.cpu_held(c),
                    "max": self.cpu_held_max[c],
                    "mean": mean(cpu_int[c]),
                }
                for c in range(self.p.cpus)
            ],
            "nodes": [
                {
                    "node": n,
                    "barn_now": self.node_barn_held(n),
                    "barn_max": self.node_barn_held_max[n],
                    "barn_mean": mean(node_int[n]),
                }
                for n in range(self.p.nodes)
            ],
        }

    def counters(self) -> dict[str, int]:
        """The kernel version's stat items (sysfs names, summed over CPUs, zeros included)."""
        return dict(self.stat)

    def extras(self) -> dict[str, int]:
        return dict(self.extra)

    def full_state(self) -> dict[str, Any]:
        """Every object's place, canonically: the per-CPU sheaves' contents (bottom first), the
        barns' lists (head last), rcu sheaves in flight, classic kfree_rcu batches, prefilled
        sheaves in creation order, and the slab layer (``slab.state()``). A fast engine that
        uses the same object handles must produce the same value."""

        def objs(sh: Sheaf | None) -> tuple[int, ...] | None:
            return None if sh is None else tuple(sh.objs)

        return {
            "pcs": tuple((objs(p.main), objs(p.spare), objs(p.rcu_free)) for p in self.pcs),
            "barns": tuple(
                (tuple(tuple(sh.objs) for sh in b.full), len(b.empty)) for b in self.barns
            ),
            "rcu_pending": tuple(
                (tuple(sh.objs), cpu, kind, sh.node) for sh, cpu, kind in self.rcu_pending
            ),
            "classic_rcu": tuple(tuple(q) for q in self.classic_rcu),
            "prefilled": tuple((sh.capacity, tuple(sh.objs)) for sh in self.prefilled.values()),
            "online": tuple(self.online),
            "slab": self.slab.state(),
        }

    def snapshot(self) -> dict[str, Any]:
        """State in the scenario result's shape: per-CPU sheaf sizes (None = no sheaf) and
        per-node barn counts."""
        cpus = []
        for c, pcs in enumerate(self.pcs):
            cpus.append(
                {
                    "cpu": c,
                    "node": self.mem_node(c),
                    "main": None if pcs.main is None else pcs.main.size,
                    "spare": None if pcs.spare is None else pcs.spare.size,
                    "rcu_free": None if pcs.rcu_free is None else pcs.rcu_free.size,
                }
            )
        barns = [
            {"node": n, "full": len(b.full), "empty": len(b.empty)}
            for n, b in enumerate(self.barns)
        ]
        return {"cpus": cpus, "barns": barns}


class ModelError(Exception):
    """An operation whose kernel behaviour is undefined (e.g. a NULL dereference)."""
