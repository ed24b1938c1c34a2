"""Decoder of Linux ring-buffer sub-buffers ("pages") into kmem event columns.

The pages are what ``per_cpu/cpuN/trace_pipe_raw`` yields and what trace.dat stores per CPU:
a page header (u64 timestamp, kernel-long ``commit`` with the missed-events flags, an optional
stored lost count) followed by records (data of both length encodings, padding and discarded
records, time extends, absolute time stamps). This module knows nothing about the trace.dat
container, so live capture can feed it raw per-CPU buffers with the ``events/header_page`` and
``format`` files read from tracefs (:func:`sheaftune.readers.eventformat.read_tracefs_formats`).

Speed: Python never loops over records. The default engine walks all pages of a window at once
with numpy (step k reads the k-th record of every page still active; a step where every page
holds an ordinary data record takes a short path), then gathers each field with aligned word
loads across all the layouts that have it. The ``numba`` engine is its sequential twin (the
readable reference, ``sheaftune.readers._jit``), held equal to it by property tests; it is not
this module's default because numba's JIT costs ~0.6 s and ~150 MB to load. (The trace.dat
reader walks pages with the same compiled kernel, ahead-of-time built, in
:mod:`sheaftune.readers.tracedat_fast`, and comes here for damaged or irregular data, or when
no build is at hand.) Cache names are hashed column-wise and become strings once per distinct
value. Memory is bounded by the columns produced plus one window.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from sheaftune.errors import InputError
from sheaftune.readers._kconst import K_ABSENT as _K_ABSENT
from sheaftune.readers._kconst import K_CHARS as _K_CHARS
from sheaftune.readers._kconst import K_DATA_LOC16 as _K_DATA_LOC16
from sheaftune.readers._kconst import K_REL_LOC as _K_REL_LOC
from sheaftune.readers._kconst import K_SINT as _K_SINT
from sheaftune.readers.eventformat import EventFormat
from sheaftune.readers.kmemlayout import KmemLayout, compile_layout

__all__ = [
    "RAW_COLUMNS",
    "DecodedPages",
    "KmemLayout",
    "PageDecoder",
    "compile_layout",
    "decode_pages",
    "merge_cpus",
]

#: Columns the page walk produces, name -> dtype. ``name_key`` identifies the cache name
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
    "name_key": np.dtype(np.int32),
}

_KEYS_LOCK = threading.Lock()
_ERRORS = {
    1: "page commit size larger than the page",
    2: "record header runs past the end of the page's data",
    3: "record length runs past the end of the page's data",
    4: "long record (type_len 0) with a length word below 4",
}


@dataclass
class DecodedPages:
    """What a page walk produced: columns in per-CPU record order, names, lost-event markers."""

    columns: dict[str, np.ndarray]
    names: dict[int, str] = field(default_factory=dict)  # name_key -> cache name
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


@dataclass
class _Window:
    """One engine call's output: rows in record order plus what the walk counted."""

    cols: dict[str, np.ndarray]  # RAW_COLUMNS except name_key
    name_hash: np.ndarray  # uint64 per row, 0: no name
    name_hash2: np.ndarray | None  # a second, independent hash (numpy engine), to trust groups
    name_pos: np.ndarray  # int64: where a row's name starts in the window
    name_len: np.ndarray  # int64
    marker_ts: np.ndarray
    marker_count: np.ndarray
    marker_row: np.ndarray
    records: int = 0
    discarded: int = 0
    unknown_ids: int = 0
    short_records: int = 0
    bad_pages: int = 0
    error: tuple[int, int, int] | None = None  # (code, page, byte offset in the window)


