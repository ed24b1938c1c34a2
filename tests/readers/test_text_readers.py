"""The text readers (ftrace, trace-cmd report, perf script, bpftrace kmem-tsv) against oracles.

Real captures must give exactly their golden counts (computed independently from trace-cmd
report text); the hand-written inputs in ``tests/data/text`` pin every dialect the readers
accept, and the broken inputs must fail with one line naming the file.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zstandard

from sheaftune import gfp
from sheaftune.errors import InputError
from sheaftune.events import NO_CACHE, NO_SITE, EventTable, Op
from sheaftune.readers import ReadOptions, Source, detect, read_trace
from sheaftune.readers.bpftrace import BpftraceReader
from sheaftune.readers.ftrace import FtraceReader
from sheaftune.readers.perfscript import PerfScriptReader
from sheaftune.readers.report import TraceCmdReportReader
from tests.conftest import DATA, FIXTURES, ROOT, fixture_path, golden

TEXT = DATA / "text"
TEXT_READERS = [FtraceReader(), TraceCmdReportReader(), PerfScriptReader(), BpftraceReader()]

# kmalloc-small.golden.json says kfree_null 0, but the capture holds 2,994 kfree(NULL) events
# (trace-formats.md pitfall 25; trace-realities.md): test the true value.
GOLDEN_FIXES = {"kmalloc-small": {"kfree_null": 2994}}


def read(path: Path | str, fmt: str | None = None, **kw: object) -> EventTable:
    return read_trace(str(path), fmt, ReadOptions(**kw))  # type: ignore[arg-type]


def counts(t: EventTable) -> dict:
    """The golden.json view of a table: counts of raw events, time of the first and last."""
    names = [Op(o).tracepoint for o in range(len(Op))]
    by_event: dict[str, int] = {}
    by_cpu: dict[str, dict[str, int]] = {}
    by_cache: dict[str, dict[str, int]] = {}
    for cpu, op, cache in zip(t.cpu.tolist(), t.op.tolist(), t.cache_id.tolist(), strict=True):
        ev = names[op]
        by_event[ev] = by_event.get(ev, 0) + 1
        c = by_cpu.setdefault(f"{cpu:03d}", {})
        c[ev] = c.get(ev, 0) + 1
        if cache != NO_CACHE:
            k = by_cache.setdefault(t.caches[cache], {})
            k[ev] = k.get(ev, 0) + 1
    kmalloc = t.op == Op.KMALLOC
    sizes, n = np.unique(t.bytes_alloc[kmalloc], return_counts=True)
    return {
        "events": len(t),
        "by_event": by_event,
        "by_cpu": by_cpu,
        "by_cache": by_cache,
        "kmalloc_by_bytes_alloc": {str(s): int(c) for s, c in zip(sizes, n, strict=True)},
        "kfree_null": int(np.count_nonzero((t.op == Op.KFREE) & (t.ptr == 0))),
        "first_ts_us": int(t.ts_ns[0]) // 1000,
        "last_ts_us": int(t.ts_ns[-1]) // 1000,
    }


def check_golden(t: EventTable, gold: dict, name: str) -> None:
    gold = {**gold, **GOLDEN_FIXES.get(name, {})}
    got = counts(t)
    for key in ("events", "by_event", "by_cpu", "by_cache", "kmalloc_by_bytes_alloc", "kfree_null"):
        if key in gold:
            assert got[key] == gold[key], key
    for key in ("first_ts", "last_ts"):
        if key in gold:  # seconds with 6 decimals in the oracle: compare whole microseconds
            assert got[f"{key}_us"] == round(gold[key] * 1_000_000), key


# --- real captures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "gold", "fmt"),
    [
        ("traces/vma-small.ftrace.txt", "traces/vma-small.golden.json", "ftrace"),
        ("traces/kmalloc-small.ftrace.txt", "traces/kmalloc-small.golden.json", "ftrace"),
        ("traces/vma-small.report.txt", "traces/vma-small.golden.json", "trace-cmd-report"),
        (
            "traces/vma-small.perfscript.txt",
            "traces/vma-small.perfscript.golden.json",
            "perf-script",
        ),
    ],
)
def test_fixture_matches_golden(rel: str, gold: str, fmt: str) -> None:
    t = read(fixture_path(rel))
    assert t.meta.format == fmt
    check_golden(t, golden(gold), Path(rel).name.split(".")[0])
    assert bool(np.all(np.diff(t.ts_ns) >= 0))
    assert t.meta.ts_is_ns and t.meta.ts_resolution_ns == 1000
    assert t.meta.warnings == []


def test_large_zstd_ftrace_matches_golden() -> None:
    t = read(fixture_path("large/build.ftrace.txt.zst"))
    check_golden(t, golden("large/build.golden.json"), "build")
    assert t.meta.cpus == 2 and t.meta.pointers_hashed and t.meta.complete


def test_kmalloc_small_null_frees_and_hashed_pointers() -> None:
    t = read(fixture_path("traces/kmalloc-small.ftrace.txt"))
    assert int(np.count_nonzero((t.op == Op.KFREE) & (t.ptr == 0))) == 2994
    assert t.meta.pointers_hashed
    assert int(t.ptr.max()) < 1 << 32
    assert t.meta.cpus == 2 and "overwritten" not in t.meta.extra
    assert t.meta.skipped == {"comment": 12}
    assert "kmalloc" not in " ".join(t.caches)  # kmalloc caches are the normaliser's job
    assert bool(np.all(t.cache_id[t.op == Op.KMALLOC] == NO_CACHE))


def _sequence(t: EventTable) -> list[tuple]:
    return [
        (
            int(t.cpu[i]),
            int(t.op[i]),
            int(t.ts_ns[i]) // 1000,
            t.caches[t.cache_id[i]] if t.cache_id[i] >= 0 else None,
            t.sites[t.site_id[i]],
            int(t.bytes_req[i]),
            int(t.bytes_alloc[i]),
            int(t.gfp[i]),
            int(t.node[i]),
            int(t.pid[i]),
            t.comms[t.comm_id[i]],
        )
        for i in range(len(t))
    ]


def test_vma_small_ftrace_and_report_agree() -> None:
    """The same ring buffer as kernel text and as trace-cmd report: same events, same order;
    only the pointers differ (hashed in kernel text, raw in trace-cmd)."""
    ft = read(fixture_path("traces/vma-small.ftrace.txt"))
    rp = read(fixture_path("traces/vma-small.report.txt"))
    assert _sequence(ft) == _sequence(rp)
    assert ft.meta.pointers_hashed and not rp.meta.pointers_hashed
    # hashing is a bijection within one boot: the pairing structure is the same
    assert len(np.unique(ft.ptr)) == len(np.unique(rp.ptr))
    # kernel text call sites lose their /0xSIZE
    assert "__mt_dup+0x23e" in ft.sites and not any("/0x" in s for s in ft.sites)


def test_edge_report_instance_and_drops() -> None:
    t = read(fixture_path("edge/inst6.report.txt"))
    assert len(t) == 8  # the top buffer; the "slab" instance's one event is skipped
    assert t.meta.buffers == ["", "slab"]
    assert t.meta.skipped["event of another buffer"] == 1
    assert t.meta.lost_events == {1: 42} and t.meta.lost_markers == {1: 1}
    assert t.comms == ["bash", "kworker/1:2"]
    only = read(fixture_path("edge/inst6.report.txt"), buffer="slab")
    assert len(only) == 1 and only.sites[only.site_id[0]] == "seq_open+0x40"


@pytest.mark.parametrize("clock", ["boot", "counter", "x86-tsc"])
def test_edge_report_raw_integer_clocks(clock: str) -> None:
    t = read(fixture_path(f"edge/clk_{clock}.report.txt"))
    assert not t.meta.ts_is_ns
    assert int(t.ts_ns[0]) == 1000000000 and int(t.ts_ns[1]) == 1000000800


@pytest.mark.parametrize(("name", "flags"), [("gfp", "GFP_NOFS|__GFP_ZERO"), ("gfp3", "none")])
def test_edge_report_gfp(name: str, flags: str) -> None:
    t = read(fixture_path(f"edge/{name}.report.txt"))
    assert int(t.gfp[2]) == gfp.parse(flags)


def test_edge_report_leftover_gfp_bits() -> None:
    t = read(fixture_path("edge/gfp2.report.txt"))
    assert int(t.gfp[2]) == 0x80000000


# --- hand-written dialects -----------------------------------------------------------------


def rows(t: EventTable) -> list[tuple]:
    return [
        (
            int(t.ts_ns[i]),
            int(t.cpu[i]),
            Op(int(t.op[i])).tracepoint,
            int(t.ptr[i]),
            t.caches[t.cache_id[i]] if t.cache_id[i] != NO_CACHE else None,
            t.sites[t.site_id[i]] if t.site_id[i] != NO_SITE else None,
            int(t.bytes_req[i]),
            int(t.bytes_alloc[i]),
            gfp.format_flags(int(t.gfp[i])),
            int(t.node[i]),
            int(t.pid[i]),
            t.comms[t.comm_id[i]],
        )
        for i in range(len(t))
    ]


def test_ftrace_without_irq_info_columns() -> None:
    t = read(TEXT / "ftrace-noirq.txt")
    assert t.meta.format == "ftrace"
    assert rows(t) == [
        (510372337000, 0, "kmem_cache_alloc", 0xCC90C2F4, "maple_node", "__mt_dup+0x23e",
         256, 256, "GFP_KERNEL", -1, 11956, "kmemcap"),
        (510372340000, 1, "kfree", 0, None, "rcu_do_batch+0x1a2", 0, 0, "none", -1, 0, "<idle>"),
        (510372341000, 1, "kmalloc", 0xDEADBEEF, None, "seq_open+0x35", 24, 32,
         "GFP_KERNEL|__GFP_ZERO", -1, 4242, "my-prog 2"),
        (510372400000, 0, "kmem_cache_free", 0xCC90C2F4, "maple_node", "__mt_destroy+0x40",
         0, 0, "none", -1, 77, "<...>"),
    ]  # fmt: skip
    assert t.meta.pointers_hashed and t.meta.cpus == 0 and t.meta.skipped == {}


def test_ftrace_record_tgid() -> None:
    t = read(TEXT / "ftrace-tgid.txt")
    assert [(r[1], r[2], r[10], r[11]) for r in rows(t)] == [
        (2, "kmem_cache_alloc", 11956, "kmemcap"),
        (2, "kmem_cache_free", 88, "kworker/2:1"),
        (3, "kfree", 1234, "bash"),
    ]
    assert t.meta.cpus == 4


def test_ftrace_raw_counter_clock() -> None:
    t = read(TEXT / "ftrace-counter.txt")
    assert t.ts_ns.tolist() == [123456789, 123456790, 123456795]
    assert not t.meta.ts_is_ns and t.meta.clock == "counter"
    assert any("raw integers" in w for w in t.meta.warnings)


def test_ftrace_old_kernel_four_flags_bare_hex_sites_node_events() -> None:
    t = read(TEXT / "ftrace-old.txt")
    r = rows(t)
    assert [x[2] for x in r] == [
        "kmalloc",
        "kmem_cache_alloc",
        "kmalloc",
        "kmem_cache_free",
        "kfree",
    ]
    assert r[0][5] == "0xffffffff811223c5"  # pre-5.4 "%lx" call site
    assert r[1][4] is None and r[3][4] is None  # no name= on these old formats
    assert (r[1][9], r[2][9], r[0][9]) == (0, 1, -1)  # _node events carry the node
    assert not t.meta.pointers_hashed  # real addresses (hash-ptr off, or before 4.15)
    assert r[4][1] == 0


def test_ftrace_lost_events_overwritten_and_other_events() -> None:
    t = read(TEXT / "ftrace-lost.txt")
    assert len(t) == 4
    assert t.meta.lost_events == {1: 17}
    assert t.meta.lost_markers == {0: 1, 1: 1}
    assert t.meta.extra["overwritten"] == 17
    # sched_switch, and a function tracer line: trace lines, not kmem events
    assert t.meta.skipped == {"comment": 6, "non-kmem event": 2}
    assert any("overwrote" in w for w in t.meta.warnings)


def test_ftrace_module_call_site_and_unknown_gfp_flag() -> None:
    t = read(TEXT / "ftrace-module.txt")
    assert [t.sites[s] for s in t.site_id] == [
        "xfs_inode_alloc+0x2c [xfs]",
        "xfs_inode_free_callback+0x6e [xfs]",
        "0xffffffffc0a01010",
    ]
    assert t.comms == ["xfsaild/sda"]
    # the unknown flag name is ignored, the known ones kept, and the user told
    assert int(t.gfp[2]) == gfp.GFP_KERNEL
    assert t.meta.extra["unknown_gfp_events"] == 1
    assert any("__GFP_BRANDNEW" in w for w in t.meta.warnings)


def test_report_33_flags_ns_nil_and_drops() -> None:
    t = read(TEXT / "report-33-ns.txt")
    r = rows(t)
    assert [x[0] for x in r] == [510372337001, 510372339500, 510372340000, 510372345678]
    assert r[1][3] == 0 and r[1][2] == "kfree"  # ptr=(nil)
    assert r[3][5] == "0xffffffffc0a01010"
    assert t.meta.cpus == 4 and t.meta.ts_resolution_ns == 1
    assert t.meta.lost_events == {3: 5}


def test_report_raw_mode() -> None:
    t = read(TEXT / "report-raw.txt")
    r = rows(t)
    assert [x[5] for x in r] == [
        "alloc_inode+0x2b",
        "getname_flags+0x4d",
        "0xffffffffc0a01010",
        "getname_flags+0x99",
    ]
    assert [x[8] for x in r[:2]] == ["GFP_KERNEL", "GFP_KERNEL"]  # decimal 3264
    assert r[3][3] == 0  # ptr=0x0
    assert t.meta.format == "trace-cmd-report"


def test_report_with_only_an_instance(tmp_path: Path) -> None:
    lines = (fixture_path("edge/inst6.report.txt")).read_text().splitlines()
    p = tmp_path / "inst.txt"
    p.write_text("\n".join([lines[0]] + [x for x in lines if x.startswith("slab:")]) + "\n")
    assert "'slab' (1 events)" in _one_line_error(p)
    assert len(read(p, buffer="slab")) == 1


def test_report_31_without_flags() -> None:
    t = read(TEXT / "report-31.txt")
    assert [x[2] for x in rows(t)] == ["kmem_cache_alloc", "kfree"]
    assert t.meta.ts_resolution_ns == 1000


def test_perf_tid_width_5() -> None:
    t = read(TEXT / "perf-tid5.txt")
    assert [(x[2], x[10], x[11]) for x in rows(t)] == [
        ("kmem_cache_alloc", 11972, "perf-exec"),
        ("kmalloc", 12000, "sh"),
        ("kmem_cache_free", 11972, "perf-exec"),
    ]
    assert t.meta.skipped == {"non-kmem event": 1}
    assert t.meta.ts_resolution_ns == 1000


def test_perf_tid_width_7_ns() -> None:
    t = read(TEXT / "perf-tid7-ns.txt")
    r = rows(t)
    assert [x[0] for x in r] == [511860089123, 511860378001, 511860400000]
    assert r[2][10:] == (1234567, "kworker/0:1 x") and r[2][3] == 0
    assert t.meta.ts_resolution_ns == 1 and t.meta.format == "perf-script"


def test_perf_pid_slash_tid() -> None:
    t = read(TEXT / "perf-pidtid.txt")
    assert int(t.pid[0]) == 11972  # the thread, like the kernel's own comm-pid


def test_bpftrace_unordered_lines_are_stable_sorted() -> None:
    t = read(TEXT / "bpftrace.tsv")
    r = rows(t)
    assert [(x[0], x[1], x[2]) for x in r] == [
        (1000000100, 0, "kmem_cache_alloc"),
        (1000000200, 1, "kmalloc"),  # equal stamps keep their file order
        (1000000200, 0, "kmem_cache_free"),
        (1000000300, 1, "kfree"),
    ]
    assert r[0][4:] == (
        "inode_cache", "0xffffffff817038db", 600, 640, "GFP_KERNEL", -1, 100, "bash",
    )  # fmt: skip
    assert r[2][11] == "my comm"
    assert t.meta.lost_events == {-1: 12}
    assert t.meta.skipped == {"comment": 3}  # 2 '#' lines and "Attaching 6 probes..."
    assert t.meta.ts_is_ns and t.meta.format == "bpftrace"


# --- detection -----------------------------------------------------------------------------

SNIFF_CASES = {
    "ftrace-noirq.txt": "ftrace",
    "ftrace-tgid.txt": "ftrace",
    "ftrace-counter.txt": "ftrace",
    "ftrace-old.txt": "ftrace",
    "ftrace-lost.txt": "ftrace",
    "ftrace-module.txt": "ftrace",
    "ftrace-fields.txt": "ftrace",
    "sched-only.txt": "ftrace",
    "report-33-ns.txt": "trace-cmd-report",
    "report-raw.txt": "trace-cmd-report",
    "report-31.txt": "trace-cmd-report",
    "perf-tid5.txt": "perf-script",
    "perf-tid7-ns.txt": "perf-script",
    "perf-pidtid.txt": "perf-script",
    "bpftrace.tsv": "bpftrace",
}


@pytest.mark.parametrize(("name", "fmt"), sorted(SNIFF_CASES.items()))
def test_exactly_one_text_reader_recognises(name: str, fmt: str) -> None:
    head = (TEXT / name).read_bytes()
    assert [r.name for r in TEXT_READERS if r.sniff(head)] == [fmt]
    assert detect(Source(str(TEXT / name))).name == fmt


@pytest.mark.parametrize(
    ("rel", "fmt"),
    [
        ("traces/vma-small.ftrace.txt", "ftrace"),
        ("traces/kmalloc-small.ftrace.txt", "ftrace"),
        ("traces/vma-small.report.txt", "trace-cmd-report"),
        ("traces/vma-small.perfscript.txt", "perf-script"),
        ("edge/inst6.report.txt", "trace-cmd-report"),
        ("edge/clk_boot.report.txt", "trace-cmd-report"),
    ],
)
def test_fixture_sniffing(rel: str, fmt: str) -> None:
    head = fixture_path(rel).read_bytes()[:65536]
    assert [r.name for r in TEXT_READERS if r.sniff(head)] == [fmt]


def test_text_readers_do_not_import_numba_until_read() -> None:
    code = (
        "import sys\n"
        "from sheaftune.readers import ftrace, report, perfscript, bpftrace\n"
        "for r in (ftrace.FtraceReader(), report.TraceCmdReportReader(),\n"
        "          perfscript.PerfScriptReader(), bpftrace.BpftraceReader()):\n"
        "    r.sniff(b'# tracer: nop\\n')\n"
        "assert 'numba' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --- byte-level robustness -----------------------------------------------------------------


def test_crlf_line_endings(tmp_path: Path) -> None:
    src = (TEXT / "ftrace-tgid.txt").read_bytes()
    p = tmp_path / "crlf.txt"
    p.write_bytes(src.replace(b"\n", b"\r\n"))
    assert rows(read(p)) == rows(read(TEXT / "ftrace-tgid.txt"))


def test_non_utf8_comm(tmp_path: Path) -> None:
    src = (TEXT / "ftrace-noirq.txt").read_bytes().replace(b"kmemcap-", b"km\xff\xfeap-")
    p = tmp_path / "latin.txt"
    p.write_bytes(src)
    t = read(p)
    assert len(t) == 4
    assert t.comms[t.comm_id[0]] == "km\ufffd\ufffdap"


def test_line_cut_at_eof(tmp_path: Path) -> None:
    src = (TEXT / "ftrace-lost.txt").read_bytes()
    p = tmp_path / "cut.txt"
    p.write_bytes(src[: len(src) - 40])  # the last event loses its end and its newline
    t = read(p)
    assert len(t) == 3
    assert t.meta.skipped["cut last line"] == 1
    assert any("cut off" in w for w in t.meta.warnings)


def _compress(kind: str, data: bytes) -> bytes:
    if kind == "gz":
        return gzip.compress(data)
    if kind == "xz":
        return lzma.compress(data)
    if kind == "bz2":
        return bz2.compress(data)
    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize("kind", ["gz", "xz", "bz2", "zst"])
def test_compressed_inputs(tmp_path: Path, kind: str) -> None:
    plain = fixture_path("traces/vma-small.ftrace.txt")
    p = tmp_path / f"trace.{kind}"  # the name does not matter: content is sniffed
    p.write_bytes(_compress(kind, plain.read_bytes()))
    t = read(p)
    assert counts(t) == counts(read(plain))


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    data = gzip.compress((TEXT / "report-33-ns.txt").read_bytes())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    t = read("-")
    assert len(t) == 4 and t.meta.source == "<stdin>" and t.meta.format == "trace-cmd-report"


def test_small_blocks_give_the_same_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Block and thread boundaries must not change anything."""
    from sheaftune.readers import textscan

    whole = read(fixture_path("traces/kmalloc-small.ftrace.txt"))
    parts_of = textscan._parts
    monkeypatch.setattr(textscan, "BLOCK_BYTES", 300_000)
    monkeypatch.setattr(textscan, "MIN_SPLIT_BYTES", 0)
    monkeypatch.setattr(textscan, "_parts", lambda data, size, n: parts_of(data, size, 7))
    parts = read(fixture_path("traces/kmalloc-small.ftrace.txt"))
    for k in whole.columns:
        assert np.array_equal(whole.columns[k], parts.columns[k]), k
    assert (whole.sites, whole.comms) == (parts.sites, parts.comms)
    assert parts.meta.skipped == whole.meta.skipped


