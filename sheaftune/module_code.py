"""The compiled code of the modules the program imports, kept in one file (start-up time).

A run of ``sheaftune analyze`` imports some 170 pure-Python modules (the standard library's,
click's, numpy's, its own), one after another on one core before any work starts. For each,
the import system asks its finders in turn (a ``FileFinder`` per directory of ``sys.path`` or
of the package), checks the source's time and size, then opens and reads the module's
``.pyc``: 6-7 ms of every run (measured: finding 3.2 ms, the stats and reads 3.9 ms), besides
the unmarshalling and execution that any import does.

:func:`install`, first thing in ``sheaftune.__main__``, maps the bundle file (read-only) and
puts a finder first on ``sys.meta_path``. For a module of the bundle it answers the spec the
path finder would have found (same origin, cached file, package search locations, through
the same ``spec_from_file_location``), whose loader is a ``SourceFileLoader`` in every respect
but one: its ``get_code`` unmarshals the module's code from the mapping, the code of a
``.pyc`` that Python validated for the same source, instead of opening that ``.pyc``. It
answers only when the path finder could not find anything else:

- the bundle was made with this ``sys.path`` (its file is named by a checksum of it, so
  ``python -m`` from another directory has its own) and the same other finders on
  ``sys.meta_path``, and no directory of ``sys.path`` that changed since (modification
  times: a module added that would shadow another changes its directory) holds an entry
  under which a top-level module of the bundle's could be found (``json``, ``json.py``,
  ``json.cpython-311-x86_64-linux-gnu.so``...): the current directory, first on
  ``sys.path`` for ``python -m``, changes whenever a file is written there;
  for a package's module, the package's ``__path__`` is the one recorded;
- the module's directory and source file are as they were (modification time; the source's
  size too: the test Python applies to a ``.pyc``).

Anything else (a module not in the bundle, a source changed, a damaged or missing file) is
left to the import system, as without it. At exit (``atexit``), when the run imported a
module the bundle did not serve, the bundle is written again (atomically): the modules it
served and still valid, and the others imported this run whose ``.pyc`` Python wrote for their
source as it is (timestamp ``.pyc`` files only; modules imported before :func:`install` are
left out, and so is a ``.pyc`` compiled for another path, as in a copied environment, whose code
the loader would refuse at every run). Different commands import different modules: the
bundle keeps the union. At most :data:`MAX_BUNDLES` bundle files are kept (the oldest
removed). ``SHEAFTUNE_MODULE_CODE=0`` turns it off. Only the ``sheaftune`` program
installs it; a program that imports sheaftune is left alone.
"""

from __future__ import annotations

import marshal
import os
import sys
import zlib
from importlib import _bootstrap_external  # type: ignore[attr-defined]
from importlib.machinery import SourceFileLoader

TYPE_CHECKING = False
if TYPE_CHECKING:  # (typing is not imported: the modules it brings come from the bundle)
    from typing import Any

#: the environment variable that turns the bundle off ("0")
ENV = "SHEAFTUNE_MODULE_CODE"
#: bundle files kept in the cache directory (one per ``sys.path``; the oldest go first)
MAX_BUNDLES = 4
#: the bundle file's format (the first eight bytes: this, then the index's length)
_FORMAT = b"stmc1\x00\x00\x00"

#: the mapped bundle of this process (None: not installed)
_bundle: _Bundle | None = None


class _Bundle:
    """The mapped bundle: its index (module -> where its code is, what it was made from), the
    code itself (a view of the mapping), and what this run took from it."""

    def __init__(self, path: str, index: dict[str, tuple[Any, ...]], code: Any) -> None:
        self.path = path
        self.index = index
        self.code = code
        self.sys_path = list(sys.path)
        self.finders = _finders()
        #: the modules served this run
        self.served: set[str] = set()
        #: the modules imported before :func:`install` (never served, never written)
        self.before = set(sys.modules)
        #: directory -> its modification time, stat'ed once a run
        self.dirs: dict[str, int] = {}


class _BundledLoader(SourceFileLoader):
    """``SourceFileLoader`` whose ``get_code`` takes the module's code from the bundle (once:
    a reload reads the ``.pyc`` as usual)."""

    def __init__(self, fullname: str, path: str, code: Any) -> None:
        super().__init__(fullname, path)
        self._bundled = code

    def get_code(self, fullname: str) -> Any:
        data = self._bundled
        if data is not None and fullname == self.name:
            self._bundled = None
            try:
                code = marshal.loads(data)
            except (ValueError, EOFError, TypeError):
                code = None  # (a damaged bundle: the .pyc as usual)
            # (its own code: compiled from this very file, as the .pyc's import would say)
            if type(code) is _CODE and code.co_filename == self.path:
                return code
            # Not served after all (a damaged entry, or code compiled for another path: a
            # copied environment's .pyc files): written afresh at exit, not kept as it is.
            b = _bundle
            if b is not None:
                b.served.discard(fullname)
        return super().get_code(fullname)


