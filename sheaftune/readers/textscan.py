"""The shared compiled core of the text readers (ftrace, trace-cmd report, perf script, bpftrace).

Text traces are big (270 MB for 1.5M events), and a Python regex per line is the bottleneck a
user already has. So the readers read the decompressed stream in large blocks cut at a newline
(a background thread reads the next block while this one is parsed) and split each block into
one range of lines per CPU. Threads run a numba kernel (``nogil``) over each range, as a numpy
``uint8`` view: it recognises the fixed parts of an event line (comm-pid or comm tid,
optional ``(tgid)``, ``[cpu]``, optional flags, the time stamp, the event name) and the
``key=value`` fields of the four kmem tracepoints, writes numbers straight into preallocated
columns and records the byte spans of the string fields (comm, call_site, name, gfp_flags),
which the same thread then hashes. The main thread interns the hashes in open-addressing
tables that live across blocks, so Python decodes and normalises each *distinct* string once
(a few thousand per trace), never once per event. The bpftrace kmem-tsv format has its own
kernel with the same outputs.

Every line gets a status (event, comment, lost-events marker, other event, unparseable, ...)
that becomes ``TraceMeta.skip`` counts. This module imports numba: readers import it inside
``read()`` so that ``sheaftune --help`` does not pay for it.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
from numba import njit

from sheaftune.errors import InputError
from sheaftune.events import EventTable, EventTableBuilder, Op, TraceMeta
from sheaftune.gfp import parse as parse_gfp
from sheaftune.readers.base import ReadOptions, Source, backwards_per_cpu, note_backwards

# --- line status codes (the kernels' vocabulary; SKIP_REASONS names them for TraceMeta) ----

ST_EVENT = 0  # a kmem event, written to the columns
ST_COMMENT = 1  # '#' line
ST_BLANK = 2
ST_LOST = 3  # "CPU:N [LOST N EVENTS]" / "CPU:N [N EVENTS DROPPED]" / bpftrace "Lost N events"
ST_OTHER = 4  # an event of another tracepoint
ST_BAD = 5  # not a line of this format at all
ST_HEADER = 6  # "cpus=N", "version = 6", bpftrace "Attaching N probes..."
ST_MALFORMED = 7  # a kmem event line whose fields do not parse
ST_CUT = 8  # last line of the input without a newline: possibly cut off mid-write
N_STATUS = 9

#: status -> TraceMeta.skip reason (ST_EVENT and ST_LOST are not skips).
SKIP_REASONS: dict[int, str] = {
    ST_COMMENT: "comment",
    ST_BLANK: "blank line",
    ST_OTHER: "non-kmem event",
    ST_BAD: "unparseable line",
    ST_MALFORMED: "malformed kmem event",
    ST_HEADER: "comment",
    ST_CUT: "cut last line",
}

# op codes as plain ints: numba freezes module globals as compile-time constants
_OP_CACHE_ALLOC = int(Op.KMEM_CACHE_ALLOC)
_OP_CACHE_FREE = int(Op.KMEM_CACHE_FREE)
_OP_KMALLOC = int(Op.KMALLOC)
_OP_KFREE = int(Op.KFREE)

# which fields an event line carried (bit mask), to check the required ones per tracepoint
_F_SITE = 1
_F_PTR = 2
_F_NAME = 4
_F_REQ = 8
_F_ALLOC = 16
_F_GFP = 32
_F_NODE = 64

# ptr text forms seen (per event): kernel text prints bare hex, libtraceevent 0x.../(nil)
PTR_BARE = 1
PTR_0X = 2

#: the number of line numbers of unparseable lines kept for the warning
MAX_BAD_LINES = 5

# byte strings the kernels compare against: numpy arrays, which numba freezes as constants
# (a bytes literal inside a kernel would be built anew at every call)
_L_NIL = np.frombuffer(b"(nil)", np.uint8)
_L_KMEM_CACHE_ALLOC = np.frombuffer(b"kmem_cache_alloc", np.uint8)
_L_KMEM_CACHE_ALLOC_NODE = np.frombuffer(b"kmem_cache_alloc_node", np.uint8)
_L_KMEM_CACHE_FREE = np.frombuffer(b"kmem_cache_free", np.uint8)
_L_KMALLOC = np.frombuffer(b"kmalloc", np.uint8)
_L_KMALLOC_NODE = np.frombuffer(b"kmalloc_node", np.uint8)
_L_KFREE = np.frombuffer(b"kfree", np.uint8)
_L_CPUS = np.frombuffer(b"cpus=", np.uint8)
_L_VERSION = np.frombuffer(b"version = ", np.uint8)
_L_CPU = np.frombuffer(b"CPU:", np.uint8)
_L_EVENTS = np.frombuffer(b"EVENTS", np.uint8)
_L_KMEM = np.frombuffer(b"kmem", np.uint8)
_L_CALL_SITE = np.frombuffer(b"call_site", np.uint8)
_L_PTR = np.frombuffer(b"ptr", np.uint8)
_L_NAME = np.frombuffer(b"name", np.uint8)
_L_BYTES_REQ = np.frombuffer(b"bytes_req", np.uint8)
_L_BYTES_ALLOC = np.frombuffer(b"bytes_alloc", np.uint8)
_L_GFP_FLAGS = np.frombuffer(b"gfp_flags", np.uint8)
_L_NODE = np.frombuffer(b"node", np.uint8)
_L_ATTACHING = np.frombuffer(b"Attaching ", np.uint8)
_L_LOST = np.frombuffer(b"Lost ", np.uint8)
_L_DASH = np.frombuffer(b"-", np.uint8)

# --- small byte helpers ---------------------------------------------------------------------


@njit(cache=True, inline="always")
def _is_digit(c: int) -> bool:
    return 48 <= c <= 57


@njit(cache=True, inline="always")
def _is_blank(c: int) -> bool:
    return c == 32 or c == 9


@njit(cache=True, inline="always")
def _hexval(c: int) -> int:
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


@njit(cache=True, inline="always")
def _is_word(c: int) -> bool:
    return (97 <= c <= 122) or (65 <= c <= 90) or (48 <= c <= 57) or c == 95


@njit(cache=True)
def _eq(buf: np.ndarray, s: int, e: int, lit: np.ndarray) -> bool:
    n = len(lit)
    if e - s != n:
        return False
    for i in range(n):
        if buf[s + i] != lit[i]:
            return False
    return True


@njit(cache=True)
def _startswith(buf: np.ndarray, s: int, e: int, lit: np.ndarray) -> bool:
    n = len(lit)
    if e - s < n:
        return False
    for i in range(n):
        if buf[s + i] != lit[i]:
            return False
    return True


@njit(cache=True)
def _parse_uint(buf: np.ndarray, s: int, e: int) -> tuple[bool, np.uint64]:
    """Decimal, or hex with 0x; the whole span must be the number."""
    v = np.uint64(0)
    if e <= s:
        return False, v
    if e - s > 2 and buf[s] == 48 and (buf[s + 1] == 120 or buf[s + 1] == 88):
        for i in range(s + 2, e):
            h = _hexval(buf[i])
            if h < 0:
                return False, v
            v = v * np.uint64(16) + np.uint64(h)
        return True, v
    for i in range(s, e):
        c = buf[i]
        if not _is_digit(c):
            return False, v
        v = v * np.uint64(10) + np.uint64(c - 48)
    return True, v


@njit(cache=True)
def _parse_int(buf: np.ndarray, s: int, e: int) -> tuple[bool, np.int64]:
    neg = False
    if s < e and buf[s] == 45:
        neg = True
        s += 1
    ok, v = _parse_uint(buf, s, e)
    iv = np.int64(v)
    return ok, -iv if neg else iv


@njit(cache=True)
def _parse_ptr(buf: np.ndarray, s: int, e: int) -> tuple[bool, np.uint64, int]:
    """``%p`` text: bare hex (kernel), ``0x...`` or ``(nil)`` (libtraceevent) -> ok, value, form."""
    v = np.uint64(0)
    if _eq(buf, s, e, _L_NIL):
        return True, v, PTR_0X
    form = PTR_BARE
    if e - s > 2 and buf[s] == 48 and (buf[s + 1] == 120 or buf[s + 1] == 88):
        s += 2
        form = PTR_0X
    if e <= s or e - s > 16:
        return False, v, form
    for i in range(s, e):
        h = _hexval(buf[i])
        if h < 0:
            return False, v, form
        v = v * np.uint64(16) + np.uint64(h)
    return True, v, form


@njit(cache=True)
def _span_hash(buf: np.ndarray, s: int, e: int) -> np.uint64:
    """FNV-1a 64 of a byte span, mixed with its length; never 0 (0 marks a free slot)."""
    h = np.uint64(14695981039346656037)
    for i in range(s, e):
        h = (h ^ np.uint64(buf[i])) * np.uint64(1099511628211)
    h ^= np.uint64(e - s) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(29)
    if h == np.uint64(0):
        h = np.uint64(1)
    return h


# --- the event-line kernel ------------------------------------------------------------------


@njit(cache=True)
def _op_of(buf: np.ndarray, s: int, e: int) -> int:
    """Tracepoint name -> op code (the pre-6.1 ``_node`` variants too); -1 for other events."""
    n = e - s  # dispatch on the length first: one full comparison per line at most
    if n == 16 and _eq(buf, s, e, _L_KMEM_CACHE_ALLOC):
        return _OP_CACHE_ALLOC
    if n == 15 and _eq(buf, s, e, _L_KMEM_CACHE_FREE):
        return _OP_CACHE_FREE
    if n == 7 and _eq(buf, s, e, _L_KMALLOC):
        return _OP_KMALLOC
    if n == 5 and _eq(buf, s, e, _L_KFREE):
        return _OP_KFREE
    if n == 21 and _eq(buf, s, e, _L_KMEM_CACHE_ALLOC_NODE):
        return _OP_CACHE_ALLOC
    if n == 12 and _eq(buf, s, e, _L_KMALLOC_NODE):
        return _OP_KMALLOC
    return -1


@njit(cache=True, nogil=True)
def scan_text(
    buf: np.ndarray,  # uint8, one block of whole lines (the last one may lack its newline)
    start: int,  # parse the lines of buf[start:stop] (threads share one block)
    stop: int,
    final: bool,  # True for the input's last block: an unterminated last line is suspect
    line0: int,  # number of lines before this block (for line numbers in warnings)
    ts: np.ndarray,  # int64: time stamp digits as one integer (seconds and fraction)
    tsfrac: np.ndarray,  # int8: number of fraction digits (0: a raw integer clock)
    cpu: np.ndarray,  # int32
    op: np.ndarray,  # uint8
    ptr: np.ndarray,  # uint64
    req: np.ndarray,  # int64
    alloc: np.ndarray,  # int64
    node: np.ndarray,  # int32
    pid: np.ndarray,  # int32
    ptrform: np.ndarray,  # uint8: PTR_BARE / PTR_0X
    spans: np.ndarray,  # int32 [n, 8]: comm, site, name, gfp (start, end); -1 when absent
    status_counts: np.ndarray,  # int64 [N_STATUS]
    lost: np.ndarray,  # int64 [n, 2]: cpu, count (-1: unknown) of lost-event markers
    bad_lines: np.ndarray,  # int64 [MAX_BAD_LINES]: first unparseable line numbers (1-based)
    nbad_in: int,
) -> tuple[int, int, int, int]:
    """Parse every line of ``buf[start:stop]``; -> (events, lost markers, lines, bad lines kept)."""
    n = stop
    pos = start
    nev = 0
    nlost = 0
    nlines = 0
    nbad = nbad_in
    while pos < n:
        # one line: [pos, le), the next starts at nxt
        e = pos
        while e < n and buf[e] != 10:
            e += 1
        terminated = e < n
        nxt = e + 1
        le = e
        if le > pos and buf[le - 1] == 13:  # CRLF
            le -= 1
        nlines += 1
        lineno = line0 + nlines
        st = ST_BAD
        s = pos
        while s < le and _is_blank(buf[s]):
            s += 1
        if s == le:
            st = ST_BLANK
        elif buf[pos] == 35:  # '#' in column 0 (a comm may start with '#' after its padding)
            st = ST_COMMENT
        elif _startswith(buf, s, le, _L_CPUS) or _startswith(buf, s, le, _L_VERSION):
            st = ST_HEADER
        else:
            # CPU:N [LOST N EVENTS] | CPU:N [LOST EVENTS] | CPU:N [N EVENTS DROPPED]
            if _startswith(buf, s, le, _L_CPU) and s + 4 < le and _is_digit(buf[s + 4]):
                j = s + 4
                c = 0
                while j < le and _is_digit(buf[j]):
                    c = c * 10 + (buf[j] - 48)
                    j += 1
                cnt = -1
                k = j
                while k < le:
                    if _startswith(buf, k, le, _L_EVENTS):
                        st = ST_LOST
                    if _is_digit(buf[k]) and cnt < 0:
                        cnt = 0
                        while k < le and _is_digit(buf[k]):
                            cnt = cnt * 10 + (buf[k] - 48)
                            k += 1
                        continue
                    k += 1
                if st == ST_LOST and nlost < lost.shape[0]:
                    lost[nlost, 0] = c
                    lost[nlost, 1] = cnt
                    nlost += 1
        if st == ST_BAD:  # not blank, comment, header or lost marker: an event line?
            r = _scan_event(buf, s, le)
            st = r[0]
            if st == ST_EVENT and nev >= ts.shape[0]:  # cannot happen (see _scan_part)
                st = ST_BAD
            if st == ST_EVENT:
                i = nev
                ts[i] = r[1]
                tsfrac[i] = r[2]
                cpu[i] = r[3]
                op[i] = r[4]
                ptr[i] = r[5]
                req[i] = r[6]
                alloc[i] = r[7]
                node[i] = r[8]
                pid[i] = r[9]
                ptrform[i] = r[10]
                spans[i, 0] = r[11]
                spans[i, 1] = r[12]
                spans[i, 2] = r[13]
                spans[i, 3] = r[14]
                spans[i, 4] = r[15]
                spans[i, 5] = r[16]
                spans[i, 6] = r[17]
                spans[i, 7] = r[18]
            if final and not terminated and (st == ST_EVENT or st == ST_MALFORMED or st == ST_BAD):
                st = ST_CUT
            if st == ST_EVENT:
                nev += 1
        if st == ST_BAD and nbad < MAX_BAD_LINES:
            bad_lines[nbad] = lineno
            nbad += 1
        status_counts[st] += 1
        pos = nxt
    return nev, nlost, nlines, nbad


@njit(cache=True, inline="always")
def _no_event(st: int) -> tuple:
    z = np.int64(0)
    return (
        st, z, z, z, z, np.uint64(0), z, z, z, z, z, z, z, z, z, z, z, z, z,
    )  # fmt: skip


@njit(cache=True)
def _scan_event(buf: np.ndarray, s: int, le: int) -> tuple:
    """One event line from its first non-blank byte ``s`` -> (status, the fields: see
    ``_no_event``). Scalars only: a call with the output arrays costs more than the parse."""
    # 1. the CPU bracket: the first " [digits]" followed by a blank, '-' (report -R) or EOL
    j = s + 1
    cb = -1
    ce = -1
    while j < le:
        if buf[j] == 91 and _is_blank(buf[j - 1]):  # '['
            k = j + 1
            while k < le and _is_digit(buf[k]):
                k += 1
            if (
                k > j + 1
                and k < le
                and buf[k] == 93
                and (k + 1 == le or _is_blank(buf[k + 1]) or buf[k + 1] == 45)
            ):
                cb = j
                ce = k
                break
        j += 1
    if cb < 0:
        return _no_event(ST_BAD)
    c = 0
    for k in range(cb + 1, ce):
        c = c * 10 + (buf[k] - 48)

    # 2. backwards from the bracket: optional "(tgid)", then pid or "pid/tid", then the comm
    p = cb - 1
    while p > s and _is_blank(buf[p]):
        p -= 1
    if buf[p] == 41:  # ')': record-tgid column
        while p > s and buf[p] != 40:
            p -= 1
        p -= 1
        while p > s and _is_blank(buf[p]):
            p -= 1
    d_end = p
    while p >= s and _is_digit(buf[p]):
        p -= 1
    if p == d_end:
        return _no_event(ST_BAD)
    tid = 0
    for k in range(p + 1, d_end + 1):
        tid = tid * 10 + (buf[k] - 48)
    if p >= s and buf[p] == 47:  # '/': perf "pid/tid"
        p2 = p - 1
        while p2 >= s and _is_digit(buf[p2]):
            p2 -= 1
        p = p2
    if p < s:
        comm_s = s
        comm_e = s
    elif buf[p] == 45:  # '-': ftrace and trace-cmd "comm-pid"
        comm_s = s
        comm_e = p
    elif _is_blank(buf[p]):  # perf "comm tid"
        comm_s = s
        comm_e = p
        while comm_e > comm_s and _is_blank(buf[comm_e - 1]):
            comm_e -= 1
    else:
        return _no_event(ST_BAD)

    # 3. after the bracket: optional "-0xFLAGS" (report -R), optional flags, the time stamp
    q = ce + 1
    if q + 2 < le and buf[q] == 45 and buf[q + 1] == 48 and buf[q + 2] == 120:
        q += 3
        while q < le and _hexval(buf[q]) >= 0:
            q += 1
    while q < le and _is_blank(buf[q]):
        q += 1
    t0 = q
    while q < le and not _is_blank(buf[q]) and buf[q] != 58:
        q += 1
    if q < le and _is_blank(buf[q]):  # that token was the irq-info flags
        if q - t0 > 8:
            return _no_event(ST_BAD)
        while q < le and _is_blank(buf[q]):
            q += 1
        t0 = q
        while q < le and not _is_blank(buf[q]) and buf[q] != 58:
            q += 1
    if q >= le or buf[q] != 58 or q == t0:
        return _no_event(ST_BAD)
    tv = np.int64(0)
    nfrac = -1
    for k in range(t0, q):
        ch = buf[k]
        if _is_digit(ch):
            tv = tv * 10 + (ch - 48)
            if nfrac >= 0:
                nfrac += 1
        elif ch == 46 and nfrac < 0:  # '.'
            nfrac = 0
        else:
            return _no_event(ST_BAD)
    if nfrac < 0:
        nfrac = 0
    if q - t0 > 19 or nfrac > 9:
        return _no_event(ST_BAD)
    q += 1

    # 4. event name, "system:event" in perf (right-aligned, so blanks first)
    while q < le and _is_blank(buf[q]):
        q += 1
    ns = q
    while q < le and _is_word(buf[q]):
        q += 1
    ne = q
    sys_s = -1
    sys_e = -1
    if q + 1 < le and buf[q] == 58 and _is_word(buf[q + 1]):
        sys_s = ns
        sys_e = ne
        q += 1
        ns = q
        while q < le and _is_word(buf[q]):
            q += 1
        ne = q
    if ne == ns or q >= le or buf[q] != 58:
        # a trace line, but not an event: e.g. the function tracer's "func <-parent"
        return _no_event(ST_OTHER)
    if sys_s >= 0 and not _eq(buf, sys_s, sys_e, _L_KMEM):
        return _no_event(ST_OTHER)
    o = _op_of(buf, ns, ne)
    if o < 0:
        return _no_event(ST_OTHER)
    q += 1
    while q < le and _is_blank(buf[q]):
        q += 1
    # trace-cmd's kmem plugin prefix "(sym+0xOFF) "
    if q < le and buf[q] == 40:
        k = q
        while k < le and buf[k] != 41:
            k += 1
        if k + 1 < le and _is_blank(buf[k + 1]):
            q = k + 1
            while q < le and _is_blank(buf[q]):
                q += 1

    # 5. key=value fields
    mask = 0
    site_s = -1
    site_e = -1
    name_s = -1
    name_e = -1
    gfp_s = -1
    gfp_e = -1
    pv = np.uint64(0)
    pform = 0
    rq = np.int64(0)
    al = np.int64(0)
    nd = np.int64(-1)
    while q < le:
        ks = q
        while q < le and buf[q] != 61 and not _is_blank(buf[q]):
            q += 1
        if q >= le or buf[q] != 61:  # a token without '=': e.g. "(256)" of options/fields
            while q < le and _is_blank(buf[q]):
                q += 1
            continue
        ke = q
        vs = q + 1
        ve = vs
        while ve < le and not _is_blank(buf[ve]):
            ve += 1
        # which key: by length and first byte, then one full comparison
        kl = ke - ks
        c0 = buf[ks]
        key = 0
        if kl == 9:
            if c0 == 99 and _eq(buf, ks, ke, _L_CALL_SITE):
                key = 1
            elif c0 == 98 and _eq(buf, ks, ke, _L_BYTES_REQ):
                key = 5
            elif c0 == 103 and _eq(buf, ks, ke, _L_GFP_FLAGS):
                key = 7
        elif kl == 3:
            if _eq(buf, ks, ke, _L_PTR):
                key = 2
        elif kl == 4:
            if _eq(buf, ks, ke, _L_NAME):
                key = 3
            elif _eq(buf, ks, ke, _L_NODE):
                key = 8
        elif kl == 11:
            if _eq(buf, ks, ke, _L_BYTES_ALLOC):
                key = 6
        if key == 1:
            # " [module]" (kernel %pS) or " (0xADDR)" (trace-cmd 3.3+ -R) belong to the value
            if ve + 1 < le and (buf[ve + 1] == 91 or buf[ve + 1] == 40):
                close = 93 if buf[ve + 1] == 91 else 41
                k = ve + 1
                while k < le and buf[k] != close:
                    k += 1
                if k < le:
                    ve = k + 1
            site_s = vs
            site_e = ve
            mask |= _F_SITE
        elif key == 2:
            ok, pv, pform = _parse_ptr(buf, vs, ve)
            if not ok:
                return _no_event(ST_MALFORMED)
            mask |= _F_PTR
        elif key == 3:
            name_s = vs
            name_e = ve
            mask |= _F_NAME
        elif key == 5:
            ok, uv = _parse_uint(buf, vs, ve)
            if not ok:
                return _no_event(ST_MALFORMED)
            rq = np.int64(uv)
            mask |= _F_REQ
        elif key == 6:
            ok, uv = _parse_uint(buf, vs, ve)
            if not ok:
                return _no_event(ST_MALFORMED)
            al = np.int64(uv)
            mask |= _F_ALLOC
        elif key == 7:
            gfp_s = vs
            gfp_e = ve
            mask |= _F_GFP
        elif key == 8:
            ok, iv = _parse_int(buf, vs, ve)
            if not ok:
                return _no_event(ST_MALFORMED)
            nd = iv
            mask |= _F_NODE
        q = ve
        while q < le and _is_blank(buf[q]):
            q += 1
    need = _F_PTR
    if o == _OP_CACHE_ALLOC or o == _OP_KMALLOC:
        need |= _F_REQ | _F_ALLOC | _F_GFP
    if (mask & need) != need:
        return _no_event(ST_MALFORMED)

    return (
        ST_EVENT, tv, np.int64(nfrac), np.int64(c), np.int64(o), pv, rq, al, nd, np.int64(tid),
        np.int64(pform), np.int64(comm_s), np.int64(comm_e), np.int64(site_s), np.int64(site_e),
        np.int64(name_s), np.int64(name_e), np.int64(gfp_s), np.int64(gfp_e),
    )  # fmt: skip


# --- the bpftrace kmem-tsv/1 kernel ---------------------------------------------------------


@njit(cache=True)
def _tsv_field(buf: np.ndarray, q: int, le: int) -> int:
    """End of the tab-separated field starting at ``q``."""
    while q < le and buf[q] != 9:
        q += 1
    return q


@njit(cache=True, nogil=True)
def scan_tsv(
    buf: np.ndarray,
    start: int,
    stop: int,
    final: bool,
    line0: int,
    ts: np.ndarray,
    cpu: np.ndarray,
    op: np.ndarray,
    ptr: np.ndarray,
    req: np.ndarray,
    alloc: np.ndarray,
    gfp: np.ndarray,  # int64: bits (bpftrace prints the raw value)
    node: np.ndarray,
    pid: np.ndarray,
    spans: np.ndarray,  # int32 [n, 8]: comm, site, name, (unused) as in scan_text
    status_counts: np.ndarray,
    lost: np.ndarray,
    bad_lines: np.ndarray,
    nbad_in: int,
) -> tuple[int, int, int, int]:
    """kmem-tsv/1: ts cpu tgid tid event ptr call_site bytes_req bytes_alloc gfp node cache comm."""
    n = stop
    pos = start
    nev = 0
    nlost = 0
    nlines = 0
    nbad = nbad_in
    f = np.empty(26, np.int64)  # field spans of one line
    while pos < n:
        e = pos
        while e < n and buf[e] != 10:
            e += 1
        terminated = e < n
        nxt = e + 1
        le = e
        if le > pos and buf[le - 1] == 13:
            le -= 1
        nlines += 1
        if nev < ts.shape[0]:  # always true (see _scan_part); keeps the writes in bounds
            st = _tsv_line(
                buf, pos, le, nev, ts, cpu, op, ptr, req, alloc, gfp, node, pid, spans, f
            )
        else:
            st = ST_BAD
        if st == ST_LOST and nlost < lost.shape[0]:
            k = pos
            while k < le and not _is_digit(buf[k]):
                k += 1
            cnt = 0
            while k < le and _is_digit(buf[k]):
                cnt = cnt * 10 + (buf[k] - 48)
                k += 1
            lost[nlost, 0] = -1
            lost[nlost, 1] = cnt
            nlost += 1
        if final and not terminated and (st == ST_EVENT or st == ST_MALFORMED or st == ST_BAD):
            st = ST_CUT
        if st == ST_EVENT:
            nev += 1
        if st == ST_BAD and nbad < MAX_BAD_LINES:
            bad_lines[nbad] = line0 + nlines
            nbad += 1
        status_counts[st] += 1
        pos = nxt
    return nev, nlost, nlines, nbad


@njit(cache=True)
def _tsv_line(
    buf: np.ndarray,
    s: int,
    le: int,
    i: int,
    ts: np.ndarray,
    cpu: np.ndarray,
    op: np.ndarray,
    ptr: np.ndarray,
    req: np.ndarray,
    alloc: np.ndarray,
    gfp: np.ndarray,
    node: np.ndarray,
    pid: np.ndarray,
    spans: np.ndarray,
    f: np.ndarray,
) -> int:
    b = s
    while b < le and _is_blank(buf[b]):
        b += 1
    if b == le:
        return ST_BLANK
    if buf[b] == 35:
        return ST_COMMENT
    if _startswith(buf, b, le, _L_ATTACHING):
        return ST_HEADER
    if _startswith(buf, b, le, _L_LOST) and le > b + 5 and _is_digit(buf[b + 5]):
        return ST_LOST
    # 13 fields; the comm (last) may hold anything but a newline
    q = s
    for k in range(12):
        f[2 * k] = q
        q = _tsv_field(buf, q, le)
        f[2 * k + 1] = q
        if q >= le:
            return ST_BAD
        q += 1
    f[24] = q
    f[25] = le
    ok, tv = _parse_uint(buf, f[0], f[1])
    if not ok:
        return ST_BAD
    ok, cv = _parse_uint(buf, f[2], f[3])
    if not ok:
        return ST_BAD
    o = _op_of(buf, f[8], f[9])
    if o < 0:
        return ST_OTHER
    ok, tid = _parse_uint(buf, f[6], f[7])
    if not ok:
        return ST_MALFORMED
    ok, pv = _parse_uint(buf, f[10], f[11])
    if not ok:
        return ST_MALFORMED
    rq = np.uint64(0)
    al = np.uint64(0)
    gv = np.uint64(0)
    nd = np.int64(-1)
    if o == _OP_CACHE_ALLOC or o == _OP_KMALLOC:
        ok1, rq = _parse_uint(buf, f[14], f[15])
        ok2, al = _parse_uint(buf, f[16], f[17])
        ok3, gv = _parse_uint(buf, f[18], f[19])
        ok4, nd = _parse_int(buf, f[20], f[21])
        if not (ok1 and ok2 and ok3 and ok4):
            return ST_MALFORMED
    ts[i] = np.int64(tv)
    cpu[i] = np.int64(cv)
    op[i] = o
    ptr[i] = pv
    req[i] = np.int64(rq)
    alloc[i] = np.int64(al)
    gfp[i] = np.int64(gv & np.uint64(0xFFFFFFFF))
    node[i] = nd
    pid[i] = np.int64(tid)
    spans[i, 0] = f[24]
    spans[i, 1] = f[25]
    spans[i, 2] = f[12]
    spans[i, 3] = f[13]
    if _eq(buf, f[22], f[23], _L_DASH):
        spans[i, 4] = -1
        spans[i, 5] = -1
    else:
        spans[i, 4] = f[22]
        spans[i, 5] = f[23]
    spans[i, 6] = -1
    spans[i, 7] = -1
    return ST_EVENT


# --- interning of string spans --------------------------------------------------------------


@njit(cache=True, nogil=True)
def hash_spans(buf: np.ndarray, spans: np.ndarray, hashes: np.ndarray) -> None:
    """Hash of each of the 4 string spans of every row (0 for an absent span); run by the
    parsing threads, so that the interning in the main thread only probes a table."""
    for r in range(spans.shape[0]):
        for f in range(4):
            s = spans[r, 2 * f]
            hashes[r, f] = np.uint64(0) if s < 0 else _span_hash(buf, s, spans[r, 2 * f + 1])


@njit(cache=True, nogil=True)
def intern_hashes(
    hashes: np.ndarray,  # uint64 [n] (0: absent)
    keys: np.ndarray,  # uint64 [cap], 0 = free slot
    vals: np.ndarray,  # int32 [cap]
    nused: int,
    ids: np.ndarray,  # out int32 [n]: local id per row, -1 for an absent span
    new_rows: np.ndarray,  # out int64: rows where a new distinct string first appears
) -> tuple[int, int]:
    """Give every hash a dense local id through the persistent table; -> (nused, n_new)."""
    mask = np.uint64(len(keys) - 1)
    n_new = 0
    for r in range(len(hashes)):
        h = hashes[r]
        if h == np.uint64(0):
            ids[r] = -1
            continue
        slot = h & mask
        while True:
            k = keys[slot]
            if k == h:
                ids[r] = vals[slot]
                break
            if k == np.uint64(0):
                keys[slot] = h
                vals[slot] = nused
                ids[r] = nused
                nused += 1
                new_rows[n_new] = r
                n_new += 1
                break
            slot = (slot + np.uint64(1)) & mask
    return nused, n_new


@njit(cache=True)
def _rehash(keys: np.ndarray, vals: np.ndarray, nkeys: np.ndarray, nvals: np.ndarray) -> None:
    mask = np.uint64(len(nkeys) - 1)
    for i in range(len(keys)):
        h = keys[i]
        if h == np.uint64(0):
            continue
        slot = h & mask
        while nkeys[slot] != np.uint64(0):
            slot = (slot + np.uint64(1)) & mask
        nkeys[slot] = h
        nvals[slot] = vals[i]


class Interner:
    """One string field's persistent hash table: span -> local id -> caller's final id.

    ``resolve(text)`` is called once per distinct byte string and returns the final value
    (a StringTable id, gfp bits, ...); ``final`` maps local ids to those values.
    """

    def __init__(self, resolve: Callable[[bytes], int], dtype: type = np.int32):
        self.keys = np.zeros(1024, np.uint64)
        self.vals = np.zeros(1024, np.int32)
        self.nused = 0
        self.resolve = resolve
        self.final: np.ndarray = np.zeros(256, dtype)
        self.values: list[bytes] = []  # local id -> the raw bytes

    def _reserve(self, n: int) -> None:
        need = 2 * (self.nused + n)
        cap = len(self.keys)
        if need <= cap:
            return
        while cap < need:
            cap *= 2
        nkeys = np.zeros(cap, np.uint64)
        nvals = np.zeros(cap, np.int32)
        _rehash(self.keys, self.vals, nkeys, nvals)
        self.keys, self.vals = nkeys, nvals

    def map(
        self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, hashes: np.ndarray
    ) -> np.ndarray:
        """Final values for the spans (rows with start -1 get -1)."""
        n = len(starts)
        self._reserve(n)
        ids = np.empty(n, np.int32)
        new_rows = np.empty(n, np.int64)
        before = self.nused
        self.nused, n_new = intern_hashes(hashes, self.keys, self.vals, self.nused, ids, new_rows)
        if n_new:
            if len(self.final) < self.nused:
                grown = np.zeros(max(self.nused, 2 * len(self.final)), self.final.dtype)
                grown[: len(self.final)] = self.final
                self.final = grown
            for j, r in enumerate(new_rows[:n_new]):
                raw = buf[starts[r] : ends[r]].tobytes()
                self.values.append(raw)
                self.final[before + j] = self.resolve(raw)
        out = np.full(n, -1, self.final.dtype)
        present = ids >= 0
        out[present] = self.final[ids[present]]
        return out


# --- the block driver -----------------------------------------------------------------------

#: Bytes of decompressed text parsed per kernel call (cut at the last newline).
BLOCK_BYTES = 16 << 20
_PIECE_BYTES = 4 << 20
#: A "line" longer than this is not text: the input is refused rather than buffered whole.
MAX_LINE_BYTES = 64 << 20
#: A block smaller than this is parsed by one thread.
MIN_SPLIT_BYTES = 1 << 20


@dataclass
class Block:
    """One parsed block: the numpy view it was parsed from and the kernel's outputs."""

    buf: np.ndarray
    n: int  # events
    ts: np.ndarray
    tsfrac: np.ndarray
    cpu: np.ndarray
    op: np.ndarray
    ptr: np.ndarray
    req: np.ndarray
    alloc: np.ndarray
    node: np.ndarray
    pid: np.ndarray
    ptrform: np.ndarray
    spans: np.ndarray
    hashes: np.ndarray  # uint64 [n, 4]: hashes of the 4 spans
    gfp: np.ndarray | None  # bits, only from the tsv kernel
    lost: np.ndarray  # [k, 2]


