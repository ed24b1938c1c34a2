"""Start numpy without its docstring modules, in the ``sheaftune`` program only.

Why: numpy 2's ``numpy._core._add_newdocs`` and ``numpy._core._add_newdocs_scalars`` do
nothing but attach docstrings (and text signatures) to objects numpy defines in C ("This is
only meant to add docs to objects defined in C-extension modules", the first says of itself):
some 350 ``add_newdoc`` calls, each dedenting its text. Every start of the program paid them,
on one core, before any work could begin: 3.5-4 ms of an ``analyze`` on a fast machine, 14-16 ms
on a slow one (``-X importtime``, numpy 2.4). A command-line run never shows a numpy docstring.

So :func:`skip`, called first thing by ``sheaftune.__main__``, puts an empty module under each
of those two names in ``sys.modules`` before numpy is imported: numpy's own ``from . import
_add_newdocs, _add_newdocs_scalars`` then takes them as they are (numpy's documentation build
mocks the second out the same way). Nothing else changes: every numpy function, type and
ufunc is the same object, only without those docstrings (``help(numpy.ndarray.all)`` in that
process shows none).

Only when numpy is not imported yet, and the numpy that ``import numpy`` will find is a
version 2 whose ``_core`` holds both files (read off its ``version.py`` and its directory,
without importing it; numpy 1's modules live elsewhere and are left alone), and not with
``SHEAFTUNE_NUMPY_DOCS=1``. A program that imports sheaftune is left alone. Standard library
only: it runs before numpy is imported.
"""

from __future__ import annotations

import os
import sys

#: the environment variable that keeps numpy's docstrings ("1")
ENV = "SHEAFTUNE_NUMPY_DOCS"
#: numpy's modules that only attach docstrings (numpy 2.0 to 2.4 checked)
MODULES = ("numpy._core._add_newdocs", "numpy._core._add_newdocs_scalars")


def _major(version_py: str) -> str | None:
    """The major version in numpy's ``version.py`` (its ``version = "2.4.6"`` line)."""
    for line in version_py.splitlines():
        name, eq, value = line.partition("=")
        if eq and name.strip() == "version":
            return value.strip().strip("\"'").split(".", 1)[0]
    return None


def skip() -> bool:
    """Stand empty modules in for numpy's docstring modules; True when it did."""
    if os.environ.get(ENV) == "1" or "numpy" in sys.modules:
        return False
    try:
        from importlib.machinery import PathFinder

        # (the finder ``import numpy`` will use, and whose directory listings it keeps)
        spec = PathFinder.find_spec("numpy")
        where = list(spec.submodule_search_locations or ()) if spec is not None else []
        if len(where) != 1:  # (not found, or a namespace package: not numpy as we know it)
            return False
        root = where[0]
        with open(os.path.join(root, "version.py"), encoding="utf-8") as f:
            major = _major(f.read())
        if major != "2":
            return False
        files = [os.path.join(root, "_core", n.rsplit(".", 1)[1] + ".py") for n in MODULES]
        if not all(os.path.isfile(f) for f in files):
            return False
    except (OSError, ImportError, ValueError, UnicodeDecodeError):
        return False
    for name in MODULES:
        stub = type(sys)(name, "numpy's docstrings, not loaded by the sheaftune program")
        sys.modules.setdefault(name, stub)
    return True