class PageDecoder:
    """Stateful decoder of one CPU's page stream: ``feed()`` windows of whole pages, then
    ``result()``.

    ``path`` and ``where`` (e.g. ``"CPU 1"``) name the input in errors; ``base_offset`` passed
    to :meth:`feed` is the byte offset of the window in the file, so an error can say where.
    ``engine`` picks the record walk: ``"numpy"`` (default: vectorised across the pages of a
    window, no compiler to load) or ``"numba"`` (the sequential reference walk, compiled).
    Decoders of several CPUs share one ``name_keys`` dict so their ``name_key`` values agree.
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
        engine: str = "numpy",
        window_rows: int = 1 << 17,
        name_keys: dict[str, int] | None = None,
    ):
        if long_size not in (4, 8):
            raise ValueError(f"kernel long size {long_size}")
        if page_size < 64 or page_size & (page_size - 1):
            raise ValueError(f"page size {page_size}")
        if engine not in ("numpy", "numba"):
            raise ValueError(f"engine {engine!r}")
        self.page_size = page_size
        self.long_size = long_size
        self.hdr_len = 8 + long_size
        self.big = big_endian
        self.layout = layout
        self.salvage = salvage
        self.path = path
        self.where = where
        self.engine = engine
        self.window_rows = max(window_rows, page_size // 8 + 2)
        self._chunks: list[dict[str, np.ndarray]] = []
        self._marks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._rows = 0
        self._pages = 0
        self._keys: dict[str, int] = name_keys if name_keys is not None else {}
        self._counts = {"records": 0, "discarded": 0, "unknown_ids": 0, "short": 0, "bad": 0}

    def feed(self, buf: bytes | bytearray | memoryview | np.ndarray, base_offset: int = 0) -> None:
        """Decode every whole page of ``buf``; a trailing partial page is an error."""
        data = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf
        npages, rest = divmod(len(data), self.page_size)
        if rest:
            msg = f"{rest} bytes after the last whole page (data truncated?)"
            if not self.salvage:
                raise InputError(msg, self.path, self._at(base_offset + npages * self.page_size))
            self._counts["bad"] += 1
            data = data[: npages * self.page_size]
        if npages == 0:
            return
        windows = (
            _walk_numpy(data, npages, self) if self.engine == "numpy" else _walk_numba(data, self)
        )
        for w in windows:
            self._collect(data, w)
            if w.error is not None:
                code, page, off = w.error
                raise InputError(
                    f"corrupt ring-buffer page {self._pages + page} "
                    f"(page at byte {base_offset + page * self.page_size}): {_ERRORS[code]}",
                    self.path,
                    self._at(base_offset + off),
                )
        self._pages += npages

    def _at(self, off: int) -> str:
        return f"{self.where}, byte offset {off}" if self.where else f"byte offset {off}"

    def _collect(self, data: np.ndarray, w: _Window) -> None:
        c = self._counts
        c["records"] += w.records
        c["discarded"] += w.discarded
        c["unknown_ids"] += w.unknown_ids
        c["short"] += w.short_records
        c["bad"] += w.bad_pages
        if len(w.marker_ts):
            self._marks.append((w.marker_ts, w.marker_count, w.marker_row + self._rows))
        n = len(w.name_hash)
        if n == 0:
            return
        # cache names: one string per distinct hash, then a small key per row
        keys = np.zeros(n, dtype=np.int32)
        named = np.flatnonzero(w.name_hash)
        if len(named):
            h = w.name_hash[named]
            uniq = np.sort(h)  # np.unique would import numpy.ma (~50 ms) for this
            uniq = uniq[np.concatenate(([True], uniq[1:] != uniq[:-1]))]
            codes = np.searchsorted(uniq, h)
            first = np.empty(len(uniq), dtype=np.int64)
            first[codes[::-1]] = np.arange(len(h) - 1, -1, -1)  # the earliest row wins
            if w.name_hash2 is not None:
                h2 = w.name_hash2[named]
                clash = np.flatnonzero(h2 != h2[first[codes]])
            else:
                clash = np.empty(0, dtype=np.int64)
            lut = np.array([self._key(data, w, int(named[i])) for i in first.tolist()], np.int32)
            keys[named] = lut[codes]
            for i in clash.tolist():  # a hash collision: name these rows one by one
                keys[named[i]] = self._key(data, w, int(named[i]))
        chunk = dict(w.cols)
        chunk["name_key"] = keys
        self._chunks.append(chunk)
        self._rows += n

    def _key(self, data: np.ndarray, w: _Window, row: int) -> int:
        """The name key of one row's cache name (0 for an empty name)."""
        p = int(w.name_pos[row])
        raw = bytes(data[p : p + int(w.name_len[row])]).split(b"\0", 1)[0]
        if not raw:
            return 0
        name = raw.decode("utf-8", "replace")
        k = self._keys.get(name)
        if k is None:
            with _KEYS_LOCK:  # decoders of several CPUs may share the dict across threads
                k = self._keys.get(name)
                if k is None:
                    k = self._keys[name] = len(self._keys) + 1
        return k

    def result(self) -> DecodedPages:
        if self._chunks:
            cols = {k: np.concatenate([c[k] for c in self._chunks]) for k in RAW_COLUMNS}
        else:
            cols = {k: np.empty(0, dtype=d) for k, d in RAW_COLUMNS.items()}
        self._chunks = []
        if self._marks:
            mts, mcnt, mrow = (np.concatenate(x) for x in zip(*self._marks, strict=True))
        else:
            mts = mcnt = mrow = np.empty(0, dtype=np.int64)
        c = self._counts
        return DecodedPages(
            columns=cols,
            names={k: name for name, k in self._keys.items()},
            marker_ts=mts,
            marker_count=mcnt,
            marker_row=mrow,
            pages=self._pages,
            records=c["records"],
            bad_pages=c["bad"],
            unknown_ids=c["unknown_ids"],
            short_records=c["short"],
            discarded=c["discarded"],
        )


