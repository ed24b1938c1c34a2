"""Text traces as they arrive from real machines: mixed line endings, odd bytes, other events,
cut lines and clocks that step back.

Each case takes real text of every dialect (ftrace, trace-cmd report, perf script, bpftrace
kmem-tsv), damages it the way copying, logging and unstable clocks do, and holds the reader to
reading every intact event, counting what it skipped, and warning about what it cannot vouch
for. tests/readers/test_text_readers.py has the single-dialect cases (CRLF, a non-UTF-8 comm, a
line cut at the end of the file); these cover every dialect and the middle of the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sheaftune.events import EventTable
from sheaftune.readers import ReadOptions, read_trace
from tests.conftest import DATA, FIXTURES
from tests.hardening.conftest import run_cli

HEAD = 32 << 10


def _head(path: Path) -> bytes:
    data = path.read_bytes()[:HEAD]
    return data[: data.rfind(b"\n") + 1]


DIALECTS = {
    "ftrace": FIXTURES / "traces" / "vma-small.ftrace.txt",
    "trace-cmd-report": FIXTURES / "traces" / "vma-small.report.txt",
    "perf-script": FIXTURES / "traces" / "vma-small.perfscript.txt",
    "bpftrace": DATA / "bpftrace" / "vma-kmem-tsv.txt",
}
#: a line of another tracepoint, as each dialect prints it
OTHER = {
    "ftrace": b"          <idle>-0       [001] d..2.   510.372340: sched_switch: prev_comm=swapper"
    b"/1 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=sh next_pid=12 next_prio=120\n",
    "trace-cmd-report": b"          <idle>-0     [001]   510.372340: sched_switch:         "
    b"swapper/1:0 [120] R ==> sh:12 [120]\n",
    "perf-script": b"            sh 12000 [001]   511.860500:  sched:sched_switch: prev_comm=sh "
    b"prev_pid=12000 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0\n",
}


def source(fmt: str) -> bytes:
    path = DIALECTS[fmt]
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return _head(path)


def read(path: Path, fmt: str, salvage: bool = False) -> EventTable:
    return read_trace(str(path), fmt, ReadOptions(salvage=salvage))


def rows(t: EventTable) -> list[tuple]:
    return list(
        zip(
            t.ts_ns.tolist(),
            t.cpu.tolist(),
            t.op.tolist(),
            t.ptr.tolist(),
            [t.caches[c] if c >= 0 else None for c in t.cache_id.tolist()],
            strict=True,
        )
    )


def event_lines(data: bytes) -> list[int]:
    """Indices of the lines that carry events (not headers or comments)."""
    lines = data.split(b"\n")
    return [i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith(b"#")]


@pytest.mark.parametrize("fmt", list(DIALECTS))
def test_mixed_line_endings(tmp_path: Path, fmt: str) -> None:
    data = source(fmt)
    plain = tmp_path / "lf.txt"
    plain.write_bytes(data)
    lines = data.split(b"\n")
    mixed = b"".join(ln + (b"\r\n" if i % 3 == 1 else b"\n") for i, ln in enumerate(lines[:-1]))
    p = tmp_path / "mixed.txt"
    p.write_bytes(mixed)
    assert rows(read(p, fmt)) == rows(read(plain, fmt))


@pytest.mark.parametrize("fmt", ["ftrace", "trace-cmd-report", "perf-script"])
def test_non_utf8_task_names(tmp_path: Path, fmt: str) -> None:
    data = source(fmt)
    plain = tmp_path / "plain.txt"
    plain.write_bytes(data)
    # every task name gets two bytes that are not UTF-8 in place of its first character
    odd = []
    first = set(event_lines(data)[:200])
    for n, ln in enumerate(data.split(b"\n")):
        i = len(ln) - len(ln.lstrip())
        if n in first and 0 <= i < ln.find(b"["):
            ln = ln[:i] + b"\xff\xfe" + ln[i + 1 :]
        odd.append(ln)
    p = tmp_path / "odd.txt"
    p.write_bytes(b"\n".join(odd))
    a, b = read(p, fmt), read(plain, fmt)
    assert rows(a) == rows(b)
    assert any("\ufffd" in c for c in a.comms)


@pytest.mark.parametrize("fmt", list(OTHER))
def test_interleaved_other_events(tmp_path: Path, fmt: str) -> None:
    data = source(fmt)
    plain = tmp_path / "plain.txt"
    plain.write_bytes(data)
    lines = data.split(b"\n")
    keep = set(event_lines(data)[::5])
    out = b"".join(ln + b"\n" + (OTHER[fmt] if i in keep else b"") for i, ln in enumerate(lines))
    p = tmp_path / "others.txt"
    p.write_bytes(out.rstrip(b"\n") + b"\n")
    a, b = read(p, fmt), read(plain, fmt)
    assert rows(a) == rows(b)
    assert sum(a.meta.skipped.values()) == sum(b.meta.skipped.values()) + len(keep)


@pytest.mark.parametrize("fmt", list(DIALECTS))
def test_lines_cut_midway(tmp_path: Path, fmt: str) -> None:
    """Lines cut in the middle of the file (a log rotated, a copy interrupted): each is skipped
    and counted; every other event is read."""
    data = source(fmt)
    plain = tmp_path / "plain.txt"
    plain.write_bytes(data)
    lines = data.split(b"\n")
    cut = set(event_lines(data)[10::37])
    out = [ln[: len(ln) // 2] if i in cut else ln for i, ln in enumerate(lines)]
    p = tmp_path / "cut.txt"
    p.write_bytes(b"\n".join(out))
    a, b = read(p, fmt), read(plain, fmt)
    assert len(b) - len(cut) <= len(a) < len(b)
    assert set(rows(a)) <= set(rows(b))
    assert sum(a.meta.skipped.values()) >= sum(b.meta.skipped.values()) + len(b) - len(a)
    # the command line reads it too, with a warning and exit 0
    r = run_cli("analyze", "--no-model", "--input-format", fmt, str(p))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


def _swap_first_pair_on_cpu0(data: bytes) -> bytes:
    """Swap the first two event lines of CPU 0, so its timestamps step back once."""
    lines = data.split(b"\n")
    a, b = [i for i in event_lines(data) if b"[000]" in lines[i]][:2]
    lines[a], lines[b] = lines[b], lines[a]
    return b"\n".join(lines)


def read_trace_bytes(data: bytes, fmt: str) -> EventTable:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".txt") as fh:
        fh.write(data)
        fh.flush()
        return read_trace(fh.name, fmt)


@pytest.mark.parametrize("fmt", ["ftrace", "trace-cmd-report", "perf-script"])
def test_timestamps_backwards_on_a_cpu_are_counted(tmp_path: Path, fmt: str) -> None:
    data = source(fmt)
    p = tmp_path / "back.txt"
    p.write_bytes(_swap_first_pair_on_cpu0(data))
    t = read(p, fmt)
    assert bool(np.all(np.diff(t.ts_ns) >= 0))  # still sorted by time
    assert t.meta.extra.get("ts_backwards") == {"0": 1}
    assert any("backwards" in w for w in t.meta.warnings)
    plain = read_trace_bytes(data, fmt)
    assert "ts_backwards" not in plain.meta.extra


def test_trace_dat_page_stepping_back_is_counted(tmp_path: Path) -> None:
    """The same rule for trace.dat: a page whose timestamp is earlier than the previous page's
    on that CPU (an unstable clock) is counted and warned about; the table is still sorted."""
    from sheaftune.readers.base import Source
    from sheaftune.readers.tracedat import _mapped, _TraceDat

    src = FIXTURES / "edge" / "le64.dat"
    if not src.exists():
        pytest.skip(f"{src} is absent")
    with _mapped(Source(str(src))) as mapped:
        r = _TraceDat(mapped, str(src), ReadOptions())
        r.read()
        cpu, off, size = next(c for c in r.buffers[0].cpus if c[2] >= 2 * 4096)
    data = bytearray(src.read_bytes())
    first_ts = int.from_bytes(data[off : off + 8], "little")
    data[off + 4096 : off + 4096 + 8] = (first_ts - 10**6).to_bytes(8, "little")
    p = tmp_path / "back.dat"
    p.write_bytes(bytes(data))
    t = read_trace(str(p))
    assert t.meta.extra.get("ts_backwards") == {str(cpu): 1}
    assert any("backwards" in w for w in t.meta.warnings)
    assert bool(np.all(np.diff(t.ts_ns) >= 0))
    assert "ts_backwards" not in read_trace(str(src)).meta.extra
