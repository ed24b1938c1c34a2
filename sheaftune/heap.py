"""Warm glibc's heap for an ``analyze`` of modest inputs while the program starts.

Why: every page of fresh memory costs a page fault on first touch, and the kernel zeroes it
(together 1-2.5 us per 4 KiB page on a VM). A cold ``analyze`` of a 715k-event trace took about
35,000 faults, most of them in its own arrays: glibc hands each thread an arena of its own (fresh
mappings) and gives every large block a mapping of its own, unmapped when freed, so that the next
stage's arrays fault afresh what the last stage just gave back. Meanwhile, for its first 85 ms or so
the program only imports (Python, click, numpy), on one core, and the other core idles.

So :func:`warm`, called first thing by ``sheaftune.__main__``, does two things when the command
is ``analyze`` and its input files hold between :data:`MIN_INPUT` and :data:`MAX_INPUT` bytes:

- it asks glibc (``mallopt``) for one arena for all threads, for no mapping of its own for any
  block however large (the reader's columns are tens of MiB), to grow the heap 64 MiB at a time,
  and not to trim it: a block one stage frees is reused, already mapped, by the next;
- it pre-faults :func:`prefault_bytes` of that heap on a thread, and frees it back to the heap:
  ``memset`` releases the GIL, so the idle core pays the faults while the main thread imports,
  and the run's arrays then find mapped memory.

In 4 KiB pages, never transparent huge pages (and ``sheaftune.__main__`` turns numpy's own huge
page advice off, ``NUMPY_MADVISE_HUGEPAGE=0``). On the VMs we measure on (Firecracker, whose host
backs guest memory lazily and takes back what the guest frees), a huge page touched for the first
time after a pause costs 3-6 ms, the host faulting it in and the guest zeroing it: 170-400 ms per
64 MiB against 32-45 ms in 4 KiB pages. A 715k-event ``analyze`` right after another program ran
spent 0.4-0.5 s of system time in them (0.1 s in 4 KiB pages); they only win, by a few
milliseconds, when the host still holds the memory.

The pre-fault grows with the input, as the run's arrays do, up to :data:`PREFAULT_MAX`: an
uncompressed file's size is about what its analysis allocates. A zstd-compressed trace.dat is
several times smaller than its events, and rightly gets less: ``sheaftune.zstd_prefetch``
decompresses it on the same idle core meanwhile, and then, knowing the size of what it
decompressed, pre-faults the rest until the reader comes (:func:`prefault_more`).

Never for huge traces: their inputs are far above :data:`MAX_INPUT`, and issue 10's bound needs
freed memory to leave the process (``pipeline.load`` calls :func:`return_freed_memory`, which
also restores the trimming should a modest file hold a huge trace). A modest file that holds
more than :data:`MAX_EVENTS` events (a compressed one) gets its large blocks mapped on their
own again once it is read (:func:`many_events`). Nothing happens elsewhere than on glibc, for
any other command, with ``SHEAFTUNE_HEAP_WARMUP=0``, or on any error: this only changes how
fast the run is, never what it computes. Standard library only: it runs before numpy is imported.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

#: Inputs smaller than this in total gain too little to pay for the thread.
MIN_INPUT = 1 << 20
#: Inputs larger than this in total are left to glibc's defaults (huge traces: issue 10).
MAX_INPUT = 64 << 20
#: How much heap is pre-faulted: ``PREFAULT_PER_INPUT`` times the inputs' size, within
#: ``PREFAULT_MIN`` and ``PREFAULT_MAX``. In 4 KiB pages that is ~0.5 ms per MiB on the idle
#: core: 96 MiB is done before the read begins (measured: the v6 fixture's read 20 ms shorter
#: than with 16 MiB, its start-up the same).
PREFAULT_MIN = 16 << 20
PREFAULT_MAX = 96 << 20
PREFAULT_PER_INPUT = 1.5
#: What a stoppable pre-fault touches between two looks at its stop flag (about 1 ms).
PREFAULT_CHUNK = 2 << 20
#: The heap grows by this much more than asked each time (glibc's ``M_TOP_PAD``): one growth
#: holds a run's arrays (about halving the faults even without pre-faulting).
TOP_PAD = 64 << 20

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

#: A trace of more events than this turns the "no block mapped on its own" rule off again
#: (:func:`many_events`): a guard, so that blocks of hundreds of MiB, once freed, can never stay
#: in the heap as holes a later, larger block does not fit in. (On a 3M-event trace in a 29 MB
#: file, peak RSS measured the same with and without it, 610-640 MiB.)
MAX_EVENTS = 1 << 21
#: glibc's largest mmap threshold on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``) and its default
#: count of mappings (``DEFAULT_MMAP_MAX``).
MMAP_THRESHOLD = 32 << 20
MMAP_MAX = 65536

#: The pre-faulting thread of this process, if :func:`warm` started one (tests join it).
thread: threading.Thread | None = None
#: The C library, once :func:`warm` has tuned its heap.
_tuned: Any = None


def input_bytes(argv: list[str]) -> int:
    """The total size of the regular files named among an ``analyze`` command's arguments
    (0 for any other command). Option values that name files (``-o FILE``) count too: a
    heuristic for how much memory the run will use, never a decision about what it reads."""
    if not argv or argv[0] != "analyze":
        return 0
    total = 0
    for a in argv[1:]:
        if a.startswith("-"):
            continue
        try:
            st = os.stat(a)
        except (OSError, ValueError):
            continue
        if (st.st_mode & 0o170000) == 0o100000:  # a regular file
            total += st.st_size
    return total


def prefault_bytes(inputs: int) -> int:
    """How much heap to pre-fault for inputs of ``inputs`` bytes (0: none, leave glibc alone)."""
    if not MIN_INPUT <= inputs <= MAX_INPUT:
        return 0
    return min(PREFAULT_MAX, max(PREFAULT_MIN, int(inputs * PREFAULT_PER_INPUT)))


def warm(
    argv: list[str],
    then: Callable[[], None] | None = None,
    first: Callable[[], object] | None = None,
) -> int:
    """Tune glibc's heap and start pre-faulting it when ``argv`` is worth it; the bytes being
    pre-faulted (0: nothing done). The thread runs ``first`` before its pre-fault (what the
    imports need soonest: ``sheaftune.npstart``) and ``then`` after it (the idle core is still
    idle: ``sheaftune.premap``); neither runs when nothing is done."""
    global thread
    try:
        if os.environ.get("SHEAFTUNE_HEAP_WARMUP", "1") == "0":
            return 0
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return 0
        size = prefault_bytes(input_bytes(argv))
        if not size:
            return 0
        libc = _libc()
        if not (
            libc.mallopt(_M_ARENA_MAX, 1)
            and libc.mallopt(_M_MMAP_MAX, 0)
            and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
            and libc.mallopt(_M_TOP_PAD, TOP_PAD)
        ):
            return 0
        global _tuned
        _tuned = libc
        thread = threading.Thread(target=_warm, args=(libc, size, then, first), name="heap-warmup")
        thread.daemon = True
        thread.start()
        return size
    except Exception:  # noqa: BLE001 - an optimisation only: the run goes on as it would have
        return 0


def _libc() -> Any:
    import ctypes

    libc = ctypes.CDLL(None)  # the process's own C library (glibc: checked by the caller)
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    libc.memset.restype = ctypes.c_void_p
    return libc


def _warm(
    libc: Any, size: int, then: Callable[[], None] | None, first: Callable[[], object] | None
) -> None:
    if first is not None:
        first()
    _prefault(libc, size)
    if then is not None:
        then()


def _prefault(libc: Any, size: int, stop: threading.Event | None = None) -> None:
    """Touch ``size`` bytes of fresh heap, then free them to the heap, where the trim threshold
    keeps them. (ctypes releases the GIL around each call: the main thread imports meanwhile.)
    With ``stop``, a chunk at a time, until it is set."""
    p = libc.malloc(size)
    if not p:
        return
    try:
        if stop is None:
            libc.memset(p, 0, size)
            return
        for at in range(0, size, PREFAULT_CHUNK):
            if stop.is_set():
                break
            libc.memset(p + at, 0, min(PREFAULT_CHUNK, size - at))
    finally:
        libc.free(p)


def prefault_more(size: int, stop: threading.Event) -> None:
    """After :func:`warm` (else nothing): pre-fault ``size`` more bytes of heap (at most
    :data:`PREFAULT_MAX`), a chunk at a time, until ``stop`` is set. For a thread that knows,
    later than ``warm``, what the run will need (``zstd_prefetch``)."""
    libc = _tuned
    if libc is not None and size > 0:
        try:
            _prefault(libc, min(size, PREFAULT_MAX), stop)
        except Exception:  # noqa: BLE001 - an optimisation only
            pass


def many_events(events: int) -> bool:
    """After the read: a trace of more than :data:`MAX_EVENTS` events gets its blocks of
    :data:`MMAP_THRESHOLD` and more mapped on their own again, each given back when freed (the
    rest of :func:`warm`'s tuning stays). True when that was done."""
    libc = _tuned
    if libc is None or events <= MAX_EVENTS:
        return False
    try:
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(_M_MMAP_MAX, MMAP_MAX)
        )
    except Exception:  # noqa: BLE001 - an optimisation only
        return False


def return_freed_memory() -> None:
    """After the read of a huge trace: on glibc, every block of 1 MiB or more gets a mapping
    of its own, given back when freed, and the heap's free top is handed back from 128 KiB on
    (glibc's defaults, should :func:`warm` have changed them for what looked like a modest
    input). Elsewhere: nothing.

    glibc raises its mmap threshold as large blocks are freed (up to 32 MiB), after which
    arrays of a few MiB come from the heap and per-thread arenas and stay resident after they
    are freed. A huge trace's chunked passes allocate and free many such arrays, so a fixed
    threshold keeps peak memory at what is in use (issue 10)."""
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return
        libc = _tuned or _libc()
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
        libc.mallopt(_M_MMAP_MAX, MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, 128 << 10)
    except Exception:  # noqa: BLE001 - (musl has no mallopt; os.confstr may be missing)
        return
