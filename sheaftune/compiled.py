"""Ahead-of-time compiled numba kernels, cached per machine, with a JIT fallback.

numba stays the single source of the hot loops, but a run should not pay for ``import numba``
and numba's CPU-target start-up (about 1.4 s together). So each kernel module is compiled once
with ``numba.pycc`` into an ordinary CPython extension, cached on disk, and later runs import
that extension without importing numba at all.

Contract
--------
Kernel module (e.g. ``sheaftune.model._engine_kernels``):

* defines its ``@njit`` functions (``_nrt=False`` is expected: arrays are allocated by the
  Python caller, the AOT build does not link numba's runtime) and a module-level
  ``AOT_EXPORTS: dict[str, str]`` mapping each exported function's attribute name to one numba
  signature string, e.g. ``{"scan": "i8(u1[::1], i8[::1])"}``. Use ``[::1]`` (C-contiguous) in
  signatures for speed. Callers pass exactly those dtypes, dimensions and layouts: pycc's own
  entry points check only the item size (a float64 array passes as int64, a strided view is
  read as contiguous), so :func:`kernels` wraps each AOT function in a check that raises
  ``TypeError`` on an array of another dtype, ndim or (for ``::1``) a non-contiguous one, and
  on a wrong argument count (about 0.3 us per array argument; the JIT module would instead
  compile another specialisation, so no implicit casts anywhere). A caller that calls a kernel
  very often with arrays it made itself may use ``kernels(m).extension.<name>`` (AOT only:
  check ``isinstance(k, Kernels)``), which skips the check.
* Constants its callers need live in a numba-free module (the kernel module may import them
  from there); callers must not import the kernel module themselves.
* Every ``sheaftune`` module the kernel module imports (transitively, found by reading the
  source with :mod:`ast`, not by importing it) is part of the cache key, so kernels inlined
  from another module, and constants baked in, rebuild when that module changes.

:func:`kernels` (``kernels("sheaftune.model._engine_kernels")``) returns an object whose
attributes are the exported functions (called exactly like the njit functions with the
exported signature):

1. ``SHEAFTUNE_AOT=0`` in the environment: the kernel module itself (numba JIT, its own
   ``cache=True`` on-disk cache). Tests and debugging use this.
2. Otherwise, if the cache holds a verified build for the current key: that extension (numba
   is not imported).
3. Otherwise it builds one (a subprocess running ``numba.pycc`` in a temporary directory beside
   the final one, renamed into place atomically; an exclusive ``flock`` on a lock file keeps
   concurrent processes from building the same key twice, and the rename makes a half-written
   build invisible) and returns it.
4. If building or loading is impossible (no C compiler, numba missing, a pycc error, an
   extension that does not import), one line is written to standard error once per process
   and the kernel module is imported instead (same attribute names): results never depend on
   AOT, only start-up time. A failed build is remembered for a day (per key and ``$CC``) so
   every run does not retry it; a build removed from the cache, or one whose checksum no longer
   matches, is simply rebuilt.

The result is memoised per process; it is safe to call from several threads (one resolution
per module at a time; different modules build in parallel). :func:`prebuild` starts the
pending builds on background threads, so a first run can build the engine while it reads.

:func:`needs_build` tells whether the next :func:`kernels` call for that module will run an AOT
build (False with ``SHEAFTUNE_AOT=0``, after a recent failure, or once loaded: whether the JIT
module will compile is the kernel module's own business), so a command line can announce
"compiling ... (first run only)" first; :data:`build_seconds` records what a build cost.
:func:`pending_builds` does that for every module of :data:`KERNEL_MODULES` (so one message can
come before the readers' kernels load, not only before the engine's), and
``python -m sheaftune.compiled [MODULE ...]`` builds them up front (packaging, CI warm-up).
:func:`build_status` describes the cache entry (for diagnostics and tests).

Cache key: sha256 over this module's build-format number, the module name, the source bytes of
the kernel module and of the ``sheaftune`` modules it imports, the numba, llvmlite and numpy
versions (read from package metadata, without importing them), the Python version, its ABI
tag and extension suffix, and the platform. A changed numpy (ABI) or numba therefore means a
new key and a rebuild, never the import of a stale extension. The extension's module name
embeds the key, so two builds never share an init symbol in one process. Each module's key is
remembered in ``aot/<module>/key-<location>.json`` with a stamp of its inputs (see
:func:`_remembered_entry`), so a run with unchanged sources and packages does not hash them
again; the same file remembers the build as last verified against its checksum, with a stamp
of the extension and its ``meta.json``, so such a run does not hash the extension either (see
:func:`_verified_meta`).

Cache directory: ``$SHEAFTUNE_CACHE_DIR``, else ``$XDG_CACHE_HOME/sheaftune``, else
``~/.cache/sheaftune``; if that is not writable, ``<tmp>/sheaftune-<uid>`` (when it is ours).
Builds live in ``aot/<module>/<key>/`` (the extension, ``meta.json`` with its sha256 and the
exports' argument types); the newest few keys per module are kept, older ones (and temporary
directories of killed builds) removed after each build.

Builds target the generic CPU model of the architecture (``numba.pycc`` default), so a cache
directory shared by machines of one architecture stays valid. The exported entry points release
the GIL while they run (as ``nogil=True`` JIT functions do), so threads can replay in parallel.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.machinery
import importlib.util
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

# (ast, hashlib, shutil, subprocess and tempfile are imported where computing a key or a build
# needs them: a run that loads cached builds should not pay for them, nor for sysconfig and
# platform, whose values here come from the interpreter directly)

#: Bump when the build procedure or the layout of a cache entry changes (history:
#: 1 first version: pycc, generic CPU, GIL released by the entry points, no NRT;
#: 2 meta.json records each export's argument types, checked at every call).
BUILD_FORMAT = 2
#: Keys kept per module (the current one and the newest others): several checkouts (worktrees,
#: branches) sharing the cache each need theirs, or they rebuild one another's away.
KEEP = 8
#: A failed build is not retried for this long (seconds), unless ``$CC`` changes.
FAILED_TTL = 24 * 3600
#: Seconds a build may take before it is abandoned (then the JIT fallback is used).
BUILD_TIMEOUT = 900

#: The package's kernel modules (``python -m sheaftune.compiled`` builds them all up front,
#: e.g. when packaging; :func:`pending_builds` checks them). A new kernel module adds itself here.
KERNEL_MODULES = (
    "sheaftune.readers._jit",
    "sheaftune._normalize_kernels",
    "sheaftune.analysis._characterize_kernels",
    "sheaftune.analysis._plan_kernels",
    "sheaftune.model._engine_kernels",
)

_lock = threading.Lock()
_module_locks: dict[str, threading.Lock] = {}
_loaded: dict[str, Any] = {}
_warned = False
#: What the last build of each module cost (seconds), for benchmarks and the CLI.
build_seconds: dict[str, float] = {}


class BuildError(RuntimeError):
    """The AOT build of a kernel module failed (the message is one line)."""


# ----------------------------------------------------------------------------- public API
def kernels(module_name: str) -> Any:
    """The exported kernels of ``module_name``: its AOT extension, or the module itself."""
    k = _loaded.get(module_name)
    if k is not None:
        return k
    with _lock:
        module_lock = _module_locks.setdefault(module_name, threading.Lock())
    with module_lock:  # one resolution per module; different modules build in parallel
        k = _loaded.get(module_name)
        if k is None:
            k = _loaded[module_name] = _resolve(module_name)
        return k


def prebuild(modules: tuple[str, ...] | None = None) -> list[threading.Thread]:
    """Start the pending builds (default: of :data:`KERNEL_MODULES`) on daemon threads and return
    them: on a first run the engine's build can overlap reading the trace (and the readers'
    build). A later :func:`kernels` call for a module waits for its build. Nothing to do, no
    threads."""
    threads = []
    for m in pending_builds(modules):
        t = threading.Thread(target=kernels, args=(m,), name=f"sheaftune-build-{m}", daemon=True)
        t.start()
        threads.append(t)
    return threads


def needs_build(module_name: str) -> bool:
    """True when the next :func:`kernels` call for ``module_name`` will run an AOT build."""
    if module_name in _loaded or not aot_enabled():
        return False
    try:
        entry = _entry(module_name)
    except Exception:  # noqa: BLE001 - the module cannot be found: kernels() will say so
        return False
    return _verified_so(entry) is None and _recent_failure(entry) is None


def aot_enabled() -> bool:
    """False when ``SHEAFTUNE_AOT=0`` forces the JIT kernels."""
    return os.environ.get("SHEAFTUNE_AOT", "1").strip().lower() not in ("0", "no", "false", "off")


def pending_builds(modules: tuple[str, ...] | None = None) -> list[str]:
    """The kernel modules (default :data:`KERNEL_MODULES`) whose next use will build them, so a
    command can say "compiling ... (first run only)" once, before reading or replaying."""
    return [m for m in (KERNEL_MODULES if modules is None else modules) if needs_build(m)]


def build_status(module_name: str) -> dict[str, Any]:
    """Where the build of ``module_name`` for the current key lives and whether it is usable."""
    entry = _entry(module_name)
    return {
        "module": module_name,
        "key": entry.key,
        "dir": str(entry.dir),
        "built": _verified_so(entry) is not None,
        "failed": _recent_failure(entry),
    }


def cache_dir() -> str:
    """The cache root (see the module docstring); created if needed. (Paths in this module are
    plain strings: ``pathlib`` would cost every run ~3 ms of start-up, most of it the
    ``urllib.parse`` it imports.)"""
    env = os.environ.get("SHEAFTUNE_CACHE_DIR")
    if env:
        root = os.path.normpath(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = os.path.normpath(xdg) if xdg else os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "sheaftune")
    if _writable(root):
        return root
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    tmp = os.path.join(tempfile.gettempdir(), f"sheaftune-{uid}")
    with contextlib.suppress(OSError):
        with contextlib.suppress(FileExistsError):
            os.mkdir(tmp, 0o700)
        st = os.lstat(tmp)  # (a directory, not a link to one, and ours)
        if (st.st_mode & 0o170000) == 0o040000 and (
            not hasattr(os, "getuid") or st.st_uid == os.getuid()
        ):
            return tmp
    # someone else's (or unusable): a private directory for this process only
    return tempfile.mkdtemp(prefix="sheaftune-")


# ----------------------------------------------------------------------------- internals
class _Entry:
    """One module's cache entry for the current key."""

    def __init__(self, module_name: str, key: str, root: str, sources: list[str]) -> None:
        self.module_name = module_name
        self.key = key
        self.sources = sources
        self.base = os.path.join(root, "aot", module_name)
        self.dir = os.path.join(self.base, key[:32])
        self.ext_name = "_st_" + module_name.replace(".", "_") + "_" + key[:16]
        self.so = os.path.join(self.dir, self.ext_name + _EXT_SUFFIX)
        self.meta = os.path.join(self.dir, "meta.json")
        self.failed = os.path.join(self.base, key[:32] + ".failed")
        self.lockfile = os.path.join(self.base, key[:32] + ".lock")
        #: numba's and llvmlite's ``.dist-info`` directories (stamped in the key file)
        self.dists: list[str] = []
        #: {"stamp", "meta"}: the build as last verified (see :func:`_verified_meta`)
        self.verified: dict[str, Any] | None = None
        #: whether the key file may be written (the key is worth remembering)
        self.rememberable = False
        #: the stamp of the key's inputs written to the key file
        self.stamp: dict[str, Any] | None = None


