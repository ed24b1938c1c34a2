"""Scenario validation: every error names the file, the line and the op index or key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from sheaftune.errors import EXIT_INPUT, InputError
from sheaftune.model.scenario import load_scenario, parse_scenario, run_scenario

HEAD = "scenario: 1\ncache: {object_size: 256, capacity: 4}\ncpus: 2\nops:\n"


def run_text(text: str) -> None:
    run_scenario(parse_scenario(text, "t.yaml"))


@pytest.mark.parametrize(
    "ops,line,msg",
    [
        ("  - [0, alloc, 2]\n  - [0, free, 3]\n", 6, "only 2 are live"),
        ("  - [0, free_bulk, 1]\n", 5, "only 0 are live"),
        ("  - [0, kfree_rcu, 1]\n", 5, "only 0 are live"),
        ("  - [0, free_oldest, 1]\n", 5, "only 0 are live"),
        ("  - [0, frob, 1]\n", 5, "unknown op 'frob'"),
        ("  - [jump]\n", 5, "unknown op 'jump'"),
        ("  - [2, alloc, 1]\n", 5, "CPU 2 out of range"),
        ("  - [offline, 1]\n  - [1, alloc, 1]\n", 6, "CPU 1 is offline"),
        ("  - [offline, 1]\n  - [offline, 0]\n", 6, "last online CPU"),
        ("  - [0, alloc_from_sheaf, s1, 1]\n", 5, "not outstanding"),
        (
            "  - [0, prefill, s1, 1]\n  - [0, return, s1]\n  - [0, refill, s1, 2]\n",
            7,
            "not outstanding",
        ),
        ("  - [0, prefill, s1, 1]\n  - [0, prefill, s1, 2]\n", 6, "prefilled again"),
        ("  - [0, alloc, -1]\n", 5, "count must be"),
        ("  - [0, alloc, 1, sometimes]\n", 5, "gfp must be one of"),
        ("  - [0, alloc_node, 3, 1]\n", 5, "node 3 out of range"),
        ("  - [0, alloc]\n", 5, "expected [CPU, alloc, COUNT, GFP]"),
        ("  - [rcu, 1]\n", 5, "takes no arguments"),
    ],
)
def test_op_errors_name_the_line(ops: str, line: int, msg: str) -> None:
    with pytest.raises(InputError) as ei:
        run_text(HEAD + ops)
    text = str(ei.value)
    assert text.startswith("t.yaml: ")
    assert f"line {line}" in text
    assert "ops[" in text
    assert msg in text
    assert ei.value.exit_code == EXIT_INPUT


@pytest.mark.parametrize(
    "text,where,msg",
    [
        ("ops: []\n", "scenario", "missing 'scenario: 1'"),
        ("scenario: 2\nops: []\n", "line 1, scenario", "unsupported scenario format version"),
        ("scenario: 1\nkernel: '6.1'\n", "line 2, kernel", "kernel must be"),
        ("scenario: 1\ncache:\n  object_size: 0\n", "line 3, cache.object_size", ">= 1"),
        ("scenario: 1\ncache:\n  colour: red\n", "line 3, cache.colour", "unknown key"),
        ("scenario: 1\ncpus: two\n", "line 2, cpus", "integer"),
        ("scenario: 1\nextra: 1\n", "line 2, extra", "unknown key"),
        ("scenario: 1\nops: {a: 1}\n", "line 2, ops", "must be a list"),
        ("scenario: 1\nops:\n  - [0, alloc, 1\n", "line", "not valid YAML"),
        ("- 1\n", "line 1", "a scenario is a YAML mapping"),
    ],
)
def test_file_errors_name_the_key(text: str, where: str, msg: str) -> None:
    with pytest.raises(InputError) as ei:
        parse_scenario(text, "t.yaml")
    assert where in str(ei.value) and msg in str(ei.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as ei:
        load_scenario(tmp_path / "missing.yaml")
    assert "missing.yaml" in str(ei.value)


def test_defaults_and_kernel_as_number() -> None:
    scn = parse_scenario("scenario: 1\nkernel: 6.18\nops: []\n")
    assert scn.kernel == "6.18" and scn.cpus == 1 and scn.nodes == 1
    p = parse_scenario("scenario: 1\nops: []\n").params()
    assert p.kernel == "7.3" and p.sheaf_capacity == 28 and p.objects_per_slab == 16


def test_cpu_node_map_contiguous_blocks() -> None:
    p = parse_scenario("scenario: 1\ncpus: 4\nnodes: 2\n").params()
    assert p.cpu_node == (0, 0, 1, 1)
    p = parse_scenario("scenario: 1\ncpus: 3\nnodes: 2\n").params()
    assert p.cpu_node == (0, 0, 1)
