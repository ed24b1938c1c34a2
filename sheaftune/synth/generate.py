"""Generation: WorkloadSpec + seed -> the EventTable (and OpTable) a real 6.18 trace would give.

Everything is drawn from one ``numpy.random.Generator`` seeded by ``--seed``, stream by stream
in file order, so the same spec, seed, CPU count and event count give the same bytes. The draws
are vectorised over operations (numpy, in place where it can be); per object and per record the
work is compiled (numba, :mod:`sheaftune.synth._replay`): one pass per stream expands its
operations into records and their packed sort keys, one ``np.sort`` merges them, and one walk
hands out addresses and writes the EventTable's columns. What costs time at 20 million events is
memory: each record is touched a few times, and fresh pages cost the kernel as much as the work
(see ``docs/workloads.md``), so there are no full-size temporaries where a pass can do without.

How one stream becomes events:

1. Operations arrive on each of the stream's CPUs as a Poisson process of ``rate`` per second
   (a Poisson total split uniformly over the CPUs, at sorted uniform times).
2. Each operation allocates ``k`` objects ``spacing_ns`` apart: 1, a burst size, the objects a
   prefill operation actually used (pops from the prefilled sheaf, ``GFP_NOWAIT``), or a bulk
   size (``kmem_cache_alloc_bulk``: no event at all).
3. Each operation draws one fate for its objects (they die together): a visible free
   (``kmem_cache_free``/``kfree`` at the free call site), ``kfree_rcu`` or a bulk free (no
   event), or none within the trace; a lifetime from the scipy distribution; and the CPU that
   frees (the same, another CPU of its node, or a CPU of another node).
4. All records, visible and invisible, are merged by time (ties: lowest CPU first, as trace-cmd
   merges). Addresses are then handed out in time order from per-(cache, CPU) LIFO free lists,
   as sheaves do: an object freed on CPU c is the next one allocated on c. An object freed by
   ``kfree_rcu`` becomes reusable only after ``rcu_delay_us``.
5. The trace window is the first ``events`` visible events after the warm-up; invisible records
   inside the window are counted in ``meta.extra["synth"]`` (they are what a replay cannot see).

Timestamps are whole microseconds (what ftrace text prints), so writing text and reading it back
loses nothing; within a CPU they never decrease.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sheaftune.errors import UsageError
from sheaftune.events import (
    COLUMNS,
    NO_CACHE,
    NUMA_NO_NODE,
    EventTable,
    Op,
    OpTable,
    TraceMeta,
)
from sheaftune.synth.spec import MAX_CPUS, MAX_EVENTS, StreamSpec, WorkloadSpec

#: Where the trace clock starts (seconds of uptime), as a real capture would.
START_S = 100
#: Base of the synthetic direct map, as on x86_64 (``ffff888100000000``).
PTR_BASE = 0xFFFF888100000000

Progress = Callable[[str, float], None]

#: A per-stream constant (site, bytes) meaning "per record: see the array" (as in _replay).
PER_RECORD = -2

# Fates of an operation's objects.
_VISIBLE, _RCU, _BULK, _NEVER = 0, 1, 2, 3


@dataclass
class Synthetic:
    """What a generator produces: the visible events and the prefill operations behind them."""

    events: EventTable
    ops: OpTable


def generate(
    spec: WorkloadSpec,
    seed: int = 0,
    cpus: int | None = None,
    events: int | None = None,
    progress: Progress | None = None,
) -> Synthetic:
    """Generate the workload's trace window: ``events`` visible events on ``cpus`` CPUs."""
    ncpus = spec.cpus if cpus is None else cpus
    target = spec.events if events is None else events
    _check_overrides(spec, ncpus, target)
    say = progress or (lambda stage, frac: None)
    rate = _visible_rate(spec, ncpus)
    if rate <= 0:
        raise UsageError(f"workload {spec.name!r} produces no visible events")
    # Long enough for the target at the steady rate, plus time for the first objects to die
    # (bounded: when lifetimes are long, allocations alone fill the window).
    steady_ns = target / rate * 1e9
    horizon_ns = steady_ns * 1.05 + min(_mean_visible_lifetime_ns(spec), steady_ns) + 10_000
    for _attempt in range(8):
        _check_size(spec, ncpus, horizon_ns)
        out = _generate_once(spec, seed, ncpus, target, horizon_ns, say)
        if out is not None:
            say("done", 1.0)
            return out
        horizon_ns *= 2.0
    raise UsageError(f"workload {spec.name!r} cannot reach {target} visible events")


