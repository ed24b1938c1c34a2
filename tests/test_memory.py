"""sheaftune.memory: slabs, blocks and carved arrays."""

import numpy as np

from sheaftune import memory


def test_slab_small_and_huge():
    assert len(memory.slab(100)) == 100
    assert len(memory.slab(0)) == 1  # (never an empty allocation)
    big = memory.slab(memory.HUGE_BYTES + 5)
    assert len(big) == memory.HUGE_BYTES + 5
    assert big.ctypes.data % memory.HUGE_PAGE == 0


def test_block_promotes_from_one_mib():
    small = memory.block(memory.PROMOTE_BYTES - 1)
    assert len(small) == memory.PROMOTE_BYTES - 1
    mid = memory.block(memory.PROMOTE_BYTES)
    assert len(mid) == memory.PROMOTE_BYTES
    assert mid.ctypes.data % memory.HUGE_PAGE == 0
    assert len(mid.base) >= memory.HUGE_BYTES  # carved from a slab of at least 4 MiB


def test_columns_as_the_reader_carves_them():
    spec = (("a", np.int64), ("b", np.uint8), ("c", np.uint16))
    offsets, total = memory.spans(10, spec)
    assert offsets == [0, 128, 192] and total == 212
    cols = memory.columns(10, spec)
    assert [(len(c), c.dtype) for c in cols.values()] == [(10, np.int64), (10, np.uint8),
                                                          (10, np.uint16)]  # fmt: skip
    at = cols["a"].ctypes.data
    assert [c.ctypes.data - at for c in cols.values()] == offsets
    cols["a"][:] = -1
    cols["b"][:] = 7
    assert cols["a"].tolist() == [-1] * 10 and cols["c"].base is cols["a"].base


def test_arrays_of_several_lengths():
    a, b, c = memory.arrays(((3, np.int32), (0, np.int64), (300_000, np.int64)))
    assert (len(a), len(b), len(c)) == (3, 0, 300_000)
    assert (a.dtype, b.dtype, c.dtype) == (np.int32, np.int64, np.int64)
    a[:] = 1
    c[:] = 2
    assert a.tolist() == [1, 1, 1] and int(c.sum()) == 600_000
    assert a.ctypes.data % memory.HUGE_PAGE == 0  # (2.4 MB: a promoted block)


def test_zeros():
    for shape in ((5, 2), (1 << 16, 2), (1 << 20, 2)):  # numpy's, a promoted block, numpy's
        z = memory.zeros(shape, np.int64)
        assert z.shape == shape and z.dtype == np.int64 and not z.any()


def test_block_plain_when_the_heap_is_warmed(monkeypatch):
    import types

    monkeypatch.setitem(memory.sys.modules, "sheaftune.heap", types.SimpleNamespace(thread=1))
    b = memory.block(memory.PROMOTE_BYTES)
    assert len(b) == memory.PROMOTE_BYTES and b.base is None  # not carved from a slab
    assert not memory.zeros((1 << 16, 2), np.int64).any()
