"""The fast replay engine: a compiled twin of the reference sheaf model over flat arrays.

``run(plan, params)`` interprets the same :class:`~sheaftune.model.plan.Plan` as
``replay.run_reference`` and must return the same :class:`~sheaftune.model.replay.ReplayResult`
field for field (``tests/model/test_fast_engine.py`` holds them equal). Every function below
mirrors the method of ``reference.SheafModel`` / ``slab.Slub73`` / ``slab.Slub618`` of the same
name, in the same order of effects, so the two can be read side by side.

State is plain int64 arrays (numba-friendly, proportional to live sheaves, live slabs and CPUs):

* sheaves: a pool of fixed-capacity stacks ``sho[id, :cap]`` with metadata ``shm`` (size, list
  link, rcu node/cpu/callback); ids are recycled. Barn lists and the rcu-pending queue are linked
  through ``shm[id, SH_NX]``; a barn list's head is its last pushed sheaf (LIFO, as the
  reference's ``list.append``/``pop``). Oversize prefilled sheaves live in a second pool
  (``ovo``), as wide as the plan's largest prefill, and are named ``OV_BASE + id``.
* slabs: object handles are ``slab_id * objects_per_slab + slot`` as in the reference; a slab's
  metadata and freelist stack sit in a recycled *row* (``sidr[slab_id]``), so freed slabs cost
  one int each. Node partial lists are doubly linked rows; 6.18's per-CPU partial lists are
  singly linked rows; 6.18's per-CPU freelist is ``cfree[cpu]``.
* counters: one int64 array ``g`` indexed by the 6.18 stat items (a superset of 7.3's), then the
  model's extras, then engine scalars.
* the plan's slot tables (object slot -> handle, sheaf slot -> sheaf), one int64 per slot the
  plan names, as in ``run_reference``: the one part sized by the plan rather than by live state
  (slots are dense per allocation in ``tracereplay.build_plan``).

The interpreter stops before a command when a pool might overflow; ``run`` grows the pool and
resumes at that command, so no command is ever half done. The remote-partial gate's random draw
(``remote_skip_probability``) is reproduced exactly: the reference's ``random.Random(seed)``
Mersenne Twister state is copied in and stepped here.

Where the reference samples occupancy after an API call (``_sample``), the engine does the same
work incrementally: barn held counts are kept at each push and pop, and on a sheaf hit (or a
call that touches no sheaf) the sample reduces to the CPU's held count moving by one (or to
nothing), applied inline with the same lazy integrals. Such commands (sheaf hits, skipped
frees, pops from prefilled sheaves) run in a tight inner loop of the interpreter, their
counters in locals, without the pool headroom check (they take nothing from a pool); every
other command takes the general path, shaped as the reference.

The compiled functions run without numba's reference counting (``_nrt=False``): every array is
allocated here in Python, and per-call reference counting of array arguments cost more than the
model itself.

The kernels live in ``_engine_kernels`` (numba, the single source of the hot loops) and the
layout constants in ``_engine_layout``; this module is the driver and imports neither numba nor
the kernels at import time. The first run asks ``sheaftune.compiled.kernels`` for the
interpreter ``exec_plan``: an ahead-of-time build (``numba.pycc``, cached per machine, imported
without numba; built on first use), or, with ``SHEAFTUNE_AOT=0`` or when no build is possible,
the JIT kernels (cached on disk by numba). ``needs_compile`` tells the CLI whether that first
run will compile. Nothing imports this module except ``replay.replay(engine="fast")`` and the
commands that replay, lazily, so ``sheaftune --help`` loads none of it.

``sweep`` replays one plan under several parameter sets on one shared pool of threads (the
kernels release the GIL) and can read a checkpoint (``recommend``'s warm-up cut) during the
same replay; ``plan_stats`` (the second kernel) summarises a plan in one pass: what the state's
pool sizes and the parameter checks need, the plan's counts and ``recommend``'s window figures.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from sheaftune import compiled
from sheaftune.model._engine_layout import (
    _EXTRA_NAMES,
    _STAT_NAMES,
    BATCH,
    G_CRQ_N,
    G_LEN,
    G_NSLABS,
    G_OVFREE_N,
    G_RFREE_N,
    G_RQ_HEAD,
    G_RQ_TAIL,
    G_SFREE_N,
    G_STATUS,
    G_T_FIRST,
    G_T_LAST,
    G_T_SET,
    ND_BHELD,
    ND_EH,
    ND_EN,
    ND_FH,
    ND_FN,
    ND_INT,
    ND_LEN,
    ND_MAX,
    ND_PH,
    ND_PT,
    ND_SINCE,
    ND_VAL,
    OV_BASE,
    OV_CAP,
    OV_LEN,
    OV_PSEQ,
    OV_SZ,
    P_LEN,
    PC_CFN,
    PC_CPH,
    PC_CSLAB,
    PC_INT,
    PC_LEN,
    PC_MAIN,
    PC_MAX,
    PC_RCU,
    PC_SINCE,
    PC_SPARE,
    PC_VAL,
    PS_CPUS,
    PS_HIST,
    PS_LEN,
    PS_MAX_BULK,
    PS_MAX_CPU,
    PS_MAX_NODE,
    PS_MAX_PREFILL,
    PS_MAX_SIZE,
    PS_N_CMDS,
    PS_OPS,
    PS_PREFILLS,
    SH_LEN,
    SH_NODE,
    SH_NX,
    SH_PSEQ,
    SH_RCPU,
    SH_RKIND,
    SH_SZ,
    SHEAF_ALLOC,
    SHEAF_HEADROOM,
    SKIP_NAMES,
    SL_INUSE,
    SL_LEN,
    SL_NEXT,
    SL_NFREE,
    SL_NODE,
    SL_OWNER,
    SL_SID,
    SL_WHERE,
    ST_DONE,
    ST_ERROR,
    X_SHEAVES_LIVE,
    X_SHEAVES_LIVE_MAX,
)
from sheaftune.model.counters import EXTRA, STAT_ITEMS
from sheaftune.model.plan import Cmd, Plan
from sheaftune.model.replay import ReplayResult
from sheaftune.params import PCS_BATCH_MAX, ModelParams

if TYPE_CHECKING:  # (imported where a pool is made: concurrent.futures brings logging, ~5 ms
    # of a start-up whose analyze replays on its own pool)
    from concurrent.futures import ThreadPoolExecutor

#: The kernel module ``sheaftune.compiled`` builds (or imports, for the JIT fallback).
KERNELS = "sheaftune.model._engine_kernels"
assert BATCH == PCS_BATCH_MAX, "update _engine_layout.BATCH with params.PCS_BATCH_MAX"
assert len(Cmd) == PS_N_CMDS, "update _engine_layout.PS_N_CMDS with plan.Cmd"


# ----------------------------------------------------------------------------- compile cache
_entries: dict[str, Any] = {}


def _entry(name: str) -> Any:
    """An exported kernel (``exec_plan``, the plan interpreter, or ``plan_stats``): the AOT
    build's entry point (built on first use) without its per-call argument check, since every
    array passed is made by _columns, _State or _stats_pass with exactly the exported dtype and
    layout; or the JIT kernel."""
    fn = _entries.get(name)
    if fn is None:
        k = compiled.kernels(KERNELS)
        fn = _entries[name] = getattr(k.extension if isinstance(k, compiled.Kernels) else k, name)
    return fn


def needs_compile() -> bool:
    """True when the next ``run`` will compile the engine (no usable build or cache yet).

    Library code does not print; the CLI asks this before the first replay and says on
    standard error that it is compiling. With AOT builds (the default) this is exact: no build
    for the current sources, numba and numpy in the cache, and no recent failed build. With
    the JIT kernels (``SHEAFTUNE_AOT=0``, or after a failed build) it is a best guess, which
    imports numba: numba's on-disk index of the interpreter must exist and match its source.
    """
    if "exec_plan" in _entries:
        return False
    if compiled.needs_build(KERNELS):
        return True
    if compiled.aot_enabled() and compiled.build_status(KERNELS)["built"]:
        return False
    from sheaftune.model._engine_kernels import exec_plan

    if exec_plan.signatures:
        return False
    try:
        cache = exec_plan._cache  # numba internals: FunctionCache
        overloads = cache._cache_file._load_index()
        return not overloads
    except Exception:  # noqa: BLE001 - any doubt means "may compile"
        return True


# ----------------------------------------------------------------------------- driver
class _Facts(NamedTuple):
    """What the engine state's sizes and the parameter checks need from a plan (computed once
    per plan: a sweep replays one plan under many parameter sets)."""

    max_cpu: int  # highest CPU (-1: empty plan)
    max_node: int  # highest explicit allocation node (-1: none)
    ov_width: int  # largest prefill or refill size (1 when there is none)
    max_bulk: int  # largest bulk call (0: none)


def _facts(plan: Plan) -> _Facts:
    return _facts_of(_stats_pass(plan, len(plan), _NO_CPUS))


def _stats_pass(plan: Plan, k: int, active: np.ndarray) -> list[int]:
    """``plan_stats``' kernel output (``PS_*``) as a list."""
    out = np.empty(PS_LEN, dtype=np.int64)
    _, cmd, cpu, _, b, c, _ = _columns(plan)
    _entry("plan_stats")(cmd, cpu, b, c, k, out, active)
    o: list[int] = out.tolist()
    return o


