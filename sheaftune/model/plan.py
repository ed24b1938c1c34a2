"""The replay plan: a flat command stream both model engines execute.

A trace (or a workload, or a prefill-versus-bulk strategy) is compiled once into a
:class:`Plan`: parallel numpy columns, one row per allocator API call on one CPU, in time order.
The reference model (``replay.run_reference``) and the fast engine interpret the same plan, so
holding them equal is a matter of comparing their counters on the same plan.

Objects and prefilled sheaves are named by *slots*: dense indices the plan assigns, which the
engine maps to its own object handles and sheaf structs. A command whose object slot was never
filled (an allocation from an empty prefilled sheaf returned NULL) is skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


class Cmd(IntEnum):
    """Plan commands; ``a``, ``b``, ``c`` are the operands documented per command."""

    ALLOC = 0  # a: object slot, b: 1 if the gfp may block, c: node (-1: any)
    FREE = 1  # a: object slot (kmem_cache_free / kfree)
    KFREE_RCU = 2  # a: object slot
    RCU_GP = 3  # a grace period ends (no operands)
    PREFILL = 4  # a: sheaf slot, b: size, c: 1 if the gfp may block
    ALLOC_FROM_SHEAF = 5  # a: object slot, b: sheaf slot
    RETURN_SHEAF = 6  # a: sheaf slot
    ALLOC_BULK = 7  # a: offset into aux, b: count (aux[a:a+b] are the object slots to fill)
    FREE_BULK = 8  # a: offset into aux, b: count (aux[a:a+b] are the object slots, index 0 first)
    REFILL_SHEAF = 9  # a: sheaf slot, b: size, c: 1 if the gfp may block
    SHRINK = 10  # kmem_cache_shrink (no operands)


@dataclass
class Plan:
    """Columns of equal length (``ts_ns``, ``cmd``, ``cpu``, ``a``, ``b``, ``c``) plus ``aux``.

    ``n_objects`` and ``n_sheaves`` size the slot tables. ``assumptions`` counts what the plan
    had to assume (frees of objects allocated before the trace, unseen frees turned into
    kfree_rcu, sheaf pops grouped into prefill operations...), for the report.
    """

    ts_ns: np.ndarray
    cmd: np.ndarray
    cpu: np.ndarray
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    aux: np.ndarray
    n_objects: int
    n_sheaves: int
    assumptions: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.cmd)

    def counts(self) -> dict[str, int]:
        """Commands by name (for reports and tests)."""
        hist = np.bincount(self.cmd, minlength=len(Cmd))
        return {c.name.lower(): int(hist[c]) for c in Cmd if hist[c]}


class PlanBuilder:
    """Accumulates commands as column chunks; ``build`` sorts them by (time, sequence)."""

    def __init__(self) -> None:
        self._parts: list[tuple[np.ndarray, ...]] = []
        self._aux: list[np.ndarray] = []
        self._aux_len = 0
        self.n_objects = 0
        self.n_sheaves = 0
        self.assumptions: dict[str, int] = {}

    def new_objects(self, n: int) -> np.ndarray:
        first = self.n_objects
        self.n_objects += n
        return np.arange(first, first + n, dtype=np.int64)

    def new_sheaves(self, n: int) -> np.ndarray:
        first = self.n_sheaves
        self.n_sheaves += n
        return np.arange(first, first + n, dtype=np.int64)

    def add_aux(self, slots: np.ndarray) -> int:
        off = self._aux_len
        self._aux.append(np.asarray(slots, dtype=np.int64))
        self._aux_len += len(slots)
        return off

    def add(
        self,
        ts: np.ndarray,
        seq: np.ndarray,
        cmd: int | np.ndarray,
        cpu: np.ndarray,
        a: np.ndarray | int = 0,
        b: np.ndarray | int = 0,
        c: np.ndarray | int = 0,
    ) -> None:
        """Add commands at times ``ts``; ``seq`` orders commands of equal time (lower first).

        ``seq`` is usually ``2 * event index`` (+1 for a command that must follow its event,
        -1 for one that must precede it), which keeps the trace's own order for ties.
        """
        n = len(ts)
        if n == 0:
            return

        def col(x: np.ndarray | int, dtype: type) -> np.ndarray:
            return np.broadcast_to(np.asarray(x, dtype=dtype), (n,)).copy()

        self._parts.append(
            (
                col(ts, np.int64),
                col(seq, np.int64),
                col(cmd, np.uint8),
                col(cpu, np.uint16),
                col(a, np.int64),
                col(b, np.int64),
                col(c, np.int64),
            )
        )

    def assume(self, what: str, n: int) -> None:
        if n:
            self.assumptions[what] = self.assumptions.get(what, 0) + int(n)

    def build(self) -> Plan:
        if self._parts:
            cols = [np.concatenate([p[i] for p in self._parts]) for i in range(7)]
        else:
            cols = [
                np.empty(0, dtype=d)
                for d in (np.int64, np.int64, np.uint8, np.uint16, np.int64, np.int64, np.int64)
            ]
        ts, seq, cmd, cpu, a, b, c = cols
        order = np.lexsort((seq, ts))
        aux = np.concatenate(self._aux) if self._aux else np.empty(0, dtype=np.int64)
        return Plan(
            ts[order],
            cmd[order],
            cpu[order],
            a[order],
            b[order],
            c[order],
            aux,
            self.n_objects,
            self.n_sheaves,
            dict(self.assumptions),
        )
