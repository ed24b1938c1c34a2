"""``ReadOptions.finish_later``: a trace.dat's call sites and task names resolved on a thread
while ``pipeline.load`` normalises the table, with the same table, analysis and errors as a
read that resolves them itself."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import numpy as np
import pytest

from sheaftune.analysis import pipeline
from sheaftune.errors import InputError
from sheaftune.normalize import normalize
from sheaftune.readers import ReadOptions, read_trace
from sheaftune.readers import tracedat_fast as tf
from tests.conftest import fixture_path

#: a v7 zstd file (kallsyms decompressed on its own thread) and a v6 one (kallsyms in place)
FILES = ("traces/kmalloc-small.v7zstd.dat", "traces/vma-small.v6.dat")


def _fast_reader() -> None:
    if tf.reader_kernels() is None:
        pytest.skip("no compiled reader kernels: the streaming reader resolves as it reads")


def _same_table(a, b) -> None:
    assert a.columns.keys() == b.columns.keys()
    for name in a.columns:
        assert np.array_equal(a.columns[name], b.columns[name]), name
    assert (a.caches, a.sites, a.comms) == (b.caches, b.sites, b.comms)
    assert a.meta.to_dict() == b.meta.to_dict()


@pytest.mark.parametrize("rel", FILES)
def test_a_table_finished_later_settles_to_the_table_read_at_once(rel):
    _fast_reader()
    path = str(fixture_path(rel))
    now = read_trace(path)
    assert now.pending is None
    later = read_trace(path, options=ReadOptions(finish_later=True))
    assert later.pending is not None  # (in time order: resolved on a thread)
    assert later.sites == []  # not yet
    later.settle()
    assert later.pending is None
    _same_table(later, now)


@pytest.mark.parametrize("rel", FILES)
def test_load_normalises_while_the_reader_finishes(rel):
    """``load`` returns a settled table whose normalisation (made meanwhile) is the one
    ``normalize`` makes of a table read at once, final call sites and comms included."""
    _fast_reader()
    path = str(fixture_path(rel))
    interval = sys.getswitchinterval()
    table = pipeline.load(path)
    assert sys.getswitchinterval() == interval  # (lowered meanwhile, then given back)
    assert table.pending is None and table.normalized is not None
    assert normalize(table) is table.normalized
    want = normalize(read_trace(path))
    got = table.normalized
    _same_table(got.table, want.table)
    for name in ("alloc_of", "reused_by", "live_at_end"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert got.counts == want.counts


def test_an_error_of_the_finishing_thread_is_raised_by_load(monkeypatch):
    """A failure while resolving call sites surfaces from ``load`` (as it would from the
    read), after normalisation; the file is unmapped once the error is let go (its traceback
    holds views of the mapping, as a failed read's always did)."""
    _fast_reader()
    path = str(fixture_path(FILES[1]))

    def broken(*_: object) -> None:
        raise InputError("kallsyms went wrong", path)

    monkeypatch.setattr(tf, "resolve_sites", broken)
    with pytest.raises(InputError, match="kallsyms went wrong") as failure:
        pipeline.load(path)
    del failure
    gc.collect()
    assert not _mapped(path)


def test_the_mapping_closes_once_settled():
    _fast_reader()
    path = str(fixture_path(FILES[1]))
    table = read_trace(path, options=ReadOptions(finish_later=True))
    table.settle()
    assert not _mapped(path)


def test_the_mapping_closes_once_on_the_sites_thread_or_at_settle(monkeypatch):
    # (on the sites' thread when it still runs: unmapping a large file takes a few ms)
    import threading

    from sheaftune.readers import tracedat

    _fast_reader()
    path = str(fixture_path(FILES[1]))
    closed_on: list[str] = []
    close = tracedat._mapped.close

    def noted(self):  # type: ignore[no-untyped-def]
        if self.mm is not None:
            closed_on.append(threading.current_thread().name)
        close(self)

    monkeypatch.setattr(tracedat._mapped, "close", noted)
    table = read_trace(path, options=ReadOptions(finish_later=True))
    table.settle()
    assert len(closed_on) == 1
    assert not _mapped(path)


def test_work_after_the_sites_thread_runs_there_or_here_and_fails_settle():
    import threading

    from sheaftune.events import EventTable
    from sheaftune.readers.tracedat import _OnThread

    def builder():  # type: ignore[no-untyped-def]
        class B:
            class sites:
                values: list[str] = []

            comms = sites

        return B

    cols = {"site_id": np.zeros(0, np.int32), "comm_id": np.zeros(0, np.int32)}
    gate = threading.Event()
    on = _OnThread(gate.wait, EventTable.empty(), builder(), cols)
    ran: list[str] = []
    on.then(lambda: ran.append(threading.current_thread().name))  # (before finish is done)
    gate.set()
    on()
    assert ran == ["sheaftune-sites"]
    on.then(lambda: ran.append(threading.current_thread().name))  # (after: here)
    assert ran[1] == threading.current_thread().name

    def fail() -> None:
        raise OSError("unmap")

    on = _OnThread(lambda: None, EventTable.empty(), builder(), cols)
    on.then(fail)
    with pytest.raises(OSError, match="unmap"):
        on()


def _mapped(path: str) -> bool:
    """Whether this process still maps ``path``."""
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("no /proc/self/maps here")
    real = os.path.realpath(path)
    with open("/proc/self/maps") as f:
        return any(line.rstrip().endswith(real) for line in f)


def test_loading_a_trace_dat_does_not_import_numpy_ma():
    """The finishing thread dedupes the call sites by sorting: ``np.unique`` would import
    numpy.ma on first use (~7 ms on the critical path of every run)."""
    path = str(fixture_path(FILES[0]))
    probe = (
        "import sys; from sheaftune.analysis.pipeline import load; "
        f"load({path!r}); print('numpy.ma' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_corrupt_kallsyms_section_fails_the_same_when_left_to_the_sites_thread(tmp_path):
    """A v7 file's kallsyms section is decompressed by the thread that resolves the call
    sites (``finish_later``) rather than during the read: a corrupt one fails ``settle`` (and
    ``load``) with the very error the read at once raises."""
    import mmap

    from sheaftune import zstd_prefetch

    _fast_reader()
    src = fixture_path(FILES[0])
    data = bytearray(src.read_bytes())
    sections: dict[int, int] = {}
    with open(src, "rb") as fh:
        zstd_prefetch._top_buffer(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ), sections)
    at = sections[19]  # kallsyms: u16 id, u16 flags (1: compressed), s32, u64 size, u32, u32
    assert int.from_bytes(data[at + 2 : at + 4], "little") & 1
    clen = int.from_bytes(data[at + 16 : at + 20], "little")
    mid = at + 24 + clen // 2
    data[mid : mid + 16] = b"\xff" * 16
    bad = tmp_path / "bad-kallsyms.dat"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError) as at_once:
        read_trace(str(bad))
    later = read_trace(str(bad), options=ReadOptions(finish_later=True))
    assert later.pending is not None
    with pytest.raises(InputError) as settled:
        later.settle()
    assert str(settled.value) == str(at_once.value)
    assert "kallsyms" in str(at_once.value)
    with pytest.raises(InputError) as loaded:
        pipeline.load(str(bad))
    assert str(loaded.value) == str(at_once.value)
