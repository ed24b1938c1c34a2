"""Decompress a v7 trace.dat's zstd CPU data on a thread while the program starts.

For its first ~85 ms ``sheaftune analyze`` only imports (Python, click, numpy, the CLI) on one
core while the other idles; then the read of a zstd-compressed trace.dat spends ~40 ms of CPU
decompressing its chunks on two workers. :func:`start`, called by ``sheaftune.__main__`` before
the imports, finds the top buffer's chunks (a small parser of the v7 container that needs no
numpy) and decompresses all of them in ONE call of ``zstandard``'s
``multi_decompress_to_buffer`` on a thread: that call runs in C without the GIL, so the
imports go on beside it, and its few moments of Python (importing ``zstandard``, the parse)
hold the GIL for a millisecond or two. (Measured dead ends: a thread decompressing chunk by
chunk waits for the GIL at every chunk while the imports hold it; a child process costs the
imports its fork, or its fresh pages.) The reader (:mod:`sheaftune.readers.tracedat_fast`)
then asks :func:`take` for the data and walks it like an uncompressed file's pages. Before
the CPU data, the thread decompresses the compressed metadata sections the reader reads
(:data:`AHEAD_SECTIONS`: the event formats, 2 MB on the fixture, not kallsyms), which
the reader then asks :func:`section` for: the read's set-up no longer decompresses them beside
the imports' end (measured: its v7 set-up 4.3 -> 2.7 ms). Until the reader takes the CPU data,
the thread pre-faults heap for the columns the walk will copy its rows into
(``heap.prefault_more``; ``take`` stops it): the heap's own pre-fault is kept small for a
compressed file, so as not to slow the decompression down.

Everything taken is checked against the reader's own parse: the same file, unchanged (device,
inode, size, modification time), the top buffer, and for every CPU exactly the chunks (place,
compressed and uncompressed sizes) of its own chunk index; a section, by where its data lies
and both its sizes. Anything else (another command,
options that change what is read, a v6 or uncompressed file, a damaged container or chunk,
a limit exceeded) and the reader reads as it always does, reporting errors as always.
``SHEAFTUNE_PREFETCH=0`` turns it off. Standard library only at import.
"""

from __future__ import annotations

import os
import struct
import threading
from typing import Any

from sheaftune.premap import ENV, MAGIC, trace_dat_operands

#: larger files are read as always
MAX_FILE_BYTES = 256 << 20
#: never more uncompressed data than this (it is held in memory until the read is done)
MAX_TOTAL_BYTES = 256 << 20
#: and never more than this many times the compressed bytes (the fast reader's own bound)
MAX_RATIO = 16
#: the largest chunk (pages of the largest page size the reader accepts), as the reader's bound
MAX_CHUNK_PAGES = 1024


#: the v7 metadata sections (ids) decompressed ahead too, before the CPU data, those the reader
#: reads first: header info, ftrace event formats, event formats (2 MB on the fixture) and
#: cmdlines. Not kallsyms (19; 5 MB, the largest): the reader leaves it to the thread that
#: resolves the call sites once the events are read, beside normalisation, while here it
#: would hold back the CPU data (``tracedat._TraceDat._kallsyms_defer``).
AHEAD_SECTIONS = (16, 17, 18, 21)
#: no section larger than this once decompressed (the reader's own bound, MAX_UNCOMPRESSED)
MAX_SECTION_BYTES = 256 << 20

#: the prefetch of this process, if :func:`start` began one
_pending: _Prefetch | None = None


class _Bad(Exception):
    """The container is not what the prefetch handles: the reader reads as always."""


