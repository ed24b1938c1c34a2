"""Fresh memory for big arrays, in huge pages where that pays.

A page the process has never touched costs a page fault on its first touch, and the kernel
zeroes it: a microsecond or two per 4 KiB page in a VM, more than many of the passes that
fill the arrays. numpy asks for transparent huge pages (``madvise``) only for allocations of
4 MiB or more, so the many arrays of 1-4 MiB an analysis makes (plan columns, row groups,
match tables) would fault once per 4 KiB. The helpers here carve such arrays from one
allocation (a *slab*) starting on a huge-page boundary: one fault per 2 MiB. A block of 1 MiB
or more is promoted to a slab of at least 4 MiB (``block``); the part never touched costs
nothing.

Every array carved from a slab keeps the whole slab alive: carve together only arrays that
die together, and never tie a small long-lived array to a big block.

An ``analyze`` whose heap ``sheaftune.heap`` pre-faulted gets plain heap blocks from ``block``
instead: that heap's blocks are mapped already, and are reused from stage to stage.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

#: numpy asks for transparent huge pages for allocations of this size and more
HUGE_BYTES = 4 << 20
HUGE_PAGE = 2 << 20
#: blocks from this size on are promoted to a huge-page slab (``block``)
PROMOTE_BYTES = 1 << 20

#: (name, dtype) of each column of a slab carved by ``columns``
Spec = tuple[tuple[str, Any], ...]


def slab(nbytes: int) -> np.ndarray:
    """``nbytes`` bytes; from 4 MiB on, starting on a huge-page boundary of a larger mapping
    (its first and last huge pages whole: no fallback to a page fault per 4 KiB there)."""
    if nbytes < HUGE_BYTES:
        return np.empty(max(nbytes, 1), dtype=np.uint8)
    raw = np.empty(nbytes + 2 * HUGE_PAGE, dtype=np.uint8)
    at = -raw.ctypes.data % HUGE_PAGE
    return raw[at : at + nbytes]


def block(nbytes: int) -> np.ndarray:
    """``nbytes`` bytes, in huge pages from ``PROMOTE_BYTES`` on: a smaller block is carved
    from a 4 MiB slab (``slab``), whose untouched huge pages are never mapped.

    Plain bytes of the heap when ``sheaftune.heap`` warmed it: its blocks are then mapped
    already, and a slab, larger than asked, would only take more of them."""
    if _heap_warmed():
        return np.empty(max(nbytes, 1), dtype=np.uint8)
    if PROMOTE_BYTES <= nbytes < HUGE_BYTES:
        return slab(HUGE_BYTES)[:nbytes]
    return slab(nbytes)


def _heap_warmed() -> bool:
    heap = sys.modules.get("sheaftune.heap")  # (never imported here: only the CLI warms)
    return heap is not None and getattr(heap, "thread", None) is not None


def zeros(shape: int | tuple[int, ...], dtype: Any) -> np.ndarray:
    """``np.zeros``, in huge pages for a block of 1-4 MiB (zeroed here: the block may be
    memory freed before). Smaller and larger ones are numpy's: calloc maps zeroed pages
    lazily, and numpy asks for huge pages from 4 MiB on."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dt.itemsize
    if not PROMOTE_BYTES <= nbytes < HUGE_BYTES:
        return np.zeros(shape, dtype=dt)
    out = block(nbytes).view(dt).reshape(shape)
    out.fill(0)
    return out


def spans(rows: int, spec: Spec) -> tuple[list[int], int]:
    """Where each column of ``rows`` rows starts (64-byte aligned) in a slab; its size."""
    return _layout([rows * np.dtype(dt).itemsize for _, dt in spec])


def _layout(sizes: Sequence[int]) -> tuple[list[int], int]:
    """Where each part of ``sizes`` bytes starts, 64-byte aligned, one after the other; the
    bytes they span."""
    offsets = []
    total = 0
    for n in sizes:
        total = (total + 63) & ~63
        offsets.append(total)
        total += n
    return offsets, total


def carve(buf: np.ndarray, rows: int, spec: Spec, offsets: list[int]) -> dict[str, np.ndarray]:
    """The columns of ``spec`` (``rows`` each) at ``offsets`` (``spans``) of ``buf``."""
    return {
        name: buf[at : at + rows * np.dtype(dt).itemsize].view(dt)
        for (name, dt), at in zip(spec, offsets, strict=True)
    }


def columns(rows: int, spec: Spec) -> dict[str, np.ndarray]:
    """Empty columns of ``rows`` rows, carved from one slab (which none of them frees alone)."""
    offsets, total = spans(rows, spec)
    return carve(slab(total), rows, spec, offsets)


def arrays(parts: Sequence[tuple[int, Any]]) -> list[np.ndarray]:
    """Empty arrays of the (length, dtype) ``parts``, carved from one ``block`` (64-byte
    aligned each): arrays that are filled and dropped together."""
    offsets, total = _layout([n * np.dtype(dt).itemsize for n, dt in parts])
    buf = block(total)
    return [
        buf[at : at + n * np.dtype(dt).itemsize].view(dt)
        for (n, dt), at in zip(parts, offsets, strict=True)
    ]
