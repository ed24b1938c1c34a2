"""The trace.dat reader's compiled path: whole jobs of pages per kernel call, few copies.

:mod:`sheaftune.readers.tracedat` parses the container and hands the selected buffer here when
compiled kernels are at hand (:func:`reader_kernels`: the ahead-of-time build, or numba when it
is loaded anyway). The CPU streams are cut into jobs of whole pages (about :data:`JOB_BYTES`):
slices of the mapped file for uncompressed data, runs of consecutive zstd chunks otherwise
(or, when :mod:`sheaftune.zstd_prefetch` decompressed exactly those chunks at start-up, slices
of its pages, walked like an uncompressed file's).
Worker threads (two, or as many cores up to :data:`MAX_THREADS`) take jobs in order; a worker
decompresses its job into a buffer it reuses (zstd releases the GIL), walks the pages while
they are in its cache (the compiled walk releases the GIL too) into outputs it reuses, with the
cache names interned exactly in the walk, and appends the rows to shared columns. On the
calling thread, one compiled k-way merge (ties to the lower CPU, as trace-cmd; split at a pivot
time into two halves on two threads when every stream is monotonic) writes the final columns,
while a side thread resolves the distinct call sites and pids.

It gives up (returns None, having changed nothing) whenever the data is not perfectly regular:
a truncated or partial CPU stream, an implausible or corrupt chunk, zlib, a corrupt page in
strict mode. The streaming reader in ``tracedat`` then reads the file and reports exactly as it
always has. Memory: the columns (sized for about 64 bytes of page data per row, grown when the
rows are denser, never from a length field) plus a job's buffers per worker, plus the
prefetched pages while the walks use them.
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from sheaftune.readers import _kconst as K

if TYPE_CHECKING:
    from sheaftune.readers.kmemlayout import KmemLayout
    from sheaftune.readers.tracedat import _Buffer, _TraceDat

KERNELS_MODULE = "sheaftune.readers._jit"
#: page data per job (one walk call): small enough to stay in a core's cache from
#: decompression to walk, large enough that calls do not count
JOB_BYTES = 1 << 20
#: page data per job over pages decompressed at start-up (``sheaftune.zstd_prefetch``): no
#: decompression to keep in cache, so fewer, larger jobs (fewer hand-overs between the walkers
#: and the thread that collects their rows: the v7 fixture's analyze 3-5 ms shorter than at
#: 1 MiB, measured; uncompressed files' jobs gained nothing)
PREFETCHED_JOB_BYTES = 2 << 20
#: refuse a chunk of more pages than this (same bound as the streaming reader)
MAX_CHUNK_PAGES = 1024
#: page bytes per row the shared columns are first sized for (a build trace has ~64)
ROW_BYTES_GUESS = 48
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

#: columns the merge's allocation holds for ``tracedat`` to fill
ID_COLS: tuple[tuple[str, type], ...] = (("site_id", np.int32), ("comm_id", np.int32))


def reader_kernels() -> Any:
    """The reader's compiled kernels (AOT build, else numba JIT): see :mod:`sheaftune.compiled`."""
    from sheaftune.compiled import kernels

    return kernels(KERNELS_MODULE)


# plain classes with slots, not dataclasses: this module is imported on every read, and each
# dataclass costs its start-up a millisecond
class CpuSummary:
    """What the walks of one CPU's stream counted (the streaming reader's DecodedPages facts)."""

    __slots__ = (
        "pages",
        "records",
        "bad_pages",
        "unknown_ids",
        "short_records",
        "marker_ts",
        "marker_count",
    )

    def __init__(self) -> None:
        self.pages = self.records = self.bad_pages = self.unknown_ids = self.short_records = 0
        self.marker_ts = self.marker_count = np.empty(0, np.int64)

    @property
    def lost_events(self) -> int:
        return int(self.marker_count[self.marker_count > 0].sum())

    @property
    def lost_markers(self) -> int:
        return len(self.marker_count)


