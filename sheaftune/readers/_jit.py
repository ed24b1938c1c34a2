"""Compiled (numba) kernels of the binary readers: ring-buffer page walk, zstd chunk index,
k-way merge, call-site factorizing, kallsyms lookup.

Nothing imports this module but :mod:`sheaftune.compiled` (and tests): callers get the kernels
from ``sheaftune.readers.tracedat_fast.reader_kernels()``, which is the ahead-of-time build of
``AOT_EXPORTS`` (numba is not imported) or, failing that, this module under numba's JIT. The
exported kernels allocate nothing (``_nrt=False``: every array comes from the caller, with the
exact dtypes the signatures fix) and release the GIL, so the reader runs them on threads. The
constants shared with callers live in :mod:`sheaftune.readers._kconst`. Every kernel
bounds-checks each length it reads against the bytes that remain, so a hostile page can stop a
walk but never send it out of its buffer or into an endless loop (every step advances by at
least four bytes).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sheaftune.readers._kconst import (
    E_COMMIT,
    E_HEADER,
    E_LEN0,
    E_LENGTH,
    F_ALLOC,
    F_GFP,
    F_NAME,
    F_NODE,
    F_PID,
    F_PTR,
    F_REQ,
    F_SITE,
    K_ABSENT,
    K_CHARS,
    K_DATA_LOC16,
    K_REL_LOC,
    K_SINT,
    S_BAD_PAGES,
    S_DISCARDED,
    S_ERR,
    S_ERR_OFF,
    S_ERR_PAGE,
    S_MARKS,
    S_NAMES,
    S_NEXT_PAGE,
    S_RECORDS,
    S_ROWS,
    S_SHORT,
    S_UNKNOWN_ID,
)

#: kernels exported ahead of time: no NRT (every array comes from the caller), GIL released
_kjit = njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_M27 = np.uint64(0x07FFFFFF)
_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)
_TOP5 = np.uint64(0x1F) << np.uint64(59)
_NEWLINES = np.uint64(0x0A0A0A0A0A0A0A0A)


@njit(cache=True, nogil=True, inline="always", _nrt=False)  # type: ignore[call-overload]
def _rd(buf, p, size, big):  # type: ignore[no-untyped-def]
    # explicit shifts per width: LLVM folds them into single (byte-swapped) loads; unsigned
    # indices spare every load numba's negative-index wraparound
    q = np.uint64(p)
    if size == 8:
        b0 = np.uint64(buf[q])
        b1 = np.uint64(buf[q + np.uint64(1)])
        b2 = np.uint64(buf[q + np.uint64(2)])
        b3 = np.uint64(buf[q + np.uint64(3)])
        b4 = np.uint64(buf[q + np.uint64(4)])
        b5 = np.uint64(buf[q + np.uint64(5)])
        b6 = np.uint64(buf[q + np.uint64(6)])
        b7 = np.uint64(buf[q + np.uint64(7)])
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
        b0 = np.uint64(buf[q])
        b1 = np.uint64(buf[q + np.uint64(1)])
        b2 = np.uint64(buf[q + np.uint64(2)])
        b3 = np.uint64(buf[q + np.uint64(3)])
        if big:
            return (b0 << np.uint64(24)) | (b1 << np.uint64(16)) | (b2 << np.uint64(8)) | b3
        return (b3 << np.uint64(24)) | (b2 << np.uint64(16)) | (b1 << np.uint64(8)) | b0
    if size == 2:
        b0 = np.uint64(buf[q])
        b1 = np.uint64(buf[q + np.uint64(1)])
        if big:
            return (b0 << np.uint64(8)) | b1
        return (b1 << np.uint64(8)) | b0
    if size == 1:
        return np.uint64(buf[q])
    v = np.uint64(0)
    if big:
        for i in range(size):
            v = (v << np.uint64(8)) | np.uint64(buf[q + np.uint64(i)])
    else:
        for i in range(size - 1, -1, -1):
            v = (v << np.uint64(8)) | np.uint64(buf[q + np.uint64(i)])
    return v


@njit(cache=True, nogil=True, inline="always", _nrt=False)  # type: ignore[call-overload]
def _sext(v, size):  # type: ignore[no-untyped-def]
    bits = size * 8
    if bits >= 64:
        return np.int64(v)
    if (v >> np.uint64(bits - 1)) & np.uint64(1):
        return np.int64(v) - (np.int64(1) << np.int64(bits))
    return np.int64(v)


@njit(cache=True, nogil=True, inline="always", _nrt=False)  # type: ignore[call-overload]
def _word(buf, p, nbuf):  # type: ignore[no-untyped-def]
    """The (up to) eight bytes at ``p`` as a little-endian word; zeros past the buffer."""
    if p + 8 <= nbuf:
        return _rd(buf, p, 8, False)
    v = np.uint64(0)
    for i in range(min(8, nbuf - p) - 1, -1, -1):
        v = (v << np.uint64(8)) | np.uint64(buf[np.uint64(p + i)])
    return v


@njit(cache=True, nogil=True, inline="always", _nrt=False)  # type: ignore[call-overload]
def _hash_name(buf, spos, sl, nbuf):  # type: ignore[no-untyped-def]
    """(hash, length) of the string at ``spos``: at most ``sl`` bytes, up to its first NUL;
    (0, 0) for an empty one. Whole words at a time (never read past ``nbuf``)."""
    h = _FNV_OFFSET
    k = np.int64(0)
    slen = sl
    while k < sl:
        w = _word(buf, spos + k, nbuf)
        rem = sl - k
        if rem < 8:
            w &= (np.uint64(1) << np.uint64(8 * rem)) - np.uint64(1)
        z = (w - _ONES) & ~w & _HIGHS
        if z:  # a NUL byte (or the field's end) in this word
            # its index, without a loop: the lowest bit of z marks the first NUL exactly;
            # shifted down it is 2**(8b), whose product with 0x0101... has 8 - b bytes of 1,
            # and a second product sums those bytes into the top one
            low = (z & (~z + np.uint64(1))) >> np.uint64(7)
            b = np.int64(8) - np.int64(((low * _ONES) * _ONES) >> np.uint64(56))
            slen = k + b
            if b > 0:
                w &= (np.uint64(1) << np.uint64(8 * b)) - np.uint64(1)
                hk = (h ^ w) * _FNV_PRIME
                h = hk ^ (hk >> np.uint64(29))
            break
        hk = (h ^ w) * _FNV_PRIME
        h = hk ^ (hk >> np.uint64(29))
        k += 8
    if slen == 0:
        return np.uint64(0), np.int64(0)
    h ^= np.uint64(slen) * np.uint64(0xFF51AFD7ED558CCD)
    if h == 0:
        h = np.uint64(1)
    return h, np.int64(slen)


@njit(cache=True, nogil=True, inline="always", _nrt=False)  # type: ignore[call-overload]
def _same_name(buf, a, b, n, nbuf):  # type: ignore[no-untyped-def]
    """True when the ``n`` bytes at ``a`` and at ``b`` are equal (word by word)."""
    k = np.int64(0)
    while k < n:
        wa = _word(buf, a + k, nbuf)
        wb = _word(buf, b + k, nbuf)
        if n - k < 8:
            m = (np.uint64(1) << np.uint64(8 * (n - k))) - np.uint64(1)
            wa &= m
            wb &= m
        if wa != wb:
            return False
        k += 8
    return True


@njit(cache=True, nogil=True, inline="always", _nrt=False)  # type: ignore[call-overload]
def _field(buf, pl, lay, f, nbuf, big, absent):  # type: ignore[no-untyped-def]
    """Numeric field ``f`` of layout ``lay`` in the payload at ``pl`` (``absent`` when the
    format has none), sign- or zero-extended to int64. Little-endian with eight bytes left in
    the buffer (nearly always): one unaligned load, the width cut off by two shifts and the
    kind chosen by selects, no branch on the width or the kind."""
    kind = lay[f, 2]
    size = lay[f, 1]
    q = pl + lay[f, 0]
    if not big and q + 8 <= nbuf:
        sh = np.uint64(64 - 8 * size) & np.uint64(63)  # widths 1, 2, 4, 8 (absent: 0)
        x = _rd(buf, q, 8, False) << sh
        signed = np.int64(x) >> np.int64(sh)
        unsigned = np.int64(x >> sh)
        v = signed if kind == K_SINT else unsigned
        return v if kind != K_ABSENT else np.int64(absent)
    if kind == K_ABSENT:
        return np.int64(absent)
    u = _rd(buf, q, size, big)
    if kind == K_SINT:
        return _sext(u, size)
    return np.int64(u)


@njit(cache=True, nogil=True, inline="always", _nrt=False)  # type: ignore[call-overload]
def _add_counts(stats, records, short, unknown, discarded, bad_pages):  # type: ignore[no-untyped-def]
    stats[S_RECORDS] += records
    stats[S_SHORT] += short
    stats[S_UNKNOWN_ID] += unknown
    stats[S_DISCARDED] += discarded
    stats[S_BAD_PAGES] += bad_pages


@_kjit
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
    o_name,
    t_keys,
    t_slot,
    t_pos,
    t_len,
    m_ts,
    m_cnt,
    m_row,
    stats,
):
    """Walk pages ``first_page..npages-1`` of ``buf``, appending kmem events to the outputs.

    Stops early, before a page, when the outputs could overflow; ``stats[S_NEXT_PAGE]`` says
    where to resume. In strict mode the first corrupt page stops the walk with ``stats[S_ERR]``
    set; with ``salvage`` the rest of that page is skipped and counted in ``S_BAD_PAGES``.

    Cache names: with an empty ``t_slot`` each row gets the FNV hash, start and length of its
    name (``o_nhash``/``o_npos``/``o_nlen``; hash 0: none). Otherwise they are interned exactly
    here: ``o_name`` gets 0 (none) or 1 + the index of the distinct name in order of first
    appearance, whose bytes are ``buf[t_pos[i]:t_pos[i] + t_len[i]]``; ``t_keys``/``t_slot`` are
    the open-addressing table (a power-of-two size, ``t_slot`` all -1). Equal hashes are
    compared byte by byte, so a collision never merges two names. ``stats[S_NAMES]``: the names
    interned, or -1 when the table was too small (the walk stops; call again, larger).
    """
    intern = t_slot.shape[0] > 0
    nbuf = buf.shape[0]
    tmask = t_slot.shape[0] - 1
    tcap = t_slot.shape[0]
    nu = 0
    cap = o_ts.shape[0]
    mcap = m_ts.shape[0]
    n = 0
    nm = 0
    data_len = page_size - hdr_len
    max_rows_page = data_len // 8 + 1
    nev = evmap.shape[0]
    # counts kept in locals, added to ``stats`` on the way out (stores to an array the
    # outputs may alias would be reloaded and stored again on every record)
    c_rec = c_short = c_unk = c_disc = c_bad = np.int64(0)
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
            c_bad += 1
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
        err = np.int64(0)
        while p < end:
            if p + 4 > end:
                err = np.int64(E_HEADER)
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
                    err = np.int64(E_HEADER)
                    break
                a0 = _rd(buf, p + 4, 4, big)
                if tl == 29:  # discarded record: skip it, keep its delta
                    ln = np.int64(a0)
                    if p + 4 + ln > end:
                        err = np.int64(E_LENGTH)
                        break
                    ts += d
                    p += 4 + ln
                    c_disc += 1
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
                    err = np.int64(E_HEADER)
                    break
                a1 = np.int64(_rd(buf, p + 4, 4, big))
                if a1 < 4:
                    err = np.int64(E_LEN0)
                    break
                ln = (a1 - 4 + 3) & ~np.int64(3)
                pl = p + 8
            else:
                ln = tl * 4
                pl = p + 4
            if pl + ln > end:
                err = np.int64(E_LENGTH)
                break
            p = pl + ln
            c_rec += 1
            if first:
                first = False
                if has_missed:
                    m_ts[nm] = np.int64(ts)
                    m_cnt[nm] = missed
                    m_row[nm] = n
                    nm += 1
            if ln < 2:
                c_short += 1
                continue
            etype = np.int64(_rd(buf, pl, 2, big))
            if etype >= nev:
                c_unk += 1
                continue
            li = evmap[etype]
            if li < 0:
                if li == -2:
                    c_unk += 1
                continue
            if ln < lay_min[li]:
                c_short += 1
                continue
            lay = layouts[li]
            un = np.uint64(n)  # unsigned: no negative-index wraparound on the stores
            o_ts[un] = np.int64(ts)
            o_op[un] = lay_op[li]
            # fixed numeric fields, one straight line each (a loop over the slots dispatched
            # on the slot and on the field's width: mispredicted jumps on every record)
            o_pid[un] = _field(buf, pl, lay, F_PID, nbuf, big, 0)
            o_site[un] = np.uint64(_field(buf, pl, lay, F_SITE, nbuf, big, 0))
            o_ptr[un] = np.uint64(_field(buf, pl, lay, F_PTR, nbuf, big, 0))
            v = _field(buf, pl, lay, F_REQ, nbuf, big, 0)
            o_req[un] = min(np.uint64(v), np.uint64(0xFFFFFFFF))
            v = _field(buf, pl, lay, F_ALLOC, nbuf, big, 0)
            o_alloc[un] = min(np.uint64(v), np.uint64(0xFFFFFFFF))
            v = _field(buf, pl, lay, F_GFP, nbuf, big, 0)
            o_gfp[un] = np.uint64(v) & np.uint64(0xFFFFFFFF)
            o_node[un] = _field(buf, pl, lay, F_NODE, nbuf, big, -1)
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
                    if intern:  # eight bytes at a time (the walk's own hash)
                        h, slen = _hash_name(buf, spos, sl, nbuf)
                    else:  # FNV-1a up to the first NUL (or the field's end), in one pass
                        us = np.uint64(spos)
                        hh = _FNV_OFFSET
                        k = 0
                        while k < sl:
                            ch = buf[us + np.uint64(k)]
                            if ch == 0:
                                break
                            hh = (hh ^ np.uint64(ch)) * _FNV_PRIME
                            k += 1
                        slen = k
                        if slen > 0:
                            h = hh if hh != 0 else np.uint64(1)
            if not intern:
                o_nhash[un] = h
                o_npos[un] = spos
                o_nlen[un] = slen
            else:
                code = 0
                if slen > 0:
                    j = _mix(h, tmask)
                    while True:
                        s = t_slot[j]
                        if s < 0:
                            if 2 * (nu + 1) > tcap or nu >= t_pos.shape[0]:
                                stats[S_NAMES] = -1
                                stats[S_ROWS] = n
                                _add_counts(stats, c_rec, c_short, c_unk, c_disc, c_bad)
                                return n
                            t_slot[j] = nu
                            t_keys[j] = h
                            t_pos[nu] = spos
                            t_len[nu] = slen
                            nu += 1
                            code = nu
                            break
                        if t_keys[j] == h and t_len[s] == slen:
                            if _same_name(buf, spos, t_pos[s], slen, nbuf):
                                code = s + 1
                                break
                        j = (j + 1) & tmask
                o_name[un] = code
            n += 1
        if err != 0:
            if not salvage:
                stats[S_ERR] = err
                stats[S_ERR_PAGE] = pg
                stats[S_ERR_OFF] = p
                break
            c_bad += 1
        pg += 1
    _add_counts(stats, c_rec, c_short, c_unk, c_disc, c_bad)
    stats[S_ROWS] = n
    stats[S_MARKS] = nm
    stats[S_NEXT_PAGE] = pg
    stats[S_NAMES] = nu
    return n


@_kjit
def index_chunks(buf, pos, end, count, page_size, max_ulen, big, o_off, o_clen, o_ulen):  # type: ignore[no-untyped-def]
    """trace-cmd's chunk stream ``count * [u32 clen, u32 ulen, clen bytes]`` from ``pos``: each
    chunk's data offset and both lengths. Returns ``count``, or -1 when a header or a chunk's
    data runs past ``end``, an uncompressed size is not a whole number of pages (or above
    ``max_ulen``), or an empty chunk holds data."""
    for i in range(count):
        if pos + 8 > end:
            return -1
        clen = np.int64(_rd(buf, pos, 4, big))
        ulen = np.int64(_rd(buf, pos + 4, 4, big))
        pos += 8
        if ulen % page_size != 0 or ulen > max_ulen or pos + clen > end:
            return -1
        if ulen == 0 and clen != 0:
            return -1
        o_off[i] = pos
        o_clen[i] = clen
        o_ulen[i] = ulen
        pos += clen
    return count


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


@njit(cache=True, nogil=True, inline="always", _nrt=False)  # type: ignore[call-overload]
def _mix(h, mask):  # type: ignore[no-untyped-def]
    return np.int64(((h * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)) & np.uint64(mask))


@_kjit
def gather_i32(lut, idx, out):  # type: ignore[no-untyped-def]
    """``out[i] = lut[idx[i]]`` (``out`` may be ``idx``); -1, at the first index out of
    ``lut``'s range, else the rows written."""
    m = lut.shape[0]
    for i in range(idx.shape[0]):
        v = idx[i]
        if v < 0 or v >= m:
            return -1
        out[i] = lut[v]
    return idx.shape[0]


