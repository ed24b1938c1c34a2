"""Write a trace.dat version 6 file from raw per-CPU ring-buffer pages and tracefs metadata.

``sheaftune record`` stores what it captured as trace.dat v6 rather than as the native ``.npz``
event file. Why:

* trace.dat is the file kernel people already exchange: ``trace-cmd report``, KernelShark and
  sheaftune's own reader all read it, so a recording can be checked with the reference tool and
  attached to a bug report without sheaftune;
* the ring-buffer pages are stored exactly as the kernel wrote them (``trace_pipe_raw``), so the
  recorder decodes nothing on the hot path and loses no field: payload layouts come from the
  embedded ``format`` files when the file is read, on any machine;
* version 6 is uncompressed and sequential, which makes the writer small and lets the per-CPU
  data be appended by a plain file copy. (Version 7 adds sections and compression; ``trace-cmd
  convert`` turns a v6 file into a v7 one when size matters.)

Layout written (spec ``trace-formats.md`` sections 4 and 5): the initial header, header_page
and header_event, the ``ftrace`` event formats, the event formats of the systems recorded
(``kmem``), kallsyms, printk formats, saved cmdlines, the CPU count, the options (CPUSTAT per
CPU, TRACECLOCK, UNAME, CPUCOUNT, VERSION and sheaftune's own record facts), then
``flyrecord``: the per-CPU ``{offset, size}`` table, the ``[clock]`` block, padding to a page
boundary and each CPU's pages, page-aligned.

The recorder spools each CPU's pages to a file while tracing runs; everything ahead of the data
(cmdlines, CPU statistics) is only known at the end, so :func:`write_tracedat_v6` assembles the
final file once, copying the spools in with ``copy_file_range`` where the kernel allows it.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MAGIC = b"\x17\x08\x44tracing"
FILE_VERSION = 6

# Option ids (trace-cmd's enum tracecmd_option_id; spec section 6.4).
OPTION_DONE = 0
OPTION_CPUSTAT = 2
OPTION_TRACECLOCK = 4
OPTION_UNAME = 5
OPTION_CPUCOUNT = 8
OPTION_VERSION = 9
#: sheaftune's record facts (JSON cstr). trace-cmd skips option ids it does not know by their
#: size (checked with trace-cmd 3.1.6 ``report``: no warning, same output), so this id, far above
#: trace-cmd's range, is safe to carry along. Readers that want it look for this id.
OPTION_SHEAFTUNE = 0x5348  # "SH"
#: Version of the JSON carried in OPTION_SHEAFTUNE. History:
#: 1 - events, filters, cpus, clock, buffer_kb, per-CPU lost counts, command, duration.
SHEAFTUNE_OPTION_VERSION = 1


@dataclass
class TraceDatMetadata:
    """Everything of a v6 file except the per-CPU pages, as raw tracefs/procfs text."""

    page_size: int  # ring-buffer sub-buffer size: data.offset + data.size of header_page
    cpus: int  # number of per-CPU streams (table rows), CPU ids 0..cpus-1
    header_page: bytes
    header_event: bytes
    clock: str  # the clock in use, e.g. "local" (without brackets)
    trace_clock_text: str = ""  # the whole trace_clock file, "[local] global ...\n"
    ftrace_formats: Sequence[bytes] = ()
    event_formats: dict[str, Sequence[bytes]] = field(default_factory=dict)  # system -> formats
    kallsyms: bytes = b""
    printk_formats: bytes = b""
    cmdlines: bytes = b""
    uname: str = ""  # "sysname nodename release machine"
    cpustats: Sequence[bytes] = ()  # text of per_cpu/cpuN/stats, index = CPU
    version: str = ""  # who wrote the file, VERSION option
    sheaftune: dict[str, Any] | None = None  # record facts, OPTION_SHEAFTUNE
    long_size: int = 8  # user-space long size of the writer (the header's byte)


def _cstr(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return b + b"\0"


def _option(option_id: int, data: bytes) -> bytes:
    return struct.pack("<HI", option_id, len(data)) + data


def metadata_bytes(meta: TraceDatMetadata) -> bytes:
    """Everything from the magic up to and including the end of the options list."""
    out = bytearray()
    out += MAGIC + _cstr(str(FILE_VERSION))
    out += struct.pack("<BBI", 0, meta.long_size, meta.page_size)  # 0: little-endian
    out += _cstr("header_page") + struct.pack("<Q", len(meta.header_page)) + meta.header_page
    out += _cstr("header_event") + struct.pack("<Q", len(meta.header_event)) + meta.header_event
    out += struct.pack("<I", len(meta.ftrace_formats))
    for fmt in meta.ftrace_formats:
        out += struct.pack("<Q", len(fmt)) + fmt
    out += struct.pack("<I", len(meta.event_formats))
    for system, formats in meta.event_formats.items():
        out += _cstr(system) + struct.pack("<I", len(formats))
        for fmt in formats:
            out += struct.pack("<Q", len(fmt)) + fmt
    out += struct.pack("<I", len(meta.kallsyms)) + meta.kallsyms
    out += struct.pack("<I", len(meta.printk_formats)) + meta.printk_formats
    out += struct.pack("<Q", len(meta.cmdlines)) + meta.cmdlines
    out += struct.pack("<I", meta.cpus)
    out += b"options  \0"
    for stats in meta.cpustats:
        out += _option(OPTION_CPUSTAT, _cstr(stats))
    clock_text = meta.trace_clock_text or f"[{meta.clock}]\n"
    out += _option(OPTION_TRACECLOCK, _cstr(clock_text))
    if meta.uname:
        out += _option(OPTION_UNAME, _cstr(meta.uname))
    out += _option(OPTION_CPUCOUNT, struct.pack("<I", meta.cpus))
    if meta.version:
        out += _option(OPTION_VERSION, _cstr(meta.version))
    if meta.sheaftune is not None:
        facts = {"version": SHEAFTUNE_OPTION_VERSION, **meta.sheaftune}
        out += _option(OPTION_SHEAFTUNE, _cstr(json.dumps(facts, sort_keys=True)))
    out += struct.pack("<H", OPTION_DONE)  # v6: a bare 0 ends the list, no size
    return bytes(out)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _copy_into(fd: int, src_path: str, size: int) -> None:
    """Append ``size`` bytes of ``src_path`` at ``fd``'s position (in-kernel copy if possible)."""
    with open(src_path, "rb", buffering=0) as src:
        copied = 0
        try:
            while copied < size:
                n = os.copy_file_range(src.fileno(), fd, size - copied)
                if n == 0:
                    break
                copied += n
        except OSError:
            pass  # e.g. EXDEV on old kernels or unsupported file systems: copy in user space
        src.seek(copied)
        while copied < size:
            chunk = src.read(min(1 << 20, size - copied))
            if not chunk:
                raise OSError(f"{src_path}: ended after {copied} of {size} bytes")
            _write_all(fd, chunk)
            copied += len(chunk)