#: The interpreter's extension-module suffix (sysconfig's EXT_SUFFIX, without sysconfig)
_EXT_SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _writable(root: str) -> bool:
    try:
        os.makedirs(root, exist_ok=True)
    except OSError:
        return False
    return os.access(root, os.W_OK | os.X_OK)


def _resolve(module_name: str) -> Any:
    if not aot_enabled():
        return importlib.import_module(module_name)
    try:
        entry = _entry(module_name)
        so = _verified_so(entry)
        if so is not None:
            try:
                return _load(entry)
            except Exception:  # noqa: BLE001 - stale or corrupt: rebuild below
                _discard(entry.dir)
        failed = _recent_failure(entry)
        if failed is not None:
            raise BuildError(failed)
        _build(entry)
        return _load(entry)
    except Exception as e:  # noqa: BLE001 - any failure: the JIT kernels, one warning
        _warn_once(module_name, e)
        return importlib.import_module(module_name)


def _warn_once(module_name: str, e: BaseException) -> None:
    global _warned
    with _lock:
        if _warned:
            return
        _warned = True
    reason = " ".join(str(e).split())[:300] or type(e).__name__
    sys.stderr.write(
        f"sheaftune: warning: no ahead-of-time build of {module_name} ({reason}); "
        "using numba JIT, which starts slower\n"
    )
    sys.stderr.flush()


