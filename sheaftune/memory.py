"""How big arrays are allocated: scratch arrays carved from one block, a table's columns alone.

A stage that needs several scratch arrays that die together (a plan's columns, normalize's index
columns, a reader's per-thread buffers) takes them from one allocation (``arrays``, ``carve``): one
call to the allocator instead of several, and one block to give back. A table's columns instead
are allocations of their own (``columns``).

Plain 4 KiB pages, never transparent huge pages. On the VMs we measure on (Firecracker, whose
host backs guest memory lazily and takes back what the guest frees), a huge page touched for the
first time after a pause costs 3-6 ms (the host faults it in, the guest zeroes it): 170-400 ms per
64 MiB against 32-45 ms in 4 KiB pages, and a 715k-event ``analyze`` right after another program
ran spent 0.4-0.5 s of system time in it (0.1 s in 4 KiB pages). Huge pages only win, by a few
milliseconds, when the host still holds the memory. So the command line turns numpy's own huge
page advice off (``NUMPY_MADVISE_HUGEPAGE=0``, see ``sheaftune.__main__``) and nothing here asks
for them. (``sheaftune.heap`` instead pre-faults the heap on the idle core during start-up.)

Every array carved from a block keeps the whole block alive: carve together only arrays that
die together, and never tie a small long-lived array to a big block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: (name, dtype) of each column of ``columns`` or ``carve``
Spec = tuple[tuple[str, Any], ...]


def block(nbytes: int) -> np.ndarray:
    """``nbytes`` bytes to carve arrays from (at least one: never an empty allocation)."""
    return np.empty(max(nbytes, 1), dtype=np.uint8)


def spans(rows: int, spec: Spec) -> tuple[list[int], int]:
    """Where each column of ``rows`` rows starts (64-byte aligned) in a block; its size."""
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
    """Empty columns of ``rows`` rows, each an allocation of its own: a table's columns live
    long, and several blocks of a few MiB fit where the heap has room (a stage's freed blocks,
    ``sheaftune.heap``) far better than one of tens of MiB. (Measured on the 715k-event
    fixture: 9,000 (v7) and 7,500 (v6) fewer page faults than one block, 30-40 MiB less peak
    RSS.)"""
    return {name: np.empty(rows, dtype=dt) for name, dt in spec}


def arrays(parts: Sequence[tuple[int, Any]]) -> list[np.ndarray]:
    """Empty arrays of the (length, dtype) ``parts``, carved from one ``block`` (64-byte
    aligned each): arrays that are filled and dropped together."""
    offsets, total = _layout([n * np.dtype(dt).itemsize for n, dt in parts])
    buf = block(total)
    return [
        buf[at : at + n * np.dtype(dt).itemsize].view(dt)
        for (n, dt), at in zip(parts, offsets, strict=True)
    ]