# --- the numba engine: the sequential reference walk ---------------------------------------


def _walk_numba(data: np.ndarray, dec: PageDecoder) -> list[_Window]:
    from sheaftune.readers import _kconst as K
    from sheaftune.readers.tracedat_fast import reader_kernels

    k = reader_kernels()
    data = np.ascontiguousarray(data, dtype=np.uint8)

    npages = len(data) // dec.page_size
    cap = dec.window_rows
    out = {k: np.empty(cap, dtype=d) for k, d in RAW_COLUMNS.items() if k != "name_key"}
    nhash = np.empty(cap, dtype=np.uint64)
    npos = np.empty(cap, dtype=np.int64)
    nlen = np.empty(cap, dtype=np.int64)
    m_ts = np.empty(npages + 1, dtype=np.int64)
    m_cnt = np.empty(npages + 1, dtype=np.int64)
    m_row = np.empty(npages + 1, dtype=np.int64)
    st = np.zeros(K.NSTATS, dtype=np.int64)
    no_i4 = np.empty(0, dtype=np.int32)  # no interning table: the walk hashes the names
    no_u8 = np.empty(0, dtype=np.uint64)
    no_i8 = np.empty(0, dtype=np.int64)
    lay = dec.layout
    windows = []
    first = 0
    while first < npages:
        st[:] = 0
        n = k.walk_pages(
            data,
            first,
            npages,
            dec.page_size,
            dec.hdr_len,
            dec.long_size,
            bool(dec.big),
            lay.evmap,
            lay.layouts,
            lay.lay_op,
            lay.lay_min,
            bool(dec.salvage),
            out["ts"],
            out["op"],
            out["pid"],
            out["call_site"],
            out["ptr"],
            out["bytes_req"],
            out["bytes_alloc"],
            out["gfp"],
            out["node"],
            nhash,
            npos,
            nlen,
            no_i4,
            no_u8,
            no_i8,
            no_i8,
            no_i8,
            m_ts,
            m_cnt,
            m_row,
            st,
        )
        nm = int(st[K.S_MARKS])
        err = None
        if st[K.S_ERR]:
            err = (int(st[K.S_ERR]), int(st[K.S_ERR_PAGE]), int(st[K.S_ERR_OFF]))
        windows.append(
            _Window(
                cols={k: v[:n].copy() for k, v in out.items()},
                name_hash=nhash[:n].copy(),
                name_hash2=None,
                name_pos=npos[:n].copy(),
                name_len=nlen[:n].copy(),
                marker_ts=m_ts[:nm].copy(),
                marker_count=m_cnt[:nm].copy(),
                marker_row=m_row[:nm].copy(),
                records=int(st[K.S_RECORDS]),
                discarded=int(st[K.S_DISCARDED]),
                unknown_ids=int(st[K.S_UNKNOWN_ID]),
                short_records=int(st[K.S_SHORT]),
                bad_pages=int(st[K.S_BAD_PAGES]),
                error=err,
            )
        )
        nxt = int(st[K.S_NEXT_PAGE])
        if err is not None:
            break
        if nxt <= first:  # cannot happen (the output holds at least one page); never spin
            raise RuntimeError("page walk made no progress")
        first = nxt
    return windows


