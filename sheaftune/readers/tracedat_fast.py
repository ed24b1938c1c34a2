"""The trace.dat reader's compiled path: whole CPU streams per kernel call, no copies.

:mod:`sheaftune.readers.tracedat` parses the container and hands the selected buffer here when
compiled kernels are at hand (:func:`reader_kernels`: the ahead-of-time build, or numba when it
is loaded anyway). The page data is cut into jobs of whole pages (about :data:`JOB_BYTES`
each): slices of the mapped file for uncompressed data, or runs of zstd chunks that
``multi_decompress_to_buffer`` (one call, its own threads) decompressed back to back. Each job
is one call of the page walk and one of the exact cache-name interning, on a thread pool (the
kernels release the GIL), writing straight into its slice of shared columns; one compiled k-way
merge (ties to the lower CPU, as trace-cmd) then writes the final columns.

It gives up (returns None, having changed nothing) whenever the data is not perfectly regular:
a truncated or partial CPU stream, an implausible or corrupt chunk, zlib, a corrupt page in
strict mode. The streaming reader in ``tracedat`` then reads the file and reports exactly as it
always has. Memory: the decompressed data of one batch (at most :data:`BATCH_BYTES`) plus
columns sized by a bound on the rows its pages can hold (only the rows written are touched).
"""

from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sheaftune.readers import _kconst as K

if TYPE_CHECKING:
    from sheaftune.readers.ringbuffer import KmemLayout
    from sheaftune.readers.tracedat import _Buffer, _TraceDat

KERNELS_MODULE = "sheaftune.readers._jit"
#: page data per walk call: enough jobs to keep both threads busy, few enough calls to not count
JOB_BYTES = 4 << 20
#: decompressed page data (and the columns for its rows) held at once
BATCH_BYTES = 64 << 20
#: refuse a chunk of more pages than this (same bound as the streaming reader)
MAX_CHUNK_PAGES = 1024
#: threads for decompression and walks
MAX_THREADS = 4

#: the walk's raw columns in kernel order, with the dtypes the compiled signatures fix
ROW_COLS: tuple[tuple[str, type], ...] = (
    ("ts", np.int64),
    ("op", np.uint8),
    ("pid", np.int32),
    ("call_site", np.uint64),
    ("ptr", np.uint64),
    ("bytes_req", np.uint32),
    ("bytes_alloc", np.uint32),
    ("gfp", np.uint32),
    ("node", np.int16),
    ("name_key", np.int32),
)


def reader_kernels() -> Any:
    """The reader's compiled kernels (AOT build, else numba JIT): see :mod:`sheaftune.compiled`."""
    from sheaftune.compiled import kernels

    return kernels(KERNELS_MODULE)


@dataclass
class CpuSummary:
    """What the walks of one CPU's stream counted (the streaming reader's DecodedPages facts)."""

    pages: int = 0
    records: int = 0
    bad_pages: int = 0
    unknown_ids: int = 0
    short_records: int = 0
    marker_ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    marker_count: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    @property
    def lost_events(self) -> int:
        return int(self.marker_count[self.marker_count > 0].sum())

    @property
    def lost_markers(self) -> int:
        return len(self.marker_count)


@dataclass
class _Job:
    cpu: int
    data: np.ndarray  # whole pages, uint8, contiguous
    base: int = 0  # first row of its slice of the batch columns
    cap: int = 0
    rows: int = 0
    stats: Any = None
    m_ts: Any = None
    m_cnt: Any = None
    names: list[str] = field(default_factory=list)  # local name code - 1 -> name


@dataclass
class FastResult:
    """Merged columns (raw call sites, name keys) plus the per-CPU facts."""

    cols: dict[str, np.ndarray]
    names: dict[int, str]  # name key -> cache name
    summaries: list[tuple[int, CpuSummary]]  # CPUs with data, ascending
    backwards: dict[int, int]


class _GiveUp(Exception):
    """The data is not regular enough for the fast path: the streaming reader takes over."""


def read_fast(
    r: _TraceDat, buf: _Buffer, page_size: int, long_size: int, layout: KmemLayout, k: Any
) -> FastResult | None:
    """Read ``buf``'s CPU streams with the kernels ``k``; None when the streaming reader must."""
    try:
        return _Reader(r, buf, page_size, long_size, layout, k).run()
    except _GiveUp:
        return None


