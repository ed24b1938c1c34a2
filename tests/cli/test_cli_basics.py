"""The CLI boundary: exit codes, one-line errors, native file round trip, help and version."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sheaftune
from sheaftune import __version__
from sheaftune.events import (
    COLUMNS,
    NATIVE_VERSION,
    EventTable,
    Op,
    TraceMeta,
    load_native,
    save_native,
)


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="120")
    return subprocess.run(
        [sys.executable, "-m", "sheaftune", *args],
        input=stdin and stdin.decode(),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def small_table() -> EventTable:
    n = 6
    cols = {k: np.zeros(n, dtype=d) for k, d in COLUMNS.items()}
    cols["ts_ns"][:] = np.arange(n) * 1000
    cols["op"][:] = [Op.KMEM_CACHE_ALLOC] * 3 + [Op.KMEM_CACHE_FREE] * 3
    cols["ptr"][:] = [1 << 40, 2 << 40, 3 << 40, 1 << 40, 2 << 40, 3 << 40]
    cols["cpu"][:] = [0, 1, 0, 1, 1, 0]
    cols["bytes_alloc"][:] = 256
    cols["node"][:] = -1
    cols["site_id"][:] = 0
    return EventTable(
        cols, ["maple_node"], ["mas_preallocate+0x1"], ["x"], TraceMeta(cpus=2, format="test")
    )


def one_line_error(p: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert p.returncode == code, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_version_and_help_list_exit_codes():
    p = run("--version")
    assert p.returncode == 0 and __version__ in p.stdout
    p = run("--help")
    assert p.returncode == 0 and "Exit status" in p.stdout and "nothing to analyse" in p.stdout


def test_help_does_not_import_numba_or_scipy():
    code = (
        "import sys; from sheaftune.cli import cli; from click.testing import CliRunner; "
        "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0; "
        "print('numba' in sys.modules, 'scipy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False False", out.stderr


def _imported(args: list[str], modules: tuple[str, ...], pre: str = "") -> list[str]:
    """Which of ``modules`` a run of ``sheaftune ARGS`` (output to /dev/null) imported, after
    the statements ``pre``; standard error is a pipe, no terminal forced. (Not those the
    interpreter had imported before: an editable install's path hook brings pathlib.)"""
    code = (
        "import sys; before = set(sys.modules)\n"
        f"{pre}\n"
        "import runpy; sys.argv = ['sheaftune', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('sheaftune', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        f"print('imported:', *(m for m in {modules!r} if m in sys.modules and m not in before))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()[-1].split()[1:]


def test_startup_imports_only_what_the_run_uses(tmp_path: Path):
    # start-up time is part of the speed target: a JSON report needs no rich (tables, progress
    # bars and warnings do) nor yaml (YAML output, cost files), help needs no numpy
    f = tmp_path / "t.npz"
    save_native(small_table(), f)
    heavy = ("rich", "yaml", "numba", "scipy", "matplotlib", "dask")
    # (nor concurrent.futures, whose logging import costs ~5 ms: analyze has its own pool)
    json_run = ["analyze", str(f), "--format", "json", "-o", os.devnull]
    assert _imported(json_run, (*heavy, "concurrent.futures", "logging")) == []
    # nor pathlib (with the urllib.parse it imports, ~3 ms), a trace.dat's read included, nor
    # glob (its argument is no pattern), nor random (the replays seed the C generator)
    dat = Path(sheaftune.__file__).parent / "data" / "vma-small.dat"
    dat_run = ["analyze", str(dat), "--format", "json", "-o", os.devnull]
    assert _imported(dat_run, (*heavy, "pathlib", "urllib.parse", "glob", "random")) == []
    assert _imported(["analyze", "--help"], ("numpy", *heavy)) == []
    # a file large enough for a progress bar, read with standard error into a pipe: no bar,
    # and rich not imported to find that out
    big = "import sheaftune.cli.progress as p; p.PROGRESS_MIN_BYTES = 0"
    assert _imported(json_run, ("rich",), pre=big) == []


def test_progress_asks_rich_whenever_a_terminal_may_be_forced(monkeypatch: pytest.MonkeyPatch):
    from sheaftune.cli import progress

    for var in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not progress._may_be_terminal()
    monkeypatch.setenv("FORCE_COLOR", "")  # (rich: set but empty is "not a terminal")
    assert progress._may_be_terminal()
    monkeypatch.delenv("FORCE_COLOR")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    assert progress._may_be_terminal()


def test_a_program_run_ends_without_teardown_but_runs_atexit(tmp_path: Path):
    # the console script's way in (``from sheaftune.__main__ import run``): the report and the
    # atexit functions as usual, then no interpreter teardown (the global's __del__ never runs)
    # and the collector's larger threshold; an embedding program keeps both (previous test)
    f = tmp_path / "t.npz"
    save_native(small_table(), f)
    code = (
        "import atexit, gc, sys\n"
        "from sheaftune.__main__ import run\n"
        "class Late:\n"
        "    def __del__(self):\n"
        "        print('teardown')\n"
        "late = Late()\n"
        "atexit.register(lambda: print('atexit', gc.get_threshold()[0]))\n"
        "sys.argv = ['sheaftune', *sys.argv[1:]]\n"
        "run()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "analyze", str(f), "--format", "json"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    report, _, tail = out.stdout.rpartition("}\n")
    assert json.loads(report + "}")["schema"] == "sheaftune/analysis"
    assert tail == "atexit 100000\n", out.stdout[-200:]


def test_native_round_trip_and_analysis(tmp_path: Path):
    f = tmp_path / "t.npz"
    save_native(small_table(), f)
    t = load_native(str(f))
    assert len(t) == 6 and t.caches == ["maple_node"] and t.meta.cpus == 2
    p = run("analyze", str(f), "--format", "json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["schema"] == "sheaftune/analysis" and d["version"] == 2
    st = d["caches"]["maple_node"]
    assert (st["alloc"], st["free"], st["matched_free"], st["cross_cpu_free"]) == (3, 3, 3, 1)
    for fmt in ("table", "yaml", "csv"):
        p = run("analyze", str(f), "--format", fmt)
        assert p.returncode == 0 and "maple_node" in p.stdout, p.stderr


def test_native_file_newer_version_is_refused(tmp_path: Path):
    import sheaftune.events as ev

    f = tmp_path / "new.npz"
    old = ev.NATIVE_VERSION
    try:
        ev.NATIVE_VERSION = NATIVE_VERSION + 1
        save_native(small_table(), f)
    finally:
        ev.NATIVE_VERSION = old
    one_line_error(run("analyze", str(f)), 3, str(f), "newer")


def test_cache_filter_matching_nothing_exits_4(tmp_path: Path):
    f = tmp_path / "t.npz"
    save_native(small_table(), f)
    one_line_error(run("analyze", str(f), "--cache", "no_such_cache"), 4, "no_such_cache")


@pytest.mark.parametrize(
    "content,words",
    [
        (b"", ("empty",)),
        (bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)), ("binary",)),
    ],
)
def test_bad_inputs_exit_3(tmp_path: Path, content: bytes, words: tuple[str, ...]):
    f = tmp_path / "bad.bin"
    f.write_bytes(content)
    one_line_error(run("analyze", str(f)), 3, str(f), *words)


def test_directory_and_missing_file_exit_3(tmp_path: Path):
    one_line_error(run("analyze", str(tmp_path)), 3, "directory")
    one_line_error(run("analyze", str(tmp_path / "nope.dat")), 3, "no such file")


def test_usage_error_exits_2():
    p = run("analyze")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    p = run("analyze", "--format", "nonsense", "x")
    assert p.returncode == 2


def test_output_file_is_written_atomically(tmp_path: Path):
    f = tmp_path / "t.npz"
    save_native(small_table(), f)
    out = tmp_path / "out.json"
    p = run("analyze", str(f), "--format", "json", "-o", str(out))
    assert p.returncode == 0 and json.loads(out.read_text())["caches"]
    assert [x.name for x in tmp_path.iterdir() if x.name.startswith(".sheaftune-")] == []
    # a failing run leaves no output behind
    out2 = tmp_path / "out2.json"
    p = run("analyze", str(tmp_path / "missing"), "--format", "json", "-o", str(out2))
    assert p.returncode == 3 and not out2.exists()


def test_analyze_accepts_a_workload_like_a_trace():
    p = run(
        "analyze",
        "--workload",
        "workloads/maple-vma-churn.yaml",
        "--no-recommend",
        "--format",
        "json",
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["trace"]["format"] == "workload"
    assert d["caches"]["maple_node"]["alloc"] > 0 and "replay" in d["caches"]["maple_node"]
    p = run("analyze", "--workload", "no-such.yaml")
    assert p.returncode in (2, 3) and "Traceback" not in p.stderr


def test_ctrl_c_inside_a_jit_call_is_an_interruption(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a numba JIT dispatcher interrupted by SIGINT returns with the KeyboardInterrupt set, and
    # CPython raises SystemError from it: exit 130 with the interruption's line, as any Ctrl-C;
    # a SystemError of another cause stays an internal error
    from sheaftune import cli

    def interrupted_jit_call(args: list[str]) -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise SystemError("CPUDispatcher(walk) returned a result with an exception set") from e

    monkeypatch.setattr(cli, "_invoke", interrupted_jit_call)
    with pytest.raises(SystemExit) as exc:
        cli.main(["generate"])
    assert exc.value.code == 130
    assert capsys.readouterr().err.strip() == "sheaftune: error: interrupted"

    def other_system_error(args: list[str]) -> None:
        raise SystemError("something else")

    monkeypatch.setattr(cli, "_invoke", other_system_error)
    with pytest.raises(SystemExit) as exc:
        cli.main(["generate"])
    assert exc.value.code == 1
    assert "internal error: SystemError: something else" in capsys.readouterr().err
