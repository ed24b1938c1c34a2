"""Scenario files (spec/scenario-format.md, version 1): load, validate, run on the sheaf model.

A scenario is an explicit sequence of allocator API calls. :func:`load_scenario` parses and
validates the YAML (every error is an :class:`~sheaftune.errors.InputError` naming the file, the
line and the key path or op index); :func:`run_scenario` replays it on a
:class:`~sheaftune.model.reference.SheafModel` and returns the
:class:`~sheaftune.results.SimulationResult`. Errors that depend on the run (freeing more objects
than are live, an offline CPU, a sheaf handle not outstanding) are detected while running and name
the op's line too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sheaftune.errors import InputError, UsageError
from sheaftune.model.reference import ModelError, Sheaf, SheafModel
from sheaftune.params import KERNELS, ModelParams
from sheaftune.results import SimulationResult

GFPS = {"kernel": True, "nowait": False, "atomic": False}  # name -> may block

#: op name -> argument kinds after [cpu, name]: "n" count >= 0, "node", "h" sheaf handle,
#: plus an optional trailing gfp for the ops in OPTIONAL_GFP.
CPU_OPS: dict[str, tuple[str, ...]] = {
    "alloc": ("n",),
    "alloc_node": ("node", "n"),
    "free": ("n",),
    "free_oldest": ("n",),
    "prefill": ("h", "n"),
    "alloc_from_sheaf": ("h", "n"),
    "refill": ("h", "n"),
    "return": ("h",),
    "alloc_bulk": ("n",),
    "free_bulk": ("n",),
    "kfree_rcu": ("n",),
}
OPTIONAL_GFP = {"alloc", "alloc_node", "prefill", "refill", "alloc_bulk"}
TOP_KEYS = {"scenario", "kernel", "cache", "cpus", "nodes", "ops"}
CACHE_KEYS = {"name", "object_size", "sheaf_capacity", "capacity", "objects_per_slab"}


@dataclass(frozen=True)
class ScenarioOp:
    """One op: its index in ``ops``, its line in the file, the CPU (-1 for global ops), the op
    name and its arguments (ints or a handle string), and whether its gfp may block."""

    index: int
    line: int
    cpu: int
    name: str
    args: tuple[Any, ...]
    blocking: bool = True


@dataclass(frozen=True)
class Scenario:
    """A validated scenario file."""

    path: str
    kernel: str
    cache_name: str
    object_size: int
    sheaf_capacity: int
    capacity: int | None
    objects_per_slab: int | None
    cpus: int
    nodes: int
    ops: tuple[ScenarioOp, ...] = field(default_factory=tuple)

    def params(self) -> ModelParams:
        """The model parameters: 7.3 autotunes with ``sheaf_capacity`` as a floor, 6.18 takes
        it as is; ``capacity`` forces the effective value (scenario-format.md)."""
        return ModelParams.for_cache(
            kernel=self.kernel,
            object_size=self.object_size,
            requested_capacity=self.sheaf_capacity,
            capacity=self.capacity,
            objects_per_slab=self.objects_per_slab,
            cpus=self.cpus,
            nodes=self.nodes,
        )


class _Ctx:
    def __init__(self, path: str):
        self.path = path

    def err(self, msg: str, line: int | None = None, where: str | None = None) -> InputError:
        loc = ", ".join(x for x in (f"line {line}" if line else None, where) if x)
        return InputError(msg, path=self.path, where=loc or None)


#: Largest object count one op may name: a scenario pins rules with small numbers; a huge one
#: would make the model allocate that many objects.
MAX_COUNT = 10_000_000
#: Upper bounds of the scalar keys (a sheaf of 65535 pointers is 512 KiB; more is no sheaf).
MAX_VALUE = {
    "object_size": 1 << 22,
    "sheaf_capacity": 65535,
    "capacity": 65535,
    "objects_per_slab": 65536,
    "cpus": 4096,
    "nodes": 1024,
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _mapping_lines(node: yaml.Node | None) -> dict[str, tuple[int, yaml.Node]]:
    out: dict[str, tuple[int, yaml.Node]] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            out[str(k.value)] = (k.start_mark.line + 1, v)
    return out


def parse_scenario(text: str, path: str = "<scenario>") -> Scenario:
    """Parse and validate scenario text; raises InputError naming ``path`` and the line."""
    ctx = _Ctx(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ctx.err(f"not valid YAML: {problem}", line) from None
    if not isinstance(data, dict):
        raise ctx.err("a scenario is a YAML mapping with 'scenario: 1' and 'ops'", 1)
    lines = _mapping_lines(root)

    def line_of(key: str) -> int | None:
        return lines[key][0] if key in lines else None

    for k in data:
        if str(k) not in TOP_KEYS:
            raise ctx.err(
                f"unknown key {k!r} (expected one of {', '.join(sorted(TOP_KEYS))})",
                line_of(str(k)),
                str(k),
            )
    if "scenario" not in data:
        raise ctx.err("missing 'scenario: 1' (the format version)", 1, "scenario")
    if data["scenario"] != 1 or isinstance(data["scenario"], bool):
        raise ctx.err(
            f"unsupported scenario format version {data['scenario']!r} "
            "(this sheaftune reads version 1)",
            line_of("scenario"),
            "scenario",
        )
    kernel_raw = data.get("kernel", "7.3")
    kernel = str(kernel_raw)
    if kernel not in KERNELS:
        raise ctx.err(
            f'kernel must be "7.3" or "6.18", not {kernel_raw!r}', line_of("kernel"), "kernel"
        )

    def get_int(
        d: dict[str, Any], key: str, default: int | None, lo: int, keypath: str, line: int | None
    ) -> int | None:
        if key not in d or d[key] is None:
            return default
        v = d[key]
        hi = MAX_VALUE.get(key, MAX_COUNT)
        if not _is_int(v) or not lo <= v <= hi:
            raise ctx.err(f"{key} must be an integer >= {lo} and <= {hi}, not {v!r}", line, keypath)
        return int(v)

    cache = data.get("cache") or {}
    if not isinstance(cache, dict):
        raise ctx.err("cache must be a mapping", line_of("cache"), "cache")
    clines = _mapping_lines(lines["cache"][1]) if "cache" in lines else {}
    for k in cache:
        if str(k) not in CACHE_KEYS:
            raise ctx.err(
                f"unknown key {k!r} (expected one of {', '.join(sorted(CACHE_KEYS))})",
                clines.get(str(k), (line_of("cache"),))[0],
                f"cache.{k}",
            )

    def cl(k: str) -> int | None:
        return clines[k][0] if k in clines else line_of("cache")

    name = cache.get("name", "test_cache")
    if not isinstance(name, str):
        name = str(name)
    object_size = get_int(cache, "object_size", 256, 1, "cache.object_size", cl("object_size"))
    sheaf_capacity = get_int(
        cache, "sheaf_capacity", 0, 0, "cache.sheaf_capacity", cl("sheaf_capacity")
    )
    capacity = get_int(cache, "capacity", None, 0, "cache.capacity", cl("capacity"))
    ops_per_slab = get_int(
        cache, "objects_per_slab", None, 1, "cache.objects_per_slab", cl("objects_per_slab")
    )
    cpus = get_int(data, "cpus", 1, 1, "cpus", line_of("cpus"))
    nodes = get_int(data, "nodes", 1, 1, "nodes", line_of("nodes"))
    assert object_size is not None and sheaf_capacity is not None
    assert cpus is not None and nodes is not None

    raw_ops = data.get("ops") or []
    if not isinstance(raw_ops, list):
        raise ctx.err("ops must be a list of ops", line_of("ops"), "ops")
    op_nodes: list[yaml.Node] = []
    if "ops" in lines and isinstance(lines["ops"][1], yaml.SequenceNode):
        op_nodes = list(lines["ops"][1].value)
    ops = []
    for i, raw in enumerate(raw_ops):
        line = op_nodes[i].start_mark.line + 1 if i < len(op_nodes) else line_of("ops")
        ops.append(_parse_op(ctx, i, line, raw, cpus, nodes))
    return Scenario(
        path=path,
        kernel=kernel,
        cache_name=name,
        object_size=object_size,
        sheaf_capacity=sheaf_capacity,
        capacity=capacity,
        objects_per_slab=ops_per_slab,
        cpus=cpus,
        nodes=nodes,
        ops=tuple(ops),
    )


def _parse_op(ctx: _Ctx, i: int, line: int | None, raw: Any, cpus: int, nodes: int) -> ScenarioOp:
    where = f"ops[{i}]"
    if not isinstance(raw, list) or not raw:
        raise ctx.err(f"an op is a non-empty list like [0, alloc, 5], not {raw!r}", line, where)
    head = raw[0]
    if head == "rcu" or head == "shrink":
        if len(raw) != 1:
            raise ctx.err(f"[{head}] takes no arguments", line, where)
        return ScenarioOp(i, line or 0, -1, str(head), ())
    if head == "offline":
        if len(raw) != 2 or not _is_int(raw[1]):
            raise ctx.err("expected [offline, CPU]", line, where)
        if not 0 <= raw[1] < cpus:
            raise ctx.err(f"CPU {raw[1]} out of range (cpus: {cpus})", line, where)
        return ScenarioOp(i, line or 0, -1, "offline", (int(raw[1]),))
    if not _is_int(head):
        raise ctx.err(
            f"unknown op {head!r} (an op starts with a CPU number, or is [rcu], "
            "[shrink] or [offline, CPU])",
            line,
            where,
        )
    cpu = int(head)
    if not 0 <= cpu < cpus:
        raise ctx.err(f"CPU {cpu} out of range (cpus: {cpus})", line, where)
    if len(raw) < 2 or not isinstance(raw[1], str) or raw[1] not in CPU_OPS:
        op = raw[1] if len(raw) > 1 else None
        raise ctx.err(f"unknown op {op!r} (known: {', '.join(CPU_OPS)})", line, where)
    name = raw[1]
    kinds = CPU_OPS[name]
    args = raw[2:]
    blocking = True
    if name in OPTIONAL_GFP and len(args) == len(kinds) + 1:
        gfp = args[-1]
        if not isinstance(gfp, str) or gfp not in GFPS:
            raise ctx.err(
                f"gfp must be one of {', '.join(GFPS)}, not {gfp!r}",
                line,
                f"{where}[{len(raw) - 1}]",
            )
        blocking = GFPS[gfp]
        args = args[:-1]
    if len(args) != len(kinds):
        shape = ", ".join(
            ["CPU", name] + [{"n": "COUNT", "node": "NODE", "h": "SHEAF"}[k] for k in kinds]
        )
        raise ctx.err(f"expected [{shape}{', GFP' if name in OPTIONAL_GFP else ''}]", line, where)
    out: list[Any] = []
    for j, (kind, v) in enumerate(zip(kinds, args, strict=True)):
        w = f"{where}[{j + 2}]"
        if kind == "h":
            if not isinstance(v, str) or not v:
                raise ctx.err(f"a sheaf handle is a name like s1, not {v!r}", line, w)
            out.append(v)
        elif kind == "node":
            if not _is_int(v) or not 0 <= v < nodes:
                raise ctx.err(f"node {v!r} out of range (nodes: {nodes})", line, w)
            out.append(int(v))
        else:
            if not _is_int(v) or not 0 <= v <= MAX_COUNT:
                raise ctx.err(f"count must be an integer in 0..{MAX_COUNT}, not {v!r}", line, w)
            out.append(int(v))
    return ScenarioOp(i, line or 0, cpu, name, tuple(out), blocking)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (InputError, exit 3, on any problem)."""
    p = str(path)
    try:
        text = Path(p).read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}", path=p) from None
    except UnicodeDecodeError:
        raise InputError("not a text (UTF-8) file", path=p) from None
    return parse_scenario(text, p)


