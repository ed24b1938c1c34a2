"""sheaftune.memory: blocks and the arrays carved from them."""

import numpy as np

from sheaftune import memory


def test_block_never_empty():
    assert len(memory.block(100)) == 100
    assert len(memory.block(0)) == 1  # (never an empty allocation)


def test_columns_each_alone_and_carved_columns_side_by_side():
    spec = (("a", np.int64), ("b", np.uint8), ("c", np.uint16))
    cols = memory.columns(10, spec)
    assert [(len(c), c.dtype) for c in cols.values()] == [(10, np.int64), (10, np.uint8),
                                                          (10, np.uint16)]  # fmt: skip
    assert all(c.base is None for c in cols.values())  # (each its own allocation)
    # a reader's per-thread buffers: carved from one block at the offsets spans() gives
    offsets, total = memory.spans(10, spec)
    assert offsets == [0, 128, 192] and total == 212
    cols = memory.carve(memory.block(total), 10, spec, offsets)
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
    assert a.base is c.base  # one block
    assert c.ctypes.data - a.ctypes.data == 64  # (each part 64-byte aligned in the block)


def test_the_command_line_turns_numpys_huge_pages_off(tmp_path):
    """``python -m sheaftune`` sets NUMPY_MADVISE_HUGEPAGE=0 before numpy loads (unless the user
    set it): numpy then advises no huge pages for its arrays."""
    import subprocess
    import sys

    probe = (
        "import os, runpy, sys; sys.argv = ['sheaftune', '--version'];"
        "import sheaftune.cli as c; c.main = lambda: None;"
        "runpy.run_module('sheaftune', run_name='__main__');"
        "import numpy._core.multiarray as m; print(os.environ['NUMPY_MADVISE_HUGEPAGE'],"
        " m._get_madvise_hugepage())"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["0", "False"], out.stderr
    env["NUMPY_MADVISE_HUGEPAGE"] = "1"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.stdout.split()[0] == "1", out.stderr  # the user's own setting wins
