"""The files of the program's start-up caches: where they live, how they are read and written.

:mod:`sheaftune.dataclass_code`, :mod:`sheaftune.regex_code` and :mod:`sheaftune.module_code`
each keep, in ``pycode/`` of sheaftune's cache directory (``SHEAFTUNE_CACHE_DIR``, else
``$XDG_CACHE_HOME/sheaftune`` or ``~/.cache/sheaftune``: the same trust as the compiled
kernels kept there), what the program would otherwise compute again at every start. The first
two keep a ``marshal``-ed dict of text -> marshalled value (:func:`read_entries`,
:func:`write_entries`, which caps the file so that texts made afresh by every process cannot
grow it); all three write through :func:`write_atomically`. Standard library only, and no
``typing`` at run time: :mod:`sheaftune.module_code` imports this before the modules it serves.
"""

from __future__ import annotations

import marshal
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: The most entries a cache file keeps; those this run used are kept first.
MAX_ENTRIES = 4096


def cache_path(name: str) -> str | None:
    """``pycode/NAME.marshal`` in sheaftune's cache directory (None: no home directory to put
    it in)."""
    root = os.environ.get("SHEAFTUNE_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        home = os.path.expanduser("~")
        if xdg:
            root = os.path.join(xdg, "sheaftune")
        elif home != "~":
            root = os.path.join(home, ".cache", "sheaftune")
        else:
            return None
    return os.path.join(root, "pycode", f"{name}.marshal")


def read_entries(path: str) -> dict[Any, bytes]:
    """A cache file's entries, each value still marshalled (none when there is no file or a
    damaged one: everything is compiled afresh)."""
    try:
        with open(path, "rb") as f:
            data = marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and type(v) is bytes}


def write_entries(path: str, old: dict[Any, bytes], new: dict[Any, bytes], max_bytes: int) -> None:
    """Rewrite a cache file with the ``old`` entries (as read) and this run's ``new`` ones,
    those last, so they are the ones the caps (:data:`MAX_ENTRIES`, ``max_bytes`` of values)
    keep; atomically (a reader sees the old file or the new one), failures ignored. (The caps
    bound a file that texts made afresh by every process would grow: a pattern built from a
    set's order, say.)"""
    entries = {k: v for k, v in old.items() if k not in new}
    entries.update(new)
    kept: list[tuple[Any, bytes]] = []
    size = 0
    for k, v in reversed(list(entries.items())[-MAX_ENTRIES:]):
        size += len(v)
        if size > max_bytes and kept:
            break
        kept.append((k, v))
    entries = dict(reversed(kept))
    write_atomically(path, [marshal.dumps(entries)])


def write_atomically(path: str, parts: list[bytes]) -> bool:
    """Write ``parts`` to ``path`` through a temporary file renamed over it (a reader sees the
    old file or the new one; an interrupted write leaves neither half a file nor the temporary
    one); False when it could not be written."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            for part in parts:
                f.write(part)
        os.replace(tmp, path)
        return True
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, (OSError, ValueError)):
            return False
        raise