# --- the numpy engine: one record of every page of the window per step ---------------------

_M27 = np.uint64(0x07FFFFFF)
_TOP5 = np.uint64(0x1F) << np.uint64(59)
_NAME_W = 64  # name bytes compared in the vectorised hash; longer names take the exact path
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15) * (
    np.arange(1, _NAME_W // 8 + 1, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
)


def _rows(data: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``data[s : s + width]`` for each start, as one (n, width) array (one copy per row)."""
    if len(starts) == 0:
        return np.empty((0, width), dtype=np.uint8)
    view = np.lib.stride_tricks.as_strided(
        data, shape=(len(data) - width + 1, width), strides=(data.strides[0], data.strides[0])
    )
    return view[starts]


def _uint(data: np.ndarray, starts: np.ndarray, size: int, e: str) -> np.ndarray:
    """Unsigned integers of ``size`` bytes at arbitrary offsets, as uint64."""
    return _rows(data, starts, size).view(f"{e}u{size}").reshape(-1).astype(np.uint64)


def _field(data: np.ndarray, addr: np.ndarray, size: int, signed: bool, e: str) -> np.ndarray:
    """Integers of ``size`` bytes at ``addr``: aligned word gathers where the layout allows
    (records are 4-byte aligned, so are kmem fields), a byte-row gather otherwise."""
    t = f"{e}{'i' if signed else 'u'}{size}"
    if size == 1:
        v = data[addr]
        return v.view(np.int8) if signed else v
    if size == 2 and not (addr & 1).any():
        return data.view(t)[addr >> 1]
    if size == 4 and not (addr & 3).any():
        return data.view(t)[addr >> 2]
    if size == 8 and not (addr & 3).any():
        w = data.view(f"{e}u4")
        a = w[addr >> 2].astype(np.uint64)
        b = w[(addr >> 2) + 1].astype(np.uint64)
        v = (b << np.uint64(32)) | a if e == "<" else (a << np.uint64(32)) | b
        return v.view(np.int64) if signed else v
    return _rows(data, addr, size).view(t).reshape(-1)


def _walk_numpy(data: np.ndarray, npages: int, dec: PageDecoder) -> list[_Window]:
    e = ">" if dec.big else "<"
    ps, L, hdr = dec.page_size, dec.long_size, dec.hdr_len
    data_len = ps - hdr
    pstart = np.arange(npages, dtype=np.int64) * ps
    pts = _uint(data, pstart, 8, e)
    commit = _uint(data, pstart + 8, L, e)
    size = (commit & _M27).astype(np.int64)
    errors: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (page, offset, code)
    bad_commit = size > data_len
    if bad_commit.any():
        bp = np.flatnonzero(bad_commit)
        errors.append((bp, pstart[bp] + 8, np.full(len(bp), 1)))
        size[bad_commit] = 0
    has_missed = ((commit >> np.uint64(31)) & np.uint64(1)).astype(bool)
    missed = np.full(npages, -1, dtype=np.int64)
    stored = has_missed & ((commit >> np.uint64(30)) & np.uint64(1)).astype(bool)
    stored &= size + L <= data_len
    if stored.any():
        sp = np.flatnonzero(stored)
        missed[sp] = _uint(data, pstart[sp] + hdr + size[sp], L, e).astype(np.int64)
    w32 = data.view(f"{e}u4")
    nw = len(w32)
    # walk state of the pages still active
    pg = np.flatnonzero(size > 0)
    pos = pstart[pg] + hdr
    end = pos + size[pg]
    ts = pts[pg]
    r_pg, r_pl, r_ln, r_ts = [], [], [], []
    discarded = 0
    while len(pg):
        wi = pos >> 2
        w = w32[wi]
        if dec.big:
            tl = (w >> np.uint32(27)).astype(np.int64)
            d = (w & np.uint32(0x07FFFFFF)).astype(np.uint64)
        else:
            tl = (w & np.uint32(31)).astype(np.int64)
            d = (w >> np.uint32(5)).astype(np.uint64)
        if not ((tl == 0) | (tl >= 29)).any():
            # fast path: every page's next record is an ordinary data record (type_len 1..28)
            pl = pos + 4
            nxt = pl + tl * 4
            ts = ts + d
            bad = nxt > end
            if bad.any():
                errors.append((pg[bad], pos[bad], np.full(int(bad.sum()), 3)))
                ok = ~bad
                r_pg.append(pg[ok])
                r_pl.append(pl[ok])
                r_ln.append(tl[ok] * 4)
                r_ts.append(ts[ok])
                cont = ok & (nxt < end)
            else:
                r_pg.append(pg)
                r_pl.append(pl)
                r_ln.append(tl * 4)
                r_ts.append(ts)
                cont = nxt < end
            if cont.all():
                pos = nxt
                continue
            pg, pos, end, ts = pg[cont], nxt[cont], end[cont], ts[cont]
            continue
        a0 = w32[np.minimum(wi + 1, nw - 1)].astype(np.uint64)
        a0i = a0.astype(np.int64)
        is_data = tl <= 28
        is_disc = (tl == 29) & (d != 0)
        pad_end = (tl == 29) & (d == 0)
        long0 = tl == 0
        need8 = (tl >= 29) & ~pad_end | long0
        code = np.zeros(len(pg), dtype=np.int64)
        code[(pos + 4 > end) | (need8 & (pos + 8 > end))] = 2
        code[(code == 0) & long0 & (a0i < 4)] = 4
        ln = np.where(long0, (a0i - 1) & ~np.int64(3), tl * 4)
        pl = np.where(long0, pos + 8, pos + 4)
        nxt = np.where(is_data, pl + ln, np.where(is_disc, pos + 4 + a0i, pos + 8))
        code[(code == 0) & (is_data | is_disc) & (nxt > end)] = 3
        bad = code != 0
        # time: data and discarded add their delta; extends add; absolute stamps replace
        ts = np.where(
            tl == 31,
            ((a0 << np.uint64(27)) | d) | (ts & _TOP5),
            ts + np.where(tl == 30, (a0 << np.uint64(27)) + d, d),
        )
        ok = is_data & ~bad
        if ok.any():
            r_pg.append(pg[ok])
            r_pl.append(pl[ok])
            r_ln.append(ln[ok])
            r_ts.append(ts[ok])
        discarded += int((is_disc & ~bad).sum())
        if bad.any():
            errors.append((pg[bad], pos[bad], code[bad]))
        cont = ~bad & ~pad_end & (nxt < end)
        if cont.all():
            pos = nxt
            continue
        pg, pos, end, ts = pg[cont], nxt[cont], end[cont], ts[cont]

    err = None
    bad_pages = 0
    if errors:
        epg = np.concatenate([x[0] for x in errors])
        bad_pages = len(epg)
        if not dec.salvage:
            i = int(np.argmin(epg))
            err = (
                int(np.concatenate([x[2] for x in errors])[i]),
                int(epg[i]),
                int(np.concatenate([x[1] for x in errors])[i]),
            )
    if r_pg:
        rpg = np.concatenate(r_pg)
        key = rpg.astype(np.uint16 if npages <= 1 << 16 else np.int64)
        order = np.argsort(key, kind="stable")  # page order, then step order (radix sort)
        rpg, rpl = rpg[order], np.concatenate(r_pl)[order]
        rln, rts = np.concatenate(r_ln)[order], np.concatenate(r_ts)[order]
    else:
        rpg = rpl = rln = np.empty(0, dtype=np.int64)
        rts = np.empty(0, dtype=np.uint64)
    if err is not None:  # strict: the events before the first corrupt page only
        keep_pg = rpg < err[1]
        rpg, rpl, rln, rts = rpg[keep_pg], rpl[keep_pg], rln[keep_pg], rts[keep_pg]
    # missed events belong before the first data record (of any event) of their page
    records = len(rpg)
    mpg = np.flatnonzero(has_missed)
    at = np.searchsorted(rpg, mpg)
    has_rec = at < len(rpg)
    has_rec[has_rec] = rpg[at[has_rec]] == mpg[has_rec]
    mpg, mts = mpg[has_rec], rts[at[has_rec]]
    win = _decode_payloads(data, rpg, rpl, rln, rts, dec, e)
    win.records = records
    win.discarded = discarded
    win.bad_pages = bad_pages if dec.salvage else 0
    win.error = err
    # a marker precedes the first kmem row of its page (or the next page's rows)
    kept_pg = win.cols.pop("_page")
    win.marker_row = np.searchsorted(kept_pg, mpg, side="left").astype(np.int64)
    win.marker_ts = mts.astype(np.int64)
    win.marker_count = missed[mpg]
    return [win]


def _decode_payloads(
    data: np.ndarray,
    rpg: np.ndarray,
    rpl: np.ndarray,
    rln: np.ndarray,
    rts: np.ndarray,
    dec: PageDecoder,
    e: str,
) -> _Window:
    """Gather the kmem fields of the data records at ``rpl`` (payload starts), by layout."""
    lay = dec.layout
    n = len(rpl)
    short = rln < 2
    etype = np.zeros(n, dtype=np.int64)
    ok2 = ~short
    etype[ok2] = data.view(f"{e}u2")[rpl[ok2] >> 1]
    nev = len(lay.evmap)
    li = np.full(n, -1, dtype=np.int64)
    in_map = ok2 & (etype < nev)
    li[in_map] = lay.evmap[etype[in_map]]
    unknown = ok2 & ((etype >= nev) | (li == -2))
    is_kmem = li >= 0
    too_short = np.zeros(n, dtype=bool)
    too_short[is_kmem] = rln[is_kmem] < lay.lay_min[li[is_kmem]]
    keep = np.flatnonzero(is_kmem & ~too_short)
    m = len(keep)
    cols: dict[str, np.ndarray] = {
        k: np.zeros(m, dtype=d) for k, d in RAW_COLUMNS.items() if k != "name_key"
    }
    cols["ts"] = rts[keep].astype(np.int64)
    cols["node"][:] = -1  # NUMA_NO_NODE where the format has no node field
    name_hash = np.zeros(m, dtype=np.uint64)
    name_hash2 = np.zeros(m, dtype=np.uint64)
    name_pos = np.zeros(m, dtype=np.int64)
    name_len = np.zeros(m, dtype=np.int64)
    kli = li[keep]
    kpl = rpl[keep]
    kln = rln[keep]
    targets = ("pid", "call_site", "ptr", "bytes_req", "bytes_alloc", "gfp", "node")
    present = np.flatnonzero(np.bincount(kli, minlength=len(lay.lay_op))).tolist()
    cols["op"] = lay.lay_op[kli]
    subsets: dict[tuple[int, ...], tuple[np.ndarray, ...]] = {}
    # one gather per field and field encoding, across every layout that has it
    for slot in range(8):
        spec = lay.layouts[:, slot]
        groups: dict[tuple[int, int], list[int]] = {}
        for k in present:
            off, sz, kind = (int(x) for x in spec[k])
            if kind != _K_ABSENT and (slot < 7 or kind != _K_CHARS or sz > 0):
                groups.setdefault((sz, kind), []).append(k)
        for (sz, kind), lays in groups.items():
            if len(lays) == len(present):
                rows = None
                rli, rpl_, rln_ = kli, kpl, kln
            else:  # the rows of these layouts; most fields share a few such subsets
                sub = subsets.get(tuple(lays))
                if sub is None:
                    member = np.zeros(len(lay.lay_op), dtype=bool)
                    member[lays] = True
                    r = np.flatnonzero(member[kli])
                    sub = subsets[tuple(lays)] = (r, kli[r], kpl[r], kln[r])
                rows, rli, rpl_, rln_ = sub
            off = spec[rli, 0]
            if slot < 7:
                target = targets[slot]
                v = _field(data, rpl_ + off, sz, kind == _K_SINT, e)
                if target in ("bytes_req", "bytes_alloc"):
                    v = np.minimum(v.astype(np.uint64), np.uint64(0xFFFFFFFF))
                elif target == "gfp":
                    v = v.astype(np.uint64) & np.uint64(0xFFFFFFFF)
                if rows is None:
                    cols[target] = v.astype(cols[target].dtype)
                else:
                    cols[target][rows] = v
                continue
            # the cache name: a dynamic string or a fixed char array
            if kind == _K_CHARS:
                so = off
                sl = np.full(len(rli), sz, dtype=np.int64)
            else:
                loc = _field(data, rpl_ + off, sz, False, e).astype(np.int64)
                if kind == _K_DATA_LOC16:
                    so = loc
                    sl = rln_ - so
                else:
                    so = loc & 0xFFFF
                    sl = loc >> 16
                    if kind == _K_REL_LOC:
                        so = so + off + sz
            valid = (so >= 0) & (sl > 0) & (so + sl <= rln_)
            vr = np.flatnonzero(valid) if rows is None else rows[valid]
            start = rpl_[valid] + so[valid]
            h, h2, length = _hash_names(data, start, sl[valid])
            name_hash[vr] = h
            name_hash2[vr] = h2
            name_pos[vr] = start
            name_len[vr] = length
    cols["_page"] = rpg[keep]
    empty = np.empty(0, dtype=np.int64)
    return _Window(
        cols=cols,
        name_hash=name_hash,
        name_hash2=name_hash2,
        name_pos=name_pos,
        name_len=name_len,
        marker_ts=empty,
        marker_count=empty,
        marker_row=empty,
        unknown_ids=int(unknown.sum()),
        short_records=int(short.sum() + too_short.sum()),
    )


def _hash_names(
    data: np.ndarray, start: np.ndarray, sl: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hash, second hash, length) of each string (``sl`` bytes, trimmed at a NUL later).

    Two independent 64-bit hashes cover the string eight bytes at a time (only as many words as
    the longest string needs): rows are grouped by the first and the group is trusted only if
    the second agrees on every row (:meth:`PageDecoder._collect` checks; a disagreement sends
    those rows to the exact path). A string at the very end of the buffer is hashed exactly.
    """
    n = len(start)
    h = np.full(n, 0xCBF29CE484222325, dtype=np.uint64)
    h2 = np.full(n, 0x84222325CBF29CE4, dtype=np.uint64)
    exact = start + ((sl + 7) & ~np.int64(7)) > len(data)  # an 8-byte read would overrun
    nwords = int((int(sl.max()) + 7) // 8) if n else 0
    for j in range(nwords):
        rows = np.flatnonzero((sl > 8 * j) & ~exact)
        if len(rows) == 0:
            break
        w = _word(data, start[rows] + 8 * j)
        rem = sl[rows] - 8 * j
        part = rem < 8
        if part.any():
            w[part] &= (np.uint64(1) << (rem[part].astype(np.uint64) * np.uint64(8))) - np.uint64(1)
        hj = (h[rows] ^ w) * np.uint64(0x100000001B3)
        h[rows] = hj ^ (hj >> np.uint64(29))
        hj = (h2[rows] + w) * np.uint64(0xC2B2AE3D27D4EB4F)
        h2[rows] = hj ^ (hj >> np.uint64(31))
    h ^= sl.astype(np.uint64) * np.uint64(0xFF51AFD7ED558CCD)
    h[h == 0] = 1
    for i in np.flatnonzero(exact).tolist():
        s = int(start[i])
        h[i] = _exact_hash(bytes(data[s : s + int(sl[i])]))
        h2[i] = h[i]
    # the string ends at its first NUL (normally the last byte): found when materialised
    return h, h2, sl


def _word(data: np.ndarray, addr: np.ndarray) -> np.ndarray:
    """The 8 bytes at each ``addr`` as a little-endian uint64 (byte order only feeds a hash)."""
    if not (addr & 3).any():
        w = data.view("<u4")
        return w[addr >> 2].astype(np.uint64) | (
            w[(addr >> 2) + 1].astype(np.uint64) << np.uint64(32)
        )
    return _rows(data, addr, 8).view("<u8").reshape(-1).copy()


def _exact_hash(raw: bytes) -> int:
    import hashlib

    raw = raw.split(b"\0", 1)[0]
    if not raw:
        return 0
    v = int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")
    return v or 1


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
    engine: str = "numpy",
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
    dec = PageDecoder(
        page_size, long_size, big, layout, salvage=salvage, path=path, where=where, engine=engine
    )
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
    if all(len(t) < 2 or bool(np.all(t[1:] >= t[:-1])) for t in ts_per_cpu):
        # equal to the k-way merge, and fast: the stable sort merges the presorted runs
        return np.argsort(ts, kind="stable")
    from sheaftune.readers._jit import merge_order

    bounds = np.zeros(len(ts_per_cpu) + 1, dtype=np.int64)
    bounds[1:] = np.cumsum([len(t) for t in ts_per_cpu])
    return merge_order(ts, bounds)