# --- inputs that must fail with one line naming the file -----------------------------------


def _one_line_error(path: Path | str, fmt: str | None = None, **kw: object) -> str:
    with pytest.raises(InputError) as ei:
        read(path, fmt, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and str(path) in msg and ei.value.exit_code == 3
    return msg


def test_other_tracer_events_only() -> None:
    assert "no kmem events" in _one_line_error(TEXT / "sched-only.txt")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.txt"
    p.write_bytes(b"")
    assert "empty" in _one_line_error(p)
    assert "empty" in _one_line_error(p, "ftrace")


def test_random_binary(tmp_path: Path) -> None:
    p = tmp_path / "noise.bin"
    p.write_bytes(np.random.default_rng(7).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    _one_line_error(p)
    for fmt in ("ftrace", "trace-cmd-report", "perf-script", "bpftrace"):
        assert "no kmem events" in _one_line_error(p, fmt)


def test_directory_and_missing_file(tmp_path: Path) -> None:
    assert "directory" in _one_line_error(tmp_path)
    assert "no such file" in _one_line_error(tmp_path / "absent.txt")


def test_truncated_zstd(tmp_path: Path) -> None:
    data = zstandard.ZstdCompressor().compress(
        fixture_path("traces/kmalloc-small.ftrace.txt").read_bytes()
    )
    p = tmp_path / "cut.txt.zst"
    p.write_bytes(data[: len(data) // 2])
    assert "truncated" in _one_line_error(p)
    t = read(p, salvage=True)
    assert 0 < len(t) < 20476 and not t.meta.complete
    assert any("truncated" in w for w in t.meta.warnings)


@pytest.mark.parametrize("kind", ["gz", "xz", "bz2"])
def test_truncated_other_compressions(tmp_path: Path, kind: str) -> None:
    data = _compress(kind, fixture_path("traces/kmalloc-small.ftrace.txt").read_bytes())
    p = tmp_path / f"cut.{kind}"
    p.write_bytes(data[: len(data) * 3 // 4])
    msg = _one_line_error(p)
    assert "truncated" in msg or "corrupt" in msg


def test_ftrace_latency_format_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "lat.txt"
    p.write_bytes(
        b"# tracer: nop\n#\n# nop latency trace v1.1.5 on 6.18.0\n"
        b"# latency: 0 us, #3/3, CPU#0 | (M:desktop VP:0, KP:0, SP:0 HP:0 #P:2)\n"
        b"    bash-1234      0d..1.   12us : kfree: call_site=a+0x1/0x2 ptr=0000000000000000\n"
    )
    assert "latency" in _one_line_error(p)


def test_ftrace_fields_dialect() -> None:
    """options/fields (6.3+): every field as name=0x<hex> (<dec>), raw pointers."""
    t = read(TEXT / "ftrace-fields.txt")
    assert rows(t) == [
        (510372337000, 0, "kmem_cache_alloc", 0xFFFF888102C39B00, "maple_node",
         "0xffffffff8134eb8e", 256, 256, "GFP_KERNEL", -1, 11956, "kmemcap"),
        (510372340000, 0, "kfree", 0, None, "0xffffffff8134f000", 0, 0, "none", -1, 11956,
         "kmemcap"),
    ]  # fmt: skip
    assert not t.meta.pointers_hashed


EDGE_REPORTS = sorted(p.name for p in (FIXTURES / "edge").glob("*.report.txt")) or [
    "le64.report.txt"
]
_REPORT_EVENT = re.compile(r"\[(\d{3})\] \S{5}\s+(\d+(?:\.\d+)?): (\w+):")


@pytest.mark.parametrize("name", EDGE_REPORTS)
def test_edge_reports_every_event_line(name: str) -> None:
    """trace-cmd 3.4 report -t text of the synthetic edge files: every event line of the
    top buffer becomes an event with its CPU, time and tracepoint (checked by a regex here)."""
    text = fixture_path(f"edge/{name}").read_text()
    want = [
        (int(m[1]), m[2], m[3])
        for line in text.splitlines()
        if not line.startswith("slab:") and (m := _REPORT_EVENT.search(line))
    ]
    t = read(fixture_path(f"edge/{name}"))
    got = [
        (int(c), int(ts), Op(int(o)).tracepoint)
        for c, ts, o in zip(t.cpu, t.ts_ns, t.op, strict=True)
    ]
    assert [(c, e) for c, _, e in got] == [(c, e) for c, _, e in want]
    as_ns = [int(ts.replace(".", "")) for _, ts, _ in want]  # 9 decimals, or raw integers
    assert [ts for _, ts, _ in got] == as_ns
    assert t.meta.lost_events.get(1) == (42 if "DROPPED" in text else None)


def test_mutated_lines_never_crash(tmp_path: Path) -> None:
    """The kernels index raw bytes without bounds checks: cut, spliced and corrupted lines of
    every dialect must be skipped or parsed, never read out of bounds or crash."""
    rng = np.random.default_rng(2024)
    seeds = [
        line
        for name in sorted(SNIFF_CASES)
        for line in (TEXT / name).read_bytes().splitlines()
        if line and not line.startswith(b"#")
    ]
    alphabet = np.frombuffer(b" \t-[]():=.0123456789abcdefx/\n\r\xff", np.uint8)
    out = []
    for _ in range(3000):
        line = bytearray(seeds[int(rng.integers(len(seeds)))])
        for _ in range(int(rng.integers(1, 4))):
            kind = int(rng.integers(3))
            at = int(rng.integers(len(line) + 1))
            if kind == 0:
                del line[at:]
            elif kind == 1:
                line[at:at] = bytes(rng.choice(alphabet, int(rng.integers(1, 6))))
            elif line:
                line[min(at, len(line) - 1)] = int(rng.choice(alphabet))
        out.append(bytes(line))
    p = tmp_path / "mutants.txt"
    p.write_bytes(b"\n".join(out))
    lines = p.read_bytes().count(b"\n") + 1
    for fmt in ("ftrace", "trace-cmd-report", "perf-script", "bpftrace"):
        try:
            t = read(p, fmt)
        except InputError:
            continue
        lost = sum(t.meta.lost_markers.values())
        assert 0 < len(t) and len(t) + sum(t.meta.skipped.values()) + lost == lines


@pytest.mark.parametrize(
    "body",
    [
        # options/raw: "pid cpu ts " then the event's raw output ("type: N" for trace events)
        b"11956 0 510372337123 type: 659\n11956 0 510372339000 type: 657\n",
        # options/hex: the same fields as hex digits
        b"00002eb4 00000000 0000076d5a83ba83 00000293\n",
    ],
)
def test_ftrace_raw_and_hex_dialects_are_refused(tmp_path: Path, body: bytes) -> None:
    p = tmp_path / "dialect.txt"
    p.write_bytes(b"# tracer: nop\n#\n" + body)
    msg = _one_line_error(p)
    assert "no kmem events" in msg and "options/raw" in msg


def test_buffer_option_on_single_buffer_text() -> None:
    t = read(TEXT / "perf-tid5.txt", buffer="slab")
    assert len(t) == 3
    assert t.meta.warnings == ["--buffer slab ignored: perf-script input has one buffer"]


def test_progress_is_reported() -> None:
    seen: list[tuple[int, int | None]] = []
    path = fixture_path("traces/kmalloc-small.ftrace.txt")
    read_trace(
        str(path), options=ReadOptions(progress=lambda done, total: seen.append((done, total)))
    )
    assert seen and seen[-1] == (path.stat().st_size, path.stat().st_size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_endless_line_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sheaftune.readers import textscan

    monkeypatch.setattr(textscan, "BLOCK_BYTES", 1 << 16)
    monkeypatch.setattr(textscan, "MAX_LINE_BYTES", 1 << 18)
    p = tmp_path / "oneline.txt"
    p.write_bytes(b"# tracer: nop\n" + b"x" * (1 << 20))
    assert "no line end" in _one_line_error(p)
