"""kallsyms: resolve ``call_site`` return addresses to ``symbol+0xoff`` as trace-cmd prints them.

The symbol table is the ``/proc/kallsyms`` snapshot a trace.dat embeds (or the live file, for
capture). Resolution follows libtraceevent, the oracle: absolute (``a``/``A``) symbols and ARM
mapping symbols (``$...``) are dropped, an address resolves to the symbol with the greatest start
at or below it (the last of several aliases at one address), and an address below the first
symbol, or above the last one (module code the snapshot does not cover), stays a raw ``0x...``
address: libtraceevent's table ends in a sentinel, so its last symbol matches only exactly.

Parsing a 5 MB table is column-wise numpy, without a Python object per line; names become
strings only for the few distinct call sites a trace actually hits.
"""

from __future__ import annotations

import re

import numpy as np


class Kallsyms:
    """A sorted kernel symbol table: ``addrs`` (uint64, ascending) and where the names start."""

    __slots__ = ("_data", "addrs", "_ns")

    def __init__(self, data: bytes, addrs: np.ndarray, ns: np.ndarray):
        self._data = data
        self.addrs = addrs
        self._ns = ns  # where each name starts in ``_data``; it ends at a tab, space or newline

    @classmethod
    def parse(cls, text: bytes | str) -> Kallsyms:
        """Parse ``/proc/kallsyms`` text; malformed lines are ignored."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        addr, ns = _scan(data)
        order = np.argsort(addr, kind="stable")
        return cls(data, addr[order], ns[order])

    @classmethod
    def from_file(cls, path: str) -> Kallsyms:
        with open(path, "rb") as fh:
            return cls.parse(fh.read())

    def __len__(self) -> int:
        return len(self.addrs)

    @property
    def restricted(self) -> bool:
        """True when every address is zero (kptr_restrict hid them): nothing can be resolved."""
        return len(self.addrs) > 0 and int(self.addrs[-1]) == 0

    def name(self, i: int) -> str:
        m = _NAME.match(self._data, int(self._ns[i]))
        return m.group().decode("utf-8", "replace") if m else ""

    def resolve(self, addresses: np.ndarray) -> list[str]:
        """``symbol+0xoff`` for each address, or ``0x...`` where trace-cmd prints a raw address.

        Meant for distinct values (``np.unique`` of a call-site column), not per event.
        """
        addresses = np.asarray(addresses, dtype=np.uint64)
        n = len(self.addrs)
        if n == 0 or self.restricted:
            return [f"0x{int(a):x}" for a in addresses]
        idx = np.searchsorted(self.addrs, addresses, side="right") - 1
        out: list[str] = []
        last = int(self.addrs[-1])
        for a, i in zip(addresses.tolist(), idx.tolist(), strict=True):
            if i < 0 or (i == n - 1 and a != last):
                out.append(f"0x{a:x}")
            else:
                out.append(f"{self.name(i)}+0x{a - int(self.addrs[i]):x}")
        return out


_NAME = re.compile(rb"[^\t\n\r ]+")
_HEX = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i


def _scan(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Lines ``ADDR TYPE NAME[\t[MODULE]]`` -> (address, name start) of the symbols kept.

    Absolute symbols (``a``/``A``) and ARM mapping symbols (``$...``) are dropped, as
    libtraceevent does; malformed lines are skipped.
    """
    arr = np.frombuffer(data, dtype=np.uint8)
    empty = np.empty(0, dtype=np.int64)
    w = data.find(b" ")
    if not data or not 1 <= w <= 16:
        return np.empty(0, dtype=np.uint64), empty
    nl = np.flatnonzero(arr == 10)
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [len(arr)]))
    starts = starts[ends - starts >= w + 4]  # address, space, type, space, one name byte
    ok = (arr[starts + w] == 32) & (arr[starts + w + 2] == 32)
    starts = starts[ok]
    digits = _HEX[np.lib.stride_tricks.as_strided(arr, (len(arr) - w + 1, w), (1, 1))[starts]]
    ok = (digits != 255).all(axis=1)
    typ = arr[starts + w + 1]
    ns = starts + w + 3
    ok &= (typ != ord("a")) & (typ != ord("A")) & (arr[ns] != ord("$"))
    digits, ns = digits[ok], ns[ok]
    addr = np.zeros(len(ns), dtype=np.uint64)
    for j in range(w):
        addr = (addr << np.uint64(4)) | digits[:, j].astype(np.uint64)
    return addr, ns.astype(np.int64)