@_kjit
def factorize_u64(vals, codes, first, tkeys, tslot):  # type: ignore[no-untyped-def]
    """``codes[i]`` = index of ``vals[i]`` among the distinct values in order of first
    appearance, ``first[j]`` = the row where value ``j`` first occurs. ``tkeys``/``tslot``: the
    open-addressing table (power-of-two size, ``tslot`` all -1). Returns the number of distinct
    values, or -1 when the table (or ``first``) is too small."""
    n = vals.shape[0]
    cap = tslot.shape[0]
    mask = cap - 1
    nfirst = first.shape[0]
    nu = 0
    for i in range(n):
        v = vals[i]
        j = _mix(v, mask)
        while True:
            s = tslot[j]
            if s < 0:
                if 2 * (nu + 1) > cap or nu >= nfirst:
                    return -1
                tslot[j] = nu
                tkeys[j] = v
                first[nu] = i
                codes[i] = nu
                nu += 1
                break
            if tkeys[j] == v:
                codes[i] = s
                break
            j = (j + 1) & mask
    return nu


@njit(cache=True, nogil=True, inline="always", _nrt=False)  # type: ignore[call-overload]
def _heap_less(a, b, head):  # type: ignore[no-untyped-def]
    return head[a] < head[b] or (head[a] == head[b] and a < b)


