"""sheaftune.dataclass_code: dataclass methods compiled once, then taken from the cache; the
classes behave the same either way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = r"""
import dataclasses, json, sys
from sheaftune import dataclass_code
installed = dataclass_code.install()

@dataclasses.dataclass(frozen=True)
class P:
    a: int
    b: str = "x"
    c: tuple = dataclasses.field(default_factory=tuple)

@dataclasses.dataclass(order=True)
class Q:
    n: int

p = P(1)
try:
    p.a = 2
    frozen = False
except dataclasses.FrozenInstanceError:
    frozen = True
print(json.dumps({
    "installed": installed,
    "compiled": dataclass_code.compiled,
    "repr": repr(p), "eq": p == P(1, "x", ()), "ne": p != P(2), "hash": hash(p) == hash(P(1)),
    "frozen": frozen, "order": Q(1) < Q(2), "asdict": dataclasses.asdict(p),
    "replace": repr(dataclasses.replace(p, b="y")),
}))
"""


def _probe(cache: Path) -> dict[str, object]:
    env = {**os.environ, "SHEAFTUNE_CACHE_DIR": str(cache)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_the_second_run_compiles_nothing_and_behaves_the_same(tmp_path: Path):
    first = _probe(tmp_path)
    files = list((tmp_path / "pycode").glob("dataclasses-*.marshal"))
    assert first["installed"] is True and first["compiled"] and len(files) == 1
    second = _probe(tmp_path)
    assert second["compiled"] == 0
    assert {k: v for k, v in first.items() if k != "compiled"} == {
        k: v for k, v in second.items() if k != "compiled"
    }
    assert second["repr"] == "P(a=1, b='x', c=())" and second["eq"] and second["frozen"]


def test_a_damaged_cache_is_compiled_afresh(tmp_path: Path):
    _probe(tmp_path)
    (f,) = (tmp_path / "pycode").glob("dataclasses-*.marshal")
    f.write_bytes(b"\x00garbage")
    again = _probe(tmp_path)
    assert again["compiled"] and again["eq"] and again["frozen"]
    assert _probe(tmp_path)["compiled"] == 0  # (rewritten)


def test_an_unwritable_cache_only_costs_the_time(tmp_path: Path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    result = _probe(blocked)
    assert result["installed"] is True and result["eq"] and result["frozen"]


def test_the_program_installs_it_and_a_library_user_is_left_alone(tmp_path: Path):
    env = {**os.environ, "SHEAFTUNE_CACHE_DIR": str(tmp_path)}
    code = "import dataclasses, sheaftune.analysis.pipeline; print('exec' in vars(dataclasses))"
    lib = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert lib.stdout.strip() == "False"
    prog = subprocess.run(
        [sys.executable, "-m", "sheaftune", "costs", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert prog.returncode == 0, prog.stderr
    assert list((tmp_path / "pycode").glob("dataclasses-*.marshal"))


def test_entries_stay_marshalled_and_a_damaged_one_is_compiled_afresh(tmp_path: Path):
    import marshal

    first = _probe(tmp_path)
    (f,) = (tmp_path / "pycode").glob("dataclasses-*.marshal")
    data = marshal.loads(f.read_bytes())
    assert len(data) >= first["compiled"] and all(type(v) is bytes for v in data.values())
    # one entry damaged, the others kept: only that one is compiled again
    damaged = dict(data)
    damaged[next(iter(damaged))] = b"\x00not code"
    f.write_bytes(marshal.dumps(damaged))
    again = _probe(tmp_path)
    assert again["compiled"] == 1 and again["eq"] and again["frozen"]
    # a file of another layout (code objects, not their bytes) is rebuilt, never trusted
    f.write_bytes(marshal.dumps({k: compile("x = 1", "<s>", "exec") for k in data}))
    assert _probe(tmp_path)["compiled"] == first["compiled"]
    assert _probe(tmp_path)["compiled"] == 0


def test_the_cache_files_keep_this_runs_entries_within_their_caps(tmp_path: Path):
    """Entries made afresh by every process (a text built in a set's order) cannot grow a
    cache file without bound: the newest are kept, this run's last of all."""
    from sheaftune.startup_cache import read_entries, write_entries

    path = str(tmp_path / "pycode" / "t.marshal")
    old = {f"old{i}": b"x" * 100 for i in range(50)}
    write_entries(path, old, {"new": b"y" * 100}, max_bytes=1000)
    kept = read_entries(path)
    assert list(kept) == [f"old{i}" for i in range(41, 50)] + ["new"]
    # a single entry larger than the cap is kept all the same (this run needs it)
    write_entries(path, kept, {"big": b"z" * 5000}, max_bytes=1000)
    assert list(read_entries(path)) == ["big"]