def _facts_of(o: list[int]) -> _Facts:
    hist = o[PS_HIST : PS_HIST + PS_N_CMDS]
    return _Facts(
        o[PS_MAX_CPU],
        o[PS_MAX_NODE] if hist[Cmd.ALLOC] else -1,
        o[PS_MAX_SIZE] if hist[Cmd.PREFILL] or hist[Cmd.REFILL_SHEAF] else 1,
        o[PS_MAX_BULK] if hist[Cmd.ALLOC_BULK] or hist[Cmd.FREE_BULK] else 0,
    )


class PlanStats(NamedTuple):
    """A plan in one pass (:func:`plan_stats`)."""

    facts: _Facts
    #: commands by name, as ``Plan.counts()``
    counts: dict[str, int]
    #: the largest prefill size (None: no prefill)
    max_prefill: int | None
    #: after the first k commands: object-moving calls (a bulk call counts its objects),
    #: prefills, and the CPUs making either (``tracereplay.window_ops``)
    ops_after: int
    prefills_after: int
    active_after: set[int]
    #: the cut
    k: int


_NO_CPUS = np.zeros(0, dtype=np.uint8)  # (k = len(plan): no CPU is active after the cut)
_CMD_NAMES = tuple(c.name.lower() for c in Cmd)


def plan_stats(plan: Plan, k: int = 0) -> PlanStats:
    """What a sweep and ``recommend`` need of ``plan`` (with the window after its first ``k``
    commands), in one compiled pass instead of a dozen numpy ones."""
    k = min(max(k, 0), len(plan))
    active = np.zeros(PS_CPUS, dtype=np.uint8) if k < len(plan) else _NO_CPUS
    o = _stats_pass(plan, k, active)
    hist = o[PS_HIST : PS_HIST + PS_N_CMDS]
    return PlanStats(
        _facts_of(o),
        {name: n for name, n in zip(_CMD_NAMES, hist, strict=True) if n},
        o[PS_MAX_PREFILL] if hist[Cmd.PREFILL] else None,
        o[PS_OPS],
        o[PS_PREFILLS],
        set(np.flatnonzero(active).tolist()),
        k,
    )