def _origin(module_name: str) -> str:
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise BuildError(f"cannot find the source of {module_name}")
    return os.path.normpath(spec.origin)


#: Import statements, found without parsing the whole module (a kernel module is long, and
#: ``ast`` over all of it would cost more than loading the build). Compiled on first use: only
#: computing a key reads imports.
_IMPORT_PATTERN = (
    r"^[ \t]*(from[ \t]+[.\w]+[ \t]+import[ \t]+(?:\([^)]*\)|[^\n]*)|import[ \t]+[^\n]*)"
)


def _imported_sheaftune(path: str, module_name: str) -> set[str]:
    """The ``sheaftune`` modules ``path`` imports at any level (read, not imported)."""
    import ast

    package = module_name.rpartition(".")[0]
    out: set[str] = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    for m in re.finditer(_IMPORT_PATTERN, text, re.M):
        try:
            tree = ast.parse(m.group(1))
        except SyntaxError:  # prose in a docstring that looks like an import
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.split(".")[0] == "sheaftune")
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    up = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                    base = ".".join(up + ([base] if base else []))
                if base.split(".")[0] != "sheaftune":
                    continue
                out.add(base)
                for a in node.names:  # "from sheaftune.model import x" may name a module
                    if _is_submodule(base, a.name):
                        out.add(base + "." + a.name)
    return out


