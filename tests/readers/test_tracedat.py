"""The native trace.dat reader against its oracles.

Real captures (``fixtures/traces``, ``fixtures/large``) must give exactly their golden counts;
the synthetic edge files (``fixtures/edge``) exactly the events their ``.report.txt``
(``trace-cmd report -t``, trace-cmd 3.4) shows. The oracle text is parsed here with a regex of
its own, independently of any reader.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from sheaftune import gfp
from sheaftune.events import NO_CACHE, EventTable, Op
from sheaftune.readers import ReadOptions, read_trace
from sheaftune.readers.tracedat import TraceDatReader
from tests.conftest import FIXTURES, fixture_path, golden

EDGE = sorted(p.stem for p in (FIXTURES / "edge").glob("*.dat")) or ["le64"]
TRACES = [
    "traces/vma-small.v6.dat",
    "traces/vma-small.v7.dat",
    "traces/vma-small.v7zstd.dat",
    "traces/kmalloc-small.v7zstd.dat",
    "large/build.v7zstd.dat",
]

# golden counts computed from trace-cmd report text; kmalloc-small's kfree_null is wrong there
# (trace-formats.md pitfall 25): the capture has 2,994 kfree(NULL) events.
GOLDEN_FIXES = {"kmalloc-small": {"kfree_null": 2994}}


def read(rel: str, **kw: object) -> EventTable:
    return read_trace(str(fixture_path(rel)), options=ReadOptions(**kw))  # type: ignore[arg-type]


# --- golden counts of the real captures ----------------------------------------------------


def counts(t: EventTable) -> dict:
    op = t.op
    by_event = {o.tracepoint: int((op == o).sum()) for o in Op if (op == o).sum()}
    by_cpu: dict[str, dict[str, int]] = {}
    for cpu in np.unique(t.cpu):
        m = t.cpu == cpu
        by_cpu[f"{int(cpu):03d}"] = {
            o.tracepoint: int((op[m] == o).sum()) for o in Op if (op[m] == o).sum()
        }
    by_cache: dict[str, dict[str, int]] = {}
    for cid in np.unique(t.cache_id):
        if cid == NO_CACHE:
            continue
        m = t.cache_id == cid
        by_cache[t.caches[cid]] = {
            o.tracepoint: int((op[m] == o).sum()) for o in Op if (op[m] == o).sum()
        }
    km = op == Op.KMALLOC
    sizes, n = np.unique(t.bytes_alloc[km], return_counts=True)
    return {
        "events": len(t),
        "by_event": by_event,
        "by_cpu": by_cpu,
        "by_cache": by_cache,
        "kfree_null": int(((op == Op.KFREE) & (t.ptr == 0)).sum()),
        "kmalloc_by_bytes_alloc": {str(int(s)): int(c) for s, c in zip(sizes, n, strict=True)},
    }


@pytest.mark.parametrize("rel", TRACES)
def test_golden_counts(rel: str) -> None:
    t = read(rel)
    stem = Path(rel).name.split(".")[0]
    want = golden(f"{Path(rel).parent}/{stem}.golden.json")
    want.update(GOLDEN_FIXES.get(stem, {}))
    got = counts(t)
    for key in ("events", "by_event", "by_cpu", "by_cache", "kfree_null", "kmalloc_by_bytes_alloc"):
        assert got[key] == want[key], key
    # golden times are trace-cmd's microsecond-rounded seconds
    assert abs(t.ts_ns[0] / 1e9 - want["first_ts"]) <= 0.5e-6 + 1e-9
    assert abs(t.ts_ns[-1] / 1e9 - want["last_ts"]) <= 0.5e-6 + 1e-9
    assert bool(np.all(np.diff(t.ts_ns) >= 0))
    m = t.meta
    assert m.format == "trace.dat" and m.complete and m.cpus == 2
    assert m.clock == "local" and m.ts_is_ns
    assert m.kernel_release == "6.18.44-fc-v782"
    assert m.file_version == (6 if ".v6." in rel else 7)
    assert m.buffers == [""] and m.buffer is None
    # cache events carry their cache, kmalloc/kfree none (the normaliser names kmalloc caches)
    is_cache_op = (t.op == Op.KMEM_CACHE_ALLOC) | (t.op == Op.KMEM_CACHE_FREE)
    assert bool(np.all(t.cache_id[~is_cache_op] == NO_CACHE))
    assert bool(np.all(t.cache_id[is_cache_op] >= 0))
    # every call site resolves through the file's kallsyms
    assert all(re.fullmatch(r"[\w.$]+\+0x[0-9a-f]+", s) for s in t.sites), t.sites[:5]


def test_versions_give_identical_tables() -> None:
    tables = [read(f"traces/vma-small.{v}.dat") for v in ("v6", "v7", "v7zstd")]
    a = tables[0]
    for b in tables[1:]:
        for k, col in a.columns.items():
            assert np.array_equal(col, b.columns[k]), k
        assert (a.caches, a.sites, a.comms) == (b.caches, b.sites, b.comms)


def test_report_text_of_real_capture_matches() -> None:
    """vma-small.report.txt (trace-cmd 3.1.6, µs times): same order, CPUs, pointers, sites."""
    t = read("traces/vma-small.v7zstd.dat")
    lines = fixture_path("traces/vma-small.report.txt").read_text().splitlines()
    rows = [parse_line(x) for x in lines]
    events = [r for r in rows if r and r["kind"] == "event"]
    assert len(events) == len(t)
    for i in range(0, len(t), 97):  # a sample: the full walk is the edge tests' job
        e = events[i]
        assert int(t.cpu[i]) == e["cpu"]
        assert abs(int(t.ts_ns[i]) - e["ts_ns"]) <= 500
        assert Op(int(t.op[i])).tracepoint == e["event"]
        assert int(t.ptr[i]) == e["fields"]["ptr"]
        assert t.sites[t.site_id[i]] == e["fields"]["call_site"]
        assert t.caches[t.cache_id[i]] == e["fields"]["name"]
        assert t.comms[t.comm_id[i]] == e["comm"] and int(t.pid[i]) == e["pid"]


# --- the edge files against trace-cmd report -t --------------------------------------------

LINE = re.compile(
    r"^(?:(?P<inst>\w+):)?\s*(?P<comm>.*?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+"
    r"(?:[.a-zA-Z0-9]{5}\s+)?(?P<ts>\d+(?:\.\d+)?):\s+(?P<event>\w+):\s+(?P<rest>.*)$"
)
DROP = re.compile(r"^(?:(?P<inst>\w+):)?\s*CPU:(?P<cpu>\d+) \[(?:(?P<n>\d+) )?EVENTS DROPPED\]$")


def parse_line(line: str) -> dict | None:
    m = DROP.match(line)
    if m:
        n = m.group("n")
        return {
            "kind": "drop",
            "inst": m.group("inst") or "",
            "cpu": int(m.group("cpu")),
            "count": int(n) if n else -1,
        }
    m = LINE.match(line)
    if not m:
        return None
    ts = m.group("ts")
    if "." in ts:
        sec, frac = ts.split(".")
        ts_ns = int(sec) * 10**9 + int(frac.ljust(9, "0"))
    else:
        ts_ns = int(ts)  # clocks trace-cmd prints raw
    rest = re.sub(r"^\([^)]*\)\s+", "", m.group("rest"))  # kmem plugin's "(sym+0xoff) "
    fields: dict[str, object] = {}
    for part in rest.split(" "):
        k, _, v = part.partition("=")
        fields[k] = v
    if "ptr" in fields:
        fields["ptr"] = 0 if fields["ptr"] == "(nil)" else int(str(fields["ptr"]), 16)
    return {
        "kind": "event",
        "inst": m.group("inst") or "",
        "comm": m.group("comm").strip(),
        "pid": int(m.group("pid")),
        "cpu": int(m.group("cpu")),
        "ts_ns": ts_ns,
        "event": m.group("event"),
        "fields": fields,
    }


def oracle(stem: str, inst: str = "") -> list[dict]:
    text = fixture_path(f"edge/{stem}.report.txt").read_text()
    rows = [parse_line(x) for x in text.splitlines()]
    return [r for r in rows if r is not None and r["inst"] == inst]


def check_against_oracle(t: EventTable, rows: list[dict]) -> None:
    events = [r for r in rows if r["kind"] == "event"]
    assert len(t) == len(events)
    dropped = t.meta.extra.get("dropped", [])
    want_drops = []
    for j, r in enumerate(rows):
        if r["kind"] == "drop":
            nxt = next(e for e in rows[j + 1 :] if e["kind"] == "event" and e["cpu"] == r["cpu"])
            want_drops.append({"cpu": r["cpu"], "ts": nxt["ts_ns"], "count": r["count"]})
    assert dropped == want_drops
    lost: dict[int, int] = {}
    marks: dict[int, int] = {}
    for d in want_drops:
        marks[d["cpu"]] = marks.get(d["cpu"], 0) + 1
        lost[d["cpu"]] = lost.get(d["cpu"], 0) + max(d["count"], 0)
    assert t.meta.lost_markers == marks and t.meta.lost_events == lost
    for i, e in enumerate(events):
        f = e["fields"]
        where = f"event {i}: {e}"
        assert Op(int(t.op[i])).tracepoint == e["event"], where
        assert int(t.cpu[i]) == e["cpu"], where
        assert int(t.ts_ns[i]) == e["ts_ns"], where
        assert int(t.pid[i]) == e["pid"], where
        assert t.comms[t.comm_id[i]] == e["comm"], where
        assert int(t.ptr[i]) == f["ptr"], where
        assert t.sites[t.site_id[i]] == f["call_site"], where
        if "name" in f:
            assert t.caches[t.cache_id[i]] == f["name"], where
        else:
            assert t.cache_id[i] == NO_CACHE, where
        if "bytes_req" in f:
            assert int(t.bytes_req[i]) == int(str(f["bytes_req"])), where
            assert int(t.bytes_alloc[i]) == int(str(f["bytes_alloc"])), where
        if "gfp_flags" in f:
            assert gfp.format_flags(int(t.gfp[i])) == f["gfp_flags"], where
            assert int(t.gfp[i]) == gfp.parse(str(f["gfp_flags"])), where
        if "node" in f:
            assert int(t.node[i]) == int(str(f["node"])), where
        else:
            assert int(t.node[i]) == -1, where


@pytest.mark.parametrize("stem", EDGE)
def test_edge_file_matches_trace_cmd_report(stem: str) -> None:
    t = read(f"edge/{stem}.dat")
    check_against_oracle(t, oracle(stem))
    m = t.meta
    assert m.complete and not m.warnings and not m.skipped
    assert m.cpus == len(set(int(c) for c in t.cpu)) or stem == "example"
    clock = stem.removeprefix("clk_") if stem.startswith("clk_") else "local"
    assert m.clock == clock
    assert m.ts_is_ns == (clock not in ("counter", "x86-tsc", "uptime"))
    assert m.file_version == (7 if stem.startswith("v7") or stem == "inst7" else 6)


@pytest.mark.parametrize("stem", ["inst6", "inst7"])
def test_instance_buffer(stem: str) -> None:
    top = read(f"edge/{stem}.dat")
    assert top.meta.buffers == ["", "slab"] and top.meta.buffer is None
    t = read(f"edge/{stem}.dat", buffer="slab")
    assert t.meta.buffer == "slab"
    check_against_oracle(t, oracle(stem, "slab"))


def test_unknown_buffer_is_a_usage_error() -> None:
    from sheaftune.errors import UsageError

    with pytest.raises(UsageError, match="no buffer 'nope'.*slab"):
        read("edge/inst6.dat", buffer="nope")


def test_edge_file_details() -> None:
    """What the edge story was built to contain, seen through the reader's counters."""
    t = read("edge/le64.dat")
    ex = t.meta.extra
    assert ex["page_size"] == 4096 and ex["kernel_long_size"] == 8 and ex["endian"] == "little"
    assert read("edge/le32.dat").meta.extra["kernel_long_size"] == 4
    assert read("edge/be64.dat").meta.extra["endian"] == "big"
    # module code beyond the last kallsyms symbol and code below the first stay raw addresses
    assert "0xffffffffc0a01010" in t.sites and "0xffffffff80ffff00" in t.sites