def _row(length: int, minus_one: tuple[int, ...]) -> np.ndarray:
    row = np.zeros(length, dtype=np.int64)
    row[list(minus_one)] = -1
    return row


# initial rows: per CPU (no sheaf, no CPU slab, no partial list), per node (empty lists), g
_PC0 = _row(PC_LEN, (PC_MAIN, PC_SPARE, PC_RCU, PC_CSLAB, PC_CPH))
_ND0 = _row(ND_LEN, (ND_FH, ND_EH, ND_PH, ND_PT))
_G0 = _row(G_LEN, (G_RQ_HEAD, G_RQ_TAIL))
_MT_LEN = 626  # (_mt_state)
_N_SKIPS = len(SKIP_NAMES)
_ASCENDING = np.arange(4096, dtype=np.int64)
_ASCENDING.flags.writeable = False


def _descending(x: np.ndarray) -> np.ndarray:
    """``x`` set to ``len(x) - 1, ..., 1, 0`` (a pool's initial free stack), and returned."""
    n = len(x)
    if n <= len(_ASCENDING):
        x[:] = _ASCENDING[n - 1 :: -1] if n else _ASCENDING[:0]
    else:
        x[:] = np.arange(n - 1, -1, -1, dtype=np.int64)
    return x


class _State:
    """The engine's arrays; pools grow between commands (never during one).

    Every array starts as a view of one int64 buffer (``buf``): one allocation and a few fills
    instead of thirty arrays, and a buffer that a thread can hand to its next replay
    (:func:`_replay`), whose pages are then already mapped (a fresh page costs more than the
    fill). A pool that grows gets an array of its own; the buffer is never resized. A plan
    whose state would need more than ``_SPARE_WORDS`` has its two slot tables apart.
    """

    def __init__(
        self,
        plan: Plan,
        params: ModelParams,
        facts: _Facts | None = None,
        buf: np.ndarray | None = None,
    ) -> None:
        """State for replaying ``plan`` (its object and sheaf slot counts, and ``facts``,
        :func:`_facts` of the plan when not given) under ``params``; ``buf``: an int64 buffer
        to carve the arrays from, when it is long enough (its contents do not matter)."""
        p = params
        if facts is None:
            facts = _facts(plan)
        v618 = p.kernel == "6.18"
        cap = p.sheaf_capacity
        ops = p.objects_per_slab
        cpus = p.cpus
        nodes = p.nodes
        has_pcs = (not v618) or cap > 0
        ov_width, max_bulk = facts.ov_width, facts.max_bulk
        n_sh = 16 + 4 * cpus
        n_rows = 64 + 2 * (cap + max_bulk + ov_width) // ops
        sho_w, ovo_w, cf_w = max(cap, 1), max(ov_width, 1), ops if v618 else 1
        n_scr = max(max_bulk, cap, ov_width) + BATCH + 8
        n_sidr = 256 + n_rows
        n_obj, n_psl = plan.n_objects, plan.n_sheaves
        # the buffer's layout: arrays set from templates and free stacks, then the arrays
        # that start zeroed, then those that start at -1 (one fill each)
        o_cn = P_LEN
        o_g = o_cn + cpus
        o_pc = o_g + G_LEN
        o_nd = o_pc + cpus * PC_LEN
        o_mt = o_nd + nodes * ND_LEN
        o_sf = o_mt + _MT_LEN
        o_of = o_sf + n_sh
        o_rf = o_of + 4
        o_zero = o_shm = o_rf + n_rows
        o_sho = o_shm + n_sh * SH_LEN
        o_ovm = o_sho + n_sh * sho_w
        o_ovo = o_ovm + 4 * OV_LEN
        o_slm = o_ovo + 4 * ovo_w
        o_slf = o_slm + n_rows * SL_LEN
        o_cf = o_slf + n_rows * ops
        o_crq = o_cf + cpus * cf_w
        o_crq2 = o_crq + 128
        o_sk = o_crq2 + 64
        o_scr = o_sk + _N_SKIPS
        o_one = o_scr + n_scr
        o_bk = o_one + 1
        o_minus = o_sidr = o_bk + 35
        o_objs = o_sidr + n_sidr
        o_psl = o_objs + n_obj
        total = o_psl + n_psl
        apart = total > _SPARE_WORDS
        if apart:
            # a big plan's slot tables in arrays of their own, as they always were (a huge
            # trace's peak memory measured ~15 MiB higher with them in the buffer)
            self.objs = np.empty(n_obj, dtype=np.int64)
            self.objs.fill(-1)
            self.pslot = np.empty(n_psl, dtype=np.int64)
            self.pslot.fill(-1)
            total = o_objs
        if buf is None or len(buf) < total:
            # (a buffer outgrown is replaced by one of at least twice its size, so a thread
            # replaying ever bigger plans maps new pages a few times, not at every replay)
            grown = 0 if buf is None else min(2 * len(buf), _SPARE_WORDS)
            buf = np.empty(max(total, grown), dtype=np.int64)
        self.buf = buf
        buf[o_zero:o_minus] = 0
        buf[o_minus:total] = -1
        P = self.P = buf[:P_LEN]
        P[:] = (
            cap, ops, cpus, nodes, int(v618), p.max_full_sheaves, p.max_empty_sheaves,
            p.min_partial, p.cpu_partial, p.cpu_partial_slabs, int(has_pcs),
            0,  # the gate probability travels as float bits in mt[625]
        )  # fmt: skip
        self.cn = buf[o_cn:o_g]
        self.cn[:] = p.cpu_node
        g = self.g = buf[o_g:o_pc]
        g[:] = _G0
        self.pc = buf[o_pc:o_nd].reshape(cpus, PC_LEN)
        self.pc[:] = _PC0
        self.nd = buf[o_nd:o_mt].reshape(nodes, ND_LEN)
        self.nd[:] = _ND0
        self.mt = buf[o_mt:o_sf]
        self.mt[:] = _mt_state(p.seed, float(p.remote_skip_probability))
        # every pool starts with its ids on the free stack, highest id at the bottom (as
        # _free_stack gives a pool grown from nothing), so id 0 is the first taken
        self.sfree = _descending(buf[o_sf:o_of])
        self.ovfree = _descending(buf[o_of:o_rf])
        self.rfree = _descending(buf[o_rf:o_zero])
        g[G_SFREE_N] = n_sh
        g[G_OVFREE_N] = 4
        g[G_RFREE_N] = n_rows
        self.shm = buf[o_shm:o_sho].reshape(n_sh, SH_LEN)
        self.sho = buf[o_sho:o_ovm].reshape(n_sh, sho_w)
        self.ovm = buf[o_ovm:o_ovo].reshape(4, OV_LEN)
        self.ovo = buf[o_ovo:o_slm].reshape(4, ovo_w)
        self.slm = buf[o_slm:o_slf].reshape(n_rows, SL_LEN)
        self.slf = buf[o_slf:o_cf].reshape(n_rows, ops)
        self.cfree = buf[o_cf:o_crq].reshape(cpus, cf_w)
        self.crq = buf[o_crq:o_crq2].reshape(64, 2)
        self.crq2 = buf[o_crq2:o_sk]
        self.skips = buf[o_sk:o_scr]
        self.scr = buf[o_scr:o_one]
        self.one = buf[o_one:o_bk]
        self.bk = buf[o_bk:o_sidr]
        self.sidr = buf[o_sidr:o_objs]
        if not apart:
            self.objs = buf[o_objs:o_psl]
            self.pslot = buf[o_psl:total]
        # initial per-CPU sheaves (D9; D6 bootstrap sheaf for a 7.3 cache with cap 0; X1: none
        # for a 6.18 cache without sheaves): CPU c takes the c-th id popped, i.e. id c
        if has_pcs:
            g[G_SFREE_N] = n_sh - cpus
            self.shm[:cpus, SH_NX] = -1
            self.shm[:cpus, SH_NODE] = -1
            self.pc[:, PC_MAIN] = _ASCENDING[:cpus] if cpus <= len(_ASCENDING) else np.arange(cpus)
            if cap > 0:
                g[SHEAF_ALLOC] += cpus
                g[X_SHEAVES_LIVE] += cpus
        # the reference samples once at construction (every CPU and node)
        g[X_SHEAVES_LIVE_MAX] = g[X_SHEAVES_LIVE]

    def _grow_sheaves(self, n: int) -> None:
        old = len(self.shm)
        self.shm = np.concatenate([self.shm, np.zeros((n, SH_LEN), dtype=np.int64)])
        self.sho = np.concatenate([self.sho, np.zeros((n, self.sho.shape[1]), dtype=np.int64)])
        free_n = int(self.g[G_SFREE_N])
        # new ids go under the free stack so recycled ids keep being reused first
        self.sfree = _free_stack(old, n, self.sfree[:free_n])
        self.g[G_SFREE_N] = free_n + n

    def _grow_oversize(self, n: int) -> None:
        old = len(self.ovm)
        self.ovm = np.concatenate([self.ovm, np.zeros((n, OV_LEN), dtype=np.int64)])
        self.ovo = np.concatenate([self.ovo, np.zeros((n, self.ovo.shape[1]), dtype=np.int64)])
        free_n = int(self.g[G_OVFREE_N])
        self.ovfree = _free_stack(old, n, self.ovfree[:free_n])
        self.g[G_OVFREE_N] = free_n + n

    def _grow_rows(self, n: int) -> None:
        old = len(self.slm)
        self.slm = np.concatenate([self.slm, np.zeros((n, SL_LEN), dtype=np.int64)])
        self.slf = np.concatenate([self.slf, np.zeros((n, self.slf.shape[1]), dtype=np.int64)])
        free_n = int(self.g[G_RFREE_N])
        self.rfree = _free_stack(old, n, self.rfree[:free_n])
        self.g[G_RFREE_N] = free_n + n

    def grow(self, need_rows: int) -> None:
        """Double every pool that is short of the headroom the next command may need."""
        g = self.g
        if g[G_SFREE_N] < SHEAF_HEADROOM:
            self._grow_sheaves(max(len(self.shm), SHEAF_HEADROOM))
        if g[G_OVFREE_N] < 2:
            self._grow_oversize(max(len(self.ovm), 2))
        if g[G_RFREE_N] < need_rows:
            self._grow_rows(max(len(self.slm), need_rows))
        if len(self.sidr) - g[G_NSLABS] < need_rows:
            extra = max(len(self.sidr), need_rows)
            self.sidr = np.concatenate([self.sidr, np.full(extra, -1, dtype=np.int64)])
        if g[G_CRQ_N] >= len(self.crq):
            self.crq = np.concatenate([self.crq, np.zeros_like(self.crq)])
            self.crq2 = np.zeros(len(self.crq), dtype=np.int64)


