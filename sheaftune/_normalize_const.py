"""Constants shared by the normalisation kernels (:mod:`sheaftune._normalize_kernels`) and
:mod:`sheaftune.normalize`, in a module without numba so the caller can use them without
loading it."""

#: kfree() of ZERO_SIZE_PTR (what kmalloc(0) returns) frees nothing.
ZERO_SIZE_PTR = 0x10

# slots of the ``counts`` array of ``classify`` and ``match_pointers``
C_NULL_FREE = 0
C_FAILED_ALLOC = 1
C_ZERO_SIZE_FREE = 2
C_MATCHED = 3
C_UNMATCHED_KFREE = 4
C_UNMATCHED_NAMED = 5
C_UNSEEN = 6
C_MISMATCH = 7
C_KEYS_USED = 8  # occupied slots of the kmalloc key table
C_PTRS_USED = 9  # occupied slots of the pointer table
N_COUNTS = 10

# slots of the ``state`` array of ``pop_runs``
P_POPS = 0  # pops written
P_RUNS = 1  # runs started
P_USED = 2  # occupied slots of the task table
N_POP_STATE = 3

#: columns of the kernels' hash tables (``tab[s, 0]`` is the slot's tag, 0 when empty):
#: kmalloc keys (tag, cache id), pointers (pointer, 2 * last row + is an allocation), tasks of
#: ``pop_runs`` (tag, 2 * run + last was a pop, last pop's time, the run's number in its cache)
KEY_COLS = 2
PTR_COLS = 2
TASK_COLS = 4
