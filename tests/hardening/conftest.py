"""Shared pieces of the hardening tests: seed inputs, mutations, bounds on memory and time.

The seeds are real inputs (the shared trace.dat fixtures, the text fixtures of every dialect, a
native .npz and compressed copies), small enough that a few hundred mutants run in seconds.
``SHEAFTUNE_FUZZ_EXAMPLES`` raises the number of hypothesis examples for a longer run
(``SHEAFTUNE_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/hardening``); the default keeps the
suite within the CI budget.
"""

from __future__ import annotations

import gzip
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DATA, FIXTURES, ROOT

#: hypothesis examples per fuzz test; raise it for a long run
FUZZ_EXAMPLES = int(os.environ.get("SHEAFTUNE_FUZZ_EXAMPLES", "0")) or None

#: address space a reader may add to the test process while it reads one mutant. The largest
#: seed is 64 KiB: anything near this bound means a length field was trusted.
MEMORY_HEADROOM = 1 << 30

#: seconds per input: a fixed start-up allowance plus a rate no sane reader comes near
TIME_BASE_S = 3.0
TIME_PER_MB_S = 20.0

TEXT_HEAD = 48 << 10  # bytes kept of the big text fixtures (whole lines)


def time_bound(nbytes: int) -> float:
    """Seconds reading ``nbytes`` of input may take, proportional to the input."""
    return TIME_BASE_S + TIME_PER_MB_S * nbytes / 1e6


def _head_lines(path: Path, limit: int) -> bytes:
    data = path.read_bytes()[:limit]
    return data[: data.rfind(b"\n") + 1]


def _seed_files() -> dict[str, bytes]:
    seeds: dict[str, bytes] = {}
    edge = FIXTURES / "edge"
    traces = FIXTURES / "traces"
    if edge.is_dir():
        for p in sorted(edge.glob("*.dat")):
            seeds[f"edge/{p.name}"] = p.read_bytes()
        for name in ("example.report.txt", "inst6.report.txt", "clk_counter.report.txt"):
            seeds[f"edge/{name}"] = (edge / name).read_bytes()
    if traces.is_dir():
        for name in (
            "vma-small.ftrace.txt",
            "vma-small.report.txt",
            "vma-small.perfscript.txt",
            "kmalloc-small.ftrace.txt",
        ):
            seeds[f"traces/{name}"] = _head_lines(traces / name, TEXT_HEAD)
    for p in sorted((DATA / "text").glob("*")):
        seeds[f"text/{p.name}"] = p.read_bytes()
    for name in ("vma-kmem-tsv.txt", "vma-kmem-tsv.json"):
        seeds[f"bpftrace/{name}"] = _head_lines(DATA / "bpftrace" / name, TEXT_HEAD)
    if "traces/vma-small.ftrace.txt" in seeds:
        import zstandard

        text = seeds["traces/vma-small.ftrace.txt"][:16384]
        seeds["compressed/ftrace.txt.zst"] = zstandard.ZstdCompressor().compress(text)
        seeds["compressed/ftrace.txt.gz"] = gzip.compress(text, mtime=0)
    return seeds


_SEEDS: dict[str, bytes] | None = None


def seeds() -> dict[str, bytes]:
    """Name -> bytes of every seed input (built once per session)."""
    global _SEEDS
    if _SEEDS is None:
        _SEEDS = _seed_files()
        native = _native_seed()
        if native is not None:
            _SEEDS["native/example.npz"] = native
            _SEEDS["compressed/example.npz.gz"] = gzip.compress(native, mtime=0)
    return _SEEDS


def _native_seed() -> bytes | None:
    src = FIXTURES / "edge" / "example.dat"
    if not src.exists():
        return None
    import tempfile

    from sheaftune.events import save_native
    from sheaftune.readers import read_trace

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "example.npz"
        save_native(read_trace(str(src)), out)
        return out.read_bytes()


def _vm_size() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


@pytest.fixture
def bounded_memory() -> Iterator[int]:
    """Lower this process's address-space limit to its current size plus MEMORY_HEADROOM.

    A reader that trusts a hostile length field and allocates for it then gets MemoryError
    (which the fuzz tests count as a failure) instead of swapping the machine. The soft limit is
    restored afterwards (an unprivileged process may raise it back up to the hard limit).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _vm_size() + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def run_cli(
    *args: str, timeout: float = 120, memory: int | None = None, **kw: object
) -> subprocess.CompletedProcess[str]:
    """``python -m sheaftune ARGS`` in a subprocess, optionally under an address-space limit."""
    env = dict(os.environ, COLUMNS="120", NO_COLOR="1", TERM="dumb")

    def limit() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    if "stdout" in kw:
        kw["stderr"] = subprocess.PIPE
    else:
        kw["capture_output"] = True
    return subprocess.run(
        [sys.executable, "-m", "sheaftune", *args],
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
        preexec_fn=limit if memory is not None else None,
        **kw,  # type: ignore[arg-type]
    )


def one_error_line(stderr: str) -> str:
    """The single ``sheaftune: error:`` line of a failed run; fails on tracebacks or more."""
    assert "Traceback" not in stderr, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("sheaftune: error:")]
    assert len(errors) == 1, stderr
    assert stderr.rstrip("\n").splitlines()[-1] == errors[0], stderr
    return errors[0]