@functools.lru_cache(maxsize=8)
def _mt_state(seed: int, q: float) -> np.ndarray:
    """``random.Random(seed)``'s Mersenne Twister state (624 words and the index), as int64,
    then the remote gate's probability ``q`` as float64 bits (``mt[625]``)."""
    # (the C generator itself: ``random.Random(seed)`` seeds an int exactly as it does, and
    # its state is that tuple's second item; importing ``random`` costs ~1 ms of interpreter
    # work, hashlib's sha512 among it, on a replay thread that holds the GIL meanwhile)
    import _random

    state = np.zeros(626, dtype=np.int64)
    state[:625] = _random.Random(seed).getstate()
    state[625:626] = np.array([q], dtype=np.float64).view(np.int64)
    state.flags.writeable = False
    return state


def _free_stack(old: int, n: int, free: np.ndarray) -> np.ndarray:
    """A free-id stack as long as the grown pool (every id may be free at once): the new ids
    ``old..old+n-1`` below the ids already free, so recycled ids keep being reused first."""
    stack = np.empty(old + n, dtype=np.int64)
    stack[:n] = np.arange(old + n - 1, old - 1, -1, dtype=np.int64)
    stack[n : n + len(free)] = free
    return stack


def _columns(plan: Plan) -> tuple[np.ndarray, ...]:
    """The plan's columns with the exact dtypes the engine is compiled for (one signature)."""
    return (
        np.ascontiguousarray(plan.ts_ns, dtype=np.int64),
        np.ascontiguousarray(plan.cmd, dtype=np.uint8),
        np.ascontiguousarray(plan.cpu, dtype=np.uint16),
        np.ascontiguousarray(plan.a, dtype=np.int64),
        np.ascontiguousarray(plan.b, dtype=np.int64),
        np.ascontiguousarray(plan.c, dtype=np.int64),
        np.ascontiguousarray(plan.aux, dtype=np.int64),
    )


