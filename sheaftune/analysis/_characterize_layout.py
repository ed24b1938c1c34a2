"""Counter layout shared by ``characterize`` and its compiled kernels
(``_characterize_kernels``), in a numba-free module so the caller can import it (the AOT build
of the kernels hashes it: an edit here rebuilds them).

Counters are indexed by ``cid``: a cache index, or ``ncaches`` for the events no cache is
counted for (unknown cache, NULL pointer).
"""

from sheaftune.events import Op

#: ops per cache in ``by_op`` (``by_op[cid * NOPS + op]``)
NOPS = len(Op)

#: rows of ``stats[row, cid]``: matched frees (frees with a visible allocation), allocations
#: whose pointer was allocated again unseen, allocations live at the end, allocations without
#: __GFP_DIRECT_RECLAIM, counted matched frees on another CPU than their allocation, and over
#: the counted allocations: the sum of requested bytes and their number
S_MATCHED, S_UNSEEN, S_LIVE, S_NOWAIT, S_CROSS, S_REQ_SUM, S_ALLOCS = range(7)
NSTATS = 7
