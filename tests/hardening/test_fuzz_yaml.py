"""Workload and scenario files with wrong types, missing, unknown, negative and enormous values.

tests/synth/test_spec.py and tests/model/test_scenario_errors.py hold one hand-written case per
rule. Here hypothesis walks every shipped workload (``workloads/*.yaml``) and every scenario
(``tests/data/scenarios/*.yaml``), picks any key or list item at any depth and replaces it
(other types, ±huge, NaN, infinities, empty containers), deletes it, or adds an unknown key
beside it. Loading must then succeed or raise InputError naming the file and where (a key path
or a line) in one line, quickly; a scenario that loads is also run, and its run must end in
bounded time too (huge counts are refused, not attempted).
"""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sheaftune.errors import InputError
from tests.conftest import DATA, ROOT
from tests.hardening.conftest import FUZZ_EXAMPLES, one_error_line, run_cli

WORKLOADS = sorted((ROOT / "workloads").glob("*.yaml"))
SCENARIOS = sorted((DATA / "scenarios").glob("*.yaml"))
REPLACEMENTS = (
    None,
    "",
    "x",
    True,
    -1,
    0,
    2**31,
    2**64,
    10**30,
    -(10**30),
    1e308,
    -1e308,
    math.inf,
    math.nan,
    0.5,
    [],
    {},
    [1, 2],
    {"a": 1},
    "1e999",
)
DELETE = "__delete__"
ADD_UNKNOWN = "__add_unknown__"
#: seconds loading (and, for a scenario, running) one mutant may take
TIME_LIMIT_S = 10.0


def paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path (tuple of keys and indices) in a parsed YAML tree."""
    out = [prefix] if prefix else []
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += paths(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += paths(v, (*prefix, i))
    return out


def apply(tree: Any, path: tuple, action: Any) -> Any:
    parent = tree
    for k in path[:-1]:
        parent = parent[k]
    last = path[-1]
    if action == DELETE:
        del parent[last]
    elif action == ADD_UNKNOWN:
        if isinstance(parent, dict):
            parent["unknown_key_zz"] = 1
        else:
            parent.append(parent[last])  # a list: one item more (a repeated item)
    else:
        parent[last] = action
    return tree


def mutant(src: Path, data: st.DataObject, tmp: Path) -> Path:
    tree = yaml.safe_load(src.read_text())
    path = data.draw(st.sampled_from(paths(tree)), label="path")
    action = data.draw(st.sampled_from((DELETE, ADD_UNKNOWN, *REPLACEMENTS)), label="action")
    out = tmp / src.name
    out.write_text(yaml.safe_dump(apply(tree, path, action), sort_keys=False))
    return out


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail (TimeoutError, which hypothesis reports with the example) past ``seconds``."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check_error(e: InputError, path: Path) -> None:
    msg = str(e)
    assert "\n" not in msg, msg
    assert e.path == str(path), msg
    assert e.where, f"no key path or line in: {msg}"


FUZZ = settings(
    max_examples=FUZZ_EXAMPLES or 150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(src=st.sampled_from(WORKLOADS), data=st.data())
def test_workload_mutants(tmp_path: Path, src: Path, data: st.DataObject) -> None:
    from sheaftune.synth.spec import load_spec

    p = mutant(src, data, tmp_path)
    try:
        with time_limit(TIME_LIMIT_S):
            load_spec(p)
    except InputError as e:
        check_error(e, p)


@settings(FUZZ, max_examples=FUZZ_EXAMPLES or 60)
@given(src=st.sampled_from(SCENARIOS), data=st.data())
def test_scenario_mutants(tmp_path: Path, src: Path, data: st.DataObject) -> None:
    from sheaftune.model.scenario import load_scenario, run_scenario

    p = mutant(src, data, tmp_path)
    try:
        with time_limit(TIME_LIMIT_S):
            run_scenario(load_scenario(p))
    except InputError as e:
        check_error(e, p)


@pytest.mark.parametrize(
    "cache, op",
    [
        ("{object_size: 256, capacity: 4}", "[0, alloc, 2147483648]"),
        ("{object_size: 256, capacity: 2147483648}", "[0, alloc, 1]"),
    ],
    ids=["op-count", "capacity"],
)
def test_scenario_huge_numbers_are_refused(tmp_path: Path, cache: str, op: str) -> None:
    from sheaftune.model.scenario import load_scenario

    p = tmp_path / "huge.yaml"
    p.write_text(f"scenario: 1\ncache: {cache}\ncpus: 1\nops:\n  - {op}\n")
    with pytest.raises(InputError) as ei:
        load_scenario(p)
    check_error(ei.value, p)


@pytest.mark.parametrize(
    "command, src, text, words",
    [
        ("simulate", "scenario", "scenario: 1\ncpus: -3\nops: []\n", "cpus"),
        ("simulate", "scenario", "scenario: 1\ncache: {capacity: 1e999}\nops: []\n", "capacity"),
        ("generate", "workload", None, "streams[0].rate"),
    ],
)
def test_cli_names_file_and_key(
    tmp_path: Path, command: str, src: str, text: str | None, words: str
) -> None:
    p = tmp_path / "bad.yaml"
    if text is None:
        tree = yaml.safe_load(WORKLOADS[0].read_text())
        tree["streams"][0]["rate"] = -(10**30)
        text = yaml.safe_dump(tree, sort_keys=False)
    p.write_text(text)
    args = [command, str(p)] + (["-o", str(tmp_path / "out.npz")] if command == "generate" else [])
    r = run_cli(*args)
    assert r.returncode == 3, r.stderr
    line = one_error_line(r.stderr)
    assert str(p) in line and words in line