def _check(plan: Plan, params: ModelParams, facts: _Facts | None = None) -> None:
    """Reject plans the reference would fail on with an IndexError (and we would corrupt).
    ``facts``: the plan's :func:`_facts`, when already known (a sweep checks many params)."""
    if len(plan) == 0:
        return
    max_cpu, max_node = (facts or _facts(plan))[:2]
    if max_cpu >= params.cpus:
        raise ValueError(f"plan uses CPU {max_cpu} but params has {params.cpus}")
    if max_node >= params.nodes:
        raise ValueError(f"plan allocates on node {max_node} of {params.nodes}")


def _feed(s: _State, cols: tuple[np.ndarray, ...], params: ModelParams, i: int = 0) -> None:
    """Run plan columns from command ``i`` on state ``s``, growing its pools whenever the
    interpreter asks."""
    ex = _entry("exec_plan")
    ts, cmd, cpu, a, b, c, aux = cols
    cap, ops = params.sheaf_capacity, params.objects_per_slab
    n = len(cmd)
    while True:
        i = ex(
            ts,
            cmd,
            cpu,
            a,
            b,
            c,
            aux,
            s.P,
            s.cn,
            s.g,
            s.pc,
            s.nd,
            s.shm,
            s.sho,
            s.sfree,
            s.ovm,
            s.ovo,
            s.ovfree,
            s.slm,
            s.slf,
            s.sidr,
            s.rfree,
            s.cfree,
            s.crq,
            s.crq2,
            s.mt,
            s.objs,
            s.pslot,
            s.skips,
            s.scr,
            s.one,
            s.bk,
            i,
        )
        st = int(s.g[G_STATUS])
        if st == ST_DONE:
            break
        if st == ST_ERROR:
            from sheaftune.model.reference import ModelError

            if cmd[i] in (4, 9):
                raise ModelError(
                    "6.18 kmem_cache_prefill_sheaf(size=0) on a cache without "
                    "sheaves dereferences NULL in the kernel"
                )
            raise ValueError(f"unknown plan command {int(cmd[i])}")
        k = int(cmd[i])
        need = cap // ops + 3 + (int(b[i]) // ops + 2 if k in (4, 7, 9) else 0)
        s.grow(need)
        s.g[G_STATUS] = ST_DONE
    assert i == n


