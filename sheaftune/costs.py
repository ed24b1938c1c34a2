"""The cost model: nanoseconds per allocator event, and lock contention, with their sources.

No one has published per-event costs for barn get/put, sheaf refill or prefill/return
(``spec/costs-and-results.md``), so every default below is derived from the nearest published
measurement and says which. Users replace any number with ``--costs FILE.yaml`` (keys are the
field names). Costs are in ns on a ~3.6 GHz x86 core.

Contention. A barn is one spinlock per NUMA node, shared by the node's CPUs (and the node's
``list_lock`` likewise guards its partial slabs). Its cost is not a constant: it grows with the
rate at which the node's CPUs take it. We model each lock as an M/M/1 queue whose service time
is the hold time plus a cache-line hand-off: with ``n`` CPUs each spending a share ``f`` of
their time holding it, utilisation is ``rho = n * f`` and the mean wait before acquiring it is
``service * rho / (1 - rho)``. For a closed loop (every CPU issues the next operation as soon
as the previous one returns, as will-it-scale does) ``f`` depends on the per-operation time,
which depends on the wait: :func:`closed_loop_time` solves that fixed point. The model is
stated, not calibrated: it reproduces the shape of the published 64-core result (capacity 32 to
120 moves maple_node from barn-bound to fast-path-bound), not its exact percentages.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from sheaftune.errors import InputError
from sheaftune.results import Record

CYCLE_NS = 1 / 3.6  # the Xeon E5-1650 v4 (3.6 GHz) of the alloc+free pair measurement


@dataclass(frozen=True)
class CostModel:
    """ns per event; each default cites its source (see module docstring)."""

    # A2/F2: array pop/push under the per-CPU local trylock. Source: array-based per-CPU pool
    # 7.0 ns (PREEMPT=n) .. 9.7 ns (PREEMPT=y), Brouer qmempool 2014; we take the midpoint.
    sheaf_fast: float = 8.4
    # A3.2/F3.3 spare swap: a pointer exchange under the same lock; a fraction of the fast path.
    spare_swap: float = 2.0
    # Barn exchange hold time: spin_lock+unlock 12.6 ns plus local_irq_save/restore 13.6 ns
    # (prototype-kernel time_bench_sample, Core i7-2620M) plus the list manipulation.
    barn_lock: float = 26.2
    # node list_lock hold, per acquisition: same lock primitives as the barn.
    list_lock: float = 26.2
    # Contended lock hand-off: cache-line transfer 15-19 ns within a CCX (AnandTech Zen 4);
    # 79.5 ns across CCDs. Added to the service time of a lock under contention.
    handoff: float = 17.0
    # Objects moved between slabs and sheaves in refill/flush batches: kmem_cache_alloc_bulk +
    # free_bulk per object 17-20 cycles at n=16..64 (Brouer 2015), i.e. about 9 cycles per
    # direction, doubled because a refill walks a cold freelist (about one cache miss per
    # object) that the hot benchmark loop never pays: 18 cycles, 5 ns, per object moved.
    slab_batch_object: float = 9.0 * CYCLE_NS * 2
    # A6 slow path, one object straight from a slab: bulk n=1, 49 cycles per alloc+free pair
    # (Brouer 2015), plus list_lock per object.
    slab_single_object: float = 49 * CYCLE_NS
    # A new slab or a discarded empty slab: page allocator order-0 alloc+free 158 ns
    # (prototype-kernel), half each way, plus initialising the freelist of every slot.
    new_slab: float = 79.0
    free_slab: float = 79.0
    # A sheaf struct kmalloc/kfree: a kmalloc/kfree pair fast path, 65-75 cycles (Kim 2015).
    sheaf_kmalloc: float = 70 * CYCLE_NS
    # kmem_cache_alloc_from_sheaf: a pop from a sheaf the caller owns, no lock (P3).
    sheaf_pop: float = 3.0
    # Pre-sheaf SLUB fast path, for caches without sheaves: alloc+free pair 16.8 ns
    # (Brouer 2020), i.e. 8.4 ns each, plus the 2.4% extra branch (Babka v5 cover letter).
    slub_fast: float = 8.6
    # Fixed cost of one prefill/return/alloc_bulk/free_bulk call (entry, PCS lock, loop set-up).
    # Fitted to kmem_cache_alloc_bulk + free_bulk per object, 49 cycles at n=1 and 18 at n=32
    # (Brouer 2015): per pair 2*call + 2*n*object, so call = 16 cycles.
    api_call: float = 16 * CYCLE_NS
    # One object copied between a sheaf and the caller's array by a bulk call (B2/B3): the
    # per-object term of the same fit, 8.5 cycles.
    bulk_object: float = 8.5 * CYCLE_NS

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    def describe(self) -> list[dict[str, Any]]:
        """Each cost with its value, whether it is the default, and the default's source."""
        default = CostModel()
        return [
            {
                "name": f.name,
                "ns": round(getattr(self, f.name), 4),
                "default_ns": round(getattr(default, f.name), 4),
                "overridden": getattr(self, f.name) != getattr(default, f.name),
                "meaning": MEANINGS[f.name],
                "source": SOURCES[f.name],
            }
            for f in dataclasses.fields(self)
        ]

    @classmethod
    def from_yaml(cls, path: str) -> CostModel:
        """Load overrides from a YAML mapping of field names to ns; unknown keys are errors."""
        import yaml  # (here: the analyses import this module, and yaml is slow to import)

        try:
            with open(path, encoding="utf-8") as fh:
                data: Any = yaml.safe_load(fh) or {}
        except OSError as e:
            raise InputError(f"cannot read cost file: {e.strerror}", path) from None
        except yaml.YAMLError as e:
            raise InputError(f"invalid YAML: {str(e).splitlines()[0]}", path) from None
        if not isinstance(data, dict):
            raise InputError("a cost file is a mapping of cost names to ns", path)
        known = {f.name for f in dataclasses.fields(cls)}
        for key, value in data.items():
            if key not in known:
                raise InputError(
                    f"unknown cost {key!r}; known: {', '.join(sorted(known))}", path, f"key {key}"
                )
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise InputError("a cost must be a non-negative number of ns", path, f"key {key}")
        return dataclasses.replace(cls(), **{k: float(v) for k, v in data.items()})


