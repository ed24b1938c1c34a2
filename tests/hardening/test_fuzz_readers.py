"""Fuzzing every reader with mutants of real inputs and with random bytes.

Each mutant is a real seed (trace.dat v6/v7 in every flavour, ftrace, trace-cmd report, perf
script, bpftrace kmem-tsv and JSON, a native .npz, zstd and gzip streams) with one to four
mutations: bit flips, truncation, a duplicated range, a deleted range, or a 2/4/8-byte field
overwritten with a huge or boundary value (the length fields of the formats are 4 or 8 bytes).
Through the library, ``read_trace`` must return a consistent EventTable or raise
:class:`~sheaftune.errors.InputError`, never anything else, within a time proportional to the
input and without growing the address space past ``MEMORY_HEADROOM``. A sample goes through the
CLI to hold the exit code (0 or 3) and the single line of explanation on standard error.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sheaftune.errors import InputError
from sheaftune.events import COLUMNS, EventTable
from sheaftune.readers import READER_NAMES, ReadOptions, read_trace
from tests.hardening.conftest import FUZZ_EXAMPLES, one_error_line, run_cli, seeds, time_bound

SEED_NAMES = sorted(seeds())
HUGE = (0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 2**63, 2**64 - 1)

# One mutation: (kind, a, b, c) with a, b, c fractions of the current length (or a value).
mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.floats(0, 1, exclude_max=True)),
    st.tuples(
        st.just("dup"),
        st.floats(0, 1, exclude_max=True),
        st.integers(1, 8192),
        st.floats(0, 1),
    ),
    st.tuples(st.just("delete"), st.floats(0, 1, exclude_max=True), st.integers(1, 8192)),
    st.tuples(
        st.just("huge"),
        st.floats(0, 1, exclude_max=True),
        st.sampled_from((2, 4, 8)),
        st.sampled_from(HUGE),
    ),
)


def mutate(data: bytes, ops: list[tuple]) -> bytes:
    buf = bytearray(data)
    for op in ops:
        n = len(buf)
        if n == 0:
            break
        at = min(int(op[1] * n), n - 1)
        if op[0] == "flip":
            buf[at] ^= 1 << op[2]
        elif op[0] == "cut":
            del buf[at:]
        elif op[0] == "dup":
            chunk = bytes(buf[at : at + op[2]])
            to = int(op[3] * n)
            buf[to:to] = chunk
        elif op[0] == "delete":
            del buf[at : at + op[2]]
        else:
            width, value = op[2], op[3] & ((1 << (8 * op[2])) - 1)
            buf[at : at + width] = value.to_bytes(width, "little")
    return bytes(buf)


def check_read(
    path: Path, fmt: str | None = None, salvage: bool = False
) -> EventTable | InputError:
    """Read ``path``: a consistent table or InputError, in time; anything else fails."""
    size = path.stat().st_size
    t0 = time.perf_counter()
    try:
        table = read_trace(str(path), fmt, ReadOptions(salvage=salvage))
    except InputError as e:
        result: EventTable | InputError = e
        msg = str(e)
        assert msg and "\n" not in msg, repr(msg)
    else:
        result = table
        n = len(table)
        assert all(len(table.columns[c]) == n for c in COLUMNS)
        assert n == 0 or bool(np.all(np.diff(table.ts_ns) >= 0)), "table not sorted by time"
    elapsed = time.perf_counter() - t0
    assert elapsed < time_bound(size), f"{elapsed:.1f} s for {size} bytes"
    return result


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    # Pay imports and any one-off set-up of every reader before the clock starts on a mutant.
    with tempfile.TemporaryDirectory() as tmp:
        for data in seeds().values():
            p = Path(tmp) / "seed"
            p.write_bytes(data)
            try:
                read_trace(str(p))
            except InputError:  # sched-only.txt: no kmem events
                pass


@settings(
    max_examples=FUZZ_EXAMPLES or 300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.sampled_from(SEED_NAMES),
    ops=st.lists(mutation, min_size=1, max_size=4),
    salvage=st.booleans(),
)
def test_mutants_of_real_inputs(
    tmp_path: Path, bounded_memory: int, seed: str, ops: list[tuple], salvage: bool
) -> None:
    p = tmp_path / "mutant"
    p.write_bytes(mutate(seeds()[seed], ops))
    check_read(p, salvage=salvage)


@settings(
    max_examples=FUZZ_EXAMPLES or 120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.sampled_from(SEED_NAMES),
    ops=st.lists(mutation, min_size=0, max_size=3),
    fmt=st.sampled_from(READER_NAMES),
    salvage=st.booleans(),
)
def test_every_reader_on_any_input(
    tmp_path: Path, bounded_memory: int, seed: str, ops: list[tuple], fmt: str, salvage: bool
) -> None:
    """``--input-format`` forces a reader onto input of another format (or a mutant)."""
    p = tmp_path / "forced"
    p.write_bytes(mutate(seeds()[seed], ops))
    check_read(p, fmt, salvage)


@settings(
    max_examples=FUZZ_EXAMPLES or 100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    prefix=st.sampled_from(
        (
            b"",
            b"\x17\x08\x44tracing6\x00",
            b"\x17\x08\x44tracing7\x00",
            b"PK\x03\x04",
            b"\x28\xb5\x2f\xfd",
            b"\x1f\x8b",
            b"# tracer: nop\n",
            b'{"type": "printf", "data": "kmem-tsv/1\\n"}\n',
        )
    ),
    body=st.binary(max_size=4096),
    fmt=st.one_of(st.none(), st.sampled_from(READER_NAMES)),
)
def test_random_bytes(
    tmp_path: Path, bounded_memory: int, prefix: bytes, body: bytes, fmt: str | None
) -> None:
    p = tmp_path / "random"
    p.write_bytes(prefix + body)
    check_read(p, fmt)


# --- through the command line: exit codes and the one line -----------------------------------

CLI_CASES = [
    (name, ops)
    for name, ops in (
        ("edge/v7zstd.dat", [("cut", 0.7)]),
        ("edge/le64.dat", [("huge", 0.01, 8, 2**64 - 1)]),
        ("edge/inst6.dat", [("delete", 0.4, 5000)]),
        ("edge/be64.dat", [("flip", 0.5, 3), ("flip", 0.6, 7)]),
        ("traces/vma-small.ftrace.txt", [("dup", 0.3, 3000, 0.1), ("cut", 0.9)]),
        ("traces/vma-small.perfscript.txt", [("huge", 0.2, 8, 0xFFFFFFFF)]),
        ("bpftrace/vma-kmem-tsv.json", [("delete", 0.5, 100)]),
        ("native/example.npz", [("cut", 0.5)]),
        ("compressed/ftrace.txt.zst", [("flip", 0.5, 1)]),
    )
]


@pytest.mark.parametrize("name, ops", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_on_mutants(tmp_path: Path, name: str, ops: list[tuple]) -> None:
    if name not in seeds():
        pytest.skip(f"{name} is absent")
    p = tmp_path / "mutant"
    p.write_bytes(mutate(seeds()[name], ops))
    out = tmp_path / "out.npz"
    r = run_cli("convert", str(p), "-o", str(out), memory=4 << 30)
    assert r.returncode in (0, 3), r.stderr
    if r.returncode == 3:
        line = one_error_line(r.stderr)
        assert str(p) in line
        assert not out.exists()
    else:
        assert "Traceback" not in r.stderr and out.exists()
        r2 = run_cli("analyze", "--no-model", str(out), "--format", "json", memory=4 << 30)
        assert r2.returncode in (0, 4), r2.stderr
        assert "Traceback" not in r2.stderr


# --- hostile native files: lengths and types the .npz layout cannot check by itself --------


def _npz(tmp_path: Path, header: object, arrays: dict[str, np.ndarray]) -> Path:
    import json

    p = tmp_path / "hostile.npz"
    with open(p, "wb") as fh:
        np.savez(fh, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    return p


def test_native_huge_shape_is_refused(tmp_path: Path, bounded_memory: int) -> None:
    import re

    data = seeds()["native/example.npz"]
    m = re.search(rb"'shape': \((\d+),\), \}( +)", data)
    assert m is not None
    new = b"'shape': (999999999999,), }"
    hostile = data[: m.start()] + new.ljust(len(m.group(0))) + data[m.end() :]
    p = tmp_path / "huge.npz"
    p.write_bytes(hostile)
    # refused (by the header check, or by the zip's CRC), never a 7 TiB allocation
    with pytest.raises(InputError):
        read_trace(str(p))


@pytest.mark.parametrize(
    "header",
    [[1, 2], {"magic": "sheaftune-events", "version": 1, "caches": 5, "sites": [], "comms": []}],
    ids=["list", "caches-not-a-list"],
)
def test_native_header_of_the_wrong_shape(tmp_path: Path, header: object) -> None:
    cols = {name: np.zeros(1, dtype=dtype) for name, dtype in COLUMNS.items()}
    p = _npz(tmp_path, header, cols)
    with pytest.raises(InputError):
        read_trace(str(p))
