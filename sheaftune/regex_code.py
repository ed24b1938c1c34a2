"""The compiled form of regular expressions, kept across runs like a ``.pyc`` (start-up time).

``re.compile`` parses a pattern and compiles it into the code of the ``_sre`` engine, both in
Python: a run of ``sheaftune analyze`` compiles some 30 patterns (json's, numpy's, click's, the
trace readers' own), 3-4 ms on the main thread. What that gives the engine depends only on the
pattern, its flags and the Python (its ``_sre`` code format): ``re._compiler.compile`` hands
``_sre.compile`` the pattern, the final flags, the code (a list of integers), the number of
groups and the group names both ways. :func:`install` gives ``re`` a compiler of its own that
takes those arguments from a cache and computes, the same way as ``re._compiler.compile``, only
what is missing; the pattern object is then made by ``_sre.compile`` from the same arguments,
so it is the object ``re`` would have made. Patterns compiled with ``re.DEBUG``, and anything
that is not a ``str`` or ``bytes`` pattern, go to the original compiler.

The cache is one ``marshal`` file per Python version and ``_sre.MAGIC`` in sheaftune's cache
directory, beside :mod:`sheaftune.dataclass_code`'s (the same reading, writing and trust),
rewritten at exit when this run compiled a pattern it did not have. Only for the Pythons whose
``re._compiler.compile`` is the one this module repeats (3.11 to 3.13, checked by their
source: the same in all three); elsewhere, with no cache directory, or on any failure,
nothing changes but the time. Only the ``sheaftune`` program installs it
(``sheaftune.__main__``).
"""

from __future__ import annotations

import _sre
import marshal
import re
import sys
from re import _compiler, _parser  # type: ignore[attr-defined]
from typing import Any

from sheaftune.startup_cache import cache_path, read_entries, write_entries

#: the most bytes of engine arguments the file keeps (an analyze run needs ~20 KB; a pattern
#: made afresh by every process, like tokenize's from a set of prefixes, must not grow it)
MAX_BYTES = 128 << 10
#: the Pythons whose ``re._compiler.compile`` :func:`_arguments` repeats
PYTHONS = ((3, 11), (3, 12), (3, 13))

#: key -> the engine's arguments, marshalled (as read from the file)
_cache: dict[Any, bytes] = {}
#: key -> the arguments this run took or computed
_used: dict[str, tuple[Any, ...]] = {}
#: patterns compiled by this process (the file is rewritten at exit when there are any)
compiled = 0
#: ``re._compiler.compile`` as it was
_original: Any = None


def install() -> bool:
    """Serve ``re``'s compilations from the cache (read now, written at exit); False when it
    does not apply."""
    global _original
    try:
        if sys.version_info[:2] not in PYTHONS or _original is not None:
            return False
        path = cache_path(f"regex-{sys.version_info[0]}.{sys.version_info[1]}-{_sre.MAGIC}")
        if path is None:
            return False
        _cache.update(read_entries(path))
        _original = _compiler.compile
        _compiler.compile = _compile
        import atexit

        atexit.register(_save, path)
        return True
    except Exception:  # noqa: BLE001 - an optimisation only
        return False


def _compile(p: Any, flags: int = 0) -> Any:
    """``re._compiler.compile`` with the engine's arguments from the cache when there."""
    global compiled
    if type(p) is str:
        key = f"s{flags}:{p}"
    elif type(p) is bytes:
        key = f"b{flags}:{p.decode('latin-1')}"
    else:
        return _original(p, flags)
    if flags & re.DEBUG:
        return _original(p, flags)
    args = _used.get(key)
    if args is None:
        args = _decode(_cache.get(key))
        if args is not None:
            try:  # (the engine checks the code it is given: a damaged entry is refused here)
                pattern = _sre.compile(p, *args)
            except (RuntimeError, TypeError, ValueError, OverflowError, IndexError):
                args = None
            else:
                _used[key] = args
                return pattern
        args = _used[key] = _arguments(p, flags)
        compiled += 1
    return _sre.compile(p, *args)


def _arguments(p: str | bytes, flags: int) -> tuple[Any, ...]:
    """What ``re._compiler.compile`` gives ``_sre.compile`` for pattern ``p`` (its own steps)."""
    parsed = _parser.parse(p, flags)
    # (plain ints: the opcodes are int subclasses, which marshal refuses; _sre reads values)
    code = [int(c) for c in _compiler._code(parsed, flags)]
    groupindex = dict(parsed.state.groupdict)
    indexgroup: list[str | None] = [None] * parsed.state.groups
    for k, i in groupindex.items():
        indexgroup[i] = k
    return (
        flags | parsed.state.flags,
        code,
        parsed.state.groups - 1,
        groupindex,
        tuple(indexgroup),
    )


def _decode(data: bytes | None) -> tuple[Any, ...] | None:
    """The arguments marshalled in ``data`` (None: none, or damaged)."""
    if data is None:
        return None
    try:
        args = marshal.loads(data)
        final_flags, code, groups, groupindex, indexgroup = args
    except (ValueError, EOFError, TypeError):
        return None
    ok = (
        type(final_flags) is int
        and type(code) is list
        and type(groups) is int
        and type(groupindex) is dict
        and type(indexgroup) is tuple
    )
    return args if ok else None


def _save(path: str) -> None:
    """Rewrite the cache when this run compiled a pattern."""
    if compiled:
        try:
            new = {k: marshal.dumps(a) for k, a in _used.items()}
        except ValueError:  # (cannot happen: plain values only) - then not kept
            return
        write_entries(path, _cache, new, MAX_BYTES)