#: What each cost prices (the path of kernel-sheaves.md it stands for).
MEANINGS: dict[str, str] = {
    "sheaf_fast": "one object allocated from or freed to the per-CPU main sheaf (A2/F2 hit)",
    "spare_swap": "exchange of main and spare (A3.2, F3.3, B2, B3)",
    "barn_lock": "hold time of one barn spinlock acquisition (irqsave + list work)",
    "list_lock": "hold time of one node list_lock acquisition",
    "handoff": "cache-line hand-off added to a lock's service time under contention",
    "slab_batch_object": "one object moved between slabs and a sheaf in a batch (refill, flush)",
    "slab_single_object": "one object taken from or returned to a slab on its own (A6, F5)",
    "new_slab": "allocating a new slab (page allocator + freelist set-up)",
    "free_slab": "discarding an empty slab",
    "sheaf_kmalloc": "kmalloc or kfree of a sheaf struct",
    "sheaf_pop": "kmem_cache_alloc_from_sheaf: a pop from a sheaf the caller owns (P3)",
    "slub_fast": "pre-sheaf SLUB per-CPU slab fast path (6.18 caches without sheaves)",
    "api_call": "fixed cost of one prefill, return, alloc_bulk or free_bulk call",
    "bulk_object": "one object copied between a sheaf and the caller's array by a bulk call",
}

#: Where each default comes from (spec/costs-and-results.md); "derived" says how.
SOURCES: dict[str, str] = {
    "sheaf_fast": "array-based per-CPU pool 7.0 ns (PREEMPT=n) .. 9.7 ns (PREEMPT=y), midpoint; "
    "J. Brouer, qmempool benchmarks, 2014, Xeon E5-2695",
    "spare_swap": "derived: a pointer exchange under the PCS lock, a fraction of sheaf_fast",
    "barn_lock": "spin_lock+unlock 12.6 ns + local_irq_save/restore 13.6 ns; prototype-kernel "
    "time_bench_sample, Core i7-2620M",
    "list_lock": "same lock primitives as barn_lock (prototype-kernel time_bench_sample)",
    "handoff": "cache-line transfer 15-19 ns within a CCX (79.5 ns across CCDs); AnandTech "
    "Zen 4 review, core-to-core latency, Ryzen 9 7950X",
    "slab_batch_object": "kmem_cache_alloc_bulk+free_bulk 17-20 cycles per object at n=16..64; "
    "default 9 cycles x 2 = 18 cycles; J. Brouer, 'slub: do prefetching in "
    "kmem_cache_alloc_bulk()', 2015",
    "slab_single_object": "bulk alloc+free at n=1, 49 cycles; J. Brouer 2015 (3.6 GHz)",
    "new_slab": "page allocator order-0 alloc+free 158 ns, half; prototype-kernel, i7-2620M",
    "free_slab": "page allocator order-0 alloc+free 158 ns, half; prototype-kernel, i7-2620M",
    "sheaf_kmalloc": "kmalloc/kfree pair 65-75 cycles; J. Kim, 'mm/slub: optimize alloc/free "
    "fastpath by removing preemption on/off', 2015",
    "sheaf_pop": "derived: an array pop without a lock, below the 7.0 ns array pool (Brouer 2014)",
    "slub_fast": "SLUB alloc+free pair 16.8 ns, half, + 2.4% sheaf branch; J. Brouer, "
    "slab-controller v6 thread, 2020, Xeon E5-1650 v4; V. Babka, sheaves v5 cover letter",
    "api_call": "derived: fit of bulk alloc+free per object 49 cycles (n=1) and 18 (n=32) as "
    "2*call + 2*n*object -> call 16 cycles; J. Brouer 2015",
    "bulk_object": "derived: the same fit -> 8.5 cycles per object and direction; J. Brouer 2015",
}