@dataclass
class ScanStats:
    status: np.ndarray = field(default_factory=lambda: np.zeros(N_STATUS, np.int64))
    lines: int = 0
    bad_lines: np.ndarray = field(default_factory=lambda: np.zeros(MAX_BAD_LINES, np.int64))
    nbad: int = 0
    bytes_read: int = 0
    truncated: str | None = None  # the decompression error, when the input was cut


def _blocks(
    source: Source, options: ReadOptions
) -> Iterator[tuple[bytearray, int, bool, int, str | None]]:
    """Whole-line blocks of decompressed text -> (buffer, length used, last block?, bytes read,
    damage); ``damage`` is the decompression error of a truncated input read with --salvage.

    Each block is a fresh buffer filled in place (``readinto1``: one underlying read per call,
    so a decompression error loses nothing read before it); only the partial last line is
    copied, to the front of the next buffer.
    """
    errors = source.decompression_errors()
    carry = b""
    nread = 0
    fh: BinaryIO = source.open()
    # (typing.BinaryIO does not declare readinto, every stream Source.open returns has it)
    readinto1 = getattr(fh, "readinto1", None) or getattr(fh, "readinto")  # noqa: B009
    try:
        while True:
            damage = None
            buf = bytearray(len(carry) + BLOCK_BYTES)
            buf[: len(carry)] = carry
            view = memoryview(buf)
            got = len(carry)
            while got < len(buf):
                try:
                    k = readinto1(view[got : min(len(buf), got + _PIECE_BYTES)])
                except errors as e:
                    if not options.salvage:
                        raise InputError(
                            f"truncated or corrupt compressed data ({source.compression}): {e}",
                            source.display,
                        ) from None
                    damage = str(e) or type(e).__name__
                    break
                if not k:
                    break
                got += k
            view.release()
            nread += got - len(carry)
            if damage is not None or got < len(buf):  # end of input
                yield buf, got, True, nread, damage
                return
            cut = buf.rfind(b"\n", 0, got)
            if cut < 0:  # one line longer than a block: keep growing it, within reason
                if got > MAX_LINE_BYTES:
                    raise InputError(
                        f"not a text trace: no line end in {got >> 20} MB", source.display
                    )
                carry = bytes(buf[:got])
                continue
            carry = bytes(buf[cut + 1 : got])
            yield buf, cut + 1, False, nread, None
    finally:
        fh.close()


