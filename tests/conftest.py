"""Shared test fixtures: where the real traces live, deterministic terminal settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SHARED = Path(os.environ.get("SHEAFTUNE_SHARED", ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared fixtures folder (../shared/fixtures) is needed")
    return path


@pytest.fixture
def fixtures() -> Path:
    """The shared real-trace fixtures folder; the test is skipped when it is absent."""
    return _need(FIXTURES)


def fixture_path(rel: str) -> Path:
    return _need(FIXTURES / rel)


def golden(rel: str) -> dict:
    return json.loads(fixture_path(rel).read_text())


@pytest.fixture(scope="session", autouse=True)
def _kernels_built() -> None:
    """Build the ahead-of-time kernels once, before any test runs.

    On a fresh machine the first command builds them (about a minute) and says so on standard
    error; without this, that build and its announcement would land inside whichever test ran
    first, and tests that check standard error or time an interruption would fail there.
    """
    from sheaftune import compiled

    for thread in compiled.prebuild():
        thread.join()


def example_json_runs(cache: Path, *envs: dict[str, str]) -> list[dict]:
    """``python -m sheaftune analyze --example --format json`` once per environment change in
    ``envs``, with ``cache`` as the cache directory (its start-up caches of its own, the
    compiled kernels shared with the other tests'), each run's JSON."""
    import subprocess
    import sys

    from sheaftune.compiled import cache_dir

    shared = os.path.join(cache_dir(), "aot")
    os.makedirs(shared, exist_ok=True)
    if not (cache / "aot").exists():
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "aot").symlink_to(shared, target_is_directory=True)
    args = [sys.executable, "-m", "sheaftune", "analyze", "--example", "--format", "json"]
    base = {**os.environ, "SHEAFTUNE_CACHE_DIR": str(cache)}
    return [
        json.loads(
            subprocess.run(
                args, capture_output=True, text=True, env={**base, **env}, check=True
            ).stdout
        )
        for env in envs
    ]


@pytest.fixture(autouse=True)
def _deterministic_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "dumb")
