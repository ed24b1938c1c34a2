"""sheaftune.compiled: AOT builds of numba kernel modules, their cache, and the JIT fallback.

A tiny kernel module (written to a temporary directory) stands in for the real ones, so each
build costs seconds; it is built once per session and copied where a test needs a warm cache.
The engine's own AOT/JIT equality is tested in tests/model/test_fast_engine.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sheaftune import compiled

KERNEL_SOURCE = textwrap.dedent(
    '''
    """A tiny kernel module for tests/test_compiled.py."""
    from numba import njit

    _jit = njit(nogil=True, _nrt=False)


    @_jit
    def _twice(x, i):
        return x[i] * 2


    @_jit
    def total(x, n):
        s = 0
        for _ in range(n):
            for i in range(x.shape[0]):
                s += _twice(x, i)
        return s


    @_jit
    def fill(out, v):
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                out[i, j] = v
        return out.size


    AOT_EXPORTS = {"total": "i8(i8[::1], i8)", "fill": "i8(f8[:, ::1], f8)"}
    '''
)
NAME = "stkern_tiny"


@pytest.fixture(scope="session")
def kern_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("kern")
    (d / f"{NAME}.py").write_text(KERNEL_SOURCE)
    sys.path.insert(0, str(d))
    try:
        yield d
    finally:
        sys.path.remove(str(d))


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, kern_dir: Path) -> Path:
    """No memoised kernels, no warning given yet, AOT on; returns the kernel directory."""
    monkeypatch.setattr(compiled, "_loaded", {})
    monkeypatch.setattr(compiled, "_warned", False)
    monkeypatch.delenv("SHEAFTUNE_AOT", raising=False)
    monkeypatch.delenv("CC", raising=False)
    return kern_dir


@pytest.fixture(scope="session")
def built(kern_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory holding one build of the tiny module (built once per session); tests
    that build ask for it too, so they all skip where no build is possible (no C compiler)."""
    cache = tmp_path_factory.mktemp("aot-cache")
    env = dict(os.environ, SHEAFTUNE_CACHE_DIR=str(cache), PYTHONPATH=str(kern_dir))
    env.pop("SHEAFTUNE_AOT", None)
    code = f"from sheaftune import compiled; print(type(compiled.kernels({NAME!r})).__name__)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.stdout.strip() != "Kernels":
        pytest.skip(f"no AOT build is possible here: {out.stderr.strip()[-300:]}")
    return cache


def warm_copy(built: Path, dest: Path) -> Path:
    shutil.copytree(built, dest)
    return dest


def entry_dir(cache: Path) -> Path:
    (d,) = [p for p in (cache / "aot" / NAME).iterdir() if p.is_dir()]
    return d


def run_py(code: str, cache: Path, kern_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ, SHEAFTUNE_CACHE_DIR=str(cache), PYTHONPATH=str(kern_dir), **env)
    if "SHEAFTUNE_AOT" not in env:
        e.pop("SHEAFTUNE_AOT", None)
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True)


CHECK = (
    "import sys, numpy as np; from sheaftune import compiled; "
    f"k = compiled.kernels({NAME!r}); "
    "print(k.total(np.arange(10, dtype=np.int64), 3), type(k).__name__, 'numba' in sys.modules, "
    "sorted(compiled.build_seconds))"
)


# ----------------------------------------------------------------------------- the happy path
def test_a_build_imports_without_numba(built: Path, kern_dir: Path) -> None:
    out = run_py(CHECK, built, kern_dir)
    assert out.stdout.split() == ["270", "Kernels", "False", "[]"], out.stderr
    assert out.stderr == ""


