"""sheaftune.npdocs: the program starts numpy 2 without its docstring modules; numpy works the
same, the program's output is the same, and nothing happens where it does not apply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sheaftune import npdocs

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, *, env: dict[str, str] | None = None, path: str | None = None) -> str:
    full = {k: v for k, v in os.environ.items() if k != npdocs.ENV}
    full.update(env or {})
    full["PYTHONPATH"] = os.pathsep.join(p for p in (path, str(ROOT)) if p)
    out = subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


SKIP_THEN_USE = """
import sys
from sheaftune import npdocs
did = npdocs.skip()
import numpy as np
a = np.arange(10, dtype=np.int64)
print(did, np.ndarray.all.__doc__ is None, int(a.sum()), float(np.float64(2.5) * 2),
      "numpy._core._add_newdocs" in sys.modules)
"""


def test_numpy_2_starts_without_its_docstrings_and_works():
    import numpy as np

    if not np.__version__.startswith("2."):
        pytest.skip(f"numpy {np.__version__}: npdocs applies to numpy 2 only")
    assert np.ndarray.all.__doc__  # (this process imported numpy as usual)
    assert _python(SKIP_THEN_USE) == "True True 45 5.0 True"


def test_kept_on_request_or_once_numpy_is_imported(monkeypatch):
    assert _python(SKIP_THEN_USE, env={npdocs.ENV: "1"}).startswith("False False 45")
    # in this process numpy is imported already: too late, nothing is done
    assert "numpy" in sys.modules
    monkeypatch.delenv(npdocs.ENV, raising=False)
    assert npdocs.skip() is False


def test_another_numpy_is_left_alone(tmp_path: Path):
    # a numpy 1 tree first on the path: its version is read, nothing is stood in, nothing
    # imported (this fake one would fail loudly if it were)
    fake = tmp_path / "numpy"
    (fake / "_core").mkdir(parents=True)
    (fake / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (fake / "version.py").write_text('version = "1.26.4"\n__version__ = version\n')
    for name in npdocs.MODULES:
        (fake / "_core" / (name.rsplit(".", 1)[1] + ".py")).write_text("")
    code = "import sys; from sheaftune import npdocs; print(npdocs.skip(), 'numpy' in sys.modules)"
    assert _python(code, path=str(tmp_path)) == "False False"
    # the same tree as a numpy 2 whose files are missing
    (fake / "version.py").write_text('version = "2.9.0"\n')
    (fake / "_core" / "_add_newdocs_scalars.py").unlink()
    assert _python(code, path=str(tmp_path)) == "False False"


def test_version_line_parsing():
    assert npdocs._major('"""doc"""\nversion = "2.4.6"\n__version__ = version\n') == "2"
    assert npdocs._major("version = '1.26.4'\n") == "1"
    assert npdocs._major("full_version = '2.0'\n") is None


def test_the_program_says_the_same_with_and_without():
    """The bundled example's JSON analysis through the program's entry point, both ways."""

    def run(keep: str) -> dict:
        env = {**os.environ, npdocs.ENV: keep, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-m", "sheaftune", "analyze", "--example", "--format", "json"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(out.stdout)

    assert run("0") == run("1")
