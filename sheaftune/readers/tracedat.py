"""Native reader of trace-cmd's trace.dat files (versions 6 and 7, compressed or not).

The container is parsed here: the initial header, v6's sequential metadata blocks, v7's sections
and OPTIONS chains, zstd/zlib-compressed sections and per-CPU chunk streams, flyrecord buffers
(the top one and instances). The per-CPU ring-buffer pages go to
:mod:`sheaftune.readers.ringbuffer`, payloads are decoded through the event formats stored in the
file (:mod:`sheaftune.readers.eventformat`) and call sites resolved through its kallsyms
(:mod:`sheaftune.readers.kallsyms`). CPUs are merged by timestamp with ties to the lower CPU,
trace-cmd's order.

The file is memory-mapped; compressed CPU data is decompressed chunk by chunk into a bounded
window, so memory stays the event table plus a fixed window whatever the file's size. Every
length read from the file is checked against the bytes that remain before anything is
allocated; problems raise :class:`~sheaftune.errors.InputError` naming the file, the section or
CPU and the byte offset, or, with ``ReadOptions.salvage``, are counted in ``meta.skipped`` and
``meta.warnings`` while every readable event is kept.

The table's meta: ``file_version``, ``clock`` (``ts_is_ns`` False for counter, uptime and
x86-tsc), ``cpus``, ``kernel_release`` (UNAME option), ``buffer`` (None for the top buffer) and
``buffers`` (``""`` is the top one), ``lost_events``/``lost_markers`` per CPU, counted as
trace-cmd prints ``CPU:N [N EVENTS DROPPED]`` lines. ``meta.extra``: ``page_size``,
``kernel_long_size``, ``endian``, ``compression``, ``trace_cmd_version``, ``pages``,
``records``, ``page_engine`` and ``dropped`` (cpu, time of the first record after the gap,
count or -1 when unknown; the first 10,000).
"""

from __future__ import annotations

import json
import mmap
import os
import re
import struct
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from sheaftune.errors import InputError, UsageError
from sheaftune.events import COLUMNS, NO_CACHE, EventTable, EventTableBuilder, TraceMeta
from sheaftune.readers.base import ReadOptions, Source, note_backwards
from sheaftune.readers.eventformat import (
    EventFormat,
    FormatError,
    HeaderPage,
    clock_from_trace_clock,
    format_id,
    parse_format,
    parse_header_page,
)

MAGIC = b"\x17\x08\x44tracing"
_ID_RE = re.compile(rb"\nID: *(\d+)")

# v7 section / option IDs (trace-cmd.dat.v7(5))
OPT_DONE = 0
OPT_DATE = 1
OPT_CPUSTAT = 2
OPT_BUFFER = 3
OPT_TRACECLOCK = 4
OPT_UNAME = 5
OPT_OFFSET = 7
OPT_CPUCOUNT = 8
OPT_VERSION = 9
OPT_TSC2NSEC = 14
#: sheaftune's record facts, as ``sheaftune record`` writes them into a v6 file (JSON; see
#: ``sheaftune.capture.tracedat_writer.OPTION_SHEAFTUNE``)
OPT_SHEAFTUNE = 0x5348
SEC_OPTIONS = 0
SEC_STRINGS = 15
SEC_HEADER_INFO = 16
SEC_FTRACE_EVENTS = 17
SEC_EVENT_FORMATS = 18
SEC_KALLSYMS = 19
SEC_PRINTK = 20
SEC_CMDLINES = 21
_SECTION_NAMES = {
    SEC_OPTIONS: "options",
    OPT_BUFFER: "flyrecord",
    SEC_STRINGS: "strings",
    SEC_HEADER_INFO: "header info",
    SEC_FTRACE_EVENTS: "ftrace event formats",
    SEC_EVENT_FORMATS: "event formats",
    SEC_KALLSYMS: "kallsyms",
    SEC_PRINTK: "printk formats",
    SEC_CMDLINES: "saved cmdlines",
}

#: clocks whose timestamps are not nanoseconds (raw counter ticks, jiffies, TSC cycles)
NON_NS_CLOCKS = frozenset({"counter", "uptime", "x86-tsc"})
#: refuse a metadata section decompressing to more than this (hostile length fields); a 6.18
#: kernel's kallsyms is ~5.4 MB, its event formats ~2 MB
MAX_UNCOMPRESSED = 256 << 20
#: refuse a CPU-data chunk of more pages than this (trace-cmd writes 10 per chunk)
MAX_CHUNK_PAGES = 1024
#: bytes of pages handed to the page walk per call
WINDOW_BYTES = 4 << 20
#: page data (uncompressed) from which the compiled numba walk is worth loading numba for
NUMBA_PAGE_BYTES = 128 << 20
#: CPU streams decoded at once, one thread each
MAX_THREADS = 4
#: missed-events markers kept, with their position, in meta.extra["dropped"]
MAX_MARKERS_KEPT = 10000


class _Buffer:
    """One flyrecord buffer: the top one (name "") or an instance."""

    __slots__ = ("name", "clock", "page_size", "section_offset", "compressed", "cpus")

    def __init__(self, name: str, page_size: int | None = None):
        self.name = name
        self.clock: str | None = None
        self.page_size = page_size
        self.section_offset: int | None = None  # v7: the flyrecord section header
        self.compressed = False
        self.cpus: list[tuple[int, int, int]] = []  # (cpu, offset, size)


class _Cursor:
    """Bounds-checked reads over ``data[pos:end]``; every shortfall is an InputError."""

    __slots__ = ("data", "pos", "end", "base", "what", "r")

    def __init__(self, r: _TraceDat, data: Any, pos: int, end: int, what: str, base: int = 0):
        self.r = r
        self.data = data
        self.pos = pos
        self.end = end
        self.what = what
        self.base = base  # added to positions in messages (decompressed data: 0 = its start)

    def fail(self, msg: str, at: int | None = None) -> InputError:
        pos = self.pos if at is None else at
        return self.r.error(msg, self.what, self.base + pos)

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > self.end:
            if self.pos > self.end:  # an offset read from the file points past the data
                raise self.fail(f"truncated: offset lies {self.pos - self.end} bytes past the end")
            raise self.fail(f"truncated: {n} bytes needed, {self.end - self.pos} left")

    def take(self, n: int) -> bytes:
        self.need(n)
        b = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return b

    def skip(self, n: int) -> None:
        self.need(n)
        self.pos += n

    def _num(self, st: struct.Struct) -> int:
        self.need(st.size)
        (v,) = st.unpack_from(self.data, self.pos)
        self.pos += st.size
        return int(v)

    def u16(self) -> int:
        return self._num(self.r.s_u16)

    def u32(self) -> int:
        return self._num(self.r.s_u32)

    def s32(self) -> int:
        return self._num(self.r.s_s32)

    def u64(self) -> int:
        return self._num(self.r.s_u64)

    def cstr(self, limit: int = 1 << 20) -> str:
        end = min(self.end, self.pos + limit)
        i = self.data.find(b"\x00", self.pos, end)
        if i < 0:
            raise self.fail("unterminated string")
        s = bytes(self.data[self.pos : i]).decode("utf-8", "replace")
        self.pos = i + 1
        return s


