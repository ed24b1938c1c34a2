"""Capacity sweeps: one plan, many capacities, replayed in parallel where the engine allows.

``parse_capacities`` turns the ``--capacity`` option into a :class:`CapacitySpec`;
``capacities_for`` expands it for one cache (``buckets`` = every capacity that exactly fills a
kmalloc bucket, plus the cache's current and autotuned values); ``replay_capacities`` runs one
plan at several capacities, sharing the plan (the fast engine runs them on all cores).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from sheaftune.errors import UsageError
from sheaftune.model.plan import Plan
from sheaftune.model.replay import ReplayResult, replay
from sheaftune.params import ModelParams, autotune_capacity

#: Capacities whose sheaf (32-byte header + 8 bytes per pointer) exactly fills a kmalloc bucket
#: (64..4096 bytes; kernel-sheaves.md section 10).
BUCKET_CAPACITIES = (4, 12, 28, 60, 124, 252, 508)


@dataclass(frozen=True)
class CapacitySpec:
    """``--capacity`` values: a default list for every cache and per-cache overrides.

    ``None`` in a list stands for the kernel's own capacity for the cache; ``buckets`` for
    BUCKET_CAPACITIES plus the current and autotuned values.
    """

    default: tuple[int | None | str, ...] = (None,)
    per_cache: dict[str, tuple[int | None | str, ...]] = field(default_factory=dict)


def parse_capacities(values: tuple[str, ...] | list[str]) -> CapacitySpec:
    """``("60", "4,12", "buckets", "maple_node=120,32")`` -> CapacitySpec; UsageError if bad."""
    default: list[int | None | str] = []
    per_cache: dict[str, list[int | None | str]] = {}
    for value in values:
        target = default
        if "=" in value:
            cache, value = value.split("=", 1)
            target = per_cache.setdefault(cache.strip(), [])
        for item in value.split(","):
            item = item.strip()
            if item in ("buckets", "kernel"):
                target.append(item if item == "buckets" else None)
                continue
            try:
                n = int(item)
            except ValueError:
                raise UsageError(
                    f"--capacity: {item!r} is not a number, 'buckets' or 'kernel'"
                ) from None
            if not 0 <= n <= 65535:
                raise UsageError(f"--capacity: {n} is out of range (0..65535)")
            target.append(n)
    return CapacitySpec(tuple(default) or (None,), {k: tuple(v) for k, v in per_cache.items()})


def capacities_for(
    spec: CapacitySpec, cache: str, kernel_capacity: int, slot_size: int, current: int
) -> list[int]:
    """The sorted, distinct capacities to replay for one cache.

    ``kernel_capacity``: what the chosen kernel semantics give the cache; ``current``: what the
    traced kernel had (6.18: 32 for maple_node and vm_area_struct, else 0).
    """
    out: list[int] = []
    for item in spec.per_cache.get(cache, spec.default):
        if item is None:
            out.append(kernel_capacity)
        elif item == "buckets":
            out += [*BUCKET_CAPACITIES, current, autotune_capacity(slot_size)]
        else:
            out.append(int(item))
    return sorted(set(out))


def replay_capacities(
    plan: Plan, base: ModelParams, capacities: list[int], engine: str
) -> list[tuple[ModelParams, ReplayResult]]:
    """Replay ``plan`` at each capacity; the fast engine shares the plan across cores."""
    params = [dataclasses.replace(base, sheaf_capacity=c) for c in capacities]
    return list(zip(params, replay_all(plan, params, engine), strict=True))


def replay_all(plan: Plan, params: list[ModelParams], engine: str) -> list[ReplayResult]:
    """Replay ``plan`` with each parameter set; the fast engine shares the plan across cores."""
    if engine == "fast" and len(params) > 1:
        from sheaftune.model import fast

        return fast.run_many(plan, params)
    return [replay(plan, p, engine) for p in params]
