"""ModelParams: the frozen description of one cache on one machine that the sheaf model replays.

Every default names its source in ``spec/kernel-sheaves.md`` (sections cited as ``§N``/rule ids).
Sweeps make copies with :func:`dataclasses.replace`, never mutate. The kernel's capacity
autotuning (7.3, spec §10 C1-C3) and the other derived cache parameters (``min_partial``, D1;
6.18's ``cpu_partial``, X3) are pure functions here so every part of the product computes them
the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

KERNELS = ("7.3", "6.18")

PAGE_SIZE = 4096
#: slub.c:418-419, D4: soft limits of a barn's full and empty lists.
MAX_FULL_SHEAVES = 10
MAX_EMPTY_SHEAVES = 10
#: F6: objects moved per batch when ``main`` is flushed.
PCS_BATCH_MAX = 32
#: D2: sheaf header bytes on 64-bit, then 8 bytes per slot.
SHEAF_HEADER_BYTES = 32
#: D1: bounds of ``min_partial`` (MIN_PARTIAL, MAX_PARTIAL).
MIN_PARTIAL = 5
MAX_PARTIAL = 10

#: C2: the x86-64 kmalloc buckets up to 8 KiB.
KMALLOC_BUCKETS = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)


def kmalloc_size_roundup(size: int) -> int:
    """C2 ``kmalloc_size_roundup``: the kmalloc bucket that would serve ``size`` bytes."""
    if size <= 0:
        return 0
    for b in KMALLOC_BUCKETS:
        if size <= b:
            return b
    return -(-size // PAGE_SIZE) * PAGE_SIZE


def autotune_capacity(
    slot_size: int, requested: int = 0, *, has_sheaves: bool = True, page_size: int = PAGE_SIZE
) -> int:
    """C1 ``calculate_sheaf_capacity`` (7.3): the capacity the kernel gives a cache.

    ``slot_size`` is ``S.size`` (object plus metadata, aligned), ``requested`` the
    ``kmem_cache_args.sheaf_capacity`` (a floor, not rounded). ``has_sheaves=False`` stands for
    SLUB_TINY, debug flags, SLAB_NO_SHEAVES or SLAB_NOLEAKTRACE (capacity 0).
    """
    if not has_sheaves:
        return 0
    if slot_size >= page_size:
        base = 4
    elif slot_size >= 1024:
        base = 12
    elif slot_size >= 256:
        base = 26
    else:
        base = 60
    nbytes = kmalloc_size_roundup(SHEAF_HEADER_BYTES + 8 * base)
    cap_auto = (nbytes - SHEAF_HEADER_BYTES) // 8
    return max(cap_auto, requested)


def capacity_for(kernel: str, slot_size: int, requested: int) -> int:
    """The effective capacity: 7.3 autotunes with the request as a floor (C1); 6.18 takes the
    request exactly, 0 meaning no sheaves (X1, X2)."""
    if kernel == "6.18":
        return requested
    return autotune_capacity(slot_size, requested)


def default_min_partial(slot_size: int) -> int:
    """D1: ``min_partial = clamp(ilog2(size) / 2, 5, 10)`` (do_kmem_cache_create)."""
    lg = max(slot_size, 1).bit_length() - 1
    return min(max(lg // 2, MIN_PARTIAL), MAX_PARTIAL)


def default_objects_per_slab(slot_size: int) -> int:
    """Objects in an order-0 slab (scenario-format.md default); at least one."""
    return max(1, PAGE_SIZE // max(slot_size, 1))


def default_cpu_partial(slot_size: int) -> int:
    """6.18 ``set_cpu_partial`` (X3): objects kept on a CPU's partial list (120/52/24/6)."""
    if slot_size >= PAGE_SIZE:
        return 6
    if slot_size >= 1024:
        return 24
    if slot_size >= 256:
        return 52
    return 120


