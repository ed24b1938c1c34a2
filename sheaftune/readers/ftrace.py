"""Reader of the kernel's own trace text: ``/sys/kernel/tracing/trace`` and ``trace_pipe``.

Handles what the kernel prints for the kmem tracepoints across versions and options (spec
``trace-formats.md`` 9.1): with or without the irq-info flag columns (4 or 5 characters), the
record-tgid column, seconds with microseconds for ns clocks or raw integers for the counter,
uptime and x86-tsc clocks, hashed ``%p`` pointers, ``CPU:N [LOST N EVENTS]`` lines, the
``# entries-in-buffer/entries-written`` and ``#P:`` header, ``%pS`` call sites with
``/0xSIZE`` and `` [module]``, the bare hex call sites of kernels before 5.4, and the
``options/fields`` dialect (``name=0x<hex> (<dec>)``, raw pointers). The latency format is
refused with one line; the raw/hex/bin dialects parse as no event and fail the same way.
"""

from __future__ import annotations

import re

from sheaftune.errors import InputError
from sheaftune.events import EventTable, TraceMeta
from sheaftune.readers.base import ReadOptions, Source

# an event line of the kernel's text (spec 9.1), enough to recognise the format from its head
_EVENT_LINE = re.compile(
    rb"^\s*\S.*-\d+\s+(?:\(\s*[-\d]+\)\s+)?\[\d+\]\s+(?:[.a-zA-Z0-9]{4,5}\s+)?"
    rb"\d+(?:\.\d+)?: \w+: ",
    re.M,
)
_TRACER = re.compile(rb"^# tracer: ", re.M)
_LOST = re.compile(rb"^CPU:\d+ \[LOST (?:\d+ )?EVENTS\]", re.M)
_ENTRIES = re.compile(rb"^#\s*entries-in-buffer/entries-written:\s*(\d+)/(\d+)", re.M)
_CPUS = re.compile(rb"^#.*#P:(\d+)", re.M)
_LATENCY = re.compile(rb"^# \S+ latency trace v\d", re.M)
_SITE_SIZE = re.compile(r"^(\S+?\+0x[0-9a-fA-F]+)/0x[0-9a-fA-F]+(.*)$")
_BARE_HEX = re.compile(r"^[0-9a-fA-F]{8,16}$")
# options/fields prints numbers as "0x<hex> (<dec>)", the call site included
_FIELDS_NUM = re.compile(r"^(0x[0-9a-fA-F]+) \(-?\d+\)$")


def normalize_site(text: str) -> str:
    """Kernel ``%pS`` call site -> ``sym+0xOFF`` (size dropped, `` [module]`` kept).

    Before 5.4 the kernel printed the bare address in hex without ``0x``: it gets one.
    """
    m = _SITE_SIZE.match(text)
    if m:
        return m.group(1) + m.group(2)
    if _BARE_HEX.match(text):
        return "0x" + text.lower()
    m = _FIELDS_NUM.match(text)
    if m:
        return m.group(1).lower()
    return text


class FtraceReader:
    name = "ftrace"
    description = "kernel trace text (/sys/kernel/tracing/trace or trace_pipe)"

    def sniff(self, head: bytes) -> bool:
        if _TRACER.search(head, 0, 4096):
            return True
        if not (_EVENT_LINE.search(head) or _LOST.search(head)):
            return False
        # trace-cmd 3.1 report lines also fit the kernel's line shape: leave them to it
        from sheaftune.readers.perfscript import PerfScriptReader
        from sheaftune.readers.report import TraceCmdReportReader

        return not (TraceCmdReportReader().sniff(head) or PerfScriptReader().sniff(head))

    def read(self, source: Source, options: ReadOptions) -> EventTable:
        from sheaftune.readers import textscan

        head = source.head
        if _LATENCY.search(head, 0, 8192):
            raise InputError(
                "ftrace latency format (options/latency-format) holds only relative times "
                "and is not supported: record with latency-format off",
                source.display,
            )
        meta = TraceMeta(format=self.name, source=source.display)
        m = _CPUS.search(head, 0, 8192)
        if m:
            meta.cpus = int(m.group(1))
        table, facts = textscan.read_text(
            source,
            options,
            meta,
            what="ftrace text (options/raw, hex, bin and nocontext-info output is not supported)",
            normalize_site=normalize_site,
        )
        m = _ENTRIES.search(head, 0, 8192)
        if m:
            in_buffer, written = int(m.group(1)), int(m.group(2))
            meta.extra["entries_in_buffer"] = in_buffer
            meta.extra["entries_written"] = written
            if written > in_buffer:
                meta.extra["overwritten"] = written - in_buffer
                meta.warnings.append(
                    f"the ring buffer overwrote its {written - in_buffer} oldest events "
                    f"(entries-in-buffer/entries-written: {in_buffer}/{written})"
                )
        textscan.text_ts_meta(
            meta,
            facts,
            "time stamps are raw integers (counter, uptime or x86-tsc trace_clock): "
            "not nanoseconds",
        )
        if not meta.ts_is_ns:
            meta.clock = "counter"  # one of counter/uptime/x86-tsc: the text does not say which
            meta.extra["clock_note"] = "raw integer time stamps: counter, uptime or x86-tsc"
        # %p hashes to 32 bits (upper half zero, no 0x); real addresses have the high bits set
        meta.pointers_hashed = (
            facts.ptr_nonnull > 0 and not facts.ptr_high and not (facts.ptr_forms & textscan.PTR_0X)
        )
        return table
