"""Many-trace runs: the records a process pool or a real Dask cluster makes equal the
single-process ones (issue 12 acceptance), and the input expansion (files, globs, @list)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sheaftune.analysis.distribute import (
    LocalExecutor,
    SerialExecutor,
    analyze_many,
    expand_inputs,
    make_executor,
    trace_inputs,
)
from sheaftune.analysis.pipeline import ModelOptions, analyze_table, load
from sheaftune.analysis.sweep import parse_capacities
from sheaftune.errors import UsageError
from tests.conftest import ROOT, fixture_path

EXAMPLE = ROOT / "sheaftune" / "data" / "vma-small.dat"
MODEL = ModelOptions(capacities=parse_capacities(["4,32,60", "maple_node=12,124"]))


def _traces(tmp: Path) -> list[str]:
    """Real traces (two machines' captures, two formats) and two generated workloads."""
    from sheaftune.events import save_native
    from sheaftune.synth.generate import generate
    from sheaftune.synth.spec import load_spec

    paths = [
        str(fixture_path("traces/vma-small.v7zstd.dat")),
        str(fixture_path("traces/kmalloc-small.v7zstd.dat")),
        str(EXAMPLE),
    ]
    for name in ("maple-vma-churn", "producer-consumer"):
        out = tmp / f"{name}.npz"
        spec = load_spec(str(ROOT / "workloads" / f"{name}.yaml"))
        save_native(generate(spec, seed=3, events=20_000).events, str(out))
        paths.append(str(out))
    return paths


def _plain(analyses: list[Any]) -> list[dict[str, Any]]:
    out = []
    for a in analyses:
        d = a.to_dict()
        # which implementation walked the trace.dat pages (numpy, or numba once this process
        # has loaded it) is a fact about the reading process, not about the trace
        d["trace"].pop("page_engine", None)
        out.append(d)
    return out


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return _traces(tmp_path_factory.mktemp("fleet"))


@pytest.fixture(scope="module")
def single(traces: list[str]) -> list[dict[str, Any]]:
    return _plain([analyze_table(load(p), [], MODEL) for p in traces])


def test_serial_units_equal_single_process(traces: list[str], single: list[dict]) -> None:
    got = analyze_many(trace_inputs(traces), SerialExecutor(), (), MODEL)
    assert _plain(got) == single
    # the sweep replays and analyze's recommendations both went through units
    caches = [c for a in single for c in a["caches"].values()]
    assert sum(len(c["replay"]["replays"]) for c in caches if "replay" in c) > 20
    assert sum("recommendation" in c for c in caches) >= 4


def test_process_pool_equals_single_process(traces: list[str], single: list[dict]) -> None:
    with LocalExecutor(2) as ex:
        got = analyze_many(trace_inputs(traces), ex, (), MODEL)
    assert _plain(got) == single


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    fh = open(log, "wb")  # noqa: SIM115 - closed when the process is reaped
    return subprocess.Popen(
        [sys.executable, *args], stdout=fh, stderr=subprocess.STDOUT, cwd=log.parent
    )


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real scheduler and two single-threaded workers, each its own process, on loopback."""
    pytest.importorskip("distributed", reason="the dask extra is not installed (sheaftune[dask])")
    tmp_path = tmp_path_factory.mktemp("dask")
    sched_file = tmp_path / "scheduler.json"
    procs = [
        _start(
            [
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(sched_file),
            ],
            tmp_path / "scheduler.log",
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists():
            if time.monotonic() > deadline or procs[0].poll() is not None:
                pytest.fail((tmp_path / "scheduler.log").read_text())
            time.sleep(0.2)
        for i in range(2):
            procs.append(
                _start(
                    [
                        "-m",
                        "distributed.cli.dask_worker",
                        "--scheduler-file",
                        str(sched_file),
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--host",
                        "127.0.0.1",
                        "--name",
                        f"w{i}",
                    ],
                    tmp_path / f"worker{i}.log",
                )
            )
        import json

        from distributed import Client

        address = json.loads(sched_file.read_text())["address"]
        with Client(address, timeout=60) as c:
            c.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_dask_cluster_equals_single_process(
    dask_cluster: str, traces: list[str], single: list[dict], tmp_path: Path
) -> None:
    ex = make_executor(scheduler=dask_cluster)
    try:
        assert ex.jobs == 2
        got = analyze_many(trace_inputs(traces), ex, (), MODEL)
    finally:
        ex.close()
    assert _plain(got) == single


def test_dask_cluster_cli(dask_cluster: str, traces: list[str], tmp_path: Path) -> None:
    """The CLI over a list file on the cluster writes the same JSON as --jobs 1."""
    import json

    listfile = tmp_path / "traces.txt"
    listfile.write_text("# machines\n" + "\n".join(traces[:3]) + "\n")
    bin_ = shutil.which("sheaftune", path=str(Path(sys.executable).parent)) or "sheaftune"
    base = [bin_, "analyze", f"@{listfile}", "--capacity", "4,32", "--format", "json"]
    env = {**os.environ, "NO_COLOR": "1"}
    here = subprocess.run([*base, "--jobs", "1"], capture_output=True, text=True, env=env)
    there = subprocess.run(
        [*base, "--scheduler", dask_cluster], capture_output=True, text=True, env=env
    )
    assert here.returncode == 0, here.stderr
    assert there.returncode == 0, there.stderr
    a, b = json.loads(here.stdout), json.loads(there.stdout)
    for d in (a, b):
        for x in d["analyses"]:
            x["trace"].pop("page_engine", None)
    assert a == b


def test_expand_inputs(tmp_path: Path) -> None:
    for n in ("a.dat", "b.dat", "c.txt"):
        (tmp_path / n).write_text("")
    sub = tmp_path / "lists"
    sub.mkdir()
    # paths in a list file are relative to the list file
    (sub / "l.txt").write_text("# fleet\n../c.txt\n\n../*.dat\n")
    got = expand_inputs([str(tmp_path / "c.txt"), f"@{sub / 'l.txt'}", "-"])
    assert [os.path.basename(p) for p in got] == ["c.txt", "c.txt", "a.dat", "b.dat", "-"]
    with pytest.raises(UsageError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.zst")])
    with pytest.raises(UsageError, match="list file"):
        expand_inputs([f"@{tmp_path / 'missing.txt'}"])
    with pytest.raises(UsageError, match="standard input"):
        trace_inputs(["-"])


def test_scheduler_without_dask_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from sheaftune.cli import cli

    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as if absent
    r = CliRunner().invoke(
        cli, ["analyze", str(EXAMPLE), "--scheduler", "tcp://127.0.0.1:1"], standalone_mode=False
    )
    assert isinstance(r.exception, UsageError)
    assert "pip install 'sheaftune[dask]'" in str(r.exception)
    assert r.exception.exit_code == 2


def test_compare_many_equals_single_process() -> None:
    import dataclasses

    from sheaftune.analysis.compare import CompareRequest, run
    from sheaftune.analysis.distribute import compare_many

    paths = [str(EXAMPLE), str(fixture_path("traces/vma-small.v7zstd.dat"))]
    req = CompareRequest(engine="fast")
    ref = [run(dataclasses.replace(req, trace=p)).to_dict() for p in paths]
    with LocalExecutor(2) as ex:
        got = [c.to_dict() for c in compare_many(trace_inputs(paths), ex, req)]
    assert got == ref
    with pytest.raises(UsageError, match="--ops"):
        compare_many(trace_inputs(paths), SerialExecutor(), dataclasses.replace(req, ops_file="x"))


def test_dask_fleet_equals_single_process(dask_cluster: str, traces: list[str]) -> None:
    from sheaftune.analysis.distribute import recommend_many
    from sheaftune.analysis.fleet import fleet_report
    from sheaftune.analysis.recommend import RecommendOptions
    from sheaftune.analysis.tracereplay import ReplayPolicy

    def report(ex: Any) -> dict[str, Any]:
        per = recommend_many(
            trace_inputs(traces[:3]), ex, RecommendOptions(), ReplayPolicy(), ("maple_node",)
        )
        rep = fleet_report(traces[:3], per, kernel="7.3", objective="scaling", tolerance=0.05)
        return rep.to_dict()

    ex = make_executor(scheduler=dask_cluster)
    try:
        there = report(ex)
    finally:
        ex.close()
    here = report(SerialExecutor())
    assert there == here and here["caches"]["maple_node"]["machines"] == 2
