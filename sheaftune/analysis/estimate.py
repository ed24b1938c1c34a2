"""Estimated time per operation from a replay's counters, with lock contention.

The counters say how often each path ran; :class:`~sheaftune.costs.CostModel` says what each
path costs; the barn spinlock and the node's ``list_lock`` are queues shared by the CPUs of a
node (``costs.closed_loop_time``). The estimate assumes every CPU of the node runs the same
operation mix back to back (a closed loop, as will-it-scale does): the worst case for
contention, and the case of the published regression. A trace from a 2-CPU machine replayed for
64 CPUs per node therefore says "if 64 CPUs did this", which is the question capacity tuning asks.
"""

from __future__ import annotations

from typing import Any

from sheaftune.costs import CostModel, closed_loop_time


class CostEstimate:
    """ns per operation, its breakdown (ns per operation by path), and the locks' state."""

    # (a plain class: a dataclass costs its generated methods at every import, and
    # ``recommend`` imports this module on analyze's path)
    def __init__(
        self,
        ns_per_op: float,
        uncontended_ns_per_op: float,
        breakdown: dict[str, float],
        barn_lock_per_op: float,
        list_lock_per_op: float,
        barn_utilisation: float,
        list_utilisation: float,
        barn_wait_ns: float,
        list_wait_ns: float,
    ) -> None:
        self.ns_per_op = ns_per_op
        self.uncontended_ns_per_op = uncontended_ns_per_op
        self.breakdown = breakdown
        self.barn_lock_per_op = barn_lock_per_op
        self.list_lock_per_op = list_lock_per_op
        self.barn_utilisation = barn_utilisation
        self.list_utilisation = list_utilisation
        self.barn_wait_ns = barn_wait_ns
        self.list_wait_ns = list_wait_ns

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (round(v, 4) if isinstance(v, float) else {kk: round(vv, 4) for kk, vv in v.items()})
            for k, v in self.__dict__.items()
        }


def estimate(
    counters: dict[str, int],
    extras: dict[str, int],
    operations: int,
    kernel: str,
    costs: CostModel | None = None,
    cpus_per_node: int = 1,
) -> CostEstimate:
    """The estimate for ``operations`` allocator calls that produced these counters."""
    costs = costs or CostModel()
    per_op, base, barn, lst = _paths(counters, extras, operations, kernel, costs)
    contended = cpus_per_node > 1
    barn_s = costs.barn_lock + (costs.handoff if contended else 0.0)
    list_s = costs.list_lock + (costs.handoff if contended else 0.0)
    t, rhos, waits = closed_loop_time(base, [(barn, barn_s), (lst, list_s)], cpus_per_node)
    per_op["barn_lock"] = barn * barn_s
    per_op["list_lock"] = lst * list_s
    per_op["barn_wait"] = barn * waits[0]
    per_op["list_wait"] = lst * waits[1]
    uncontended = base + barn * costs.barn_lock + lst * costs.list_lock
    return CostEstimate(t, uncontended, per_op, barn, lst, rhos[0], rhos[1], waits[0], waits[1])


def uncontended(
    counters: dict[str, int],
    extras: dict[str, int],
    operations: int,
    kernel: str,
    costs: CostModel,
) -> tuple[float, float, float]:
    """``estimate``'s ``(uncontended_ns_per_op, barn_lock_per_op, list_lock_per_op)``, without
    solving for contention (``recommend`` solves its own closed loop per candidate)."""
    _, base, barn, lst = _paths(counters, extras, operations, kernel, costs)
    return base + barn * costs.barn_lock + lst * costs.list_lock, barn, lst


def _paths(
    counters: dict[str, int], extras: dict[str, int], operations: int, kernel: str, costs: CostModel
) -> tuple[dict[str, float], float, float, float]:
    """ns per operation by path outside the locks, their sum, and barn and list_lock
    acquisitions per operation."""
    c = counters
    ops = max(operations, 1)
    if kernel == "6.18":
        sheaf_hits = c.get("alloc_cpu_sheaf", 0) + c.get("free_cpu_sheaf", 0)
        cpu_slab = c.get("alloc_fastpath", 0) + c.get("free_fastpath", 0)
    else:
        sheaf_hits = c.get("alloc_fastpath", 0) + c.get("free_fastpath", 0)
        cpu_slab = 0
    parts = {
        "sheaf_fast": sheaf_hits * costs.sheaf_fast,
        "cpu_slab_fast": cpu_slab * costs.slub_fast,
        "spare_swap": extras.get("spare_swap", 0) * costs.spare_swap,
        "slab_single": (c.get("alloc_slowpath", 0) + c.get("free_slowpath", 0))
        * costs.slab_single_object,
        "slab_batch": (c.get("sheaf_refill", 0) + c.get("sheaf_flush", 0))
        * costs.slab_batch_object,
        "sheaf_kmalloc": (c.get("sheaf_alloc", 0) + c.get("sheaf_free", 0)) * costs.sheaf_kmalloc,
        "new_slab": c.get("alloc_slab", 0) * costs.new_slab,
        "free_slab": c.get("free_slab", 0) * costs.free_slab,
        "sheaf_pop": extras.get("alloc_from_sheaf", 0) * costs.sheaf_pop,
    }
    per_op = {k: v / ops for k, v in parts.items()}
    base = sum(per_op.values())
    return per_op, base, extras.get("barn_lock", 0) / ops, extras.get("list_lock", 0) / ops
