"""The reader Protocol, input sources (files, stdin, compressed streams) and read options.

A reader turns one input into an :class:`~sheaftune.events.EventTable`. It is a small object
with a ``name``, a ``sniff(head)`` that recognises its format from the first bytes of content
(never from the file name), and a ``read(source, options)``. Readers raise
:class:`~sheaftune.errors.InputError` naming the file and the place; they never print.
"""

from __future__ import annotations

import io
import os
import stat
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol

from sheaftune.errors import InputError

if TYPE_CHECKING:  # (numpy is imported where it is used: `--help` does not need it)
    import numpy as np

    from sheaftune.events import EventTable, TraceMeta

#: How many decompressed bytes ``Source.head`` holds for sniffing.
HEAD_BYTES = 1 << 16

#: Progress callback: (bytes of input consumed, total bytes or None when unknown).
Progress = Callable[[int, int | None], None]

_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


def compression_of(head: bytes) -> str | None:
    """The compression a file uses, from its magic bytes; None for plain data."""
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    return None


@dataclass
class ReadOptions:
    """Options every reader honours where they apply."""

    salvage: bool = False  # read what can be read, warn, mark the result incomplete
    buffer: str | None = None  # trace.dat instance to read (None: the top buffer)
    progress: Progress | None = None
    # trace.dat: the call sites and task names may still be resolving on a thread when the
    # table is returned (``EventTable.pending``; the caller settles it)
    finish_later: bool = False


class Source:
    """One input: a path or ``-`` (standard input), transparently decompressed.

    ``head`` holds the first ``HEAD_BYTES`` of decompressed content for sniffing. ``open()``
    returns a fresh binary stream of the decompressed content (standard input is read once and
    kept in memory, since it cannot be reopened). ``mmap_path`` is the path when the content is
    a plain regular file that a reader may map; otherwise None.
    """

    def __init__(self, path: str):
        self.path = path
        self.display = "<stdin>" if path == "-" else path
        self._spool: str | None = None
        self.size: int | None
        if path == "-":
            self._spool, self.size = _spool_stdin()
            weakref.finalize(self, _unlink_quietly, self._spool)
        else:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise InputError("no such file", path) from None
            except OSError as e:
                raise InputError(f"cannot open: {e.strerror}", path) from None
            if stat.S_ISDIR(st.st_mode):
                raise InputError("is a directory, not a trace file", path)
            self.size = st.st_size if stat.S_ISREG(st.st_mode) else None
        raw_head = self._open_raw().read(8)
        self.compression = compression_of(raw_head)
        try:
            with self.open() as fh:
                self.head = fh.read(HEAD_BYTES)
        except InputError:
            raise
        except self.decompression_errors() as e:
            raise InputError(f"cannot decompress ({self.compression}): {e}", self.display) from None

    @property
    def mmap_path(self) -> str | None:
        if self.compression is None and self.size is not None:
            return self._spool or self.path
        return None

    def _open_raw(self) -> BinaryIO:
        try:
            return open(self._spool or self.path, "rb")
        except OSError as e:
            raise InputError(f"cannot open: {e.strerror}", self.path) from None

    def open(self) -> BinaryIO:
        """A new stream of the decompressed content, positioned at its start."""
        raw = self._open_raw()
        if self.compression is None:
            return raw
        # the decompressors are imported for the input that needs one (together ~5 ms)
        if self.compression == "gzip":
            import gzip

            return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
        if self.compression == "xz":
            import lzma

            return lzma.LZMAFile(raw)  # type: ignore[return-value]
        if self.compression == "bzip2":
            import bz2

            return bz2.BZ2File(raw)  # type: ignore[return-value]
        return io.BufferedReader(_ZstdStream(raw), buffer_size=1 << 20)  # type: ignore[return-value]

    def decompression_errors(self) -> tuple[type[BaseException], ...]:
        """Exceptions a truncated or corrupt compressed stream raises while reading."""
        import lzma
        import zlib

        # zlib.error is what a corrupt deflate stream inside a valid gzip header raises
        errs: list[type[BaseException]] = [
            EOFError,
            OSError,
            lzma.LZMAError,
            ValueError,
            zlib.error,
        ]
        if self.compression == "zstd":
            import zstandard

            errs.append(zstandard.ZstdError)
        return tuple(errs)