def test_sniff() -> None:
    r = TraceDatReader()
    assert r.sniff(fixture_path("edge/le64.dat").read_bytes()[:64])
    assert not r.sniff(b"# tracer: nop\n")
    assert r.sniff(b"\x00\x00\x00tracing6\x00")  # damaged magic: read() says where


@pytest.mark.parametrize("rel", ["traces/vma-small.v7zstd.dat", "edge/inst7.dat", "edge/be64.dat"])
def test_page_engines_give_identical_tables(rel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The numba walk (chosen for very large traces) and the numpy walk agree on real files."""
    tables = []
    for engine in ("numpy", "numba"):
        monkeypatch.setenv("SHEAFTUNE_PAGE_ENGINE", engine)
        t = read(rel)
        assert t.meta.extra["page_engine"] == engine
        tables.append(t)
    a, b = tables
    for k, col in a.columns.items():
        assert np.array_equal(col, b.columns[k]), k
    assert (a.caches, a.sites, a.comms) == (b.caches, b.sites, b.comms)
    assert a.meta.extra["dropped"] == b.meta.extra["dropped"] if "dropped" in a.meta.extra else True


def _cache_names(t: EventTable) -> np.ndarray:
    names = np.array([*t.caches, "<none>"], dtype=object)
    return names[np.where(t.cache_id >= 0, t.cache_id, len(t.caches))]


@pytest.mark.parametrize(
    "rel", ["large/build.v7zstd.dat", "traces/vma-small.v6.dat", "traces/kmalloc-small.v7zstd.dat"]
)
@pytest.mark.parametrize("salvage", [False, True])
def test_compiled_path_equals_streaming_reader(
    rel: str, salvage: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiled whole-stream path (per-job decompression and walks on threads, k-way merge)
    gives the streaming numpy reader's table. Cache ids are numbered by first appearance (CPU
    order) there, by hash order per window here: compared through their names."""
    tables = []
    for engine in ("numpy", "numba"):
        monkeypatch.setenv("SHEAFTUNE_PAGE_ENGINE", engine)
        tables.append(read(rel, salvage=salvage))
    a, b = tables
    assert b.meta.extra["page_engine"] == "numba"
    for k, col in a.columns.items():
        if k != "cache_id":
            assert np.array_equal(col, b.columns[k]), k
    assert np.array_equal(_cache_names(a), _cache_names(b))
    assert sorted(a.caches) == sorted(b.caches)
    assert (a.sites, a.comms) == (b.sites, b.comms)
    da, db = a.meta.to_dict(), b.meta.to_dict()
    da["extra"].pop("page_engine")
    db["extra"].pop("page_engine")
    assert da == db


_DUMP = """
import json, sys
import numpy as np
from sheaftune.readers import read_trace
t = read_trace(sys.argv[1])
np.savez(sys.argv[2], **t.columns)
json.dump({"caches": t.caches, "sites": t.sites, "comms": t.comms, "numba": "numba" in sys.modules,
           "engine": t.meta.extra["page_engine"]}, sys.stdout)
"""


@pytest.mark.parametrize("rel", ["traces/kmalloc-small.v7zstd.dat", "edge/be64.dat"])
def test_aot_and_jit_kernels_read_the_same(rel: str, tmp_path: Path) -> None:
    """The ahead-of-time build of the reader kernels and numba's JIT of the same module give
    identical tables; with a build at hand, reading does not import numba."""
    import json
    import os
    import subprocess
    import sys

    from sheaftune import compiled

    path = fixture_path(rel)
    out = {}
    for aot in ("1", "0"):
        env = {**os.environ, "SHEAFTUNE_AOT": aot, "SHEAFTUNE_PAGE_ENGINE": "numba"}
        npz = tmp_path / f"aot{aot}.npz"
        r = subprocess.run(
            [sys.executable, "-c", _DUMP, str(path), str(npz)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        info = json.loads(r.stdout)
        assert info["engine"] == "numba"
        out[aot] = (np.load(npz), info)
    (a, ia), (b, ib) = out["1"], out["0"]
    assert set(a.files) == set(b.files)
    for k in a.files:
        assert np.array_equal(a[k], b[k]), k
    assert (ia["caches"], ia["sites"], ia["comms"]) == (ib["caches"], ib["sites"], ib["comms"])
    assert ib["numba"]  # the JIT run compiled with numba
    if compiled.build_status("sheaftune.readers._jit")["built"]:
        assert not ia["numba"]


@pytest.mark.parametrize("rel", ["traces/kmalloc-small.v7zstd.dat", "traces/vma-small.v6.dat"])
def test_compiled_path_grows_its_columns(rel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows denser than the first guess: the shared columns grow (rows kept) to the same table."""
    import sheaftune.readers.tracedat_fast as fast

    monkeypatch.setenv("SHEAFTUNE_PAGE_ENGINE", "numba")
    a = read(rel)
    monkeypatch.setattr(fast, "ROW_BYTES_GUESS", 1 << 40)  # room for 1024 rows at first
    b = read(rel)
    assert len(a) > 4096
    for k, col in a.columns.items():
        assert np.array_equal(col, b.columns[k]), k
    assert (a.caches, a.sites, a.comms) == (b.caches, b.sites, b.comms)


def test_compiled_path_grows_its_columns_under_concurrent_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many small jobs on several workers, columns far too short at first: the columns grow
    while other workers walk and copy, every row is kept, and the table is the same."""
    import sheaftune.readers.tracedat_fast as fast

    monkeypatch.setenv("SHEAFTUNE_PAGE_ENGINE", "numba")
    rel = "traces/vma-small.v6.dat"
    a = read(rel)
    monkeypatch.setattr(fast, "ROW_BYTES_GUESS", 1 << 40)
    monkeypatch.setattr(fast, "JOB_BYTES", 1 << 12)  # a job per page
    monkeypatch.setattr(fast.os, "cpu_count", lambda: 4)  # (four workers even on two cores)
    grows = []
    alloc = fast._Reader._alloc
    monkeypatch.setattr(fast._Reader, "_alloc", lambda self, n: grows.append(n) or alloc(self, n))
    b = read(rel)
    assert len(grows) > 3  # (the first allocation, then several grows)
    for k, col in a.columns.items():
        assert np.array_equal(col, b.columns[k]), k
    assert (a.caches, a.sites, a.comms) == (b.caches, b.sites, b.comms)


def test_fast_reader_columns_each_alone_and_worker_buffers_carved_side_by_side():
    import sheaftune.readers.tracedat_fast as fast

    spec = (("a", np.int64), ("b", np.uint8), ("c", np.uint16))
    cols = fast.columns(10, spec)
    assert [(len(c), c.dtype) for c in cols.values()] == [(10, np.int64), (10, np.uint8),
                                                          (10, np.uint16)]  # fmt: skip
    assert all(c.base is None for c in cols.values())  # (each its own allocation)
    # a worker's buffers: carved from one block at the offsets _spans gives
    offsets, total = fast._spans(10, spec)
    assert offsets == [0, 128, 192] and total == 212
    cols = fast._carve(np.empty(total, dtype=np.uint8), 10, spec, offsets)
    at = cols["a"].ctypes.data
    assert [c.ctypes.data - at for c in cols.values()] == offsets
    cols["a"][:] = -1
    cols["b"][:] = 7
    assert cols["a"].tolist() == [-1] * 10 and cols["c"].base is cols["a"].base
