"""The compiled code of dataclass methods, kept across runs like a ``.pyc`` (start-up time).

``@dataclass`` writes each method it generates (``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, a frozen class's ``__setattr__``...) as source text and compiles it with ``exec``.
Importing what ``sheaftune analyze`` needs makes about 90 of them: 10-12 ms of every run, a
third of the time sheaftune's own modules take to import, spent on one core before any work can
start. The text is the same on every run of the same code, so its compiled form can be kept.

:func:`install` gives the ``dataclasses`` module an ``exec`` of its own (a module global, which
the builtin's name then finds first) that looks the text up in a cache and compiles only what
is missing; the code it runs is what ``compile`` would have made of the same text, with the
same globals and namespace. The cache is one ``marshal`` file per Python bytecode version in
sheaftune's cache directory (``SHEAFTUNE_CACHE_DIR``, else ``$XDG_CACHE_HOME/sheaftune`` or
``~/.cache/sheaftune``: the same trust as the compiled kernels kept there), rewritten at exit
when something was compiled. The file holds every command's classes (a few hundred entries) and
a run needs about 90, so each entry's code stays marshalled until its text is asked for; and the
file is read with one ``read`` and one ``marshal.loads``, since ``marshal.load`` on an open file
makes a Python call per object it reads (15 ms instead of 0.5). No cache, an unreadable or
unwritable one, or a Python whose dataclasses do not call ``exec`` with text: nothing changes but
the time. Only the ``sheaftune`` program installs it (``sheaftune.__main__``); a program that
imports sheaftune is left alone.
"""

from __future__ import annotations

import builtins
import marshal
import sys
from typing import Any

from sheaftune.startup_cache import cache_path, read_entries, write_entries

#: The most bytes of compiled code the cache file keeps (a run needs ~150 KB; the dataclasses
#: of every command are a few hundred entries)
MAX_BYTES = 1 << 20

#: text -> its code, marshalled (as read from the file) or compiled by this run
_cache: dict[str, bytes] = {}
#: text -> the code this run took or compiled
_used: dict[str, Any] = {}
#: texts compiled by this process (the cache file is rewritten at exit when there are any)
compiled = 0


def cache_file() -> str | None:
    """Where the cache lives for this Python (None: no home directory to put it in)."""
    from importlib.util import MAGIC_NUMBER

    return cache_path(
        f"dataclasses-{sys.implementation.cache_tag or 'python'}-{MAGIC_NUMBER.hex()}"
    )


def install() -> bool:
    """Serve ``dataclasses``' compilations from the cache (read now, written at exit);
    False when it does not apply."""
    try:
        import dataclasses

        if "exec" in vars(dataclasses):  # (installed already, or someone else's)
            return False
        path = cache_file()
        if path is None:
            return False
        _cache.update(read_entries(path))
        dataclasses.exec = _exec  # type: ignore[attr-defined]
        import atexit

        atexit.register(_save, path)
        return True
    except Exception:  # noqa: BLE001 - an optimisation only
        return False


def _exec(source: Any, globals: Any = None, locals: Any = None, /) -> None:  # noqa: A002
    """``exec`` with the compiled code of a text taken from the cache when it is there."""
    global compiled
    if globals is None:  # (the caller's, as the builtin would take them)
        globals = sys._getframe(1).f_globals  # noqa: A001
    if isinstance(source, str):
        code = _used.get(source)
        if code is None:
            code = _decode(_cache.get(source))
            if code is None:
                code = compile(source, "<string>", "exec")
                compiled += 1
            _used[source] = code
        source = code
    builtins.exec(source, globals, globals if locals is None else locals)


_CODE = type(_exec.__code__)


def _decode(data: bytes | None) -> Any:
    """The code marshalled in ``data`` (None: none, or damaged)."""
    if data is None:
        return None
    try:
        code = marshal.loads(data)
    except (ValueError, EOFError, TypeError):
        return None
    return code if type(code) is _CODE else None


def _save(path: str) -> None:
    """Rewrite the cache when this run compiled something."""
    if compiled:
        write_entries(
            path, _cache, {k: marshal.dumps(code) for k, code in _used.items()}, MAX_BYTES
        )