def test_aot_equals_jit(built: Path, fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHEAFTUNE_CACHE_DIR", str(built))
    k = compiled.kernels(NAME)
    assert isinstance(k, compiled.Kernels)
    assert compiled.kernels(NAME) is k  # memoised
    monkeypatch.setattr(compiled, "_loaded", {})
    monkeypatch.setenv("SHEAFTUNE_AOT", "0")
    jit = compiled.kernels(NAME)
    assert jit is sys.modules[NAME]
    x = np.arange(1000, dtype=np.int64)
    assert k.total(x, 2) == jit.total(x, 2) == 2 * 2 * int(x.sum())
    a, b = np.zeros((3, 4)), np.zeros((3, 4))
    assert k.fill(a, 1.5) == jit.fill(b, 1.5) == 12
    assert np.array_equal(a, b) and a[2, 3] == 1.5


def test_aot_arguments_are_checked(
    built: Path, fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pycc's entry points check only the item size; the wrapper refuses what they misread."""
    monkeypatch.setenv("SHEAFTUNE_CACHE_DIR", str(built))
    k = compiled.kernels(NAME)
    x = np.arange(10, dtype=np.int64)
    for bad in (x.astype(np.float64), x.astype(np.int32), x[::2], x.reshape(2, 5), [1, 2]):
        with pytest.raises(TypeError, match="argument 0"):
            k.total(bad, 1)
    with pytest.raises(TypeError, match="takes 2 arguments"):
        k.total(x)
    with pytest.raises(TypeError, match="contiguous float64"):
        k.fill(np.zeros((4, 4))[:, ::2], 1.0)


def test_the_gil_is_released(built: Path, fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python runs in another thread while an AOT kernel runs (as with nogil JIT functions):
    the main thread wakes from a short sleep and takes the GIL before the kernel returns."""
    import threading

    monkeypatch.setenv("SHEAFTUNE_CACHE_DIR", str(built))
    k = compiled.kernels(NAME)
    x = np.arange(200_000, dtype=np.int64)
    n = 1
    while True:  # at least 0.3 s of work
        t = time.perf_counter()
        k.total(x, n)
        if time.perf_counter() - t > 0.3:
            break
        n *= 2
    done: list[float] = []

    def work() -> None:
        k.total(x, 2 * n)
        done.append(time.perf_counter())

    worker = threading.Thread(target=work)
    worker.start()
    time.sleep(0.05)
    woke = time.perf_counter()  # needs the GIL: after the kernel if the kernel held it
    worker.join()
    assert woke < done[0]


# ----------------------------------------------------------------------------- the cache
def test_needs_build_and_the_cache_key(
    built: Path, fresh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHEAFTUNE_CACHE_DIR", str(tmp_path / "empty"))
    assert compiled.needs_build(NAME) is True
    monkeypatch.setenv("SHEAFTUNE_AOT", "0")
    assert compiled.needs_build(NAME) is False
    monkeypatch.delenv("SHEAFTUNE_AOT")
    monkeypatch.setenv("SHEAFTUNE_CACHE_DIR", str(built))
    assert compiled.needs_build(NAME) is False
    assert compiled.build_status(NAME)["built"] is True
    key = compiled.build_status(NAME)["key"]
    # another numpy (ABI) or numba is another key: a rebuild, never a stale extension
    monkeypatch.setattr(compiled, "_numpy_version", lambda: "0.0.1")
    assert compiled.build_status(NAME)["key"] != key
    assert compiled.needs_build(NAME) is True


def test_the_key_covers_imported_sheaftune_modules() -> None:
    names = [n for n, _ in compiled._sources("sheaftune.model._engine_kernels")]
    assert names == ["sheaftune.model._engine_kernels", "sheaftune.model._engine_layout"]


def test_a_source_change_rebuilds(
    built: Path, fresh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = fresh / "stkern_edit.py"
    src.write_text(KERNEL_SOURCE)
    monkeypatch.setenv("SHEAFTUNE_CACHE_DIR", str(tmp_path))
    try:
        first = compiled.kernels("stkern_edit")
        assert isinstance(first, compiled.Kernels)
        assert compiled.needs_build("stkern_edit") is False
        monkeypatch.setattr(compiled, "_loaded", {})
        src.write_text(KERNEL_SOURCE.replace("return x[i] * 2", "return x[i] * 3"))
        assert compiled.needs_build("stkern_edit") is True
        second = compiled.kernels("stkern_edit")
        assert isinstance(second, compiled.Kernels)
        assert second.total(np.arange(10, dtype=np.int64), 1) == 135  # the new source
        assert first.total(np.arange(10, dtype=np.int64), 1) == 90
        builds = [p for p in (tmp_path / "aot" / "stkern_edit").iterdir() if p.is_dir()]
        assert len(builds) == 2
    finally:
        sys.modules.pop("stkern_edit", None)


def test_old_builds_are_pruned(
    built: Path, fresh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = warm_copy(built, tmp_path / "c")
    monkeypatch.setenv("SHEAFTUNE_CACHE_DIR", str(cache))
    entry = compiled._entry(NAME)
    base = Path(entry.base)
    n = compiled.KEEP + 3
    for i in range(n):
        old = base / f"{i:032x}"
        old.mkdir()
        (base / f"{i:032x}.lock").touch()
        os.utime(old, (1000 + i, 1000 + i))
    killed = base / ".build-killed"
    killed.mkdir()
    os.utime(killed, (1000, 1000))
    fresh_tmp = base / ".build-running"
    fresh_tmp.mkdir()
    compiled._prune(entry)
    assert not killed.exists() and fresh_tmp.exists()
    fresh_tmp.rmdir()
    kept = sorted(p.name for p in base.iterdir() if p.is_dir())
    newest = [f"{i:032x}" for i in range(n - compiled.KEEP + 1, n)]
    assert kept == sorted([Path(entry.dir).name, *newest])
    assert not (base / f"{0:032x}.lock").exists()


def test_an_unwritable_cache_dir_falls_back_to_a_private_temp_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHEAFTUNE_CACHE_DIR", "/proc/sheaftune-cannot-exist")
    d = Path(compiled.cache_dir())
    assert d.name.startswith("sheaftune-") and d.parent == Path(__import__("tempfile").gettempdir())
    monkeypatch.delenv("SHEAFTUNE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/x")
    monkeypatch.setattr(compiled, "_writable", lambda p: True)
    assert compiled.cache_dir() == "/x/sheaftune"
    monkeypatch.setenv("SHEAFTUNE_CACHE_DIR", "/y//cache/")  # (normalised: the keys' stamps)
    assert compiled.cache_dir() == "/y/cache"


# ----------------------------------------------------------------------------- failures
def test_a_failed_build_falls_back_to_jit_and_warns_once(
    fresh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SHEAFTUNE_CACHE_DIR", str(tmp_path))
    calls: list[Any] = []

    def broken(entry: Any, out_dir: Path) -> str:
        calls.append(entry)
        raise compiled.BuildError("error: command 'cc' failed: No such file or directory")

    monkeypatch.setattr(compiled, "_run_pycc", broken)
    assert compiled.needs_build(NAME) is True
    k = compiled.kernels(NAME)
    assert k is sys.modules[NAME]  # the JIT module, same names
    assert k.total(np.arange(4, dtype=np.int64), 1) == 12
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err and "No such file" in err
    # remembered: the next process neither retries nor announces a build
    monkeypatch.setattr(compiled, "_loaded", {})
    assert compiled.needs_build(NAME) is False
    assert compiled.kernels(NAME) is sys.modules[NAME]
    assert len(calls) == 1
    assert capsys.readouterr().err == ""  # once per process
    # ... unless $CC changes
    monkeypatch.setattr(compiled, "_loaded", {})
    monkeypatch.setenv("CC", "gcc")
    assert compiled.needs_build(NAME) is True


def test_no_compiler_falls_back_to_jit(built: Path, kern_dir: Path, tmp_path: Path) -> None:
    """A real failed build (CC=/bin/false): same results, one line on stderr, exit 0."""
    out = run_py(CHECK, tmp_path, kern_dir, CC="/bin/false")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:3] == ["270", "module", "True"]
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sheaftune: warning:"), out.stderr
    failed = list((tmp_path / "aot" / NAME).glob("*.failed"))
    assert len(failed) == 1 and json.loads(failed[0].read_text())["cc"] == "/bin/false"


@pytest.mark.parametrize("how", ["truncated", "garbage with a matching checksum"])
def test_a_corrupt_build_is_rebuilt(built: Path, kern_dir: Path, tmp_path: Path, how: str) -> None:
    cache = warm_copy(built, tmp_path / "c")
    d = entry_dir(cache)
    (so,) = [p for p in d.iterdir() if p.suffix == ".so"]
    meta = json.loads((d / "meta.json").read_text())
    if how == "truncated":
        so.write_bytes(so.read_bytes()[:4096])
    else:
        so.write_bytes(b"\x7fELF" + b"\0" * 4096)
        meta["sha256"] = compiled._file_sha(so)
    (d / "meta.json").write_text(json.dumps(meta))
    out = run_py(CHECK, cache, kern_dir)
    assert out.stdout.split() == ["270", "Kernels", "False", f"['{NAME}']"], out.stderr
    assert out.stderr == ""
    out = run_py(CHECK, cache, kern_dir)  # and the rebuilt one is used as is
    assert out.stdout.split() == ["270", "Kernels", "False", "[]"], out.stderr


def test_a_verified_build_is_not_hashed_again(
    built: Path, fresh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key file remembers the verified build with a stamp of its files: later runs do not
    hash the extension, until the file changes."""
    cache = warm_copy(built, tmp_path / "c")
    monkeypatch.setenv("SHEAFTUNE_CACHE_DIR", str(cache))
    monkeypatch.setattr(compiled, "_entries", {})
    entry = compiled._entry(NAME)
    assert compiled._verified_so(entry) == entry.so  # (hashed: the copy has other inodes)
    hashed: list[str] = []
    real = compiled._file_sha
    monkeypatch.setattr(compiled, "_file_sha", lambda p: hashed.append(p) or real(p))
    monkeypatch.setattr(compiled, "_shas", {})
    monkeypatch.setattr(compiled, "_entries", {})  # a later run
    again = compiled._entry(NAME)
    assert compiled._verified_so(again) == again.so and hashed == []
    # rewritten in place at the same size: the stamp no longer holds, the hash refuses it
    so = Path(again.so)
    data = bytearray(so.read_bytes())
    data[-1] ^= 0xFF
    so.write_bytes(bytes(data))
    monkeypatch.setattr(compiled, "_entries", {})
    third = compiled._entry(NAME)
    assert compiled._verified_so(third) is None and hashed == [third.so]


def test_concurrent_builders_share_one_build(built: Path, kern_dir: Path, tmp_path: Path) -> None:
    env = dict(os.environ, SHEAFTUNE_CACHE_DIR=str(tmp_path), PYTHONPATH=str(kern_dir))
    env.pop("SHEAFTUNE_AOT", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHECK],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    results = [o.split() for o, _ in outs]
    assert all(r[:3] == ["270", "Kernels", "False"] for r in results), outs
    assert sum(r[3] != "[]" for r in results) == 1  # one built, the others waited and loaded it
    base = tmp_path / "aot" / NAME
    assert [p.name for p in base.iterdir() if p.is_dir()] == [entry_dir(tmp_path).name]
    assert not any(p.name.startswith(".") for p in base.iterdir())  # no partial builds left


def test_pending_builds_and_the_command(built: Path, kern_dir: Path, tmp_path: Path) -> None:
    code = f"from sheaftune import compiled; print(compiled.pending_builds(({NAME!r},)))"
    assert run_py(code, built, kern_dir).stdout.strip() == "[]"
    assert run_py(code, tmp_path, kern_dir).stdout.strip() == f"['{NAME}']"
    out = run_py(
        f"from sheaftune.compiled import main; raise SystemExit(main([{NAME!r}]))", built, kern_dir
    )
    assert out.returncode == 0 and out.stdout.startswith(f"{NAME}: up to date in "), out.stderr
    assert set(compiled.KERNEL_MODULES) >= {"sheaftune.model._engine_kernels"}


def test_prebuild_runs_builds_in_parallel(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(m: str) -> str:
        time.sleep(0.5)
        return f"kernels of {m}"

    monkeypatch.setattr(compiled, "_resolve", slow)
    monkeypatch.setattr(compiled, "needs_build", lambda m: m != "c")
    t0 = time.perf_counter()
    threads = compiled.prebuild(("a", "b", "c"))
    assert len(threads) == 2
    assert compiled.kernels("a") == "kernels of a"  # waits for its build, not a second one
    for t in threads:
        t.join()
    assert time.perf_counter() - t0 < 0.95  # the two builds overlapped
    assert compiled._loaded == {"a": "kernels of a", "b": "kernels of b"}


def test_key_is_remembered_until_a_source_changes(
    fresh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key file spares a run the hashing of sources; any edit brings the hashing back."""
    name = "stkern_memo"
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src = src_dir / f"{name}.py"
    src.write_text(KERNEL_SOURCE)
    monkeypatch.syspath_prepend(str(src_dir))
    cache = tmp_path / "c"
    monkeypatch.setenv("SHEAFTUNE_CACHE_DIR", str(cache))
    monkeypatch.setattr(compiled, "_entries", {})
    first = compiled._entry(name)
    key_file = Path(compiled._key_file(str(cache), name, str(src)))
    assert key_file.is_file()

    # a later run (nothing memoised in the process) takes the key without reading sources
    monkeypatch.setattr(compiled, "_entries", {})

    def no_hashing(module_name: str) -> list[tuple[str, str]]:
        raise AssertionError("the sources were read again")

    with monkeypatch.context() as m:
        m.setattr(compiled, "_sources", no_hashing)
        again = compiled._entry(name)
    assert (again.key, again.sources, again.so) == (first.key, first.sources, first.so)

    # another checkout of the same module (a worktree sharing the cache) has its own key
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    (other_dir / f"{name}.py").write_text(KERNEL_SOURCE + "\n# the other checkout\n")
    with monkeypatch.context() as m:
        m.syspath_prepend(str(other_dir))
        m.setattr(compiled, "_entries", {})
        assert compiled._remembered_entry(name) is None
        other = compiled._entry(name)
        assert other.key != first.key and other.sources == [str(other_dir / f"{name}.py")]
    monkeypatch.setattr(compiled, "_entries", {})
    remembered = compiled._remembered_entry(name)
    assert remembered is not None and remembered.key == first.key

    # an edited source: the stamp no longer holds, the key is computed again (and differs)
    src.write_text(KERNEL_SOURCE + "\n# edited\n")
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert compiled._remembered_entry(name) is None
    monkeypatch.setattr(compiled, "_entries", {})
    edited = compiled._entry(name)
    assert edited.key != first.key
    assert compiled._remembered_entry(name) is not None  # (remembered anew)

    # a damaged key file is ignored, never trusted
    key_file.write_text("{not json")
    assert compiled._remembered_entry(name) is None
    key_file.write_text(json.dumps({"key": "x", "sources": [], "dists": []}))
    assert compiled._remembered_entry(name) is None


def test_a_build_compiles_the_imported_source_not_the_current_directorys(
    built: Path, kern_dir: Path, tmp_path: Path
) -> None:
    """A run started in another checkout (its current directory holds other sources of the
    same module) builds the sources it imports: the child's ``-c`` path must not come first."""
    name = "stkern_cwd"
    (kern_dir / f"{name}.py").write_text(KERNEL_SOURCE)
    other = tmp_path / "other-checkout"
    other.mkdir()
    (other / f"{name}.py").write_text(KERNEL_SOURCE.replace("return x[i] * 2", "return x[i] * 5"))
    code = (
        "import numpy as np; from sheaftune import compiled; "
        f"k = compiled.kernels({name!r}); "
        "print(k.total(np.arange(10, dtype=np.int64), 1), type(k).__name__)"
    )
    env = dict(os.environ, SHEAFTUNE_CACHE_DIR=str(tmp_path / "c"), PYTHONPATH=str(kern_dir))
    env.pop("SHEAFTUNE_AOT", None)
    # -P: the parent itself imports from PYTHONPATH (kern_dir), as an installed sheaftune would
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], env=env, cwd=other, capture_output=True, text=True
    )
    assert out.stdout.split() == ["90", "Kernels"], out.stderr
