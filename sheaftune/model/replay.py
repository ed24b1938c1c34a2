"""Replay a :class:`~sheaftune.model.plan.Plan` through a model engine.

``replay(plan, params, engine)`` is the one entry point: ``engine="reference"`` interprets the
plan with the readable :class:`~sheaftune.model.reference.SheafModel`, one method call per
command; ``engine="fast"`` runs the compiled twin (``sheaftune.model.fast``), which must give
the same :class:`ReplayResult` field for field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sheaftune.model.plan import Cmd, Plan
from sheaftune.params import ModelParams

ENGINES = ("reference", "fast")


@dataclass
class ReplayResult:
    """What one replay produced: the kernel's counters, what the kernel does not count, the
    occupancy over time and the final state, and the commands that could not run."""

    counters: dict[str, int]
    extras: dict[str, int]
    occupancy: dict[str, Any]
    state: dict[str, Any]
    skipped: dict[str, int] = field(default_factory=dict)


def replay(plan: Plan, params: ModelParams, engine: str = "reference") -> ReplayResult:
    if engine == "reference":
        return run_reference(plan, params)
    if engine == "fast":
        from sheaftune.model import fast

        return fast.run(plan, params)
    raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")


def run_reference(plan: Plan, params: ModelParams) -> ReplayResult:
    """Interpret the plan with the reference model, one kernel API call per command."""
    from sheaftune.model.reference import SheafModel

    m = SheafModel(params)
    objs = np.full(plan.n_objects, -1, dtype=np.int64)
    sheaves: list[Any] = [None] * plan.n_sheaves
    skipped: dict[str, int] = {}

    def skip(what: str) -> None:
        skipped[what] = skipped.get(what, 0) + 1

    ts_l = plan.ts_ns.tolist()
    cmd_l = plan.cmd.tolist()
    cpu_l = plan.cpu.tolist()
    a_l = plan.a.tolist()
    b_l = plan.b.tolist()
    c_l = plan.c.tolist()
    aux = plan.aux
    for i in range(len(cmd_l)):
        m.advance(ts_l[i])
        cmd, cpu, a, b, c = cmd_l[i], cpu_l[i], a_l[i], b_l[i], c_l[i]
        if cmd == Cmd.ALLOC:
            if c >= 0:
                objs[a] = m.kmem_cache_alloc_node(cpu, c, bool(b))
            else:
                objs[a] = m.kmem_cache_alloc(cpu, bool(b))
        elif cmd == Cmd.FREE:
            if objs[a] < 0:
                skip("free of an object that was never allocated")
                continue
            m.kmem_cache_free(cpu, int(objs[a]))
            objs[a] = -1
        elif cmd == Cmd.KFREE_RCU:
            if objs[a] < 0:
                skip("kfree_rcu of an object that was never allocated")
                continue
            m.kfree_rcu(cpu, int(objs[a]))
            objs[a] = -1
        elif cmd == Cmd.RCU_GP:
            m.rcu_grace_period()
        elif cmd == Cmd.PREFILL:
            sheaves[a] = m.kmem_cache_prefill_sheaf(cpu, b, bool(c))
        elif cmd == Cmd.ALLOC_FROM_SHEAF:
            sh = sheaves[b]
            if sh is None:
                skip("pop from a sheaf that was not prefilled")
                continue
            got = m.kmem_cache_alloc_from_sheaf(cpu, sh)
            if got is None:
                skip("pop from an empty prefilled sheaf")
            else:
                objs[a] = got
        elif cmd == Cmd.RETURN_SHEAF:
            sh = sheaves[a]
            if sh is not None:
                m.kmem_cache_return_sheaf(cpu, sh)
                sheaves[a] = None
        elif cmd == Cmd.REFILL_SHEAF:
            sh = sheaves[a]
            if sh is None:
                skip("refill of a sheaf that was not prefilled")
                continue
            sheaves[a] = m.kmem_cache_refill_sheaf(cpu, sh, b, bool(c))
        elif cmd == Cmd.ALLOC_BULK:
            slots = aux[a : a + b]
            got_l = m.kmem_cache_alloc_bulk(cpu, b)
            objs[slots[: len(got_l)]] = got_l
        elif cmd == Cmd.FREE_BULK:
            slots = aux[a : a + b]
            live = objs[slots]
            if np.any(live < 0):
                skipped["bulk-freed objects never allocated"] = skipped.get(
                    "bulk-freed objects never allocated", 0
                ) + int(np.count_nonzero(live < 0))
            m.kmem_cache_free_bulk(cpu, [int(x) for x in live if x >= 0])
            objs[slots] = -1
        elif cmd == Cmd.SHRINK:
            m.kmem_cache_shrink()
        else:
            raise ValueError(f"unknown plan command {cmd}")
    if len(ts_l):
        m.advance(ts_l[-1])
    return ReplayResult(m.counters(), m.extras(), m.occupancy(), m.snapshot(), skipped)