def _replay(
    cols: tuple[np.ndarray, ...],
    plan: Plan,
    facts: _Facts,
    params: ModelParams,
    checkpoint: int | None = None,
) -> tuple[ReplayResult, ReplayResult | None]:
    """One replay of the whole plan; with ``checkpoint`` k, also the result after its first k
    commands, taken from the same replay (the state at the cut is exactly what a replay of
    ``plan[:k]`` ends with: the interpreter never looks ahead, and reading a result changes
    nothing)."""
    # this thread's buffer from its last replay, taken (a nested replay gets its own)
    buf = getattr(_spare, "buf", None)
    _spare.buf = None
    s = _State(plan, params, facts, buf)
    pre = None
    i = 0
    if checkpoint is not None and 0 < checkpoint < len(plan):
        k = checkpoint
        _feed(s, tuple(col[:k] for col in cols[:6]) + cols[6:], params)
        pre = _result(s, params)
        i = k
    _feed(s, cols, params, i)
    full = _result(s, params)
    if checkpoint is not None and checkpoint >= len(plan) > 0:
        pre = full
    # the results hold no array of the state: its buffer is free for the next replay
    if len(s.buf) <= _SPARE_WORDS:
        _spare.buf = s.buf
    return full, pre


#: Per thread, the state buffer of its last replay (:class:`_State`), kept when at most
#: ``_SPARE_WORDS`` int64 long (1 MiB: enough for the plans of a trace of a million events; a
#: huge trace's replays must not hold more memory between them, per thread of a sweep).
_spare = threading.local()
_SPARE_WORDS = 1 << 17


@functools.lru_cache(maxsize=4)
def _result_layout(kernel: str) -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...], np.ndarray]:
    """Counter and extra names of ``kernel`` and their slots in ``g``."""
    idx = {name: i for i, name in enumerate(_STAT_NAMES)}
    for name in STAT_ITEMS[kernel]:
        if name not in idx:
            raise RuntimeError(f"the fast engine does not model counter {name!r}")
    xidx = {name: len(_STAT_NAMES) + i for i, name in enumerate(_EXTRA_NAMES)}
    for name in EXTRA:
        if name not in xidx:
            raise RuntimeError(f"the fast engine does not model extra {name!r}")
    names = tuple(STAT_ITEMS[kernel])
    extras = tuple(EXTRA)
    return (
        names,
        np.array([idx[n] for n in names], dtype=np.intp),
        extras,
        np.array([xidx[n] for n in extras], dtype=np.intp),
    )


