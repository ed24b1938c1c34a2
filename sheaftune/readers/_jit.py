"""Compiled (numba) kernels of the binary readers: ring-buffer page walk, kallsyms scan, merge.

Imported only from inside ``read()`` paths (``sheaftune.readers.ringbuffer`` and
``sheaftune.readers.kallsyms`` import it lazily), so ``import sheaftune.readers`` and
``sheaftune --help`` never pay for numba. Every kernel bounds-checks each length it reads against
the bytes that remain, so a hostile page can stop a walk but never send it out of its buffer or
into an endless loop (every step advances by at least four bytes).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# field slots of a compiled layout (rows of ``layouts[i]``)
F_PID = 0
F_SITE = 1
F_PTR = 2
F_REQ = 3
F_ALLOC = 4
F_GFP = 5
F_NODE = 6
F_NAME = 7
NFIELDS = 8

# field kinds (column 2 of a layout row)
K_ABSENT = 0
K_UINT = 1
K_SINT = 2
K_DATA_LOC = 3  # u32: offset | len << 16, offset from payload start
K_REL_LOC = 4  # u32: offset | len << 16, offset from the end of the field
K_DATA_LOC16 = 5  # u16 offset only (very old kernels): data runs to the end of the payload
K_CHARS = 6  # fixed char array

# stats slots
S_ROWS = 0
S_NEXT_PAGE = 1
S_ERR = 2  # 0 ok, else one of E_*
S_ERR_PAGE = 3
S_ERR_OFF = 4
S_MARKS = 5
S_UNKNOWN_ID = 6
S_SHORT = 7
S_BAD_PAGES = 8
S_RECORDS = 9
S_DISCARDED = 10
S_ROWS_LOST_BAD = 11  # not used by the kernel; room for callers
NSTATS = 12

E_COMMIT = 1  # page commit size larger than the page
E_HEADER = 2  # record header runs past the committed data
E_LENGTH = 3  # record length runs past the committed data
E_LEN0 = 4  # type_len 0 record with a length word below 4

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_M27 = np.uint64(0x07FFFFFF)
_TOP5 = np.uint64(0x1F) << np.uint64(59)


@njit(cache=True, nogil=True, inline="always")
def _rd(buf, p, size, big):  # type: ignore[no-untyped-def]
    # explicit shifts per width: LLVM folds them into single (byte-swapped) loads
    if size == 8:
        b0 = np.uint64(buf[p])
        b1 = np.uint64(buf[p + 1])
        b2 = np.uint64(buf[p + 2])
        b3 = np.uint64(buf[p + 3])
        b4 = np.uint64(buf[p + 4])
        b5 = np.uint64(buf[p + 5])
        b6 = np.uint64(buf[p + 6])
        b7 = np.uint64(buf[p + 7])
        if big:
            return (
                (b0 << np.uint64(56))
                | (b1 << np.uint64(48))
                | (b2 << np.uint64(40))
                | (b3 << np.uint64(32))
                | (b4 << np.uint64(24))
                | (b5 << np.uint64(16))
                | (b6 << np.uint64(8))
                | b7
            )
        return (
            (b7 << np.uint64(56))
            | (b6 << np.uint64(48))
            | (b5 << np.uint64(40))
            | (b4 << np.uint64(32))
            | (b3 << np.uint64(24))
            | (b2 << np.uint64(16))
            | (b1 << np.uint64(8))
            | b0
        )
    if size == 4:
        b0 = np.uint64(buf[p])
        b1 = np.uint64(buf[p + 1])
        b2 = np.uint64(buf[p + 2])
        b3 = np.uint64(buf[p + 3])
        if big:
            return (b0 << np.uint64(24)) | (b1 << np.uint64(16)) | (b2 << np.uint64(8)) | b3
        return (b3 << np.uint64(24)) | (b2 << np.uint64(16)) | (b1 << np.uint64(8)) | b0
    if size == 2:
        b0 = np.uint64(buf[p])
        b1 = np.uint64(buf[p + 1])
        if big:
            return (b0 << np.uint64(8)) | b1
        return (b1 << np.uint64(8)) | b0
    if size == 1:
        return np.uint64(buf[p])
    v = np.uint64(0)
    if big:
        for i in range(size):
            v = (v << np.uint64(8)) | np.uint64(buf[p + i])
    else:
        for i in range(size - 1, -1, -1):
            v = (v << np.uint64(8)) | np.uint64(buf[p + i])
    return v


@njit(cache=True, nogil=True, inline="always")
def _sext(v, size):  # type: ignore[no-untyped-def]
    bits = size * 8
    if bits >= 64:
        return np.int64(v)
    if (v >> np.uint64(bits - 1)) & np.uint64(1):
        return np.int64(v) - (np.int64(1) << np.int64(bits))
    return np.int64(v)


@njit(cache=True, nogil=True)
def walk_pages(  # type: ignore[no-untyped-def]
    buf,
    first_page,
    npages,
    page_size,
    hdr_len,
    long_size,
    big,
    evmap,
    layouts,
    lay_op,
    lay_min,
    salvage,
    o_ts,
    o_op,
    o_pid,
    o_site,
    o_ptr,
    o_req,
    o_alloc,
    o_gfp,
    o_node,
    o_nhash,
    o_npos,
    o_nlen,
    m_ts,
    m_cnt,
    m_row,
    stats,
):
    """Walk pages ``first_page..npages-1`` of ``buf``, appending kmem events to the outputs.

    Stops early, before a page, when the outputs could overflow; ``stats[S_NEXT_PAGE]`` says
    where to resume. In strict mode the first corrupt page stops the walk with ``stats[S_ERR]``
    set; with ``salvage`` the rest of that page is skipped and counted in ``S_BAD_PAGES``.
    """
    cap = o_ts.shape[0]
    mcap = m_ts.shape[0]
    n = 0
    nm = 0
    data_len = page_size - hdr_len
    max_rows_page = data_len // 8 + 1
    nev = evmap.shape[0]
    pg = first_page
    while pg < npages:
        if n + max_rows_page > cap or nm >= mcap:
            break
        p0 = pg * page_size
        ts = _rd(buf, p0, 8, big)
        commit = _rd(buf, p0 + 8, long_size, big)
        size = np.int64(commit & _M27)
        base = p0 + hdr_len
        if size > data_len:
            if not salvage:
                stats[S_ERR] = E_COMMIT
                stats[S_ERR_PAGE] = pg
                stats[S_ERR_OFF] = p0 + 8
                break
            stats[S_BAD_PAGES] += 1
            pg += 1
            continue
        has_missed = (commit >> np.uint64(31)) & np.uint64(1)
        missed = np.int64(-1)
        if has_missed and (commit >> np.uint64(30)) & np.uint64(1):
            if size + long_size <= data_len:
                missed = np.int64(_rd(buf, base + size, long_size, big))
        end = base + size
        p = base
        first = True
        err = 0
        while p < end:
            if p + 4 > end:
                err = E_HEADER
                break
            w = _rd(buf, p, 4, big)
            if big:
                tl = np.int64(w >> np.uint64(27))
                d = w & _M27
            else:
                tl = np.int64(w & np.uint64(31))
                d = w >> np.uint64(5)
            if tl >= 29:
                if tl == 29 and d == 0:
                    break  # padding: the rest of the page is unused
                if p + 8 > end:
                    err = E_HEADER
                    break
                a0 = _rd(buf, p + 4, 4, big)
                if tl == 29:  # discarded record: skip it, keep its delta
                    ln = np.int64(a0)
                    if p + 4 + ln > end:
                        err = E_LENGTH
                        break
                    ts += d
                    p += 4 + ln
                    stats[S_DISCARDED] += 1
                elif tl == 30:  # time extend
                    ts += (a0 << np.uint64(27)) + d
                    p += 8
                else:  # absolute time stamp: 59 bits, keep the top 5 of the running time
                    ts = ((a0 << np.uint64(27)) | d) | (ts & _TOP5)
                    p += 8
                continue
            ts += d
            if tl == 0:
                if p + 8 > end:
                    err = E_HEADER
                    break
                a0 = np.int64(_rd(buf, p + 4, 4, big))
                if a0 < 4:
                    err = E_LEN0
                    break
                ln = (a0 - 4 + 3) & ~np.int64(3)
                pl = p + 8
            else:
                ln = tl * 4
                pl = p + 4
            if pl + ln > end:
                err = E_LENGTH
                break
            p = pl + ln
            stats[S_RECORDS] += 1
            if first:
                first = False
                if has_missed:
                    m_ts[nm] = np.int64(ts)
                    m_cnt[nm] = missed
                    m_row[nm] = n
                    nm += 1
            if ln < 2:
                stats[S_SHORT] += 1
                continue
            etype = np.int64(_rd(buf, pl, 2, big))
            if etype >= nev:
                stats[S_UNKNOWN_ID] += 1
                continue
            li = evmap[etype]
            if li < 0:
                if li == -2:
                    stats[S_UNKNOWN_ID] += 1
                continue
            if ln < lay_min[li]:
                stats[S_SHORT] += 1
                continue
            lay = layouts[li]
            o_ts[n] = np.int64(ts)
            o_op[n] = lay_op[li]
            # fixed numeric fields
            for f in range(7):
                kind = lay[f, 2]
                if kind == K_ABSENT:
                    v = np.int64(-1) if f == F_NODE else np.int64(0)
                else:
                    u = _rd(buf, pl + lay[f, 0], lay[f, 1], big)
                    if kind == K_SINT:
                        v = _sext(u, lay[f, 1])
                    else:
                        v = np.int64(u)
                if f == F_PID:
                    o_pid[n] = v
                elif f == F_SITE:
                    o_site[n] = np.uint64(v)
                elif f == F_PTR:
                    o_ptr[n] = np.uint64(v)
                elif f == F_REQ:
                    o_req[n] = min(np.uint64(v), np.uint64(0xFFFFFFFF))
                elif f == F_ALLOC:
                    o_alloc[n] = min(np.uint64(v), np.uint64(0xFFFFFFFF))
                elif f == F_GFP:
                    o_gfp[n] = np.uint64(v) & np.uint64(0xFFFFFFFF)
                else:
                    o_node[n] = v
            # the cache name: a dynamic string, hashed here and materialised once per value
            kind = lay[F_NAME, 2]
            h = np.uint64(0)
            spos = np.int64(0)
            slen = np.int64(0)
            if kind != K_ABSENT:
                foff = lay[F_NAME, 0]
                fsz = lay[F_NAME, 1]
                if kind == K_CHARS:
                    so = foff
                    sl = fsz
                elif kind == K_DATA_LOC16:
                    so = np.int64(_rd(buf, pl + foff, 2, big))
                    sl = ln - so
                else:
                    v32 = _rd(buf, pl + foff, 4, big)
                    so = np.int64(v32 & np.uint64(0xFFFF))
                    sl = np.int64(v32 >> np.uint64(16))
                    if kind == K_REL_LOC:
                        so += foff + fsz
                if so >= 0 and sl > 0 and so + sl <= ln:
                    spos = pl + so
                    k = 0
                    while k < sl and buf[spos + k] != 0:
                        k += 1
                    slen = k
                    if slen > 0:
                        h = _FNV_OFFSET
                        for j in range(slen):
                            h = (h ^ np.uint64(buf[spos + j])) * _FNV_PRIME
                        if h == 0:
                            h = np.uint64(1)
            o_nhash[n] = h
            o_npos[n] = spos
            o_nlen[n] = slen
            n += 1
        if err != 0:
            if not salvage:
                stats[S_ERR] = err
                stats[S_ERR_PAGE] = pg
                stats[S_ERR_OFF] = p
                break
            stats[S_BAD_PAGES] += 1
        pg += 1
    stats[S_ROWS] = n
    stats[S_MARKS] = nm
    stats[S_NEXT_PAGE] = pg
    return n


@njit(cache=True, nogil=True)
def merge_order(ts, bounds):  # type: ignore[no-untyped-def]
    """k-way merge of per-CPU streams (``ts[bounds[c]:bounds[c+1]]``) as trace-cmd does it.

    At each step the CPU whose next record has the strictly smallest time wins, scanning CPUs in
    ascending order, so ties go to the lowest CPU, even when a stream is not monotonic.
    """
    k = bounds.shape[0] - 1
    total = bounds[k]
    pos = bounds[:k].copy()
    out = np.empty(total, dtype=np.int64)
    for i in range(total):
        best = -1
        bt = np.int64(0)
        for c in range(k):
            if pos[c] < bounds[c + 1]:
                t = ts[pos[c]]
                if best < 0 or t < bt:
                    best = c
                    bt = t
        out[i] = pos[best]
        pos[best] += 1
    return out


@njit(cache=True, nogil=True)
def scan_kallsyms(data):  # type: ignore[no-untyped-def]
    """Lines ``ADDR TYPE NAME[\\t[MODULE]]`` -> (addr, type, name start, name end, in module).

    Malformed lines are skipped. Names are not materialised here: only the few symbols that
    call sites hit become Python strings.
    """
    n = data.shape[0]
    lines = 1
    for i in range(n):
        if data[i] == 10:
            lines += 1
    addr = np.empty(lines, dtype=np.uint64)
    typ = np.empty(lines, dtype=np.uint8)
    ns = np.empty(lines, dtype=np.int64)
    ne = np.empty(lines, dtype=np.int64)
    cnt = 0
    i = 0
    while i < n:
        # one line: [i, j)
        j = i
        while j < n and data[j] != 10:
            j += 1
        p = i
        a = np.uint64(0)
        digits = 0
        while p < j:
            c = data[p]
            if 48 <= c <= 57:
                dv = c - 48
            elif 97 <= c <= 102:
                dv = c - 87
            elif 65 <= c <= 70:
                dv = c - 55
            else:
                break
            a = (a << np.uint64(4)) | np.uint64(dv)
            digits += 1
            p += 1
        if 0 < digits <= 16 and p + 2 < j and data[p] == 32 and data[p + 2] == 32:
            t = data[p + 1]
            q = p + 3
            s = q
            while q < j and data[q] != 9 and data[q] != 32 and data[q] != 13:
                q += 1
            if q > s:
                addr[cnt] = a
                typ[cnt] = t
                ns[cnt] = s
                ne[cnt] = q
                cnt += 1
        i = j + 1
    return addr[:cnt], typ[:cnt], ns[:cnt], ne[:cnt]


@njit(cache=True, nogil=True)
def factorize(vals):  # type: ignore[no-untyped-def]
    """(codes, first index of each distinct value) in order of first appearance: O(n) hashing.

    The distinct values are ``vals[first]``; ``codes[i]`` indexes them. Faster than a sort-based
    ``np.unique`` on the few-distinct-values columns of a trace (call sites, caches, pids).
    """
    n = vals.shape[0]
    bits = 10
    cap = 1 << bits
    keys = np.empty(cap, dtype=np.uint64)
    slot = np.full(cap, -1, dtype=np.int64)
    first = np.empty(max(n, 1), dtype=np.int64)
    codes = np.empty(n, dtype=np.int32)
    nu = 0
    for i in range(n):
        v = np.uint64(vals[i])
        mask = cap - 1
        j = np.int64((v * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits))
        while True:
            c = slot[j]
            if c < 0:
                slot[j] = nu
                keys[j] = v
                first[nu] = i
                codes[i] = nu
                nu += 1
                if nu * 2 > cap:  # grow and rehash
                    bits += 1
                    cap = 1 << bits
                    nkeys = np.empty(cap, dtype=np.uint64)
                    nslot = np.full(cap, -1, dtype=np.int64)
                    for k in range(cap >> 1):
                        if slot[k] >= 0:
                            kv = keys[k]
                            jj = np.int64(
                                (kv * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits)
                            )
                            while nslot[jj] >= 0:
                                jj = (jj + 1) & (cap - 1)
                            nslot[jj] = slot[k]
                            nkeys[jj] = kv
                    keys = nkeys
                    slot = nslot
                break
            if keys[j] == v:
                codes[i] = c
                break
            j = (j + 1) & mask
    return codes, first[:nu]
