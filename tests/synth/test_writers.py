"""Text writers: the layout of real 6.18 ftrace and trace-cmd report text, byte for byte."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from sheaftune.events import COLUMNS, EventTable, Op, TraceMeta
from sheaftune.gfp import GFP_KERNEL, GFP_NOWAIT
from sheaftune.readers import read_trace
from sheaftune.synth.writers import hash_pointer, write_ftrace, write_report
from tests.conftest import fixture_path

# The first events of the real vma-small capture, as the table a reader builds from trace.dat.
ROWS = [
    # ts_ns, cpu, op, cache, ptr, req, alloc, gfp, site, pid, comm
    (
        510372337000,
        0,
        Op.KMEM_CACHE_ALLOC,
        0,
        0xFFFF888102C39B00,
        256,
        256,
        GFP_KERNEL,
        0,
        11956,
        0,
    ),
    (
        510372339000,
        0,
        Op.KMEM_CACHE_ALLOC,
        0,
        0xFFFF888102C39A00,
        256,
        256,
        GFP_NOWAIT,
        1,
        11956,
        0,
    ),
    (510373010000, 1, Op.KMEM_CACHE_FREE, 1, 0xFFFF888103B90840, 0, 0, 0, 2, 11958, 1),
]


def table() -> EventTable:
    cols = {k: np.zeros(len(ROWS), dtype=d) for k, d in COLUMNS.items()}
    names = (
        "ts_ns",
        "cpu",
        "op",
        "cache_id",
        "ptr",
        "bytes_req",
        "bytes_alloc",
        "gfp",
        "site_id",
        "pid",
        "comm_id",
    )
    for i, row in enumerate(ROWS):
        for name, v in zip(names, row, strict=True):
            cols[name][i] = v
    cols["node"][:] = -1
    meta = TraceMeta(cpus=2)
    meta.extra["synth"] = {
        "site_sizes": {
            "__mt_dup+0x23e": 0x580,
            "mas_dup_alloc.isra.0+0x1af": 0x350,
            "exit_mmap+0x220": 0x420,
        }
    }
    return EventTable(
        cols,
        ["maple_node", "vm_area_struct"],
        ["__mt_dup+0x23e", "mas_dup_alloc.isra.0+0x1af", "exit_mmap+0x220"],
        ["kmemcap", "sh"],
        meta,
    )


def test_report_matches_real_trace_cmd_lines() -> None:
    out = io.StringIO()
    write_report(table(), out)
    real = fixture_path("traces/vma-small.report.txt").read_text().splitlines()
    lines = out.getvalue().splitlines()
    assert lines[0] == real[0] == "cpus=2"
    assert lines[1] == real[1]
    assert lines[2] == real[2]
    free = next(x for x in real if "kmem_cache_free" in x)
    assert lines[3] == free


def test_ftrace_matches_real_layout_except_hashed_pointers() -> None:
    out = io.StringIO()
    write_ftrace(table(), out)
    real = fixture_path("traces/vma-small.ftrace.txt").read_text().splitlines()
    lines = out.getvalue().splitlines()
    # header: the same as the kernel's except the entry count
    assert lines[3:12] == real[3:12] and lines[:2] == real[:2]
    assert lines[2] == "# entries-in-buffer/entries-written: 3/3   #P:2"
    unhash = re.compile(r"ptr=[0-9a-f]{16}")
    assert unhash.sub("ptr=P", lines[12]) == unhash.sub("ptr=P", real[12])
    assert unhash.sub("ptr=P", lines[13]) == unhash.sub("ptr=P", real[13])


def test_null_pointer_and_unknown_site(tmp_path: Path) -> None:
    t = table()
    t.columns["ptr"][2] = 0
    t.columns["op"][2] = Op.KFREE
    t.columns["site_id"][2] = -1
    for writer, null in ((write_ftrace, "ptr=0000000000000000"), (write_report, "ptr=(nil)")):
        out = io.StringIO()
        writer(t, out)
        last = out.getvalue().splitlines()[-1]
        assert last.endswith(f"kfree: call_site=0x0 {null}") or last.endswith(
            f"(0x0) call_site=0x0 {null}"
        )
        p = tmp_path / "t.txt"
        p.write_text(out.getvalue())
        back = read_trace(str(p))
        assert back.events_by_type()["kfree"] == 1 and back.ptr[-1] == 0


def test_hash_is_one_to_one_and_keeps_null() -> None:
    p = np.uint64(0xFFFF888100000000) + np.arange(0, 1 << 22, dtype=np.uint64) * np.uint64(64)
    h = hash_pointer(p)
    assert len(np.unique(h)) == len(p) and np.all(h < (1 << 32)) and np.all(h != 0)
    assert hash_pointer(np.zeros(3, dtype=np.uint64)).tolist() == [0, 0, 0]