class _Prefetch:
    """One file's decompression on a thread: its identity, its chunks, the result."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.ident: tuple[int, int, int, int] | None = None
        #: per CPU with data, ascending: (cpu, [(data offset, compressed, uncompressed)])
        self.cpus: list[tuple[int, list[tuple[int, int, int]]]] = []
        self.out: Any = None  # zstandard's BufferWithSegmentsCollection
        #: set when the reader comes (or gives the prefetch up): the pre-fault stops
        self.stop = threading.Event()
        #: the sections decompressed ahead, by (data offset, compressed, uncompressed size),
        #: from the file of identity ``sections_ident``; ``sections_done`` when all are
        self.sections: dict[tuple[int, int, int], bytes] = {}
        self.sections_ident: tuple[int, ...] | None = None
        self.sections_done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="zstd-prefetch", daemon=True)

    def _run(self) -> None:
        try:
            import mmap

            import zstandard

            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                if not 64 <= st.st_size <= MAX_FILE_BYTES:
                    return
                data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            sections: dict[int, int] = {}
            try:
                cpus = _top_buffer(data, sections)
            finally:
                # (first: the reader needs them first, before the CPU data)
                self._sections_ahead(data, sections, zstandard, ident)
            frames = [c for _, chunks in cpus for c in chunks]
            if not frames:
                return
            segs = b"".join(struct.pack("=QQ", p, c) for p, c, _ in frames)
            sizes = b"".join(struct.pack("=Q", u) for _, _, u in frames)
            out = zstandard.ZstdDecompressor().multi_decompress_to_buffer(
                zstandard.BufferWithSegments(memoryview(data), segs),
                decompressed_sizes=sizes,
                threads=1,
            )
            self.ident = ident
            self.cpus = cpus
            self.out = out
        except Exception:  # noqa: BLE001 - the reader then decompresses, and reports, itself
            self.out = None
            return
        finally:
            self.sections_done.set()  # (also when the sections were never reached)
        # The walk will copy its rows into columns of about as many bytes as the pages hold
        # (tracedat_fast.ROW_BYTES_GUESS): fresh memory, faulted under the walkers' lock
        # (7,700 faults, ~10 ms, on the 715k-event fixture). The heap's pre-fault was kept
        # small so as not to slow this decompression down; the rest is faulted here, on the
        # core that is free until the reader comes, and given up as soon as it does (take).
        from sheaftune import heap

        heap.prefault_more(sum(u for _, _, u in frames), self.stop)

    def _sections_ahead(
        self, data: Any, sections: dict[int, int], zstandard: Any, ident: tuple[int, ...]
    ) -> None:
        """Decompress the metadata sections of :data:`AHEAD_SECTIONS` that are compressed
        (kept by where their data lies and both sizes, as the reader will ask for them)."""
        try:
            n = len(data)
            u16, u32, u64 = _structs(data)
            dctx = zstandard.ZstdDecompressor()
            for sid in AHEAD_SECTIONS:
                off = sections.get(sid)
                # section header: u16 id, u16 flags, s32 description, u64 size; compressed
                # (flag 1): u32 compressed size, u32 uncompressed size, the data
                if off is None or off + 24 > n or u16.unpack_from(data, off)[0] != sid:
                    continue
                if not u16.unpack_from(data, off + 2)[0] & 1:
                    continue
                size = u64.unpack_from(data, off + 8)[0]
                clen, ulen = u32.unpack_from(data, off + 16)[0], u32.unpack_from(data, off + 20)[0]
                at = off + 24
                if clen > size - 8 or at + clen > n or ulen > MAX_SECTION_BYTES:
                    continue
                try:
                    out = dctx.decompress(memoryview(data)[at : at + clen], max_output_size=ulen)
                except zstandard.ZstdError:
                    continue  # (the reader reports it, in its place)
                if len(out) == ulen:
                    self.sections[(at, clen, ulen)] = out
            self.sections_ident = ident
        except Exception:  # noqa: BLE001 - the reader decompresses them itself
            self.sections.clear()
        finally:
            self.sections_done.set()


def start(argv: list[str]) -> bool:
    """Begin decompressing the trace ``argv`` analyses, when it applies; never raises."""
    global _pending
    try:
        if os.environ.get(ENV, "1") == "0" or _pending is not None:
            return False
        path = _eligible(argv)
        if path is None:
            return False
        _pending = _Prefetch(path)
        _pending.thread.start()
        return True
    except Exception:  # noqa: BLE001 - an optimisation only
        return False


def section(path: str, at: int, clen: int, ulen: int) -> bytes | None:
    """The decompressed data of a compressed section of file ``path`` whose data lies at
    ``at`` (``clen`` bytes, ``ulen`` once decompressed), when the prefetch decompressed exactly
    that from the same, unchanged file (each once: the caller owns it); None otherwise. Waits
    for the sections (decompressed first)."""
    pre = _pending
    if pre is None:
        return None
    pre.sections_done.wait()
    got = pre.sections.pop((at, clen, ulen), None)
    if got is None:
        return None
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != pre.sections_ident:
        return None
    return got


def take(
    path: str, cpus: dict[int, list[tuple[int, int, int]]]
) -> tuple[dict[int, list[int]], Any] | None:
    """The prefetched pages of file ``path``'s top buffer when they are exactly those of the
    chunks ``cpus`` (per CPU: (data offset, compressed size, uncompressed size), in stream
    order) of the same, unchanged file: (per CPU, the address of each chunk's pages; the object
    that owns them: keep it while they are in use). Waits for the decompression to end. None
    otherwise; either way the prefetch is given up."""
    global _pending
    pre, _pending = _pending, None
    if pre is None:
        return None
    pre.stop.set()
    pre.thread.join()
    out, pre.out = pre.out, None
    if out is None or pre.ident is None:
        return None
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != pre.ident:
        return None
    if {cpu: chunks for cpu, chunks in pre.cpus} != cpus:
        return None
    if len(out) != sum(len(chunks) for _, chunks in pre.cpus):
        return None
    import numpy as np

    # zstandard fills a few buffers, each holding consecutive frames back to back from its
    # offset 0: a run of frames whose offsets follow on lies in one buffer, whose address
    # numpy tells from the run's first frame; its last frame's address is checked too
    addrs: dict[int, list[int]] = {}
    i = 0
    base = end = 0
    first = -1
    for cpu, chunks in pre.cpus:
        mine = addrs[cpu] = []
        for _, _, ulen in chunks:
            seg = out[i]
            off = seg.offset
            if len(seg) != ulen:
                return None
            if first < 0 or off != end:
                if off != 0 or (first >= 0 and not _at(out[i - 1], base + end - len(out[i - 1]))):
                    return None
                base, first = np.frombuffer(seg, dtype=np.uint8).ctypes.data, i
            mine.append(base + off)
            end = off + ulen
            i += 1
    if not _at(out[i - 1], base + end - len(out[i - 1])):
        return None
    return addrs, out


def _at(seg: Any, address: int) -> bool:
    """Whether frame ``seg``'s pages lie at ``address``."""
    import numpy as np

    return bool(np.frombuffer(seg, dtype=np.uint8).ctypes.data == address)