_CODE = type(_Bundle.__init__.__code__)


class _Finder:
    """First on ``sys.meta_path``: the bundle's modules, under the conditions of the module
    docstring; None (the import system goes on) for anything else."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> Any:
        b = _bundle
        if b is None:
            return None
        e = b.index.get(name)
        if e is None or target is not None:
            return None
        origin, is_pkg, parent_path, mtime, size, where, where_mtime, lo, hi = e
        if path is None:
            if parent_path is not None or sys.path != b.sys_path:
                return None
        elif parent_path is None or list(path) != parent_path:
            return None
        try:
            seen = b.dirs.get(where)
            if seen is None:
                seen = b.dirs[where] = os.stat(where).st_mtime_ns
            st = os.stat(origin)
        except OSError:
            return None
        if seen != where_mtime or st.st_mtime_ns != mtime or st.st_size != size:
            return None
        b.served.add(name)
        loader = _BundledLoader(name, origin, b.code[lo:hi])
        return _bootstrap_external.spec_from_file_location(
            name, origin, loader=loader, submodule_search_locations=[where] if is_pkg else None
        )


def bundle_file() -> str | None:
    """This Python's and this ``sys.path``'s bundle (None: no cache directory)."""
    from sheaftune.startup_cache import cache_path

    tag = sys.implementation.cache_tag or "python"
    magic = _bootstrap_external.MAGIC_NUMBER.hex()
    key = zlib.crc32("\0".join(sys.path).encode("utf-8", "surrogateescape"))
    return cache_path(f"modules-{tag}-{magic}-{key:08x}")


def _finders() -> list[str]:
    """The other finders on ``sys.meta_path`` (by module and name): a finder added or gone
    could find a module elsewhere."""
    return [
        f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', type(f).__qualname__)}"
        for f in sys.meta_path
        if f is not _Finder
    ]


def _path_mtimes() -> list[int]:
    out = []
    for p in sys.path:
        try:
            out.append(os.stat(p or ".").st_mtime_ns)
        except OSError:
            out.append(-1)
    return out


def install() -> bool:
    """Serve the bundle's modules (when its file is there and holds for this ``sys.path``) and
    write it again at exit when the run imported others; False when it does not apply."""
    global _bundle
    try:
        if os.environ.get(ENV) == "0" or _bundle is not None:
            return False
        path = bundle_file()
        if path is None:
            return False
        index: dict[str, tuple[Any, ...]] = {}
        code: Any = b""
        try:
            index, code = _read(path)
        except (OSError, ValueError, EOFError, TypeError, KeyError):
            pass  # none, damaged or stale: every module as usual, the bundle written at exit
        _bundle = _Bundle(path, index, code)
        sys.meta_path.insert(0, _Finder)
        import atexit

        atexit.register(_save)
        return True
    except Exception:  # noqa: BLE001 - an optimisation only
        return False


def _read(path: str) -> tuple[dict[str, tuple[Any, ...]], Any]:
    """The bundle's index and code (raises on a missing, damaged or stale file)."""
    import mmap

    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if mm[:8] != _FORMAT:
        raise ValueError("not a bundle")
    n = int.from_bytes(mm[8:16], "little")
    head = marshal.loads(mm[16 : 16 + n])
    if head["sys.path"] != sys.path or head["finders"] != _finders():
        raise ValueError("made for another sys.path")
    index = head["modules"]
    if not isinstance(index, dict):
        raise TypeError("index")
    then, now = head["mtimes"], _path_mtimes()
    if then != now:
        # A directory of sys.path changed (the current directory of ``python -m`` changes
        # whenever a file is written there): the bundle still holds unless the directory
        # now has an entry that could shadow one of its modules.
        names = _importable_as({name.partition(".")[0] for name in index})
        for folder, a, b in zip(sys.path, then, now, strict=True):
            if a != b and _shadows(folder, names):
                raise ValueError("a directory of sys.path holds a module of the bundle's names")
    return index, memoryview(mm)[16 + n :]


def _importable_as(tops: set[str]) -> set[str]:
    """The directory entries under which the path finder would find a top-level module of
    one of these names: a package or namespace directory, a source, a ``.pyc``, an extension
    module."""
    from importlib.machinery import all_suffixes

    suffixes = ["", *all_suffixes()]
    return {top + suffix for top in tops for suffix in suffixes}