class _Reader:
    def __init__(
        self,
        r: _TraceDat,
        buf: _Buffer,
        page_size: int,
        long_size: int,
        layout: KmemLayout,
        k: Any,
    ):
        self.r = r
        self.buf = buf
        self.ps = page_size
        self.long = long_size
        self.hdr = 8 + long_size
        self.lay = layout
        self.k = k
        data_len = page_size - self.hdr
        if data_len <= 0:
            raise _GiveUp
        min_rec = 4 + ((int(layout.lay_min.min()) + 3) & ~3)
        self.rows_per_page = data_len // min_rec + 1  # no page holds more kmem rows
        self.max_rows_page = data_len // 8 + 1  # the walk's own stop margin
        self.workers = max(1, min(os.cpu_count() or 1, MAX_THREADS))
        self.u32 = struct.Struct(">I" if r.big else "<I")
        # the layout tables with the exact dtypes and layouts the compiled signatures expect
        self.evmap = np.ascontiguousarray(layout.evmap, dtype=np.int16)
        self.layouts = np.ascontiguousarray(layout.layouts, dtype=np.int64)
        self.lay_op = np.ascontiguousarray(layout.lay_op, dtype=np.uint8)
        self.lay_min = np.ascontiguousarray(layout.lay_min, dtype=np.int64)
        self.progress_done = 0
        self.progress_todo = sum(size for _, _, size in buf.cpus) or 1

    # --- jobs ----------------------------------------------------------------------------

    def run(self) -> FastResult:
        cpus = [(cpu, off, size) for cpu, off, size in sorted(self.buf.cpus) if size]
        if len({c for c, _, _ in cpus}) != len(cpus):
            raise _GiveUp  # a CPU listed twice: leave it to the streaming reader
        if self.buf.compressed:
            if self.r.compression != "zstd":
                raise _GiveUp
            batches = self._zstd_batches(cpus)
        else:
            batches = self._plain_batches(cpus)
        sets: list[tuple[dict[str, np.ndarray], list[_Job]]] = []
        pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None
        try:
            for make_jobs, nbytes in batches:
                jobs = make_jobs()
                sets.append((self._walk(jobs, pool), jobs))
                self._progress(nbytes)
        except BaseException:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            raise
        if pool is not None:
            pool.shutdown()
        return self._merge([c for c, _, _ in cpus], sets)

    def _progress(self, nbytes: int) -> None:
        cb = self.r.opts.progress
        self.progress_done += nbytes
        if cb is not None:
            cb(min(self.progress_done, self.progress_todo), self.progress_todo)

    def _plain_batches(self, cpus: list[tuple[int, int, int]]) -> list[tuple[Any, int]]:
        ps = self.ps
        step = max(ps, JOB_BYTES - JOB_BYTES % ps)
        pieces: list[tuple[int, int, int]] = []
        for cpu, off, size in cpus:
            if off + size > self.r.size or size % ps:
                raise _GiveUp  # truncated or a partial page: the streaming reader reports it
            pieces.extend((cpu, off + s, min(step, size - s)) for s in range(0, size, step))
        data = self.r.data
        batches: list[tuple[Any, int]] = []
        for group in _group(pieces, lambda p: p[2]):

            def make(group: list[tuple[int, int, int]] = group) -> list[_Job]:
                return [
                    _Job(cpu, np.frombuffer(data, dtype=np.uint8, count=n, offset=o))
                    for cpu, o, n in group
                ]

            batches.append((make, sum(p[2] for p in group)))
        return batches

    def _zstd_batches(self, cpus: list[tuple[int, int, int]]) -> list[tuple[Any, int]]:
        """Index every chunk (checking each header), then batches of whole chunks."""
        ps = self.ps
        data = self.r.data
        u32 = self.u32.unpack_from
        frames: list[tuple[int, int, int, int]] = []  # cpu, data offset, clen, ulen
        for cpu, off, size in cpus:
            end = off + size + 4  # trace-cmd's size leaves out the u32 chunk count
            if end > self.r.size:
                raise _GiveUp
            pos = off + 4
            (count,) = u32(data, off)
            if count > (size // 8):
                raise _GiveUp
            for _ in range(count):
                if pos + 8 > end:
                    raise _GiveUp
                clen = u32(data, pos)[0]
                ulen = u32(data, pos + 4)[0]
                pos += 8
                if ulen % ps or ulen > MAX_CHUNK_PAGES * ps or pos + clen > end:
                    raise _GiveUp
                if ulen:
                    frames.append((cpu, pos, clen, ulen))
                elif clen:
                    raise _GiveUp
                pos += clen
        batches: list[tuple[Any, int]] = []
        for group in _group(frames, lambda f: f[3]):

            def make(group: list[tuple[int, int, int, int]] = group) -> list[_Job]:
                return self._decompress(group)

            batches.append((make, sum(f[2] + 8 for f in group)))
        return batches

    def _decompress(self, frames: list[tuple[int, int, int, int]]) -> list[_Job]:
        """Decompress ``frames`` in one call; jobs over runs that lie back to back in memory."""
        import zstandard

        segs = np.array([(f[1], f[2]) for f in frames], dtype=np.uint64)
        sizes = np.array([f[3] for f in frames], dtype=np.uint64)
        total = int(sizes.sum())
        threads = self.workers if total >= 2 * JOB_BYTES else 1
        try:
            src = zstandard.BufferWithSegments(self.r.data, segs.tobytes())
            out = zstandard.ZstdDecompressor().multi_decompress_to_buffer(
                src, decompressed_sizes=sizes.tobytes(), threads=threads
            )
        except Exception:  # noqa: BLE001 - corrupt data: the streaming reader names the chunk
            raise _GiveUp from None
        if len(out) != len(frames):
            raise _GiveUp
        jobs: list[_Job] = []
        run: list[np.ndarray] = []
        run_cpu = -1
        run_bytes = 0
        run_end = 0

        def close() -> None:
            if run:
                # the run's segments are adjacent in one buffer: view them as one array (the
                # first segment's array keeps the decompressed buffer alive)
                first = run[0]
                whole = np.lib.stride_tricks.as_strided(first, shape=(run_bytes,), strides=(1,))
                jobs.append(_Job(run_cpu, whole))

        for i, (cpu, _, _, ulen) in enumerate(frames):
            seg = np.frombuffer(out[i], dtype=np.uint8)  # type: ignore[call-overload]
            if len(seg) != ulen:
                raise _GiveUp
            addr = seg.ctypes.data
            if run and (cpu != run_cpu or addr != run_end or run_bytes >= JOB_BYTES):
                close()
                run = []
            if not run:
                run_cpu, run_bytes = cpu, 0
            run.append(seg)
            run_bytes += ulen
            run_end = addr + ulen
        close()
        return jobs

    # --- walks ---------------------------------------------------------------------------

    def _walk(self, jobs: list[_Job], pool: ThreadPoolExecutor | None) -> dict[str, np.ndarray]:
        """Count each job's rows, then walk every job into its slice of one column set sized
        exactly (by threads); the column set."""
        if pool is None or len(jobs) < 2:
            for j in jobs:
                self._count_one(j)
        else:
            for f in [pool.submit(self._count_one, j) for j in jobs]:
                f.result()
        rows = 0
        for j in jobs:
            j.base = rows
            rows += j.cap
        cols: dict[str, np.ndarray] = {name: np.empty(rows, dtype=dt) for name, dt in ROW_COLS}
        if pool is None or len(jobs) < 2:
            for j in jobs:
                self._walk_one(j, cols)
        else:
            for f in [pool.submit(self._walk_one, j, cols) for j in jobs]:
                f.result()
        for j in jobs:
            if j.stats[K.S_ERR]:
                raise _GiveUp  # strict mode: the streaming reader raises the exact error
        return cols

    def _count_one(self, j: _Job) -> None:
        n = self.k.count_rows(
            j.data,
            len(j.data) // self.ps,
            self.ps,
            self.hdr,
            self.long,
            bool(self.r.big),
            self.evmap,
            self.lay_min,
        )
        # the walk stops before a page that could overflow its outputs: leave it that margin
        j.cap = int(n) + self.max_rows_page

    def _walk_one(self, j: _Job, cols: dict[str, np.ndarray]) -> None:
        k = self.k
        npages = len(j.data) // self.ps
        a, b = j.base, j.base + j.cap
        m_ts = np.empty(npages + 1, dtype=np.int64)
        m_cnt = np.empty(npages + 1, dtype=np.int64)
        m_row = np.empty(npages + 1, dtype=np.int64)
        none_u8 = np.empty(0, dtype=np.uint64)
        none_i8 = np.empty(0, dtype=np.int64)
        size = 1 << 10  # interning table: a few dozen cache names is usual
        while True:
            st = np.zeros(K.NSTATS, dtype=np.int64)
            t_slot = np.full(size, -1, dtype=np.int64)
            t_pos = np.empty(size // 2, dtype=np.int64)
            t_len = np.empty(size // 2, dtype=np.int64)
            n = k.walk_pages(
                j.data,
                0,
                npages,
                self.ps,
                self.hdr,
                self.long,
                bool(self.r.big),
                self.evmap,
                self.layouts,
                self.lay_op,
                self.lay_min,
                bool(self.r.opts.salvage),
                cols["ts"][a:b],
                cols["op"][a:b],
                cols["pid"][a:b],
                cols["call_site"][a:b],
                cols["ptr"][a:b],
                cols["bytes_req"][a:b],
                cols["bytes_alloc"][a:b],
                cols["gfp"][a:b],
                cols["node"][a:b],
                none_u8,
                none_i8,
                none_i8,
                cols["name_key"][a:b],
                np.empty(size, dtype=np.uint64),
                t_slot,
                t_pos,
                t_len,
                m_ts,
                m_cnt,
                m_row,
                st,
            )
            if st[K.S_NAMES] >= 0:
                break
            size *= 8  # more distinct names than the table holds: again, larger
        j.stats = st
        j.rows = int(n)
        if st[K.S_ERR]:
            return
        if st[K.S_NEXT_PAGE] != npages:  # cannot happen: the count bounds the rows
            raise RuntimeError("page walk stopped early")
        nm = int(st[K.S_MARKS])
        j.m_ts, j.m_cnt = m_ts[:nm], m_cnt[:nm]
        nu = int(st[K.S_NAMES])
        for p, ln in zip(t_pos[:nu].tolist(), t_len[:nu].tolist(), strict=True):
            j.names.append(j.data[p : p + ln].tobytes().decode("utf-8", "replace"))

    # --- merge ---------------------------------------------------------------------------

    def _merge(
        self, cpus: list[int], sets: list[tuple[dict[str, np.ndarray], list[_Job]]]
    ) -> FastResult:
        r = self.r
        # name keys in CPU order, then stream order: deterministic whatever the threads did
        name_keys: dict[str, int] = {}
        by_cpu: dict[int, list[tuple[dict[str, np.ndarray], _Job]]] = {c: [] for c in cpus}
        for cols, jobs in sets:
            for j in jobs:
                by_cpu[j.cpu].append((cols, j))
        summaries: list[tuple[int, CpuSummary]] = []
        for cpu in cpus:
            s = CpuSummary()
            m_ts: list[np.ndarray] = []
            m_cnt: list[np.ndarray] = []
            for cols, j in by_cpu[cpu]:
                lut = np.zeros(len(j.names) + 1, dtype=np.int32)
                for i, name in enumerate(j.names):
                    lut[i + 1] = name_keys.setdefault(name, len(name_keys) + 1)
                codes = cols["name_key"][j.base : j.base + j.rows]
                if len(j.names) and not np.array_equal(lut, np.arange(len(lut))):
                    codes[:] = lut[codes]
                st = j.stats
                s.pages += len(j.data) // self.ps
                s.records += int(st[K.S_RECORDS])
                s.bad_pages += int(st[K.S_BAD_PAGES])
                s.unknown_ids += int(st[K.S_UNKNOWN_ID])
                s.short_records += int(st[K.S_SHORT])
                if len(j.m_ts):
                    m_ts.append(j.m_ts)
                    m_cnt.append(j.m_cnt)
                if r.tsc2nsec is not None or r.ts_offset:
                    ts = cols["ts"][j.base : j.base + j.rows]
                    if r.tsc2nsec is not None:
                        from sheaftune.readers.tracedat import _mul_u64_u32_shr

                        ts[:] = _mul_u64_u32_shr(ts, *r.tsc2nsec)
                    if r.ts_offset:
                        ts += np.int64(r.ts_offset)
            if m_ts:
                s.marker_ts, s.marker_count = np.concatenate(m_ts), np.concatenate(m_cnt)
            summaries.append((cpu, s))
        # one column set: several batches are joined (rows only, the capacity slack dropped)
        if len(sets) == 1:
            src = sets[0][0]
            segs = [(cpu, j.base, j.base + j.rows) for cpu in cpus for _, j in by_cpu[cpu]]
        else:
            parts: dict[str, list[np.ndarray]] = {name: [] for name, _ in ROW_COLS}
            segs = []
            at = 0
            for cpu in cpus:
                for cols, j in by_cpu[cpu]:
                    for name, _ in ROW_COLS:
                        parts[name].append(cols[name][j.base : j.base + j.rows])
                    segs.append((cpu, at, at + j.rows))
                    at += j.rows
            src = {name: np.concatenate(p) for name, p in parts.items()}
        ncpu = len(cpus)
        seg_start = np.array([s[1] for s in segs], dtype=np.int64)
        seg_end = np.array([s[2] for s in segs], dtype=np.int64)
        seg_next = np.full(len(segs), -1, dtype=np.int64)
        cpu_first = np.full(ncpu, -1, dtype=np.int64)
        last: dict[int, int] = {}
        index = {c: i for i, c in enumerate(cpus)}
        for si, (cpu, _, _) in enumerate(segs):
            ci = index[cpu]
            if ci in last:
                seg_next[last[ci]] = si
            else:
                cpu_first[ci] = si
            last[ci] = si
        total = int((seg_end - seg_start).sum())
        out: dict[str, np.ndarray] = {name: np.empty(total, dtype=dt) for name, dt in ROW_COLS}
        out_cpu = np.empty(total, dtype=np.uint16)
        scratch = [np.zeros(ncpu, dtype=np.int64) for _ in range(5)]
        back = scratch[4]
        n = self.k.merge_rows(
            seg_start,
            seg_end,
            seg_next,
            cpu_first,
            np.array(cpus, dtype=np.int64),
            *scratch,
            *(src[name] for name, _ in ROW_COLS),
            out["ts"],
            out_cpu,
            *(out[name] for name, _ in ROW_COLS[1:]),
        )
        if n != total:
            raise RuntimeError("merge wrote a wrong number of rows")
        out["cpu"] = out_cpu
        backwards = {cpus[i]: int(b) for i, b in enumerate(back.tolist()) if b}
        names = {v: name for name, v in name_keys.items()}
        return FastResult(out, names, summaries, backwards)


def _group(items: list[Any], size: Any) -> list[list[Any]]:
    """Consecutive items in groups of at most BATCH_BYTES (by ``size``), at least one each."""
    groups: list[list[Any]] = []
    cur: list[Any] = []
    n = 0
    for it in items:
        s = size(it)
        if cur and n + s > BATCH_BYTES:
            groups.append(cur)
            cur, n = [], 0
        cur.append(it)
        n += s
    if cur:
        groups.append(cur)
    return groups


def factorize_sites(k: Any, sites: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, distinct call sites in order of first appearance) of the merged column."""
    n = len(sites)
    codes = np.empty(n, dtype=np.int32)
    size = 1 << 12
    while True:
        tslot = np.full(size, -1, dtype=np.int64)
        first = np.empty(size // 2, dtype=np.int64)
        nu = k.factorize_u64(sites, codes, first, np.empty(size, dtype=np.uint64), tslot)
        if nu >= 0:
            return codes, sites[first[:nu]]
        size *= 8


def resolve_sites(k: Any, text: bytes, sites: np.ndarray) -> tuple[list[str], str | None]:
    """``symbol+0xoff`` (or ``0x...``) for ascending distinct ``sites`` from kallsyms ``text``,
    as :meth:`sheaftune.readers.kallsyms.Kallsyms.resolve`; plus the warning to give, if any."""
    from sheaftune.readers.kallsyms import _NAME

    nq = len(sites)
    w = text.find(b" ")
    best_sym = np.empty(nq, dtype=np.int64)
    best_addr = np.empty(nq, dtype=np.uint64)
    info = np.zeros(2, dtype=np.uint64)
    if text and 1 <= w <= 16:
        arr = np.frombuffer(text, dtype=np.uint8)
        k.kallsyms_lookup(
            arr, w, np.ascontiguousarray(sites, dtype=np.uint64), best_sym, best_addr, info
        )
    kept, amax = int(info[0]), int(info[1])
    if kept == 0:
        return [f"0x{a:x}" for a in sites.tolist()], (
            "no kallsyms in the file: call sites are raw addresses"
        )
    if amax == 0:
        return [f"0x{a:x}" for a in sites.tolist()], (
            "kallsyms addresses are all zero (kptr_restrict): call sites are raw addresses"
        )
    out: list[str] = []
    for a, ns, sa in zip(sites.tolist(), best_sym.tolist(), best_addr.tolist(), strict=True):
        if ns < 0 or a > amax:
            out.append(f"0x{a:x}")
        else:
            m = _NAME.match(text, ns)
            name = m.group().decode("utf-8", "replace") if m else ""
            out.append(f"{name}+0x{a - sa:x}")
    return out, None
