"""Reader of ``perf script`` text for ``perf record -e 'kmem:*'`` (spec ``trace-formats.md`` 9.3).

Default output: ``comm tid [cpu] seconds.micro: kmem:event: fields``, with the tid 5 wide
(perf < 6.5) or 7 wide, ``pid/tid`` when ``-F`` asks for both, event names right-aligned to
the longest name of the session, microseconds truncated (``--ns``: nanoseconds). Pointers and
call sites are rendered by libtraceevent (``ptr=0x...``, ``(nil)``, ``sym+0xOFF``).
"""

from __future__ import annotations

import re

from sheaftune.events import EventTable, TraceMeta
from sheaftune.readers.base import ReadOptions, Source

_EVENT_LINE = re.compile(
    rb"^\s*\S.*?\s\d+(?:/\d+)?\s+\[\d+\]\s+\d+\.\d+:\s+[\w-]+:[\w-]+: ",
    re.M,
)


def normalize_site(text: str) -> str:
    return text.strip()


class PerfScriptReader:
    name = "perf-script"
    description = "text printed by `perf script` for kmem:* tracepoints"

    def sniff(self, head: bytes) -> bool:
        return bool(_EVENT_LINE.search(head))

    def read(self, source: Source, options: ReadOptions) -> EventTable:
        from sheaftune.readers import textscan

        meta = TraceMeta(format=self.name, source=source.display, clock="perf")
        table, facts = textscan.read_text(
            source, options, meta, what="perf script text", normalize_site=normalize_site
        )
        textscan.text_ts_meta(meta, facts, "time stamps have no fraction: not perf script text")
        if meta.ts_resolution_ns == 1000:
            meta.extra["ts_note"] = "perf script truncates to microseconds (use --ns)"
        return table