def _spool_stdin() -> tuple[str, int]:
    """Copy standard input to a temporary file, 1 MiB at a time; (its path, its size).

    Standard input cannot be reopened, and readers open their source more than once (sniffing,
    then reading); a file on disk instead of a copy in memory keeps a large piped trace out of
    RAM and lets the trace.dat reader map it like any file.
    """
    import tempfile

    fd, path = tempfile.mkstemp(prefix="sheaftune-stdin-")
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := sys.stdin.buffer.read(1 << 20):
                out.write(chunk)
                size += len(chunk)
    except BaseException:
        _unlink_quietly(path)
        raise
    return path, size


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class _ZstdStream(io.RawIOBase):
    """Decompressed zstd content across frames; EOFError when the input ends inside a frame.

    zstandard's ``stream_reader`` returns a short read at a cut frame instead of failing, so a
    truncated ``.zst`` would pass as a shorter trace; a decompression object tells us. The
    object has no bound on its output, so it is fed ``FEED_BYTES`` of input at a time: a
    hostile stream of RLE blocks (128 KiB out of 4 bytes in) then yields at most ~64 MiB per
    feed instead of gigabytes.
    """

    FEED_BYTES = 2048

    def __init__(self, raw: BinaryIO):
        import zstandard

        self._raw = raw
        self._new = zstandard.ZstdDecompressor().decompressobj
        self._dobj = self._new()
        self._in_frame = False
        self._buf = b""
        self._pos = 0
        self._pending = b""  # read from the file, not yet fed to the decompressor

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while self._pos >= len(self._buf):
            if not self._pending:
                self._pending = self._raw.read(1 << 17)
                if not self._pending:
                    if self._in_frame:
                        raise EOFError("zstd stream ends inside a frame (truncated)")
                    return 0
            chunk = self._pending[: self.FEED_BYTES]
            self._pending = self._pending[self.FEED_BYTES :]
            self._feed(chunk)
        n = min(len(b), len(self._buf) - self._pos)
        b[:n] = memoryview(self._buf)[self._pos : self._pos + n]
        self._pos += n
        return n

    def _feed(self, data: bytes) -> None:
        out = []
        while data:
            self._in_frame = True
            out.append(self._dobj.decompress(data))
            if self._dobj.eof:  # frame complete: the rest (if any) starts a new frame
                data = self._dobj.unused_data
                self._dobj = self._new()
                self._in_frame = False
            else:
                data = b""
        self._buf = out[0] if len(out) == 1 else b"".join(out)
        self._pos = 0

    def close(self) -> None:
        self._raw.close()
        super().close()


def backwards_per_cpu(ts: np.ndarray, cpu: np.ndarray) -> dict[int, int]:
    """How many times each CPU's timestamps step backwards, in file (recording) order.

    A CPU's events are recorded in time order, so a step back means a clock problem (an
    unstable TSC, a clock changed mid-trace) or damaged data; the table is still sorted by
    time, but the user should know. One stable sort by CPU (a radix sort for uint16, linear)
    and one comparison of neighbours: no Python work per event.
    """
    import numpy as np

    if len(ts) < 2:
        return {}
    order = np.argsort(cpu, kind="stable")
    c = cpu[order]
    t = ts[order]
    back = (t[1:] < t[:-1]) & (c[1:] == c[:-1])
    if not back.any():
        return {}
    counts = np.bincount(c[1:][back])
    return {int(k): int(counts[k]) for k in np.nonzero(counts)[0]}


def note_backwards(meta: TraceMeta, counts: dict[int, int]) -> None:
    """Record backward timestamp steps per CPU in ``meta.extra`` and one warning."""
    if not counts:
        return
    meta.extra["ts_backwards"] = {str(k): v for k, v in sorted(counts.items())}
    per_cpu = ", ".join(f"CPU {k}: {v}" for k, v in sorted(counts.items()))
    meta.warnings.append(
        f"timestamps step backwards {sum(counts.values())} times within a CPU ({per_cpu}): "
        "clock problem or damaged data; events are sorted by time"
    )


class Reader(Protocol):
    """What every input format implements (one module per format, listed in the registry)."""

    name: str  # the --input-format value
    description: str  # one line for --help and the docs

    def sniff(self, head: bytes) -> bool:
        """True when ``head`` (the first decompressed bytes) is this format."""
        ...

    def read(self, source: Source, options: ReadOptions) -> EventTable:
        """The whole input as an EventTable sorted by time; InputError on bad input."""
        ...
