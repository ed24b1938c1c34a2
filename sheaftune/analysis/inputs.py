"""TRACE arguments -> paths: files, globs and ``@list`` files, as every many-trace command
takes them.

Kept out of :mod:`sheaftune.analysis.distribute`, which re-exports :func:`expand_inputs`: a
one-trace run expands its arguments without importing the executors and the units (creating
their dataclasses alone costs about 10 ms).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from sheaftune.errors import UsageError

#: What makes an argument a pattern (``glob.has_magic``'s characters).
_GLOB_MAGIC = frozenset("*?[")


def expand_inputs(items: Iterable[str]) -> list[str]:
    """Files, globs and list files (``@list.txt``: one path or glob a line, ``#`` comments)
    -> the paths in the order given. A glob that matches nothing is a usage error (a typo
    would otherwise drop machines from a fleet silently); ``-`` stays standard input."""
    out: list[str] = []
    for item in items:
        if item.startswith("@") and len(item) > 1:
            listfile = item[1:]
            try:
                with open(listfile, encoding="utf-8") as fh:
                    lines = [ln.strip() for ln in fh]
            except OSError as e:
                raise UsageError(f"{item}: cannot read the list file: {e.strerror}") from None
            base = os.path.dirname(os.path.abspath(listfile))
            entries = [
                ln if os.path.isabs(ln) else os.path.join(base, ln)
                for ln in lines
                if ln and not ln.startswith("#")
            ]
            out += expand_inputs(entries)
        elif _GLOB_MAGIC & set(item) and not os.path.exists(item):
            import glob  # (only for a pattern: glob and fnmatch cost every start-up ~0.5 ms)

            found = sorted(glob.glob(item))
            if not found:
                raise UsageError(f"{item}: no file matches")
            out += found
        else:
            out.append(item)
    return out