@functools.lru_cache(maxsize=256)
def _package_dirs(package: str) -> tuple[str, ...]:
    """Where a package's submodules live (empty for a plain module)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return ()
    locations = spec.submodule_search_locations if spec is not None else None
    return tuple(locations or ())


def _is_submodule(package: str, name: str) -> bool:
    """Whether ``package.name`` is a module, decided from the file system: ``find_spec`` of a
    dotted name would import its parent, which may be a kernel module (numba)."""
    locations = _package_dirs(package)
    return any(
        os.path.isfile(os.path.join(loc, f"{name}.py"))
        or os.path.isfile(os.path.join(loc, name, "__init__.py"))
        for loc in locations or ()
    )


def _sources(module_name: str) -> list[tuple[str, str]]:
    """The kernel module and every sheaftune module it imports, transitively."""
    seen: dict[str, str] = {}
    todo = [module_name]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            path = _origin(name)
        except (BuildError, ImportError, ValueError):
            if name == module_name:
                raise
            continue  # a name imported from a module, not a module
        seen[name] = path
        todo.extend(sorted(_imported_sheaftune(path, name) - seen.keys()))
    return sorted(seen.items())


def _dist_version(name: str) -> str:
    """An installed distribution's version (see :func:`_dist_info`)."""
    return _dist_info(name)[0]


