"""gfp_t flags: Linux 6.18 bit numbering, symbolic names as the kmem tracepoints print them.

Text traces print ``gfp_flags`` symbolically (``GFP_KERNEL|__GFP_ZERO``, ``none``, leftover bits
in hex); trace.dat carries the raw bits. Both become the raw 6.18 bits in the ``gfp`` column. The
table is the ``__print_flags`` table of the 6.18 ``kmem_cache_alloc`` format (composite names
first, as the kernel prints them). What the model needs from the flags: whether the allocation
may block (``__GFP_DIRECT_RECLAIM``) and which kmalloc cache family a ``kmalloc`` hit.
"""

from __future__ import annotations

from functools import lru_cache

__GFP_DMA = 1 << 0
__GFP_HIGHMEM = 1 << 1
__GFP_DMA32 = 1 << 2
__GFP_MOVABLE = 1 << 3
__GFP_RECLAIMABLE = 1 << 4
__GFP_HIGH = 1 << 5
__GFP_IO = 1 << 6
__GFP_FS = 1 << 7
__GFP_ZERO = 1 << 8
__GFP_DIRECT_RECLAIM = 1 << 10
__GFP_KSWAPD_RECLAIM = 1 << 11
__GFP_WRITE = 1 << 12
__GFP_NOWARN = 1 << 13
__GFP_RETRY_MAYFAIL = 1 << 14
__GFP_NOFAIL = 1 << 15
__GFP_NORETRY = 1 << 16
__GFP_MEMALLOC = 1 << 17
__GFP_COMP = 1 << 18
__GFP_NOMEMALLOC = 1 << 19
__GFP_HARDWALL = 1 << 20
__GFP_THISNODE = 1 << 21
__GFP_ACCOUNT = 1 << 22
__GFP_ZEROTAGS = 1 << 23
__GFP_NO_OBJ_EXT = 1 << 24

__GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM
GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS
GFP_KERNEL_ACCOUNT = GFP_KERNEL | __GFP_ACCOUNT
GFP_NOFS = __GFP_RECLAIM | __GFP_IO
GFP_NOIO = __GFP_RECLAIM
GFP_ATOMIC = __GFP_HIGH | __GFP_KSWAPD_RECLAIM
GFP_NOWAIT = __GFP_KSWAPD_RECLAIM | __GFP_NOWARN
GFP_USER = GFP_KERNEL | __GFP_HARDWALL
GFP_HIGHUSER = GFP_USER | __GFP_HIGHMEM
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | __GFP_MOVABLE
GFP_TRANSHUGE_LIGHT = (
    GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_NOMEMALLOC | __GFP_NOWARN
) & ~__GFP_RECLAIM
GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | __GFP_DIRECT_RECLAIM