@_kjit
def merge_rows(  # type: ignore[no-untyped-def]
    seg_start,
    seg_end,
    seg_next,
    cpu_first,
    cpu_id,
    heap,
    cur,
    pos,
    head,
    back,
    ts,
    op,
    pid,
    site,
    ptr,
    req,
    alloc,
    gfp,
    node,
    name,
    o_ts,
    o_cpu,
    o_op,
    o_pid,
    o_site,
    o_ptr,
    o_req,
    o_alloc,
    o_gfp,
    o_node,
    o_name,
):
    """Merge per-CPU row streams into the output columns as trace-cmd does (``merge_order``).

    Stream ``c`` (CPUs in ascending order) is the chain of segments ``cpu_first[c]``,
    ``seg_next[...]``, each the rows ``seg_start[s]:seg_end[s]`` of the input columns. At each
    step the stream whose next row has the smallest time wins, ties to the lower stream (a
    binary heap keyed by (time, stream)), so non-monotonic streams merge as trace-cmd merges
    them. ``back[c]`` counts the rows of stream ``c`` earlier than the row before them.
    ``heap``, ``cur``, ``pos``, ``head``: scratch of one entry per stream. Returns rows written.
    """
    k = cpu_first.shape[0]
    nh = 0
    for c in range(k):
        back[c] = 0
        s = cpu_first[c]
        while s >= 0 and seg_start[s] >= seg_end[s]:
            s = seg_next[s]
        cur[c] = s
        if s < 0:
            continue
        pos[c] = seg_start[s]
        head[c] = ts[seg_start[s]]
        # sift up
        i = nh
        heap[i] = c
        nh += 1
        while i > 0:
            p = (i - 1) >> 1
            if _heap_less(heap[i], heap[p], head):
                t = heap[i]
                heap[i] = heap[p]
                heap[p] = t
                i = p
            else:
                break
    n = 0
    while nh > 0:
        c = heap[0]
        # the best of the other streams (the root's better child): c's rows go out until
        # it is no longer ahead of that one, without touching the heap
        o = -1
        if nh >= 2:
            o = heap[1]
            if nh >= 3 and _heap_less(heap[2], o, head):
                o = heap[2]
        s = cur[c]
        r = pos[c]
        end = seg_end[s]
        # the run's loop state in locals: stores to ``head``/``back``, which the output
        # columns may alias for all LLVM knows, would be reloaded on every row
        hc = head[c]
        bc = back[c]
        ho = head[o] if o >= 0 else hc
        cid = cpu_id[c]
        while True:
            un = np.uint64(n)  # unsigned indices: no negative-index wraparound
            ur = np.uint64(r)
            o_ts[un] = ts[ur]
            o_cpu[un] = cid
            o_op[un] = op[ur]
            o_pid[un] = pid[ur]
            o_site[un] = site[ur]
            o_ptr[un] = ptr[ur]
            o_req[un] = req[ur]
            o_alloc[un] = alloc[ur]
            o_gfp[un] = gfp[ur]
            o_node[un] = node[ur]
            o_name[un] = name[ur]
            n += 1
            r += 1
            if r >= end:
                s = seg_next[s]
                while s >= 0 and seg_start[s] >= seg_end[s]:
                    s = seg_next[s]
                cur[c] = s
                if s < 0:
                    break
                r = seg_start[s]
                end = seg_end[s]
            t = ts[r]
            if t < hc:
                bc += 1
            hc = t
            if o >= 0 and not (t < ho or (t == ho and c < o)):  # _heap_less(c, o, head)
                break
        head[c] = hc
        back[c] = bc
        if s < 0:  # stream exhausted: the last heap entry replaces the top
            nh -= 1
            heap[0] = heap[nh]
        else:
            pos[c] = r
        # sift down from the top
        i = 0
        while True:
            lft = 2 * i + 1
            if lft >= nh:
                break
            m = lft
            if lft + 1 < nh and _heap_less(heap[lft + 1], heap[lft], head):
                m = lft + 1
            if _heap_less(heap[m], heap[i], head):
                t2 = heap[i]
                heap[i] = heap[m]
                heap[m] = t2
                i = m
            else:
                break
    return n