def contiguous_cpu_nodes(cpus: int, nodes: int) -> tuple[int, ...]:
    """CPU ``c`` on node ``(c * nodes) // cpus`` (scenario-format.md: contiguous blocks)."""
    return tuple((c * nodes) // cpus for c in range(cpus))


@dataclass(frozen=True)
class ModelParams:
    """One cache on one machine, as the model needs it.

    ``sheaf_capacity`` is the *effective* capacity (after autotuning or a forced what-if
    value); use :meth:`for_cache` to derive it the kernel's way.
    """

    kernel: str = "7.3"
    #: effective capacity; 0 = the cache has no sheaves (D6, X1)
    sheaf_capacity: int = 28
    #: slot size S.size in bytes (D1)
    object_size: int = 256
    #: objects per slab (D1 ``oo``); default order-0 pages
    objects_per_slab: int = 16
    cpus: int = 1
    nodes: int = 1
    #: CPU -> NUMA node (``numa_mem_id``; identical to ``numa_node_id`` on x86-64, §0)
    cpu_node: tuple[int, ...] = (0,)
    #: D4 soft limits
    max_full_sheaves: int = MAX_FULL_SHEAVES
    max_empty_sheaves: int = MAX_EMPTY_SHEAVES
    #: D1 min_partial
    min_partial: int = MIN_PARTIAL
    #: 6.18 only: ``s->cpu_partial`` objects (X3, set_cpu_partial)
    cpu_partial: int = 52
    #: R4/A6: probability that the remote-partial gate (``get_cycles() % 1024 > 1000``) skips
    #: other nodes. Q7: the kernel's gate is deterministic cycle-counter arithmetic; 0.0 (never
    #: skip) keeps scenarios exact, 0.022 models it as the spec suggests.
    remote_skip_probability: float = 0.0
    #: seed of the model's own random draws (only the remote gate uses one)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, not {self.kernel!r}")
        if self.cpus < 1 or self.nodes < 1:
            raise ValueError("cpus and nodes must be at least 1")
        if len(self.cpu_node) != self.cpus:
            raise ValueError("cpu_node must name a node for every CPU")
        if any(not 0 <= n < self.nodes for n in self.cpu_node):
            raise ValueError("cpu_node names a node out of range")
        if self.sheaf_capacity < 0 or self.objects_per_slab < 1 or self.object_size < 1:
            raise ValueError("capacity, object_size and objects_per_slab must be positive")

    @property
    def cpu_partial_slabs(self) -> int:
        """6.18 ``slub_set_cpu_partial``: DIV_ROUND_UP(cpu_partial * 2, objects per slab)."""
        return -(-(self.cpu_partial * 2) // self.objects_per_slab)

    def with_capacity(self, capacity: int) -> ModelParams:
        """A what-if copy with a forced effective capacity."""
        return dataclasses.replace(self, sheaf_capacity=capacity)

    @classmethod
    def for_cache(
        cls,
        *,
        kernel: str = "7.3",
        object_size: int = 256,
        requested_capacity: int = 0,
        capacity: int | None = None,
        objects_per_slab: int | None = None,
        cpus: int = 1,
        nodes: int = 1,
        cpu_node: tuple[int, ...] | None = None,
        **kw: Any,
    ) -> ModelParams:
        """Derive the kernel's parameters for a cache of slot size ``object_size``.

        ``requested_capacity`` is the ``kmem_cache_args.sheaf_capacity``; ``capacity`` forces
        the effective value (what-if) and overrides both.
        """
        cap = (
            capacity
            if capacity is not None
            else capacity_for(kernel, object_size, requested_capacity)
        )
        ops = (
            objects_per_slab
            if objects_per_slab is not None
            else default_objects_per_slab(object_size)
        )
        return cls(
            kernel=kernel,
            sheaf_capacity=cap,
            object_size=object_size,
            objects_per_slab=ops,
            cpus=cpus,
            nodes=nodes,
            cpu_node=cpu_node if cpu_node is not None else contiguous_cpu_nodes(cpus, nodes),
            min_partial=default_min_partial(object_size),
            cpu_partial=default_cpu_partial(object_size),
            **kw,
        )