def _eligible(argv: list[str]) -> str | None:
    """The one v7 zstd trace.dat ``argv`` analyses with default reading options, or None."""
    if any(a == "--" or a.startswith(("--buffer", "--salvage", "--input-format")) for a in argv):
        return None
    found = trace_dat_operands(argv)
    if found is None or len(found) != 1:
        return None  # (two or more trace.dat: each read as always)
    path, st, head = found[0]
    if not _v7_zstd(head) or st.st_size > MAX_FILE_BYTES:
        return None  # another trace.dat: read as always
    return path


def _v7_zstd(head: bytes) -> bool:
    # magic, "7\0", endianness, long size, u32 page size, "zstd\0"
    return head[10:12] == b"7\x00" and head[12] in (0, 1) and head[18:23] == b"zstd\x00"


def _structs(data: Any) -> tuple[struct.Struct, struct.Struct, struct.Struct]:
    """u16, u32, u64 in the file's byte order."""
    e = "<" if data[12] == 0 else ">"
    return struct.Struct(e + "H"), struct.Struct(e + "I"), struct.Struct(e + "Q")


def _top_buffer(
    data: Any, sections: dict[int, int] | None = None
) -> list[tuple[int, list[tuple[int, int, int]]]]:
    """The top buffer's CPUs with data, ascending: (cpu, chunks as (data offset, compressed
    size, uncompressed size)); _Bad when anything is off (the reader then reads as always).
    ``sections`` gets the offset of every metadata section the options list before the top
    buffer's (trace-cmd lists them first)."""
    n = len(data)
    if bytes(data[:10]) != MAGIC or not _v7_zstd(bytes(data[:64])):
        raise _Bad
    u16, u32, u64 = _structs(data)
    page = u32.unpack_from(data, 14)[0]
    pos = 18
    for _ in range(2):  # compression name and version
        z = data.find(b"\x00", pos, pos + 64)
        if z < 0:
            raise _Bad
        pos = z + 1
    if pos + 8 > n:
        raise _Bad
    nxt = u64.unpack_from(data, pos)[0]
    top: tuple[int, int, list[tuple[int, int, int]]] | None = None
    seen: set[int] = set()
    while nxt and top is None:
        if nxt in seen or len(seen) > 64 or nxt + 16 > n:
            raise _Bad
        seen.add(nxt)
        sid, flags = u16.unpack_from(data, nxt)[0], u16.unpack_from(data, nxt + 2)[0]
        size = u64.unpack_from(data, nxt + 8)[0]
        p, end = nxt + 16, nxt + 16 + size
        if sid != 0 or flags & 1 or end > n:
            raise _Bad
        nxt = 0
        while p + 6 <= end:
            oid, osize = u16.unpack_from(data, p)[0], u32.unpack_from(data, p + 2)[0]
            p += 6
            if p + osize > end:
                raise _Bad
            if oid == 0:
                nxt = u64.unpack_from(data, p)[0] if osize >= 8 else 0
                break
            if oid == 3 and top is None:
                top = _buffer_option(data, p, p + osize, u32, u64)
            elif sections is not None and 16 <= oid <= 21 and osize >= 8:
                sections[oid] = u64.unpack_from(data, p)[0]
            p += osize
        else:
            raise _Bad
    if top is None:
        raise _Bad
    section, bpage, listed = top
    if section + 16 > n or u16.unpack_from(data, section)[0] != 3:
        raise _Bad
    if not u16.unpack_from(data, section + 2)[0] & 1:
        raise _Bad  # not compressed: nothing to do ahead
    ps = bpage if 64 <= bpage <= 1 << 24 and not bpage & (bpage - 1) else page
    if not 64 <= ps <= 1 << 24:
        raise _Bad
    out: list[tuple[int, list[tuple[int, int, int]]]] = []
    total = held = 0
    for cpu, off, size in sorted(listed):
        if not size:
            continue
        if out and out[-1][0] == cpu:
            raise _Bad
        end = off + size + 4  # (trace-cmd's size leaves out the u32 chunk count)
        if end > n:
            raise _Bad
        count = u32.unpack_from(data, off)[0]
        if count > size // 8:
            raise _Bad
        p = off + 4
        chunks = []
        for _ in range(count):
            if p + 8 > end:
                raise _Bad
            clen, ulen = u32.unpack_from(data, p)[0], u32.unpack_from(data, p + 4)[0]
            p += 8
            if ulen % ps or ulen > MAX_CHUNK_PAGES * ps or p + clen > end:
                raise _Bad
            if ulen:
                chunks.append((p, clen, ulen))
                total += ulen
                held += clen
            elif clen:
                raise _Bad
            p += clen
        out.append((cpu, chunks))
    if total > MAX_TOTAL_BYTES or total > held * MAX_RATIO:
        raise _Bad
    return out


def _buffer_option(
    data: Any, p: int, end: int, u32: struct.Struct, u64: struct.Struct
) -> tuple[int, int, list[tuple[int, int, int]]] | None:
    """A v7 BUFFER option: (section offset, page size, CPU entries) when it is the top one."""
    section = u64.unpack_from(data, p)[0]
    p += 8
    for field in ("name", "clock"):
        z = data.find(b"\x00", p, end)
        if z < 0:
            raise _Bad
        if field == "name" and z != p:
            return None  # an instance
        p = z + 1
    if p + 8 > end:
        raise _Bad
    page, count = u32.unpack_from(data, p)[0], u32.unpack_from(data, p + 4)[0]
    p += 8
    if count > (end - p) // 20:
        raise _Bad
    cpus = []
    for _ in range(count):
        cpu = u32.unpack_from(data, p)[0]
        cpus.append((cpu, u64.unpack_from(data, p + 4)[0], u64.unpack_from(data, p + 12)[0]))
        p += 20
    return section, page, cpus


# --- the parent ----------------------------------------------------------------------------


def discard() -> None:
    """Give the prefetch up (its memory goes with it): the read is done, or went another way."""
    global _pending
    pre, _pending = _pending, None
    if pre is not None:
        pre.stop.set()