def write_tracedat_v6(path: str, meta: TraceDatMetadata, cpu_data: Sequence[str | None]) -> int:
    """Write ``path`` atomically from the metadata and one page file per CPU (None: no data).

    Every page file must hold whole pages of ``meta.page_size`` bytes. Returns the file size.
    """
    if len(cpu_data) != meta.cpus:
        raise ValueError(f"{len(cpu_data)} CPU data files for {meta.cpus} CPUs")
    sizes = []
    for p in cpu_data:
        size = os.path.getsize(p) if p else 0
        if size % meta.page_size:
            raise ValueError(f"{p}: {size} bytes is not a whole number of pages")
        sizes.append(size)
    head = metadata_bytes(meta) + b"flyrecord\0"
    clock_block = f"[{meta.clock}]".encode()
    table_end = len(head) + 16 * meta.cpus + 8 + len(clock_block)
    data_start = -(-table_end // meta.page_size) * meta.page_size
    offsets, pos = [], data_start
    for size in sizes:
        offsets.append(pos if size else 0)
        pos += size
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            table = b"".join(struct.pack("<QQ", o, s) for o, s in zip(offsets, sizes, strict=True))
            clock = struct.pack("<Q", len(clock_block)) + clock_block
            _write_all(fd, head + table + clock + b"\0" * (data_start - table_end))
            for p, size in zip(cpu_data, sizes, strict=True):
                if p and size:
                    _copy_into(fd, p, size)
            total = os.lseek(fd, 0, os.SEEK_CUR)
        finally:
            os.close(fd)
        if total != pos:
            raise OSError(f"{tmp}: wrote {total} bytes, expected {pos}")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return total


def read_v6_options(path: str) -> dict[int, list[bytes]]:
    """The options of a trace.dat v6 file: id -> data of each occurrence, in file order.

    Walks the metadata blocks by their sizes without reading them (spec section 5); used to get
    the CPUSTAT texts and sheaftune's record facts back. ValueError on a file that is not v6.
    """
    options: dict[int, list[bytes]] = {}
    with open(path, "rb") as fh:

        def take(n: int) -> bytes:
            b = fh.read(n)
            if len(b) != n:
                raise ValueError(f"{path}: truncated trace.dat metadata")
            return b

        def u32() -> int:
            return int(struct.unpack("<I", take(4))[0])

        def u64() -> int:
            return int(struct.unpack("<Q", take(8))[0])

        def cstr() -> bytes:
            out = bytearray()
            while (c := take(1)) != b"\0":
                out += c
            return bytes(out)

        if take(10) != MAGIC or cstr() != b"6":
            raise ValueError(f"{path}: not a trace.dat version 6 file")
        if take(1) != b"\0":
            raise ValueError(f"{path}: big-endian trace.dat is not supported here")
        take(5)  # long size, page size
        for name in (b"header_page", b"header_event"):
            if cstr() != name:
                raise ValueError(f"{path}: {name.decode()} block missing")
            fh.seek(u64(), os.SEEK_CUR)
        for _ in range(u32()):  # ftrace formats
            fh.seek(u64(), os.SEEK_CUR)
        for _ in range(u32()):  # event systems
            cstr()
            for _ in range(u32()):
                fh.seek(u64(), os.SEEK_CUR)
        fh.seek(u32(), os.SEEK_CUR)  # kallsyms
        fh.seek(u32(), os.SEEK_CUR)  # printk formats
        fh.seek(u64(), os.SEEK_CUR)  # saved cmdlines
        u32()  # cpus
        if take(10) != b"options  \0":
            return options
        while (option_id := int(struct.unpack("<H", take(2))[0])) != OPTION_DONE:
            options.setdefault(option_id, []).append(take(u32()))
    return options


def record_facts(path: str) -> dict[str, Any] | None:
    """sheaftune's record facts (events, filters, per-CPU losses, ...) of a v6 file, or None."""
    data = read_v6_options(path).get(OPTION_SHEAFTUNE)
    if not data:
        return None
    facts: dict[str, Any] = json.loads(data[-1].rstrip(b"\0").decode())
    return facts
