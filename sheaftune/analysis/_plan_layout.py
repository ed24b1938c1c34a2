"""The state vector of the plan-building scans (``_plan_kernels.scan_cache`` and
``group_and_scan``), shared by the kernels and ``tracereplay``, which must not import the
kernels' module (it imports numba).

``ST_*`` index a cache's counters, carried from one chunk of rows to the next: allocations
that returned an object, matched frees, frees skipped (object allocated before the trace, or
as another cache), unseen frees, objects live at the end; the last three are ``slot_size``'s:
allocation events (failed ones too), the first one's size, 1 if sizes differ.
"""

ST_ALLOCS, ST_MATCHED, ST_BEFORE, ST_OTHER, ST_UNSEEN, ST_LIVE = range(6)
ST_SIZED, ST_SIZE, ST_MIXED = range(6, 9)
ST_LEN = 9