_DONE = object()


def _prefetch(it: Iterator[Any]) -> Iterator[Any]:
    """Run ``it`` one item ahead in a thread: decompression (which releases the GIL) overlaps
    the parsing of the previous block."""
    q: queue.Queue[Any] = queue.Queue(maxsize=1)

    def produce() -> None:
        try:
            for item in it:
                q.put((item, None))
        except BaseException as e:  # handed to the consumer, raised there
            q.put((None, e))
        q.put((_DONE, None))

    t = threading.Thread(target=produce, name="sheaftune-text-read", daemon=True)
    t.start()
    while True:
        item, err = q.get()
        if err is not None:
            raise err
        if item is _DONE:
            break
        yield item
    t.join()


def _parts(data: bytearray, size: int, n: int) -> list[tuple[int, int]]:
    """Cut ``data[:size]`` into about ``n`` ranges of whole lines."""
    if n <= 1 or size < MIN_SPLIT_BYTES:
        return [(0, size)]
    out = []
    start = 0
    for k in range(1, n):
        cut = data.find(b"\n", max(start, size * k // n), size)
        if cut < 0:
            break
        out.append((start, cut + 1))
        start = cut + 1
    out.append((start, size))
    return [p for p in out if p[1] > p[0]]


def _scan_part(
    buf: np.ndarray, start: int, stop: int, final: bool, tsv: bool
) -> tuple[Block, np.ndarray, np.ndarray, int, int]:
    # An event line takes at least 19 bytes ("1 [0] 1:kfree:ptr=0"; a kmem-tsv one more), so
    # this bounds the events without counting lines first; pages never written are never
    # committed. (Lost markers can be shorter: the kernels drop the details beyond this.)
    rows = (stop - start) // 16 + 2
    line0 = 0
    ts = np.empty(rows, np.int64)
    tsfrac = np.zeros(rows, np.int8)
    cpu = np.empty(rows, np.int32)
    op = np.empty(rows, np.uint8)
    ptr = np.empty(rows, np.uint64)
    req = np.empty(rows, np.int64)
    alloc = np.empty(rows, np.int64)
    node = np.empty(rows, np.int32)
    pid = np.empty(rows, np.int32)
    ptrform = np.zeros(rows, np.uint8)
    spans = np.empty((rows, 8), np.int32)
    lost = np.empty((rows, 2), np.int64)
    status = np.zeros(N_STATUS, np.int64)
    bad = np.zeros(MAX_BAD_LINES, np.int64)
    gfp: np.ndarray | None = None
    if tsv:
        gfp = np.empty(rows, np.int64)
        nev, nlost, nlines, nbad = scan_tsv(
            buf, start, stop, final, line0, ts, cpu, op, ptr, req, alloc, gfp, node, pid,
            spans, status, lost, bad, 0,
        )  # fmt: skip
        gfp = gfp[:nev]
    else:
        nev, nlost, nlines, nbad = scan_text(
            buf, start, stop, final, line0, ts, tsfrac, cpu, op, ptr, req, alloc, node, pid,
            ptrform, spans, status, lost, bad, 0,
        )  # fmt: skip
    spans = spans[:nev]
    hashes = np.empty((nev, 4), np.uint64)
    hash_spans(buf, spans, hashes)
    blk = Block(
        buf, nev, ts[:nev], tsfrac[:nev], cpu[:nev], op[:nev], ptr[:nev], req[:nev],
        alloc[:nev], node[:nev], pid[:nev], ptrform[:nev], spans, hashes, gfp, lost[:nlost],
    )  # fmt: skip
    return blk, status, bad[:nbad], nlines, nev


def _concat(blocks: list[Block]) -> Block:
    if len(blocks) == 1:
        return blocks[0]
    b0 = blocks[0]
    cat = np.concatenate
    arrays = {k: cat([getattr(b, k) for b in blocks]) for k in _BLOCK_ARRAYS}
    return Block(
        buf=b0.buf,
        n=sum(b.n for b in blocks),
        gfp=cat([b.gfp for b in blocks if b.gfp is not None]) if b0.gfp is not None else None,
        lost=cat([b.lost for b in blocks]),
        **arrays,
    )


_BLOCK_ARRAYS = (
    "ts", "tsfrac", "cpu", "op", "ptr", "req", "alloc", "node", "pid", "ptrform", "spans",
    "hashes",
)  # fmt: skip


def scan_source(
    source: Source, options: ReadOptions, stats: ScanStats, tsv: bool = False
) -> Iterator[Block]:
    """Parse the source block by block with the text (or kmem-tsv) kernel.

    Each block is cut into one range of lines per CPU (up to 4) and the ranges are parsed by
    threads at once: the kernels release the GIL.
    """
    nthreads = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=nthreads) as pool:
        for data, used, final, nread, damage in _prefetch(_blocks(source, options)):
            stats.bytes_read = nread
            if damage is not None:
                stats.truncated = damage
            if options.progress is not None:
                options.progress(nread, source.size if not source.compression else None)
            if not used:
                continue
            buf = np.frombuffer(data, np.uint8, count=used)
            parts = _parts(data, used, nthreads)
            jobs = []
            for k, (a, b) in enumerate(parts):
                last = k == len(parts) - 1
                jobs.append(pool.submit(_scan_part, buf, a, b, final and last, tsv))
            results = [j.result() for j in jobs]
            for _, status, bad, nlines, _ in results:
                stats.status += status
                for x in bad:  # line numbers within the part -> within the input
                    if stats.nbad < MAX_BAD_LINES:
                        stats.bad_lines[stats.nbad] = stats.lines + x
                        stats.nbad += 1
                stats.lines += nlines
            yield _concat([r[0] for r in results])


def ts_to_ns(ts: np.ndarray, tsfrac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Printed time stamps -> ns, exactly from the digits: seconds with ``f`` fraction digits
    are ``digits * 10**(9-f)``; raw integers (``f`` 0) stay as they are (clock ticks).

    -> (ts_ns, resolution_ns per row).
    """
    frac = tsfrac.astype(np.int64)
    scale = np.where(frac > 0, 10 ** np.clip(9 - frac, 0, 9), 1).astype(np.int64)
    return ts * scale, scale


# --- the reader-facing driver ---------------------------------------------------------------

_UNKNOWN_GFP = 1 << 40  # marks gfp values that held a flag name the table does not know


@dataclass
class TextFacts:
    """What the scan saw beyond the events, for the reader to turn into TraceMeta."""

    stats: ScanStats
    frac_digits: dict[int, int]  # fraction digits of the time stamps -> events
    ptr_forms: int  # PTR_BARE | PTR_0X seen
    ptr_high: bool  # a non-NULL pointer with any of the upper 32 bits set
    ptr_nonnull: int
    buffers: dict[str, int]  # instance/file-name prefixes (report) -> events seen
    max_cpu: int


def _resolve_gfp(raw: bytes, unknown: dict[str, int]) -> int:
    text = raw.decode("ascii", "replace")
    try:
        return parse_gfp(text)
    except ValueError:
        pass
    bits = 0
    bad = False
    for part in text.split("|"):
        try:
            bits |= parse_gfp(part)
        except ValueError:
            unknown[part] = unknown.get(part, 0)
            bad = True
    return bits | (_UNKNOWN_GFP if bad else 0)


def read_text(
    source: Source,
    options: ReadOptions,
    meta: TraceMeta,
    *,
    what: str,
    normalize_site: Callable[[str], str],
    split_comm: Callable[[str], tuple[str | None, str]] | None = None,
    tsv: bool = False,
) -> tuple[EventTable, TextFacts]:
    """Scan a text source into an EventTable (sorted by time) and the facts around it.

    ``normalize_site`` turns one distinct call_site text into the site string; ``split_comm``
    (trace-cmd report) splits an instance/file-name prefix off a comm: the top buffer's events
    are kept (or those of ``options.buffer``), others are counted as skipped. Raises InputError
    for an input with no kmem event in it.
    """
    builder = EventTableBuilder(meta)
    stats = ScanStats()
    unknown_gfp: dict[str, int] = {}
    buffer_names: list[str | None] = [None]  # index 0: the top buffer

    def comm_value(raw: bytes) -> int:
        text = raw.decode("utf-8", "replace")
        buf_name: str | None = None
        if split_comm is not None:
            buf_name, text = split_comm(text)
        if buf_name not in buffer_names:
            buffer_names.append(buf_name)
        return (buffer_names.index(buf_name) << 32) | builder.comms.intern(text)

    sites = Interner(
        lambda raw: builder.sites.intern(normalize_site(raw.decode("utf-8", "replace")))
    )
    caches = Interner(lambda raw: builder.caches.intern(raw.decode("utf-8", "replace")))
    comms = Interner(comm_value, np.int64)
    gfps = Interner(lambda raw: _resolve_gfp(raw, unknown_gfp), np.int64)
    want_buffer = 0
    frac_digits: dict[int, int] = {}
    ptr_forms = 0
    ptr_high = False
    ptr_nonnull = 0
    buffer_events: dict[int, int] = {}
    unknown_gfp_events = 0
    max_cpu = -1

    for blk in scan_source(source, options, stats, tsv=tsv):
        for c, cnt in blk.lost:
            c = int(c)
            meta.lost_markers[c] = meta.lost_markers.get(c, 0) + 1
            if cnt >= 0:
                meta.lost_events[c] = meta.lost_events.get(c, 0) + int(cnt)
        if blk.n == 0:
            continue
        sp = blk.spans
        hs = blk.hashes
        comm_v = comms.map(blk.buf, sp[:, 0], sp[:, 1], hs[:, 0])
        site_id = sites.map(blk.buf, sp[:, 2], sp[:, 3], hs[:, 1])
        cache_id = caches.map(blk.buf, sp[:, 4], sp[:, 5], hs[:, 2])
        if blk.gfp is not None:
            gfp = blk.gfp
        else:
            gfp = gfps.map(blk.buf, sp[:, 6], sp[:, 7], hs[:, 3])
            gfp[gfp < 0] = 0
            bad = (gfp & _UNKNOWN_GFP) != 0
            if bad.any():
                unknown_gfp_events += int(np.count_nonzero(bad))
                gfp &= ~np.int64(_UNKNOWN_GFP)
        if tsv:
            ts_ns = blk.ts
            frac_digits[9] = frac_digits.get(9, 0) + blk.n
        else:
            ts_ns, _ = ts_to_ns(blk.ts, blk.tsfrac)
            for f, cnt in zip(*np.unique(blk.tsfrac, return_counts=True), strict=True):
                frac_digits[int(f)] = frac_digits.get(int(f), 0) + int(cnt)
        forms = np.bitwise_or.reduce(blk.ptrform) if len(blk.ptrform) else 0
        ptr_forms |= int(forms)
        nonnull = blk.ptr != 0
        ptr_nonnull += int(np.count_nonzero(nonnull))
        if not ptr_high and bool(np.any((blk.ptr >> np.uint64(32)) != 0)):
            ptr_high = True
        max_cpu = max(max_cpu, int(blk.cpu.max()))
        cols = {
            "ts_ns": ts_ns,
            "cpu": blk.cpu,
            "op": blk.op,
            "cache_id": cache_id,
            "ptr": blk.ptr,
            "bytes_req": blk.req,
            "bytes_alloc": blk.alloc,
            "gfp": gfp,
            "node": blk.node,
            "site_id": site_id,
            "pid": blk.pid,
            "comm_id": comm_v & 0xFFFFFFFF,
        }
        buf_idx = comm_v >> 32
        if len(buffer_names) > 1:
            if options.buffer is not None:
                want_buffer = (
                    buffer_names.index(options.buffer) if options.buffer in buffer_names else -1
                )
            counts = np.bincount(buf_idx, minlength=len(buffer_names))
            for b, cnt in enumerate(counts):
                if cnt:
                    buffer_events[b] = buffer_events.get(b, 0) + int(cnt)
            keep = buf_idx == want_buffer
            if not keep.all():
                meta.skip("event of another buffer", int(np.count_nonzero(~keep)))
                cols = {k: v[keep] for k, v in cols.items()}
        builder.add_chunk(cols)

    for st, reason in SKIP_REASONS.items():
        meta.skip(reason, int(stats.status[st]))
    if stats.status[ST_BAD]:
        first = ", ".join(str(int(x)) for x in stats.bad_lines[: stats.nbad])
        meta.warnings.append(
            f"{int(stats.status[ST_BAD])} lines are not {what} lines and were skipped "
            f"(first at line {first})"
        )
    if stats.status[ST_MALFORMED]:
        meta.warnings.append(
            f"{int(stats.status[ST_MALFORMED])} kmem event lines have fields that do not parse "
            "and were skipped"
        )
    if stats.status[ST_CUT]:
        meta.warnings.append("the last line has no newline (cut off mid-write?): skipped")
    if unknown_gfp:
        names = ", ".join(sorted(unknown_gfp))
        meta.warnings.append(
            f"{unknown_gfp_events} events have gfp flag names this version does not know "
            f"({names}): those flags were ignored, the known ones kept"
        )
        meta.extra["unknown_gfp_events"] = unknown_gfp_events
    if stats.truncated is not None:
        meta.complete = False
        meta.warnings.append(
            f"compressed input is truncated or corrupt ({stats.truncated}): "
            f"read {stats.lines} lines before the damage"
        )
    if options.buffer is not None and split_comm is None:
        meta.warnings.append(
            f"--buffer {options.buffer} ignored: {meta.format} input has one buffer"
        )
    instances = [b for b in buffer_names if b is not None]
    if instances:
        meta.buffers = [""] + instances
        meta.buffer = options.buffer
        for b, cnt in buffer_events.items():
            if b != want_buffer:
                label = buffer_names[b] or "top buffer"
                meta.warnings.append(f"skipped {cnt} events of buffer {label!r}")

    if builder.rows == 0:
        others = {buffer_names[b]: c for b, c in buffer_events.items() if b != want_buffer}
        if others:
            listing = ", ".join(f"{name!r} ({c} events)" for name, c in others.items())
            wanted = "the top buffer" if options.buffer is None else repr(options.buffer)
            raise InputError(
                f"no events in {wanted}; the file holds {listing}: choose one with --buffer",
                source.display,
            )
        _nothing_read(source, stats, what, meta)
    # file order per CPU first (the chunks keep it within each CPU), to count clock steps back
    table = builder.build(sort=False)
    note_backwards(meta, backwards_per_cpu(table.ts_ns, table.cpu))
    table = table.sorted_by_time()
    facts = TextFacts(
        stats=stats,
        frac_digits=frac_digits,
        ptr_forms=ptr_forms,
        ptr_high=ptr_high,
        ptr_nonnull=ptr_nonnull,
        buffers={(buffer_names[b] or ""): c for b, c in buffer_events.items()},
        max_cpu=max_cpu,
    )
    return table, facts


def _nothing_read(source: Source, stats: ScanStats, what: str, meta: TraceMeta) -> None:
    """No event was kept: say why in one line (InputError), or accept an empty trace."""
    st = stats.status
    if stats.lines == 0:
        raise InputError("file is empty", source.display)
    if st[ST_OTHER]:
        raise InputError(
            f"no kmem events: {int(st[ST_OTHER])} events of other tracepoints, none of "
            "kmalloc, kfree, kmem_cache_alloc, kmem_cache_free",
            source.display,
        )
    if st[ST_MALFORMED]:
        raise InputError(
            f"no kmem events: {int(st[ST_MALFORMED])} kmem event lines, none with fields "
            "that parse",
            source.display,
        )
    if st[ST_BAD]:
        first = int(stats.bad_lines[0])
        raise InputError(
            f"no kmem events: not {what} (line {first} does not parse)", source.display
        )
    if st[ST_CUT]:
        raise InputError("no kmem events: the only event line is cut off", source.display)
    if not meta.complete:
        return
    meta.warnings.append("the trace holds no events")


def text_ts_meta(meta: TraceMeta, facts: TextFacts, raw_clock_note: str) -> None:
    """Time stamp semantics from the fraction digits seen: 6 -> µs, 9 -> ns, 0 -> raw ticks."""
    if not facts.frac_digits:
        return
    forms = sorted(facts.frac_digits)
    if len(forms) > 1:
        meta.warnings.append(
            "time stamps are printed in mixed forms "
            + ", ".join(f"{f} decimals: {facts.frac_digits[f]}" for f in forms)
        )
    main = max(facts.frac_digits, key=lambda f: facts.frac_digits[f])
    if main == 0:
        meta.ts_is_ns = False
        meta.ts_resolution_ns = 1
        meta.warnings.append(raw_clock_note)
    else:
        meta.ts_is_ns = True
        meta.ts_resolution_ns = 10 ** (9 - main)


__all__ = [
    "BLOCK_BYTES",
    "SKIP_REASONS",
    "Interner",
    "ScanStats",
    "TextFacts",
    "read_text",
    "scan_source",
    "text_ts_meta",
    "ts_to_ns",
]