def queue_wait(service_ns: float, utilisation: float) -> float:
    """Mean wait in an M/M/1 queue; saturates (large, finite) as utilisation approaches 1."""
    rho = min(max(utilisation, 0.0), 0.99)
    return service_ns * rho / (1.0 - rho)


def closed_loop_time(
    base_ns: float, locks: list[tuple[float, float]], cpus: int
) -> tuple[float, list[float], list[float]]:
    """Per-operation time when ``cpus`` CPUs of one node run the same operation mix back to back.

    ``base_ns`` is the time of one operation outside lock holds; ``locks`` lists, per shared
    lock, (acquisitions per operation, service time = hold + hand-off). A CPU waits only for
    the *other* CPUs, so with ``rho_i = (cpus - 1) * a_i * s_i / T`` the time solves
    ``T = base + sum_i a_i * (s_i + wait(s_i, rho_i))``. The right side falls as T grows, so
    the equation has exactly one root, in ``[lo, rhs(lo)]`` with ``lo`` the uncontended time;
    it is found by bisection (a fixed-point iteration can stall far from it near saturation).
    Returns (T, utilisations, waits per acquisition).
    """
    others = max(cpus - 1, 0)
    lo = base_ns + sum(a * s for a, s in locks)
    if lo <= 0:
        return 0.0, [0.0] * len(locks), [0.0] * len(locks)
    # rhs(t) = base_ns + sum(a * (s + queue_wait(s, others * a * s / t))), written out with
    # the same floating-point operations in the same order (so the same root to the bit), as
    # this runs for every candidate of every recommendation. ``others * a * s`` is evaluated
    # left to right either way, so it is computed once per lock.
    terms = [(a, s, others * a * s) for a, s in locks]
    if len(terms) == 2:
        (a0, s0, k0), (a1, s1, k1) = terms

        def rhs(t: float) -> float:
            r0 = k0 / t
            r0 = 0.0 if 0.0 > r0 else r0  # max(r0, 0.0)
            r0 = 0.99 if 0.99 < r0 else r0  # min(r0, 0.99)
            r1 = k1 / t
            r1 = 0.0 if 0.0 > r1 else r1
            r1 = 0.99 if 0.99 < r1 else r1
            return base_ns + (
                0 + a0 * (s0 + s0 * r0 / (1.0 - r0)) + a1 * (s1 + s1 * r1 / (1.0 - r1))
            )

    else:

        def rhs(t: float) -> float:
            return base_ns + sum(a * (s + queue_wait(s, k / t)) for a, s, k in terms)

    hi = rhs(lo)
    for _ in range(200):
        if hi - lo <= 1e-12 * hi:
            break
        mid = 0.5 * (lo + hi)
        if mid < rhs(mid):
            lo = mid
        else:
            hi = mid
    t = 0.5 * (lo + hi)
    rhos = [min(others * a * s / t, 0.99) for a, s in locks]
    waits = [queue_wait(s, r) for (_, s), r in zip(locks, rhos, strict=True)]
    return t, rhos, waits


#: How lock contention is modelled (printed by ``sheaftune costs``; see the module docstring).
CONTENTION_MODEL = (
    "each node's barn spinlock and list_lock is an M/M/1 queue whose service time is the hold "
    "time (barn_lock, list_lock) plus a cache-line hand-off (handoff) when more than one CPU "
    "shares it; every CPU of the node runs the same operation mix back to back (closed loop), "
    "so utilisation rho = (cpus - 1) * acquisitions per operation * service / time per "
    "operation, the mean wait is service * rho / (1 - rho) (rho capped at 0.99), and the time "
    "per operation is the fixed point T = base + sum(acquisitions * (service + wait))"
)


@dataclass(frozen=True)
class CostReport(Record):
    """The cost model in use (``sheaftune costs``): every cost with its value, default,
    meaning and source, the file that overrode any, and the contention model."""

    # history: 1 (2026-11) first version
    SCHEMA: ClassVar[str] = "sheaftune/costs"
    VERSION: ClassVar[int] = 1

    file: str | None
    costs: list[dict[str, Any]]
    contention_model: str
    cycle_ns: float

    @classmethod
    def of(cls, model: CostModel, file: str | None = None) -> CostReport:
        return cls(file, model.describe(), CONTENTION_MODEL, round(CYCLE_NS, 6))
