"""The trace.dat v6 writer on the worked example of trace-formats.md 2.7, with trace-cmd as
the oracle and our own reader when it is present. Hermetic: no tracefs needed."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from sheaftune.capture.tracedat_writer import (
    OPTION_CPUCOUNT,
    OPTION_CPUSTAT,
    OPTION_SHEAFTUNE,
    OPTION_TRACECLOCK,
    OPTION_UNAME,
    TraceDatMetadata,
    read_v6_options,
    record_facts,
    write_tracedat_v6,
)
from sheaftune.readers import read_trace

from .conftest import trace_cmd

PAGE = 4096

HEADER_PAGE = (
    b"\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
    b"\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
    b"\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
    b"\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n"
)
HEADER_EVENT = (
    b"# compressed entry header\n\ttype_len    :    5 bits\n\ttime_delta  :   27 bits\n"
    b"\tarray       :   32 bits\n\n\tpadding     : type == 29\n\ttime_extend : type == 30\n"
    b"\ttime_stamp : type == 31\n\tdata max type_len  == 28\n"
)
COMMON = (
    "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
    "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
    "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
    "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
)
KMALLOC_FORMAT = (
    "name: kmalloc\nID: 658\nformat:\n"
    + COMMON
    + "\tfield:unsigned long call_site;\toffset:8;\tsize:8;\tsigned:0;\n"
    "\tfield:const void * ptr;\toffset:16;\tsize:8;\tsigned:0;\n"
    "\tfield:size_t bytes_req;\toffset:24;\tsize:8;\tsigned:0;\n"
    "\tfield:size_t bytes_alloc;\toffset:32;\tsize:8;\tsigned:0;\n"
    "\tfield:unsigned long gfp_flags;\toffset:40;\tsize:8;\tsigned:0;\n"
    "\tfield:int node;\toffset:48;\tsize:4;\tsigned:1;\n\n"
    'print fmt: "call_site=%pS ptr=%p bytes_req=%zu bytes_alloc=%zu gfp_flags=0x%lx node=%d", '
    "(void *)REC->call_site, REC->ptr, REC->bytes_req, REC->bytes_alloc, REC->gfp_flags, "
    "REC->node\n"
).encode()
KFREE_FORMAT = (
    "name: kfree\nID: 657\nformat:\n"
    + COMMON
    + "\tfield:unsigned long call_site;\toffset:8;\tsize:8;\tsigned:0;\n"
    "\tfield:const void * ptr;\toffset:16;\tsize:8;\tsigned:0;\n\n"
    'print fmt: "call_site=%pS ptr=%p", (void *)REC->call_site, REC->ptr\n'
).encode()
KALLSYMS = b"ffffffff817146b0 T seq_open\nffffffff81715310 T single_release\nffffffff81800000 T z\n"


def example_page() -> bytes:
    """The page of trace-formats.md 2.7: a kmalloc at 5 s and a kfree 1,500 ns later."""
    kmalloc = struct.pack(
        "<HBBiQQQQQi4x",
        658,
        0,
        0,
        1234,
        0xFFFFFFFF817146E5,
        0xFFFF888102345600,
        200,
        256,
        0xCC0,
        -1,
    )
    kfree = struct.pack("<HBBiQQ", 657, 0, 0, 1234, 0xFFFFFFFF81715330, 0xFFFF888102345600)
    records = struct.pack("<I", 14) + kmalloc + struct.pack("<I", (1500 << 5) | 6) + kfree
    page = struct.pack("<QQ", 5_000_000_000, len(records)) + records
    return page + b"\0" * (PAGE - len(page))


def metadata(cpus: int) -> TraceDatMetadata:
    return TraceDatMetadata(
        page_size=PAGE,
        cpus=cpus,
        header_page=HEADER_PAGE,
        header_event=HEADER_EVENT,
        clock="local",
        trace_clock_text="[local] global counter uptime perf mono mono_raw boot tai x86-tsc\n",
        event_formats={"kmem": [KFREE_FORMAT, KMALLOC_FORMAT]},
        kallsyms=KALLSYMS,
        cmdlines=b"1234 bash\n",
        uname="Linux testhost 6.18.0-test x86_64",
        cpustats=[
            f"CPU: {c}\nentries: 0\noverrun: 0\ndropped events: 0\n".encode() for c in range(cpus)
        ],
        version="sheaftune test",
        sheaftune={"events": ["kmalloc", "kfree"], "filters": {}},
    )


@pytest.fixture
def example_file(tmp_path: Path) -> Path:
    """Two CPUs: CPU 0 without data, CPU 1 with the example page."""
    pages = tmp_path / "cpu1.pages"
    pages.write_bytes(example_page())
    out = tmp_path / "example.dat"
    size = write_tracedat_v6(str(out), metadata(2), [None, str(pages)])
    assert size == out.stat().st_size
    return out


def test_layout(example_file: Path) -> None:
    data = example_file.read_bytes()
    assert data[:12] == b"\x17\x08\x44tracing6\0"
    fly = data.index(b"flyrecord\0") + 10
    (off0, size0, off1, size1) = struct.unpack_from("<QQQQ", data, fly)
    assert (off0, size0) == (0, 0)
    assert off1 % PAGE == 0 and size1 == PAGE
    assert data[off1 : off1 + PAGE] == example_page()
    (n,) = struct.unpack_from("<Q", data, fly + 32)
    assert data[fly + 40 : fly + 40 + n] == b"[local]"
    assert len(data) == off1 + size1


def test_options_round_trip(example_file: Path) -> None:
    opts = read_v6_options(str(example_file))
    assert [o.split(b"\n")[0] for o in opts[OPTION_CPUSTAT]] == [b"CPU: 0", b"CPU: 1"]
    assert opts[OPTION_TRACECLOCK][0].startswith(b"[local] global")
    assert opts[OPTION_UNAME][0] == b"Linux testhost 6.18.0-test x86_64\0"
    assert struct.unpack("<I", opts[OPTION_CPUCOUNT][0]) == (2,)
    assert OPTION_SHEAFTUNE in opts
    facts = record_facts(str(example_file))
    assert facts == {"version": 1, "events": ["kmalloc", "kfree"], "filters": {}}


def test_trace_cmd_reads_it(example_file: Path) -> None:
    tc = trace_cmd()
    p = subprocess.run([tc, "report", "-t", str(example_file)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "unknown option" not in p.stderr.lower()
    lines = [ln for ln in p.stdout.splitlines() if "kmalloc:" in ln or "kfree:" in ln]
    assert len(lines) == 2, p.stdout
    assert "bash-1234" in lines[0] and "[001]" in lines[0] and "5.000000000:" in lines[0]
    assert "call_site=seq_open+0x35" in lines[0] and "ptr=0xffff888102345600" in lines[0]
    assert "bytes_req=200 bytes_alloc=256" in lines[0]
    assert "5.000001500:" in lines[1] and "call_site=single_release+0x20" in lines[1]
    stat = subprocess.run(
        [tc, "report", "--stat", str(example_file)], capture_output=True, text=True
    )
    assert "CPU: 1" in stat.stdout and "dropped events: 0" in stat.stdout


def test_our_reader_reads_it(example_file: Path) -> None:
    try:
        from sheaftune.readers import read_trace
    except ImportError:
        pytest.skip("the readers are not available")
    t = read_trace(str(example_file))
    if t.meta.format != "trace.dat":
        pytest.skip("the trace.dat reader is not available")
    assert len(t) == 2
    assert list(t.ts_ns) == [5_000_000_000, 5_000_001_500]
    assert list(t.cpu) == [1, 1]
    assert list(t.ptr) == [0xFFFF888102345600] * 2
    assert t.events_by_type()["kmalloc"] == 1 and t.events_by_type()["kfree"] == 1
    assert t.meta.cpus == 2 and t.meta.kernel_release == "6.18.0-test"
    assert t.meta.clock == "local"
    assert [t.sites[i] for i in t.site_id] == ["seq_open+0x35", "single_release+0x20"]


def test_rejects_partial_pages(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pages"
    bad.write_bytes(b"\0" * 100)
    with pytest.raises(ValueError, match="whole number of pages"):
        write_tracedat_v6(str(tmp_path / "x.dat"), metadata(1), [str(bad)])
    assert not (tmp_path / "x.dat").exists()


def test_the_reader_brings_the_record_facts_into_the_meta(example_file: Path) -> None:
    # (analyze reports them under trace.extra.record without a second pass over the file)
    table = read_trace(str(example_file))
    assert table.meta.extra["record"] == record_facts(str(example_file))
    # an option that is not JSON is left out (analyze used to catch record_facts' error)
    data = example_file.read_bytes()
    at = data.index(b'{"events"')
    bad = example_file.with_name("bad.dat")
    bad.write_bytes(data[:at] + b"\xff" + data[at + 1 :])
    with pytest.raises(ValueError):
        record_facts(str(bad))
    assert "record" not in read_trace(str(bad)).meta.extra
