"""kmem event formats compiled to the tables the page walks index by event ID.

Its own small module: the compiled read path needs only this from the page decoder's module
(:mod:`sheaftune.readers.ringbuffer`, which re-exports it), and a run should not pay for
importing the numpy walk it does not use.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from sheaftune.events import TRACEPOINT_OPS
from sheaftune.readers._kconst import K_ABSENT as _K_ABSENT
from sheaftune.readers._kconst import K_CHARS as _K_CHARS
from sheaftune.readers._kconst import K_DATA_LOC as _K_DATA_LOC
from sheaftune.readers._kconst import K_DATA_LOC16 as _K_DATA_LOC16
from sheaftune.readers._kconst import K_REL_LOC as _K_REL_LOC
from sheaftune.readers._kconst import K_SINT as _K_SINT
from sheaftune.readers._kconst import K_UINT as _K_UINT
from sheaftune.readers._kconst import NFIELDS as _NFIELDS
from sheaftune.readers.eventformat import EventFormat, Field

# layout slots 0..6 (slot 7 is the cache name)
_SLOTS = ("common_pid", "call_site", "ptr", "bytes_req", "bytes_alloc", "gfp_flags", "node")


class KmemLayout:
    """The kmem formats compiled to tables the page walk indexes by event ID.

    ``evmap[id]``: index into ``layouts`` for a kmem event, -1 for a known other event, -2 for
    an ID no format describes. ``layouts[i, slot] = (offset, size, kind)``.
    """

    __slots__ = ("evmap", "layouts", "lay_op", "lay_min", "events")

    def __init__(
        self,
        evmap: np.ndarray,
        layouts: np.ndarray,
        lay_op: np.ndarray,
        lay_min: np.ndarray,
        events: tuple[str, ...],
    ):
        self.evmap = evmap  # int16
        self.layouts = layouts  # int64 [n, 8, 3]
        self.lay_op = lay_op  # uint8
        self.lay_min = lay_min  # int64: payload bytes needed for the fixed fields
        self.events = events  # names of the compiled kmem events, by layout index


def _field_spec(f: Field | None, slot: int) -> tuple[int, int, int]:
    if f is None:
        return (0, 0, _K_ABSENT)
    if slot == 7:  # name
        if f.loc == "data_loc":
            return (f.offset, f.size, _K_DATA_LOC if f.size == 4 else _K_DATA_LOC16)
        if f.loc == "rel_loc":
            return (f.offset, f.size, _K_REL_LOC)
        if f.is_array:
            return (f.offset, f.size, _K_CHARS)
        return (0, 0, _K_ABSENT)
    if f.size not in (1, 2, 4, 8) or f.loc or f.is_array:
        return (0, 0, _K_ABSENT)
    return (f.offset, f.size, _K_SINT if f.signed else _K_UINT)


def compile_layout(formats: Iterable[EventFormat], other_ids: Iterable[int] = ()) -> KmemLayout:
    """Compile the kmem event formats; ``other_ids`` are the IDs of every other known event.

    Raises ValueError when no kmem event format is among ``formats``.
    """
    other_ids = [i for i in other_ids if i >= 0]
    kmem = [f for f in formats if f.name in TRACEPOINT_OPS and f.system in ("kmem", "")]
    if not kmem:
        raise ValueError("no kmem event format (kmalloc, kfree, kmem_cache_alloc, ...) found")
    ids = [f.id for f in kmem] + list(other_ids)
    size = max(ids) + 1
    if size > 1 << 16:
        raise ValueError(f"event ID {size - 1} out of range")
    evmap = np.full(size, -2, dtype=np.int16)
    for i in other_ids:
        evmap[i] = -1
    layouts = np.zeros((len(kmem), _NFIELDS, 3), dtype=np.int64)
    lay_op = np.zeros(len(kmem), dtype=np.uint8)
    lay_min = np.zeros(len(kmem), dtype=np.int64)
    for li, fmt in enumerate(kmem):
        evmap[fmt.id] = li
        lay_op[li] = int(TRACEPOINT_OPS[fmt.name])
        need = 2
        for slot, name in enumerate(_SLOTS):
            spec = _field_spec(fmt.get(name), slot)
            layouts[li, slot] = spec
            if spec[2] != _K_ABSENT:
                need = max(need, spec[0] + spec[1])
        nspec = _field_spec(fmt.get("name"), 7)
        layouts[li, 7] = nspec
        if nspec[2] != _K_ABSENT:
            need = max(need, nspec[0] + nspec[1])
        lay_min[li] = need
    return KmemLayout(evmap, layouts, lay_op, lay_min, tuple(f.name for f in kmem))
