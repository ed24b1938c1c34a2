"""What ``sheaftune record`` writes (capture's trace.dat v6 writer) reads back exactly.

Pages are built byte by byte (the page builder of ``test_tracedat_pages``), written with the
capture writer beside kmem formats, kallsyms, cmdlines and sheaftune's own option, then read
through the public entry point, as ``sheaftune analyze`` would.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from sheaftune.events import NO_CACHE, Op
from sheaftune.readers import ReadOptions, read_trace
from tests.readers.test_tracedat_pages import COMMON, Page, kcfree, kmalloc

writer = pytest.importorskip("sheaftune.capture.tracedat_writer")

HEADER_PAGE = (
    b"\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
    b"\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
    b"\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
    b"\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n"
)


def formats() -> list[bytes]:
    out = []
    for name, ident, fields in (
        (
            "kmalloc",
            658,
            "\tfield:unsigned long call_site;\toffset:8;\tsize:8;\tsigned:0;\n"
            "\tfield:const void * ptr;\toffset:16;\tsize:8;\tsigned:0;\n"
            "\tfield:size_t bytes_req;\toffset:24;\tsize:8;\tsigned:0;\n"
            "\tfield:size_t bytes_alloc;\toffset:32;\tsize:8;\tsigned:0;\n"
            "\tfield:unsigned long gfp_flags;\toffset:40;\tsize:8;\tsigned:0;\n"
            "\tfield:int node;\toffset:48;\tsize:4;\tsigned:1;\n",
        ),
        (
            "kmem_cache_free",
            656,
            "\tfield:unsigned long call_site;\toffset:8;\tsize:8;\tsigned:0;\n"
            "\tfield:const void * ptr;\toffset:16;\tsize:8;\tsigned:0;\n"
            "\tfield:__rel_loc char[] name;\toffset:24;\tsize:4;\tsigned:0;\n",
        ),
    ):
        out.append(
            f'name: {name}\nID: {ident}\nformat:\n{COMMON}\n{fields}\nprint fmt: ""\n'.encode()
        )
    return out


def test_capture_writer_round_trip(tmp_path: Path) -> None:
    e = "<"
    cpu0 = (
        Page(1_000_000_000)
        .data(0, kmalloc(e, 8, 42, 0xFFFFFFFF81000010, 0xFFFF000000001000, 100, 128))
        .data(500, kcfree(e, 8, 0xFFFF000000002000, b"maple_node"))
        .bytes()
    )
    cpu1 = (
        Page(1_000_000_100)
        .lost(7)
        .data(0, kcfree(e, 8, 0xFFFF000000003000, b"vm_area_struct"))
        .bytes()
        + Page(2_000_000_000).data(0, kmalloc(e, 8, 0, 0xFFFFFFFF81000020, 0, 8, 8)).bytes()
    )
    spools = []
    for i, data in enumerate((cpu0, cpu1)):
        p = tmp_path / f"cpu{i}.raw"
        p.write_bytes(data)
        spools.append(str(p))
    meta = writer.TraceDatMetadata(
        page_size=4096,
        cpus=3,
        header_page=HEADER_PAGE,
        header_event=b"# compressed entry header\n",
        clock="mono",
        event_formats={"kmem": formats()},
        kallsyms=b"ffffffff81000000 T _text\nffffffff81000018 t helper\n"
        b"ffffffff82000000 T _etext\n",
        cmdlines=b"42 make\n",
        uname="Linux host 6.18.1 x86_64",
        sheaftune={"events": ["kmem:kmalloc"]},
        version="sheaftune test",
    )
    out = tmp_path / "rec.dat"
    writer.write_tracedat_v6(str(out), meta, [spools[0], spools[1], None])
    t = read_trace(str(out), options=ReadOptions())
    assert t.meta.format == "trace.dat" and t.meta.file_version == 6 and t.meta.cpus == 3
    assert t.meta.clock == "mono" and t.meta.kernel_release == "6.18.1"
    assert t.ts_ns.tolist() == [1_000_000_000, 1_000_000_100, 1_000_000_500, 2_000_000_000]
    assert t.cpu.tolist() == [0, 1, 0, 1]
    assert t.op.tolist() == [Op.KMALLOC, Op.KMEM_CACHE_FREE, Op.KMEM_CACHE_FREE, Op.KMALLOC]
    assert [t.caches[c] if c != NO_CACHE else None for c in t.cache_id] == [
        None,
        "vm_area_struct",
        "maple_node",
        None,
    ]
    assert [t.sites[s] for s in t.site_id] == ["_text+0x10", "0x1000", "0x1000", "helper+0x8"]
    assert [t.comms[c] for c in t.comm_id] == ["make", "<...>", "<...>", "<idle>"]
    assert t.meta.lost_events == {1: 7} and t.meta.lost_markers == {1: 1}
    assert np.array_equal(t.bytes_alloc, [128, 0, 0, 8])
    # sheaftune's own option (id 0x5348) is skipped like any unknown option
    assert struct.pack("<H", writer.OPTION_SHEAFTUNE) in out.read_bytes()
