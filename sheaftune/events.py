"""EventTable and OpTable: the columnar data that flows from readers and generators to the model.

An :class:`EventTable` is a struct of equal-length numpy columns sorted by time, plus string
tables (cache names, call sites, task names) and :class:`TraceMeta`. Readers build it with an
:class:`EventTableBuilder` in chunks of numpy arrays; nothing per event lives as a Python object.

The native columnar file (``sheaftune convert IN -o OUT.npz``) is an uncompressed ``.npz`` with
one array per column, the string tables and a JSON metadata blob; ``NATIVE_VERSION`` is bumped
whenever its layout changes, and a newer file than this program understands is refused.
"""

from __future__ import annotations

import dataclasses
import json
import mmap
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from sheaftune.errors import InputError


class Op(IntEnum):
    """What one event is: the kmem tracepoint it came from (the ``op`` column)."""

    KMEM_CACHE_ALLOC = 0
    KMEM_CACHE_FREE = 1
    KMALLOC = 2
    KFREE = 3

    @property
    def tracepoint(self) -> str:
        return self.name.lower()

    @property
    def is_alloc(self) -> bool:
        return self in (Op.KMEM_CACHE_ALLOC, Op.KMALLOC)


#: tracepoint name -> op code; the pre-6.1 ``_node`` variants carry the same facts plus a node.
TRACEPOINT_OPS: dict[str, Op] = {
    "kmem_cache_alloc": Op.KMEM_CACHE_ALLOC,
    "kmem_cache_alloc_node": Op.KMEM_CACHE_ALLOC,
    "kmem_cache_free": Op.KMEM_CACHE_FREE,
    "kmalloc": Op.KMALLOC,
    "kmalloc_node": Op.KMALLOC,
    "kfree": Op.KFREE,
}

#: ``node`` value of an allocation that did not ask for a node (NUMA_NO_NODE).
NUMA_NO_NODE = -1
#: ``cache_id`` of an event whose cache is not (yet) known, e.g. a ``kfree`` before matching.
NO_CACHE = -1
#: ``site_id`` of an event without a call site.
NO_SITE = -1

#: name -> numpy dtype of every EventTable column, in their canonical order.
COLUMNS: dict[str, np.dtype[Any]] = {
    "ts_ns": np.dtype(np.int64),  # ns for ns clocks; raw counter ticks otherwise (TraceMeta.clock)
    "cpu": np.dtype(np.uint16),
    "op": np.dtype(np.uint8),  # Op
    "cache_id": np.dtype(np.int32),  # index into EventTable.caches, NO_CACHE if unknown
    "ptr": np.dtype(np.uint64),  # raw or hashed (TraceMeta.pointers_hashed) object pointer
    "bytes_req": np.dtype(np.uint32),
    "bytes_alloc": np.dtype(np.uint32),
    "gfp": np.dtype(np.uint32),  # raw gfp_t bits, Linux 6.18 numbering (sheaftune.gfp)
    "node": np.dtype(np.int16),  # requested node, NUMA_NO_NODE for none
    "site_id": np.dtype(np.int32),  # index into EventTable.sites
    "pid": np.dtype(np.int32),
    "comm_id": np.dtype(np.int32),  # index into EventTable.comms, -1 if unknown
}


@dataclass
class TraceMeta:
    """What is known about the trace as a whole, beyond its events."""

    source: str = ""
    format: str = ""  # reader name, e.g. "ftrace", "trace-cmd-report", "trace.dat"
    cpus: int = 0  # CPUs the trace covers (0: unknown)
    clock: str | None = None  # trace_clock: local, global, boot, mono, counter, x86-tsc, ...
    ts_is_ns: bool = True  # False for counter/x86-tsc/uptime clocks: ts_ns holds raw ticks
    ts_resolution_ns: int = 1  # 1000 when the text printed microseconds
    kernel_release: str | None = None
    file_version: int | None = None
    pointers_hashed: bool = False  # ftrace text hashes %p: values match but are not addresses
    buffer: str | None = None  # the instance read ("" or None for the top buffer)
    buffers: list[str] = field(default_factory=list)  # every buffer the file holds
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> lines/records skipped
    lost_events: dict[int, int] = field(default_factory=dict)  # cpu -> events known lost
    lost_markers: dict[int, int] = field(default_factory=dict)  # cpu -> "events lost" markers
    complete: bool = True  # False when --salvage skipped unreadable parts
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # reader-specific facts for the report

    def skip(self, reason: str, n: int = 1) -> None:
        if n:
            self.skipped[reason] = self.skipped.get(reason, 0) + n

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lost_events"] = {str(k): v for k, v in sorted(self.lost_events.items())}
        d["lost_markers"] = {str(k): v for k, v in sorted(self.lost_markers.items())}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TraceMeta:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["lost_events"] = {int(k): int(v) for k, v in d.get("lost_events", {}).items()}
        kw["lost_markers"] = {int(k): int(v) for k, v in d.get("lost_markers", {}).items()}
        return cls(**kw)


