"""Prefill-script records -> OpTable. The lines are hand-written in the script's documented
format (this machine has no kprobes, so no real prefill capture exists; see
tests/data/bpftrace/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sheaftune.capture.prefill_ops import (
    ops_from_prefill_records,
    parse_prefill_line,
    read_prefill_records,
)
from sheaftune.events import NO_CACHE

HEADER = (
    "Attaching 12 probes...\n"
    "# kmem-tsv/1 clock=bpftrace-nsecs source=kmem-prefill\n"
    "# ts_ns\tcpu\ttgid\ttid\tevent\tptr\tcall_site\tbytes_req\tbytes_alloc\tgfp\tnode"
    "\tcache\tcomm\n"
)


def line(
    ts: int,
    cpu: int,
    tid: int,
    event: str,
    ptr: int,
    req: object,
    got: object,
    cache: str = "maple_node",
) -> str:
    return (
        f"{ts}\t{cpu}\t{tid}\t{tid}\t{event}\t{ptr:#x}\t0xffffffff81234567\t{req}\t{got}\t0xcc0"
        f"\t-\t{cache}\tworker\n"
    )


S1, S2, S3 = 0xFFFF888100001000, 0xFFFF888100002000, 0xFFFF888100003000

# Section A (tid 10): prefill 5 (sheaf holds 32), 3 allocations, return with 29 left.
# Section B (tid 11, CPU 1): prefill 4, 1 allocation, a refill to 6 that needs a new sheaf
# (the kernel's nested prefill of S3 and return of S2 come first), then 4 allocations.
# Section C (tid 12): a failed prefill; then a return nobody prefilled; a prefill never returned.
LINES = [
    line(100, 0, 10, "prefill_sheaf", S1, 5, 32),
    line(105, 1, 11, "prefill_sheaf", S2, 4, 32),
    line(110, 0, 10, "alloc_from_sheaf", S1, 1, 32),
    line(111, 0, 10, "alloc_from_sheaf", S1, 1, 31),
    line(112, 0, 10, "alloc_from_sheaf", S1, 1, 30),
    line(120, 0, 10, "return_sheaf", S1, 29, 32),
    line(130, 1, 11, "alloc_from_sheaf", S2, 1, 32),
    line(131, 1, 11, "prefill_sheaf", S3, 6, 40),
    line(132, 1, 11, "return_sheaf", S2, 31, 32),
    line(133, 1, 11, "refill_sheaf", S3, 6, 40),
    *[line(140 + i, 1, 11, "alloc_from_sheaf", S3, 1, 40 - i) for i in range(4)],
    line(150, 1, 11, "return_sheaf", S3, 36, 40),
    line(160, 0, 12, "prefill_sheaf", 0, 8, 0),
    line(170, 0, 12, "return_sheaf", 0xFFFF888100009000, 3, 32),
    line(180, 0, 12, "prefill_sheaf", 0xFFFF88810000A000, 2, 32, "vm_area_struct"),
    line(190, 0, 12, "alloc_bulk", 0xFFFFC90000001000, 16, 16),
    line(191, 0, 12, "free_bulk", 0xFFFFC90000001000, 4, "-", "-"),
    line(192, 0, 12, "kfree_rcu_sheaf", 0xFFFF888100005000, 1, 1),
]


def test_parse_line() -> None:
    r = parse_prefill_line(LINES[0])
    assert r is not None
    assert (r.ts_ns, r.cpu, r.tid, r.event, r.ptr, r.req, r.got, r.cache, r.comm) == (
        100,
        0,
        10,
        "prefill_sheaf",
        S1,
        5,
        32,
        "maple_node",
        "worker",
    )
    assert parse_prefill_line("# comment\n") is None
    assert parse_prefill_line(line(1, 0, 1, "kmalloc", 1, 8, 8)) is None
    free = parse_prefill_line(LINES[-2])
    assert free is not None and free.got is None and free.cache is None


def test_ops(tmp_path: Path) -> None:
    path = tmp_path / "prefill.tsv"
    # bpftrace prints per-CPU buffers out of order: the reader sorts.
    path.write_text(HEADER + "".join(reversed(LINES)))
    records = read_prefill_records(str(path))
    assert [r.ts_ns for r in records] == sorted(r.ts_ns for r in records)
    caches = ["filp"]
    sites: list[str] = []
    stats: dict[str, int] = {}
    ops = ops_from_prefill_records(records, caches, sites, stats)
    assert ops.source == "capture"
    assert len(ops) == 2
    assert caches == ["filp", "maple_node"]
    assert sites == ["0xffffffff81234567"]
    assert list(ops.ts_ns) == [100, 105]
    assert list(ops.cpu) == [0, 1]
    assert list(ops.pid) == [10, 11]
    assert list(ops.cache_id) == [1, 1]
    assert list(ops.upper_bound) == [5, 7]  # B: 1 taken, then a refill to hold 6 more
    assert list(ops.used) == [3, 5]
    assert stats == {
        "operations": 2,
        "failed_prefill": 1,
        "unreturned": 1,
        "return_without_prefill": 1,
        "alloc_outside_section": 0,
    }


def test_used_without_the_alloc_probe() -> None:
    """Without alloc_from_sheaf records, used = objects after prefill - objects left."""
    recs = [parse_prefill_line(ln) for ln in LINES[:6]]
    recs = [r for r in recs if r is not None and r.event != "alloc_from_sheaf"]
    ops = ops_from_prefill_records(recs, [])
    assert list(ops.used) == [3]  # 32 after prefill, 29 left
    assert ops.cache_id.dtype == np.int32 and ops.used.dtype == np.uint32


def test_json_output_and_empty(tmp_path: Path) -> None:
    path = tmp_path / "prefill.json"
    objs = [{"type": "attached_probes", "data": {"probes": 12}}]
    objs += [{"type": "printf", "data": ln} for ln in LINES[:6]]
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    ops = ops_from_prefill_records(read_prefill_records(str(path)), [])
    assert list(ops.used) == [3]
    empty = ops_from_prefill_records([], [])
    assert len(empty) == 0 and empty.ts_ns.dtype == np.int64
    assert NO_CACHE == -1