class _Job:
    __slots__ = (
        "cpu",
        "nbytes",
        "offset",
        "frames",
        "base",
        "rows",
        "stats",
        "m_ts",
        "m_cnt",
        "names",
        "file_bytes",
        "src",
    )

    def __init__(self, cpu: int, nbytes: int, offset: int = 0):
        self.cpu = cpu
        self.nbytes = nbytes  # page data
        self.offset = offset  # uncompressed: where the pages lie in the file
        self.frames: list[tuple[int, int, int]] = []  # zstd: (off, clen, ulen)
        # results
        self.base = 0  # first row in the shared columns
        self.rows = 0
        self.stats: Any = None
        self.m_ts: Any = None
        self.m_cnt: Any = None
        self.names: list[str] = []  # local name code - 1 -> name
        self.file_bytes = nbytes  # of the file, for the progress callback
        self.src: Any = None  # plain: the pages, when not the file's (prefetched)


class FastResult:
    """Merged columns (raw call sites, name keys) plus the per-CPU facts. ``site_parts``:
    (first row, end row, distinct call sites in order of first appearance) of each part of
    the merge, its rows' codes into those sites in ``cols["site_id"]``."""

    __slots__ = ("cols", "names", "summaries", "backwards", "site_parts")

    def __init__(
        self,
        cols: dict[str, np.ndarray],
        names: dict[int, str],
        summaries: list[tuple[int, CpuSummary]],
        backwards: dict[int, int],
    ):
        self.cols = cols
        self.names = names  # name key -> cache name
        self.summaries = summaries  # CPUs with data, ascending
        self.backwards = backwards
        self.site_parts: list[tuple[int, int, np.ndarray]] = []


def _parallel(items: list[Any], work: Any, workers: int, done_cb: Any = None) -> None:
    """``work(item)`` for every item on ``workers`` threads, the calling thread one of them,
    taken in order; ``done_cb(item)`` on the calling thread, in order, as items complete
    (between its own items, then for the rest). The first error (or Ctrl-C here) stops the
    taking of items and is raised. (The caller works rather than waits: a thread more than
    the cores would take turns with the walkers, each of the caller's wake-ups to collect
    preempting one. Plain threads: concurrent.futures would cost the start-up its import,
    logging included.)"""
    n = len(items)
    done = [threading.Event() for _ in items]
    errors: list[BaseException | None] = [None] * n
    nxt = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def run() -> bool:
        """Work the next item; False when none is left (or the taking stopped)."""
        if stop.is_set():
            return False
        with lock:
            i = nxt[0]
            if i >= n:
                return False
            nxt[0] = i + 1
        try:
            work(items[i])
        except BaseException as e:  # noqa: BLE001 - raised on the calling thread, in order
            errors[i] = e
            stop.set()
        finally:
            done[i].set()
        return True

    def loop() -> None:
        while run():
            pass

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(min(workers, n) - 1)]
    for t in threads:
        t.start()
    collected = 0

    def collect(wait: bool) -> None:
        nonlocal collected
        while collected < n and (wait or done[collected].is_set()):
            done[collected].wait()
            e = errors[collected]
            if e is not None:
                raise e
            if done_cb is not None:
                done_cb(items[collected])
            collected += 1

    try:
        while run():
            collect(False)
        collect(True)
    except BaseException:
        stop.set()  # the workers finish the job in hand and take no other
        raise
    for t in threads:
        t.join()


class _GiveUp(Exception):
    """The data is not regular enough for the fast path: the streaming reader takes over."""


