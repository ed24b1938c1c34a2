"""sheaftune.module_code: the modules' compiled code from one bundle file, used only where the
import system would have found the very same module; anything changed is imported as usual."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import example_json_runs

PROBE = r"""
import json, sys
from importlib.machinery import SourceFileLoader
from sheaftune import module_code
installed = module_code.install()
import mcpkg.sub, mcmod, colorsys
b = module_code._bundle
print(json.dumps({
    "installed": installed,
    "served": sorted(n for n in (b.served if b else ()) if n.startswith(("mc", "colorsys"))),
    "values": [mcpkg.VALUE, mcpkg.sub.VALUE, mcmod.VALUE, colorsys.rgb_to_hsv(1, 0, 0)],
    "files": [mcpkg.__file__, mcpkg.sub.__file__, mcmod.__file__],
    "cached": [m.__cached__ for m in (mcpkg, mcpkg.sub, mcmod)],
    "path": list(mcpkg.__path__),
    "loaders": [isinstance(m.__loader__, SourceFileLoader) for m in (mcpkg, mcpkg.sub, mcmod)],
    "sources": [m.__loader__.get_source(m.__name__).splitlines()[0] for m in (mcpkg, mcmod)],
}))
"""


def _tree(root: Path, value: int = 1) -> Path:
    """A package and a module on a directory of their own, with their .pyc written."""
    lib = root / "lib"
    (lib / "mcpkg").mkdir(parents=True, exist_ok=True)
    (lib / "mcpkg" / "__init__.py").write_text(f"VALUE = {value}\n")
    (lib / "mcpkg" / "sub.py").write_text(f"VALUE = {value} * 10\n")
    (lib / "mcmod.py").write_text(f"VALUE = 'module {value}'\n")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(lib)], check=True)
    return lib


def _probe(cache: Path, lib: Path, *extra: Path, env: dict[str, str] | None = None) -> dict:
    root = Path(__file__).resolve().parents[1]
    full = {**os.environ, "SHEAFTUNE_CACHE_DIR": str(cache), **(env or {})}
    full["PYTHONPATH"] = os.pathsep.join(str(p) for p in (*extra, lib, root))
    full.pop("PYTHONDONTWRITEBYTECODE", None)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=full, check=True
    )
    result: dict = json.loads(out.stdout)
    return result


def _bundles(cache: Path) -> list[Path]:
    return sorted((cache / "pycode").glob("modules-*.marshal"))


def test_the_second_run_takes_the_modules_from_the_bundle_as_they_were(tmp_path: Path):
    lib = _tree(tmp_path)
    first = _probe(tmp_path / "cache", lib)
    assert first["installed"] is True and first["served"] == []
    assert len(_bundles(tmp_path / "cache")) == 1
    second = _probe(tmp_path / "cache", lib)
    assert second["served"] == ["colorsys", "mcmod", "mcpkg", "mcpkg.sub"]
    assert {k: v for k, v in first.items() if k != "served"} == {
        k: v for k, v in second.items() if k != "served"
    }
    assert second["values"][:3] == [1, 10, "module 1"]
    assert second["loaders"] == [True, True, True]  # (a SourceFileLoader in every other respect)
    assert second["sources"] == ["VALUE = 1", "VALUE = 'module 1'"]


def test_a_changed_source_is_imported_as_it_is_now(tmp_path: Path):
    lib = _tree(tmp_path)
    cache = tmp_path / "cache"
    _probe(cache, lib)
    time.sleep(0.01)
    (lib / "mcmod.py").write_text("VALUE = 'changed, and longer'\n")
    got = _probe(cache, lib)
    assert got["values"][2] == "changed, and longer"
    assert "mcmod" not in got["served"] and "mcpkg.sub" in got["served"]


def test_a_module_that_would_shadow_the_bundled_one_wins(tmp_path: Path):
    lib = _tree(tmp_path)
    cache = tmp_path / "cache"
    first = tmp_path / "first"
    first.mkdir()
    _probe(cache, lib, first)
    _probe(cache, lib, first)
    # a module of the same name appears on an earlier directory of sys.path
    (first / "mcmod.py").write_text("VALUE = 'shadow'\n")
    got = _probe(cache, lib, first)
    assert got["values"][2] == "shadow" and got["served"] == []
    # and a module appears beside a package's own: the package's directory changed
    (first / "mcmod.py").unlink()
    _probe(cache, lib, first)
    (lib / "mcpkg" / "sub").mkdir()
    (lib / "mcpkg" / "sub" / "__init__.py").write_text("VALUE = 'package now'\n")
    got = _probe(cache, lib, first)
    assert got["values"][1] == "package now" and "mcpkg.sub" not in got["served"]


def test_a_directory_that_changed_without_a_module_of_the_bundle_keeps_it(tmp_path: Path):
    # (python -m: the current directory is first on sys.path, and changes as files are written)
    lib = _tree(tmp_path)
    cache = tmp_path / "cache"
    first = tmp_path / "first"
    first.mkdir()
    _probe(cache, lib, first)
    bundle = _bundles(cache)[0]
    made = bundle.stat().st_mtime_ns
    for other in ("out.json", "mcmodule.py", "notes", "colorsys.txt"):
        time.sleep(0.01)
        (first / other).write_text("x\n")
        got = _probe(cache, lib, first)
        assert got["served"] == ["colorsys", "mcmod", "mcpkg", "mcpkg.sub"], other
        assert got["values"][2] == "module 1"
        assert bundle.stat().st_mtime_ns == made  # (nothing to write again)
    # one of the bundle's names there (a package now): not
    (first / "mcmod").mkdir()
    (first / "mcmod" / "__init__.py").write_text("VALUE = 'shadow'\n")
    got = _probe(cache, lib, first)
    assert got["served"] == [] and got["values"][2] == "shadow"


def test_the_entries_that_could_shadow_a_module() -> None:
    from importlib.machinery import EXTENSION_SUFFIXES

    from sheaftune.module_code import _importable_as, _shadows

    names = _importable_as({"json", "mcmod"})
    assert {"json", "json.py", "json.pyc", "mcmod", "mcmod" + EXTENSION_SUFFIXES[0]} <= names
    assert not {"json.txt", "jsonx.py", "out.json", "mcmod.py.orig"} & names
    assert _shadows("/nonexistent-directory", names) is False
    assert _shadows(__file__, names) is True  # (not a directory: nothing is known)


def test_another_sys_path_has_a_bundle_of_its_own_and_old_ones_go(tmp_path: Path):
    lib = _tree(tmp_path)
    cache = tmp_path / "cache"
    for i in range(6):
        extra = tmp_path / f"extra{i}"
        extra.mkdir()
        _probe(cache, lib, extra)
    assert len(_bundles(cache)) == 4


def test_a_damaged_bundle_or_the_switch_leaves_imports_as_usual(tmp_path: Path):
    lib = _tree(tmp_path)
    cache = tmp_path / "cache"
    _probe(cache, lib)
    (bundle,) = _bundles(cache)
    bundle.write_bytes(b"stmc1\x00\x00\x00" + (10**9).to_bytes(8, "little") + b"\x01")
    got = _probe(cache, lib)
    assert got["served"] == [] and got["values"][:3] == [1, 10, "module 1"]
    assert _probe(cache, lib)["served"]  # (written again at that run's exit)
    # a bundle whose index holds but whose code is damaged: each module from its .pyc
    (bundle,) = _bundles(cache)
    data = bytearray(bundle.read_bytes())
    n = int.from_bytes(data[8:16], "little")
    data[16 + n :] = b"\xff" * (len(data) - 16 - n)
    bundle.write_bytes(bytes(data))
    got = _probe(cache, lib)
    assert got["values"][:3] == [1, 10, "module 1"]
    off = _probe(cache, lib, env={"SHEAFTUNE_MODULE_CODE": "0"})
    assert off["installed"] is False and off["served"] == []


def test_the_program_says_the_same_with_and_without(tmp_path: Path):
    first, served, off = example_json_runs(tmp_path, {}, {}, {"SHEAFTUNE_MODULE_CODE": "0"})
    assert _bundles(tmp_path)
    assert first == served == off


def test_a_copied_tree_whose_pyc_name_another_path_is_not_bundled(tmp_path: Path):
    # (a virtual environment copied elsewhere with its .pyc files: their code names the file
    # they were compiled from; the bundle would hold code its loader refuses at every run)
    import shutil

    lib = _tree(tmp_path / "a")
    copy = tmp_path / "b" / "lib"
    shutil.copytree(lib, copy, copy_function=shutil.copy2)
    cache = tmp_path / "cache"
    for served in ([], ["colorsys"], ["colorsys"]):
        got = _probe(cache, copy)
        assert got["values"][:3] == [1, 10, "module 1"]
        assert got["served"] == served
        assert got["files"][2] == str(copy / "mcmod.py")
    # compiled again where they are: bundled from the next run on
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-f", str(copy)], check=True)
    _probe(cache, copy)
    assert _probe(cache, copy)["served"] == ["colorsys", "mcmod", "mcpkg", "mcpkg.sub"]
