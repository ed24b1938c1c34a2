"""Constants shared by the compiled reader kernels (:mod:`sheaftune.readers._jit`) and their
callers, in a module without numba so callers can use them without loading it."""

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

# stats slots of walk_pages
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
S_NAMES = 12  # distinct cache names interned (-1: the table was too small, walk abandoned)
NSTATS = 13

E_COMMIT = 1  # page commit size larger than the page
E_HEADER = 2  # record header runs past the committed data
E_LENGTH = 3  # record length runs past the committed data
E_LEN0 = 4  # type_len 0 record with a length word below 4