def _shadows(folder: str, names: set[str]) -> bool:
    """Whether directory ``folder`` of ``sys.path`` holds an entry of ``names`` (True when it
    cannot be listed: then nothing is known)."""
    if not folder:
        folder = "."
    try:
        return not names.isdisjoint(os.listdir(folder))
    except FileNotFoundError:
        return False  # (gone, or never there: it can hold nothing)
    except OSError:
        return True


def _save() -> None:
    """Write the bundle again when this run imported a module it did not serve."""
    b = _bundle
    if b is None:
        return
    try:
        _write(b)
    except (Exception, KeyboardInterrupt):  # noqa: BLE001 - an optimisation only (the program
        pass  # ends anyway; the next run tries again)


def _entry(name: str, module: Any) -> tuple[tuple[Any, ...], bytes] | None:
    """A module imported this run as its index entry (without the code's place) and its code,
    when its ``.pyc`` is a timestamp one written for its source as it is now, at its path."""
    spec = getattr(module, "__spec__", None)
    if spec is None or type(spec.loader) not in (SourceFileLoader, _BundledLoader):
        return None
    origin, cached = spec.origin, spec.cached
    if not origin or not cached or not origin.endswith(".py"):
        return None
    st = os.stat(origin)
    with open(cached, "rb") as f:
        data = f.read()
    header_ok = (
        data[:4] == _bootstrap_external.MAGIC_NUMBER
        and int.from_bytes(data[4:8], "little") == 0
        and int.from_bytes(data[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
        and int.from_bytes(data[12:16], "little") == st.st_size & 0xFFFFFFFF
    )
    # (and compiled for this very file: a copied environment's .pyc names the file it was
    # compiled from, and the bundle's loader would refuse its code at every run)
    if not header_ok or origin.encode("utf-8", "surrogateescape") not in data:
        return None
    where = os.path.dirname(origin)
    if "." in name:
        parent = sys.modules.get(name.rpartition(".")[0])
        parent_path = list(getattr(parent, "__path__", None) or ())
        if not parent_path:
            return None
    else:
        parent_path = None
    is_pkg = spec.submodule_search_locations is not None
    if is_pkg and list(spec.submodule_search_locations) != [where]:
        return None  # (a package whose search locations are not its directory: left alone)
    entry = (origin, is_pkg, parent_path, st.st_mtime_ns, st.st_size, where)
    return entry, data[16:]


def _write(b: _Bundle) -> None:
    imported = [
        (name, m) for name, m in list(sys.modules.items()) if name not in b.before and m is not None
    ]
    fresh: dict[str, tuple[tuple[Any, ...], bytes]] = {}
    for name, m in imported:
        if name in b.served:
            continue
        try:
            got = _entry(name, m)
        except (OSError, ValueError):
            got = None
        if got is not None:
            fresh[name] = got
    if not fresh:
        return  # (everything imported was served, or nothing can be)
    # the bundle's other entries, when still as they were (a module of another command)
    kept: dict[str, tuple[tuple[Any, ...], bytes]] = {}
    for name, e in b.index.items():
        if name in fresh or name in b.before:
            continue
        origin, is_pkg, parent_path, mtime, size, where, where_mtime, lo, hi = e
        try:
            st = os.stat(origin)
            same = (
                st.st_mtime_ns == mtime
                and st.st_size == size
                and os.stat(where).st_mtime_ns == where_mtime
            )
        except OSError:
            same = False
        if same:
            kept[name] = ((origin, is_pkg, parent_path, mtime, size, where), bytes(b.code[lo:hi]))
    index: dict[str, tuple[Any, ...]] = {}
    parts: list[bytes] = []
    at = 0
    dirs: dict[str, int] = {}
    for name, (entry, code) in {**kept, **fresh}.items():
        where = entry[5]
        if where not in dirs:
            dirs[where] = os.stat(where).st_mtime_ns
        index[name] = (*entry, dirs[where], at, at + len(code))
        parts.append(code)
        at += len(code)
    head = marshal.dumps(
        {
            "sys.path": b.sys_path,
            "mtimes": _path_mtimes(),
            "finders": b.finders,
            "modules": index,
        }
    )
    from sheaftune.startup_cache import write_atomically

    if write_atomically(b.path, [_FORMAT + len(head).to_bytes(8, "little"), head, *parts]):
        _prune(os.path.dirname(b.path))


def _prune(folder: str) -> None:
    """Keep the :data:`MAX_BUNDLES` newest bundle files of the folder."""
    try:
        names = [
            n for n in os.listdir(folder) if n.startswith("modules-") and n.endswith(".marshal")
        ]
        paths = sorted(
            (os.path.join(folder, n) for n in names), key=lambda p: os.stat(p).st_mtime_ns
        )
        for p in paths[:-MAX_BUNDLES]:
            os.unlink(p)
    except OSError:
        pass