def generate_file(
    path: str,
    seed: int = 0,
    cpus: int | None = None,
    events: int | None = None,
    progress: Progress | None = None,
) -> Synthetic:
    """Load and validate a workload file, then generate it: what ``--workload FILE`` means."""
    from sheaftune.synth.spec import load_spec

    return generate(load_spec(path), seed=seed, cpus=cpus, events=events, progress=progress)


def _check_overrides(spec: WorkloadSpec, ncpus: int, target: int) -> None:
    if not 1 <= ncpus <= MAX_CPUS:
        raise UsageError(f"--cpus must be 1..{MAX_CPUS}, got {ncpus}")
    if not 1 <= target <= MAX_EVENTS:
        raise UsageError(f"--events must be 1..{MAX_EVENTS}, got {target}")
    if ncpus < spec.nodes:
        raise UsageError(f"--cpus {ncpus} is fewer than the workload's {spec.nodes} NUMA nodes")
    for s in spec.streams:
        if isinstance(s.cpus, tuple) and max(s.cpus) >= ncpus:
            raise UsageError(f"stream {s.name!r} runs on CPU {max(s.cpus)}, but --cpus is {ncpus}")
        if len(s.cpu_list(ncpus)) == 0:
            raise UsageError(f"stream {s.name!r} has no CPU with --cpus {ncpus}")
        if s.free.remote_cpu > 0 and ncpus < 2:
            raise UsageError(f"stream {s.name!r} frees on other CPUs: needs --cpus >= 2")


#: Records (allocations and frees, visible or not) one generation may hold: each costs about
#: 80 bytes at the peak, so this keeps a generation under about 16 GB.
MAX_RECORDS = 200_000_000


def _check_size(spec: WorkloadSpec, ncpus: int, horizon_ns: float) -> None:
    span_s = (horizon_ns + spec.warmup_ms * 1e6) * 1e-9
    records = sum(
        s.rate * len(s.cpu_list(ncpus)) * span_s * s.objects_per_op() * (2.0 - s.free.never)
        for s in spec.streams
    )
    if records > MAX_RECORDS:
        raise UsageError(
            f"workload {spec.name!r} would need about {records:.3g} allocation and free records "
            f"(limit {MAX_RECORDS:.0e}); ask for fewer --events, or shorten warmup_ms"
        )


def _visible_allocs_per_op(s: StreamSpec) -> float:
    return 0.0 if s.kind in ("bulk", "kfree_null") else s.objects_per_op()


def _visible_rate(spec: WorkloadSpec, ncpus: int) -> float:
    """Expected visible events per second of the whole machine."""
    total = 0.0
    for s in spec.streams:
        per_op = _visible_allocs_per_op(s) + s.objects_per_op() * s.free.visible
        total += s.rate * len(s.cpu_list(ncpus)) * per_op
    return total


def _mean_visible_lifetime_ns(spec: WorkloadSpec) -> float:
    m = [s.lifetime_us.mean() for s in spec.streams if s.free.visible > 0]
    return max(m, default=0.0) * 1000.0


