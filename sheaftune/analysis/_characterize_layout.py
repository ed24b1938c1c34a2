"""Counter layout shared by ``characterize`` and its compiled kernels
(``_characterize_kernels``), in a numba-free module so the caller can import it (the AOT build
of the kernels hashes it: an edit here rebuilds them).

Counters are indexed by ``cid``: a cache index, or ``ncaches`` for the events no cache is
counted for (unknown cache, NULL pointer). Each event adds one to ``hist[cid * NCODES + code]``,
where ``code`` holds its op (the low ``OP_BITS`` bits) and one bit per flag below.
"""

from sheaftune.events import Op

#: bits of the op in a code (every ``Op`` fits)
OP_BITS = 2
assert len(Op) <= 1 << OP_BITS
#: flag bits of a code: the allocation's pointer was allocated again unseen; the allocation is
#: live at the end; an allocation without __GFP_DIRECT_RECLAIM; a free matched to a visible
#: allocation; a counted matched free on another CPU than its allocation; a counted allocation
#: of its cache's first slot size (``primary_size[cid]``)
B_UNSEEN, B_LIVE, B_NOWAIT, B_MATCHED, B_CROSS, B_SIZE = range(OP_BITS, OP_BITS + 6)
NCODES = 1 << (OP_BITS + 6)
