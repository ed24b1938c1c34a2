"""Counter layout shared by ``characterize`` and its compiled kernels
(``_characterize_kernels``), in a numba-free module so the caller can import it (the AOT build
of the kernels hashes it: an edit here rebuilds them).

Counters are indexed by ``cid``: a cache index, or ``ncaches`` for the events no cache is
counted for (unknown cache, NULL pointer). Each event adds one to ``hist[cid * NCODES + code]``,
where ``code`` holds its op (the low ``OP_BITS`` bits) and flag bits above them; allocations
and frees have different flags (``Normalized``: ``reused_by`` and ``live_at_end`` mark
allocations, ``alloc_of`` frees), so they share the bits.
"""

from sheaftune.events import Op

#: bits of the op in a code (every ``Op`` fits)
OP_BITS = 2
assert len(Op) <= 1 << OP_BITS
#: flag bits of an allocation's code: its pointer was allocated again unseen; it is live at the
#: end; it was made without __GFP_DIRECT_RECLAIM; it is counted and of its cache's first slot
#: size (``primary_size[cid]``)
B_UNSEEN, B_LIVE, B_NOWAIT, B_SIZE = range(OP_BITS, OP_BITS + 4)
#: flag bits of a free's code: matched to a visible allocation; counted, matched, and on
#: another CPU than that allocation
B_MATCHED, B_CROSS = range(OP_BITS, OP_BITS + 2)
NCODES = 1 << (OP_BITS + 4)
