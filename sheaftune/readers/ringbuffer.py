"""Decoder of Linux ring-buffer sub-buffers ("pages") into kmem event columns.

The pages are what ``per_cpu/cpuN/trace_pipe_raw`` yields and what trace.dat stores per CPU:
a page header (u64 timestamp, kernel-long ``commit`` with the missed-events flags, an optional
stored lost count) followed by records (data of both length encodings, padding and discarded
records, time extends, absolute time stamps). This module knows nothing about the trace.dat
container, so live capture can feed it raw per-CPU buffers with the ``events/header_page`` and
``format`` files read from tracefs (:func:`sheaftune.readers.eventformat.read_tracefs_formats`).

Speed: the record walk runs in compiled code (``sheaftune.readers._jit``, imported lazily) over
many pages per call, writing straight into column arrays; only per-window bookkeeping is Python.
Cache names are hashed in the walk and turned into strings once per distinct value. Memory is
bounded by the columns produced plus one output window of ``window_rows`` rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from sheaftune.errors import InputError
from sheaftune.events import TRACEPOINT_OPS
from sheaftune.readers.eventformat import EventFormat, Field

#: Columns the page walk produces, name -> dtype. ``name_hash`` identifies the cache name
#: (0: none); :attr:`DecodedPages.names` maps it to the string.
RAW_COLUMNS: dict[str, np.dtype] = {
    "ts": np.dtype(np.int64),
    "op": np.dtype(np.uint8),
    "pid": np.dtype(np.int32),
    "call_site": np.dtype(np.uint64),
    "ptr": np.dtype(np.uint64),
    "bytes_req": np.dtype(np.uint32),
    "bytes_alloc": np.dtype(np.uint32),
    "gfp": np.dtype(np.uint32),
    "node": np.dtype(np.int16),
    "name_hash": np.dtype(np.uint64),
}

# layout slots and kinds, mirrored from the compiled kernels (kept here so importing this
# module does not import numba)
_SLOTS = ("common_pid", "call_site", "ptr", "bytes_req", "bytes_alloc", "gfp_flags", "node")
_K_ABSENT, _K_UINT, _K_SINT, _K_DATA_LOC, _K_REL_LOC, _K_DATA_LOC16, _K_CHARS = range(7)
_NFIELDS = 8
_ERRORS = {
    1: "page commit size larger than the page",
    2: "record header runs past the end of the page's data",
    3: "record length runs past the end of the page's data",
    4: "long record (type_len 0) with a length word below 4",
}


@dataclass(frozen=True)
class KmemLayout:
    """The kmem formats compiled to tables the page walk indexes by event ID.

    ``evmap[id]``: index into ``layouts`` for a kmem event, -1 for a known other event, -2 for
    an ID no format describes. ``layouts[i, slot] = (offset, size, kind)``.
    """

    evmap: np.ndarray  # int16
    layouts: np.ndarray  # int64 [n, 8, 3]
    lay_op: np.ndarray  # uint8
    lay_min: np.ndarray  # int64: payload bytes needed for the fixed fields
    events: tuple[str, ...]  # names of the compiled kmem events, by layout index


def _field_spec(f: Field | None, slot: int) -> tuple[int, int, int]:
    if f is None:
        return (0, 0, _K_ABSENT)
    if slot == 7:  # name
        if f.loc == "data_loc":
            return (f.offset, f.size, _K_DATA_LOC if f.size == 4 else _K_DATA_LOC16)
        if f.loc == "rel_loc":
            return (f.offset, f.size, _K_REL_LOC)
        if f.is_array:
            return (f.offset, f.size, _K_CHARS)
        return (0, 0, _K_ABSENT)
    if f.size not in (1, 2, 4, 8) or f.loc or f.is_array:
        return (0, 0, _K_ABSENT)
    return (f.offset, f.size, _K_SINT if f.signed else _K_UINT)


def compile_layout(formats: Iterable[EventFormat], other_ids: Iterable[int] = ()) -> KmemLayout:
    """Compile the kmem event formats; ``other_ids`` are the IDs of every other known event.

    Raises ValueError when no kmem event format is among ``formats``.
    """
    other_ids = [i for i in other_ids if i >= 0]
    kmem = [f for f in formats if f.name in TRACEPOINT_OPS and f.system in ("kmem", "")]
    if not kmem:
        raise ValueError("no kmem event format (kmalloc, kfree, kmem_cache_alloc, ...) found")
    ids = [f.id for f in kmem] + list(other_ids)
    size = max(ids) + 1
    if size > 1 << 16:
        raise ValueError(f"event ID {size - 1} out of range")
    evmap = np.full(size, -2, dtype=np.int16)
    for i in other_ids:
        evmap[i] = -1
    layouts = np.zeros((len(kmem), _NFIELDS, 3), dtype=np.int64)
    lay_op = np.zeros(len(kmem), dtype=np.uint8)
    lay_min = np.zeros(len(kmem), dtype=np.int64)
    for li, fmt in enumerate(kmem):
        evmap[fmt.id] = li
        lay_op[li] = int(TRACEPOINT_OPS[fmt.name])
        need = 2
        for slot, name in enumerate(_SLOTS):
            spec = _field_spec(fmt.get(name), slot)
            layouts[li, slot] = spec
            if spec[2] != _K_ABSENT:
                need = max(need, spec[0] + spec[1])
        nspec = _field_spec(fmt.get("name"), 7)
        layouts[li, 7] = nspec
        if nspec[2] != _K_ABSENT:
            need = max(need, nspec[0] + nspec[1])
        lay_min[li] = need
    return KmemLayout(evmap, layouts, lay_op, lay_min, tuple(f.name for f in kmem))


@dataclass
class DecodedPages:
    """What a page walk produced: columns in per-CPU record order, names, lost-event markers."""

    columns: dict[str, np.ndarray]
    names: dict[int, str] = field(default_factory=dict)  # name_hash -> cache name
    #: one row per page that announced missed events: ts of its first record, count (-1:
    #: unknown), index of the first column row after the gap
    marker_ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    marker_count: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    marker_row: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    pages: int = 0
    records: int = 0
    bad_pages: int = 0  # salvage: pages (or page tails) skipped as corrupt
    unknown_ids: int = 0  # records whose event ID no format describes
    short_records: int = 0  # kmem records too short for their format's fields
    discarded: int = 0

    def __len__(self) -> int:
        return len(self.columns["ts"])

    @property
    def lost_events(self) -> int:
        return int(self.marker_count[self.marker_count > 0].sum())

    @property
    def lost_markers(self) -> int:
        return len(self.marker_count)


class PageDecoder:
    """Stateful decoder of one CPU's page stream: ``feed()`` windows of whole pages, then
    ``result()``.

    ``path`` and ``where`` (e.g. ``"CPU 1"``) name the input in errors; ``base_offset`` passed
    to :meth:`feed` is the byte offset of the window in the file, so an error can say where.
    """

    def __init__(
        self,
        page_size: int,
        long_size: int,
        big_endian: bool,
        layout: KmemLayout,
        *,
        salvage: bool = False,
        path: str | None = None,
        where: str = "",
        window_rows: int = 1 << 17,
    ):
        if long_size not in (4, 8):
            raise ValueError(f"kernel long size {long_size}")
        if page_size < 64 or page_size & (page_size - 1):
            raise ValueError(f"page size {page_size}")
        from sheaftune.readers import _jit

        self._jit = _jit
        self.page_size = page_size
        self.long_size = long_size
        self.hdr_len = 8 + long_size
        self.big = big_endian
        self.layout = layout
        self.salvage = salvage
        self.path = path
        self.where = where
        cap = max(window_rows, page_size // 8 + 2)
        self._out = {k: np.empty(cap, dtype=d) for k, d in RAW_COLUMNS.items()}
        self._npos = np.empty(cap, dtype=np.int64)
        self._nlen = np.empty(cap, dtype=np.int64)
        self._stats = np.zeros(self._jit.NSTATS, dtype=np.int64)
        self._chunks: list[dict[str, np.ndarray]] = []
        self._marks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._rows = 0
        self._pages = 0
        self.names: dict[int, str] = {}
        self._totals = np.zeros(self._jit.NSTATS, dtype=np.int64)

    def feed(self, buf: bytes | bytearray | memoryview | np.ndarray, base_offset: int = 0) -> None:
        """Decode every whole page of ``buf``; a trailing partial page is an error."""
        data = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf
        npages, rest = divmod(len(data), self.page_size)
        if rest:
            msg = f"{rest} bytes after the last whole page (data truncated?)"
            if not self.salvage:
                raise InputError(msg, self.path, self._at(base_offset + npages * self.page_size))
            self._totals[self._jit.S_BAD_PAGES] += 1
        first = 0
        o = self._out
        mcap = npages + 1
        m_ts = np.empty(mcap, dtype=np.int64)
        m_cnt = np.empty(mcap, dtype=np.int64)
        m_row = np.empty(mcap, dtype=np.int64)
        lay = self.layout
        while first < npages:
            st = self._stats
            st[:] = 0
            n = self._jit.walk_pages(
                data,
                first,
                npages,
                self.page_size,
                self.hdr_len,
                self.long_size,
                self.big,
                lay.evmap,
                lay.layouts,
                lay.lay_op,
                lay.lay_min,
                self.salvage,
                o["ts"],
                o["op"],
                o["pid"],
                o["call_site"],
                o["ptr"],
                o["bytes_req"],
                o["bytes_alloc"],
                o["gfp"],
                o["node"],
                o["name_hash"],
                self._npos,
                self._nlen,
                m_ts,
                m_cnt,
                m_row,
                st,
            )
            self._totals += st
            self._collect(data, n, m_ts, m_cnt, m_row, int(st[self._jit.S_MARKS]))
            if st[self._jit.S_ERR]:
                code = int(st[self._jit.S_ERR])
                page = int(st[self._jit.S_ERR_PAGE])
                off = base_offset + int(st[self._jit.S_ERR_OFF])
                raise InputError(
                    f"corrupt ring-buffer page {self._pages + page} "
                    f"(page at byte {base_offset + page * self.page_size}): {_ERRORS[code]}",
                    self.path,
                    self._at(off),
                )
            nxt = int(st[self._jit.S_NEXT_PAGE])
            if nxt <= first:  # cannot happen (a window holds at least one page); never spin
                raise RuntimeError("page walk made no progress")
            first = nxt
        self._pages += npages

    def _at(self, off: int) -> str:
        return f"{self.where}, byte offset {off}" if self.where else f"byte offset {off}"

    def _collect(
        self,
        data: np.ndarray,
        n: int,
        m_ts: np.ndarray,
        m_cnt: np.ndarray,
        m_row: np.ndarray,
        nm: int,
    ) -> None:
        if nm:
            self._marks.append((m_ts[:nm].copy(), m_cnt[:nm].copy(), m_row[:nm] + self._rows))
        if n == 0:
            return
        chunk = {k: v[:n].copy() for k, v in self._out.items()}
        hashes = chunk["name_hash"]
        _, first_idx = self._jit.factorize(hashes)
        for i in first_idx.tolist():
            h = int(hashes[i])
            if h and h not in self.names:
                p = int(self._npos[i])
                self.names[h] = bytes(data[p : p + int(self._nlen[i])]).decode("utf-8", "replace")
        self._chunks.append(chunk)
        self._rows += n

    def result(self) -> DecodedPages:
        if self._chunks:
            cols = {k: np.concatenate([c[k] for c in self._chunks]) for k in RAW_COLUMNS}
        else:
            cols = {k: np.empty(0, dtype=d) for k, d in RAW_COLUMNS.items()}
        self._chunks = []
        J = self._jit
        t = self._totals
        if self._marks:
            mts, mcnt, mrow = (np.concatenate(x) for x in zip(*self._marks, strict=True))
        else:
            mts = mcnt = mrow = np.empty(0, dtype=np.int64)
        return DecodedPages(
            columns=cols,
            names=dict(self.names),
            marker_ts=mts,
            marker_count=mcnt,
            marker_row=mrow,
            pages=self._pages,
            records=int(t[J.S_RECORDS]),
            bad_pages=int(t[J.S_BAD_PAGES]),
            unknown_ids=int(t[J.S_UNKNOWN_ID]),
            short_records=int(t[J.S_SHORT]),
            discarded=int(t[J.S_DISCARDED]),
        )


def decode_pages(
    buf: bytes | bytearray | memoryview | np.ndarray,
    page_size: int,
    long_size: int,
    endian: str,
    formats: Iterable[EventFormat],
    *,
    other_ids: Iterable[int] = (),
    salvage: bool = False,
    path: str | None = None,
    where: str = "",
) -> DecodedPages:
    """Decode one CPU's raw ring-buffer pages (e.g. ``trace_pipe_raw``) in one call.

    ``endian`` is ``"little"`` or ``"big"`` (``"<"``/``">"`` accepted); ``long_size`` is the
    kernel's long (header_page's ``commit`` size), ``formats`` the kmem event formats. Corrupt
    pages raise InputError unless ``salvage``.
    """
    big = endian in ("big", ">")
    if endian not in ("big", ">", "little", "<"):
        raise ValueError(f"endian {endian!r}")
    layout = compile_layout(formats, other_ids)
    dec = PageDecoder(page_size, long_size, big, layout, salvage=salvage, path=path, where=where)
    dec.feed(buf)
    return dec.result()


def merge_cpus(ts_per_cpu: list[np.ndarray]) -> np.ndarray:
    """Row order that merges per-CPU streams (given in ascending CPU order) as trace-cmd does.

    The result indexes the concatenation of the streams. When every stream is monotonic, the
    k-way merge with ties to the lower CPU equals a stable sort; otherwise the compiled merge
    reproduces trace-cmd's choice record by record.
    """
    if not ts_per_cpu:
        return np.empty(0, dtype=np.int64)
    ts = np.concatenate(ts_per_cpu) if len(ts_per_cpu) > 1 else ts_per_cpu[0]
    if len(ts_per_cpu) > 64 and all(
        len(t) < 2 or bool(np.all(t[1:] >= t[:-1])) for t in ts_per_cpu
    ):  # many CPUs: a stable sort beats the O(n * CPUs) scan, and is equal when monotonic
        return np.argsort(ts, kind="stable")
    from sheaftune.readers._jit import merge_order

    bounds = np.zeros(len(ts_per_cpu) + 1, dtype=np.int64)
    bounds[1:] = np.cumsum([len(t) for t in ts_per_cpu])
    return merge_order(ts, bounds)