class EventTable:
    """Equal-length numpy columns (see ``COLUMNS``), sorted by time, with string tables.

    ``caches[cache_id]`` is a cache name, ``sites[site_id]`` a call site (``sym+0xoff`` or a raw
    ``0x...`` address), ``comms[comm_id]`` a task name. Columns are attributes (``t.ts_ns``).

    A reader asked to (``ReadOptions.finish_later``) may return a table whose call sites and
    task names (``sites``, ``comms``, their id columns, and the warnings about them in
    ``meta``) are still being resolved on a thread: ``pending`` is then set, and ``settle()``
    waits for them (or raises the reader's error). Every other column is final. Only
    ``pipeline.load`` asks for such a table, and settles it before returning it.
    """

    __slots__ = ("columns", "caches", "sites", "comms", "meta", "_maps", "pending", "normalized")

    def __init__(
        self,
        columns: dict[str, np.ndarray],
        caches: Sequence[str] = (),
        sites: Sequence[str] = (),
        comms: Sequence[str] = (),
        meta: TraceMeta | None = None,
    ):
        n = None
        cols: dict[str, np.ndarray] = {}
        for name, dtype in COLUMNS.items():
            if name not in columns:
                raise ValueError(f"EventTable column {name!r} missing")
            arr = np.asarray(columns[name], dtype=dtype)
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise ValueError(f"EventTable column {name!r} has {len(arr)} rows, expected {n}")
            cols[name] = arr
        self.columns = cols
        self.caches = list(caches)
        self.sites = list(sites)
        self.comms = list(comms)
        self.meta = meta if meta is not None else TraceMeta()
        # the file mappings behind columns read by load_native (release() drops their pages)
        maps = {id(m): m for m in (_mapping_of(a) for a in cols.values()) if m is not None}
        self._maps: list[mmap.mmap] = list(maps.values())
        #: the reader's unfinished work (see above)
        self.pending: Callable[[], None] | None = None
        #: ``normalize``'s result, when ``pipeline.load`` made it while the reader finished
        #: the table (``normalize`` then returns it)
        self.normalized: Any = None

    def settle(self) -> None:
        """Wait for what the reader still resolves on a thread (``pending``); raise its error."""
        finish, self.pending = self.pending, None
        if finish is not None:
            finish()

    def release(self) -> None:
        """Drop the resident pages of file-mapped columns (a native file read with ``mmap``).

        The columns stay valid: a page touched again is read back from the page cache. Stages
        that sweep whole columns call this when they are done, so a 50-million-event file
        costs resident memory only for the columns a stage is using (issue 10's 2 GB bound).
        A table built in memory has nothing to release.
        """
        for m in self._maps:
            try:
                m.madvise(mmap.MADV_DONTNEED)
            except (AttributeError, ValueError, OSError):  # closed map, or no madvise here
                pass

    def gather(self, name: str, index: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
        """``column[index]`` for increasing indices spread over a file-mapped table, a chunk at a
        time with the pages given back in between: a whole gather would leave every page of the
        column resident at once. Tables built in memory just index."""
        col = self.columns[name]
        if not self._maps or len(index) <= chunk:
            out = col[index]
            self.release()
            return out
        out = np.empty(len(index), dtype=col.dtype)
        for lo in range(0, len(index), chunk):
            out[lo : lo + chunk] = col[index[lo : lo + chunk]]
            self.release()
        return out

    def __getattr__(self, name: str) -> np.ndarray:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.columns[name]
        except KeyError:
            raise AttributeError(name) from None

    def __len__(self) -> int:
        return len(self.columns["ts_ns"])

    @classmethod
    def empty(cls, meta: TraceMeta | None = None) -> EventTable:
        return cls({k: np.empty(0, dtype=d) for k, d in COLUMNS.items()}, meta=meta)

    def take(self, index: np.ndarray) -> EventTable:
        """Rows selected by a boolean mask or an index array; string tables are shared."""
        return EventTable(
            {k: v[index] for k, v in self.columns.items()},
            self.caches,
            self.sites,
            self.comms,
            self.meta,
        )

    def sorted_by_time(self) -> EventTable:
        """Stable sort by timestamp (equal stamps keep their order: CPU, then file position)."""
        ts = self.columns["ts_ns"]
        if len(ts) < 2 or bool(np.all(ts[1:] >= ts[:-1])):
            return self
        return self.take(np.argsort(ts, kind="stable"))

    def find_cache(self, name: str) -> int:
        try:
            return self.caches.index(name)
        except ValueError:
            return NO_CACHE

    def events_by_type(self) -> dict[str, int]:
        counts = np.bincount(self.columns["op"], minlength=len(Op))
        return {op.tracepoint: int(counts[op]) for op in Op}


def _mapping_of(arr: np.ndarray) -> mmap.mmap | None:
    """The file mapping an array is a view of (through its ``base`` chain), if any."""
    x: Any = arr
    for _ in range(8):
        if isinstance(x, mmap.mmap):
            return x
        x = getattr(x, "base", None)
        if x is None:
            return None
    return None


class StringTable:
    """Interns strings to dense ids: readers resolve each distinct value once, not per event."""

    __slots__ = ("ids", "values")

    def __init__(self, values: Iterable[str] = ()):
        self.values: list[str] = []
        self.ids: dict[str, int] = {}
        for v in values:
            self.intern(v)

    def intern(self, value: str) -> int:
        i = self.ids.get(value)
        if i is None:
            i = self.ids[value] = len(self.values)
            self.values.append(value)
        return i

    def __len__(self) -> int:
        return len(self.values)


class EventTableBuilder:
    """Collects column chunks from a reader and assembles one EventTable at the end."""

    def __init__(self, meta: TraceMeta | None = None):
        self.meta = meta if meta is not None else TraceMeta()
        self.caches = StringTable()
        self.sites = StringTable()
        self.comms = StringTable()
        self._chunks: list[dict[str, np.ndarray]] = []
        self.rows = 0

    def add_chunk(self, columns: dict[str, np.ndarray]) -> None:
        """Append rows; every column of ``COLUMNS`` must be present with equal lengths."""
        n = len(columns["ts_ns"])
        if n == 0:
            return
        chunk = {}
        for name, dtype in COLUMNS.items():
            arr = np.asarray(columns[name], dtype=dtype)
            if len(arr) != n:
                raise ValueError(f"chunk column {name!r} has {len(arr)} rows, expected {n}")
            chunk[name] = arr
        self._chunks.append(chunk)
        self.rows += n

    def build(self, sort: bool = True) -> EventTable:
        if self._chunks:
            cols = {k: np.concatenate([c[k] for c in self._chunks]) for k in COLUMNS}
        else:
            cols = {k: np.empty(0, dtype=d) for k, d in COLUMNS.items()}
        self._chunks = []
        t = EventTable(cols, self.caches.values, self.sites.values, self.comms.values, self.meta)
        return t.sorted_by_time() if sort else t


@dataclass(frozen=True)
class OpTable:
    """One row per critical-section operation that needs a bounded number of objects.

    ``upper_bound`` is what the subsystem must guarantee (``kmem_cache_prefill_sheaf(size)``);
    ``used`` is how many objects it actually took. ``source`` says where the rows came from:
    ``"workload"``, ``"inferred"`` (from runs of sheaf pops in a trace) or ``"capture"``.
    """

    ts_ns: np.ndarray  # int64
    cpu: np.ndarray  # uint16
    cache_id: np.ndarray  # int32
    upper_bound: np.ndarray  # uint32
    used: np.ndarray  # uint32
    pid: np.ndarray  # int32
    site_id: np.ndarray  # int32
    source: str = "workload"

    def __len__(self) -> int:
        return len(self.ts_ns)


# --- native columnar file -------------------------------------------------------------------

#: Version of the native .npz layout. History:
#: 1 - first layout: COLUMNS as arrays, caches/sites/comms as JSON lists, TraceMeta as JSON.
NATIVE_VERSION = 1
NATIVE_MAGIC = "sheaftune-events"


def save_native(table: EventTable, path: str | os.PathLike[str]) -> None:
    """Write ``table`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    header = {
        "magic": NATIVE_MAGIC,
        "version": NATIVE_VERSION,
        "caches": table.caches,
        "sites": table.sites,
        "comms": table.comms,
        "meta": table.meta.to_dict(),
    }
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            arrays: dict[str, Any] = dict(table.columns)
            arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def is_native(head: bytes) -> bool:
    """True when ``head`` starts like an npz (zip) file; load_native checks the rest."""
    return head[:4] == b"PK\x03\x04"


def load_native(path: str) -> EventTable:
    """Read a native file written by :func:`save_native`; every problem is an InputError.

    Columns stored uncompressed (as ``save_native`` writes them) are memory-mapped read-only,
    not read: a stage touches only the pages it uses and :meth:`EventTable.release` gives them
    back. A file rewritten while a run maps it is the user's race (as with ``perf report``).
    """
    import zipfile  # np.load imports it too; a trace of another format never needs it

    try:
        with np.load(path, allow_pickle=False) as z:
            if "__header__" not in z.files:
                raise InputError("zip file is not a sheaftune event file (no header)", path)
            header = json.loads(bytes(z["__header__"]).decode())
            if header.get("magic") != NATIVE_MAGIC:
                raise InputError("zip file is not a sheaftune event file", path)
            version = int(header.get("version", 0))
            if version > NATIVE_VERSION:
                raise InputError(
                    f"event file version {version} is newer than this sheaftune understands "
                    f"(up to {NATIVE_VERSION}); upgrade sheaftune",
                    path,
                )
            if version < 1:
                raise InputError(f"event file version {version} is invalid", path)
            mapped = _map_members(path)
            cols = {k: mapped[k] if k in mapped else z[k] for k in COLUMNS}
    except InputError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"cannot read event file: {e}", path) from None
    meta = TraceMeta.from_dict(header.get("meta", {}))
    try:
        return EventTable(cols, header["caches"], header["sites"], header["comms"], meta)
    except (ValueError, KeyError) as e:
        raise InputError(f"corrupt event file: {e}", path) from None


def _map_members(path: str) -> dict[str, np.ndarray]:
    """The column members of an .npz that are stored uncompressed, as read-only memory maps.

    A member is mapped only when its .npy header is a plain C-ordered array of a column's own
    dtype that fits inside the member; anything else (compressed, other dtype, a damaged
    header) is left to ``np.load``, which reads it, or fails with its own error.
    """
    import zipfile

    from numpy.lib import format as npformat

    out: dict[str, np.ndarray] = {}
    size = os.path.getsize(path)
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else ""
            if name not in COLUMNS or info.compress_type != zipfile.ZIP_STORED:
                continue
            if info.flag_bits & 0x1:  # encrypted
                continue
            fh.seek(info.header_offset)
            local = fh.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                continue
            start = info.header_offset + 30 + int.from_bytes(local[26:28], "little")
            start += int.from_bytes(local[28:30], "little")
            fh.seek(start)
            try:
                version = npformat.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = npformat.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, fortran, dtype = npformat.read_array_header_2_0(fh)
                else:
                    continue
            except ValueError:
                continue
            data = fh.tell()
            if fortran or len(shape) != 1 or dtype != COLUMNS[name]:
                continue
            nbytes = int(shape[0]) * dtype.itemsize
            if data - start + nbytes > info.file_size or data + nbytes > size:
                continue
            if nbytes == 0:
                out[name] = np.empty(0, dtype=dtype)
                continue
            out[name] = np.memmap(path, dtype=dtype, mode="r", offset=data, shape=(shape[0],))
    return out