def _dist_info(name: str) -> tuple[str, str | None]:
    """(version, ``.dist-info`` directory) of an installed distribution: from the directory's
    name when it sits beside the package (no import, no full metadata scan), else from
    :mod:`importlib.metadata` (no directory then)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        site = os.path.dirname(os.path.dirname(os.path.normpath(spec.origin)))
        try:
            found = sorted(
                d
                for d in os.listdir(site)
                if d.startswith(name + "-") and d.endswith(".dist-info") and d[0] != "."
            )
        except OSError:
            found = []
        if len(found) == 1:
            return found[0][len(name) + 1 : -len(".dist-info")], os.path.join(site, found[0])
    from importlib import metadata

    try:
        return metadata.version(name), None
    except metadata.PackageNotFoundError:
        return "missing", None


#: ``_entry`` per module with the stamp it was computed for (the CLI asks ``needs_build`` and
#: then ``kernels``: the sources are hashed once unless they change in between)
_entries: dict[str, tuple[tuple[Any, ...], _Entry]] = {}
#: sha256 of files by (path, inode, size, mtime)
_shas: dict[tuple[Any, ...], str] = {}


def _stamp(paths: list[str]) -> tuple[Any, ...]:
    stats = []
    for p in paths:
        st = os.stat(p)
        stats.append((p, st.st_ino, st.st_size, st.st_mtime_ns))
    return (cache_dir(), _numpy_version(), tuple(stats))


def _entry(module_name: str) -> _Entry:
    memo = _entries.get(module_name)
    if memo is not None:
        try:
            if _stamp(memo[1].sources) == memo[0]:
                return memo[1]
        except OSError:
            pass
    entry = _remembered_entry(module_name) or _compute_entry(module_name)
    with contextlib.suppress(OSError):
        _entries[module_name] = (_stamp(entry.sources), entry)
    return entry


#: The key of each module is remembered on disk (``aot/<module>/key-*.json``) with the stamp it
#: was computed for, so a run whose sources and installed packages are as they were skips
#: hashing the sources, reading their imports and finding the packages' versions (about 5 ms
#: per kernel module). The stamp: everything the key hashes that is not a file (format,
#: module, Python, ABI, platform, numpy version), plus (path, inode, size, mtime) of every
#: source and of numba's and llvmlite's ``.dist-info`` directories: the test Python itself
#: uses to trust a ``.pyc``. Any change, or any doubt, computes the key again.
def _fixed_parts(module_name: str) -> list[str]:
    """What the key hashes besides the sources and the numba and llvmlite versions."""
    return [
        f"format={BUILD_FORMAT}",
        f"module={module_name}",
        f"numpy={_numpy_version()}",
        f"python={sys.version}",
        f"abi={sys.implementation.cache_tag}{_EXT_SUFFIX}",
        f"platform={sys.platform}-{_machine()}",
    ]


@functools.lru_cache(maxsize=1)
def _machine() -> str:
    """``platform.machine()`` (which is ``os.uname().machine`` where there is one)."""
    if hasattr(os, "uname"):
        return os.uname().machine
    import platform

    return platform.machine()


def _file_stamps(paths: list[str]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for p in paths:
        st = os.stat(p)
        out.append([p, st.st_ino, st.st_size, st.st_mtime_ns])
    return out


def _key_file(root: str, module_name: str, origin: str) -> str:
    """Where the key of ``module_name`` found at ``origin`` is remembered: one file per source
    location, so two checkouts sharing the cache (a worktree, a second clone) never take each
    other's key, nor overwrite each other's file at every run."""
    import zlib  # (a checksum of the path names the file; the file says whose it is)

    where = f"{zlib.crc32(origin.encode()):08x}"
    return os.path.join(root, "aot", module_name, f"key-{where}.json")


def _quick_origin(module_name: str) -> str:
    """The kernel module's source path; for this package's modules without ``find_spec``
    (which would import their parent packages)."""
    package = _package_root()
    head, _, rest = module_name.partition(".")
    if head == os.path.basename(package) and rest:
        path = os.path.join(package, *rest.split(".")) + ".py"
        if os.path.isfile(path):
            return path
    return _origin(module_name)


@functools.lru_cache(maxsize=1)
def _package_root() -> str:
    return os.path.dirname(os.path.realpath(__file__))


def _remembered_entry(module_name: str) -> _Entry | None:
    """The entry from its key file when the stamp still holds (else None)."""
    root = cache_dir()
    try:
        origin = _quick_origin(module_name)
        with open(_key_file(root, module_name, origin)) as f:
            memo = json.loads(f.read())
        resolved = memo["resolved"]
        if origin not in resolved and os.path.realpath(origin) not in resolved:
            return None  # another checkout's (the file is named by a checksum of the path)
        sources = [str(p) for p in memo["sources"]]
        dists = [str(p) for p in memo["dists"]]
        now = {
            "fixed": _fixed_parts(module_name),
            "files": _file_stamps(sources + dists),
        }
        if memo["stamp"] != now or not isinstance(memo["key"], str) or len(memo["key"]) != 64:
            return None
        entry = _Entry(module_name, memo["key"], root, sources)
        entry.dists = dists
        entry.stamp = now
        entry.rememberable = True
        verified = memo.get("verified")
        entry.verified = verified if isinstance(verified, dict) else None
        return entry
    except (OSError, ValueError, KeyError, TypeError, BuildError, ImportError):
        return None


def _remember_entry(entry: _Entry) -> None:
    """Write the key file for :func:`_remembered_entry` (atomically; failures ignored: the
    key is then computed again next time), with the build as last verified."""
    if not entry.rememberable:
        return
    try:
        path = _key_file(
            os.path.dirname(os.path.dirname(entry.base)),
            entry.module_name,
            _quick_origin(entry.module_name),
        )
    except (OSError, BuildError, ImportError, ValueError):
        return
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.{threading.get_ident()}")
    try:
        if entry.stamp is None:
            entry.stamp = {
                "fixed": _fixed_parts(entry.module_name),
                "files": _file_stamps(entry.sources + entry.dists),
            }
        memo = {
            "key": entry.key,
            "sources": list(entry.sources),
            "resolved": [os.path.realpath(p) for p in entry.sources],
            "dists": list(entry.dists),
            "stamp": entry.stamp,
            "verified": entry.verified,
        }
        os.makedirs(entry.base, exist_ok=True)
        with open(tmp, "w") as f:
            f.write(json.dumps(memo))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _compute_entry(module_name: str) -> _Entry:
    import hashlib

    h = hashlib.sha256()
    numba_version, numba_dist = _dist_info("numba")
    llvmlite_version, llvmlite_dist = _dist_info("llvmlite")
    fixed = _fixed_parts(module_name)
    parts = [
        *fixed[:2],
        f"numba={numba_version}",
        f"llvmlite={llvmlite_version}",
        *fixed[2:],
    ]
    for p in parts:
        h.update(p.encode() + b"\0")
    srcs = _sources(module_name)
    for name, path in srcs:
        h.update(name.encode() + b"\0")
        h.update(hashlib.sha256(_read_bytes(path)).digest())
    entry = _Entry(module_name, h.hexdigest(), cache_dir(), [p for _, p in srcs])
    entry.dists = [d for d in (numba_dist, llvmlite_dist) if d is not None]
    # (versions not from a directory: nothing to stamp, the key is computed each time)
    entry.rememberable = len(entry.dists) == 2
    _remember_entry(entry)
    return entry


def _numpy_version() -> str:
    np = sys.modules.get("numpy")
    return str(np.__version__) if np is not None else _dist_version("numpy")


def _file_sha(path: str) -> str:
    st = os.stat(path)
    stamp = (path, st.st_ino, st.st_size, st.st_mtime_ns)
    sha = _shas.get(stamp)
    if sha is None:
        import hashlib

        sha = _shas[stamp] = hashlib.sha256(_read_bytes(path)).hexdigest()
    return sha


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _read_meta(entry: _Entry) -> dict[str, Any] | None:
    try:
        meta = json.loads(_read_text(entry.meta))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _verified_so(entry: _Entry) -> str | None:
    """The cached extension if it exists and matches the checksum recorded at build time."""
    return None if _verified_meta(entry) is None else entry.so


def _build_stamp(entry: _Entry) -> list[int]:
    so, meta = os.stat(entry.so), os.stat(entry.meta)
    return [so.st_ino, so.st_size, so.st_mtime_ns, meta.st_ino, meta.st_size, meta.st_mtime_ns]


def _verified_meta(entry: _Entry) -> dict[str, Any] | None:
    """The build's ``meta.json`` if the extension exists and matches the checksum recorded
    in it at build time (else None).

    The extension is hashed once per state of the two files, not at every run: the key file
    remembers the ``meta.json`` of the last verified build with the (inode, size, mtime) of
    both files, and a run that finds that stamp again takes the meta from there (the test that
    trusts the key, and that Python uses for a ``.pyc``). A rebuild, a truncated, rewritten,
    replaced or removed file changes the stamp and brings the hashing back.
    """
    try:
        stamp = _build_stamp(entry)
    except OSError:
        return None
    v = entry.verified
    if v is not None and v.get("stamp") == stamp:
        meta = v.get("meta")
        if isinstance(meta, dict) and meta.get("key") == entry.key:
            return meta
    meta = _read_meta(entry)
    if meta is None or meta.get("key") != entry.key:
        return None
    try:
        if _file_sha(entry.so) != meta.get("sha256") or _build_stamp(entry) != stamp:
            return None
    except OSError:
        return None
    entry.verified = {"stamp": stamp, "meta": meta}
    _remember_entry(entry)
    return meta


def _load(entry: _Entry) -> Any:
    meta = _verified_meta(entry)
    if meta is None:
        raise BuildError(f"the build of {entry.module_name} is missing or corrupt")
    spec = importlib.util.spec_from_file_location(entry.ext_name, entry.so)
    if spec is None or spec.loader is None:
        raise BuildError(f"cannot load {entry.so}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    exports = meta.get("exports")
    if not isinstance(exports, dict) or not exports:
        raise BuildError(f"{entry.so} has no exports recorded")
    missing = [n for n in exports if not hasattr(mod, n)]
    if missing:
        raise BuildError(f"{entry.so} lacks {', '.join(missing)}")
    return Kernels(entry.module_name, mod, exports)


class Kernels:
    """The AOT functions of one kernel module, each behind an argument check."""

    def __init__(self, module_name: str, ext: Any, exports: dict[str, list[Any]]) -> None:
        self.__name__ = module_name
        self.__file__ = getattr(ext, "__file__", None)
        self.extension = ext
        for name, args in exports.items():
            setattr(self, name, _checked(name, getattr(ext, name), args))

    def __repr__(self) -> str:
        return f"<AOT kernels of {self.__name__} from {self.__file__}>"


def _checked(name: str, fn: Any, args: list[Any]) -> Any:
    """``fn`` refusing arrays its compiled signature would misread."""
    import numpy as np

    n = len(args)
    checks = [
        (i, np.dtype(a[1]), int(a[2]), a[3] == "C")
        for i, a in enumerate(args)
        if isinstance(a, list) and a[0] == "array"
    ]
    ndarray = np.ndarray

    def call(*argv: Any) -> Any:
        if len(argv) != n:
            raise TypeError(f"{name}() takes {n} arguments ({len(argv)} given)")
        for i, dt, nd, contig in checks:
            x = argv[i]
            if (
                not isinstance(x, ndarray)
                or x.dtype != dt
                or x.ndim != nd
                or (contig and not x.flags.c_contiguous)
            ):
                got = f"{x.dtype}[{x.ndim}d]" if isinstance(x, ndarray) else type(x).__name__
                raise TypeError(
                    f"{name}() argument {i}: expected a {'contiguous ' if contig else ''}"
                    f"{dt}[{nd}d] array, got {got}"
                    + ("" if not isinstance(x, ndarray) or x.flags.c_contiguous else " (strided)")
                )
        return fn(*argv)

    call.__name__ = call.__qualname__ = name
    call.__wrapped__ = fn  # type: ignore[attr-defined]
    return call


def _recent_failure(entry: _Entry) -> str | None:
    """The reason of a recent failed build of this key with the same ``$CC``, if any."""
    try:
        st = os.stat(entry.failed)
        info = json.loads(_read_text(entry.failed))
    except (OSError, ValueError):
        return None
    if time.time() - st.st_mtime > FAILED_TTL or info.get("cc") != os.environ.get("CC"):
        return None
    return str(info.get("reason", "an earlier build failed"))


def _discard(path: str) -> None:
    """Remove a cache directory: renamed aside first, so readers never see half of it."""
    if not os.path.exists(path):
        return
    import shutil

    head, name = os.path.split(path)
    aside = os.path.join(head, f".trash-{name}-{os.getpid()}-{threading.get_ident()}")
    with contextlib.suppress(OSError):
        os.rename(path, aside)
        shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: the rename-based publish alone keeps builds whole
        yield
        return
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
        except OSError:  # e.g. ENOLCK on some network file systems: the rename still protects
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


#: Run in a fresh interpreter: import the kernel module, export AOT_EXPORTS with pycc.
_BUILD_SCRIPT = r"""
import importlib, json, sys, traceback
module_name, ext_name, out_dir = sys.argv[1:4]


