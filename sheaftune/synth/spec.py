"""WorkloadSpec: the validated form of a workload file (``workloads/*.yaml``).

A workload describes allocator traffic that nobody traced: the machine (CPUs, NUMA nodes), the
caches (object size, the explicit ``sheaf_capacity``) and *streams*. A stream is one kind of
allocation user: which cache, on which CPUs, how many operations per second per CPU, at which
call site and with which gfp flags, how long its objects live (a ``scipy.stats`` distribution),
and how they die (visibly with ``kmem_cache_free``/``kfree``; invisibly through ``kfree_rcu`` or
a bulk free; or not within the trace), on which CPU (same, another, another node). A stream's
operation is a single allocation, a burst (a batch of allocations freed together), a prefill
operation (``kmem_cache_prefill_sheaf`` with an upper bound, then the objects actually used
popped with ``GFP_NOWAIT``), a bulk allocation (``kmem_cache_alloc_bulk``, invisible) or a
``kfree(NULL)`` call (traced, frees nothing).

The schema is documented in ``docs/workloads.md``; this module is its one implementation.
Every problem is an :class:`~sheaftune.errors.InputError` naming the file and the key path
(``streams[2].free.kfree_rcu``), so a user can find it. Numbers are bounded so a typo cannot
ask for a petabyte of events.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sheaftune import gfp as gfpmod
from sheaftune.errors import InputError

#: Version of the workload schema (the ``workload:`` key). History:
#: 1 - first schema.
SCHEMA_VERSION = 1

MAX_CPUS = 8192
MAX_NODES = 1024
MAX_EVENTS = 2_000_000_000
MAX_RATE = 1e9  # operations per second per CPU: one per ns
MAX_OBJECT_SIZE = 1 << 22
MAX_KMALLOC_SIZE = 8192  # larger kmallocs go to the page allocator, no slab cache
MAX_BATCH = 65536  # burst, bulk and prefill sizes
MAX_LIFETIME_US = 3.6e9  # an hour
MAX_SPACING_NS = 10_000_000

_SITE_RE = re.compile(
    r"^(?P<sym>[A-Za-z_.$][\w.$]*)(?:\+0x(?P<off>[0-9a-fA-F]+)(?:/0x(?P<size>[0-9a-fA-F]+))?)?$"
)
_KMALLOC_RE = re.compile(r"^(?:dma-kmalloc|kmalloc-cg|kmalloc-rcl|kmalloc)-(\d+)([km]?)$")
_CACHE_NAME_RE = re.compile(r"^[\w.:-]{1,64}$")


# --- the schema as frozen dataclasses ------------------------------------------------------


@dataclass(frozen=True)
class CallSite:
    """``sym+0xoff``; ``size`` is the function size ftrace text prints after a slash."""

    symbol: str
    offset: int
    size: int

    @property
    def name(self) -> str:
        """The form the EventTable's site table holds (as trace-cmd and trace.dat show it)."""
        return f"{self.symbol}+{self.offset:#x}"

    @property
    def ftrace(self) -> str:
        """The ``%pS`` form of ftrace text: ``sym+0xoff/0xsize``."""
        return f"{self.symbol}+{self.offset:#x}/{self.size:#x}"


@dataclass(frozen=True)
class SiteMix:
    """One call site, or several chosen per operation with the given weights."""

    sites: tuple[CallSite, ...]
    weights: tuple[float, ...]

    def probabilities(self) -> np.ndarray:
        w = np.asarray(self.weights, dtype=float)
        return w / w.sum()


