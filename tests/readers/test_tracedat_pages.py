"""The ring-buffer page decoder on its own (as live capture uses it on ``trace_pipe_raw``).

Pages are built here byte by byte from the layout rules (trace-formats.md section 2), so every
record kind is covered in both byte orders and both kernel long sizes without any fixture.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from sheaftune.errors import InputError
from sheaftune.events import Op
from sheaftune.readers.eventformat import (
    parse_format,
    parse_header_page,
)
from sheaftune.readers.kallsyms import Kallsyms
from sheaftune.readers.ringbuffer import decode_pages, merge_cpus


@pytest.fixture(params=["numpy", "numba"])
def engine(request: pytest.FixtureRequest) -> str:
    """Both page-walk engines: the vectorised default and its sequential compiled twin."""
    return str(request.param)


COMMON = """\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
"""


def fmt(name: str, ident: int, fields: str) -> str:
    return f'name: {name}\nID: {ident}\nformat:\n{COMMON}\n{fields}\nprint fmt: ""\n'


def formats_618(long: int = 8) -> list:
    L = long
    kmalloc = fmt(
        "kmalloc",
        658,
        f"\tfield:unsigned long call_site;\toffset:8;\tsize:{L};\tsigned:0;\n"
        f"\tfield:const void * ptr;\toffset:{8 + L};\tsize:{L};\tsigned:0;\n"
        f"\tfield:size_t bytes_req;\toffset:{8 + 2 * L};\tsize:{L};\tsigned:0;\n"
        f"\tfield:size_t bytes_alloc;\toffset:{8 + 3 * L};\tsize:{L};\tsigned:0;\n"
        f"\tfield:unsigned long gfp_flags;\toffset:{8 + 4 * L};\tsize:{L};\tsigned:0;\n"
        f"\tfield:int node;\toffset:{8 + 5 * L};\tsize:4;\tsigned:1;\n",
    )
    kfree = fmt(
        "kfree",
        657,
        f"\tfield:unsigned long call_site;\toffset:8;\tsize:{L};\tsigned:0;\n"
        f"\tfield:const void * ptr;\toffset:{8 + L};\tsize:{L};\tsigned:0;\n",
    )
    # kmem_cache_free with a __rel_loc name (5.19+ style) to cover that encoding
    kcf = fmt(
        "kmem_cache_free",
        656,
        f"\tfield:unsigned long call_site;\toffset:8;\tsize:{L};\tsigned:0;\n"
        f"\tfield:const void * ptr;\toffset:{8 + L};\tsize:{L};\tsigned:0;\n"
        f"\tfield:__rel_loc char[] name;\toffset:{8 + 2 * L};\tsize:4;\tsigned:0;\n",
    )
    return [parse_format(t, "kmem") for t in (kmalloc, kfree, kcf)]


# the worked example of trace-formats.md 2.7, verbatim
EXAMPLE = bytes.fromhex(
    "00f2052a01000000 5800000000000000 0e000000 92020000 d2040000 e5467181ffffffff"
    " 0056340281 88ffff c800000000000000 0001000000000000 c00c000000000000 ffffffff 00000000"
    " 86bb0000 91020000 d2040000 30537181ffffffff 0056340281 88ffff".replace(" ", "")
).ljust(4096, b"\0")


def test_worked_example(engine: str) -> None:
    d = decode_pages(EXAMPLE, 4096, 8, "little", formats_618(), engine=engine)
    c = d.columns
    assert len(d) == 2 and d.records == 2 and d.lost_markers == 0
    assert c["ts"].tolist() == [5_000_000_000, 5_000_001_500]
    assert c["op"].tolist() == [Op.KMALLOC, Op.KFREE]
    assert c["pid"].tolist() == [1234, 1234]
    assert c["ptr"].tolist() == [0xFFFF888102345600] * 2
    assert c["call_site"].tolist() == [0xFFFFFFFF817146E5, 0xFFFFFFFF81715330]
    assert c["bytes_req"].tolist() == [200, 0] and c["bytes_alloc"].tolist() == [256, 0]
    assert c["gfp"].tolist() == [0xCC0, 0] and c["node"].tolist() == [-1, -1]
    # the last symbol matches only exactly (libtraceevent), so add one past it
    ks = Kallsyms.parse(
        "ffffffff817146b0 T seq_open\nffffffff81715310 T single_release\n"
        "ffffffff81800000 T _etext\n"
    )
    assert ks.resolve(c["call_site"]) == ["seq_open+0x35", "single_release+0x20"]


class Page:
    """Builds one sub-buffer: records are appended, ``bytes()`` adds header and padding."""

    def __init__(self, ts: int, big: bool = False, long: int = 8, size: int = 4096):
        self.e = ">" if big else "<"
        self.big, self.long, self.size, self.ts = big, long, size, ts
        self.body = b""
        self.flags = 0
        self.missed: int | None = None

    def hdr(self, type_len: int, delta: int) -> bytes:
        w = (type_len << 27) | delta if self.big else (delta << 5) | type_len
        return struct.pack(self.e + "I", w)

    def u32(self, v: int) -> bytes:
        return struct.pack(self.e + "I", v)

    def data(self, delta: int, payload: bytes, long_form: bool = False) -> Page:
        payload = payload.ljust((len(payload) + 3) // 4 * 4, b"\0")
        if long_form or len(payload) > 112:
            self.body += self.hdr(0, delta) + self.u32(len(payload) + 4) + payload
        else:
            self.body += self.hdr(len(payload) // 4, delta) + payload
        return self

    def extend(self, delta: int) -> Page:
        self.body += self.hdr(30, delta & ((1 << 27) - 1)) + self.u32(delta >> 27)
        return self

    def absolute(self, ts: int) -> Page:
        self.body += self.hdr(31, ts & ((1 << 27) - 1)) + self.u32((ts >> 27) & 0xFFFFFFFF)
        return self

    def discarded(self, delta: int, length: int) -> Page:
        self.body += self.hdr(29, delta) + self.u32(length) + b"\xee" * (length - 4)
        return self

    def lost(self, n: int | None) -> Page:
        self.flags = 1 << 31 | ((1 << 30) if n is not None else 0)
        self.missed = n
        return self

    def bytes(self) -> bytes:
        commit = len(self.body) | self.flags
        q = "Q" if self.long == 8 else "I"
        out = struct.pack(self.e + "Q", self.ts) + struct.pack(self.e + q, commit) + self.body
        if self.missed is not None:
            out += struct.pack(self.e + q, self.missed)
        return out.ljust(self.size, b"\0")


def kmalloc(e: str, long: int, pid: int, site: int, ptr: int, req: int, alloc: int) -> bytes:
    q = "Q" if long == 8 else "I"
    return struct.pack(f"{e}HBBi{q}{q}{q}{q}{q}i", 658, 0, 0, pid, site, ptr, req, alloc, 0xCC0, 0)


def kcfree(e: str, long: int, ptr: int, name: bytes) -> bytes:
    q = "Q" if long == 8 else "I"
    head = struct.calcsize(f"{e}HBBi{q}{q}I")
    # __rel_loc: offset relative to the end of the 4-byte field
    rel = head - (8 + 2 * long + 4)
    loc = rel | ((len(name) + 1) << 16)
    return struct.pack(f"{e}HBBi{q}{q}I", 656, 0, 0, 7, 0x1000, ptr, loc) + name + b"\0"


@pytest.mark.parametrize(("big", "long"), [(False, 8), (True, 8), (False, 4), (True, 4)])
def test_every_record_kind(big: bool, long: int, engine: str) -> None:
    e = ">" if big else "<"
    T0 = 1 << 40
    p1 = (
        Page(T0, big, long)
        .data(0, kmalloc(e, long, 1, 0x10, 0xA0, 8, 8))
        .extend(200_000_000)  # a 200 ms gap: needs a time extend
        .data(5, kmalloc(e, long, 2, 0x20, 0xB0, 100, 128), long_form=True)  # type_len 0
        .discarded(7, 24)  # its delta still counts
        .data(3, kcfree(e, long, 0xB0, b"maple_node"))
        .data(1, struct.pack(f"{e}HBBi", 999, 0, 0, 3))  # an event of an unknown ID
        .data(1, struct.pack(f"{e}HBBi", 500, 0, 0, 3))  # a known non-kmem event
    )
    # top 5 bits of the running time survive an absolute stamp (59-bit value)
    top = 3 << 59
    p2 = (
        Page(top + 10, big, long)
        .lost(42)
        .absolute(2_000_000_000)
        .data(4, kcfree(e, long, 0xC0, b"vm_area_struct"))
    )
    p3 = Page(top + 3_000_000_000, big, long).lost(None).data(0, kmalloc(e, long, 3, 1, 2, 3, 4))
    buf = p1.bytes() + p2.bytes() + p3.bytes()
    d = decode_pages(
        buf,
        4096,
        long,
        "big" if big else "little",
        formats_618(long),
        other_ids=[500],
        engine=engine,
    )
    c = d.columns
    assert c["ts"].tolist() == [
        T0,
        T0 + 200_000_005,
        T0 + 200_000_015,
        top + 2_000_000_004,
        top + 3_000_000_000,
    ]
    assert c["op"].tolist() == [Op.KMALLOC, Op.KMALLOC, Op.KMEM_CACHE_FREE] * 1 + [
        Op.KMEM_CACHE_FREE,
        Op.KMALLOC,
    ]
    assert c["ptr"].tolist() == [0xA0, 0xB0, 0xB0, 0xC0, 2]
    assert c["bytes_req"].tolist()[:2] == [8, 100] and c["bytes_alloc"].tolist()[:2] == [8, 128]
    assert c["pid"].tolist()[:2] == [1, 2]
    assert [d.names.get(h) for h in c["name_key"].tolist()] == [
        None,
        None,
        "maple_node",
        "vm_area_struct",
        None,
    ]
    assert d.unknown_ids == 1 and d.discarded == 1 and d.pages == 3
    assert d.marker_count.tolist() == [42, -1] and d.marker_row.tolist() == [3, 4]
    assert d.marker_ts.tolist() == [top + 2_000_000_004, top + 3_000_000_000]
    assert d.lost_events == 42 and d.lost_markers == 2


def test_corrupt_page_strict_and_salvage(engine: str) -> None:
    e = "<"
    good = Page(100).data(0, kmalloc(e, 8, 1, 2, 3, 4, 5)).bytes()
    bad = bytearray(Page(200).data(0, kmalloc(e, 8, 1, 2, 3, 4, 5)).bytes())
    struct.pack_into("<I", bad, 16, 20 << 0)  # type_len 20: 80 bytes, past the 60 committed
    with pytest.raises(InputError, match=r"cpu7, byte offset 4112.*runs past"):
        decode_pages(
            good + bytes(bad), 4096, 8, "little", formats_618(), where="cpu7", engine=engine
        )
    d = decode_pages(
        good + bytes(bad) + good, 4096, 8, "<", formats_618(), salvage=True, engine=engine
    )
    assert len(d) == 2 and d.bad_pages == 1


def test_header_page_and_formats(engine: str) -> None:
    hp = parse_header_page(
        "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
        "\tfield: local_t commit;\toffset:8;\tsize:4;\tsigned:1;\n"
        "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
        "\tfield: char data;\toffset:12;\tsize:4084;\tsigned:0;\n"
    )
    assert (hp.long_size, hp.data_offset, hp.page_size) == (4, 12, 4096)
    f = formats_618()[2]
    assert f.fields["name"].loc == "rel_loc" and f.fields["common_pid"].signed
    # an old kernel: 4-byte gfp_flags, no name, the _node event
    old = parse_format(
        fmt(
            "kmem_cache_alloc_node",
            77,
            "\tfield:unsigned long call_site;\toffset:8;\tsize:8;\tsigned:0;\n"
            "\tfield:const void * ptr;\toffset:16;\tsize:8;\tsigned:0;\n"
            "\tfield:size_t bytes_req;\toffset:24;\tsize:8;\tsigned:0;\n"
            "\tfield:size_t bytes_alloc;\toffset:32;\tsize:8;\tsigned:0;\n"
            "\tfield:gfp_t gfp_flags;\toffset:40;\tsize:4;\tsigned:0;\n"
            "\tfield:int node;\toffset:44;\tsize:4;\tsigned:1;\n",
        ),
        "kmem",
    )
    payload = struct.pack("<HBBiQQQQIi", 77, 0, 0, 9, 0x10, 0x20, 30, 32, 0x400CC0, 1)
    d = decode_pages(Page(5).data(0, payload).bytes(), 4096, 8, "<", [old], engine=engine)
    assert d.columns["op"].tolist() == [Op.KMEM_CACHE_ALLOC]
    assert d.columns["gfp"].tolist() == [0x400CC0] and d.columns["node"].tolist() == [1]
    assert d.columns["name_key"].tolist() == [0]


def test_merge_ties_go_to_lower_cpu_even_unsorted() -> None:
    a = np.array([5, 10, 3], dtype=np.int64)  # CPU 0 goes backwards
    b = np.array([5, 6], dtype=np.int64)
    order = merge_cpus([a, b])
    # trace-cmd: pick the CPU whose head is strictly smallest, ties to CPU 0
    assert order.tolist() == [0, 3, 4, 1, 2]


def random_pages(rng: np.random.Generator, npages: int, big: bool, long: int) -> bytes:
    """Random but valid pages: every record kind, random deltas, lost events, sizes."""
    e = ">" if big else "<"
    out = b""
    names = [b"maple_node", b"vm_area_struct", b"x" * 70, b"kmalloc-rnd-01-64", b""]
    for i in range(npages):
        p = Page(int(rng.integers(0, 1 << 62)), big, long)
        if rng.random() < 0.2:
            p.lost(None if rng.random() < 0.5 else int(rng.integers(1, 1000)))
        used = 0
        while used < 3000:
            k = rng.integers(0, 10)
            d = int(rng.integers(0, 1 << 27))
            before = len(p.body)
            if k == 0:
                p.extend(int(rng.integers(1 << 27, 1 << 40)))
            elif k == 1:
                p.absolute(int(rng.integers(0, 1 << 59)))
            elif k == 2:
                p.discarded(d | 1, int(rng.integers(1, 30)) * 4)
            elif k == 3:
                p.data(d, struct.pack(f"{e}HBBi", int(rng.integers(400, 1200)), 0, 0, 1))
            elif k < 7:
                nm = names[int(rng.integers(0, len(names)))]
                p.data(d, kcfree(e, long, int(rng.integers(0, 1 << 32)), nm), rng.random() < 0.3)
            else:
                pl = kmalloc(
                    e,
                    long,
                    int(rng.integers(0, 1 << 20)),
                    int(rng.integers(0, 1 << 32)),
                    int(rng.integers(0, 1 << 32)),
                    int(rng.integers(0, 1 << 13)),
                    int(rng.integers(0, 1 << 13)),
                )
                p.data(d, pl, rng.random() < 0.3)
            used += len(p.body) - before
            if rng.random() < 0.02:
                break
        out += p.bytes()
        if i % 7 == 3:  # an empty page
            out += Page(5, big, long).bytes()
    return out


@pytest.mark.parametrize("seed", range(6))
def test_engines_agree_on_random_pages(seed: int) -> None:
    """The vectorised walk equals the sequential reference on random valid page streams."""
    rng = np.random.default_rng(seed)
    big, long = bool(seed & 1), (8 if seed & 2 else 4)
    buf = random_pages(rng, 40, big, long)
    endian = "big" if big else "little"
    ids = list(range(400, 1200))
    a = decode_pages(buf, 4096, long, endian, formats_618(long), other_ids=ids, engine="numpy")
    b = decode_pages(buf, 4096, long, endian, formats_618(long), other_ids=ids, engine="numba")
    assert len(a) > 100
    for k in a.columns:
        if k == "name_key":
            na = [a.names.get(x) for x in a.columns[k].tolist()]
            nb = [b.names.get(x) for x in b.columns[k].tolist()]
            assert na == nb
        else:
            assert np.array_equal(a.columns[k], b.columns[k]), k
    for k in ("marker_ts", "marker_count", "marker_row"):
        assert np.array_equal(getattr(a, k), getattr(b, k)), k
    assert (a.records, a.discarded, a.unknown_ids, a.short_records, a.pages) == (
        b.records,
        b.discarded,
        b.unknown_ids,
        b.short_records,
        b.pages,
    )


@pytest.mark.parametrize("seed", range(4))
def test_engines_agree_on_damaged_pages(seed: int) -> None:
    """Random byte damage: same events, same bad-page count in salvage, same first error."""
    rng = np.random.default_rng(100 + seed)
    buf = bytearray(random_pages(rng, 20, False, 8))
    for _ in range(30):
        i = int(rng.integers(0, len(buf)))
        buf[i] = int(rng.integers(0, 256))
    ids = list(range(400, 1200))
    res = []
    errs = []
    for eng in ("numpy", "numba"):
        res.append(
            decode_pages(
                bytes(buf), 4096, 8, "<", formats_618(), other_ids=ids, salvage=True, engine=eng
            )
        )
        try:
            decode_pages(bytes(buf), 4096, 8, "<", formats_618(), other_ids=ids, engine=eng)
            errs.append(None)
        except InputError as e:
            errs.append(str(e))
    a, b = res
    assert errs[0] == errs[1]
    assert a.bad_pages == b.bad_pages
    for k in ("ts", "op", "ptr", "call_site", "pid", "gfp", "node"):
        assert np.array_equal(a.columns[k], b.columns[k]), k


@pytest.mark.parametrize("seed", range(12))
def test_compiled_merge_equals_trace_cmd_order(seed: int) -> None:
    """merge_rows (the compiled reader's k-way merge over chained segments, with its run
    shortcut and heap) picks rows exactly as trace-cmd's merge (``merge_order``, ties to the
    lower CPU, non-monotonic streams included) and counts each stream's backward steps."""
    from sheaftune.readers._jit import merge_order
    from sheaftune.readers.tracedat_fast import ROW_COLS, _chains, reader_kernels

    rng = np.random.default_rng(seed)
    k = reader_kernels()
    ncpu = int(rng.integers(1, 7))
    streams = []
    for _ in range(ncpu):
        n = int(rng.integers(0, 60))
        t = np.cumsum(rng.integers(0, 4, n)).astype(np.int64)
        if seed % 3 == 0 and n > 3:  # damage: some steps backwards
            t[rng.integers(0, n, 2)] -= 5
        streams.append(t)
    # the streams' rows, scattered over segments in a shuffled layout
    pieces = []
    for c, t in enumerate(streams):
        cuts = sorted(set(rng.integers(0, len(t) + 1, 3).tolist()) | {0, len(t)})
        pieces += [(c, i, a, b) for i, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False))]
    order = rng.permutation(len(pieces))
    ts = np.empty(sum(len(t) for t in streams), dtype=np.int64)
    src_id = np.empty(len(ts), dtype=np.int64)  # global row id in CPU-concatenated order
    offsets = np.concatenate(([0], np.cumsum([len(t) for t in streams])))
    at = 0
    placed = {}
    for pi in order:
        c, i, a, b = pieces[pi]
        ts[at : at + b - a] = streams[c][a:b]
        src_id[at : at + b - a] = offsets[c] + np.arange(a, b)
        placed[(c, i)] = (at, at + b - a)
        at += b - a
    segs = [(c, *placed[(c, i)]) for c, i, _, _ in sorted(pieces)]
    cpus = list(range(ncpu))
    cols = {name: np.zeros(len(ts), dtype=dt) for name, dt in ROW_COLS}
    cols["ts"] = ts
    cols["ptr"] = src_id.astype(np.uint64)  # carries the row identity through the merge
    out = {name: np.zeros(len(ts), dtype=dt) for name, dt in ROW_COLS}
    cpu_out = np.zeros(len(ts), dtype=np.uint16)
    scratch = [np.zeros(ncpu, dtype=np.int64) for _ in range(5)]
    n = k.merge_rows(
        *_chains(cpus, segs),
        np.array(cpus, dtype=np.int64),
        *scratch,
        *(cols[name] for name, _ in ROW_COLS),
        out["ts"],
        cpu_out,
        *(out[name] for name, _ in ROW_COLS[1:]),
    )
    assert n == len(ts)
    bounds = offsets.astype(np.int64)
    ref = merge_order(np.concatenate(streams) if streams else ts[:0], bounds)
    assert out["ptr"].astype(np.int64).tolist() == ref.tolist()
    assert cpu_out.tolist() == np.searchsorted(bounds, ref, side="right").__sub__(1).tolist()
    back = [int(np.count_nonzero(t[1:] < t[:-1])) for t in streams]
    assert scratch[4].tolist() == back


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("table", [2, 1024])
def test_walk_interns_names_exactly(seed: int, table: int) -> None:
    """The walk's exact interning (the compiled trace.dat path) names every row as the hashing
    walk does, whatever the table size (too small: -1, the caller retries larger)."""
    from sheaftune.readers import _kconst as K
    from sheaftune.readers.kmemlayout import compile_layout
    from sheaftune.readers.tracedat_fast import reader_kernels

    rng = np.random.default_rng(seed)
    big, long = bool(seed & 1), (8 if seed & 2 else 4)
    buf = np.frombuffer(random_pages(rng, 40, big, long), dtype=np.uint8)
    lay = compile_layout(formats_618(long), list(range(400, 1200)))
    k = reader_kernels()
    npages = len(buf) // 4096
    cap = npages * 512 + 512
    i8, u8 = np.int64, np.uint64

    def walk(t_slot: np.ndarray, t_pos: np.ndarray, t_len: np.ndarray) -> tuple:
        cols = [np.zeros(cap, d) for d in (i8, np.uint8, np.int32, u8, u8)]
        cols += [np.zeros(cap, d) for d in (np.uint32, np.uint32, np.uint32, np.int16)]
        nh, npos, nlen = np.zeros(cap, u8), np.zeros(cap, i8), np.zeros(cap, i8)
        code = np.zeros(cap, np.int32)
        st = np.zeros(K.NSTATS, i8)
        marks = [np.zeros(npages + 1, i8) for _ in range(3)]
        n = k.walk_pages(
            buf, 0, npages, 4096, 8 + long, long, big, lay.evmap, lay.layouts, lay.lay_op,
            lay.lay_min, False, *cols, nh, npos, nlen, code,
            np.zeros(len(t_slot), u8), t_slot, t_pos, t_len, *marks, st,
        )  # fmt: skip
        return n, st, nh, npos, nlen, code

    empty = np.zeros(0, i8)
    n, _, nh, npos, nlen, _ = walk(empty, empty, empty)
    hashed = [
        buf[int(p) : int(p) + int(m)].tobytes() if h else None
        for h, p, m in zip(nh[:n], npos[:n], nlen[:n], strict=True)
    ]
    assert len({x for x in hashed if x}) > 1
    size = table
    while True:
        t_pos, t_len = np.zeros(size // 2, i8), np.zeros(size // 2, i8)
        n2, st, _, _, _, code = walk(np.full(size, -1, i8), t_pos, t_len)
        if st[K.S_NAMES] >= 0:
            break
        assert table == 2
        size *= 8
    assert n2 == n
    names = [buf[p : p + m].tobytes() for p, m in zip(t_pos, t_len, strict=True)]
    assert [names[c - 1] if c else None for c in code[:n].tolist()] == hashed
    assert len(set(names[: st[K.S_NAMES]])) == st[K.S_NAMES]


@pytest.mark.parametrize("workers", [2, 3])
def test_parallel_jobs_are_collected_in_order_by_the_working_caller(workers: int) -> None:
    import threading
    import time

    from sheaftune.readers.tracedat_fast import _parallel

    items = list(range(30))
    worked: dict[int, str] = {}
    collected: list[int] = []

    def work(i: int) -> None:
        time.sleep(0.001 * (i % 3))  # (out of order)
        worked[i] = threading.current_thread().name

    def done(i: int) -> None:
        assert threading.current_thread() is threading.main_thread()
        collected.append(i)

    _parallel(items, work, workers, done)
    assert collected == items and sorted(worked) == items
    # the caller is one of the workers
    assert threading.current_thread().name in set(worked.values())


def test_parallel_raises_the_first_error_in_order_and_stops_taking() -> None:
    from sheaftune.readers.tracedat_fast import _parallel

    taken: list[int] = []
    collected: list[int] = []

    def work(i: int) -> None:
        taken.append(i)
        if i in (5, 7):
            raise ValueError(f"item {i}")

    with pytest.raises(ValueError, match="item 5"):
        _parallel(list(range(100)), work, 2, collected.append)
    assert collected == [0, 1, 2, 3, 4]
    assert max(taken) < 99  # (no item taken long after the error)