def build():
    import numba.core.compiler as _ncc
    import numba.pycc.compiler as _pcc
    from numba.pycc import CC

    class _NoGilFlags(_ncc.Flags):
        # the pycc entry points get numba's CPython wrapper; with release_gil it drops the
        # GIL around the call, as @njit(nogil=True) dispatchers do
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.release_gil = True

    _pcc.Flags = _NoGilFlags
    mod = importlib.import_module(module_name)
    exports = getattr(mod, "AOT_EXPORTS", None)
    if not isinstance(exports, dict) or not exports:
        raise ValueError(f"{module_name} defines no AOT_EXPORTS")
    cc = CC(ext_name, source_module=mod)
    cc.output_dir = out_dir
    cc._use_nrt = False  # the kernels are compiled with _nrt=False; no runtime to link
    for name, sig in exports.items():
        fn = getattr(mod, name)
        cc.export(name, sig)(getattr(fn, "py_func", fn))
    cc.compile()
    from numba.core import sigutils, types
    from numba.np.numpy_support import as_dtype

    spec = {}
    for name, sig in exports.items():
        args, _ = sigutils.normalize_signature(sig)
        spec[name] = [
            ["array", as_dtype(t.dtype).str, t.ndim, t.layout] if isinstance(t, types.Array)
            else ["scalar", str(t)]
            for t in args
        ]
    print(cc.output_file)
    print(json.dumps(spec))