@_kjit
def kallsyms_lookup(data, width, queries, best_sym, best_addr, info):  # type: ignore[no-untyped-def]
    """Resolve ascending distinct ``queries`` against ``/proc/kallsyms`` text, in one pass.

    Lines are ``ADDR TYPE NAME...`` with ``width`` hex digits (the first line's); malformed
    lines, absolute symbols (type ``a``/``A``) and ARM mapping symbols (``$...``) are skipped,
    exactly as :func:`sheaftune.readers.kallsyms._scan`. ``best_sym[j]``: where the name of the
    symbol with the greatest address at or below ``queries[j]`` starts (the last of equal
    addresses in file order), -1 for none; ``best_addr[j]`` its address. ``info[0]``: symbols
    kept, ``info[1]``: their greatest address.
    """
    n = data.shape[0]
    nq = queries.shape[0]
    for j in range(nq):
        best_sym[j] = -1
        best_addr[j] = 0
    kept = 0
    amax = np.uint64(0)
    lo = 0  # the first query at or above the last address: kallsyms is nearly sorted
    i = 0
    while i < n:
        # the line's end: eight bytes at a time (the lowest byte equal to '\n' is found
        # exactly by the zero-byte test of the word xor '\n' * 8)
        j = i
        found = False
        while j + 8 <= n:
            x = _rd(data, j, 8, False) ^ _NEWLINES
            z = (x - _ONES) & ~x & _HIGHS
            if z:
                low = (z & (~z + np.uint64(1))) >> np.uint64(7)
                j += 8 - np.int64(((low * _ONES) * _ONES) >> np.uint64(56))
                found = True
                break
            j += 8
        if not found:
            while j < n and data[np.uint64(j)] != 10:
                j += 1
        # line [i, j)
        if j - i >= width + 4 and data[i + width] == 32 and data[i + width + 2] == 32:
            a = np.uint64(0)
            ok = True
            for p in range(i, i + width):
                # hex digit without branches: (c & 15) + 9 for letters (bit 6 set)
                c = np.uint64(data[np.uint64(p)])
                digit = c - np.uint64(48) < np.uint64(10)
                letter = (c | np.uint64(32)) - np.uint64(97) < np.uint64(6)
                ok = ok & (digit | letter)
                a = (a << np.uint64(4)) | ((c & np.uint64(15)) + np.uint64(9) * (c >> np.uint64(6)))
            t = data[i + width + 1]
            ns = i + width + 3
            if ok and t != 97 and t != 65 and data[ns] != 36:
                if kept == 0 or a > amax:
                    amax = a
                kept += 1
                # the first query at or above a: the last one, or the next, else a search
                if (lo == 0 or queries[lo - 1] < a) and (lo == nq or queries[lo] >= a):
                    pass
                elif lo < nq and queries[lo] < a and (lo + 1 == nq or queries[lo + 1] >= a):
                    lo += 1
                else:
                    lo = 0
                    hi = nq
                    while lo < hi:
                        mid = (lo + hi) >> 1
                        if queries[mid] < a:
                            lo = mid + 1
                        else:
                            hi = mid
                if lo < nq and (best_sym[lo] < 0 or a >= best_addr[lo]):
                    best_sym[lo] = ns
                    best_addr[lo] = a
        i = j + 1
    # a symbol at or below query j-1 is at or below query j too, and any candidate of j lies
    # above query j-1
    for j in range(1, nq):
        if best_sym[j] < 0 and best_sym[j - 1] >= 0:
            best_sym[j] = best_sym[j - 1]
            best_addr[j] = best_addr[j - 1]
    info[0] = kept
    info[1] = amax
    return kept


