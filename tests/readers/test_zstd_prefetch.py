"""sheaftune.zstd_prefetch: a v7 zstd trace.dat's CPU data decompressed at start-up, taken by the
reader only when it is exactly what the reader would have decompressed itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sheaftune import zstd_prefetch
from sheaftune.readers import read_trace
from sheaftune.readers.tracedat_fast import reader_kernels

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
SMALL = FIXTURES / "traces" / "kmalloc-small.v7zstd.dat"
V6 = FIXTURES / "traces" / "vma-small.v6.dat"

pytestmark = pytest.mark.skipif(not SMALL.exists(), reason=f"{SMALL} absent (../shared/fixtures)")


@pytest.fixture(autouse=True)
def _no_leftover():
    zstd_prefetch.discard()
    yield
    zstd_prefetch.discard()


def _columns(path: Path) -> dict[str, np.ndarray]:
    t = read_trace(str(path))
    return {name: np.asarray(col).copy() for name, col in t.columns.items()}


def _taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    seen: list[bool] = []
    take = zstd_prefetch.take

    def spy(*a: object) -> object:
        got = take(*a)  # type: ignore[arg-type]
        seen.append(got is not None)
        return got

    monkeypatch.setattr(zstd_prefetch, "take", spy)
    return seen


def test_the_reader_walks_the_prefetched_pages_to_the_same_table(monkeypatch):
    if reader_kernels() is None:
        pytest.skip("no compiled reader kernels: the streaming reader reads")
    plain = _columns(SMALL)
    seen = _taken(monkeypatch)
    assert zstd_prefetch.start(["analyze", str(SMALL), "--format", "json"])
    got = _columns(SMALL)
    assert seen == [True]
    assert got.keys() == plain.keys()
    for name in plain:
        assert np.array_equal(got[name], plain[name]), name


def test_eligibility():
    small = str(SMALL)
    assert zstd_prefetch._eligible(["analyze", small, "--format", "json"]) == small
    assert zstd_prefetch._eligible(["--debug", "analyze", small]) == small
    assert zstd_prefetch._eligible(["analyze", small, small + ".missing"]) == small
    for argv in (
        ["convert", small, "out.npz"],  # another command
        ["analyze", small, "--buffer", "inst"],  # what is read changes
        ["analyze", small, "--salvage"],
        ["analyze", small, "--input-format", "trace.dat"],
        ["analyze", str(V6)],  # v6: nothing to decompress
    ):
        assert zstd_prefetch._eligible(argv) is None, argv


def test_two_traces_or_the_variable_turn_it_off(tmp_path: Path, monkeypatch):
    other = tmp_path / "b.dat"
    shutil.copy(SMALL, other)
    assert zstd_prefetch._eligible(["analyze", str(SMALL), str(other)]) is None
    monkeypatch.setenv(zstd_prefetch.ENV, "0")
    assert not zstd_prefetch.start(["analyze", str(SMALL)])


def test_a_file_changed_after_the_start_is_read_afresh(tmp_path: Path, monkeypatch):
    f = tmp_path / "t.dat"
    shutil.copy(SMALL, f)
    seen = _taken(monkeypatch)
    assert zstd_prefetch.start(["analyze", str(f)])
    assert zstd_prefetch._pending is not None
    zstd_prefetch._pending.thread.join()
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    got = _columns(f)
    assert seen in ([], [False])  # (no compiled kernels: the streaming reader never asks)
    plain = _columns(SMALL)
    for name in plain:
        assert np.array_equal(got[name], plain[name]), name


def test_chunks_other_than_the_readers_are_refused():
    assert zstd_prefetch.start(["analyze", str(SMALL)])
    pre = zstd_prefetch._pending
    assert pre is not None
    pre.thread.join()
    index = {cpu: list(chunks) for cpu, chunks in pre.cpus}
    cpu = next(iter(index))
    pos, clen, ulen = index[cpu][0]
    index[cpu][0] = (pos, clen, ulen + 4096)  # (what a reader with another index would ask)
    assert zstd_prefetch.take(str(SMALL), index) is None
    assert zstd_prefetch._pending is None  # given up either way


def test_a_corrupt_chunk_gives_the_same_error_with_and_without(tmp_path: Path):
    bad = tmp_path / "bad.dat"
    data = bytearray(SMALL.read_bytes())
    assert zstd_prefetch._v7_zstd(bytes(data[:64]))
    import mmap

    with open(SMALL, "rb") as fh:
        cpus = zstd_prefetch._top_buffer(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
    pos, clen, _ = cpus[0][1][0]
    data[pos + clen // 2 : pos + clen // 2 + 8] = b"\xff" * 8  # inside the first frame
    bad.write_bytes(bytes(data))

    def run(flag: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sheaftune", "analyze", str(bad), "--format", "json"],
            capture_output=True,
            text=True,
            env={**os.environ, zstd_prefetch.ENV: flag},
        )

    on, off = run("1"), run("0")
    assert (on.returncode, on.stderr, on.stdout) == (off.returncode, off.stderr, off.stdout)
    assert on.returncode == 3, on.stderr


def _sections_asked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    seen: list[tuple[int, bool]] = []
    section = zstd_prefetch.section

    def spy(path: str, at: int, clen: int, ulen: int) -> bytes | None:
        got = section(path, at, clen, ulen)
        seen.append((ulen, got is not None))
        return got

    monkeypatch.setattr(zstd_prefetch, "section", spy)
    return seen


def test_the_metadata_sections_are_decompressed_ahead_and_taken(monkeypatch):
    """The reader takes every compressed metadata section it reads from the prefetch but
    kallsyms (which it decompresses on its own thread), and reads the same table (names, call
    sites, task names: from those sections)."""
    plain = read_trace(str(SMALL))
    plain.settle() if plain.pending is not None else None
    seen = _sections_asked(monkeypatch)
    assert zstd_prefetch.start(["analyze", str(SMALL)])
    got = read_trace(str(SMALL))
    got.settle() if got.pending is not None else None
    # event formats (and cmdlines) from the prefetch; kallsyms, the largest, not
    assert len(seen) >= 2 and sum(taken for _, taken in seen) == len(seen) - 1, seen
    assert [u for u, taken in seen if not taken] == [max(u for u, _ in seen)], seen
    assert got.sites == plain.sites and got.comms == plain.comms
    assert got.caches == plain.caches
    for name in plain.columns:
        assert np.array_equal(np.asarray(got.columns[name]), np.asarray(plain.columns[name]))


def test_a_section_is_given_only_as_decompressed_from_the_same_file(tmp_path: Path):
    f = tmp_path / "t.dat"
    shutil.copy(SMALL, f)
    assert zstd_prefetch.start(["analyze", str(f)])
    pre = zstd_prefetch._pending
    assert pre is not None
    pre.sections_done.wait()
    assert pre.sections
    (at, clen, ulen), data = next(iter(pre.sections.items()))
    # another place or size: not what was decompressed
    assert zstd_prefetch.section(str(f), at + 1, clen, ulen) is None
    assert zstd_prefetch.section(str(f), at, clen, ulen + 1) is None
    assert zstd_prefetch.section(str(f), at, clen, ulen) == data
    assert zstd_prefetch.section(str(f), at, clen, ulen) is None  # (given once)

    def again() -> None:
        zstd_prefetch.discard()
        assert zstd_prefetch.start(["analyze", str(f)])
        pre = zstd_prefetch._pending
        assert pre is not None
        pre.sections_done.wait()

    again()
    # another file with the same bytes: not this one
    assert zstd_prefetch.section(str(SMALL), at, clen, ulen) is None
    again()
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert zstd_prefetch.section(str(f), at, clen, ulen) is None  # changed since


def test_a_corrupt_section_gives_the_same_error_with_and_without(tmp_path: Path):
    import mmap

    data = bytearray(SMALL.read_bytes())
    sections: dict[int, int] = {}
    with open(SMALL, "rb") as fh:
        zstd_prefetch._top_buffer(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ), sections)
    off = sections[18]  # the event formats, compressed: its data after a 24-byte header
    data[off + 24 + 40 : off + 24 + 48] = b"\xff" * 8
    bad = tmp_path / "bad.dat"
    bad.write_bytes(bytes(data))

    def run(flag: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sheaftune", "analyze", str(bad), "--format", "json"],
            capture_output=True,
            text=True,
            env={**os.environ, zstd_prefetch.ENV: flag},
        )

    on, off_ = run("1"), run("0")
    assert (on.returncode, on.stderr, on.stdout) == (off_.returncode, off_.stderr, off_.stdout)
    assert on.returncode == 3 and "event formats" in on.stderr, on.stderr
