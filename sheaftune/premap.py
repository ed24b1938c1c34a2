"""Map an uncompressed trace.dat, and fill its page tables, on the idle core while the program
starts.

The trace.dat reader walks an uncompressed file's pages straight from a read-only mapping of
the file (``readers.tracedat._mapped``). The first touch of each page of a fresh mapping is a
page fault, even when the file is in the page cache: the kernel maps 16 pages per fault, so the
53 MB v6 fixture costs ~830 faults and ~4.5 ms of CPU, taken by the reader's set-up and its
walkers, on the run's critical path. Meanwhile :mod:`sheaftune.heap`'s pre-fault thread is done
with the heap some 20 ms before the reader starts (the imports still run). So :func:`prepare`
gives that thread one more job: open the trace, map it, and ask the kernel to fill the
mapping's page tables in one call (``madvise(MADV_POPULATE_READ)``, Linux 5.14 and later,
called through ctypes without the GIL, so the imports go on beside it). The reader then takes
that mapping (:func:`take`) instead of mapping the file itself. Measured on the v6 fixture: an
``analyze --format json`` 5-6 ms shorter (best of 20 alternating runs: 150.6 -> 144.6 ms; the
read 6 ms shorter, the imports beside it no longer).

What it applies to: an ``analyze`` command whose operands hold exactly one trace.dat, of file
version 6 (or older), or 7 with no compression (a zstd one is :mod:`sheaftune.zstd_prefetch`'s),
when the heap warm-up runs (inputs of modest size: a huge trace's pages would only swell the
resident memory issue 10 bounds). :func:`take` hands the mapping over only for the same,
unchanged file (device, inode, size, modification time); anything else, any error, and the
reader maps the file as it always does (an older kernel that refuses the advice: the mapping
serves as it is). ``SHEAFTUNE_PREFETCH=0`` turns it off, as it does the zstd prefetch.
Standard library only: it runs before numpy is imported.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

#: the environment variable that turns the premap, and the zstd prefetch, off ("0")
ENV = "SHEAFTUNE_PREFETCH"
#: the trace.dat magic (the first ten bytes of every file version)
MAGIC = b"\x17\x08\x44tracing"
#: Linux's ``MADV_POPULATE_READ`` (include/uapi/asm-generic/mman-common.h)
MADV_POPULATE_READ = 22
#: no more regular files than this are opened to look for the trace.dat among the operands
MAX_LOOKED = 8

#: the premap of this process, if :func:`prepare` made one
_pending: _Premap | None = None


class _Premap:
    """One file's mapping, made on the heap's thread and taken (or not) by the reader."""

    def __init__(self, path: str, ident: tuple[int, int, int, int]) -> None:
        self.path = path
        self.ident = ident
        #: guards ``state``: "waiting" (not begun), "mapping", "done", "dropped"
        self.lock = threading.Lock()
        self.state = "waiting"
        self.done = threading.Event()
        self.fh: Any = None
        self.mm: Any = None

    def run(self) -> None:
        """Map and populate (on the heap's thread), unless the reader came first."""
        with self.lock:
            if self.state != "waiting":
                return
            self.state = "mapping"
        fh = mm = None
        try:
            import mmap

            fh = open(self.path, "rb")
            if _ident(os.fstat(fh.fileno())) == self.ident:
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
                _populate(mm, self.ident[2])
        except Exception:  # noqa: BLE001 - an optimisation only: the reader maps the file itself
            mm = None
        with self.lock:
            if mm is not None and self.state == "mapping":
                self.fh, self.mm = fh, mm
                fh = mm = None
            self.state = "done" if self.state == "mapping" else self.state
        _close(fh, mm)
        self.done.set()

    def drop(self) -> tuple[Any, Any]:
        """Give up: the (file, mapping) made, if any and not yet taken; later work is skipped."""
        with self.lock:
            begun = self.state == "mapping"
            self.state = "dropped" if self.state == "waiting" else self.state
        if begun:
            self.done.wait()  # (a single madvise: a few ms at most)
        with self.lock:
            self.state = "dropped"
            got, self.fh, self.mm = (self.fh, self.mm), None, None
        return got


def _populate(mm: Any, size: int) -> None:
    """Fill the page tables of read-only mapping ``mm`` (``size`` bytes) from the page cache.

    Through ctypes, which releases the GIL around the call: the mmap object's own
    ``madvise`` holds it (3-4 ms of the imports' time on the v6 fixture, measured: the whole
    gain gone). Its address comes from the buffer protocol (``PyObject_GetBuffer``, whose
    ``Py_buffer`` is part of the stable ABI; ctypes' ``from_buffer`` wants a writable one). An
    older kernel refuses the advice (EINVAL): the mapping then serves as it is."""
    import ctypes

    class _PyBuffer(ctypes.Structure):
        _fields_ = [
            ("buf", ctypes.c_void_p),
            ("obj", ctypes.c_void_p),
            ("len", ctypes.c_ssize_t),
            ("itemsize", ctypes.c_ssize_t),
            ("readonly", ctypes.c_int),
            ("ndim", ctypes.c_int),
            ("format", ctypes.c_char_p),
            ("shape", ctypes.c_void_p),
            ("strides", ctypes.c_void_p),
            ("suboffsets", ctypes.c_void_p),
            ("internal", ctypes.c_void_p),
        ]

    view = _PyBuffer()
    api = ctypes.pythonapi
    if api.PyObject_GetBuffer(ctypes.py_object(mm), ctypes.byref(view), 0) != 0:
        return
    try:
        address, length = view.buf, view.len
    finally:
        api.PyBuffer_Release(ctypes.byref(view))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.madvise.restype = ctypes.c_int
    libc.madvise(address, min(length, size), MADV_POPULATE_READ)


def _ident(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _close(fh: Any, mm: Any) -> None:
    try:
        if mm is not None:
            mm.close()
    finally:
        if fh is not None:
            fh.close()


def prepare(argv: list[str]) -> Callable[[], None] | None:
    """The job that maps the trace ``argv`` analyses, for the heap's pre-fault thread to run
    after its own (``heap.warm(argv, then=...)``), or None when it does not apply. Never
    raises."""
    global _pending
    try:
        if os.environ.get(ENV, "1") == "0" or _pending is not None:
            return None
        if not sys.platform.startswith("linux"):
            return None
        found = trace_dat_operands(argv)
        if found is None or len(found) != 1:
            return None
        path, st, head = found[0]
        if not _uncompressed(head):
            return None
        _pending = _Premap(path, _ident(st))
        return _pending.run
    except Exception:  # noqa: BLE001 - an optimisation only
        return None


def take(path: str) -> tuple[Any, Any] | None:
    """The open file and populated read-only mapping of ``path`` when the premap made them
    for this same, unchanged file (the caller owns both from then on); None otherwise. Waits
    for a mapping under way; one that has not begun is given up. Either way the premap ends."""
    global _pending
    pre, _pending = _pending, None
    if pre is None:
        return None
    fh, mm = pre.drop()
    if mm is None:
        return None
    try:
        if _ident(os.stat(path)) == pre.ident == _ident(os.fstat(fh.fileno())):
            return fh, mm
    except (OSError, ValueError):
        pass
    _close(fh, mm)
    return None


def discard() -> None:
    """Give the premap up, unmapping what it made: the read went another way."""
    global _pending
    pre, _pending = _pending, None
    if pre is not None:
        _close(*pre.drop())


def trace_dat_operands(argv: list[str]) -> list[tuple[str, os.stat_result, bytes]] | None:
    """The trace.dat files among an ``analyze`` command's operands, each with its stat and
    first 64 bytes (looking into at most :data:`MAX_LOOKED` regular files); None for another
    command. Option values that name files are looked at too (the magic tells them apart): a
    guess at what the run reads, never a decision."""
    args = list(argv)
    while args and args[0] == "--debug":
        args.pop(0)
    if not args or args[0] != "analyze":
        return None
    found = []
    looked = 0
    for a in args[1:]:
        if a.startswith("-") or looked >= MAX_LOOKED:
            continue
        try:
            st = os.stat(a)
        except (OSError, ValueError):
            continue
        if st.st_mode & 0o170000 != 0o100000:  # (not a regular file)
            continue
        looked += 1
        try:
            with open(a, "rb", buffering=0) as f:
                head = f.read(64)
        except OSError:
            continue
        if head.startswith(MAGIC):
            found.append((a, st, head))
    return found


def _uncompressed(head: bytes) -> bool:
    """A trace.dat whose CPU data lies in the file as pages: version 7 with compression "none"
    (magic, "7", endianness, long size, u32 page size, compression name), or any other
    version (6 and older share the v6 layout)."""
    end = head.find(b"\x00", 10)
    version = head[10:end] if end > 10 else b""
    return version.isdigit() and (version != b"7" or head[18:23] == b"none\x00")
