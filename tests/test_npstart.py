"""sheaftune.npstart: the program imports numpy 2 without its docstring modules and its typing
package, with its extension libraries loaded ahead on another thread; numpy works the same, the
program's output is the same, and nothing happens where it does not apply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sheaftune import npstart

ROOT = Path(__file__).resolve().parents[1]
NUMPY_2 = np.__version__.startswith("2.")


def _python(
    code: str,
    *,
    env: dict[str, str] | None = None,
    path: str | None = None,
    args: tuple[str, ...] = (),
) -> str:
    ours = (npstart.ENV_DOCS, npstart.ENV_TYPING, npstart.ENV_PRELOAD, npstart.ENV_DEFER)
    full = {k: v for k, v in os.environ.items() if k not in ours}
    full.update(env or {})
    full["PYTHONPATH"] = os.pathsep.join(p for p in (path, str(ROOT)) if p)
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=full, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


SKIP_THEN_USE = """
import sys
from sheaftune import npstart
did = npstart.skip_docs()
import numpy as np
a = np.arange(10, dtype=np.int64)
print(did, np.ndarray.all.__doc__ is None, int(a.sum()), float(np.float64(2.5) * 2),
      "numpy._core._add_newdocs" in sys.modules)
"""


@pytest.mark.skipif(not NUMPY_2, reason=f"numpy {np.__version__}: skip_docs is for numpy 2")
def test_numpy_2_starts_without_its_docstrings_and_works():
    assert np.ndarray.all.__doc__  # (this process imported numpy as usual)
    assert _python(SKIP_THEN_USE) == "True True 45 5.0 True"


def test_docstrings_kept_on_request_or_once_numpy_is_imported(monkeypatch):
    assert _python(SKIP_THEN_USE, env={npstart.ENV_DOCS: "1"}).startswith("False False 45")
    # in this process numpy is imported already: too late, nothing is done
    monkeypatch.delenv(npstart.ENV_DOCS, raising=False)
    assert npstart.skip_docs() is False


TYPING = """
import sys, typing
from sheaftune import npstart
did = npstart.skip_typing() if sys.argv[1] == "stand-in" else False
import numpy as np
from numpy.linalg import _linalg
gone = "numpy._typing" not in sys.modules
hints = [repr(typing.get_type_hints(c)) for c in (_linalg.EigResult, _linalg.SVDResult)]
svd = np.linalg.svd(np.diag([3.0, 2.0])).S.tolist()
import numpy.typing as npt
from numpy._typing import _ArrayLikeInt_co
real = type(sys.modules["numpy._typing"]) is type(sys)
print(did, gone, svd, real, repr(npt.NDArray), repr(_ArrayLikeInt_co))
print(hints)
"""


@pytest.mark.skipif(not NUMPY_2, reason=f"numpy {np.__version__}: skip_typing is for numpy 2")
def test_numpy_2_starts_without_its_typing_package_then_gives_it_to_whoever_asks():
    full = _python(TYPING, args=("as-is",))
    assert full.splitlines()[0].startswith("False False [3.0, 2.0] True")
    stood = _python(TYPING, args=("stand-in",))
    first, hints = stood.splitlines()
    assert first.startswith("True True [3.0, 2.0] True")
    # numpy.typing, imported afterwards, is the real one: the same aliases as without it
    assert first.split(" ", 4)[4] == full.splitlines()[0].split(" ", 4)[4]
    # the result types' annotations as numpy 2.3+ writes them
    assert "numpy.ndarray[tuple[typing.Any, ...], numpy.dtype[typing.Any]]" in hints
    if tuple(int(p) for p in np.__version__.split(".")[:2]) >= (2, 3):
        assert hints == full.splitlines()[1]
    # kept on request
    kept = _python(TYPING, args=("stand-in",), env={npstart.ENV_TYPING: "1"})
    assert kept.startswith("False False")


def test_the_typing_stand_in_answers_any_other_name_from_the_real_package():
    code = (
        "import sys; from sheaftune import npstart; m = npstart._TypingStandIn('numpy._typing');"
        "sys.modules['numpy._typing'] = m; import numpy as np;"
        "print(m.NBitBase is sys.modules['numpy._typing'].NBitBase, "
        "type(sys.modules['numpy._typing']).__name__)"
    )
    assert _python(code) == "True module"


def _fake_numpy(where: Path, version: str) -> Path:
    """A numpy tree that fails loudly if imported, with both docstring modules."""
    fake = where / "numpy"
    (fake / "_core").mkdir(parents=True)
    (fake / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (fake / "version.py").write_text(f'version = "{version}"\n__version__ = version\n')
    for name in npstart.DOC_MODULES:
        (fake / "_core" / (name.rsplit(".", 1)[1] + ".py")).write_text("")
    return fake


def test_another_numpy_is_left_alone(tmp_path: Path):
    # a numpy 1 first on the path: its version is read, nothing is stood in, nothing imported
    fake = _fake_numpy(tmp_path, "1.26.4")
    (fake / "_typing").mkdir()
    (fake / "_typing" / "__init__.py").write_text("raise RuntimeError('imported')\n")
    code = (
        "import sys; from sheaftune import npstart; "
        "print(npstart.skip_docs(), npstart.skip_typing(), 'numpy' in sys.modules, "
        "'numpy._typing' in sys.modules)"
    )
    assert _python(code, path=str(tmp_path)) == "False False False False"
    # the same tree as a numpy 2 whose files are missing
    (fake / "version.py").write_text('version = "2.9.0"\n')
    (fake / "_core" / "_add_newdocs_scalars.py").unlink()
    (fake / "_typing" / "__init__.py").unlink()
    assert _python(code, path=str(tmp_path)) == "False False False False"


def test_version_line_parsing():
    assert npstart._major('"""doc"""\nversion = "2.4.6"\n__version__ = version\n') == "2"
    assert npstart._major("version = '1.26.4'\n") == "1"
    assert npstart._major("full_version = '2.0'\n") is None


PRELOAD_THEN_IMPORT = """
import sys
from sheaftune import npstart
paths = npstart.libraries(sys.argv[1:])
loaded = npstart.load(paths)
maps = open("/proc/self/maps").read()
ahead = [p for p in paths if p in maps]
import numpy as np
from numpy._core import _multiarray_umath as m
print(loaded == len(paths) == len(ahead) >= 1, m.__file__ in paths, int(np.arange(4).sum()))
"""


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="no /proc/self/maps")
def test_libraries_loaded_ahead_are_those_numpy_imports():
    full = {k: v for k, v in os.environ.items() if k != npstart.ENV_PRELOAD}
    full["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", PRELOAD_THEN_IMPORT, "analyze", "x.dat"],
        env=full, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "True True 6"


def test_which_command_lines_preload():
    code = "import sys; from sheaftune import npstart; print(len(npstart.libraries(sys.argv[1:])))"

    def count(*argv: str, env: dict[str, str] | None = None) -> int:
        full = {k: v for k, v in os.environ.items() if k != npstart.ENV_PRELOAD}
        full.update(env or {}, PYTHONPATH=str(ROOT))
        out = subprocess.run(
            [sys.executable, "-c", code, *argv], env=full, capture_output=True, text=True,
            check=True,
        )  # fmt: skip
        return int(out.stdout)

    assert count("analyze", "t.dat") >= 1
    assert count("--debug", "recommend", "--upper-bound", "5") >= 1
    assert count("analyze", "--help") == 0
    assert count("capture-script") == 0
    assert count() == 0
    assert count("analyze", "t.dat", env={npstart.ENV_PRELOAD: "0"}) == 0
    # in this process numpy is imported already: nothing left to load ahead
    assert npstart.libraries(["analyze", "t.dat"]) == []
    assert npstart.load([str(ROOT / "no-such-library.so")]) == len(npstart._handles)


def test_the_program_says_the_same_with_and_without():
    """The bundled example's JSON analysis through the program's entry point, both ways."""

    def run(on: bool) -> dict:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env[npstart.ENV_DOCS] = env[npstart.ENV_TYPING] = "0" if on else "1"
        env[npstart.ENV_DEFER] = "0" if on else "1"
        env[npstart.ENV_PRELOAD] = "1" if on else "0"
        out = subprocess.run(
            [sys.executable, "-m", "sheaftune", "analyze", "--example", "--format", "json"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(out.stdout)

    assert run(True) == run(False)


DEFER_THEN_USE = """
import sys
from sheaftune import npstart
npstart.skip_docs()  # (as the program does: numpy's docstrings would ask textwrap to dedent)
n = npstart.defer()
import click, numpy
npstart.settle()
from numpy.lib import _utils_impl
import click.types as ct
# nothing loaded by the imports; none of the names left to stand-ins for later imports
before = [m for m in ("uuid", "platform", "textwrap") if m in sys.modules]
print(n, before)
# what numpy and click bound loads the real module when used, and answers from it
u = ct.UUIDParameterType().convert("12345678123456781234567812345678", None, None)
import uuid
print(type(u) is uuid.UUID, isinstance(u, ct.uuid.UUID), ct.uuid.UUID is uuid.UUID)
print(_utils_impl.platform.system() == __import__("platform").system(),
      _utils_impl.textwrap.dedent("  a") == "a")