# fmt: off
_B = "u1[::1]"
_WALK_ARGS = (
    _B, "i8", "i8", "i8", "i8", "i8", "b1",  # buf, first_page, npages, page_size, hdr, long, big
    "i2[::1]", "i8[:, :, ::1]", "u1[::1]", "i8[::1]", "b1",  # evmap, layouts, op, min, salvage
    "i8[::1]", "u1[::1]", "i4[::1]", "u8[::1]", "u8[::1]",  # ts, op, pid, site, ptr
    "u4[::1]", "u4[::1]", "u4[::1]", "i2[::1]",  # req, alloc, gfp, node
    "u8[::1]", "i8[::1]", "i8[::1]",  # name hash, pos, len
    "i4[::1]", "u8[::1]", "i8[::1]", "i8[::1]", "i8[::1]",  # name code; keys, slots, pos, len
    "i8[::1]", "i8[::1]", "i8[::1]", "i8[::1]",  # marker ts, count, row; stats
)
_ROW_COLS = (
    "i8[::1]", "u1[::1]", "i4[::1]", "u8[::1]", "u8[::1]",  # ts, op, pid, site, ptr
    "u4[::1]", "u4[::1]", "u4[::1]", "i2[::1]", "i4[::1]",  # req, alloc, gfp, node, name
)
_MERGE_ARGS = (
    ("i8[::1]",) * 5  # seg_start, seg_end, seg_next, cpu_first, cpu_id
    + ("i8[::1]",) * 5  # heap, cur, pos, head, back
    + _ROW_COLS
    + ("i8[::1]", "u2[::1]") + _ROW_COLS[1:]  # outputs: ts, cpu, op, ..., name
)
# fmt: on
#: What ``sheaftune.compiled`` builds ahead of time (attribute -> numba signature): exactly the
#: dtypes and layouts ``ringbuffer`` and ``tracedat`` pass.
AOT_EXPORTS = {
    "walk_pages": "i8(" + ", ".join(_WALK_ARGS) + ")",
    "index_chunks": "i8(u1[::1], i8, i8, i8, i8, i8, b1, i8[::1], i8[::1], i8[::1])",
    "factorize_u64": "i8(u8[::1], i4[::1], i8[::1], u8[::1], i8[::1])",
    "merge_rows": "i8(" + ", ".join(_MERGE_ARGS) + ")",
    "kallsyms_lookup": "i8(u1[::1], i8, u8[::1], i8[::1], u8[::1], u8[::1])",
    "gather_i32": "i8(i4[::1], i4[::1], i4[::1])",
}
