"""The compiled kallsyms lookup (``resolve_sites``) names call sites exactly as the Python
``Kallsyms`` does, on real text and on damaged, unsorted and oddly cased variants of it."""

from __future__ import annotations

import random

import numpy as np
import pytest

from sheaftune.readers import read_trace
from sheaftune.readers.kallsyms import Kallsyms
from sheaftune.readers.tracedat import _TraceDat
from sheaftune.readers.tracedat_fast import reader_kernels, resolve_sites
from tests.conftest import fixture_path


@pytest.fixture(scope="module")
def kallsyms_text() -> bytes:
    texts: list[bytes] = []
    orig = _TraceDat._kallsyms_wait

    def keep(self: _TraceDat) -> None:
        orig(self)
        if self._kallsyms:
            texts.append(bytes(self._kallsyms))  # (a view of the section)

    _TraceDat._kallsyms_wait = keep  # type: ignore[method-assign]
    try:
        read_trace(str(fixture_path("traces/kmalloc-small.v7zstd.dat")))
    finally:
        _TraceDat._kallsyms_wait = orig  # type: ignore[method-assign]
    assert texts
    return texts[0]


def names(text: bytes, sites: np.ndarray) -> tuple[list[str], list[str]]:
    sites = np.unique(sites.astype(np.uint64))
    compiled, warning = resolve_sites(reader_kernels(), text, sites)
    ks = Kallsyms.parse(text)
    expect = ks.resolve(sites) if len(ks) and not ks.restricted else [f"0x{a:x}" for a in sites]
    return compiled, expect


def test_real_text(kallsyms_text: bytes) -> None:
    lines = kallsyms_text.split(b"\n")
    addrs = [int(ln[:16], 16) for ln in lines[::97] if len(ln) > 20]
    sites = np.array([a + d for a in addrs for d in (0, 1, 0x40)], dtype=np.uint64)
    got, expect = names(kallsyms_text, sites)
    assert got == expect
    assert sum(not n.startswith("0x") for n in got) > len(got) // 2  # (symbols, mostly)


@pytest.mark.parametrize("seed", range(40))
def test_damaged_variants(kallsyms_text: bytes, seed: int) -> None:
    rng = random.Random(seed)
    lines = kallsyms_text.split(b"\n")
    start = rng.randrange(len(lines) - 400)
    sel = [bytearray(ln) for ln in lines[start : start + 300]]
    if seed % 3 == 0:
        rng.shuffle(sel)
    for ln in sel:
        r = rng.random()
        if r < 0.04 and ln:
            ln[rng.randrange(len(ln))] = rng.choice(b"gG xz$Aa\t0F")
        elif r < 0.06:
            del ln[rng.randrange(len(ln) + 1) :]
        elif r < 0.10:
            ln[:16] = ln[:16].upper()
    text = b"\n".join(bytes(ln) for ln in sel) + (b"\n" if seed % 2 else b"")
    addrs = [int(ln[:16], 16) for ln in lines[start : start + 300 : 7] if len(ln) > 20]
    sites = np.array(
        [a + rng.randrange(0x200) for a in addrs] + [rng.randrange(1 << 64) for _ in range(3)],
        dtype=np.uint64,
    )
    got, expect = names(text, sites)
    assert got == expect
