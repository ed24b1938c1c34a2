"""Reader of ``trace-cmd report`` text (trace-cmd 3.x; spec ``trace-formats.md`` 9.2).

Handles 3.1 lines (no flags column) and 3.3+ lines (5-character flags), default microsecond
time stamps, ``-t`` nanoseconds and raw integers (clocks trace-cmd does not treat as ns:
``boot``, ``counter``, ``x86-tsc``), ``-R`` raw mode (``[000]-0x0`` flags and
``call_site=sym+0x2b (0xADDR)``), the kmem plugin's ``(sym+0xOFF)`` prefix, ``ptr=(nil)``,
the ``cpus=N`` header, ``CPU:N [N EVENTS DROPPED]`` lines, and the ``name: `` prefix trace-cmd
puts before the lines of an instance (or of each file of ``-i a -i b``): the top buffer is
read (or ``--buffer NAME``), other buffers' events are counted as skipped.
"""

from __future__ import annotations

import re

from sheaftune.events import EventTable, TraceMeta
from sheaftune.readers.base import ReadOptions, Source

_CPUS = re.compile(rb"^cpus=(\d+)", re.M)
_VERSION = re.compile(rb"^version = \d+", re.M)
# an event line whose event name is padded (trace-cmd pads name+colon to 20 columns) or
# followed by the kmem plugin's "(sym+off)": ftrace text has exactly one space there
_PADDED_EVENT = re.compile(
    rb"^.*-\d+\s+\[\d+\](?:-0x[0-9a-f]+)?\s+(?:[.a-zA-Z0-9]{4,5}\s+)?\d+(?:\.\d+)?: "
    rb"\w{1,18}:(?:\s{2,}| \()",
    re.M,
)
_DROPPED = re.compile(rb"^\s*CPU:\d+ \[(?:\d+ )?EVENTS DROPPED\]", re.M)
# "sym+0x2b (0xffffffff817038db)" or " (0xffffffff817038db)" (3.3+ -R)
_RAW_SITE = re.compile(r"^(\S*) \((0x[0-9a-fA-F]+)\)$")
# instance or file-name prefix: "slab:" then the comm right-aligned to 16 columns
_PREFIX = re.compile(r"^(\S+):( {2,})(\S.*)$")


def normalize_site(text: str) -> str:
    """``sym+0xOFF`` as it is; the 3.3+ raw form keeps the symbol, or the address if none."""
    m = _RAW_SITE.match(text)
    if m:
        return m.group(1) or m.group(2)
    return text.strip()


def split_comm(text: str) -> tuple[str | None, str]:
    m = _PREFIX.match(text)
    if m:
        return m.group(1), m.group(3)
    return None, text


class TraceCmdReportReader:
    name = "trace-cmd-report"
    description = "text printed by `trace-cmd report` (3.x; -t, -R and plugin forms)"

    def sniff(self, head: bytes) -> bool:
        first = head.lstrip()[:64]
        if first.startswith(b"cpus=") or _VERSION.match(first):
            return True
        return bool(_PADDED_EVENT.search(head) or _DROPPED.search(head))

    def read(self, source: Source, options: ReadOptions) -> EventTable:
        from sheaftune.readers import textscan

        meta = TraceMeta(format=self.name, source=source.display)
        m = _CPUS.search(source.head, 0, 4096)
        if m:
            meta.cpus = int(m.group(1))
        table, facts = textscan.read_text(
            source,
            options,
            meta,
            what="trace-cmd report text",
            normalize_site=normalize_site,
            split_comm=split_comm,
        )
        textscan.text_ts_meta(
            meta,
            facts,
            "time stamps are raw integers: trace-cmd prints the boot clock (ns), counter "
            "and x86-tsc clocks this way; they are kept as printed",
        )
        if not meta.ts_is_ns:
            meta.clock = None  # boot (ns), counter or x86-tsc: the text does not say which
            meta.extra["clock_note"] = "raw integer time stamps: boot, counter or x86-tsc"
        return table