print(sys.modules["platform"].__name__, type(sys.modules["platform"]).__name__,
      type(sys.modules["uuid"]).__name__, hasattr(sys.modules["textwrap"], "__file__"))
"""


@pytest.mark.skipif(not NUMPY_2, reason=f"numpy {np.__version__}: the modules are numpy 2's")
def test_stdlib_modules_numpy_and_click_bind_are_loaded_when_used():
    out = _python(DEFER_THEN_USE).splitlines()
    assert out == ["3 []", "True True True", "True True", "platform module module True"]


def test_defer_does_nothing_on_request_or_once_imported(monkeypatch):
    out = _python(DEFER_THEN_USE, env={npstart.ENV_DEFER: "1"}).splitlines()
    assert out[0] == "0 ['uuid', 'platform', 'textwrap']"
    assert out[1:] == ["True True True", "True True", "platform module module True"]
    # in this process numpy and click are imported already: nothing to stand in for
    monkeypatch.delenv(npstart.ENV_DEFER, raising=False)
    import click  # noqa: F401

    assert npstart.defer() == 0
    npstart.settle()


def test_a_stand_in_answers_the_import_system_as_a_module_would():
    code = """
import sys
from sheaftune import npstart
npstart.defer()
m = sys.modules["uuid"]
print(m.__name__, m.__spec__, hasattr(m, "__path__"), "uuid" in sys.modules)
print(m.uuid4().version, sys.modules["uuid"] is not m)
npstart.settle()
print(isinstance(sys.modules.get("uuid"), npstart._Deferred))
"""
    assert _python(code).splitlines() == ["uuid None False True", "4 True", "False"]
