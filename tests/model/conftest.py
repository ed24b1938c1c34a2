"""The fast engine's two forms: its AOT build (``sheaftune.compiled``) and its numba JIT kernels."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

from sheaftune import compiled
from sheaftune.model import fast


@pytest.fixture(scope="session")
def aot_exec_plan() -> Any:
    """The AOT interpreter, loaded (built at most once per session) from the cache.

    The cache is ``$SHEAFTUNE_TEST_CACHE_DIR`` when set, else the user's (the build is keyed by
    the sources, numba, numpy and Python, so a build made by an earlier session or by a plain
    run is the one this session would make). Skips when no build is possible here.
    """
    saved = {k: os.environ.get(k) for k in ("SHEAFTUNE_AOT", "SHEAFTUNE_CACHE_DIR")}
    os.environ.pop("SHEAFTUNE_AOT", None)
    if os.environ.get("SHEAFTUNE_TEST_CACHE_DIR"):
        os.environ["SHEAFTUNE_CACHE_DIR"] = os.environ["SHEAFTUNE_TEST_CACHE_DIR"]
    try:
        compiled._loaded.pop(fast.KERNELS, None)
        k = compiled.kernels(fast.KERNELS)
        compiled._loaded.pop(fast.KERNELS, None)
    finally:
        for key, v in saved.items():
            if v is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = v
    if not isinstance(k, compiled.Kernels):
        pytest.skip("no AOT build of the engine is possible here (see the warning above)")
    return k.exec_plan


@pytest.fixture(scope="module", params=["aot", "jit"])
def engine_mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the module's tests on one form of the engine (module scope: hypothesis-friendly)."""
    if request.param == "aot":
        ex = request.getfixturevalue("aot_exec_plan")
    else:
        ex = importlib.import_module(fast.KERNELS).exec_plan
    saved = fast._entries.get("exec_plan")
    fast._entries["exec_plan"] = ex
    try:
        yield request.param
    finally:
        if saved is None:
            fast._entries.pop("exec_plan", None)
        else:
            fast._entries["exec_plan"] = saved
