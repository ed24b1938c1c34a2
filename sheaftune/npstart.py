"""How the ``sheaftune`` program gets numpy imported sooner: without its docstring modules and
its typing package, with its compiled libraries loaded on the idle core beforehand, and (with
click) without standard-library modules they bind but do not use.

Every run of the program imports numpy (80-130 ms on a slow machine, 25 ms on a fast one), on
one core, before any work can start. Four parts of that are not the program's business:

- Docstrings. numpy 2's ``numpy._core._add_newdocs`` and ``numpy._core._add_newdocs_scalars``
  do nothing but attach docstrings (and text signatures) to objects numpy defines in C ("This
  is only meant to add docs to objects defined in C-extension modules", the first says of
  itself): some 350 ``add_newdoc`` calls, each dedenting its text, 3.5-4 ms of an ``analyze``
  on a fast machine, 14-16 ms on a slow one (``-X importtime``, numpy 2.4). A command-line run
  never shows a numpy docstring. :func:`skip_docs` puts an empty module under each of those
  names in ``sys.modules`` before numpy is imported; numpy's own ``from . import _add_newdocs,
  _add_newdocs_scalars`` then takes them as they are (numpy's documentation build mocks the
  second out the same way). Every numpy function, type and ufunc is the same object, only
  without those docstrings (``help(numpy.ndarray.all)`` in that process shows none). Only for
  a numpy 2 whose ``_core`` holds both files (read off its ``version.py`` and its directory,
  without importing it), and not with ``SHEAFTUNE_NUMPY_DOCS=1``.
- Typing. ``numpy.linalg`` imports ``numpy._typing`` for one name, ``NDArray``, which it
  subscripts in the annotations of its result types (``EigResult`` and the like); the package
  itself is a tree of typing-only modules (``Literal`` unions of every type code, protocols),
  8-16 ms of the import (``-X importtime``, numpy 2.4; numpy 2.0 to 2.4 import it from
  ``numpy.linalg`` alone, no other module of theirs at import time). :func:`skip_typing` puts
  a stand-in under that name before numpy is imported: it gives ``numpy.linalg`` the alias
  ``ndarray[tuple[Any, ...], dtype[_ScalarT]]`` (numpy 2.3 and 2.4's own exactly; numpy 2.0-2.2
  wrote ``Any`` or ``tuple[int, ...]`` for the shape, which those annotations then read
  differently; nothing evaluates them at run time) and leaves
  ``sys.modules`` as it does, so ``numpy.typing``, or anything else later, imports the real
  package; any other name asked of the stand-in imports it too. Not with
  ``SHEAFTUNE_NUMPY_TYPING=1``.
- Loading its extension modules. ``_multiarray_umath`` brings OpenBLAS, libgfortran and
  libquadmath with it: mapping and relocating them, and running their initialisers, took
  5-9 ms of the import on a slow machine, all of it in the dynamic loader. ``ctypes`` releases
  the GIL around ``dlopen`` (measured: another thread ran on throughout), so :func:`load`,
  run on the thread that :mod:`sheaftune.heap` starts first thing (or on a thread of its own
  when the heap is left alone), loads them while the main thread still imports click and the
  standard library; numpy's import then finds them loaded (the same files: the dynamic loader
  hands back the same objects) and only initialises the modules. Only for the commands that
  import numpy (:data:`COMMANDS`), and not with ``SHEAFTUNE_PREFETCH=0`` (which turns the
  other start-up prefetches off too).
- Standard-library modules bound, not used. numpy 2 imports ``platform`` and ``textwrap`` (for
  ``show_runtime`` and the texts of deprecations) at the top of a module whose functions an
  analysis never calls; click imports ``uuid`` for its ``UUID`` parameter type, and uuid
  imports ``platform`` too. 3-4 ms of imports (``-X importtime``; ``platform`` alone compiles
  a dozen regular expressions), none of it used. (numpy's ``pickle`` is left alone: the
  compiled kernels' modules import it when they load.) :func:`defer` puts a
  :class:`_Deferred` stand-in under each name before those imports, and :func:`settle` takes
  the stand-ins out of ``sys.modules`` once numpy and click are in, so any later import of
  these names loads the real module; numpy's and click's modules keep the stand-in they
  bound, which loads the real module on the first attribute asked of it and answers from it
  (a function of theirs that needs it works as before, its first call a few milliseconds
  slower). The one name read while click itself is imported, ``uuid.UUID`` in the type
  parameter of ``class UUIDParameterType(ParamType[uuid.UUID])``, is answered with
  ``typing.Any`` there (no code reads a type parameter at run time; click 8.5 checked); read
  later it is the real class. Not with ``SHEAFTUNE_IMPORT_ALL=1``.

A program that imports sheaftune is left alone. Standard library only: it runs before numpy is
imported, and every failure leaves the import as it would have been.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from sheaftune.premap import ENV as ENV_PRELOAD  # ("0": the library preload off too)

#: the environment variable that keeps numpy's docstrings ("1")
ENV_DOCS = "SHEAFTUNE_NUMPY_DOCS"
#: numpy's modules that only attach docstrings (numpy 2.0 to 2.4 checked)
DOC_MODULES = ("numpy._core._add_newdocs", "numpy._core._add_newdocs_scalars")
#: the environment variable that keeps numpy's own ``numpy._typing`` at start-up ("1")
ENV_TYPING = "SHEAFTUNE_NUMPY_TYPING"
#: numpy's typing module, which ``numpy.linalg`` imports for one alias (a stand-in takes it)
TYPING_MODULE = "numpy._typing"
#: the environment variable that keeps every module numpy and click import at start-up ("1")
ENV_DEFER = "SHEAFTUNE_IMPORT_ALL"
#: the standard-library modules a stand-in takes while each library is imported (bound at the
#: top of its modules, used only inside functions a run never calls)
DEFERRED: dict[str, tuple[str, ...]] = {
    "numpy": ("platform", "textwrap"),
    "click": ("uuid", "platform"),
}
#: what a stand-in answers, without loading its module, until :func:`settle` (click's
#: ``ParamType[uuid.UUID]``: a type parameter)
_EARLY: dict[str, dict[str, Any]] = {"uuid": {"UUID": Any}}
#: numpy's extension modules that ``import numpy`` loads, by directory (numpy 2, then 1)
EXTENSIONS = (
    (("_core", "core"), "_multiarray_umath"),
    (("linalg",), "_umath_linalg"),
)
#: the commands whose runs import numpy
COMMANDS = frozenset({"analyze", "recommend", "simulate", "compare", "fleet", "convert"})

#: the libraries :func:`load` loaded (kept: a handle is never closed)
_handles: list[Any] = []
#: the stand-ins :func:`defer` put in ``sys.modules``, until :func:`settle`
_stand_ins: list[_Deferred] = []
#: :func:`numpy_root`'s answer, once asked
_root: list[str | None] = []


def numpy_root() -> str | None:
    """The directory of the numpy package that ``import numpy`` will find (None: none, or not
    a plain package), found without importing it (once a process)."""
    if not _root:
        try:
            from importlib.machinery import PathFinder

            # (the finder ``import numpy`` will use, and whose directory listings it keeps)
            spec = PathFinder.find_spec("numpy")
            where = list(spec.submodule_search_locations or ()) if spec is not None else []
        except (ImportError, ValueError, OSError):
            where = []
        _root.append(where[0] if len(where) == 1 else None)
    return _root[0]


def _major(version_py: str) -> str | None:
    """The major version in numpy's ``version.py`` (its ``version = "2.4.6"`` line)."""
    for line in version_py.splitlines():
        name, eq, value = line.partition("=")
        if eq and name.strip() == "version":
            return value.strip().strip("\"'").split(".", 1)[0]
    return None