#: (value, name) in the kernel's print order: show_gfp_flags() takes the first match greedily.
FLAG_NAMES: tuple[tuple[int, str], ...] = (
    (GFP_TRANSHUGE, "GFP_TRANSHUGE"),
    (GFP_TRANSHUGE_LIGHT, "GFP_TRANSHUGE_LIGHT"),
    (GFP_HIGHUSER_MOVABLE, "GFP_HIGHUSER_MOVABLE"),
    (GFP_HIGHUSER, "GFP_HIGHUSER"),
    (GFP_USER, "GFP_USER"),
    (GFP_KERNEL_ACCOUNT, "GFP_KERNEL_ACCOUNT"),
    (GFP_KERNEL, "GFP_KERNEL"),
    (GFP_NOFS, "GFP_NOFS"),
    (GFP_ATOMIC, "GFP_ATOMIC"),
    (GFP_NOIO, "GFP_NOIO"),
    (GFP_NOWAIT, "GFP_NOWAIT"),
    (__GFP_DMA, "GFP_DMA"),
    (__GFP_DMA32, "GFP_DMA32"),
    (__GFP_RECLAIM, "__GFP_RECLAIM"),
    (__GFP_DMA, "__GFP_DMA"),
    (__GFP_HIGHMEM, "__GFP_HIGHMEM"),
    (__GFP_DMA32, "__GFP_DMA32"),
    (__GFP_MOVABLE, "__GFP_MOVABLE"),
    (__GFP_RECLAIMABLE, "__GFP_RECLAIMABLE"),
    (__GFP_HIGH, "__GFP_HIGH"),
    (__GFP_IO, "__GFP_IO"),
    (__GFP_FS, "__GFP_FS"),
    (__GFP_ZERO, "__GFP_ZERO"),
    (__GFP_DIRECT_RECLAIM, "__GFP_DIRECT_RECLAIM"),
    (__GFP_KSWAPD_RECLAIM, "__GFP_KSWAPD_RECLAIM"),
    (__GFP_WRITE, "__GFP_WRITE"),
    (__GFP_NOWARN, "__GFP_NOWARN"),
    (__GFP_RETRY_MAYFAIL, "__GFP_RETRY_MAYFAIL"),
    (__GFP_NOFAIL, "__GFP_NOFAIL"),
    (__GFP_NORETRY, "__GFP_NORETRY"),
    (__GFP_MEMALLOC, "__GFP_MEMALLOC"),
    (__GFP_COMP, "__GFP_COMP"),
    (__GFP_NOMEMALLOC, "__GFP_NOMEMALLOC"),
    (__GFP_HARDWALL, "__GFP_HARDWALL"),
    (__GFP_THISNODE, "__GFP_THISNODE"),
    (__GFP_ACCOUNT, "__GFP_ACCOUNT"),
    (__GFP_ZEROTAGS, "__GFP_ZEROTAGS"),
    (__GFP_NO_OBJ_EXT, "__GFP_NO_OBJ_EXT"),
)
_BY_NAME = {name: value for value, name in reversed(FLAG_NAMES)}


@lru_cache(maxsize=4096)
def parse(text: str) -> int:
    """Symbolic ``gfp_flags`` text (``GFP_KERNEL|__GFP_ZERO``, ``none``, ``0x...``) -> bits.

    Raises ValueError on a name this table does not know (callers count it and keep going).
    """
    text = text.strip()
    if text in ("none", "0", ""):
        return 0
    bits = 0
    for part in text.split("|"):
        part = part.strip()
        if part in _BY_NAME:
            bits |= _BY_NAME[part]
        elif part.startswith(("0x", "0X")):
            bits |= int(part, 16)
        elif part.isdigit():
            bits |= int(part)
        else:
            raise ValueError(f"unknown gfp flag {part!r}")
    return bits & 0xFFFFFFFF


def format_flags(bits: int) -> str:
    """Bits -> the kernel's symbolic rendering (greedy over FLAG_NAMES, leftovers in hex)."""
    if bits == 0:
        return "none"
    names = []
    rest = bits
    for value, name in FLAG_NAMES:
        if value and (rest & value) == value:
            names.append(name)
            rest &= ~value
    if rest:
        names.append(hex(rest))
    return "|".join(names)


def may_block(bits: int) -> bool:
    """The allocation may sleep (``gfpflags_allow_blocking``: ``__GFP_DIRECT_RECLAIM`` set)."""
    return bool(bits & __GFP_DIRECT_RECLAIM)


def kmalloc_cache_name(bytes_alloc: int, bits: int) -> str:
    """The kmalloc cache a ``kmalloc`` event was served from, by size bucket and gfp family.

    DMA wins over reclaimable and accounted, as in ``kmalloc_type()``; accounted allocations use
    ``kmalloc-cg-<n>``. With CONFIG_RANDOM_KMALLOC_CACHES the kernel spreads a size over several
    copies by call site: a trace cannot tell which, so all map to the one name.
    """
    if bits & __GFP_DMA:
        prefix = "dma-kmalloc-"
    elif bits & __GFP_RECLAIMABLE:
        prefix = "kmalloc-rcl-"
    elif bits & __GFP_ACCOUNT:
        prefix = "kmalloc-cg-"
    else:
        prefix = "kmalloc-"
    return prefix + _size_name(bytes_alloc)


def _size_name(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}m"
    if n >= 1024 and n % 1024 == 0:
        return f"{n >> 10}k"
    return str(n)
