"""The slab layer under the sheaves: slabs, per-node partial lists, and (6.18) per-CPU slabs.

Two implementations behind one small interface the sheaf model calls:

- :class:`Slub73` is Linux 7.3's slab layer (spec §2 A5/A6, §3 F5, §4 B5, §7 L2): no per-CPU
  slab, whole-slab refills from the node partial list, empty-slab discard with ``min_partial``.
- :class:`Slub618` is Linux 6.18's classic per-CPU slab machinery (X3, X4, X6, X9): a CPU slab
  with its lockless freelist, per-CPU partial slabs, node partial lists, deactivation, with the
  pre-sheaf SLUB counters.

State is deliberately plain (lists of ints indexed by slab id) so a numba engine can mirror it.
An object is an int handle ``slab_id * objects_per_slab + slot``; a slab's freelist is a list
whose *last* element is the freelist head (push = append, pop = pop()).

Simplifications (both layers; collected again in ``sheaftune.model.reference``):
- Memory never runs out: ``new_slab`` always succeeds at the preferred order, so
  ``order_fallback`` stays 0; no CAS2 ever fails, so ``cmpxchg_double_fail`` (and 6.18's
  ``cmpxchg_double_cpu_fail``) stay 0. No pfmemalloc slabs, no KFENCE, no free hooks.
- Objects of a new slab are handed out in slot order (no ``CONFIG_SLAB_FREELIST_RANDOM``).
- The zonelist of node ``n`` for the remote-partial search is ``n, n+1, ..., nodes-1, 0, ...,
  n-1`` (all remote nodes at equal distance; ties broken as ``find_next_best_node`` does for
  nodes above ``n``, ignoring its load balancing).
- The remote-partial gate (R4, A6 ``get_any_partial``) skips with
  ``params.remote_skip_probability`` (default 0: never), see Q7.
- 6.18: the CPU slab is the per-CPU ``kmem_cache_cpu`` of pre-sheaf SLUB (6.8+ semantics: CPU
  partial slabs are not frozen); the ``remote_node_defrag_ratio`` gate as above; no
  ``__GFP_THISNODE`` requests (scenarios never pass it).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from sheaftune.params import ModelParams

NUMA_NO_NODE = -1

# where a slab is (sl_where)
FULL = 0  # on no list, no free object (or: 6.18 unfrozen and full)
NODE_PARTIAL = 1  # on its node's partial list
CPU_SLAB = 2  # 6.18: frozen as some CPU's slab (sl_owner)
CPU_PARTIAL = 3  # 6.18: on some CPU's partial list (sl_owner)
FREED = 4  # returned to the page allocator

SHRINK_PROMOTE_MAX = 32


class SlabBase:
    """Slab bookkeeping shared by both kernels; ``stat``/``extra`` are the model's dicts."""

    def __init__(self, p: ModelParams, stat: dict[str, int], extra: dict[str, int]):
        self.p = p
        self.ops = p.objects_per_slab
        self.stat = stat
        self.extra = extra
        self.rng = random.Random(p.seed)
        self.sl_node: list[int] = []
        self.sl_inuse: list[int] = []
        self.sl_free: list[list[int]] = []
        self.sl_where: list[int] = []
        self.sl_owner: list[int] = []
        #: per node: slab ids, index 0 = head of the partial list
        self.partial: list[list[int]] = [[] for _ in range(p.nodes)]
        #: LIST acquisitions per node (for the contention model)
        self.list_lock_by_node = [0] * p.nodes

    # -- object and slab helpers ------------------------------------------------------------
    def slab_of(self, obj: int) -> int:
        return obj // self.ops

    def obj_node(self, obj: int) -> int:
        return self.sl_node[obj // self.ops]

    def mem_node(self, cpu: int) -> int:
        return self.p.cpu_node[cpu]

    def _new_slab_raw(self, node: int) -> int:
        """``new_slab``: a fresh slab on ``node``, freelist in slot order (head = slot 0)."""
        sid = len(self.sl_node)
        self.sl_node.append(node)
        self.sl_inuse.append(0)
        base = sid * self.ops
        self.sl_free.append([base + i for i in range(self.ops - 1, -1, -1)])
        self.sl_where.append(FULL)
        self.sl_owner.append(-1)
        self.stat["alloc_slab"] += 1
        self.extra["slabs_live"] += 1
        return sid

    def _discard(self, sid: int) -> None:
        self.sl_where[sid] = FREED
        self.sl_free[sid] = []
        self.extra["slabs_live"] -= 1

    def _list_lock(self, node: int) -> None:
        self.extra["list_lock"] += 1
        self.list_lock_by_node[node] += 1

    def _remove_partial(self, node: int, sid: int) -> None:
        self.partial[node].remove(sid)
        self.sl_where[sid] = FULL

    def _add_partial(self, node: int, sid: int, tail: bool) -> None:
        if tail:
            self.partial[node].append(sid)
        else:
            self.partial[node].insert(0, sid)
        self.sl_where[sid] = NODE_PARTIAL

    def zonelist(self, node: int) -> list[int]:
        """Nodes in distance order from ``node`` (see module Simplifications)."""
        n = self.p.nodes
        return [(node + i) % n for i in range(n)]

    def remote_gate_skips(self) -> bool:
        """R4/A6: ``get_cycles() % 1024 > remote_node_defrag_ratio`` skips the other nodes."""
        q = self.p.remote_skip_probability
        return q > 0 and self.rng.random() < q

    def build_detached_freelist(self, p: list[int], size: int) -> tuple[int, int, list[int]]:
        """B5 ``build_detached_freelist``: from the end of ``p[:size]`` collect one slab's
        objects, tolerating two objects of other slabs (the third mismatch ends the scan).

        Returns (new size, slab id, chain in push order: tail first, head last). Taken objects
        are moved to the end of ``p[:size]`` exactly as the kernel's swap does, so the next
        call sees the same array the kernel would.
        """
        size -= 1
        obj = p[size]
        sid = obj // self.ops
        chain = [obj]
        lookahead = 3
        same = size
        while size:
            size -= 1
            o = p[size]
            if o // self.ops == sid:
                chain.append(o)
                same -= 1
                if size != same:
                    p[size], p[same] = p[same], p[size]
                continue
            lookahead -= 1
            if not lookahead:
                break
        return same, sid, chain

    def state(self) -> dict[str, object]:
        """The whole slab layer, canonically (for holding another engine equal): every live
        slab as (id, node, inuse, freelist head-last, where, owner), and the partial lists."""
        slabs = tuple(
            (
                sid,
                self.sl_node[sid],
                self.sl_inuse[sid],
                tuple(self.sl_free[sid]),
                self.sl_where[sid],
                self.sl_owner[sid],
            )
            for sid in range(len(self.sl_node))
            if self.sl_where[sid] != FREED
        )
        out: dict[str, object] = {
            "slabs": slabs,
            "partial": tuple(tuple(p) for p in self.partial),
        }
        if isinstance(self, Slub618):
            out["cpu_slab"] = tuple(self.c_slab)
            out["cpu_freelist"] = tuple(tuple(f) for f in self.c_free)
            out["cpu_partial"] = tuple(tuple(p) for p in self.c_partial)
        return out

    def objects_in_slabs_free(self) -> int:
        """Free objects sitting on slab freelists (not in any sheaf or CPU freelist)."""
        return sum(len(f) for f, w in zip(self.sl_free, self.sl_where, strict=True) if w != FREED)

    def objects_from_slabs(self) -> int:
        """Objects of live slabs that are not on a slab freelist (D7 'in use' from the slab
        layer's view; includes objects in sheaves and, in 6.18, on CPU freelists)."""
        return sum(self.sl_inuse[s] for s in range(len(self.sl_node)) if self.sl_where[s] != FREED)


class Slub73(SlabBase):
    """Linux 7.3's slab layer: node partial lists only (D5); spec §2 A5/A6, §3 F5, §4 B5."""

    # -- A5 refill_objects ------------------------------------------------------------------
    def refill_objects(self, cpu: int, k: int) -> list[int]:
        """A5 ``refill_objects(min=max=k)``: R1+R2 local partial list, R4 other nodes, R5 new
        slabs on the local node. Returns the objects in the order the kernel stores them."""
        got: list[int] = []
        if k <= 0:
            return got
        local = self.mem_node(cpu)
        self._refill_node(local, k, got)  # R1, R2
        if len(got) >= k:  # R3
            return got
        if self.p.nodes > 1 and not self.remote_gate_skips():  # R4
            for n in self.zonelist(local):
                if len(self.partial[n]) > self.p.min_partial:
                    self._refill_node(n, k, got)
                    if len(got) >= k:
                        return got
        while len(got) < k:  # R5
            self._alloc_from_new_slab(local, k - len(got), got)
        return got

    def _refill_node(self, node: int, k: int, got: list[int]) -> None:
        """R1 ``get_partial_node_bulk`` + R2 drain: whole slabs from the head of the partial
        list until their free objects cover what is missing; the overshoot slab keeps its
        remaining objects and goes to the tail of the list."""
        part = self.partial[node]
        if not part:  # racy nr_partial == 0 check: no LIST
            return
        want = k - len(got)
        self._list_lock(node)
        taken: list[int] = []
        total = 0
        while part and total < want:
            sid = part.pop(0)
            self.sl_where[sid] = FULL
            taken.append(sid)
            total += len(self.sl_free[sid])
        for sid in taken:
            fl = self.sl_free[sid]
            need = k - len(got)
            # get_freelist_nofreeze: the whole freelist, slab marked full
            n_take = min(need, len(fl))
            for _ in range(n_take):
                got.append(fl.pop())  # freelist order, head first
            self.sl_inuse[sid] = self.ops - len(fl)
            if fl:
                # overshoot: __slab_try_return_freelist, slab to the tail under LIST
                self._list_lock(node)
                self._add_partial(node, sid, tail=True)

    def _alloc_from_new_slab(self, node: int, count: int, got: list[int]) -> None:
        """R5 ``alloc_from_new_slab``: the first ``min(count, objects)`` objects in slot order;
        a slab with objects left goes to the head of the partial list (LIST)."""
        sid = self._new_slab_raw(node)
        fl = self.sl_free[sid]
        n_take = min(count, self.ops)
        for _ in range(n_take):
            got.append(fl.pop())
        self.sl_inuse[sid] = n_take
        if fl:
            self._list_lock(node)
            self._add_partial(node, sid, tail=False)

    # -- A6 ___slab_alloc -------------------------------------------------------------------
    def alloc_one(self, cpu: int, node: int) -> int:
        """A6 ``___slab_alloc``: one object, never through a sheaf. stat ALLOC_SLOWPATH."""
        self.stat["alloc_slowpath"] += 1
        if node != NUMA_NO_NODE:
            # a specific node without __GFP_THISNODE: that node's partial list, then a new slab
            # on that node (which always succeeds here, so the general procedure never runs)
            obj = self._get_from_partial_node(node)
            if obj is None:
                obj = self._new_slab_one(node)
            return obj
        local = self.mem_node(cpu)
        obj = self._get_from_partial_node(local)
        if obj is None and self.p.nodes > 1 and not self.remote_gate_skips():
            for n in self.zonelist(local):
                if len(self.partial[n]) > self.p.min_partial:
                    obj = self._get_from_partial_node(n)
                    if obj is not None:
                        break
        if obj is None:
            obj = self._new_slab_one(local)
        return obj

    def _get_from_partial_node(self, node: int) -> int | None:
        """``get_from_partial_node``: one object from the head slab (LIST + CAS2); the slab
        leaves the list when its freelist becomes empty."""
        part = self.partial[node]
        if not part:
            return None
        self._list_lock(node)
        sid = part[0]
        fl = self.sl_free[sid]
        obj = fl.pop()
        self.sl_inuse[sid] += 1
        if not fl:
            self._remove_partial(node, sid)
        return obj

    def _new_slab_one(self, node: int) -> int:
        """A6 new slab: stat ALLOC_SLAB, first object; the rest goes to the partial head."""
        sid = self._new_slab_raw(node)
        fl = self.sl_free[sid]
        obj = fl.pop()
        self.sl_inuse[sid] = 1
        if fl:
            self._list_lock(node)
            self._add_partial(node, sid, tail=False)
        return obj

    # -- F5 __slab_free ---------------------------------------------------------------------
    def slab_free(self, sid: int, chain: list[int]) -> None:
        """F5 ``__slab_free(head..tail, cnt)``: push the chain on the slab freelist; LIST only
        when the slab was full or becomes empty; discard an empty slab when the node already
        has ``min_partial`` partial slabs. Callers add FREE_SLOWPATH themselves."""
        node = self.sl_node[sid]
        fl = self.sl_free[sid]
        was_full = not fl
        on_partial = self.sl_where[sid] == NODE_PARTIAL
        fl.extend(chain)
        self.sl_inuse[sid] -= len(chain)
        inuse = self.sl_inuse[sid]
        if not (inuse == 0 or was_full):
            return
        if not on_partial and not was_full:
            # detached by a concurrent refill; cannot happen sequentially
            return
        self._list_lock(node)
        if inuse == 0 and len(self.partial[node]) >= self.p.min_partial:
            if on_partial:
                self._remove_partial(node, sid)
                self.stat["free_remove_partial"] += 1
            self.stat["free_slab"] += 1
            self._discard(sid)
        elif was_full:
            self._add_partial(node, sid, tail=True)
            self.stat["free_add_partial"] += 1

    def free_one(self, cpu: int, obj: int) -> None:
        """F1 fallback: ``__slab_free`` of one object, stat FREE_SLOWPATH."""
        self.slab_free(obj // self.ops, [obj])
        self.stat["free_slowpath"] += 1

    def free_bulk(self, cpu: int, objs: list[int]) -> None:
        """B5 ``__kmem_cache_free_bulk``: detached freelists from the end of the array, one F5
        per group. No FREE_* stat of its own."""
        p = list(objs)
        size = len(p)
        while size:
            size, sid, chain = self.build_detached_freelist(p, size)
            self.slab_free(sid, chain)

    def bulk_alloc(self, cpu: int, k: int) -> list[int]:
        """``__kmem_cache_alloc_bulk``: ``refill_objects(k)``, stat ALLOC_SLOWPATH += k on
        success (B1 remainder, P1/P5 oversize)."""
        got = self.refill_objects(cpu, k)
        self.stat["alloc_slowpath"] += len(got)
        return got

    def refill_for_sheaf(self, cpu: int, k: int, gfp_blocking: bool) -> list[int]:
        """A4's source of objects: ``refill_objects``; no ALLOC_* counter moves."""
        return self.refill_objects(cpu, k)

    def flush_cpu(self, cpu: int) -> None:
        """7.3 has no per-CPU slab: nothing to deactivate."""

    def objects_on_cpu_freelists(self) -> int:
        return 0

    # -- L2 partial-list shrink -------------------------------------------------------------
    def shrink_node(self, node: int) -> None:
        """L2 partial-list part of ``__kmem_cache_shrink``: under LIST discard every completely
        free slab (no FREE_SLAB stat: ``free_slab`` is called directly) and move slabs with
        1..32 free objects to the head ordered by increasing free count. Within one free count
        the kernel's ``list_move`` reverses the scan order."""
        self._list_lock(node)
        part = self.partial[node]
        promote: list[list[int]] = [[] for _ in range(SHRINK_PROMOTE_MAX)]
        rest: list[int] = []
        discard: list[int] = []
        for sid in part:
            free = len(self.sl_free[sid])
            if free == self.ops:
                discard.append(sid)
            elif free <= SHRINK_PROMOTE_MAX:
                promote[free - 1].insert(0, sid)  # list_move = add at the bucket's head
            else:
                rest.append(sid)
        new: list[int] = []
        for bucket in promote:
            new.extend(bucket)
        new.extend(rest)
        self.partial[node] = new
        for sid in discard:
            self.extra["slabs_shrunk"] += 1
            self._discard(sid)


class Slub618(SlabBase):
    """Linux 6.18's classic per-CPU slab layer underneath the sheaves (X3, X4, X6, X9).

    ``kmem_cache_cpu`` per CPU: ``c_slab`` (frozen slab or -1), ``c_free`` (its lockless
    freelist, last element = head), ``c_partial`` (per-CPU partial slabs, index 0 = head).
    """

    def __init__(self, p: ModelParams, stat: dict[str, int], extra: dict[str, int]):
        super().__init__(p, stat, extra)
        self.c_slab = [-1] * p.cpus
        self.c_free: list[list[int]] = [[] for _ in range(p.cpus)]
        self.c_partial: list[list[int]] = [[] for _ in range(p.cpus)]
        self.cpu_partial_slabs = p.cpu_partial_slabs

    # -- allocation -------------------------------------------------------------------------
    def alloc_one(self, cpu: int, node: int) -> int:
        """X4 ``__slab_alloc_node``: the CPU slab's lockless freelist (ALLOC_FASTPATH) when it
        has an object and the node matches, else ``___slab_alloc``."""
        fl = self.c_free[cpu]
        sid = self.c_slab[cpu]
        if not fl or sid < 0 or not self._node_match(sid, node):
            return self._slab_alloc(cpu, node)
        self.stat["alloc_fastpath"] += 1
        return fl.pop()

    def _node_match(self, sid: int, node: int) -> bool:
        return node == NUMA_NO_NODE or self.sl_node[sid] == node

    def _slab_alloc(self, cpu: int, node: int) -> int:
        """``___slab_alloc`` (pre-sheaf SLUB, 6.8+): reuse the CPU slab's remote frees
        (ALLOC_REFILL), CPU partial slabs (CPU_PARTIAL_ALLOC), node partial slabs
        (ALLOC_FROM_PARTIAL, CPU_PARTIAL_NODE), or a new slab (ALLOC_SLAB)."""
        st = self.stat
        st["alloc_slowpath"] += 1
        sid = self.c_slab[cpu]
        if sid >= 0:
            if not self._node_match(sid, node):
                st["alloc_node_mismatch"] += 1
                chain = self.c_free[cpu]
                self.c_slab[cpu] = -1
                self.c_free[cpu] = []
                self._deactivate_slab(sid, chain)
            else:
                if self.c_free[cpu]:
                    return self.c_free[cpu].pop()
                chain = self._get_freelist(sid)
                if not chain:
                    self.c_slab[cpu] = -1
                    st["deactivate_bypass"] += 1
                else:
                    st["alloc_refill"] += 1
                    return self._load_freelist(cpu, chain)
        # new_slab: per-CPU partial slabs first
        while self.c_partial[cpu]:
            sid = self.c_partial[cpu].pop(0)
            if self._node_match(sid, node):
                self.c_slab[cpu] = sid
                self.sl_owner[sid] = cpu
                chain = self._get_freelist(sid)
                st["cpu_partial_alloc"] += 1
                return self._load_freelist(cpu, chain)
            self._put_partials([sid])
        # new_objects: node partial lists
        sid = self._get_partial(cpu, node)
        if sid < 0:
            nn = node if node != NUMA_NO_NODE else self.mem_node(cpu)
            sid = self._new_slab_raw(nn)
            chain = self.sl_free[sid]
            self.sl_free[sid] = []
            self.sl_inuse[sid] = self.ops
        else:
            chain = self._freeze_slab(sid)
        # retry_load_slab: c_slab is always empty here in a sequential model
        self.sl_where[sid] = CPU_SLAB
        self.sl_owner[sid] = cpu
        self.c_slab[cpu] = sid
        return self._load_freelist(cpu, chain)

    def _load_freelist(self, cpu: int, chain: list[int]) -> int:
        obj = chain.pop()
        self.c_free[cpu] = chain
        return obj

    def _get_freelist(self, sid: int) -> list[int]:
        """``get_freelist``: take the slab's freelist for the CPU; a slab with none is
        unfrozen (full, on no list)."""
        chain = self.sl_free[sid]
        self.sl_free[sid] = []
        self.sl_inuse[sid] = self.ops
        if chain:
            self.sl_where[sid] = CPU_SLAB
        else:
            self.sl_where[sid] = FULL
            self.sl_owner[sid] = -1
        return chain

    def _freeze_slab(self, sid: int) -> list[int]:
        chain = self.sl_free[sid]
        self.sl_free[sid] = []
        self.sl_inuse[sid] = self.ops
        return chain

    def _get_partial(self, cpu: int, node: int) -> int:
        """``get_partial``: the search node, then (for NUMA_NO_NODE or without THISNODE)
        ``get_any_partial``. A node-specific request first tries only its node and a new slab
        there (6.9+ ``try_thisnode``), which always succeeds in this model."""
        search = node if node != NUMA_NO_NODE else self.mem_node(cpu)
        sid = self._get_partial_node(cpu, search)
        if sid >= 0 or node != NUMA_NO_NODE:
            return sid
        if self.p.nodes > 1 and not self.remote_gate_skips():
            for n in self.zonelist(search):
                if len(self.partial[n]) > self.p.min_partial:
                    sid = self._get_partial_node(cpu, n)
                    if sid >= 0:
                        return sid
        return -1

    def _get_partial_node(self, cpu: int, node: int) -> int:
        """``get_partial_node``: the first slab for the CPU slab (ALLOC_FROM_PARTIAL), then more
        slabs onto the CPU partial list (CPU_PARTIAL_NODE) until more than
        ``cpu_partial_slabs / 2`` were moved."""
        part = self.partial[node]
        if not part:
            return -1
        self._list_lock(node)
        first = -1
        moved = 0
        while part:
            sid = part.pop(0)
            self.sl_where[sid] = FULL
            if first < 0:
                first = sid
                self.stat["alloc_from_partial"] += 1
                if self.p.cpu_partial == 0:
                    break
            else:
                self._put_cpu_partial(cpu, sid, drain=False)
                self.stat["cpu_partial_node"] += 1
                moved += 1
                if moved > self.cpu_partial_slabs // 2:
                    break
        return first

    def _put_cpu_partial(self, cpu: int, sid: int, drain: bool) -> None:
        """``put_cpu_partial``: push on the CPU partial list; with ``drain`` and a full list,
        the existing list goes to the node lists first (CPU_PARTIAL_DRAIN)."""
        old = self.c_partial[cpu]
        to_put: list[int] = []
        if old and drain and len(old) >= self.cpu_partial_slabs:
            to_put = old
            old = []
        self.c_partial[cpu] = [sid] + old
        self.sl_where[sid] = CPU_PARTIAL
        self.sl_owner[sid] = cpu
        if to_put:
            self._put_partials(to_put)
            self.stat["cpu_partial_drain"] += 1

    def _put_partials(self, slabs: list[int]) -> None:
        """``__put_partials``: each slab to its node's partial tail (FREE_ADD_PARTIAL), or
        discarded if empty and the node has ``min_partial`` slabs (DEACTIVATE_EMPTY,
        FREE_SLAB)."""
        discard: list[int] = []
        last_node = -1
        for sid in slabs:
            node = self.sl_node[sid]
            if node != last_node:
                self._list_lock(node)
                last_node = node
            if self.sl_inuse[sid] == 0 and len(self.partial[node]) >= self.p.min_partial:
                discard.insert(0, sid)
            else:
                self._add_partial(node, sid, tail=True)
                self.sl_owner[sid] = -1
                self.stat["free_add_partial"] += 1
        for sid in discard:
            self.stat["deactivate_empty"] += 1
            self._discard(sid)
            self.stat["free_slab"] += 1

    def _deactivate_slab(self, sid: int, chain: list[int]) -> None:
        """``deactivate_slab``: splice the CPU freelist onto the slab's, unfreeze, then discard
        (DEACTIVATE_EMPTY+FREE_SLAB), add to the partial head/tail (DEACTIVATE_TO_HEAD/TAIL;
        tail when remote frees were found, DEACTIVATE_REMOTE_FREES) or leave full
        (DEACTIVATE_FULL)."""
        st = self.stat
        node = self.sl_node[sid]
        tail = False
        if self.sl_free[sid]:
            st["deactivate_remote_frees"] += 1
            tail = True
        self.sl_free[sid].extend(chain)
        self.sl_inuse[sid] -= len(chain)
        self.sl_where[sid] = FULL
        self.sl_owner[sid] = -1
        if self.sl_inuse[sid] == 0 and len(self.partial[node]) >= self.p.min_partial:
            st["deactivate_empty"] += 1
            self._discard(sid)
            st["free_slab"] += 1
        elif self.sl_free[sid]:
            self._list_lock(node)
            self._add_partial(node, sid, tail=tail)
            st["deactivate_to_tail" if tail else "deactivate_to_head"] += 1
        else:
            st["deactivate_full"] += 1

    # -- X6 refill source, bulk ----------------------------------------------------------------
    def bulk_alloc(self, cpu: int, k: int) -> list[int]:
        """X6 6.18 ``__kmem_cache_alloc_bulk``: objects one by one from the CPU freelist
        (ALLOC_FASTPATH each), ``___slab_alloc`` whenever it is empty (ALLOC_SLOWPATH)."""
        out: list[int] = []
        for _ in range(k):
            fl = self.c_free[cpu]
            if not fl:
                out.append(self._slab_alloc(cpu, NUMA_NO_NODE))
                continue
            out.append(fl.pop())
            self.stat["alloc_fastpath"] += 1
        return out

    def refill_for_sheaf(self, cpu: int, k: int, gfp_blocking: bool) -> list[int]:
        """X6: a 6.18 sheaf refill is the CPU-slab bulk loop (it moves ALLOC_* counters)."""
        return self.bulk_alloc(cpu, k)

    # -- free -------------------------------------------------------------------------------
    def do_slab_free(self, cpu: int, sid: int, chain: list[int]) -> None:
        """X9 ``do_slab_free``: onto the executing CPU's freelist if ``sid`` is its CPU slab
        (FREE_FASTPATH += cnt), else ``__slab_free``."""
        if sid == self.c_slab[cpu]:
            self.c_free[cpu].extend(chain)
            self.stat["free_fastpath"] += len(chain)
            return
        self._slab_free(cpu, sid, chain)

    def _slab_free(self, cpu: int, sid: int, chain: list[int]) -> None:
        """6.18 ``__slab_free`` (CPU partial enabled): FREE_SLOWPATH once per call; frozen
        slab: FREE_FROZEN; a full slab's first free puts it on this CPU's partial list
        (CPU_PARTIAL_FREE); an emptied node-partial slab is discarded when the node has
        ``min_partial`` slabs (FREE_REMOVE_PARTIAL, FREE_SLAB)."""
        st = self.stat
        st["free_slowpath"] += 1
        fl = self.sl_free[sid]
        prior = bool(fl)
        was_frozen = self.sl_where[sid] == CPU_SLAB
        fl.extend(chain)
        self.sl_inuse[sid] -= len(chain)
        inuse = self.sl_inuse[sid]
        node = self.sl_node[sid]
        locked = False
        if (inuse == 0 or not prior) and not was_frozen and prior:
            self._list_lock(node)
            locked = True
        if not locked:
            if was_frozen:
                st["free_frozen"] += 1
            elif not prior:
                self._put_cpu_partial(cpu, sid, drain=True)
                st["cpu_partial_free"] += 1
            return
        if self.sl_where[sid] != NODE_PARTIAL:
            return  # on a CPU partial list: left alone
        if inuse == 0 and len(self.partial[node]) >= self.p.min_partial:
            self._remove_partial(node, sid)
            st["free_remove_partial"] += 1
            st["free_slab"] += 1
            self._discard(sid)

    def free_one(self, cpu: int, obj: int) -> None:
        self.do_slab_free(cpu, obj // self.ops, [obj])

    def free_bulk(self, cpu: int, objs: list[int]) -> None:
        """6.18 ``__kmem_cache_free_bulk``: detached freelists (B5), ``do_slab_free`` each."""
        p = list(objs)
        size = len(p)
        while size:
            size, sid, chain = self.build_detached_freelist(p, size)
            self.do_slab_free(cpu, sid, chain)

    def flush_cpu(self, cpu: int) -> None:
        """``flush_slab`` + ``put_partials``: deactivate the CPU slab (CPUSLAB_FLUSH) and move
        the CPU partial slabs to the node lists (no CPU_PARTIAL_DRAIN)."""
        sid = self.c_slab[cpu]
        if sid >= 0:
            chain = self.c_free[cpu]
            self.c_slab[cpu] = -1
            self.c_free[cpu] = []
            self._deactivate_slab(sid, chain)
            self.stat["cpuslab_flush"] += 1
        if self.c_partial[cpu]:
            slabs = self.c_partial[cpu]
            self.c_partial[cpu] = []
            self._put_partials(slabs)

    def objects_on_cpu_freelists(self) -> int:
        return sum(len(f) for f in self.c_free)

    def shrink_node(self, node: int) -> None:
        Slub73.shrink_node(self, node)  # type: ignore[arg-type]


SlabLayer = Slub73 | Slub618
SlabFactory = Callable[[ModelParams, dict[str, int], dict[str, int]], SlabLayer]