#: :func:`_numpy_major`'s answers, by directory (``skip_docs`` and ``skip_typing`` both ask)
_majors: dict[str, str | None] = {}


def _numpy_major(root: str) -> str | None:
    """The major version of the numpy in ``root``, read off its ``version.py`` (once)."""
    if root not in _majors:
        try:
            with open(os.path.join(root, "version.py"), encoding="utf-8") as f:
                _majors[root] = _major(f.read())
        except (OSError, ValueError):
            _majors[root] = None
    return _majors[root]


def skip_docs() -> bool:
    """Stand empty modules in for numpy's docstring modules; True when it did."""
    if os.environ.get(ENV_DOCS) == "1" or "numpy" in sys.modules:
        return False
    root = numpy_root()
    if root is None:
        return False
    major = _numpy_major(root)
    files = [os.path.join(root, "_core", n.rsplit(".", 1)[1] + ".py") for n in DOC_MODULES]
    if major != "2" or not all(os.path.isfile(f) for f in files):
        return False
    for name in DOC_MODULES:
        stub = type(sys)(name, "numpy's docstrings, not loaded by the sheaftune program")
        sys.modules.setdefault(name, stub)
    return True


def skip_typing() -> bool:
    """Stand :class:`_TypingStandIn` in for ``numpy._typing`` while numpy is imported; True
    when it did (numpy 2 with that package, not once numpy is imported, not with
    ``SHEAFTUNE_NUMPY_TYPING=1``)."""
    if os.environ.get(ENV_TYPING) == "1" or "numpy" in sys.modules:
        return False
    root = numpy_root()
    if root is None or _numpy_major(root) != "2":
        return False
    if not os.path.isfile(os.path.join(root, "_typing", "__init__.py")):
        return False
    sys.modules.setdefault(TYPING_MODULE, _TypingStandIn(TYPING_MODULE))
    return True


