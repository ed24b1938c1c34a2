"""Reader of ``bpftrace -f json`` output of sheaftune's kmem-tsv script.

With ``-f json`` bpftrace wraps every ``printf`` in a JSON object, one per line:
``{"type": "printf", "data": "<kmem-tsv/1 line>\\n"}``; it reports lost events as
``{"type": "lost_events", "data": {"events": N}}`` and announces its probes with
``{"type": "attached_probes", ...}``. This reader unwraps the ``printf`` payloads (JSON string
escapes undone, so tabs and any odd ``comm`` characters come back exactly), turns
``lost_events`` into the ``Lost N events`` line of the text format, and hands the resulting
kmem-tsv/1 text to :class:`~sheaftune.readers.bpftrace.BpftraceReader`, so both forms give the
same EventTable. Other record types (maps printed at exit, ``time``, ...) are skipped and
counted.
"""

from __future__ import annotations

import json
import os
import re
import tempfile

from sheaftune.errors import InputError
from sheaftune.events import EventTable
from sheaftune.readers.base import ReadOptions, Source

_SNIFF = re.compile(rb'^\s*\{\s*"type"\s*:\s*"(?:attached_probes|printf)"', re.M)
_KMEM_TSV = re.compile(rb"kmem-tsv/\d+")


class BpftraceJsonReader:
    name = "bpftrace-json"
    description = "bpftrace -f json output of sheaftune's kmem-tsv script"

    def sniff(self, head: bytes) -> bool:
        window = head[:8192]
        return _SNIFF.search(window) is not None and _KMEM_TSV.search(window) is not None

    def read(self, source: Source, options: ReadOptions) -> EventTable:
        from sheaftune.readers.bpftrace import BpftraceReader

        skipped: dict[str, int] = {}
        with tempfile.TemporaryDirectory(prefix="sheaftune-bpfjson-") as tmp:
            text_path = os.path.join(tmp, "kmem.tsv")
            with source.open() as src, open(text_path, "wb") as out:
                for lineno, raw in enumerate(src, 1):
                    if not raw.strip():
                        continue
                    try:
                        rec = json.loads(raw)
                        kind = rec["type"]
                        data = rec.get("data")
                    except (ValueError, KeyError, TypeError) as e:
                        if options.salvage:
                            skipped["malformed JSON line"] = (
                                skipped.get("malformed JSON line", 0) + 1
                            )
                            continue
                        raise InputError(
                            f"not a bpftrace JSON record: {e}", source.display, f"line {lineno}"
                        ) from None
                    if kind == "printf" and isinstance(data, str):
                        out.write(data.encode("utf-8", "surrogateescape"))
                    elif kind == "lost_events" and isinstance(data, dict):
                        out.write(f"Lost {int(data.get('events', 0))} events\n".encode())
                    elif kind != "attached_probes":
                        key = f"bpftrace {kind} record"
                        skipped[key] = skipped.get(key, 0) + 1
            table = BpftraceReader().read(Source(text_path), options)
        table.meta.format = self.name
        table.meta.source = source.display
        for reason, n in skipped.items():
            table.meta.skip(reason, n)
        return table