def _result(s: _State, params: ModelParams) -> ReplayResult:
    names, at, xnames, xat = _result_layout(params.kernel)
    g = s.g
    counters = dict(zip(names, g[at].tolist(), strict=True))
    extras = dict(zip(xnames, g[xat].tolist(), strict=True))
    # plain lists once: per-element numpy indexing cost more than the replay of a small cache
    pc = s.pc.tolist()
    nd = s.nd.tolist()
    t_set, t_first, now = int(g[G_T_SET]), int(g[G_T_FIRST]), int(g[G_T_LAST])
    span = now - t_first if t_set else 0
    shm = s.shm

    cpus = []
    snap_cpus = []
    cpu_node = params.cpu_node
    for c in range(params.cpus):
        row = pc[c]
        main, spare, rcu = (
            None if sid < 0 else int(shm[sid, SH_SZ])
            for sid in (row[PC_MAIN], row[PC_SPARE], row[PC_RCU])
        )
        held = (main or 0) + (spare or 0) + (rcu or 0)
        integral = row[PC_INT]
        if t_set:
            integral += row[PC_VAL] * (now - row[PC_SINCE])
        mean = integral / span if span > 0 else None
        cpus.append({"cpu": c, "now": held, "max": row[PC_MAX], "mean": mean})
        snap_cpus.append(
            {"cpu": c, "node": cpu_node[c], "main": main, "spare": spare, "rcu_free": rcu}
        )
    nodes = []
    barns = []
    for n in range(params.nodes):
        row = nd[n]
        integral = row[ND_INT]
        if t_set:
            integral += row[ND_VAL] * (now - row[ND_SINCE])
        nodes.append(
            {
                "node": n,
                "barn_now": row[ND_BHELD],
                "barn_max": row[ND_MAX],
                "barn_mean": integral / span if span > 0 else None,
            }
        )
        barns.append({"node": n, "full": row[ND_FN], "empty": row[ND_EN]})
    skipped = {SKIP_NAMES[i]: int(v) for i, v in enumerate(s.skips.tolist()) if v}
    return ReplayResult(
        counters, extras, {"cpus": cpus, "nodes": nodes}, {"cpus": snap_cpus, "barns": barns},
        skipped,
    )  # fmt: skip


def _walk(head: int, nxt: np.ndarray, col: int) -> list[int]:
    out = []
    while head >= 0:
        out.append(int(head))
        head = int(nxt[head, col])
    return out


def full_state(s: _State, params: ModelParams) -> dict[str, Any]:
    """Every object's place, in the canonical form of ``SheafModel.full_state()`` (per-CPU
    sheaves bottom first, barn lists head last, rcu sheaves in flight, classic kfree_rcu
    batches, prefilled sheaves in creation order, the slab layer), for equality tests."""
    shm, sho, slm, slf = s.shm, s.sho, s.slm, s.slf

    def objs(sid: int) -> tuple[int, ...] | None:
        return None if sid < 0 else tuple(int(x) for x in sho[sid, : shm[sid, SH_SZ]])

    pcs = tuple(
        (objs(s.pc[c, PC_MAIN]), objs(s.pc[c, PC_SPARE]), objs(s.pc[c, PC_RCU]))
        for c in range(params.cpus)
    )
    barns = tuple(
        (
            tuple(objs(x) for x in reversed(_walk(s.nd[n, ND_FH], shm, SH_NX))),
            int(s.nd[n, ND_EN]),
        )
        for n in range(params.nodes)
    )
    rcu = tuple(
        (objs(x), int(shm[x, SH_RCPU]), ("barn", "nobarn")[shm[x, SH_RKIND]], int(shm[x, SH_NODE]))
        for x in _walk(s.g[G_RQ_HEAD], shm, SH_NX)
    )
    nq = int(s.g[G_CRQ_N])
    classic = tuple(
        tuple(int(o) for cc, o in s.crq[:nq].tolist() if cc == c) for c in range(params.cpus)
    )
    pre: list[tuple[int, int, tuple[int, ...] | None]] = []
    for h in s.pslot.tolist():
        if h >= OV_BASE:
            o = h - OV_BASE
            n_o = s.ovm[o, OV_SZ]
            pre.append(
                (int(s.ovm[o, OV_PSEQ]), int(s.ovm[o, OV_CAP]), tuple(s.ovo[o, :n_o].tolist()))
            )
        elif h >= 0:
            pre.append((int(shm[h, SH_PSEQ]), params.sheaf_capacity, objs(h)))
    prefilled = tuple((cap, ob) for _, cap, ob in sorted(pre))
    live = [sid for sid in range(int(s.g[G_NSLABS])) if s.sidr[sid] >= 0]
    slabs = []
    for sid in live:
        r = s.sidr[sid]
        slabs.append(
            (
                sid,
                int(slm[r, SL_NODE]),
                int(slm[r, SL_INUSE]),
                tuple(slf[r, : slm[r, SL_NFREE]].tolist()),
                int(slm[r, SL_WHERE]),
                int(slm[r, SL_OWNER]),
            )
        )
    slab: dict[str, object] = {
        "slabs": tuple(slabs),
        "partial": tuple(
            tuple(int(slm[r, SL_SID]) for r in _walk(s.nd[n, ND_PH], slm, SL_NEXT))
            for n in range(params.nodes)
        ),
    }
    if params.kernel == "6.18":
        slab["cpu_slab"] = tuple(
            -1 if s.pc[c, PC_CSLAB] < 0 else int(slm[s.pc[c, PC_CSLAB], SL_SID])
            for c in range(params.cpus)
        )
        slab["cpu_freelist"] = tuple(
            tuple(s.cfree[c, : s.pc[c, PC_CFN]].tolist()) for c in range(params.cpus)
        )
        slab["cpu_partial"] = tuple(
            tuple(int(slm[r, SL_SID]) for r in _walk(s.pc[c, PC_CPH], slm, SL_NEXT))
            for c in range(params.cpus)
        )
    return {
        "pcs": pcs,
        "barns": barns,
        "rcu_pending": rcu,
        "classic_rcu": classic,
        "prefilled": prefilled,
        "online": (True,) * params.cpus,
        "slab": slab,
    }