@dataclass(frozen=True)
class Lifetime:
    """Object lifetime in microseconds: a constant, or a ``scipy.stats`` continuous distribution."""

    dist: str | None  # None: the constant ``value``
    params: Mapping[str, float] = field(default_factory=dict)
    value: float = 0.0

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` lifetimes in µs (float64, never negative)."""
        if self.dist is None:
            return np.full(n, self.value)
        out = _fast_rvs(self.dist, self.params, rng, n)
        if out is None:
            import scipy.stats

            out = getattr(scipy.stats, self.dist).rvs(size=n, random_state=rng, **self.params)
            out = np.asarray(out, dtype=float)
        return np.clip(out, 0.0, MAX_LIFETIME_US, out=out)

    def mean(self) -> float:
        if self.dist is None:
            return self.value
        import scipy.stats

        m = float(getattr(scipy.stats, self.dist).mean(**self.params))
        return min(m, MAX_LIFETIME_US) if math.isfinite(m) else MAX_LIFETIME_US


def _fast_rvs(
    dist: str, params: Mapping[str, float], rng: np.random.Generator, n: int
) -> np.ndarray | None:
    """``scipy.stats.<dist>.rvs(size=n, random_state=rng, **params)`` for the common lifetime
    distributions, the same draws and the same arithmetic (so the same bits), in place: no
    scipy call overhead and no temporary arrays. None for any other distribution."""
    p = dict(params)
    loc = p.pop("loc", 0.0)
    scale = p.pop("scale", 1.0)
    if not scale > 0:
        return None
    if dist == "lognorm" and set(p) == {"s"}:
        out = rng.standard_normal(n)  # scipy: exp(s * standard_normal(size))
        np.multiply(p["s"], out, out=out)
        np.exp(out, out=out)
    elif dist == "expon" and not p:
        out = rng.standard_exponential(n)
    elif dist == "gamma" and set(p) == {"a"}:
        out = rng.standard_gamma(p["a"], n)
    else:
        return None
    np.multiply(out, scale, out=out)  # scipy: vals * scale + loc
    np.add(out, loc, out=out)
    return out


@dataclass(frozen=True)
class Count:
    """A non-negative integer per operation: constant, weighted choice, or scipy discrete dist.

    ``lo``/``hi`` clip the samples (a poisson ``used`` can never exceed the upper bound).
    """

    value: int | None = None
    choices: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    dist: str | None = None
    params: Mapping[str, float] = field(default_factory=dict)
    lo: int = 0
    hi: int = MAX_BATCH

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.value is not None:
            out = np.full(n, self.value, dtype=np.int64)
        elif self.choices:
            from sheaftune.synth._replay import choose

            # rng.choice(len(choices), size=n, p=w / w.sum()), its draws and its cdf, in one
            # compiled pass written over the uniform draws
            w = np.asarray(self.weights, dtype=float)
            cdf = (w / w.sum()).cumsum()
            cdf /= cdf[-1]
            u = rng.random(n)
            out = u.view(np.int64)
            choose(u, cdf, np.asarray(self.choices, dtype=np.int64), out)
        else:
            import scipy.stats

            assert self.dist is not None
            out = np.asarray(
                getattr(scipy.stats, self.dist).rvs(size=n, random_state=rng, **self.params),
                dtype=np.int64,
            )
        return np.clip(out, self.lo, self.hi, out=out)

    def mean(self) -> float:
        if self.value is not None:
            return float(min(max(self.value, self.lo), self.hi))
        if self.choices:
            c = np.clip(np.asarray(self.choices, dtype=float), self.lo, self.hi)
            w = np.asarray(self.weights, dtype=float)
            return float((c * w).sum() / w.sum())
        import scipy.stats

        assert self.dist is not None
        d = getattr(scipy.stats, self.dist)(**self.params)
        # E[clip(X, lo, hi)] over the support (the tail beyond the 1e-12 quantiles is noise)
        first = int(max(d.support()[0], d.ppf(1e-12), -(1 << 20)))
        top = int(min(self.hi, d.ppf(1.0 - 1e-12)))
        if top < first:
            return float(min(max(first, self.lo), self.hi))
        k = np.arange(first, top + 1)
        m = float((np.clip(k, self.lo, self.hi) * d.pmf(k)).sum())
        if top == self.hi:
            m += float(d.sf(top)) * self.hi
        return m

    def maximum(self) -> int:
        if self.value is not None:
            return min(max(self.value, self.lo), self.hi)
        if self.choices:
            return min(max(self.choices), self.hi)
        return self.hi


@dataclass(frozen=True)
class CacheSpec:
    name: str
    object_size: int
    sheaf_capacity: int
    kmalloc: bool = False
    accounted: bool = False


@dataclass(frozen=True)
class FreeSpec:
    """How a stream's objects die. Shares are of operations (a burst dies as one)."""

    call_site: SiteMix | None = None
    event: str = "kmem_cache_free"  # or "kfree"
    kfree_rcu: float = 0.0  # invisible: into the rcu_free sheaf / kfree_rcu batch
    bulk: float = 0.0  # invisible: kmem_cache_free_bulk / kfree_bulk
    never: float = 0.0  # still live when the trace ends
    remote_cpu: float = 0.0  # freed on a CPU other than the allocating one
    remote_node: float = 0.0  # ... on a CPU of another NUMA node (part of remote_cpu)
    remote_choice: str = "random"  # or "next": CPU c frees on c+1 (producer -> consumer)
    rcu_delay_us: float = 1000.0  # grace period before a kfree_rcu object can be reused
    spacing_ns: int = 100  # between the frees of one batch

    @property
    def visible(self) -> float:
        return max(0.0, 1.0 - self.kfree_rcu - self.bulk - self.never)


@dataclass(frozen=True)
class StreamSpec:
    name: str
    cache: str  # "" for kind kfree_null
    kind: str  # "alloc", "prefill", "bulk", "kfree_null"
    cpus: str | tuple[int, ...]  # "all", "even", "odd" or explicit CPUs
    rate: float  # operations per second per CPU
    call_site: SiteMix
    gfp: int
    lifetime_us: Lifetime
    free: FreeSpec
    bytes_req: Count | None = None  # kmalloc caches: requested size (default object_size)
    comm: str | None = None
    burst: Count | None = None  # kind alloc: objects per operation (default 1)
    upper_bound: Count | None = None  # kind prefill
    used: Count | None = None  # kind prefill
    bulk_size: Count | None = None  # kind bulk
    spacing_ns: int = 300  # between the allocations of one operation

    def cpu_list(self, cpus: int) -> np.ndarray:
        if self.cpus == "all":
            return np.arange(cpus)
        if self.cpus == "even":
            return np.arange(0, cpus, 2)
        if self.cpus == "odd":
            return np.arange(1, cpus, 2)
        assert isinstance(self.cpus, tuple)
        return np.asarray(self.cpus, dtype=np.int64)

    def objects_per_op(self) -> float:
        """Mean objects allocated per operation (visible or not)."""
        if self.kind == "prefill":
            assert self.used is not None
            return self.used.mean()
        if self.kind == "bulk":
            assert self.bulk_size is not None
            return self.bulk_size.mean()
        return self.burst.mean() if self.burst is not None else 1.0


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    description: str
    cpus: int
    nodes: int
    events: int  # target number of visible events (``--events`` overrides)
    warmup_ms: float
    comm: str
    pid_base: int
    caches: tuple[CacheSpec, ...]
    streams: tuple[StreamSpec, ...]
    path: str = ""

    def cache(self, name: str) -> CacheSpec:
        for c in self.caches:
            if c.name == name:
                return c
        raise KeyError(name)

    def cpu_node(self, cpus: int | None = None) -> np.ndarray:
        """Node of each CPU: contiguous blocks, CPU c on node ``c * nodes // cpus``."""
        n = cpus if cpus is not None else self.cpus
        return (np.arange(n) * self.nodes) // n


# --- loading and validation -----------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, where: str, message: str):
        super().__init__(message)
        self.where = where
        self.message = message


def _p(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _mapping(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _Invalid(where, f"expected a mapping, got {_kind(v)}")
    for k in v:
        if not isinstance(k, str):
            raise _Invalid(where, f"keys must be strings, got {k!r}")
    return v


def _kind(v: Any) -> str:
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return f"a boolean ({v})"
    if isinstance(v, int | float):
        return f"a number ({v})"
    if isinstance(v, str):
        return f"a string ({v!r})"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


def _no_unknown(d: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for k in d:
        if k not in allowed:
            known = ", ".join(sorted(allowed))
            raise _Invalid(_p(where, k), f"unknown key {k!r}; allowed: {known}")


def _required(d: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in d or d[key] is None:
        raise _Invalid(_p(where, key), "required key is missing")
    return d[key]


def _number(v: Any, where: str, lo: float, hi: float, *, lo_open: bool = False) -> float:
    if isinstance(v, str):
        # YAML 1.1 reads 1e6 as a string; accept what Python reads as a number.
        try:
            v = float(v)
        except ValueError:
            raise _Invalid(where, f"expected a number, got {_kind(v)}") from None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _Invalid(where, f"expected a number, got {_kind(v)}")
    x = float(v)
    if not math.isfinite(x):
        raise _Invalid(where, f"expected a finite number, got {v}")
    if x < lo or (lo_open and x <= lo):
        raise _Invalid(where, f"must be {'>' if lo_open else '>='} {lo:g}, got {v}")
    if x > hi:
        raise _Invalid(where, f"must be <= {hi:g}, got {v}")
    return x


def _int(v: Any, where: str, lo: int, hi: int) -> int:
    x = _number(v, where, lo, hi)
    if x != int(x):
        raise _Invalid(where, f"expected a whole number, got {v}")
    return int(x)


def _share(v: Any, where: str) -> float:
    return _number(v, where, 0.0, 1.0)


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _Invalid(where, f"expected a non-empty string, got {_kind(v)}")
    return v.strip()


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise _Invalid(where, f"expected true or false, got {_kind(v)}")
    return v


def _site(v: Any, where: str) -> CallSite:
    s = _str(v, where)
    m = _SITE_RE.match(s)
    if not m:
        raise _Invalid(where, f"call site {s!r} is not sym, sym+0xOFF or sym+0xOFF/0xSIZE")
    off = int(m["off"], 16) if m["off"] else 0
    if m["size"]:
        size = int(m["size"], 16)
        if size <= off:
            raise _Invalid(where, f"call site {s!r}: offset must lie inside the function size")
    else:
        # No size given: a plausible function size just past the offset.
        size = (off // 0x40 + 2) * 0x40
    return CallSite(m["sym"], off, size)


def _site_mix(v: Any, where: str) -> SiteMix:
    if isinstance(v, str):
        return SiteMix((_site(v, where),), (1.0,))
    d = _mapping(v, where)
    if not d:
        raise _Invalid(where, "needs at least one call site")
    sites, weights = [], []
    for k, w in d.items():
        sites.append(_site(k, _p(where, k)))
        weights.append(_number(w, _p(where, k), 0.0, 1e12))
    if sum(weights) <= 0:
        raise _Invalid(where, "weights must not all be 0")
    return SiteMix(tuple(sites), tuple(weights))


def _gfp(v: Any, where: str) -> int:
    s = _str(v, where)
    try:
        return gfpmod.parse(s)
    except ValueError as e:
        raise _Invalid(where, str(e)) from None


def _scipy_dist(name: Any, where: str, discrete: bool) -> Any:
    import scipy.stats

    n = _str(name, where)
    d = getattr(scipy.stats, n, None)
    want = scipy.stats.rv_discrete if discrete else scipy.stats.rv_continuous
    if not isinstance(d, want):
        kind = "discrete" if discrete else "continuous"
        raise _Invalid(where, f"{n!r} is not a scipy.stats {kind} distribution")
    return d


def _dist_params(d: Mapping[str, Any], where: str, skip: set[str]) -> dict[str, float]:
    return {k: _number(v, _p(where, k), -1e15, 1e15) for k, v in d.items() if k not in skip}


def _check_frozen(dist: Any, params: dict[str, float], where: str) -> Any:
    try:
        frozen = dist(**params)
        med = float(frozen.ppf(0.5))
    except (TypeError, ValueError) as e:
        raise _Invalid(where, f"bad parameters for {dist.name}: {e}") from None
    if not math.isfinite(med):
        raise _Invalid(where, f"parameters {params} are invalid for {dist.name}")
    return frozen


def _lifetime(v: Any, where: str) -> Lifetime:
    if not isinstance(v, dict):
        return Lifetime(None, {}, _number(v, where, 0.0, MAX_LIFETIME_US))
    d = _mapping(v, where)
    dist = _scipy_dist(_required(d, "dist", where), _p(where, "dist"), discrete=False)
    params = _dist_params(d, where, {"dist"})
    frozen = _check_frozen(dist, params, where)
    lo, _hi = frozen.support()
    if lo < 0 and float(frozen.cdf(0.0)) > 0.01:
        raise _Invalid(
            where,
            f"{dist.name}{params} gives negative lifetimes "
            f"({frozen.cdf(0.0):.0%} below 0); shift it with loc",
        )
    if float(frozen.ppf(0.5)) > MAX_LIFETIME_US:
        raise _Invalid(where, f"median lifetime above {MAX_LIFETIME_US:g} µs")
    return Lifetime(dist.name, params)


def _count(v: Any, where: str, lo: int = 0, hi: int = MAX_BATCH) -> Count:
    if not isinstance(v, dict):
        return Count(value=_int(v, where, lo, hi), lo=lo, hi=hi)
    d = _mapping(v, where)
    clip_lo = _int(d["min"], _p(where, "min"), lo, hi) if "min" in d else lo
    clip_hi = _int(d["max"], _p(where, "max"), lo, hi) if "max" in d else hi
    if clip_lo > clip_hi:
        raise _Invalid(where, f"min {clip_lo} is above max {clip_hi}")
    if "choice" in d:
        _no_unknown(d, {"choice", "min", "max"}, where)
        c = d["choice"]
        if not isinstance(c, dict):
            raise _Invalid(_p(where, "choice"), f"expected a mapping value: weight, got {_kind(c)}")
        if not c:
            raise _Invalid(_p(where, "choice"), "needs at least one value")
        vals, ws = [], []
        for k, w in c.items():
            kw = _p(_p(where, "choice"), str(k))
            vals.append(_int(k, kw, lo, hi))
            ws.append(_number(w, kw, 0.0, 1e12))
        if sum(ws) <= 0:
            raise _Invalid(_p(where, "choice"), "weights must not all be 0")
        return Count(choices=tuple(vals), weights=tuple(ws), lo=clip_lo, hi=clip_hi)
    dist = _scipy_dist(_required(d, "dist", where), _p(where, "dist"), discrete=True)
    params = _dist_params(d, where, {"dist", "min", "max"})
    _check_frozen(dist, params, where)
    return Count(dist=dist.name, params=params, lo=clip_lo, hi=clip_hi)


def _cpus(v: Any, where: str, ncpus: int) -> str | tuple[int, ...]:
    if isinstance(v, str):
        if v not in ("all", "even", "odd"):
            raise _Invalid(where, f"expected all, even, odd or a list of CPUs, got {v!r}")
        if v == "odd" and ncpus < 2:
            raise _Invalid(where, "no odd CPU on a 1-CPU machine")
        return v
    if not isinstance(v, list) or not v:
        raise _Invalid(where, f"expected all, even, odd or a list of CPUs, got {_kind(v)}")
    out = tuple(_int(c, _p(where, i), 0, ncpus - 1) for i, c in enumerate(v))
    if len(set(out)) != len(out):
        raise _Invalid(where, "a CPU is listed twice")
    return out


_TOP = {
    "workload",
    "name",
    "description",
    "cpus",
    "nodes",
    "events",
    "warmup_ms",
    "comm",
    "pid_base",
    "caches",
    "streams",
}
_CACHE = {"object_size", "sheaf_capacity", "kmalloc", "accounted"}
_STREAM = {
    "name",
    "cache",
    "kind",
    "cpus",
    "rate",
    "call_site",
    "gfp",
    "bytes_req",
    "comm",
    "burst",
    "prefill",
    "bulk",
    "lifetime_us",
    "free",
    "spacing_ns",
}
_FREE = {
    "call_site",
    "event",
    "kfree_rcu",
    "bulk",
    "never",
    "remote_cpu",
    "remote_node",
    "remote_choice",
    "rcu_delay_us",
    "spacing_ns",
}


def _cache(name: str, v: Any, where: str) -> CacheSpec:
    if not _CACHE_NAME_RE.match(name):
        raise _Invalid(where, f"cache name {name!r} is not a slab cache name")
    d = _mapping(v, where)
    _no_unknown(d, _CACHE, where)
    kmalloc = _bool(d.get("kmalloc", False), _p(where, "kmalloc"))
    size = _int(
        _required(d, "object_size", where),
        _p(where, "object_size"),
        1,
        MAX_KMALLOC_SIZE if kmalloc else MAX_OBJECT_SIZE,
    )
    cap = _int(_required(d, "sheaf_capacity", where), _p(where, "sheaf_capacity"), 0, 65535)
    accounted = _bool(d.get("accounted", False), _p(where, "accounted"))
    if kmalloc:
        m = _KMALLOC_RE.match(name)
        if not m:
            raise _Invalid(
                where,
                f"kmalloc cache {name!r} must be named kmalloc[-cg|-rcl]-SIZE or dma-kmalloc-SIZE",
            )
        if gfpmod._size_name(size) != m[1] + m[2]:
            raise _Invalid(
                _p(where, "object_size"), f"{size} does not match the size in the name {name!r}"
            )
    return CacheSpec(name, size, cap, kmalloc, accounted)


def _free(v: Any, where: str, cache: CacheSpec, nodes: int, cpus: int) -> FreeSpec:
    d = _mapping(v if v is not None else {}, where)
    _no_unknown(d, _FREE, where)
    default_event = "kfree" if cache.kmalloc else "kmem_cache_free"
    event = _str(d.get("event", default_event), _p(where, "event"))
    if event not in ("kmem_cache_free", "kfree"):
        raise _Invalid(_p(where, "event"), f"expected kmem_cache_free or kfree, got {event!r}")
    if cache.kmalloc and event != "kfree":
        raise _Invalid(_p(where, "event"), "kmalloc objects are freed with kfree")
    shares = {k: _share(d.get(k, 0.0), _p(where, k)) for k in ("kfree_rcu", "bulk", "never")}
    if sum(shares.values()) > 1.0 + 1e-9:
        raise _Invalid(where, f"kfree_rcu + bulk + never = {sum(shares.values()):g} exceeds 1")
    remote_cpu = _share(d.get("remote_cpu", 0.0), _p(where, "remote_cpu"))
    remote_node = _share(d.get("remote_node", 0.0), _p(where, "remote_node"))
    if remote_node > remote_cpu + 1e-12:
        raise _Invalid(
            _p(where, "remote_node"),
            f"{remote_node:g} exceeds remote_cpu {remote_cpu:g} (remote-node frees "
            "are remote-CPU frees too)",
        )
    if remote_node > 0 and nodes < 2:
        raise _Invalid(_p(where, "remote_node"), "needs nodes >= 2")
    if remote_cpu > 0 and cpus < 2:
        raise _Invalid(_p(where, "remote_cpu"), "needs cpus >= 2")
    choice = _str(d.get("remote_choice", "random"), _p(where, "remote_choice"))
    if choice not in ("random", "next"):
        raise _Invalid(_p(where, "remote_choice"), f"expected random or next, got {choice!r}")
    visible = 1.0 - sum(shares.values())
    site = None
    if "call_site" in d:
        site = _site_mix(d["call_site"], _p(where, "call_site"))
    elif visible > 1e-12:
        raise _Invalid(
            _p(where, "call_site"),
            "required when some frees are visible (kfree_rcu + bulk + never < 1)",
        )
    return FreeSpec(
        call_site=site,
        event=event,
        remote_cpu=remote_cpu,
        remote_node=remote_node,
        remote_choice=choice,
        rcu_delay_us=_number(
            d.get("rcu_delay_us", 1000.0), _p(where, "rcu_delay_us"), 0.0, MAX_LIFETIME_US
        ),
        spacing_ns=_int(d.get("spacing_ns", 100), _p(where, "spacing_ns"), 0, MAX_SPACING_NS),
        **shares,
    )


def _stream(v: Any, where: str, caches: dict[str, CacheSpec], cpus: int, nodes: int) -> StreamSpec:
    d = _mapping(v, where)
    _no_unknown(d, _STREAM, where)
    name = _str(_required(d, "name", where), _p(where, "name"))
    if d.get("kind") == "kfree_null":
        return _null_stream(d, where, name, cpus)
    cname = _str(_required(d, "cache", where), _p(where, "cache"))
    if cname not in caches:
        raise _Invalid(
            _p(where, "cache"), f"unknown cache {cname!r}; defined: {', '.join(caches) or 'none'}"
        )
    cache = caches[cname]
    kind = _str(d.get("kind", "alloc"), _p(where, "kind"))
    if kind not in ("alloc", "prefill", "bulk"):
        raise _Invalid(
            _p(where, "kind"), f"expected alloc, prefill, bulk or kfree_null, got {kind!r}"
        )
    for other, owner in (("burst", "alloc"), ("prefill", "prefill"), ("bulk", "bulk")):
        if other in d and kind != owner:
            raise _Invalid(_p(where, other), f"only for kind: {owner} (this stream is {kind})")
    if kind == "prefill" and cache.kmalloc:
        raise _Invalid(_p(where, "kind"), "prefilled sheaves exist only for named caches")
    default_gfp = "GFP_NOWAIT" if kind == "prefill" else "GFP_KERNEL"
    gfp = _gfp(d.get("gfp", default_gfp), _p(where, "gfp"))
    if cache.kmalloc:
        derived = gfpmod.kmalloc_cache_name(cache.object_size, gfp)
        if derived != cache.name:
            raise _Invalid(
                _p(where, "gfp"),
                f"kmalloc with {gfpmod.format_flags(gfp)} of {cache.object_size} bytes "
                f"is served by {derived}, not {cache.name}",
            )
    bytes_req = None
    if "bytes_req" in d:
        if not cache.kmalloc:
            raise _Invalid(
                _p(where, "bytes_req"),
                "only for kmalloc caches (a named cache's bytes_req is its object_size)",
            )
        bytes_req = _count(d["bytes_req"], _p(where, "bytes_req"), 1, cache.object_size)
    burst = upper = used = bulk_size = None
    if kind == "alloc" and "burst" in d:
        bd = _mapping(d["burst"], _p(where, "burst"))
        _no_unknown(bd, {"size"}, _p(where, "burst"))
        burst = _count(_required(bd, "size", _p(where, "burst")), _p(_p(where, "burst"), "size"), 1)
    if kind == "prefill":
        pw = _p(where, "prefill")
        pd = _mapping(_required(d, "prefill", where), pw)
        _no_unknown(pd, {"upper_bound", "used"}, pw)
        upper = _count(_required(pd, "upper_bound", pw), _p(pw, "upper_bound"), 1)
        used = _count(_required(pd, "used", pw), _p(pw, "used"), 0)
    if kind == "bulk":
        bw = _p(where, "bulk")
        bd = _mapping(_required(d, "bulk", where), bw)
        _no_unknown(bd, {"size"}, bw)
        bulk_size = _count(_required(bd, "size", bw), _p(bw, "size"), 1)
    free = _free(d.get("free"), _p(where, "free"), cache, nodes, cpus)
    if "lifetime_us" in d:
        lifetime = _lifetime(d["lifetime_us"], _p(where, "lifetime_us"))
    elif free.never >= 1.0:
        lifetime = Lifetime(None, {}, 0.0)
    else:
        raise _Invalid(_p(where, "lifetime_us"), "required unless free.never is 1")
    comm = _str(d["comm"], _p(where, "comm")) if "comm" in d else None
    if comm is not None and len(comm) > 15:
        raise _Invalid(_p(where, "comm"), f"task names have at most 15 characters: {comm!r}")
    return StreamSpec(
        name=name,
        cache=cname,
        kind=kind,
        cpus=_cpus(d.get("cpus", "all"), _p(where, "cpus"), cpus),
        rate=_number(_required(d, "rate", where), _p(where, "rate"), 0.0, MAX_RATE, lo_open=True),
        call_site=_site_mix(_required(d, "call_site", where), _p(where, "call_site")),
        gfp=gfp,
        lifetime_us=lifetime,
        free=free,
        bytes_req=bytes_req,
        comm=comm,
        burst=burst,
        upper_bound=upper,
        used=used,
        bulk_size=bulk_size,
        spacing_ns=_int(d.get("spacing_ns", 300), _p(where, "spacing_ns"), 0, MAX_SPACING_NS),
    )


def _null_stream(d: dict[str, Any], where: str, name: str, cpus: int) -> StreamSpec:
    """``kind: kfree_null``: kfree(NULL) calls, traced like any kfree but freeing nothing."""
    allowed = {"name", "kind", "cpus", "rate", "call_site", "comm"}
    for k in d:
        if k not in allowed:
            raise _Invalid(_p(where, k), "not for kind: kfree_null (it has no object)")
    site = _site_mix(_required(d, "call_site", where), _p(where, "call_site"))
    comm = _str(d["comm"], _p(where, "comm")) if "comm" in d else None
    if comm is not None and len(comm) > 15:
        raise _Invalid(_p(where, "comm"), f"task names have at most 15 characters: {comm!r}")
    return StreamSpec(
        name=name,
        cache="",
        kind="kfree_null",
        cpus=_cpus(d.get("cpus", "all"), _p(where, "cpus"), cpus),
        rate=_number(_required(d, "rate", where), _p(where, "rate"), 0.0, MAX_RATE, lo_open=True),
        call_site=site,
        gfp=0,
        lifetime_us=Lifetime(None, {}, 0.0),
        free=FreeSpec(call_site=site, event="kfree"),
        comm=comm,
    )


def parse_spec(data: Any, path: str = "<workload>") -> WorkloadSpec:
    """A WorkloadSpec from already-loaded YAML data; InputError naming ``path`` and the key."""
    try:
        # scipy evaluates invalid parameters (a scale of 0, say) with numpy and warns before
        # answering NaN; the checks here test every answer for finiteness and refuse the
        # parameters in one line, so the warnings would only add noise to that line
        with np.errstate(all="ignore"):
            return _parse(data, path)
    except _Invalid as e:
        raise InputError(e.message, path, e.where or None) from None


def _parse(data: Any, path: str) -> WorkloadSpec:
    d = _mapping(data, "")
    _no_unknown(d, _TOP, "")
    version = _int(_required(d, "workload", ""), "workload", 1, 1 << 30)
    if version > SCHEMA_VERSION:
        raise _Invalid(
            "workload",
            f"schema version {version} is newer than this sheaftune "
            f"understands (up to {SCHEMA_VERSION})",
        )
    name = _str(_required(d, "name", ""), "name")
    cpus = _int(_required(d, "cpus", ""), "cpus", 1, MAX_CPUS)
    nodes = _int(d.get("nodes", 1), "nodes", 1, MAX_NODES)
    if nodes > cpus:
        raise _Invalid("nodes", f"{nodes} nodes but only {cpus} CPUs")
    cd = _mapping(_required(d, "caches", ""), "caches")
    if not cd:
        raise _Invalid("caches", "needs at least one cache")
    caches = {k: _cache(k, v, _p("caches", k)) for k, v in cd.items()}
    sl = _required(d, "streams", "")
    if not isinstance(sl, list) or not sl:
        raise _Invalid("streams", f"expected a non-empty list of streams, got {_kind(sl)}")
    streams = tuple(_stream(s, _p("streams", i), caches, cpus, nodes) for i, s in enumerate(sl))
    seen: set[str] = set()
    for i, s in enumerate(streams):
        if s.name in seen:
            raise _Invalid(_p(_p("streams", i), "name"), f"stream name {s.name!r} is used twice")
        seen.add(s.name)
    comm = _str(d.get("comm", "synth"), "comm")
    if len(comm) > 15:
        raise _Invalid("comm", f"task names have at most 15 characters: {comm!r}")
    return WorkloadSpec(
        name=name,
        description=_str(d["description"], "description") if "description" in d else "",
        cpus=cpus,
        nodes=nodes,
        events=_int(d.get("events", 100_000), "events", 1, MAX_EVENTS),
        warmup_ms=_number(d.get("warmup_ms", 0.0), "warmup_ms", 0.0, 3.6e6),
        comm=comm,
        pid_base=_int(d.get("pid_base", 1000), "pid_base", 1, 4_000_000),
        caches=tuple(caches.values()),
        streams=streams,
        path=path,
    )


def _loader() -> type:
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=deep)
            if key in out:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", knode.start_mark
                )
            out[key] = loader.construct_object(vnode, deep=deep)
        return out

    UniqueKeyLoader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping
    )
    return UniqueKeyLoader


def load_spec(path: str | os.PathLike[str]) -> WorkloadSpec:
    """Read and validate a workload YAML file."""
    import yaml

    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise InputError("no such workload file", p) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read workload file: {e}", p) from None
    try:
        data = yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(f"invalid YAML: {problem}", p, where) from None
    return parse_spec(data, p)
