"""sheaftune.regex_code: regular expressions compiled once, then taken from the cache; the
patterns behave the same either way, as ``re``'s own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sheaftune import regex_code
from tests.conftest import example_json_runs

pytestmark = pytest.mark.skipif(
    sys.version_info[:2] not in regex_code.PYTHONS,
    reason=f"Python {sys.version_info[0]}.{sys.version_info[1]}: the cache is not installed",
)

PROBE = r"""
import json, re, sys
from sheaftune import regex_code
installed = regex_code.install() if sys.argv[1] == "1" else False
patterns = [
    (r"^\s*field:(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);", 0),
    (r"(?i)kmalloc-(cg-|rcl-)?(\d+k?)", 0),
    (r'''
        (?P<num>-?\d+)   # a number
        \s* , \s*
        (?P<word>\w+)    # a word
    ''', re.VERBOSE),
    (r"(a)(b)?(?:c)|(?P<d>d+)", re.MULTILINE | re.DOTALL),
    (b"[\x80-\xff]+|\\x00", 0),
    (r"\+0x[0-9a-fA-F]+(/0x[0-9a-fA-F]+)?", re.ASCII),
]
texts = ["  field:unsigned long call_site;\toffset:8;\tsize:8;", "KMALLOC-cg-96 kmalloc-1k",
         " -12 , abc\n7,x", "ab\ndd a c", "do_mmap+0x1a/0x5c0", "\u00e9\u00e8"]
out = []
for p, flags in patterns:
    rx = re.compile(p, flags)
    row = [rx.pattern if isinstance(p, str) else p.decode("latin-1"), rx.flags, rx.groups,
           dict(rx.groupindex)]
    for t in texts:
        t = t.encode("utf-8") if isinstance(p, bytes) else t
        found = [m.span() + (m.groups(),) for m in rx.finditer(t)]
        row.append(repr(found))
        row.append(repr(rx.sub(b"<>" if isinstance(p, bytes) else "<>", t)))
    out.append(row)
print(json.dumps({"installed": installed, "compiled": regex_code.compiled, "out": out}))
"""


def _probe(cache: Path, install: bool = True) -> dict[str, object]:
    env = {**os.environ, "SHEAFTUNE_CACHE_DIR": str(cache)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "1" if install else "0"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_the_second_run_compiles_nothing_and_patterns_match_as_re_own(tmp_path: Path):
    plain = _probe(tmp_path, install=False)
    assert plain["installed"] is False and not list(tmp_path.rglob("*.marshal"))
    first = _probe(tmp_path)
    files = list((tmp_path / "pycode").glob("regex-*.marshal"))
    assert first["installed"] is True and first["compiled"] and len(files) == 1
    second = _probe(tmp_path)
    assert second["compiled"] == 0
    assert first["out"] == second["out"] == plain["out"]


def test_a_damaged_cache_is_compiled_afresh(tmp_path: Path):
    first = _probe(tmp_path)
    (path,) = (tmp_path / "pycode").glob("regex-*.marshal")
    path.write_bytes(b"\x00not marshal")
    again = _probe(tmp_path)
    assert again["compiled"] == first["compiled"] and again["out"] == first["out"]
    # an entry of the wrong shape is ignored too (compiled again, not trusted)
    assert regex_code._decode(b"garbage") is None
    import marshal

    assert regex_code._decode(marshal.dumps((1, 2, 3))) is None
    assert regex_code._decode(marshal.dumps((0, "code", 0, {}, ()))) is None


def test_an_entry_the_engine_refuses_is_compiled_afresh(tmp_path: Path):
    """Well-formed but wrong code (a damaged file can hold anything): ``_sre`` checks the
    code it is given, and the pattern is then compiled as ``re`` would."""
    first = _probe(tmp_path)
    (path,) = (tmp_path / "pycode").glob("regex-*.marshal")
    import marshal

    entries = marshal.loads(path.read_bytes())
    for key, data in entries.items():
        final_flags, code, groups, groupindex, indexgroup = marshal.loads(data)
        entries[key] = marshal.dumps((final_flags, [99999] * 7, groups, groupindex, indexgroup))
    path.write_bytes(marshal.dumps(entries))
    again = _probe(tmp_path)
    assert again["compiled"] == first["compiled"] and again["out"] == first["out"]


def test_debug_patterns_and_compiled_pattern_lists_go_to_re_itself(tmp_path: Path):
    code = r"""
import re, sys
from sheaftune import regex_code
assert regex_code.install()
rx = re.compile("ab+", re.DEBUG)
print("END", regex_code.compiled, bool(rx.match("abb")))
"""
    env = {**os.environ, "SHEAFTUNE_CACHE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "LITERAL 97" in out  # (re's own debug listing)
    assert out.strip().endswith("END 0 True")


def test_the_program_installs_it_and_says_the_same(tmp_path: Path):
    first, second = example_json_runs(tmp_path, {}, {})
    assert list((tmp_path / "pycode").glob("regex-*.marshal"))
    assert first == second
