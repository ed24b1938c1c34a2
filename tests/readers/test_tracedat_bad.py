"""Damaged trace.dat files: one-line InputErrors (exit 3) naming file, section/CPU and offset;
with ``salvage``, every readable event, counts of what was lost, ``complete`` False."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sheaftune.errors import InputError
from sheaftune.events import EventTable, load_native
from sheaftune.readers import ReadOptions, read_trace
from sheaftune.readers.base import Source
from sheaftune.readers.tracedat import _mapped, _TraceDat
from tests.conftest import fixture_path


def read(path: Path, salvage: bool = False) -> EventTable:
    return read_trace(str(path), "trace.dat", ReadOptions(salvage=salvage))


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def cpu_regions(path: Path) -> tuple[list[tuple[int, int, int]], bool]:
    """(cpu, offset, size) of the top buffer, and whether it is compressed."""
    with _mapped(Source(str(path))) as data:
        r = _TraceDat(data, str(path), ReadOptions())
        r.read()
        top = r.buffers[0]
        return list(top.cpus), top.compressed


def assert_one_line(e: InputError, *words: str) -> None:
    msg = str(e)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


# --- truncation ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def v6_full() -> EventTable:
    return read(fixture_path("traces/vma-small.v6.dat"))


@pytest.mark.parametrize(
    ("cpu", "pages", "extra"),
    [(1, 5, 0), (1, 5, 1000), (0, 10, 0), (0, 10, 123), (1, 0, 16)],
)
def test_truncated_cpu_data(
    tmp_path: Path, v6_full: EventTable, cpu: int, pages: int, extra: int
) -> None:
    src = fixture_path("traces/vma-small.v6.dat")
    regions, _ = cpu_regions(src)
    off = regions[cpu][1]
    cut = off + pages * 4096 + extra
    p = write(tmp_path, "cut.dat", src.read_bytes()[:cut])
    with pytest.raises(InputError) as ei:
        read(p)
    assert_one_line(ei.value, str(p), f"CPU {cpu}", "byte offset", "truncated")
    t = read(p, salvage=True)
    m = t.meta
    assert not m.complete and m.warnings and m.skipped
    assert len(t) < len(v6_full)
    if cut >= regions[0][1] + 4096:
        assert len(t) > 0
    # exactly the events of the whole pages present: a prefix of each CPU's full stream
    for c in (0, 1):
        got = t.ts_ns[t.cpu == c]
        full = v6_full.ts_ns[v6_full.cpu == c]
        assert np.array_equal(got, full[: len(got)])
    if cpu == 1:
        assert (t.cpu == 0).sum() == (v6_full.cpu == 0).sum()


@pytest.mark.parametrize("frac", [0.5, 0.9, 0.999])
def test_truncated_compressed(tmp_path: Path, frac: float) -> None:
    src = fixture_path("traces/vma-small.v7zstd.dat")
    data = src.read_bytes()
    regions, compressed = cpu_regions(src)
    assert compressed
    p = write(tmp_path, "cut.dat", data[: int(len(data) * frac)])
    with pytest.raises(InputError) as ei:
        read(p)
    assert_one_line(ei.value, str(p), "byte offset")
    # the metadata sections of a v7 file written by trace-cmd extract come before the CPU
    # data, but the BUFFER option is in an OPTIONS section after it: nothing is readable
    # without it, so salvage cannot help here either
    with pytest.raises(InputError):
        read(p, salvage=True)


def test_v7_cpu_size_past_end_of_file(tmp_path: Path) -> None:
    """A BUFFER option claiming more CPU data than the file holds (a cut recording)."""
    src = fixture_path("edge/v7none.dat")
    data = src.read_bytes()
    regions, compressed = cpu_regions(src)
    assert not compressed
    cpu, off, size = regions[-1]
    entry = struct.pack("<IQQ", cpu, off, size)
    assert data.count(entry) == 1
    p = write(tmp_path, "long.dat", data.replace(entry, struct.pack("<IQQ", cpu, off, 1 << 30)))
    with pytest.raises(InputError) as ei:
        read(p)
    assert_one_line(ei.value, str(p), f"CPU {cpu}", f"byte offset {off}", "truncated")
    t = read(p, salvage=True)
    assert not t.meta.complete and t.meta.warnings
    full = read(src)
    assert np.array_equal(t.ts_ns, full.ts_ns)  # the whole pages present hold every event


def test_truncated_metadata(tmp_path: Path) -> None:
    src = fixture_path("traces/vma-small.v6.dat")
    for cut in (5, 14, 100, 5000, 2_000_000):
        p = write(tmp_path, f"cut{cut}.dat", src.read_bytes()[:cut])
        for salvage in (False, True):
            with pytest.raises(InputError) as ei:
                read(p, salvage)
            assert_one_line(ei.value, str(p))


# --- corrupt content -----------------------------------------------------------------------


def test_corrupt_compressed_chunk(tmp_path: Path) -> None:
    src = fixture_path("traces/vma-small.v7zstd.dat")
    data = bytearray(src.read_bytes())
    regions, _ = cpu_regions(src)
    cpu, off, _ = regions[0]
    # walk to chunk 3 and break its zstd frame magic
    (count,) = struct.unpack_from("<I", data, off)
    pos = off + 4
    for _ in range(3):
        clen, _ulen = struct.unpack_from("<II", data, pos)
        pos += 8 + clen
    data[pos + 8 : pos + 12] = b"\0\0\0\0"
    p = write(tmp_path, "bad.dat", bytes(data))
    with pytest.raises(InputError) as ei:
        read(p)
    assert_one_line(ei.value, str(p), "CPU 0 chunk 3", f"byte offset {pos}", "corrupt zstd")
    t = read(p, salvage=True)
    full = read(src)
    assert not t.meta.complete
    assert t.meta.skipped["corrupt or missing compressed chunks"] == count - 3
    assert any("chunk 3" in w for w in t.meta.warnings)
    assert (t.cpu == 1).sum() == (full.cpu == 1).sum()
    got = t.ts_ns[t.cpu == 0]
    assert 0 < len(got) < (full.cpu == 0).sum()
    assert np.array_equal(got, full.ts_ns[full.cpu == 0][: len(got)])


def _le64_page(data: bytearray, cpu: int) -> int:
    regions, _ = cpu_regions(fixture_path("edge/le64.dat"))
    return regions[cpu][1]


def test_commit_past_page_end(tmp_path: Path) -> None:
    data = bytearray(fixture_path("edge/le64.dat").read_bytes())
    page = _le64_page(data, 0)
    struct.pack_into("<Q", data, page + 8, 0x0FFF0)
    p = write(tmp_path, "bad.dat", bytes(data))
    with pytest.raises(InputError) as ei:
        read(p)
    assert_one_line(ei.value, "CPU 0", f"byte offset {page + 8}", "commit size")
    t = read(p, salvage=True)
    assert not t.meta.complete and t.meta.skipped["corrupt ring-buffer pages"] == 1
    assert set(t.cpu.tolist()) == {1}


def test_record_length_past_page_end(tmp_path: Path) -> None:
    data = bytearray(fixture_path("edge/le64.dat").read_bytes())
    page = _le64_page(data, 0)
    # first record: type_len 0 with a length word far beyond the committed data
    struct.pack_into("<II", data, page + 16, 0, 0x7FFF0000)
    p = write(tmp_path, "bad.dat", bytes(data))
    with pytest.raises(InputError) as ei:
        read(p)
    assert_one_line(ei.value, "CPU 0", f"byte offset {page + 16}", "runs past")
    t = read(p, salvage=True)
    assert not t.meta.complete and t.meta.skipped["corrupt ring-buffer pages"] == 1


def test_zeroed_page_does_not_loop(tmp_path: Path) -> None:
    data = bytearray(fixture_path("edge/le64.dat").read_bytes())
    page = _le64_page(data, 0)
    data[page + 16 : page + 4096] = bytes(4096 - 16)  # records all zero, commit kept
    p = write(tmp_path, "bad.dat", bytes(data))
    with pytest.raises(InputError):
        read(p)
    assert not read(p, salvage=True).meta.complete


def test_unknown_version_and_wrong_magic(tmp_path: Path) -> None:
    data = bytearray(fixture_path("edge/le64.dat").read_bytes())
    v = bytearray(data)
    v[10] = ord("9")
    p = write(tmp_path, "v9.dat", bytes(v))
    with pytest.raises(InputError) as ei:
        read(p)
    assert_one_line(ei.value, str(p), "header", "byte offset 10", "version 9")
    w = bytearray(data)
    w[0] = 0x18
    p = write(tmp_path, "magic.dat", bytes(w))
    with pytest.raises(InputError) as ei:
        read(p)
    assert_one_line(ei.value, str(p), "header", "byte offset 0", "wrong magic")


def test_missing_event_format(tmp_path: Path) -> None:
    data = fixture_path("edge/le64.dat").read_bytes()
    assert data.count(b"kmem\x00") == 1
    p = write(tmp_path, "nofmt.dat", data.replace(b"kmem\x00", b"kmex\x00"))
    for salvage in (False, True):
        with pytest.raises(InputError) as ei:
            read(p, salvage)
        assert_one_line(ei.value, str(p), "event formats", "no kmem event format")


def test_hostile_length_field(tmp_path: Path) -> None:
    data = bytearray(fixture_path("edge/le64.dat").read_bytes())
    i = data.find(b"ffffffff81000000 T _text")
    struct.pack_into("<I", data, i - 4, 0xFFFFFFF0)  # kallsyms block size
    p = write(tmp_path, "huge.dat", bytes(data))
    with pytest.raises(InputError) as ei:
        read(p)
    assert_one_line(ei.value, "kallsyms", f"byte offset {i}", "truncated")


# --- through the command line ----------------------------------------------------------------


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="120")
    return subprocess.run(
        [sys.executable, "-m", "sheaftune", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_cli_exit_3_and_salvage(tmp_path: Path) -> None:
    src = fixture_path("traces/vma-small.v6.dat")
    regions, _ = cpu_regions(src)
    p = write(tmp_path, "cut.dat", src.read_bytes()[: regions[1][1] + 5 * 4096 + 100])
    r = run("analyze", str(p), "--format", "json")
    assert r.returncode == 3, r.stderr
    # one error line (progress chatter such as a first-run compile notice may precede it)
    lines = [x for x in r.stderr.strip().splitlines() if "error" in x]
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "CPU 1" in lines[0] and "byte offset" in lines[0]
    # salvage through `convert` (the same reader path; analyze would add the model replay)
    out = tmp_path / "cut.npz"
    r = run("convert", str(p), "--salvage", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "CPU 1" in r.stderr  # the warning says what was lost
    t = load_native(str(out))
    assert not t.meta.complete and 0 < len(t) < 7516