def read_fast(
    r: _TraceDat,
    buf: _Buffer,
    page_size: int,
    long_size: int,
    layout: KmemLayout,
    k: Any,
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
        #: the owner of the pages decompressed at start-up (``sheaftune.zstd_prefetch``),
        #: which plain jobs may walk instead of the file's
        self.src_owner: Any = None

    # --- jobs ----------------------------------------------------------------------------

    def run(self) -> FastResult:
        cpus = [(cpu, off, size) for cpu, off, size in sorted(self.buf.cpus) if size]
        if len({c for c, _, _ in cpus}) != len(cpus):
            raise _GiveUp  # a CPU listed twice: leave it to the streaming reader
        if self.buf.compressed:
            if self.r.compression != "zstd":
                raise _GiveUp
            jobs = self._zstd_jobs(cpus)
            held = sum(clen for j in jobs for _, clen, _ in j.frames)
            jobs = self._prefetched(jobs)
        else:
            jobs = self._plain_jobs(cpus)
            held = 0
        # (the prefetched pages go with this reader: never before a worker is done with them)
        return self._run(cpus, jobs, held)

    def _prefetched(self, jobs: list[_Job]) -> list[_Job]:
        """The zstd jobs as plain jobs over the pages decompressed at start-up, when they are
        this file's and buffer's and every CPU's chunks are exactly this chunk index's (jobs
        of consecutive chunks whose pages lie back to back); else the jobs as they are."""
        from sheaftune import zstd_prefetch

        if self.buf.name:
            zstd_prefetch.discard()
            return jobs
        index: dict[int, list[tuple[int, int, int]]] = {}
        for j in jobs:
            index.setdefault(j.cpu, []).extend(j.frames)
        got = zstd_prefetch.take(self.r.path, index)
        if got is None:
            return jobs
        addrs, self.src_owner = got
        plain: list[_Job] = []
        for cpu, chunks in index.items():  # (CPUs ascending, as the jobs)
            job: _Job | None = None
            end = 0
            for (_, clen, ulen), at in zip(chunks, addrs[cpu], strict=True):
                if job is None or at != end or job.nbytes + ulen > PREFETCHED_JOB_BYTES:
                    if job is not None:
                        job.src = _at(end - job.nbytes, job.nbytes)
                    job = _Job(cpu, 0)
                    job.file_bytes = 0
                    plain.append(job)
                job.nbytes += ulen
                job.file_bytes += clen + 8  # (the progress counts the file's bytes)
                end = at + ulen
            if job is not None:
                job.src = _at(end - job.nbytes, job.nbytes)
        return plain

    def _run(self, cpus: list[tuple[int, int, int]], jobs: list[_Job], held: int) -> FastResult:
        pages = sum(j.nbytes for j in jobs) // self.ps
        # shared columns: rows are appended job by job; sized for about 64 bytes of page data
        # per row (grown if needed), and for compressed data never beyond 16 times what the
        # file holds (the uncompressed sizes are length fields: a hostile file could claim any)
        cap = min(pages * self.rows_per_page, pages * self.ps // ROW_BYTES_GUESS + 1024)
        if self.buf.compressed:
            cap = min(cap, held * 16 // ROW_BYTES_GUESS + 1024)
        self.cols = self._alloc(cap)
        self.fill = 0
        self.lock = threading.Lock()
        self.max_job = max((j.nbytes for j in jobs), default=0)
        self.decompress = any(j.frames for j in jobs)  # (not when prefetched)
        self.cpus = [c for c, _, _ in cpus]
        self.name_keys: dict[str, int] = {}
        self.summaries = {c: CpuSummary() for c in self.cpus}
        self.markers: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {c: [] for c in self.cpus}
        self.last_ts: dict[int, int] = {}  # per CPU: the time of its last row so far
        self.monotonic = True  # every CPU's rows so far in time order
        workers = self.workers if len(jobs) > 1 else 1
        states = self._states(min(workers, len(jobs)))
        if workers == 1:
            for j in jobs:
                self._do(j, states[0])
                self._collect(j)
        else:
            local = threading.local()

            def work(j: _Job) -> None:
                st = getattr(local, "state", None)
                if st is None:
                    with self.lock:
                        st = local.state = states.pop()
                self._do(j, st)

            # each job's rows are made final here, on the calling thread, while the workers
            # walk the next ones: only the last job's remains for after the walks
            _parallel(jobs, work, workers, self._collect)
        for j in jobs:
            if j.stats[K.S_ERR]:
                raise _GiveUp  # strict mode: the streaming reader raises the exact error
            j.src = None
        # The walks are done with the pages decompressed at start-up and with their scratch
        # buffers: freed now (tens of MiB), the heap (``sheaftune.heap``) hands that memory,
        # already mapped, to the merge's columns rather than faulting fresh pages for them.
        self.src_owner = None
        states.clear()
        return self._merge(jobs)

    def _progress(self, j: _Job) -> None:
        cb = self.r.opts.progress
        self.progress_done += j.file_bytes
        if cb is not None:
            cb(min(self.progress_done, self.progress_todo), self.progress_todo)

    def _collect(self, j: _Job) -> None:
        """A walked job's rows made final, jobs taken in CPU order, then stream order (the
        same keys whatever the threads did): cache names to name keys, times converted; its
        facts added to its CPU's summary."""
        self._progress(j)
        st = j.stats
        if st[K.S_ERR]:
            return  # (the streaming reader takes over)
        r = self.r
        s = self.summaries[j.cpu]
        s.pages += j.nbytes // self.ps
        s.records += int(st[K.S_RECORDS])
        s.bad_pages += int(st[K.S_BAD_PAGES])
        s.unknown_ids += int(st[K.S_UNKNOWN_ID])
        s.short_records += int(st[K.S_SHORT])
        if len(j.m_ts):
            self.markers[j.cpu].append((j.m_ts, j.m_cnt))
        if not j.rows:
            return
        lut = np.zeros(len(j.names) + 1, dtype=np.int32)
        for i, name in enumerate(j.names):
            lut[i + 1] = self.name_keys.setdefault(name, len(self.name_keys) + 1)
        remap = len(j.names) and not np.array_equal(lut, np.arange(len(lut)))
        a, b = j.base, j.base + j.rows
        with self.lock:  # a worker may be growing the columns
            cols = self.cols
            if remap:
                codes = cols["name_key"][a:b]
                codes[:] = lut[codes]
            ts = cols["ts"][a:b]
            if r.tsc2nsec is not None:
                from sheaftune.readers.tracedat import _mul_u64_u32_shr

                ts[:] = _mul_u64_u32_shr(ts, *r.tsc2nsec)
            if r.ts_offset:
                ts += np.int64(r.ts_offset)
            if self.monotonic:
                last = self.last_ts.get(j.cpu)
                if (last is not None and ts[0] < last) or (
                    b - a > 1 and bool((ts[1:] < ts[:-1]).any())
                ):
                    self.monotonic = False
            self.last_ts[j.cpu] = int(ts[-1])

    def _alloc(self, rows: int) -> dict[str, np.ndarray]:
        return columns(rows, ROW_COLS)

    def _plain_jobs(self, cpus: list[tuple[int, int, int]]) -> list[_Job]:
        ps = self.ps
        step = max(ps, JOB_BYTES - JOB_BYTES % ps)
        jobs: list[_Job] = []
        for cpu, off, size in cpus:
            if off + size > self.r.size or size % ps:
                raise _GiveUp  # truncated or a partial page: the streaming reader reports it
            jobs.extend(
                _Job(cpu, min(step, size - s), offset=off + s) for s in range(0, size, step)
            )
        return jobs

    def _zstd_jobs(self, cpus: list[tuple[int, int, int]]) -> list[_Job]:
        """Index every chunk (checking each header); jobs of consecutive chunks of a CPU."""
        ps = self.ps
        data = self.r.data
        arr = np.frombuffer(data, dtype=np.uint8)
        jobs: list[_Job] = []
        for cpu, off, size in cpus:
            end = off + size + 4  # trace-cmd's size leaves out the u32 chunk count
            if end > self.r.size:
                raise _GiveUp
            (count,) = self.u32.unpack_from(data, off)
            if count > (size // 8):
                raise _GiveUp
            offs, clens, ulens = (np.empty(count, dtype=np.int64) for _ in range(3))
            n = self.k.index_chunks(
                arr,
                off + 4,
                end,
                count,
                ps,
                MAX_CHUNK_PAGES * ps,
                bool(self.r.big),
                offs,
                clens,
                ulens,
            )
            if n != count:
                raise _GiveUp
            job: _Job | None = None
            for pos, clen, ulen in zip(offs.tolist(), clens.tolist(), ulens.tolist(), strict=True):
                if ulen:
                    if job is None or job.nbytes + ulen > JOB_BYTES:
                        job = _Job(cpu, 0)
                        jobs.append(job)
                    job.frames.append((pos, clen, ulen))
                    job.nbytes += ulen
                    job.file_bytes += clen + 8
        return jobs

    # --- per job, on the workers --------------------------------------------------------

    def _states(self, n: int) -> list[dict[str, Any]]:
        """``n`` workers' reusable buffers (decompressed pages, the walk's output, a zstd
        context), carved from one allocation."""
        rows = self.max_job // self.ps * self.rows_per_page + self.max_rows_page
        offsets, cols_bytes = _spans(rows, ROW_COLS)
        pages_at = (cols_bytes + 63) & ~63
        per = pages_at + ((self.max_job + 63) & ~63 if self.decompress else 0)
        buf = np.empty(max(per * n, 1), dtype=np.uint8)
        states: list[dict[str, Any]] = []
        for i in range(n):
            mine = buf[i * per : (i + 1) * per]
            st: dict[str, Any] = {"cols": _carve(mine, rows, ROW_COLS, offsets)}
            if self.decompress:
                import zstandard

                st["pages"] = mine[pages_at : pages_at + self.max_job]
                st["view"] = memoryview(st["pages"])
                st["dctx"] = zstandard.ZstdDecompressor()
            states.append(st)
        return states

    def _do(self, j: _Job, state: dict[str, Any]) -> None:
        """Decompress (if need be) and walk one job, then append its rows to the shared
        columns."""
        if j.frames:
            data = state["pages"][: j.nbytes]
            dst = state["view"]
            dctx = state["dctx"]
            src = memoryview(self.r.data)
            at = 0
            for off, clen, ulen in j.frames:
                try:
                    out = dctx.decompress(src[off : off + clen], max_output_size=ulen)
                except Exception:  # noqa: BLE001 - corrupt: the streaming reader names the chunk
                    raise _GiveUp from None
                if len(out) != ulen:
                    raise _GiveUp
                dst[at : at + ulen] = out
                at += ulen
        else:
            src = self.r.data if j.src is None else j.src
            data = np.frombuffer(src, dtype=np.uint8, count=j.nbytes, offset=j.offset)
        cols = state["cols"]
        self._walk_one(j, data, cols)
        if j.stats[K.S_ERR] or not j.rows:
            return
        n = j.rows
        with self.lock:
            base = self.fill
            if base + n > len(self.cols["ts"]):  # grow (rare: rows denser than estimated)
                grown = self._alloc(max(2 * len(self.cols["ts"]), base + n))
                for name, col in self.cols.items():
                    grown[name][:base] = col[:base]
                self.cols = grown
            self.fill = base + n
            j.base = base
            for name, col in self.cols.items():
                col[base : base + n] = cols[name][:n]

    def _walk_one(self, j: _Job, data: np.ndarray, cols: dict[str, np.ndarray]) -> None:
        k = self.k
        npages = len(data) // self.ps
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
                data,
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
                cols["ts"],
                cols["op"],
                cols["pid"],
                cols["call_site"],
                cols["ptr"],
                cols["bytes_req"],
                cols["bytes_alloc"],
                cols["gfp"],
                cols["node"],
                none_u8,
                none_i8,
                none_i8,
                cols["name_key"],
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
        if st[K.S_NEXT_PAGE] != npages:  # cannot happen: the outputs hold the bound
            raise RuntimeError("page walk stopped early")
        nm = int(st[K.S_MARKS])
        j.m_ts, j.m_cnt = m_ts[:nm].copy(), m_cnt[:nm].copy()
        nu = int(st[K.S_NAMES])
        for p, ln in zip(t_pos[:nu].tolist(), t_len[:nu].tolist(), strict=True):
            j.names.append(data[p : p + ln].tobytes().decode("utf-8", "replace"))

    # --- merge ---------------------------------------------------------------------------

    def _merge_part(
        self,
        cpus: list[int],
        segs: list[tuple[int, int, int]],
        out: dict[str, np.ndarray],
        a: int,
        b: int,
    ) -> dict[int, int]:
        """Merge the rows of ``segs`` into ``out[a:b]``; backward steps per CPU."""
        src = self.cols
        scratch = [np.zeros(len(cpus), dtype=np.int64) for _ in range(5)]
        n = self.k.merge_rows(
            *_chains(cpus, segs),
            np.array(cpus, dtype=np.int64),
            *scratch,
            *(src[name] for name, _ in ROW_COLS),
            out["ts"][a:b],
            out["cpu"][a:b],
            *(out[name][a:b] for name, _ in ROW_COLS[1:]),
        )
        if n != b - a:
            raise RuntimeError("merge wrote a wrong number of rows")
        return {cpus[i]: int(v) for i, v in enumerate(scratch[4].tolist()) if v}

    def _split(
        self, segs: list[tuple[int, int, int]], total: int
    ) -> list[tuple[list[tuple[int, int, int]], int, int]] | None:
        """Two halves of the merge, split at a pivot time, when every CPU's stream is
        monotonic (then rows before the pivot, merged, followed by the rest, merged, is the
        whole merge); None otherwise or when too small to be worth a thread."""
        if total < 1 << 17 or not self.monotonic:
            return None
        ts = self.cols["ts"]
        sample = np.concatenate([ts[a:b:64] for _, a, b in segs if b > a])
        pivot = np.partition(sample, len(sample) // 2)[len(sample) // 2]
        first: list[tuple[int, int, int]] = []
        second: list[tuple[int, int, int]] = []
        for cpu, a, b in segs:
            cut = a + int(np.searchsorted(ts[a:b], pivot, side="left"))
            first.append((cpu, a, cut))
            second.append((cpu, cut, b))
        n1 = sum(e - b for _, b, e in first)
        return [(first, 0, n1), (second, n1, total)]

    def _merge(self, jobs: list[_Job]) -> FastResult:
        """The k-way merge of the collected rows into the final columns (in two halves, one
        on another thread, when the streams are monotonic), each part's call sites coded on
        the way (``FastResult.site_parts``)."""
        cpus = self.cpus
        summaries: list[tuple[int, CpuSummary]] = []
        for cpu in cpus:
            s = self.summaries[cpu]
            marks = self.markers[cpu]
            if marks:
                s.marker_ts = np.concatenate([m for m, _ in marks])
                s.marker_count = np.concatenate([c for _, c in marks])
            summaries.append((cpu, s))
        segs = [(j.cpu, j.base, j.base + j.rows) for j in jobs]  # (CPU order, stream order)
        total = sum(e - b for _, b, e in segs)
        # (with the table's site and comm ids, filled later)
        out = columns(total, (*ROW_COLS, ("cpu", np.uint16), *ID_COLS))
        parts = self._split(segs, total) if self.workers > 1 else None
        # monotonic streams: rows before the pivot time, then the rest, on two threads; else
        # one merge (it also counts the backward steps)
        tasks = parts or [(segs, 0, total)]
        backwards: list[dict[int, int]] = []
        errors: list[BaseException] = []
        site_parts: list[tuple[int, int, np.ndarray]] = []

        def merge(p: tuple[list[tuple[int, int, int]], int, int]) -> None:
            try:
                a, b = p[1], p[2]
                backwards.append(self._merge_part(cpus, p[0], out, a, b))
                # the part's distinct call sites, its rows' codes into them
                _, sites = factorize_sites(self.k, out["call_site"][a:b], out["site_id"][a:b])
                site_parts.append((a, b, sites))
            except BaseException as e:  # noqa: BLE001 - raised on the calling thread
                errors.append(e)

        others = [threading.Thread(target=merge, args=(p,), daemon=True) for p in tasks[1:]]
        for t in others:
            t.start()
        try:
            merge(tasks[0])
        finally:
            for t in others:
                t.join()
        if errors:
            raise errors[0]
        site_parts.sort(key=lambda part: part[0])
        names = {v: name for name, v in self.name_keys.items()}
        result = FastResult(out, names, summaries, backwards[0] if parts is None else {})
        result.site_parts = site_parts
        return result


def _at(address: int, nbytes: int) -> np.ndarray:
    """The ``nbytes`` bytes at ``address`` (memory another object owns) as a uint8 array."""
    raw = (ctypes.c_uint8 * nbytes).from_address(address)
    return np.frombuffer(raw, dtype=np.uint8)  # type: ignore[call-overload]


def columns(rows: int, spec: tuple[tuple[str, type], ...]) -> dict[str, np.ndarray]:
    """Empty columns of ``rows`` rows, each an allocation of its own: a table's columns live
    long, and several blocks of a few MiB fit where the heap has room (a stage's freed blocks,
    ``sheaftune.heap``) far better than one of tens of MiB. (Measured on the 715k-event
    fixture: 9,000 (v7) and 7,500 (v6) fewer page faults than one block, 30-40 MiB less peak
    RSS.)"""
    return {name: np.empty(rows, dtype=dt) for name, dt in spec}


def _spans(rows: int, spec: tuple[tuple[str, type], ...]) -> tuple[list[int], int]:
    """Where each column of ``rows`` rows starts (64-byte aligned) in one buffer; its size."""
    offsets = []
    total = 0
    for _, dt in spec:
        total = (total + 63) & ~63
        offsets.append(total)
        total += rows * np.dtype(dt).itemsize
    return offsets, total


def _carve(
    buf: np.ndarray, rows: int, spec: tuple[tuple[str, type], ...], offsets: list[int]
) -> dict[str, np.ndarray]:
    """The columns of ``spec`` (``rows`` each) at ``offsets`` (``_spans``) of ``buf``."""
    return {
        name: buf[at : at + rows * np.dtype(dt).itemsize].view(dt)
        for (name, dt), at in zip(spec, offsets, strict=True)
    }


def _chains(
    cpus: list[int], segs: list[tuple[int, int, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """merge_rows' stream description: segment starts, ends, next segment of the same CPU,
    first segment of each CPU."""
    seg_start = np.array([s[1] for s in segs], dtype=np.int64)
    seg_end = np.array([s[2] for s in segs], dtype=np.int64)
    seg_next = np.full(len(segs), -1, dtype=np.int64)
    cpu_first = np.full(len(cpus), -1, dtype=np.int64)
    last: dict[int, int] = {}
    index = {c: i for i, c in enumerate(cpus)}
    for si, (cpu, _, _) in enumerate(segs):
        ci = index[cpu]
        if ci in last:
            seg_next[last[ci]] = si
        else:
            cpu_first[ci] = si
        last[ci] = si
    return seg_start, seg_end, seg_next, cpu_first


def factorize_sites(
    k: Any, sites: np.ndarray, codes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(codes, distinct call sites in order of first appearance) of the merged column; the
    codes written to ``codes`` when given."""
    n = len(sites)
    if codes is None:
        codes = np.empty(n, dtype=np.int32)
    size = 1 << 12
    while True:
        tslot = np.full(size, -1, dtype=np.int64)
        first = np.empty(size // 2, dtype=np.int64)
        nu = k.factorize_u64(sites, codes, first, np.empty(size, dtype=np.uint64), tslot)
        if nu >= 0:
            return codes, sites[first[:nu]]
        size *= 8


def resolve_sites(k: Any, text: Any, sites: np.ndarray) -> tuple[list[str], str | None]:
    """``symbol+0xoff`` (or ``0x...``) for ascending distinct ``sites`` from kallsyms ``text``
    (bytes, or a view of them), as :meth:`sheaftune.readers.kallsyms.Kallsyms.resolve`; plus
    the warning to give, if any."""
    from sheaftune.readers.kallsyms import _NAME

    nq = len(sites)
    w = bytes(text[:17]).find(b" ")  # (the address width: 16 hex digits at most)
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