class TraceDatReader:
    """trace-cmd's binary trace.dat (file versions 6 and 7, zstd/zlib compression)."""

    name = "trace.dat"
    description = "trace-cmd record/extract binary trace.dat (v6, v7; zstd, zlib)"

    def sniff(self, head: bytes) -> bool:
        # a damaged magic with "tracing" intact is still ours: read() then names the offset
        return head.startswith(MAGIC) or head[3:10] == b"tracing"

    def read(self, source: Source, options: ReadOptions) -> EventTable:
        mapping = _mapped(source)
        table = None
        try:
            data = mapping.__enter__()
            table = _TraceDat(data, source.display, options).read()
            return table
        finally:
            from sheaftune import zstd_prefetch

            zstd_prefetch.discard()  # (not taken: another buffer, another path, an error)
            from sheaftune import premap

            premap.discard()
            if table is not None and isinstance(table.pending, _OnThread):
                # the call sites still resolve from the kallsyms in the mapping: it closes
                # once they are done, on their thread (beside the caller's normalisation)
                table.pending.then(mapping.close)
            else:
                mapping.close()


class _mapped:
    """The source's decompressed content as a read-only mapping (spooled when not a file)."""

    def __init__(self, source: Source):
        self.source = source
        self.tmp: str | None = None
        self.fh: Any = None
        self.mm: mmap.mmap | None = None

    def __enter__(self) -> Any:
        path = self.source.mmap_path
        if path is None:
            import tempfile  # (only here: with shutil and random, 4 ms of every run's start)

            fd, self.tmp = tempfile.mkstemp(suffix=".dat")
            errs = self.source.decompression_errors()
            try:
                with os.fdopen(fd, "wb") as out, self.source.open() as fh:
                    try:
                        while chunk := fh.read(1 << 20):
                            out.write(chunk)
                    except errs as e:
                        raise InputError(f"cannot decompress: {e}", self.source.display) from None
            except BaseException:
                os.unlink(self.tmp)
                self.tmp = None
                raise
            path = self.tmp
        else:
            from sheaftune import premap

            # mapped, its page tables filled, while the program started (sheaftune.premap)
            premapped = premap.take(path)
            if premapped is not None:
                self.fh, self.mm = premapped
                return self.mm
        try:
            self.fh = open(path, "rb")
        except OSError as e:
            raise InputError(f"cannot open: {e.strerror}", self.source.display) from None
        size = os.fstat(self.fh.fileno()).st_size
        if size == 0:
            return b""
        self.mm = mmap.mmap(self.fh.fileno(), 0, access=mmap.ACCESS_READ)
        return self.mm

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Unmap, close and remove the spooled copy (each once)."""
        mm, fh, tmp = self.mm, self.fh, self.tmp
        self.mm = self.fh = self.tmp = None
        if mm is not None:
            try:
                mm.close()
            except BufferError:  # a numpy view is still alive; the GC unmaps it later
                pass
        if fh is not None:
            fh.close()
        if tmp is not None:
            os.unlink(tmp)


class _TraceDat:
    def __init__(self, data: Any, path: str, options: ReadOptions):
        self.data = data
        self.size = len(data)
        self.path = path
        self.opts = options
        self.meta = TraceMeta(format="trace.dat")
        self.big = False
        self.version = 0
        self.compression = "none"
        self.page_size = 0
        self.header_page: HeaderPage | None = None
        self.formats: list[EventFormat] = []
        self.other_ids: list[int] = []
        self._kallsyms = b""
        self._kallsyms_span: tuple[int, int] | None = None  # v6: where it lies in the file
        self._kallsyms_thread: threading.Thread | None = None
        #: the kallsyms section's decompression, left to the first thread that needs the text
        #: (``finish_later``: the call sites' thread, beside normalisation)
        self._kallsyms_load: Callable[[], Any] | None = None
        self._kallsyms_error: BaseException | None = None
        # False while the thread runs ahead of the section's place in the file: a failure of
        # the sections before it is then reported, not the kallsyms error
        self._kallsyms_due = True
        self.cmdlines_text = b""
        self.buffers: list[_Buffer] = []
        self.trace_clock: str | None = None
        self.uname: str | None = None
        self.cpucount: int | None = None
        self.ts_offset = 0
        self.tsc2nsec: tuple[int, int] | None = None
        self.v6_cpus = 0
        self.v7_end = 0  # end of the furthest v7 section or CPU data the options reference
        self._record_option: bytes | None = None  # v6: sheaftune record's facts (JSON)
        self._zstd = threading.local()  # a ZstdDecompressor per thread (they are not shared)
        self._lock = threading.Lock()
        self._set_endian(False)

    # --- errors and helpers -------------------------------------------------------------

    def error(self, msg: str, section: str, offset: int | None = None) -> InputError:
        where = section if offset is None else f"{section}, byte offset {offset}"
        return InputError(msg, self.path, where)

    def _set_endian(self, big: bool) -> None:
        self.big = big
        e = ">" if big else "<"
        self.s_u16 = struct.Struct(e + "H")
        self.s_u32 = struct.Struct(e + "I")
        self.s_s32 = struct.Struct(e + "i")
        self.s_u64 = struct.Struct(e + "Q")

    def cur(self, pos: int, what: str, end: int | None = None) -> _Cursor:
        return _Cursor(self, self.data, pos, self.size if end is None else end, what)

    def lost(self, reason: str, n: int = 1, warning: str | None = None) -> None:
        """Record (salvage) something that could not be read."""
        with self._lock:  # CPU streams are decoded in threads
            self.meta.skip(reason, n)
            self.meta.complete = False
            if warning:
                self.meta.warnings.append(warning)

    def decompress(self, blob: Any, usize: int, what: str, offset: int) -> bytes:
        if usize > MAX_UNCOMPRESSED:
            raise self.error(f"uncompressed size {usize} is implausible", what, offset)
        algo = self.compression
        try:
            if algo == "zstd":
                dctx = getattr(self._zstd, "dctx", None)
                if dctx is None:
                    import zstandard

                    dctx = self._zstd.dctx = zstandard.ZstdDecompressor()
                out = dctx.decompress(blob, max_output_size=max(usize, 1))
            elif algo == "zlib":
                d = zlib.decompressobj()
                out = d.decompress(blob, usize)
                if not d.eof:
                    raise ValueError("zlib stream incomplete or larger than declared")
            else:
                raise self.error(f"unsupported compression {algo!r}", what, offset)
        except InputError:
            raise
        except Exception as e:  # zstd.ZstdError, zlib.error, ValueError: all mean corrupt
            raise self.error(f"corrupt {algo} data: {e}", what, offset) from None
        if len(out) != usize:
            raise self.error(
                f"{algo} data decompressed to {len(out)} bytes, {usize} declared", what, offset
            )
        return out

    # --- initial header -----------------------------------------------------------------

    def read(self) -> EventTable:
        if self.size < len(MAGIC) or bytes(self.data[: len(MAGIC)]) != MAGIC:
            raise self.error("not a trace.dat file (wrong magic)", "header", 0)
        c = self.cur(len(MAGIC), "header")
        vs = c.cstr(16)
        try:
            self.version = int(vs)
        except ValueError:
            raise self.error(f"unknown trace.dat version {vs!r}", "header", 10) from None
        if not 1 <= self.version <= 7:
            raise self.error(
                f"unsupported trace.dat version {self.version} (versions 6 and 7 are read)",
                "header",
                10,
            )
        c.need(6)
        endian = self.data[c.pos]
        if endian not in (0, 1):
            raise self.error(f"bad endianness byte {endian}", "header", c.pos)
        self._set_endian(endian == 1)
        c.pos += 2  # endianness, recorder's long size (not the kernel's: see header_page)
        self.page_size = c.u32()
        try:
            if self.version >= 7:
                self._read_v7(c)
            else:
                self._read_v6(c)
            table = self._read_events()
        except BaseException:
            if not self._kallsyms_due:  # failed before the kallsyms section's place
                t = self._kallsyms_thread
                if t is not None:
                    t.join()
                self._kallsyms_load = None
                self._kallsyms_error = None
            self._kallsyms_wait()  # its error, if any, came first in the file
            raise
        if table.pending is None:  # (else the call sites' thread needs it, and waits for it)
            self._kallsyms_wait()
            self._kallsyms = b""  # (a view of the mapping would keep it from closing)
        return table

    # --- kallsyms, decompressed on a thread ---------------------------------------------

    @property
    def kallsyms_text(self) -> bytes:
        self._kallsyms_wait()
        span = self._kallsyms_span
        if span is not None:  # v6: copied out of the mapping when first asked for
            self._kallsyms_span = None
            self._kallsyms = bytes(self.data[span[0] : span[0] + span[1]])
        elif not isinstance(self._kallsyms, bytes):  # v7: a view of the section
            self._kallsyms = bytes(self._kallsyms)
        return self._kallsyms

    @kallsyms_text.setter
    def kallsyms_text(self, text: bytes) -> None:
        self._kallsyms = text

    def kallsyms_buffer(self) -> Any:
        """The kallsyms text without a copy: a view of the mapping (v6, uncompressed) or of
        the decompressed section. (A view of the mapping pins it: let it go when done.)"""
        self._kallsyms_wait()
        span = self._kallsyms_span
        if span is not None:
            return memoryview(self.data)[span[0] : span[0] + span[1]]
        return self._kallsyms

    def _kallsyms_defer(self, load: Any) -> None:
        """Run ``load()`` (the kallsyms section's decompression) on a thread; the text, or
        the error, is taken where it is needed (call-site names) or when the read ends.

        With ``finish_later`` the call sites are resolved on a thread of their own, beside
        the caller's normalisation (``EventTable.pending``), which then also decompresses
        kallsyms first: the read's walkers keep both cores, and a zstd file's start-up
        decompresses 5 MB less on the idle core before the read can begin (the v7 fixture's
        CPU data is ready sooner, see ``sheaftune.zstd_prefetch``). Its error, if any, is
        raised when the table is settled; or at the end of the read, in the reading thread,
        when the read fails or leaves nothing pending (the streaming reader, rows out of time
        order), which then decompresses it itself."""
        if self.opts.finish_later:
            self._kallsyms_load = load
            return

        def run() -> None:
            try:
                self._kallsyms = load()
            except BaseException as e:  # noqa: BLE001 - raised by _kallsyms_wait
                self._kallsyms_error = e

        t = threading.Thread(target=run, name="sheaftune-kallsyms", daemon=True)
        self._kallsyms_thread = t
        t.start()

    def _kallsyms_wait(self) -> None:
        load = self._kallsyms_load
        if load is not None:
            self._kallsyms_load = None
            try:
                self._kallsyms = load()
            except BaseException as failure:  # noqa: BLE001 - raised below, as the thread's
                self._kallsyms_error = failure
        t = self._kallsyms_thread
        if t is not None:
            t.join()
            self._kallsyms_thread = None
        e = self._kallsyms_error
        if e is not None:
            self._kallsyms_error = None
            raise e

    # --- shared metadata blocks ---------------------------------------------------------

    def _header_info(self, c: _Cursor) -> None:
        tag = c.take(12)
        if tag != b"header_page\x00":
            raise c.fail("header_page block missing", c.pos - 12)
        n = c.u64()
        text = c.take(n)
        try:
            self.header_page = parse_header_page(text)
        except FormatError as e:
            raise c.fail(f"header_page: {e}") from None
        tag = c.take(13)
        if tag != b"header_event\x00":
            raise c.fail("header_event block missing", c.pos - 13)
        c.skip(c.u64())

    def _ftrace_formats(self, c: _Cursor) -> None:
        count = c.u32()
        for _ in range(count):
            text = c.take(c.u64())
            i = format_id(text)
            if i is not None:
                self.other_ids.append(i)

    def _event_formats(self, c: _Cursor) -> None:
        start = c.pos
        nsys = c.u32()
        u64 = self.s_u64.unpack_from
        data = c.data
        for _ in range(nsys):
            system = c.cstr(4096)
            count = c.u32()
            if system != "kmem":
                # ~2000 formats nobody decodes: skip them in a tight loop (only their IDs,
                # below); a bad length falls to the cursor, which raises the usual error
                pos, end = c.pos, c.end
                for _ in range(count):
                    if pos + 8 > end:
                        break
                    size = u64(data, pos)[0]
                    if size > end - pos - 8:
                        break
                    pos += 8 + size
                else:
                    c.pos = pos
                    continue
                c.pos = pos
                c.skip(c.u64())
                raise AssertionError("unreachable: the cursor raises on a bad length")
            for _ in range(count):
                at = c.pos
                size = c.u64()
                if system != "kmem":
                    c.skip(size)  # ~2000 formats nobody decodes: only their IDs, below
                    continue
                text = c.take(size)
                try:
                    self.formats.append(parse_format(text, system))
                except FormatError as e:
                    raise c.fail(f"kmem event format: {e}", at) from None
        # every event's ID, so records of events without a format can be told apart
        # (searched in place: a copy of ~2 MB costs more in page faults than the search)
        with memoryview(c.data) as view:
            self.other_ids.extend(int(x) for x in _ID_RE.findall(view[start : c.pos]))

    # --- version 6 ----------------------------------------------------------------------

    def _read_v6(self, c: _Cursor) -> None:
        c.what = "header info"
        self._header_info(c)
        c.what = "ftrace event formats"
        self._ftrace_formats(c)
        c.what = "event formats"
        self._event_formats(c)
        c.what = "kallsyms"
        n = c.u32()
        c.need(n)
        # read in place when needed (call-site names): ~5 MB not copied
        self._kallsyms_span = (c.pos, n)
        c.pos += n
        c.what = "printk formats"
        c.skip(c.u32())
        c.what = "saved cmdlines"
        self.cmdlines_text = c.take(c.u64())
        c.what = "CPU count"
        self.v6_cpus = c.u32()
        if self.v6_cpus > 1 << 16:
            raise c.fail(f"implausible CPU count {self.v6_cpus}", c.pos - 4)
        tag = c.take(10)
        v6_buffers: list[tuple[int, str]] = []
        if tag == b"options  \x00":
            c.what = "options"
            self._options(c, v6_buffers)
            self._record_facts()
            tag = c.take(10)
        if tag == b"latency  \x00":
            raise self.error(
                "latency trace (text, not flyrecord data) is not supported", "flyrecord", c.pos - 10
            )
        if tag != b"flyrecord\x00":
            raise self.error("expected 'flyrecord' after the options", "flyrecord", c.pos - 10)
        top = _Buffer("", page_size=self.page_size)
        self._v6_flyrecord(c, top, clock_block=self.trace_clock is not None)
        top.clock = self.trace_clock or top.clock
        self.buffers.append(top)
        for off, name in v6_buffers:
            b = _Buffer(name, page_size=self.page_size)
            ic = self.cur(off, f"flyrecord of buffer {name!r}")
            if ic.take(10) != b"flyrecord\x00":
                raise ic.fail("instance data does not start with 'flyrecord'", off)
            self._v6_flyrecord(ic, b, clock_block=True)
            self.buffers.append(b)

    def _record_facts(self) -> None:
        """What ``sheaftune record`` recorded (events, filters, per-CPU losses, ...) into
        ``meta.extra["record"]``, from its option; an unreadable one is left out, as if absent."""
        data = self._record_option
        if data is None:
            return
        try:
            facts = json.loads(data.rstrip(b"\0").decode())
        except ValueError:  # (not UTF-8, not JSON)
            return
        if facts:
            self.meta.extra["record"] = facts

    def _v6_flyrecord(self, c: _Cursor, b: _Buffer, clock_block: bool) -> None:
        c.what = f"flyrecord CPU table of buffer {b.name!r}" if b.name else "flyrecord CPU table"
        for cpu in range(self.v6_cpus):
            off = c.u64()
            size = c.u64()
            b.cpus.append((cpu, off, size))
        if clock_block:
            n = c.u64()
            b.clock = clock_from_trace_clock(c.take(n).decode("utf-8", "replace"))

    # --- version 7 ----------------------------------------------------------------------

    def _read_v7(self, c: _Cursor) -> None:
        self.compression = c.cstr(64)
        c.cstr(64)  # compression library version
        if self.compression not in ("none", "zstd", "zlib"):
            raise self.error(f"unsupported compression {self.compression!r}", "header", c.pos)
        next_opts = c.u64()
        sections: dict[int, int] = {}
        seen: set[int] = set()
        while next_opts:
            if next_opts in seen:
                raise self.error("OPTIONS sections form a loop", "options", next_opts)
            seen.add(next_opts)
            oc = self._section(next_opts, SEC_OPTIONS)
            next_opts = self._options(oc, None, sections)
        self.meta.extra["compression"] = self.compression
        if SEC_KALLSYMS in sections and not self.opts.salvage:
            # the biggest section, needed last: decompressed beside the rest of the read, from
            # now on, while one core is otherwise idle (strict mode only: salvage records its
            # loss in file order); a bad header is reported in its place in the file, below
            try:
                finish = self._section(sections[SEC_KALLSYMS], SEC_KALLSYMS, lazy=True)
            except InputError:
                pass
            else:
                self._kallsyms_due = False
                self._kallsyms_defer(lambda: _view_u32(finish()))
        need = (SEC_HEADER_INFO, "header info"), (SEC_EVENT_FORMATS, "event formats")
        for sid, name in need:
            if sid not in sections:
                raise self.error(f"no {name} section listed in the options", "options")
        self._header_info(self._section(sections[SEC_HEADER_INFO], SEC_HEADER_INFO))
        if SEC_FTRACE_EVENTS in sections:
            self._ftrace_formats(self._section(sections[SEC_FTRACE_EVENTS], SEC_FTRACE_EVENTS))
        self._event_formats(self._section(sections[SEC_EVENT_FORMATS], SEC_EVENT_FORMATS))
        for sid, attr, width in (
            (SEC_KALLSYMS, "kallsyms_text", 4),
            (SEC_CMDLINES, "cmdlines_text", 8),
        ):
            if sid not in sections:
                continue
            started = self._kallsyms_thread is not None or self._kallsyms_load is not None
            if sid == SEC_KALLSYMS and started:
                self._kallsyms_due = True  # (started, or left to whoever needs it, above)
                continue
            if sid == SEC_KALLSYMS and not self.opts.salvage:  # (its header failed above)
                finish = self._section(sections[sid], sid, lazy=True)
                self._kallsyms_defer(lambda finish=finish: _view_u32(finish()))
                continue
            try:
                sc = self._section(sections[sid], sid)
                setattr(self, attr, sc.take(sc.u32() if width == 4 else sc.u64()))
            except InputError as e:
                if not self.opts.salvage:
                    raise
                self.lost(f"unreadable {_SECTION_NAMES[sid]}", 1, f"{_SECTION_NAMES[sid]}: {e}")
        for b in self.buffers:
            if b.section_offset is None:
                continue
            hc = self.cur(b.section_offset, f"flyrecord section of buffer {b.name!r}")
            sid = hc.u16()
            flags = hc.u16()
            if sid != OPT_BUFFER:
                raise hc.fail(
                    f"expected a flyrecord section (id 3), found id {sid}", b.section_offset
                )
            b.compressed = bool(flags & 1)
            hc.s32()
            self.v7_end = max(self.v7_end, hc.pos + 8 + hc.u64())
            for _, off, size in b.cpus:
                self.v7_end = max(self.v7_end, off + size)
        self._v7_trailing_sections()

    def _v7_trailing_sections(self) -> None:
        """Check the sections after the last one the options list (trace-cmd writes the
        strings section there, referenced by no option): a file cut inside them would otherwise
        read as complete, since nothing else needs those bytes."""
        pos = self.v7_end
        while pos < self.size:
            if self.size - pos < 16:
                problem = f"{self.size - pos} bytes after the last section: a cut section header"
            else:
                c = self.cur(pos, "trailing section")
                sid = c.u16()
                c.u16()
                c.s32()
                size = c.u64()
                if sid not in _SECTION_NAMES:
                    return  # not a section: data we do not know, leave it be
                if size <= self.size - c.pos:
                    pos = c.pos + size
                    continue
                problem = (
                    f"{_SECTION_NAMES[sid]} section (id {sid}) of {size} bytes runs past the end "
                    f"of the file ({self.size} bytes): file truncated"
                )
            if not self.opts.salvage:
                raise self.error(problem, "trailing sections", pos)
            self.lost("truncated trailing section", 1, f"byte offset {pos}: {problem}")
            return

    def _section(self, offset: int, expect: int, lazy: bool = False) -> Any:
        """Cursor over a v7 section's payload (decompressed when flagged). ``lazy``: the
        header is checked now; returned is a function giving the cursor (decompressing)."""
        name = _SECTION_NAMES.get(expect, f"section {expect}")
        what = f"{name} section (id {expect})"
        c = self.cur(offset, what)
        sid = c.u16()
        flags = c.u16()
        c.s32()
        size = c.u64()
        if sid != expect:
            raise c.fail(f"expected section id {expect}, found {sid}", offset)
        start = c.pos
        c.need(size)
        self.v7_end = max(self.v7_end, start + size)
        if not flags & 1:
            plain = self.cur(start, what, start + size)
            return (lambda: plain) if lazy else plain
        clen = c.u32()
        ulen = c.u32()
        if clen > size - 8:
            raise c.fail(f"compressed size {clen} exceeds the section ({size} bytes)", start)
        at = c.pos

        def finish() -> _Cursor:
            out = None
            if self.compression == "zstd" and ulen <= MAX_UNCOMPRESSED:
                from sheaftune import zstd_prefetch

                # (decompressed at start-up, from this same file: sheaftune.zstd_prefetch)
                out = zstd_prefetch.section(self.path, at, clen, ulen)
            if out is None:
                blob = memoryview(self.data)[at : at + clen]  # (read in place, not copied)
                try:
                    out = self.decompress(blob, ulen, what, start)
                finally:
                    blob.release()  # (the mapping is closed when the read ends)
            return _Cursor(self, out, 0, len(out), f"{what} (decompressed)")

        return finish if lazy else finish()

    def _options(
        self,
        c: _Cursor,
        v6_buffers: list[tuple[int, str]] | None,
        sections: dict[int, int] | None = None,
    ) -> int:
        """Parse an option list; returns the next OPTIONS offset (v7 DONE), else 0."""
        while True:
            oid = c.u16()
            if oid == OPT_DONE and v6_buffers is not None:
                return 0  # v6: a bare u16 0 ends the list
            size = c.u32()
            at = c.pos
            c.need(size)
            oc = _Cursor(self, c.data, at, at + size, f"option {oid}", c.base)
            c.pos = at + size
            if oid == OPT_DONE:
                return oc.u64() if size >= 8 else 0
            if oid == OPT_BUFFER:
                if v6_buffers is not None:
                    off = oc.u64()
                    v6_buffers.append((off, oc.cstr(4096)))
                else:
                    b = _Buffer("")
                    b.section_offset = oc.u64()
                    b.name = oc.cstr(4096)
                    b.clock = oc.cstr(4096) or None
                    b.page_size = oc.u32()
                    n = oc.u32()
                    if n > (oc.end - oc.pos) // 20:
                        raise oc.fail(f"BUFFER option lists {n} CPUs, more than it holds")
                    for _ in range(n):
                        b.cpus.append((oc.u32(), oc.u64(), oc.u64()))
                    self.buffers.append(b)
            elif oid == OPT_TRACECLOCK:
                self.trace_clock = clock_from_trace_clock(oc.cstr(4096))
            elif oid == OPT_UNAME:
                self.uname = oc.cstr(4096)
            elif oid == OPT_CPUCOUNT and size >= 4:
                self.cpucount = oc.u32()
            elif oid == OPT_VERSION:
                self.meta.extra["trace_cmd_version"] = oc.cstr(4096)
            elif oid == OPT_OFFSET:
                self.ts_offset += _strtoll(oc.cstr(4096))
            elif oid == OPT_DATE:
                self.ts_offset += _strtoll(oc.cstr(4096)) * 1000
            elif oid == OPT_SHEAFTUNE and v6_buffers is not None:
                self._record_option = bytes(c.data[at : at + size])  # (the last one counts)
            elif oid == OPT_TSC2NSEC and size >= 8:
                mult = oc.u32()
                shift = oc.u32()
                self.tsc2nsec = (mult, shift)
            elif sections is not None and SEC_HEADER_INFO <= oid <= SEC_CMDLINES and size >= 8:
                sections[oid] = oc.u64()

    # --- events -------------------------------------------------------------------------

    def _select_buffer(self) -> _Buffer:
        want = self.opts.buffer or ""
        names = [b.name for b in self.buffers]
        for b in self.buffers:
            if b.name == want:
                return b
        listed = ", ".join(repr(n) if n else "top" for n in names) or "none"
        if not want:
            raise self.error(
                f"the file holds no top-level flyrecord buffer (buffers: {listed}; "
                "choose one with --buffer)",
                "options",
            )
        raise UsageError(f"{self.path}: no buffer {want!r} in this trace.dat (buffers: {listed})")

    def _read_events(self) -> EventTable:
        meta = self.meta
        meta.file_version = self.version
        hp = self.header_page
        if hp is None:
            raise self.error("no header_page in the file", "header info")
        buf = self._select_buffer()
        self._check_other_buffers(buf)
        meta.buffers = [b.name for b in self.buffers]
        meta.buffer = buf.name or None
        # as trace-cmd: the buffer's sub-buffer size (v7 BUFFER option), else the file header's;
        # header_page (the top buffer's layout when recorded) only when those are unusable
        page_size = buf.page_size or self.page_size
        if page_size < 64 or page_size & (page_size - 1) or page_size > 1 << 24:
            page_size = hp.page_size
        if page_size != hp.page_size:
            meta.extra["header_page_size"] = hp.page_size
        clock = buf.clock or self.trace_clock
        meta.clock = clock
        meta.ts_is_ns = self.tsc2nsec is not None or clock not in NON_NS_CLOCKS
        if self.uname:
            parts = self.uname.split()
            meta.kernel_release = parts[2] if len(parts) >= 3 else self.uname
        if self.cpucount:
            meta.cpus = self.cpucount
        elif self.version < 7:
            meta.cpus = self.v6_cpus
        else:
            meta.cpus = max((cpu for cpu, _, _ in buf.cpus), default=-1) + 1
        meta.extra.update(
            {
                "page_size": page_size,
                "kernel_long_size": hp.long_size,
                "endian": "big" if self.big else "little",
            }
        )
        from sheaftune.readers.kmemlayout import compile_layout

        try:
            layout = compile_layout(self.formats, self.other_ids)
        except ValueError as e:
            raise self.error(str(e), "event formats") from None

        k = self._kernels(buf)
        if k is not None:
            from sheaftune.readers.tracedat_fast import read_fast

            fast = read_fast(self, buf, page_size, hp.long_size, layout, k)
            if fast is not None:
                meta.extra["page_engine"] = "numba"
                return self._build_fast(fast, k)
        # the streaming reader: window by window, exact reports of every damage
        from sheaftune.readers.ringbuffer import PageDecoder, merge_cpus

        per_cpu: list[tuple[int, Any]]
        name_keys: dict[str, int] = {}
        engine = self._engine(buf)
        meta.extra["page_engine"] = engine
        done = [0]  # file bytes of CPU data consumed, for the progress callback
        todo = sum(size for _, _, size in buf.cpus) or 1
        # Set when the main thread is interrupted (Ctrl-C) or fails: the other CPU streams stop
        # at their next window instead of decoding to the end while the process waits on them.
        stop = threading.Event()

        def decode(cpu: int, off: int, size: int) -> Any:
            dec = PageDecoder(
                page_size,
                hp.long_size,
                self.big,
                layout,
                salvage=self.opts.salvage,
                path=self.path,
                where=f"CPU {cpu}",
                engine=engine,
                name_keys=name_keys,
            )
            windows: Iterator[tuple[int, bytes | np.ndarray, int]]
            if buf.compressed:
                windows = self._compressed_windows(cpu, off, size, page_size)
            else:
                windows = self._plain_windows(cpu, off, size, page_size)
            for base, win, reached in windows:
                if stop.is_set():
                    return None
                dec.feed(win, base)
                if self.opts.progress is not None:
                    with self._lock:
                        done[0] += reached - base
                        self.opts.progress(min(done[0], todo), todo)
            return dec.result()

        jobs = [(cpu, off, size) for cpu, off, size in sorted(buf.cpus) if size]
        workers = min(len(jobs), os.cpu_count() or 1, MAX_THREADS)
        if workers <= 1:
            per_cpu = [(cpu, decode(cpu, off, size)) for cpu, off, size in jobs]
        else:
            # one thread per CPU stream: decompression and most numpy work release the GIL;
            # results (and a strict-mode error) are taken in CPU order
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(workers)
            try:
                futures = [(cpu, pool.submit(decode, cpu, off, size)) for cpu, off, size in jobs]
                per_cpu = [(cpu, f.result()) for cpu, f in futures]
            except BaseException:
                stop.set()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
        return self._build(per_cpu, merge_cpus)

    def _kernels(self, buf: _Buffer) -> Any:
        """The compiled kernels for the whole-stream path, or None for the streaming reader:
        always when an ahead-of-time build is (or can be) at hand; with numba JIT only where
        the streaming reader would load numba anyway (``SHEAFTUNE_PAGE_ENGINE=numba`` forces
        them, ``=numpy`` the streaming numpy walk)."""
        forced = os.environ.get("SHEAFTUNE_PAGE_ENGINE")
        if forced == "numpy":
            return None
        if forced != "numba" and not _aot_usable() and self._engine(buf) == "numpy":
            return None
        from sheaftune.readers.tracedat_fast import reader_kernels

        return reader_kernels()

    def _engine(self, buf: _Buffer) -> str:
        """The page walk for this buffer: numpy, or numba when numba is loaded already or there
        is so much page data that its compiled walk repays the ~0.6 s numba costs to load
        (``SHEAFTUNE_PAGE_ENGINE=numpy|numba`` overrides)."""
        forced = os.environ.get("SHEAFTUNE_PAGE_ENGINE")
        if forced in ("numpy", "numba"):
            return forced
        if "numba" in sys.modules:  # already paid for (e.g. by the model's fast engine): free
            return "numba"
        total = 0
        for _, off, size in buf.cpus:
            if not buf.compressed:
                total += size
                continue
            # sum the chunks' uncompressed sizes from their headers (no decompression)
            try:
                c = self.cur(off, "chunks", min(self.size, off + size + 4))
                for _ in range(c.u32()):
                    clen = c.u32()
                    total += c.u32()
                    c.skip(clen)
            except InputError:
                pass  # damage is reported, with its offset, when the data is read
        if total < NUMBA_PAGE_BYTES:
            return "numpy"
        try:
            import numba  # noqa: F401
        except ImportError:
            return "numpy"
        return "numba"

    def _clip(self, cpu: int, off: int, size: int) -> int:
        """The CPU's data size, clipped to the file (salvage) or an InputError."""
        if off + size <= self.size:
            return size
        msg = (
            f"data of {size} bytes at offset {off} runs past the end of the file "
            f"({self.size} bytes): file truncated"
        )
        if not self.opts.salvage:
            raise self.error(msg, f"CPU {cpu}", off)
        have = max(0, self.size - off)
        self.lost(
            "bytes of CPU data missing (truncated file)",
            size - have,
            f"CPU {cpu}: {msg}; read the {have} bytes present",
        )
        return have

    def _check_other_buffers(self, buf: _Buffer) -> None:
        """A buffer not read (an instance beside the top one) whose CPU data runs past the end
        of the file: the file was cut there, so the result must not read as complete even when
        the buffer asked for is whole."""
        for other in self.buffers:
            if other is buf:
                continue
            for cpu, off, size in other.cpus:
                if off + size <= self.size:
                    continue
                label = repr(other.name) if other.name else "top"
                msg = (
                    f"data of buffer {label} ({size} bytes at offset {off}) runs past the end "
                    f"of the file ({self.size} bytes): file truncated"
                )
                if not self.opts.salvage:
                    raise self.error(msg, f"CPU {cpu}", off)
                self.lost(f"truncated CPU data of another buffer ({label})", 1, f"CPU {cpu}: {msg}")

    def _plain_windows(
        self, cpu: int, off: int, size: int, page_size: int
    ) -> Iterator[tuple[int, np.ndarray, int]]:
        """(file offset, pages, file offset reached) windows of a CPU's uncompressed data."""
        size = self._clip(cpu, off, size)
        if self.opts.salvage and size % page_size:
            self.lost("bytes of CPU data in a partial page", size % page_size)
            size -= size % page_size
        step = max(page_size, WINDOW_BYTES - WINDOW_BYTES % page_size)
        view = np.frombuffer(self.data, dtype=np.uint8, count=size, offset=off) if size else None
        for start in range(0, size, step):
            assert view is not None
            win = view[start : start + step]
            yield off + start, win, off + start + len(win)

    def _compressed_windows(
        self, cpu: int, off: int, size: int, page_size: int
    ) -> Iterator[tuple[int, bytes, int]]:
        """(file offset, pages, file offset reached) windows of a CPU's chunk stream."""
        # trace-cmd records the size of the chunks without the leading u32 chunk count
        size = self._clip(cpu, off, size + 4)
        c = self.cur(off, f"CPU {cpu}", off + size)
        try:
            count = c.u32()
        except InputError:
            if not self.opts.salvage:
                raise
            self.lost("unreadable CPU chunk streams", 1, f"CPU {cpu}: no chunk count")
            return
        pending: list[bytes] = []
        pend_bytes = 0
        pend_off = off
        for i in range(count):
            at = c.pos
            try:
                clen = c.u32()
                ulen = c.u32()
                if ulen % page_size or ulen > MAX_CHUNK_PAGES * page_size:
                    raise c.fail(
                        f"chunk {i}: implausible uncompressed size {ulen} (not a whole "
                        f"number of {page_size}-byte pages, at most {MAX_CHUNK_PAGES})",
                        at,
                    )
                c.need(clen)
                blob = bytes(self.data[c.pos : c.pos + clen])
                c.pos += clen
                out = self.decompress(blob, ulen, f"CPU {cpu} chunk {i}", at)
            except InputError as e:
                if not self.opts.salvage:
                    raise
                self.lost(
                    "corrupt or missing compressed chunks",
                    count - i,
                    f"CPU {cpu}: chunk {i} of {count} unreadable ({e.detail}); "
                    f"{count - i} chunks skipped",
                )
                break
            if not pending:
                pend_off = at
            pending.append(out)
            pend_bytes += len(out)
            if pend_bytes >= WINDOW_BYTES:
                yield pend_off, b"".join(pending) if len(pending) > 1 else pending[0], c.pos
                pending, pend_bytes = [], 0
        if pending:
            yield pend_off, b"".join(pending) if len(pending) > 1 else pending[0], c.pos

    # --- assembly -----------------------------------------------------------------------

    def _build(self, per_cpu: list[tuple[int, Any]], merge_cpus: Any) -> EventTable:
        meta = self.meta
        builder = EventTableBuilder(meta)
        names: dict[int, str] = {}  # name_key -> cache name, shared by the CPUs' decoders
        ts_list: list[np.ndarray] = []
        backwards: dict[int, int] = {}
        for cpu, d in per_cpu:
            names.update(d.names)
            ts = d.columns["ts"]
            if self.tsc2nsec is not None:
                ts = _mul_u64_u32_shr(ts, *self.tsc2nsec)
            if self.ts_offset:
                ts = ts + np.int64(self.ts_offset)
            d.columns["ts"] = ts
            ts_list.append(ts)
            back = int(np.count_nonzero(ts[1:] < ts[:-1])) if len(ts) > 1 else 0
            if back:
                backwards[cpu] = back
        self._account(per_cpu, backwards)
        if not per_cpu:
            return builder.build()
        order = merge_cpus(ts_list)
        ts_list.clear()
        lens = [len(d) for _, d in per_cpu]
        cpus = np.repeat(np.array([c for c, _ in per_cpu], dtype=np.uint16), lens)

        def col(name: str) -> np.ndarray:
            # pop: each CPU's raw column is freed once the merged one exists (peak memory)
            parts = [d.columns.pop(name) for _, d in per_cpu]
            return (np.concatenate(parts) if len(parts) > 1 else parts[0])[order]

        cols: dict[str, np.ndarray] = {
            "ts_ns": col("ts"),
            "cpu": cpus[order],
            "op": col("op"),
            "ptr": col("ptr"),
            "bytes_req": col("bytes_req"),
            "bytes_alloc": col("bytes_alloc"),
            "gfp": col("gfp"),
            "node": col("node"),
            "pid": col("pid"),
        }
        # distinct call sites -> kallsyms, once each
        codes, sites = _factorize(col("call_site"))
        site_names = self._resolve_sites(sites)
        site_ids = np.array([builder.sites.intern(s) for s in site_names], dtype=np.int32)
        cols["site_id"] = site_ids[codes]
        return self._finish(builder, cols, col("name_key"), names)

    def _build_fast(self, f: Any, k: Any) -> EventTable:
        """The table from the compiled path's merged columns (same result as ``_build``).

        Its call sites and task names (kallsyms lookups, the cmdlines, ~7 ms on a 715k-event
        trace) are resolved by ``finish``: on a thread when the caller asked for it
        (``ReadOptions.finish_later``) and the rows are in time order, ``EventTable.pending``
        then waiting for them; otherwise here. ``pipeline.load`` normalises the table
        meanwhile, which needs neither: that stage runs on one core, and the other is free."""
        meta = self.meta
        builder = EventTableBuilder(meta)
        self._account(f.summaries, f.backwards)
        if not f.summaries:
            return builder.build()
        raw = f.cols
        cols: dict[str, np.ndarray] = {
            name: raw[key]
            for name, key in (
                ("ts_ns", "ts"),
                ("cpu", "cpu"),
                ("op", "op"),
                ("ptr", "ptr"),
                ("bytes_req", "bytes_req"),
                ("bytes_alloc", "bytes_alloc"),
                ("gfp", "gfp"),
                ("node", "node"),
                ("pid", "pid"),
            )
        }
        self._cache_ids(builder, cols, raw["name_key"], f.names)
        # each part of the merge coded its call sites in the column the merge's allocation
        # holds for the ids; ``finish`` makes the codes ids, and fills the comm ids' column
        cols["site_id"] = raw["site_id"]
        cols["comm_id"] = raw["comm_id"]
        from sheaftune.readers.tracedat_fast import resolve_sites

        def finish() -> None:
            # the distinct call sites, ascending (as ``_build``), from each part's own (sorted
            # here: np.unique would import numpy.ma, 7 ms)
            sites = np.sort(
                np.concatenate([s for _, _, s in f.site_parts] or [np.empty(0, np.uint64)])
            )
            if len(sites) > 1:
                sites = sites[np.concatenate(([True], sites[1:] != sites[:-1]))]
            names: list[str] = []
            self._kallsyms_wait()  # (its decompression, if left to this thread; its error)
            if len(sites):
                names, warning = resolve_sites(k, self.kallsyms_buffer(), sites)
                if warning:
                    meta.warnings.append(warning)
            site_ids = np.array([builder.sites.intern(s) for s in names], dtype=np.int32)
            for a, b, part in f.site_parts:
                codes = raw["site_id"][a:b]
                if k.gather_i32(site_ids[np.searchsorted(sites, part)], codes, codes) < 0:
                    raise RuntimeError("call-site code out of range")
            self._comm_ids(builder, cols, _distinct(cols["pid"]), k, raw["comm_id"])

        if f.backwards or not self.opts.finish_later:
            # (rows out of time order are sorted as ``_build``'s are, sites and comms with them)
            finish()
            return self._table(builder, cols, not f.backwards)
        table = self._table(builder, cols, True)
        table.pending = _OnThread(finish, table, builder, cols)
        return table

    def _account(self, per_cpu: list[tuple[int, Any]], backwards: dict[int, int]) -> None:
        """Per-CPU facts of the page walks into the meta: pages, records, what was skipped,
        lost-event markers, backward timestamp steps."""
        meta = self.meta
        pages = records = 0
        for cpu, d in per_cpu:
            pages += d.pages
            records += d.records
            if d.bad_pages:
                self.lost(
                    "corrupt ring-buffer pages",
                    d.bad_pages,
                    f"CPU {cpu}: {d.bad_pages} corrupt pages (or page tails) skipped",
                )
            if d.unknown_ids:
                meta.skip("records with an event ID no format describes", d.unknown_ids)
            if d.short_records:
                meta.skip("kmem records shorter than their format", d.short_records)
            if d.lost_markers:
                meta.lost_markers[cpu] = d.lost_markers
                meta.lost_events[cpu] = d.lost_events
                dropped = meta.extra.setdefault("dropped", [])
                for t, n in zip(d.marker_ts.tolist(), d.marker_count.tolist(), strict=True):
                    if len(dropped) < MAX_MARKERS_KEPT:
                        dropped.append({"cpu": cpu, "ts": int(t), "count": int(n)})
        meta.extra["pages"] = pages
        meta.extra["records"] = records
        note_backwards(meta, backwards)
        if "dropped" in meta.extra:
            meta.extra["dropped"].sort(key=lambda m: (m["ts"], m["cpu"]))

    def _finish(
        self,
        builder: EventTableBuilder,
        cols: dict[str, np.ndarray],
        name_key: np.ndarray,
        names: dict[int, str],
    ) -> EventTable:
        """Cache ids from the name keys, comms from the pids; the table, sorted by time."""
        self._cache_ids(builder, cols, name_key, names)
        self._comm_ids(builder, cols, None)
        return self._table(builder, cols, False)

    def _cache_ids(
        self,
        builder: EventTableBuilder,
        cols: dict[str, np.ndarray],
        name_key: np.ndarray,
        names: dict[int, str],
    ) -> None:
        """The ``cache_id`` column from the cache-name keys (``names``: key -> cache name)."""
        cache_of_key = np.full(max(names, default=0) + 1, NO_CACHE, dtype=np.int32)
        for k, name in sorted(names.items()):
            cache_of_key[k] = builder.caches.intern(name)
        if name_key.dtype == np.int32 and np.array_equal(
            cache_of_key, np.arange(NO_CACHE, len(cache_of_key) - 1)
        ):  # keys numbered as the caches (the compiled path): the id is the key minus one
            cols["cache_id"] = np.subtract(name_key, 1, out=name_key)
        else:
            cols["cache_id"] = cache_of_key[name_key]

    def _comm_ids(
        self,
        builder: EventTableBuilder,
        cols: dict[str, np.ndarray],
        pids: np.ndarray | None,
        kern: Any = None,
        comm_out: np.ndarray | None = None,
    ) -> None:
        """The ``comm_id`` column: each pid's task name from the saved cmdlines (``pids``: the
        distinct ones, ascending, when known already). ``kern``, ``comm_out``: the compiled
        kernels and an int32 column to write the ids into."""
        codes = None
        if pids is None:
            codes, pids = _factorize(cols["pid"])
        comms = self._comms()
        comm_ids = np.array(
            [
                builder.comms.intern(comms.get(p) or ("<idle>" if p == 0 else "<...>"))
                for p in pids.tolist()
            ],
            dtype=np.int32,
        )
        if codes is not None:
            cols["comm_id"] = comm_ids[codes]
        elif len(pids) and 0 <= int(pids[0]) and int(pids[-1]) < 1 << 23:
            lut = np.zeros(int(pids[-1]) + 1, dtype=np.int32)
            lut[pids] = comm_ids
            if comm_out is not None and kern.gather_i32(lut, cols["pid"], comm_out) >= 0:
                cols["comm_id"] = comm_out
            else:
                cols["comm_id"] = lut[cols["pid"]]
        else:
            cols["comm_id"] = comm_ids[np.searchsorted(pids, cols["pid"])]

    def _table(
        self, builder: EventTableBuilder, cols: dict[str, np.ndarray], in_order: bool
    ) -> EventTable:
        """The table on the final columns (the builder would copy them), sorted by time
        unless ``in_order``."""
        assert set(cols) == set(COLUMNS)
        table = EventTable(
            cols, builder.caches.values, builder.sites.values, builder.comms.values, self.meta
        )
        return table if in_order else table.sorted_by_time()

    def _resolve_sites(self, sites: np.ndarray) -> list[str]:
        if len(sites) == 0:
            return []
        from sheaftune.readers.kallsyms import Kallsyms

        ks = Kallsyms.parse(self.kallsyms_text)
        if len(ks) == 0:
            self.meta.warnings.append("no kallsyms in the file: call sites are raw addresses")
        elif ks.restricted:
            self.meta.warnings.append(
                "kallsyms addresses are all zero (kptr_restrict): call sites are raw addresses"
            )
        return ks.resolve(sites)

    def _comms(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for line in self.cmdlines_text.decode("utf-8", "replace").splitlines():
            pid, _, comm = line.strip().partition(" ")
            if pid.isdigit() and comm:
                out[int(pid)] = comm
        return out


class _OnThread:
    """Runs ``finish()`` (which interns ``builder``'s call sites and comms, and fills the
    ``site_id`` and ``comm_id`` columns of ``cols``) on a thread; called (``settle``), waits
    for it, and raises its error or gives ``table`` the results."""

    def __init__(
        self,
        finish: Callable[[], None],
        table: EventTable,
        builder: EventTableBuilder,
        cols: dict[str, np.ndarray],
    ) -> None:
        self._finish = finish
        self._table, self._builder, self._cols = table, builder, cols
        self._failed: list[BaseException] = []
        self._lock = threading.Lock()
        self._after: list[Callable[[], None]] | None = []  # (None: the thread is done)
        self._thread = threading.Thread(target=self._run, name="sheaftune-sites", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._finish()
        except BaseException as e:  # noqa: BLE001 - raised by the caller's settle()
            self._failed.append(e)
        with self._lock:
            after, self._after = self._after or [], None
        self._call(after)

    def _call(self, jobs: list[Callable[[], None]]) -> None:
        for job in jobs:
            try:
                job()
            except BaseException as e:  # noqa: BLE001 - raised by settle() (after finish's)
                self._failed.append(e)

    def then(self, job: Callable[[], None]) -> None:
        """``job()`` on the thread once ``finish`` is done (whatever happened), or here when
        the thread is done already: work that would otherwise wait for ``settle`` on the
        caller's thread (unmapping the file: a few ms for a large one)."""
        with self._lock:
            if self._after is not None:
                self._after.append(job)
                return
        self._call([job])

    def __call__(self) -> None:
        self._thread.join()
        if self._failed:
            raise self._failed[0]
        table, builder, cols = self._table, self._builder, self._cols
        table.sites = list(builder.sites.values)
        table.comms = list(builder.comms.values)
        table.columns["site_id"] = cols["site_id"]
        table.columns["comm_id"] = cols["comm_id"]


_AOT_OK: dict[str | None, bool] = {}


def _aot_usable() -> bool:
    """True when the reader kernels come (or will come) from an ahead-of-time build: enabled,
    and no recent failed build (numba JIT would cost its start-up instead). Asked once per
    process (and value of ``SHEAFTUNE_AOT``)."""
    env = os.environ.get("SHEAFTUNE_AOT")
    ok = _AOT_OK.get(env)
    if ok is None:
        from sheaftune import compiled
        from sheaftune.readers.tracedat_fast import KERNELS_MODULE

        try:
            ok = compiled.aot_enabled() and not compiled.build_status(KERNELS_MODULE)["failed"]
        except Exception:  # noqa: BLE001 - no usable build: the streaming reader
            ok = False
        _AOT_OK[env] = ok
    return ok


def _factorize(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, sorted distinct values) with ``values[codes] == a``, by one sort."""
    if len(a) == 0:
        return np.empty(0, dtype=np.int32), a[:0]
    if a.dtype.kind == "i" and int(a.min()) >= 0 and int(a.max()) < 1 << 23:  # pids
        present = np.bincount(a) > 0
        values = np.flatnonzero(present).astype(a.dtype)
        lut = np.cumsum(present, dtype=np.int32) - 1
        return lut[a], values
    order = np.argsort(a)
    s = a[order]
    new = np.empty(len(s), dtype=bool)
    new[0] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    codes = np.empty(len(a), dtype=np.int32)
    codes[order] = np.cumsum(new, dtype=np.int32) - 1
    return codes, s[new]


def _view_u32(c: _Cursor) -> memoryview:
    """A u32 length, then a view of that many bytes (the kallsyms section's payload)."""
    n = c.u32()
    c.need(n)
    c.pos += n
    return memoryview(c.data)[c.pos - n : c.pos]


def _distinct(a: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``a`` (``_factorize``'s values, without the codes)."""
    if len(a) == 0:
        return a[:0]
    top = int(a.max())
    if a.dtype.kind == "i" and int(a.min()) >= 0 and top < 1 << 23:  # pids
        # (marks, not np.bincount: that casts the column to int64 first, megabytes of
        # fresh pages)
        present = np.zeros(top + 1, dtype=bool)
        present[a] = True
        return np.flatnonzero(present).astype(a.dtype)
    s = np.sort(a)
    return s[np.concatenate(([True], s[1:] != s[:-1]))]


def _strtoll(s: str) -> int:
    """C ``strtoll(s, NULL, 0)`` for the DATE/OFFSET options (0 when unparsable)."""
    s = s.strip()
    try:
        return int(s, 0)
    except ValueError:
        try:
            return int(s, 16) if s.lower().startswith(("0x", "-0x")) else int(s)
        except ValueError:
            return 0


def _mul_u64_u32_shr(ts: np.ndarray, mult: int, shift: int) -> np.ndarray:
    """trace-cmd's TSC-to-ns conversion ``(ts * mult) >> shift`` in 64x32-bit pieces."""
    u = ts.astype(np.uint64)
    lo = u & np.uint64(0xFFFFFFFF)
    hi = u >> np.uint64(32)
    m = np.uint64(mult)
    out = (lo * m) >> np.uint64(shift)
    if shift <= 32:
        out = out + ((hi * m) << np.uint64(32 - shift))
    else:
        out = out + ((hi * m) >> np.uint64(shift - 32))
    return out.astype(np.int64)
