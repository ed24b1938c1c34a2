"""Reader of the "kmem-tsv/1" text our bpftrace script prints (spec ``trace-formats.md`` 9.4).

One event per line, 13 tab-separated columns: ``ts_ns cpu tgid tid event ptr call_site
bytes_req bytes_alloc gfp node cache comm`` (``-`` for absent values, addresses and gfp in hex,
``comm`` last since it may hold spaces). ``#`` lines are comments; bpftrace's own
``Attaching N probes...`` and ``Lost N events`` lines are skipped, the latter counted as lost
events of an unknown CPU (key -1 in ``TraceMeta.lost_events``). bpftrace delivers per-CPU
buffers, so lines are not in time order across CPUs: the table is stable-sorted by time.
Call sites are raw addresses (``0x...``); time is bpftrace ``nsecs`` (CLOCK_BOOTTIME).
"""

from __future__ import annotations

import re

from sheaftune.events import EventTable, TraceMeta
from sheaftune.readers.base import ReadOptions, Source

_MAGIC = re.compile(rb"^# kmem-tsv/(\d+)(.*)$", re.M)


def normalize_site(text: str) -> str:
    text = text.strip()
    if text.startswith(("0x", "0X")):
        try:
            return hex(int(text, 16))
        except ValueError:
            return text
    return text


class BpftraceReader:
    name = "bpftrace"
    description = "kmem-tsv/1 text from sheaftune's bpftrace script"

    def sniff(self, head: bytes) -> bool:
        return _MAGIC.search(head, 0, 4096) is not None

    def read(self, source: Source, options: ReadOptions) -> EventTable:
        from sheaftune.errors import InputError
        from sheaftune.readers import textscan

        meta = TraceMeta(format=self.name, source=source.display, clock="boot")
        m = _MAGIC.search(source.head, 0, 4096)
        if m:
            version = int(m.group(1))
            if version != 1:
                raise InputError(
                    f"kmem-tsv/{version} is newer than this sheaftune understands (1)",
                    source.display,
                )
            for word in m.group(2).decode("ascii", "replace").split():
                key, _, value = word.partition("=")
                if key == "clock" and value:
                    meta.extra["tsv_clock"] = value
        table, _facts = textscan.read_text(
            source,
            options,
            meta,
            what="kmem-tsv/1 text",
            normalize_site=normalize_site,
            tsv=True,
        )
        meta.ts_is_ns = True
        meta.ts_resolution_ns = 1
        return table