def _ndarray_alias() -> Any:
    """numpy 2.3+'s ``numpy._typing.NDArray``, made of what the partly imported numpy already
    has (``ndarray``, ``dtype``, ``generic``: numpy._core is in before numpy.linalg): a real
    generic alias, ``ndarray[tuple[Any, ...], dtype[_ScalarT]]``, so whatever numpy.linalg does
    with it (today it subscripts it: ``NDArray[Any]``) works as with numpy's own."""
    from typing import TypeVar

    np = sys.modules["numpy"]
    type_var: Any = TypeVar  # (a bound known only at run time: not a TypeVar for mypy)
    scalar = type_var("_ScalarT", bound=np.generic)  # (numpy's own TypeVar, by name)
    return np.ndarray[tuple[Any, ...], np.dtype[scalar]]


class _Deferred(type(sys)):  # type: ignore[misc]
    """A standard-library module that numpy or click binds at import and uses only later, if
    ever (:data:`DEFERRED`): the first name asked of it loads the real module (leaving
    ``sys.modules`` to it) and every answer comes from that module. Until :func:`settle`,
    names of :data:`_EARLY` are answered without loading anything."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # (the import system's questions: ``__path__`` and the like)
            raise AttributeError(name)
        early = _EARLY.get(self.__name__, {})
        if name in early and self in _stand_ins:
            return early[name]
        return getattr(self._real(), name)

    def _real(self) -> Any:
        """The real module, imported (the stand-in first leaves ``sys.modules`` if still there)."""
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        import importlib

        return importlib.import_module(self.__name__)


class _TypingStandIn(_Deferred):
    """``numpy._typing`` while numpy is imported: numpy.linalg's ``from numpy._typing import
    NDArray`` (numpy's only runtime import of it) takes :func:`_ndarray_alias` and the stand-in
    leaves ``sys.modules`` at once, so any later import (``numpy.typing``, a user's code) loads
    the real module. Any other name asked of it, or ``NDArray`` should numpy lack what the
    alias is made of, loads the real module and answers from it."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # (the import system's questions: ``__path__`` and the like)
            raise AttributeError(name)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        if name == "NDArray":
            try:
                return _ndarray_alias()
            except (KeyError, AttributeError, TypeError):
                pass
        return getattr(self._real(), name)


def defer() -> int:
    """Stand :class:`_Deferred` in for the modules of :data:`DEFERRED` whose importer (numpy,
    click) is not imported yet and which are not loaded either; the number put in. Call
    :func:`settle` once numpy and click are imported."""
    if os.environ.get(ENV_DEFER) == "1":
        return 0
    for importer, names in DEFERRED.items():
        if importer in sys.modules:
            continue
        for name in names:
            if name not in sys.modules:
                stand_in = _Deferred(name, "loaded when first used (sheaftune.npstart)")
                sys.modules[name] = stand_in
                _stand_ins.append(stand_in)
    return len(_stand_ins)


def settle() -> None:
    """Take :func:`defer`'s stand-ins out of ``sys.modules`` (an ``import`` from now on loads
    the real module); the modules that bound one keep it, and it loads the real one when used."""
    for stand_in in _stand_ins:
        if sys.modules.get(stand_in.__name__) is stand_in:
            del sys.modules[stand_in.__name__]
    _stand_ins.clear()


def libraries(argv: list[str]) -> list[str]:
    """The files of numpy's extension modules to load ahead for this command line (none for
    another command, with ``SHEAFTUNE_PREFETCH=0``, or once numpy is imported)."""
    args = [a for a in argv if a != "--debug"]
    if not args or args[0] not in COMMANDS or "--help" in args or "-h" in args:
        return []
    if os.environ.get(ENV_PRELOAD, "1") == "0" or "numpy" in sys.modules:
        return []
    root = numpy_root()
    if root is None:
        return []
    from importlib.machinery import EXTENSION_SUFFIXES

    found = []
    for dirs, name in EXTENSIONS:
        for d in dirs:
            hits = [os.path.join(root, d, name + s) for s in EXTENSION_SUFFIXES]
            hit = next((p for p in hits if os.path.isfile(p)), None)
            if hit is not None:
                found.append(hit)
                break
    return found


def load(paths: list[str]) -> int:
    """``dlopen`` each file, as Python's import would (``RTLD_NOW``, local), without the GIL;
    the number loaded (the first failure ends it: the import then loads the rest itself)."""
    try:
        import ctypes

        mode = getattr(os, "RTLD_LOCAL", 0) | getattr(os, "RTLD_NOW", 2)
        for p in paths:
            _handles.append(ctypes.CDLL(p, mode=mode))
    except Exception:  # noqa: BLE001 - an optimisation only: the import loads them itself
        pass
    return len(_handles)


def start(paths: list[str]) -> threading.Thread | None:
    """:func:`load` on a thread of its own (when no other thread of the start-up takes it)."""
    if not paths:
        return None
    t = threading.Thread(target=load, args=(paths,), name="numpy-preload", daemon=True)
    t.start()
    return t