class ScenarioRun:
    """Replays a scenario op by op; keeps the live objects (allocation order) and handles."""

    def __init__(self, scn: Scenario, params: ModelParams | None = None):
        self.scn = scn
        self.ctx = _Ctx(scn.path)
        self.model = SheafModel(params or scn.params())
        #: live objects, oldest first
        self.live: list[int] = []
        self.sheaves: dict[str, Sheaf] = {}

    def _take_newest(self, op: ScenarioOp, n: int) -> list[int]:
        if n > len(self.live):
            raise self._err(op, f"{op.name} of {n} objects but only {len(self.live)} are live")
        if n == 0:
            return []
        objs = self.live[-n:][::-1]
        del self.live[-n:]
        return objs

    def _err(self, op: ScenarioOp, msg: str) -> InputError:
        return self.ctx.err(msg, op.line, f"ops[{op.index}]")

    def _sheaf(self, op: ScenarioOp, h: str) -> Sheaf:
        if h not in self.sheaves:
            raise self._err(
                op, f"sheaf {h!r} is not outstanding (used before its prefill or after its return)"
            )
        return self.sheaves[h]

    def step(self, op: ScenarioOp) -> None:
        m = self.model
        name, a, cpu = op.name, op.args, op.cpu
        if name == "rcu":
            m.rcu_grace_period()
            return
        if name == "shrink":
            m.kmem_cache_shrink()
            return
        if name == "offline":
            c = a[0]
            if not m.online[c]:
                raise self._err(op, f"CPU {c} is already offline")
            if sum(m.online) == 1:
                raise self._err(op, f"cannot take CPU {c} offline: it is the last online CPU")
            m.cpu_offline(c)
            return
        if not m.online[cpu]:
            raise self._err(op, f"CPU {cpu} is offline")
        if name == "alloc":
            for _ in range(a[0]):
                self.live.append(m.kmem_cache_alloc(cpu, op.blocking))
        elif name == "alloc_node":
            for _ in range(a[1]):
                self.live.append(m.kmem_cache_alloc_node(cpu, a[0], op.blocking))
        elif name == "free":
            for obj in self._take_newest(op, a[0]):
                m.kmem_cache_free(cpu, obj)
        elif name == "free_oldest":
            n = a[0]
            if n > len(self.live):
                raise self._err(
                    op, f"free_oldest of {n} objects but only {len(self.live)} are live"
                )
            objs = self.live[:n]
            del self.live[:n]
            for obj in objs:
                m.kmem_cache_free(cpu, obj)
        elif name == "free_bulk":
            m.kmem_cache_free_bulk(cpu, self._take_newest(op, a[0]))
        elif name == "kfree_rcu":
            for obj in self._take_newest(op, a[0]):
                m.kfree_rcu(cpu, obj)
        elif name == "alloc_bulk":
            self.live.extend(m.kmem_cache_alloc_bulk(cpu, a[0], op.blocking))
        elif name == "prefill":
            h, size = a
            if h in self.sheaves:
                raise self._err(op, f"sheaf {h!r} is prefilled again while outstanding")
            try:
                new = m.kmem_cache_prefill_sheaf(cpu, size, op.blocking)
            except ModelError as e:
                raise self._err(op, str(e)) from None
            if new is not None:
                self.sheaves[h] = new
        elif name == "alloc_from_sheaf":
            sh = self._sheaf(op, a[0])
            for _ in range(a[1]):
                got = m.kmem_cache_alloc_from_sheaf(cpu, sh)
                if got is not None:
                    self.live.append(got)
        elif name == "refill":
            sh = self._sheaf(op, a[0])
            self.sheaves[a[0]] = m.kmem_cache_refill_sheaf(cpu, sh, a[1], op.blocking)
        elif name == "return":
            sh = self._sheaf(op, a[0])
            del self.sheaves[a[0]]
            m.kmem_cache_return_sheaf(cpu, sh)
        else:  # pragma: no cover - parse_scenario admits only the ops above
            raise self._err(op, f"unknown op {name!r}")

    def run(self) -> SimulationResult:
        for op in self.scn.ops:
            self.step(op)
        return self.result()

    def result(self) -> SimulationResult:
        m = self.model
        snap = m.snapshot()
        return SimulationResult(
            kernel=m.p.kernel,
            capacity=m.cap,
            counters=m.counters(),
            cpus=snap["cpus"],
            barns=snap["barns"],
            prefilled={h: sh.size for h, sh in sorted(self.sheaves.items())},
        )


def run_scenario(scn: Scenario, params: ModelParams | None = None) -> SimulationResult:
    """Replay ``scn`` on the reference model; ``params`` overrides the scenario's own."""
    return ScenarioRun(scn, params).run()


def simulate_file(path: str | Path, engine: str = "reference") -> SimulationResult:
    """Load and run a scenario file: the library call behind ``sheaftune simulate``."""
    if engine != "reference":
        raise UsageError(f"unknown engine {engine!r} (available: reference)")
    return run_scenario(load_scenario(path))
