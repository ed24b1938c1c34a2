"""sheaftune.premap: an uncompressed trace.dat mapped and populated at start-up, taken by the
reader only for the same, unchanged file; the same table and report with it as without."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sheaftune import premap
from sheaftune.readers import read_trace

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
V6 = FIXTURES / "traces" / "vma-small.v6.dat"
V7NONE = FIXTURES / "traces" / "vma-small.v7.dat"
V7ZSTD = FIXTURES / "traces" / "vma-small.v7zstd.dat"
TEXT = FIXTURES / "traces" / "vma-small.ftrace.txt"

pytestmark = pytest.mark.skipif(not V6.exists(), reason=f"{V6} absent (../shared/fixtures)")


@pytest.fixture(autouse=True)
def _no_leftover():
    premap.discard()
    yield
    premap.discard()


def _columns(path: Path) -> dict[str, np.ndarray]:
    t = read_trace(str(path))
    if t.pending is not None:
        t.settle()
    return {name: np.asarray(col).copy() for name, col in t.columns.items()}


def _taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    seen: list[bool] = []
    take = premap.take

    def spy(path: str) -> object:
        got = take(path)
        seen.append(got is not None)
        return got

    monkeypatch.setattr(premap, "take", spy)
    return seen


def test_which_commands_and_files_it_applies_to(tmp_path: Path, monkeypatch):
    for f in (V6, V7NONE):
        assert premap.prepare(["analyze", str(f), "--format", "json"]) is not None, f
        premap.discard()
    assert premap.prepare(["--debug", "analyze", str(V6)]) is not None
    premap.discard()
    other = tmp_path / "b.dat"
    shutil.copy(V6, other)
    for argv in (
        ["analyze", str(V7ZSTD)],  # compressed: zstd_prefetch's
        ["analyze", str(TEXT)],  # not a trace.dat
        ["analyze", str(V6), str(other)],  # two trace.dat: each read as always
        ["convert", str(V6), "-o", "x.npz"],  # another command
        ["analyze", str(tmp_path / "missing.dat")],
    ):
        assert premap.prepare(argv) is None, argv
        assert premap._pending is None
    # a text file among the operands does not count
    assert premap.prepare(["analyze", str(V6), str(TEXT)]) is not None
    premap.discard()
    monkeypatch.setenv(premap.ENV, "0")
    assert premap.prepare(["analyze", str(V6)]) is None


def test_uncompressed_is_read_from_the_header():
    head = V6.read_bytes()[:64]
    assert premap._uncompressed(head)
    assert premap._uncompressed(V7NONE.read_bytes()[:64])
    assert not premap._uncompressed(V7ZSTD.read_bytes()[:64])
    assert premap._uncompressed(head[:10] + b"5\x00" + head[12:])  # older: the v6 layout
    assert not premap._uncompressed(head[:10] + b"x\x00" + head[12:])
    assert not premap._uncompressed(head[:10])


@pytest.mark.parametrize("path", [V6, V7NONE], ids=["v6", "v7-none"])
def test_the_reader_walks_the_premapped_file_to_the_same_table(path: Path, monkeypatch):
    plain = _columns(path)
    seen = _taken(monkeypatch)
    job = premap.prepare(["analyze", str(path)])
    assert job is not None
    job()  # (what the heap's thread does after its pre-fault)
    pre = premap._pending
    assert pre is not None and pre.state == "done" and pre.mm is not None
    assert pre.mm[:] == path.read_bytes()
    got = _columns(path)
    assert seen == [True]
    assert premap._pending is None
    assert pre.mm is None  # handed over: the reader closes it
    assert got.keys() == plain.keys()
    for name in plain:
        assert np.array_equal(got[name], plain[name]), name


def test_another_or_a_changed_file_is_mapped_afresh(tmp_path: Path):
    f = tmp_path / "t.dat"
    shutil.copy(V6, f)
    job = premap.prepare(["analyze", str(f)])
    assert job is not None
    job()
    pre = premap._pending
    assert pre is not None
    mm = pre.mm
    assert premap.take(str(V6)) is None  # another file (same bytes, another inode)
    assert mm.closed and premap._pending is None

    job = premap.prepare(["analyze", str(f)])
    assert job is not None
    job()
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert premap.take(str(f)) is None  # changed since the start: read as always


def test_a_reader_that_comes_first_gives_the_premap_up():
    job = premap.prepare(["analyze", str(V6)])
    assert job is not None
    pre = premap._pending
    assert premap.take(str(V6)) is None  # not begun: the reader maps the file itself
    job()  # (the heap's thread, late): nothing is mapped
    assert pre is not None and pre.state == "dropped" and pre.mm is None


def test_discard_unmaps_what_was_made():
    job = premap.prepare(["analyze", str(V6)])
    assert job is not None
    job()
    pre = premap._pending
    assert pre is not None
    mm = pre.mm
    premap.discard()
    assert mm.closed and premap._pending is None


@pytest.mark.parametrize("path", [V6, V7NONE], ids=["v6", "v7-none"])
def test_an_analysis_is_the_same_with_and_without_the_premap(path: Path):
    """End to end, through ``python -m sheaftune`` (the heap warm-up applies: 8 MB files);
    the probe shows that the reader did take the premapped file."""
    probe = (
        "import runpy, sys\n"
        "from sheaftune import premap\n"
        "take = premap.take\n"
        "def spy(p):\n"
        "    got = take(p)\n"
        "    sys.stderr.write(f'premap taken: {got is not None}\\n')\n"
        "    return got\n"
        "premap.take = spy\n"
        "sys.argv = ['sheaftune', *sys.argv[1:]]\n"
        "runpy.run_module('sheaftune', run_name='__main__')\n"
    )

    def run(flag: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [sys.executable, "-c", probe, "analyze", str(path), "--format", "json"],
            capture_output=True,
            text=True,
            env={**os.environ, premap.ENV: flag, "SHEAFTUNE_HEAP_WARMUP": "1"},
        )
        assert out.returncode == 0, out.stderr
        return out

    on, off = run("1"), run("0")
    assert on.stdout == off.stdout
    glibc = (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    if glibc and sys.platform.startswith("linux"):
        assert "premap taken: True" in on.stderr
    assert "premap taken: True" not in off.stderr


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="no /proc/self/smaps here")
def test_populate_maps_the_files_pages_before_any_touch():
    """The premap's advice really fills the mapping: its resident size in /proc/self/smaps is
    the file's (a fresh mapping of the same file is not resident until touched)."""
    import mmap

    def resident_kib(mm: mmap.mmap) -> int:
        start = np.frombuffer(mm, dtype=np.uint8).ctypes.data
        # (each mapping: a line "start-end perms ...", then "Key: value kB" lines)
        lines = Path("/proc/self/smaps").read_text().splitlines()
        head = next(i for i, line in enumerate(lines) if line.startswith(f"{start:x}-"))
        rss = next(line for line in lines[head + 1 :] if line.startswith("Rss:"))
        return int(rss.split()[1])

    size = V6.stat().st_size
    with open(V6, "rb") as fh:
        V6.read_bytes()  # (the file in the page cache)
        cold = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        warm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        premap._populate(warm, size)
        try:
            filled = resident_kib(warm)
            if filled * 1024 < size // 2 and resident_kib(cold) == filled:
                pytest.skip("this kernel refuses MADV_POPULATE_READ (before Linux 5.14)")
            assert filled * 1024 >= size - 4096
            assert resident_kib(cold) * 1024 < size // 2
        finally:
            cold.close()
            warm.close()
