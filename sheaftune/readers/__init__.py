"""Readers: trace files in every supported format -> EventTable.

``READERS`` is the registry, in sniffing order (binary formats first, the most specific text
formats before the more general ones). ``read_trace`` is the one entry point the rest of the
program uses: it opens the source, picks the reader (``--input-format`` or content sniffing)
and returns the EventTable with ``meta.source`` and ``meta.format`` filled in.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sheaftune.errors import InputError, UsageError
from sheaftune.readers.base import Reader, ReadOptions, Source

if TYPE_CHECKING:  # (not imported: the option choices of `--help` need no numpy)
    from sheaftune.events import EventTable

# (module, class) of every reader, in sniffing order. Imported lazily: the trace.dat reader pulls
# in numba, which `sheaftune --help` must not pay for.
_REGISTRY: tuple[tuple[str, str], ...] = (
    ("sheaftune.readers.native", "NativeReader"),
    ("sheaftune.readers.tracedat", "TraceDatReader"),
    ("sheaftune.readers.bpftrace_json", "BpftraceJsonReader"),
    ("sheaftune.readers.bpftrace", "BpftraceReader"),
    ("sheaftune.readers.report", "TraceCmdReportReader"),
    ("sheaftune.readers.perfscript", "PerfScriptReader"),
    ("sheaftune.readers.ftrace", "FtraceReader"),
)

#: --input-format names, in registry order (kept in sync with the classes' ``name``).
READER_NAMES: tuple[str, ...] = (
    "native",
    "trace.dat",
    "bpftrace-json",
    "bpftrace",
    "trace-cmd-report",
    "perf-script",
    "ftrace",
)


def readers() -> list[Reader]:
    """Instances of every available reader, in sniffing order."""
    return list(_iter_readers())


def _iter_readers() -> Iterator[Reader]:
    # one reader module at a time: sniffing a trace.dat should not import (and compile the
    # regular expressions of) the five text readers after it
    for module, cls in _REGISTRY:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:  # reader not written yet: not available
                continue
            raise
        yield getattr(mod, cls)()


def get_reader(name: str) -> Reader:
    for r in _iter_readers():
        if r.name == name:
            return r
    raise UsageError(
        f"unknown input format {name!r}; known: {', '.join(r.name for r in readers())}"
    )


def detect(source: Source) -> Reader:
    """The reader whose ``sniff`` accepts the source's first bytes; InputError if none does."""
    if not source.head:
        raise InputError("file is empty", source.display)
    for r in _iter_readers():
        if r.sniff(source.head):
            return r
    if b"\x00" in source.head[:4096]:
        raise InputError("not a trace: unrecognised binary content", source.display)
    raise InputError(
        "not a kmem trace in any known format (ftrace text, trace-cmd report, perf script, "
        "bpftrace kmem-tsv, trace.dat, sheaftune .npz)",
        source.display,
    )


def read_trace(
    path: str, input_format: str | None = None, options: ReadOptions | None = None
) -> EventTable:
    """Read one input (path or ``-``) into an EventTable, detecting its format from content."""
    options = options or ReadOptions()
    source = Source(path)
    reader = get_reader(input_format) if input_format else detect(source)
    table = reader.read(source, options)
    table.meta.source = source.display
    if not table.meta.format:
        table.meta.format = reader.name
    return table


__all__ = ["READER_NAMES", "ReadOptions", "Reader", "Source", "detect", "get_reader", "read_trace"]