class Session:
    """One replay fed its plan in consecutive chunks (``tracereplay`` streams huge caches).

    The state carries over between chunks exactly as within one plan, so feeding the chunks
    of a plan in order gives ``run(plan)``'s result; ``result()`` can be taken between chunks
    (a warm-up checkpoint) without disturbing the replay. Pools are sized from the whole
    plan's object and sheaf counts and its largest prefill, given up front.
    """

    def __init__(
        self, params: ModelParams, n_objects: int, n_sheaves: int, max_prefill: int = 0
    ) -> None:
        empty = np.empty(0, dtype=np.int64)
        slots = Plan(
            empty, empty.astype(np.uint8), empty.astype(np.uint16), empty, empty, empty, empty,
            n_objects, n_sheaves,
        )  # fmt: skip
        self.params = params
        self._s = _State(slots, params, _Facts(0, -1, max(max_prefill, 1), 0))

    def feed(self, plan: Plan) -> None:
        _check(plan, self.params)
        _feed(self._s, _columns(plan), self.params)

    def result(self) -> ReplayResult:
        return _result(self._s, self.params)


def run_with_state(plan: Plan, params: ModelParams) -> tuple[ReplayResult, dict[str, Any]]:
    """``run`` plus the final :func:`full_state` (for tests holding the engines equal)."""
    facts = _facts(plan)
    _check(plan, params, facts)
    s = _State(plan, params, facts)
    _feed(s, _columns(plan), params)
    return _result(s, params), full_state(s, params)


def run(plan: Plan, params: ModelParams) -> ReplayResult:
    """Replay ``plan`` with the compiled engine; the same result as ``run_reference``."""
    facts = _facts(plan)
    _check(plan, params, facts)
    return _replay(_columns(plan), plan, facts, params)[0]


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _shared_pool() -> ThreadPoolExecutor:
    """One pool of ``os.cpu_count()`` threads for every sweep of the process (starting threads
    per sweep cost more than the replays of a small cache)."""
    from concurrent.futures import ThreadPoolExecutor

    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="sweep")
        return _pool


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist here; start a new pool."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def sweep(
    plan: Plan,
    params_list: Sequence[ModelParams],
    checkpoint: int | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    facts: _Facts | None = None,
) -> list[tuple[ReplayResult, ReplayResult | None]]:
    """Replay one plan under several parameter sets (a capacity sweep) in parallel threads:
    ``(result, checkpoint result)`` per parameter set, in ``params_list`` order.

    With ``checkpoint`` k (``0 < k``), the second result is the state after the first k
    commands, as ``run(plan[:k])`` would give (``recommend``'s warm-up cut), read during the
    same replay; without, it is None.

    The compiled interpreter releases the GIL (the JIT kernels are ``nogil``; the AOT build's
    entry point is built with numba's ``release_gil``, see ``sheaftune.compiled``), so threads
    share the plan's columns without copying them. Jobs start in ``params_list`` order, so a
    sweep listing its slowest replays first (small capacities) balances best.
    ``progress(i)`` is called as each replay finishes (from the worker thread); ``facts``:
    ``plan_stats(plan).facts`` when the caller has them.
    """
    if not params_list:
        return []
    facts = facts or _facts(plan)
    for p in params_list:
        _check(plan, p, facts)
    cols = _columns(plan)
    if checkpoint is not None and checkpoint <= 0:
        checkpoint = None

    def one(i: int) -> tuple[ReplayResult, ReplayResult | None]:
        r = _replay(cols, plan, facts, params_list[i], checkpoint)
        if progress is not None:
            progress(i)
        return r

    if workers == 1 or len(params_list) == 1:
        # (one replay per call is analyze's case: no thread, and no os.cpu_count(), which
        # reads /sys at every call)
        return [one(i) for i in range(len(params_list))]
    n_cpu = os.cpu_count() or 1
    workers = min(len(params_list), workers or n_cpu)
    if workers <= 1:
        return [one(i) for i in range(len(params_list))]
    if workers == min(len(params_list), n_cpu):
        return list(_shared_pool().map(one, range(len(params_list))))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(len(params_list))))


def run_many(
    plan: Plan,
    params_list: Sequence[ModelParams],
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[ReplayResult]:
    """Replay one plan under several parameter sets in parallel threads (:func:`sweep`
    without a checkpoint); results come back in ``params_list`` order.
    (Threads stay the default with the AOT build: on the 5-cache recommend sweep of the large
    fixture, 72 short replays, threads and one worker measured the same within noise on two
    busy cores; with free cores the long replays of big caches overlap.)"""
    return [full for full, _ in sweep(plan, params_list, None, workers, progress)]
