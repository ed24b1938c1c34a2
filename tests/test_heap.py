"""sheaftune.heap: when the start-up heap warm-up applies, what it does to glibc, and that a run
gives the same report with it as without."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sheaftune import heap

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
LARGE = FIXTURES / "large" / "build.v7zstd.dat"
GLIBC = (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")


def test_input_bytes_counts_the_files_of_an_analyze_command(tmp_path: Path):
    a, b = tmp_path / "a.dat", tmp_path / "b.dat"
    a.write_bytes(b"x" * 1000)
    b.write_bytes(b"y" * 500)
    assert heap.input_bytes(["analyze", str(a), "--format", "json", str(b)]) == 1500
    # not a file, a directory, a missing path, an option: nothing
    assert heap.input_bytes(["analyze", str(tmp_path), str(tmp_path / "no"), "--cache"]) == 0
    # other commands: nothing, whatever their arguments
    assert heap.input_bytes(["convert", str(a), str(b)]) == 0
    assert heap.input_bytes([]) == 0


def test_prefault_bytes_is_bounded_and_none_outside_modest_inputs():
    assert heap.prefault_bytes(0) == 0
    assert heap.prefault_bytes(heap.MIN_INPUT - 1) == 0
    assert heap.prefault_bytes(heap.MAX_INPUT + 1) == 0  # huge traces: glibc's defaults
    # in proportion to the inputs, within the bounds
    assert heap.prefault_bytes(heap.MIN_INPUT) == heap.PREFAULT_MIN
    assert heap.prefault_bytes(6 << 20) == heap.PREFAULT_MIN  # (a compressed trace.dat)
    assert heap.prefault_bytes(40 << 20) == 60 << 20
    assert heap.prefault_bytes(heap.MAX_INPUT) == heap.PREFAULT_MAX


def _probe(
    args: list[str], env: dict[str, str] | None = None, events: int = 0, block: int = 40 << 20
) -> dict[str, object]:
    """In a fresh interpreter: warm(args), wait for its thread, tell ``many_events`` that the
    trace holds ``events`` events, allocate ``block`` bytes, then what glibc reports."""
    code = (
        "import ctypes, json, sys, threading\n"
        "from sheaftune import heap\n"
        "size = heap.warm(sys.argv[1:])\n"
        "if heap.thread is not None: heap.thread.join()\n"
        f"heap.many_events({events})\n"
        "class M(ctypes.Structure):\n"
        "    _fields_ = [(n, ctypes.c_size_t) for n in ('arena', 'ordblks', 'smblks', 'hblks',\n"
        "        'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost')]\n"
        "libc = ctypes.CDLL(None); libc.mallinfo2.restype = M\n"
        f"big = libc.malloc({block})  # 40 MiB: no mapping of its own, from the heap now\n"
        "m = libc.mallinfo2()\n"
        "print(json.dumps({'size': size, 'heap': m.arena, 'free': m.fordblks,\n"
        "                  'mapped': m.hblkhd}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


@pytest.mark.skipif(not GLIBC, reason="the heap warm-up is for glibc's malloc only")
def test_warm_prefaults_the_heap_and_keeps_large_blocks_in_it(tmp_path: Path):
    f = tmp_path / "t.dat"
    f.write_bytes(b"\0" * (4 << 20))
    on = _probe(["analyze", str(f)])
    assert on["size"] == heap.PREFAULT_MIN
    # the pre-faulted blocks stayed in the heap, free for the run's arrays; a 40 MiB block comes
    # from it rather than from a mapping of its own (glibc's default threshold is 128 KiB, and
    # its largest 32 MiB)
    assert isinstance(on["heap"], int) and on["heap"] >= heap.PREFAULT_MIN
    off = _probe(["analyze", str(f)], {"SHEAFTUNE_HEAP_WARMUP": "0"})
    assert isinstance(on["mapped"], int) and isinstance(off["mapped"], int)
    assert off["size"] == 0 and off["mapped"] - on["mapped"] >= 40 << 20
    # another command, or inputs beyond the bound: glibc left alone
    assert _probe(["convert", str(f)])["size"] == 0
    # a modest file that held many events: a block the heap's free top cannot hold (the top
    # pad and the pre-fault, 80 MiB) is mapped on its own again
    many = _probe(["analyze", str(f)], events=heap.MAX_EVENTS + 1, block=160 << 20)
    assert isinstance(many["mapped"], int) and many["mapped"] >= 160 << 20
    few = _probe(["analyze", str(f)], events=heap.MAX_EVENTS, block=160 << 20)
    assert isinstance(few["mapped"], int) and few["mapped"] < 1 << 20
    assert not heap.many_events(heap.MAX_EVENTS + 1)  # (this process never warmed its heap)


@pytest.mark.skipif(not GLIBC, reason="the heap warm-up is for glibc's malloc only")
def test_prefault_more_faults_heap_after_warm_until_told_to_stop(tmp_path: Path):
    """``prefault_more`` faults more heap in after ``warm`` (nothing without it); a stop set
    beforehand leaves it at its first look. (Resident memory, from /proc/self/statm.)"""
    if not Path("/proc/self/statm").exists():
        pytest.skip("no /proc/self/statm here")
    f = tmp_path / "t.dat"
    f.write_bytes(b"\0" * (4 << 20))
    code = (
        "import json, os, sys, threading\n"
        "from sheaftune import heap\n"
        "page = os.sysconf('SC_PAGE_SIZE')\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1]) * page\n"
        "stop, go = threading.Event(), threading.Event(); stop.set()\n"
        "out = [rss()]; heap.prefault_more(64 << 20, go); out.append(rss())  # not warmed\n"
        "heap.warm(sys.argv[1:]); heap.thread.join()\n"
        "out.append(rss()); heap.prefault_more(64 << 20, stop); out.append(rss())\n"
        "heap.prefault_more(64 << 20, go); out.append(rss())\n"
        "print(json.dumps(out))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "analyze", str(f)], capture_output=True, text=True, check=True
    )
    r0, cold, warmed, stopped, more = json.loads(out.stdout)
    mib = 1 << 20
    assert cold - r0 < 4 * mib
    assert warmed - cold >= heap.PREFAULT_MIN - 4 * mib
    assert stopped - warmed < 4 * mib
    # (the warm-up's free 16 MiB are reused: at least the rest is faulted in)
    assert more - stopped >= (64 - 16 - 4) * mib


@pytest.mark.skipif(not LARGE.exists(), reason=f"{LARGE} absent (../shared/fixtures)")
def test_an_analysis_is_the_same_with_and_without_the_warm_up():
    def run(flag: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "sheaftune", "analyze", str(LARGE), "--format", "json"],
            capture_output=True,
            text=True,
            env={**os.environ, "SHEAFTUNE_HEAP_WARMUP": flag},
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert run("1") == run("0")


def test_the_command_line_turns_numpys_huge_pages_off():
    """``python -m sheaftune`` sets NUMPY_MADVISE_HUGEPAGE=0 before numpy loads (unless the user
    set it): numpy then advises no huge pages for its arrays."""
    probe = (
        "import os, runpy, sys; sys.argv = ['sheaftune', '--version'];"
        "import sheaftune.cli as c; c.main = lambda: None;"
        "runpy.run_module('sheaftune', run_name='__main__');"
        "import numpy._core.multiarray as m; print(os.environ['NUMPY_MADVISE_HUGEPAGE'],"
        " m._get_madvise_hugepage())"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["0", "False"], out.stderr
    env["NUMPY_MADVISE_HUGEPAGE"] = "1"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.stdout.split()[0] == "1", out.stderr  # the user's own setting wins
