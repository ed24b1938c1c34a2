"""The shared front half of every command: inputs -> EventTables -> normalised events.

Commands call these instead of repeating reader selection, the bundled example, cache filters
and the "nothing to analyse" checks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from sheaftune.analysis.characterize import Analysis, characterize
from sheaftune.analysis.sweep import CapacitySpec
from sheaftune.analysis.tracereplay import ReplayPolicy, cache_rows, replay_cache
from sheaftune.errors import NothingToAnalyse
from sheaftune.events import EventTable
from sheaftune.normalize import Normalized, normalize
from sheaftune.readers import ReadOptions, read_trace

#: The real trace shipped with the package (`--example`): a Linux 6.18 capture of VMA and
#: maple-tree churn on 2 CPUs (7,516 events), as trace-cmd's zstd-compressed trace.dat v7.
EXAMPLE_TRACE = "vma-small.dat"


def example_path() -> str:
    return str(Path(str(resources.files("sheaftune") / "data" / EXAMPLE_TRACE)))


def load(
    path: str, input_format: str | None = None, options: ReadOptions | None = None
) -> EventTable:
    """Read one trace; a trace without a single kmem event is 'nothing to analyse'."""
    table = read_trace(path, input_format, options)
    if len(table) == 0:
        raise NothingToAnalyse(f"{table.meta.source}: the trace holds no kmem events")
    return table


@dataclass(frozen=True)
class ModelOptions:
    """How ``analyze`` replays each cache through the sheaf model."""

    kernel: str = "7.3"
    capacities: CapacitySpec = field(default_factory=CapacitySpec)
    engine: str = "fast"
    policy: ReplayPolicy = field(default_factory=ReplayPolicy)
    cpus: int | None = None
    nodes: int = 1


def analyze_table(
    table: EventTable, caches: list[str] | None = None, model: ModelOptions | None = None
) -> Analysis:
    """Normalise and characterise one trace, optionally only the named caches; with ``model``,
    replay every reported cache through the sheaf model too."""
    norm: Normalized = normalize(table)
    result = characterize(norm, caches or None)
    if model is not None:
        rows = cache_rows(norm)
        for name, st in result.caches.items():
            if st["alloc"] == 0:
                continue
            st["replay"] = replay_cache(
                norm,
                name,
                model.kernel,
                model.capacities,
                model.engine,
                model.policy,
                model.cpus,
                model.nodes,
                rows[name],
            )
    if caches and not result.caches:
        raise NothingToAnalyse(
            f"{table.meta.source}: no event of cache {', '.join(caches)} "
            f"(the trace has {len(norm.table.caches)} caches; see `sheaftune analyze` without "
            "--cache)"
        )
    if model is not None:
        result = dataclasses.replace(
            result,
            model={
                "kernel": model.kernel,
                "engine": model.engine,
                "policy": dataclasses.asdict(model.policy),
                "note": f"replayed with Linux {model.kernel} sheaf semantics",
            },
        )
    return result