def _node_blocks(ncpus: int, nodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(node of each CPU, first CPU of each node, CPUs per node): contiguous blocks."""
    node_of = (np.arange(ncpus) * nodes) // ncpus
    start = np.searchsorted(node_of, np.arange(nodes), side="left")
    count = np.bincount(node_of, minlength=nodes)
    return node_of, start, count


def _free_cpus(
    s: StreamSpec, cpu: np.ndarray, rng: np.random.Generator, ncpus: int, nodes: int
) -> np.ndarray:
    """The CPU that frees each operation's objects."""
    from sheaftune.synth._replay import free_cpus

    f = s.free
    if f.remote_cpu <= 0 or ncpus < 2:
        return cpu  # read only, as the allocating CPUs are
    n = len(cpu)
    u = rng.random(n)  # below remote_node: another node; below remote_cpu: another CPU
    node_of, start, count = _node_blocks(ncpus, nodes)
    pick = rng.random(n)
    if nodes > 1:
        # the other node of each far one, in order
        far_draw = rng.integers(0, nodes - 1, size=int(np.count_nonzero(u < f.remote_node)))
    else:
        far_draw = np.empty(0, dtype=np.int64)
    return free_cpus(
        cpu,
        u,
        pick,
        far_draw,
        f.remote_cpu,
        f.remote_node,
        nodes,
        node_of,
        start,
        count,
        f.remote_choice == "next",
        ncpus,
    )


@dataclass
class _Stream:
    """One stream's operations, drawn; :func:`~sheaftune.synth._replay.fill_stream` expands them
    into records (allocations, one per object, and the frees of those that die)."""

    op_t: np.ndarray  # float64 ns
    k: np.ndarray  # int64 objects per operation; empty: one each
    life_ns: np.ndarray  # float64
    fate: np.ndarray  # int8
    op_cpu: np.ndarray  # int32
    op_fcpu: np.ndarray  # int32: the CPU that frees
    op_site: np.ndarray  # int32; empty: site_c for every operation
    site_c: int
    op_fsite: np.ndarray  # int32; empty: fsite_c (-1: no call site)
    fsite_c: int
    obj_bytes: np.ndarray  # int32 per object (hidden ones too); empty: const_bytes each
    const_bytes: int
    spacing: float  # ns between the allocations of one operation
    fspacing: float  # ns between its frees
    rcu_add: float  # ns a kfree_rcu free waits before the object can be reused
    hide: bool  # a bulk user's objects not freed visibly have no record at all
    follow: int  # 1 a later object of a burst, 2 a later pop of a prefill op
    alloc_visible: bool
    prefill: dict[str, np.ndarray] | None
    ops: int
    n_alloc: int = 0  # records, filled in by _extent
    n_free: int = 0
    tmin: float = 0.0
    tmax: float = 0.0

    def extent(self) -> None:
        from sheaftune.synth._replay import stream_extent

        n_a, n_f, tmin, tmax = stream_extent(
            self.op_t,
            self.k,
            self.life_ns,
            self.fate,
            self.spacing,
            self.fspacing,
            self.rcu_add,
            self.hide,
        )
        self.n_alloc, self.n_free, self.tmin, self.tmax = int(n_a), int(n_f), tmin, tmax


def _gen_stream(
    s: StreamSpec,
    spec: WorkloadSpec,
    rng: np.random.Generator,
    ncpus: int,
    warm_ns: float,
    horizon_ns: float,
    alloc_sites: np.ndarray,
    free_sites: np.ndarray,
) -> _Stream:
    nodes = spec.nodes
    cpu_list = s.cpu_list(ncpus)
    span = horizon_ns + warm_ns
    # A Poisson process per CPU: a Poisson total over the stream's CPUs, split uniformly (the
    # same law as independent per-CPU processes), at sorted uniform times drawn as normalised
    # exponential gaps. Sorted arrivals keep the later merge and walk cache-friendly.
    m = int(rng.poisson(s.rate * span * 1e-9 * len(cpu_list)))
    op_cpu = cpu_list.astype(np.int32)[rng.integers(0, len(cpu_list), size=m)]
    gaps = rng.standard_exponential(m + 1)
    np.cumsum(gaps, out=gaps)
    op_t = gaps[:m]  # in place, the arithmetic of gaps[:m] * (span / gaps[m]) - warm_ns
    np.multiply(op_t, span / gaps[m], out=op_t)
    np.subtract(op_t, warm_ns, out=op_t)
    upper = None
    if s.kind == "prefill":
        assert s.upper_bound is not None and s.used is not None
        upper = s.upper_bound.sample(rng, m)
        k = np.minimum(s.used.sample(rng, m), upper)
    elif s.kind == "bulk":
        assert s.bulk_size is not None
        k = s.bulk_size.sample(rng, m)
    elif s.burst is not None:
        k = s.burst.sample(rng, m)
    else:
        k = None  # one object per operation
    op_site, site_c = _pick(alloc_sites, s.call_site.probabilities(), rng, m)
    fr = s.free
    from sheaftune.synth._replay import fates

    fate = fates(
        rng.random(m), fr.kfree_rcu, fr.kfree_rcu + fr.bulk, fr.kfree_rcu + fr.bulk + fr.never
    )
    if fr.call_site is not None:
        op_fsite, fsite_c = _pick(free_sites, fr.call_site.probabilities(), rng, m)
    else:
        op_fsite, fsite_c = np.empty(0, dtype=np.int32), -1
    life_ns = s.lifetime_us.sample(rng, m)
    np.multiply(life_ns, 1000.0, out=life_ns)
    op_fcpu = _free_cpus(s, op_cpu, rng, ncpus, nodes).astype(np.int32, copy=False)
    n_obj = m if k is None else int(k.sum())
    const_bytes = 0
    if s.bytes_req is not None:
        obj_bytes = s.bytes_req.sample(rng, n_obj).astype(np.int32)
    else:
        obj_bytes = np.empty(0, dtype=np.int32)
        const_bytes = 0 if s.kind == "kfree_null" else spec.cache(s.cache).object_size
    prefill = None
    if s.kind == "prefill":
        assert upper is not None and k is not None
        prefill = {"t": op_t, "cpu": op_cpu, "upper": upper, "used": k, "site": op_site}
        if len(op_site) == 0:
            prefill["site_c"] = np.asarray(site_c)
    out = _Stream(
        op_t=op_t,
        k=np.empty(0, dtype=np.int64) if k is None else k.astype(np.int64, copy=False),
        life_ns=life_ns,
        fate=fate,
        op_cpu=op_cpu,
        op_fcpu=op_fcpu,
        op_site=op_site,
        site_c=site_c,
        op_fsite=op_fsite,
        fsite_c=fsite_c,
        obj_bytes=obj_bytes,
        const_bytes=const_bytes,
        spacing=float(s.spacing_ns),
        fspacing=float(fr.spacing_ns),
        rcu_add=fr.rcu_delay_us * 1000.0,
        # Objects a bulk user allocates and frees invisibly never show: they only held an
        # address for a while. Leave them out of the merge (the costly part) and count them.
        hide=s.kind == "bulk" and fr.visible < 1.0,
        follow=0 if k is None else (2 if s.kind == "prefill" else 1),
        alloc_visible=s.kind not in ("bulk", "kfree_null"),
        prefill=prefill,
        ops=m,
    )
    out.extent()
    return out


def _pick(
    ids: np.ndarray, p: np.ndarray, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, int]:
    """A site per operation: (the sites, PER_RECORD), or (empty, the one site) for a single one."""
    from sheaftune.synth._replay import choose

    if len(ids) == 1:
        return np.empty(0, dtype=np.int32), int(ids[0])
    out = np.empty(n, dtype=np.int32)
    choose(rng.random(n), np.cumsum(p)[:-1], ids.astype(np.int32), out)
    return out, PER_RECORD


def _packed_fits(span_us: int, ncpus: int, idx_bits: int) -> bool:
    """Whether one int64 holds every record's (µs, CPU, 100-ns step, record index) key."""
    from sheaftune.synth._replay import SUB

    return span_us * ncpus * SUB < (1 << (63 - idx_bits))


@dataclass
class _Records:
    """All streams' records, unsorted: allocations (record index = object id), then frees.

    ``key`` (when ``packed``) holds each record's sort key; otherwise ``t_ns``, ``cpu`` and
    ``follow`` are what the lexsort fallback sorts.
    """

    n_alloc: int
    packed: bool
    idx_bits: int
    base_us: int
    key: np.ndarray
    t_ns: np.ndarray
    cpu: np.ndarray
    follow: np.ndarray
    tag: np.ndarray  # stream << 4 | visible << 3 | fate << 1 | is_free
    site: np.ndarray
    nbytes: np.ndarray
    f_obj: np.ndarray


def _fill(streams: list[_Stream], ncpus: int, packed: bool | None = None) -> _Records:
    """Expand every stream's operations into the records, in one pass per stream (numba)."""
    from sheaftune.synth._replay import fill_stream

    n_alloc = sum(x.n_alloc for x in streams)
    n_free = sum(x.n_free for x in streams)
    n = n_alloc + n_free
    live = [x for x in streams if x.n_alloc > 0]
    idx_bits = max(1, int(max(n, 1) - 1).bit_length())
    base_us = int(np.floor(min((x.tmin for x in live), default=0.0) / 1000.0))
    span = int(np.floor(max((x.tmax for x in live), default=0.0) / 1000.0)) + 2 - base_us
    if packed is None:
        packed = _packed_fits(span, ncpus, idx_bits)
    m = 0 if packed else 1
    rec = _Records(
        n_alloc=n_alloc,
        packed=packed,
        idx_bits=idx_bits,
        base_us=base_us,
        key=np.empty(n * (1 - m), dtype=np.int64),
        t_ns=np.empty(n * m),
        cpu=np.empty(n * m, dtype=np.int32),
        follow=np.empty(n_alloc * m, dtype=np.int8),
        tag=np.empty(n, dtype=np.int32),
        site=np.empty(n, dtype=np.int32),
        nbytes=np.empty(n_alloc, dtype=np.int32),
        f_obj=np.empty(n_free, dtype=np.int32 if n < 1 << 31 else np.int64),
    )
    lead = np.zeros(2, dtype=np.int64)
    a0 = f0 = 0
    for si, x in enumerate(streams):
        fill_stream(
            x.op_t,
            x.k,
            x.life_ns,
            x.fate,
            x.op_cpu,
            x.op_fcpu,
            x.op_site,
            x.site_c,
            x.op_fsite,
            x.fsite_c,
            x.obj_bytes,
            x.spacing,
            x.fspacing,
            x.rcu_add,
            x.hide,
            x.follow,
            si << 4,
            x.alloc_visible,
            a0,
            f0,
            n_alloc,
            packed,
            ncpus,
            base_us,
            idx_bits,
            lead,
            rec.key,
            rec.t_ns,
            rec.cpu,
            rec.follow,
            rec.tag,
            rec.site,
            rec.nbytes,
            rec.f_obj,
        )
        a0 += x.n_alloc
        f0 += x.n_free
    return rec


def _merge_order(
    t_ns: np.ndarray,
    cpu: np.ndarray,
    follow: np.ndarray,
    f_obj: np.ndarray,
    n_alloc: int,
    ncpus: int,
    force_lexsort: bool = False,
) -> tuple[np.ndarray, int, int, np.ndarray, np.ndarray, np.ndarray]:
    """Time order of all records by (µs, CPU, 100-ns step, record index).

    Returns ``(key, idx_bits, base_us, order, t_us, cpu)``: normally the sorted packed keys
    (one int64 each, so ``np.sort``, SIMD and no argsort, does the work; the walk decodes
    them) and empty arrays; when a key would be wider than 63 bits (very long spans on many
    CPUs), an empty key and the ``np.lexsort`` order with each row's µs and CPU. The fallback
    orders by time alone, so bursts and prefill pops stay together less tightly.
    """
    from sheaftune.synth._replay import SUB, sort_key

    n = len(t_ns)
    e = np.empty(0, np.int64)
    if n == 0:
        return e, 1, 0, e, e, np.empty(0, np.int32)
    base = int(np.floor(t_ns.min() / 1000.0))
    span = int(np.floor(t_ns.max() / 1000.0)) + 2 - base
    idx_bits = max(1, int(n - 1).bit_length())
    if span * ncpus * SUB < (1 << (63 - idx_bits)) and not force_lexsort:
        key = sort_key(t_ns, cpu, follow, f_obj, n_alloc, ncpus, base, idx_bits)
        key.sort()
        return key, idx_bits, base, e, e, np.empty(0, np.int32)
    t_us = np.floor(t_ns / 1000.0).astype(np.int64)
    sub = np.clip(((t_ns - t_us * 1000.0) * (SUB / 1000.0)).astype(np.int64), 0, SUB - 1)
    t_us[n_alloc:] = np.maximum(t_us[n_alloc:], t_us[f_obj] + 1)
    sub[n_alloc:] = SUB - 1
    order = np.lexsort((np.arange(n), sub, cpu, t_us))
    return e, idx_bits, 0, order, t_us[order], cpu[order].astype(np.int32)


def _generate_once(
    spec: WorkloadSpec,
    seed: int,
    ncpus: int,
    target: int,
    horizon_ns: float,
    say: Progress,
) -> Synthetic | None:
    rng = np.random.default_rng(seed)
    nodes = spec.nodes
    warm_ns = spec.warmup_ms * 1e6
    ncache = len(spec.caches)
    # kfree(NULL) streams belong to no cache: an extra, internal one (index ncache)
    cache_index = {c.name: i for i, c in enumerate(spec.caches)} | {"": ncache}
    comms = list(dict.fromkeys([spec.comm] + [s.comm for s in spec.streams if s.comm]))
    sites: dict[str, int] = {}
    site_sizes: dict[str, int] = {}

    def intern_sites(mix: Any) -> np.ndarray:
        if mix is None:
            return np.empty(0, dtype=np.int32)
        for cs in mix.sites:
            if cs.name not in sites:
                sites[cs.name] = len(sites)
                site_sizes[cs.name] = cs.size
        return np.asarray([sites[cs.name] for cs in mix.sites], dtype=np.int32)

    streams: list[_Stream] = []
    for si, s in enumerate(spec.streams):
        say(f"stream {s.name}", si / max(len(spec.streams), 1) * 0.4)
        streams.append(
            _gen_stream(
                s,
                spec,
                rng,
                ncpus,
                warm_ns,
                horizon_ns,
                intern_sites(s.call_site),
                intern_sites(s.free.call_site),
            )
        )

    say("merging by time", 0.4)
    from sheaftune.synth._replay import COUNT_NAMES, count_hidden, place_pointers, walk

    rec = _fill(streams, ncpus)
    n_alloc, tag, site, nbytes, f_obj = rec.n_alloc, rec.tag, rec.site, rec.nbytes, rec.f_obj
    idx_bits, base_us, key = rec.idx_bits, rec.base_us, rec.key
    if rec.packed:
        key.sort()
        order = t_us = np.empty(0, np.int64)
        cpu_s = np.empty(0, np.int32)
    else:
        _, _, _, order, t_us, cpu_s = _merge_order(
            rec.t_ns, rec.cpu, rec.follow, f_obj, n_alloc, ncpus, force_lexsort=True
        )
    del rec
    cache_of_stream = np.asarray([cache_index[s.cache] for s in spec.streams], dtype=np.int64)
    node_of = spec.cpu_node(ncpus)
    comm_of_stream = np.asarray(
        [comms.index(s.comm or spec.comm) for s in spec.streams], dtype=np.int64
    )
    km = [c.kmalloc for c in spec.caches] + [False]
    s_op_alloc = np.asarray(
        [Op.KMALLOC if km[cache_index[s.cache]] else Op.KMEM_CACHE_ALLOC for s in spec.streams],
        dtype=np.uint8,
    )
    s_op_free = np.asarray(
        [Op.KFREE if s.free.event == "kfree" else Op.KMEM_CACHE_FREE for s in spec.streams],
        dtype=np.uint8,
    )

    say("assigning addresses", 0.6)
    columns = {name: np.empty(target, dtype=dtype) for name, dtype in COLUMNS.items()}
    columns["node"].fill(NUMA_NO_NODE)
    nkeep, t0, t1, cnt, remote, slots_per_cache = walk(
        key,
        idx_bits,
        base_us,
        order,
        t_us,
        cpu_s,
        tag,
        f_obj,
        n_alloc,
        cache_of_stream,
        node_of,
        ncache + 1,
        ncpus,
        site,
        nbytes,
        START_S * 1_000_000_000,
        s_op_alloc,
        s_op_free,
        np.asarray([s.gfp for s in spec.streams], dtype=np.int64),
        comm_of_stream,
        np.asarray([x.site_c for x in streams], dtype=np.int64),
        np.asarray([x.fsite_c for x in streams], dtype=np.int64),
        np.asarray([PER_RECORD if len(x.obj_bytes) else x.const_bytes for x in streams]),
        spec.pid_base,
        np.asarray([c.object_size for c in spec.caches] + [0], dtype=np.int64),
        np.asarray(list(range(ncache)) + [NO_CACHE], dtype=np.int64),
        columns["ts_ns"],
        columns["cpu"],
        columns["op"],
        columns["cache_id"],
        columns["ptr"],
        columns["bytes_req"],
        columns["bytes_alloc"],
        columns["gfp"],
        columns["site_id"],
        columns["pid"],
        columns["comm_id"],
        np.zeros(n_alloc, dtype=np.int32),
    )
    del key, order, t_us, cpu_s, f_obj, tag, site, nbytes
    if nkeep < target:
        return None
    say("building the event table", 0.75)
    t0, t1 = int(t0), int(t1)

    # Address layout: one region per cache, objects at a stride of their size (8-aligned).
    # The internal kfree(NULL) cache comes last: base 0, stride 0, so its pointers are NULL.
    strides = np.asarray([(c.object_size + 7) // 8 * 8 for c in spec.caches] + [0], dtype=np.int64)
    region = max(1 << 20, int((slots_per_cache * strides).max()))
    region = (region + (1 << 20) - 1) >> 20 << 20
    cache_base = PTR_BASE + np.arange(ncache + 1, dtype=np.uint64) * np.uint64(region)
    cache_base[ncache] = 0
    place_pointers(columns["ptr"], cache_base, strides)

    prefill_rows = [(si, x.prefill) for si, x in enumerate(streams) if x.prefill is not None]
    for st, x in zip(spec.streams, streams, strict=True):
        if x.hide:
            # the walk counted records at or after time 0 up to the last kept row
            ci = cache_index[st.cache]
            h_a, h_rcu, h_bulk = count_hidden(
                x.op_t, x.k, x.life_ns, x.fate, x.spacing, x.fspacing, x.rcu_add, t1
            )
            cnt[ci, COUNT_NAMES.index("alloc_bulk")] += int(h_a)
            cnt[ci, COUNT_NAMES.index("free_kfree_rcu")] += int(h_rcu)
            cnt[ci, COUNT_NAMES.index("free_bulk")] += int(h_bulk)
    stream_ops = [
        {"name": st.name, "ops": x.ops} for st, x in zip(spec.streams, streams, strict=True)
    ]
    del streams
    by_cache = {
        c.name: {name: int(cnt[ci, j]) for j, name in enumerate(COUNT_NAMES)}
        for ci, c in enumerate(spec.caches)
    }
    counts = {name: cnt[:ncache, j] for j, name in enumerate(COUNT_NAMES)}  # not kfree(NULL)
    ops = _op_table(prefill_rows, spec, cache_index, t0, t1, ncpus, comms)
    meta = TraceMeta(
        source=spec.path or spec.name,
        format="synthetic",
        cpus=ncpus,
        clock="local",
        ts_is_ns=True,
        ts_resolution_ns=1000,
        kernel_release=None,
        pointers_hashed=False,
    )
    meta.extra["synth"] = {
        "workload": spec.name,
        "seed": int(seed),
        "cpus": ncpus,
        "nodes": nodes,
        "cpu_node": node_of.tolist() if nodes > 1 else None,
        "kernel": "6.18",
        "duration_ns": (t1 - t0) * 1000,
        "by_cache": by_cache,
        "invisible": {
            "kfree_rcu": int(counts["free_kfree_rcu"].sum()),
            "bulk_free": int(counts["free_bulk"].sum()),
            "bulk_alloc": int(counts["alloc_bulk"].sum()),
            "prefill_ops": len(ops),
            "prefill_requested": int(ops.upper_bound.sum()),
            "prefill_used": int(ops.used.sum()),
            "prefill_returned": int(ops.upper_bound.sum() - ops.used.sum()),
        },
        "kfree_null": int(cnt[ncache, COUNT_NAMES.index("free_visible")]),
        "frees_matched": int(remote[0]),
        "frees_remote_cpu": int(remote[1]),
        "frees_remote_node": int(remote[2]),
        "site_sizes": site_sizes,
        "accounted_caches": [c.name for c in spec.caches if c.accounted],
        "streams": stream_ops,
    }
    table = EventTable(
        columns, caches=[c.name for c in spec.caches], sites=list(sites), comms=comms, meta=meta
    )
    return Synthetic(table, ops)


def _op_table(
    rows: list[tuple[int, dict[str, np.ndarray]]],
    spec: WorkloadSpec,
    cache_index: dict[str, int],
    t0_us: int,
    t1_us: int,
    ncpus: int,
    comms: list[str],
) -> OpTable:
    """Prefill operations that started inside the window, in time order.

    ``rows``: (stream, operations) of each prefill stream; its operations are in time order,
    so the ones inside the window are one slice.
    """
    from sheaftune.synth._replay import op_rows, op_window

    parts = []
    for si, d in rows:
        lo, hi = op_window(d["t"], t0_us, t1_us)
        site = d["site"] if len(d["site"]) else np.full(len(d["t"]), d["site_c"], np.int32)
        parts.append((si, slice(int(lo), int(hi)), d, site))
    # the selected operations, concatenated (views for a single prefill stream)
    if len(parts) == 1:
        si, sl, d, site = parts[0]
        cat = {k: d[k][sl] for k in ("t", "cpu", "upper", "used")} | {"site": site[sl]}
        stream = np.full(1, si, dtype=np.int64)  # one stream: a constant
    else:
        empty = {"t": np.float64, "cpu": np.int32, "upper": np.int64, "used": np.int64}
        cat = {
            k: np.concatenate([d[k][sl] for _, sl, d, _ in parts] or [np.empty(0, dt)])
            for k, dt in empty.items()
        }
        cat["site"] = np.concatenate([st[sl] for _, sl, _, st in parts] or [np.empty(0, np.int32)])
        stream = np.repeat(
            np.asarray([si for si, *_ in parts], dtype=np.int64),
            [sl.stop - sl.start for _, sl, *_ in parts],
        )
    n = len(cat["t"])
    # by (µs, CPU, position): one packed int64 sort, as for the events
    bits = max(1, int(max(n - 1, 1)).bit_length())
    if (t1_us - t0_us + 1) * ncpus < (1 << (63 - bits)):
        from sheaftune.synth._replay import op_keys

        order = op_keys(cat["t"], cat["cpu"], t0_us, ncpus, bits)
        order.sort()
        order &= (1 << bits) - 1
    else:
        t_us = np.floor(cat["t"] / 1000.0).astype(np.int64)
        order = np.lexsort((cat["cpu"], t_us))
    cache_of_stream = np.asarray([cache_index[s.cache] for s in spec.streams], dtype=np.int64)
    comm_of_stream = np.asarray([comms.index(s.comm or spec.comm) for s in spec.streams])
    out = OpTable(
        ts_ns=np.empty(n, np.int64),
        cpu=np.empty(n, np.uint16),
        cache_id=np.empty(n, np.int32),
        upper_bound=np.empty(n, np.uint32),
        used=np.empty(n, np.uint32),
        pid=np.empty(n, np.int32),
        site_id=np.empty(n, np.int32),
        source="workload",
    )
    op_rows(
        order,
        cat["t"],
        cat["cpu"],
        cat["upper"],
        cat["used"],
        cat["site"],
        stream,
        cache_of_stream,
        comm_of_stream.astype(np.int64),
        spec.pid_base,
        ncpus,
        START_S * 1_000_000,
        out.ts_ns,
        out.cpu,
        out.cache_id,
        out.upper_bound,
        out.used,
        out.pid,
        out.site_id,
    )
    return out


def expected_rates(spec: WorkloadSpec, cpus: int | None = None) -> dict[str, dict[str, float]]:
    """Per cache, the expected visible allocations and frees per second per CPU of the machine.

    What the tests hold a generated table against, and what ``docs/workloads.md`` compares with
    the real trace.
    """
    ncpus = spec.cpus if cpus is None else cpus
    out: dict[str, dict[str, float]] = {c.name: {"alloc": 0.0, "free": 0.0} for c in spec.caches}
    for s in spec.streams:
        if s.kind == "kfree_null":
            continue
        ops = s.rate * len(s.cpu_list(ncpus)) / ncpus
        out[s.cache]["alloc"] += ops * _visible_allocs_per_op(s)
        out[s.cache]["free"] += ops * s.objects_per_op() * s.free.visible
    return out


__all__ = ["PTR_BASE", "START_S", "Synthetic", "expected_rates", "generate", "generate_file"]
