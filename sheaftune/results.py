"""Result records: frozen dataclasses with a versioned, key-sorted dict form.

Every record a command produces (analysis, simulation, sweep, comparison, recommendation)
derives from :class:`Record`. ``to_dict()`` gives ``{"schema": "sheaftune/<kind>", "version": N,
...}``; renderers (``sheaftune.report``) serialise that dict and compute nothing. When a record's
layout changes, bump its ``VERSION`` and add a line to its history comment and to
``docs/schemas.md``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np


def plain(value: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and nested records into JSON-able plain values."""
    if isinstance(value, Record):
        return value.body()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


@dataclasses.dataclass(frozen=True)
class Record:
    """Base of the result records; subclasses set SCHEMA and VERSION."""

    SCHEMA: ClassVar[str] = "sheaftune/record"
    VERSION: ClassVar[int] = 1

    def body(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_dict(self) -> dict[str, Any]:
        d = {"schema": self.SCHEMA, "version": self.VERSION}
        d.update(self.body())
        return d


@dataclasses.dataclass(frozen=True)
class SimulationResult(Record):
    """What ``sheaftune simulate`` reports for a scenario (spec/scenario-format.md "Result").

    ``counters``: every stat item of the kernel version under its sysfs name, summed over CPUs,
    zeros included. ``cpus``: per CPU ``{"cpu", "node", "main", "spare", "rcu_free"}`` object
    counts (``None`` where there is no sheaf). ``barns``: per node ``{"node", "full",
    "empty"}`` sheaf counts. ``prefilled``: objects left in each outstanding prefilled sheaf.
    """

    # history: 1 (2026-11) kernel, capacity, counters, cpus, barns, prefilled
    SCHEMA: ClassVar[str] = "sheaftune/simulation"
    VERSION: ClassVar[int] = 1

    kernel: str
    capacity: int
    counters: dict[str, int]
    cpus: list[dict[str, Any]]
    barns: list[dict[str, int]]
    prefilled: dict[str, int]
