"""kallsyms: resolve ``call_site`` return addresses to ``symbol+0xoff`` as trace-cmd prints them.

The symbol table is the ``/proc/kallsyms`` snapshot a trace.dat embeds (or the live file, for
capture). Resolution follows libtraceevent, the oracle: absolute (``a``/``A``) symbols and ARM
mapping symbols (``$...``) are dropped, an address resolves to the symbol with the greatest start
at or below it (the last of several aliases at one address), and an address below the first
symbol, or above the last one (module code the snapshot does not cover), stays a raw ``0x...``
address: libtraceevent's table ends in a sentinel, so its last symbol matches only exactly.

Parsing a 5 MB table happens in compiled code without creating a Python object per line; names
become strings only for the few distinct call sites a trace actually hits.
"""

from __future__ import annotations

import numpy as np


class Kallsyms:
    """A sorted kernel symbol table: ``addrs`` (uint64, ascending) and the names' byte ranges."""

    __slots__ = ("_data", "addrs", "_ns", "_ne")

    def __init__(self, data: bytes, addrs: np.ndarray, ns: np.ndarray, ne: np.ndarray):
        self._data = data
        self.addrs = addrs
        self._ns = ns
        self._ne = ne

    @classmethod
    def parse(cls, text: bytes | str) -> Kallsyms:
        """Parse ``/proc/kallsyms`` text; malformed lines are ignored."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        if not data:
            empty = np.empty(0, dtype=np.int64)
            return cls(data, np.empty(0, dtype=np.uint64), empty, empty)
        from sheaftune.readers._jit import scan_kallsyms

        addr, typ, ns, ne = scan_kallsyms(np.frombuffer(data, dtype=np.uint8))
        keep = (typ != ord("a")) & (typ != ord("A"))
        if len(ns):
            first = np.frombuffer(data, dtype=np.uint8)[ns]
            keep &= first != ord("$")
        addr, ns, ne = addr[keep], ns[keep], ne[keep]
        order = np.argsort(addr, kind="stable")
        return cls(data, addr[order], ns[order], ne[order])

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
        return self._data[int(self._ns[i]) : int(self._ne[i])].decode("utf-8", "replace")

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