try:
    build()
except BaseException as e:
    traceback.print_exc()
    first = (str(e).strip().splitlines() or [""])[0]
    sys.stderr.write(f"\nBUILD-ERROR: {type(e).__name__}: {first}\n")
    sys.exit(1)
"""


def _build(entry: _Entry) -> None:
    import shutil
    import tempfile

    os.makedirs(entry.base, exist_ok=True)
    with _locked(entry.lockfile):
        if _verified_so(entry) is not None:
            return  # another process built it while we waited
        failed = _recent_failure(entry)
        if failed is not None:
            raise BuildError(failed)
        _discard(entry.dir)  # a corrupt or partial build of this key
        tmp = tempfile.mkdtemp(prefix=".build-", dir=entry.base)
        try:
            t0 = time.perf_counter()
            try:
                out = _run_pycc(entry, tmp)
            except BuildError as e:
                _record_failure(entry, str(e))
                raise
            build_seconds[entry.module_name] = time.perf_counter() - t0
            lines = out.strip().splitlines()
            so_name, exports = lines[-2], json.loads(lines[-1])
            so = os.path.join(tmp, so_name)
            want = os.path.join(tmp, os.path.basename(entry.so))
            if so != want:
                os.replace(so, want)
                so = want
            meta = {
                "key": entry.key,
                "module": entry.module_name,
                "sha256": _file_sha(so),
                "exports": exports,
                "sources": list(entry.sources),
                "build_seconds": round(build_seconds[entry.module_name], 3),
                "created": time.time(),
            }
            _write_text(os.path.join(tmp, "meta.json"), json.dumps(meta, indent=1, sort_keys=True))
            try:
                os.rename(tmp, entry.dir)  # the publish: atomic, and fails if the dir exists
            except OSError:
                if _verified_so(entry) is None:  # not a concurrent builder's good build
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    _prune(entry)


def _run_pycc(entry: _Entry, out_dir: str) -> str:
    import subprocess

    # the child must import the same sheaftune: put its root first on its path, and keep
    # ``-c``'s current directory off it (-P), or a run started in another checkout would
    # compile that checkout's sources under this one's key
    root = _origin(entry.module_name)
    for _ in entry.module_name.split("."):
        root = os.path.dirname(root)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("NUMBA_DISABLE_JIT", None)
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-P",
                "-c",
                _BUILD_SCRIPT,
                entry.module_name,
                entry.ext_name,
                out_dir,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BuildError(f"pycc did not run: {e}") from e
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
        tagged = [ln[len("BUILD-ERROR: ") :] for ln in lines if ln.startswith("BUILD-ERROR: ")]
        reason = (tagged or lines or [f"pycc exited with {proc.returncode}"])[-1]
        raise BuildError(reason.strip())
    return proc.stdout


def _record_failure(entry: _Entry, reason: str) -> None:
    with contextlib.suppress(OSError):
        _write_text(entry.failed, json.dumps({"reason": reason, "cc": os.environ.get("CC")}))


def _prune(entry: _Entry) -> None:
    """Keep the newest :data:`KEEP` builds of this module (always the current one)."""
    try:
        names = os.listdir(entry.base)
    except OSError:
        return
    paths = [os.path.join(entry.base, n) for n in names]
    dirs = [p for p in paths if os.path.isdir(p) and not os.path.basename(p).startswith(".")]
    stale = time.time() - 2 * BUILD_TIMEOUT
    with contextlib.suppress(OSError):  # temporary dirs of builds killed midway
        for p in paths:
            if os.path.basename(p).startswith((".build-", ".trash-")) and _mtime(p) < stale:
                _discard(p)
    others = sorted((d for d in dirs if d != entry.dir), key=_mtime, reverse=True)
    for d in others[KEEP - 1 :]:
        _discard(d)
        for ext in (".lock", ".failed"):
            with contextlib.suppress(OSError):
                os.unlink(d + ext)


def _mtime(p: str) -> float:
    try:
        return os.stat(p).st_mtime
    except OSError:
        return 0.0


def main(argv: list[str] | None = None) -> int:
    """``python -m sheaftune.compiled [MODULE ...]``: build what is missing, say what it cost."""
    modules = (argv if argv is not None else sys.argv[1:]) or list(KERNEL_MODULES)
    status = 0
    for m in modules:
        fresh = needs_build(m)
        t = time.perf_counter()
        k = kernels(m)
        aot = isinstance(k, Kernels)
        status |= not aot
        how = ("built" if fresh else "up to date") if aot else "JIT fallback (no AOT build)"
        print(f"{m}: {how} in {time.perf_counter() - t:.1f} s ({build_status(m)['dir']})")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
