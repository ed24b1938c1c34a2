"""``sheaftune record`` on the live kernel: a recording trace-cmd and our reader agree on, a
clean tracing state afterwards, Ctrl-C, refusals. Skipped where tracefs is unavailable."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sheaftune.capture.tracedat_writer import read_v6_options, record_facts
from sheaftune.capture.tracefs import INSTANCE_PREFIX

from .conftest import assert_clean, trace_cmd, tracing_state

#: maps, splits (mprotect of the middle page) and unmaps anonymous regions: vm_area_struct and
#: maple_node allocations and frees.
MMAP_PROGRAM = """
import mmap, ctypes, ctypes.util
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
page = mmap.PAGESIZE
for i in range(400):
    m = mmap.mmap(-1, 4 * page)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    libc.mprotect(addr + page, page, mmap.PROT_READ)
    m.close()
"""


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "sheaftune", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def _skip_if_busy(before: dict[str, str]) -> None:
    if any(v != "0" for k, v in before.items() if k.endswith("/enable")):
        pytest.skip("another tracing session has kmem events enabled at the top level")
    if before["instances"]:
        pytest.skip(f"another sheaftune recorder is running ({before['instances']})")


def test_record_mmap_program(tracefs: Path, tmp_path: Path) -> None:
    tc = trace_cmd()
    before = tracing_state(tracefs)
    _skip_if_busy(before)
    out = tmp_path / "mmap.dat"
    p = run_cli(
        "record",
        "-o",
        str(out),
        "--cache",
        "maple_node",
        "--cache",
        "vm_area_struct",
        "--",
        sys.executable,
        "-c",
        MMAP_PROGRAM,
    )
    assert p.returncode == 0, p.stderr
    assert_clean(tracefs, before)
    assert "wrote" in p.stderr and "cpu0:" in p.stderr
    assert "lost" not in p.stderr, p.stderr

    # trace-cmd is the oracle: it reads the file, and sees both caches.
    rep = subprocess.run([tc, "report", str(out)], capture_output=True, text=True, timeout=120)
    assert rep.returncode == 0, rep.stderr
    names = re.findall(r"(kmem_cache_alloc|kmem_cache_free):.* name=(\w+)", rep.stdout)
    allocs = {n for ev, n in names if ev == "kmem_cache_alloc"}
    assert {"maple_node", "vm_area_struct"} <= allocs
    assert allocs <= {"maple_node", "vm_area_struct"}, "the cache filter let others through"
    # kmalloc and kfree (default events) carry no cache name: recorded whole, unfiltered.
    stat = subprocess.run([tc, "report", "--stat", str(out)], capture_output=True, text=True)
    assert "dropped events: 0" in stat.stdout and "overrun: 0" in stat.stdout

    facts = record_facts(str(out))
    assert facts is not None
    expression = 'name == "maple_node" || name == "vm_area_struct"'
    assert facts["filters"] == {"kmem_cache_alloc": expression, "kmem_cache_free": expression}
    assert set(facts["unfiltered"]) == {"kmalloc", "kfree"}
    assert facts["command_status"] == 0
    assert all(v["overrun"] == 0 and v["dropped"] == 0 for v in facts["lost"].values())
    # The recorder's own threads are left out; the command is traced.
    assert len(facts["excluded_tids"]) >= 2
    pids = {int(p) for p in re.findall(r"-(\d+)\s+\[\d+\]", rep.stdout)}
    assert pids and not pids & set(facts["excluded_tids"])
    opts = read_v6_options(str(out))
    assert len(opts[2]) == facts["cpus"]  # one CPUSTAT per CPU
    assert opts[5][0].split()[2] == os.uname().release.encode()  # UNAME: kernel release

    # Our own reader (when present) agrees with trace-cmd on the events of the two caches.
    try:
        from sheaftune.readers import read_trace

        table = read_trace(str(out))
    except ImportError:
        return
    for cache in ("maple_node", "vm_area_struct"):
        cid = table.find_cache(cache)
        assert cid >= 0
        ours = int((table.cache_id == cid).sum())
        theirs = sum(1 for _, n in names if n == cache)
        assert ours == theirs, cache
    assert table.meta.cpus == facts["cpus"]
    assert table.meta.kernel_release == os.uname().release


def test_record_duration_without_command(tracefs: Path, tmp_path: Path) -> None:
    before = tracing_state(tracefs)
    _skip_if_busy(before)
    out = tmp_path / "idle.dat"
    p = run_cli("record", "-o", str(out), "--duration", "0.5", "--events", "kmem_cache_alloc,kfree")
    assert p.returncode == 0, p.stderr
    assert_clean(tracefs, before)
    facts = record_facts(str(out))
    assert facts is not None and facts["events"] == ["kmem_cache_alloc", "kfree"]
    assert facts["filters"] == {}


def _wait_for_instance(root: Path, pid: int, timeout: float = 30) -> None:
    inst = root / "instances" / f"{INSTANCE_PREFIX}{pid}"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        # the kernel makes an instance's directory before the files in it: tracing_on may be
        # missing for a moment after the directory appears
        with contextlib.suppress(FileNotFoundError):
            if (inst / "tracing_on").read_text().strip() == "1":
                return
        time.sleep(0.05)
    raise AssertionError(f"{inst} never started tracing")


def _reap(proc: subprocess.Popen[str], tracefs: Path) -> None:
    """After a failed step, stop a recorder still running: Ctrl-C first (it then restores
    tracefs itself), SIGKILL only if that fails, and then remove what a killed one left, or
    every later live test would skip as "another recorder is running"."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        with contextlib.suppress(OSError):
            (tracefs / "instances" / f"{INSTANCE_PREFIX}{proc.pid}").rmdir()


def test_ctrl_c_restores_state_and_exits_130(tracefs: Path, tmp_path: Path) -> None:
    before = tracing_state(tracefs)
    _skip_if_busy(before)
    out = tmp_path / "sleep.dat"
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sheaftune", "record", "-o", str(out), "--", "sleep", "30"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # as from a terminal: a test run started in the background (``cmd &``) ignores SIGINT,
        # which its children inherit, and `sleep` would then outlive the Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for_instance(tracefs, proc.pid)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        _reap(proc, tracefs)
    assert proc.returncode == 130, err
    assert time.monotonic() - t0 < 20, "record did not stop promptly on SIGINT"
    assert "stopped by SIGINT" in err
    assert_clean(tracefs, before)
    assert out.exists()  # what was recorded up to Ctrl-C is kept
    facts = record_facts(str(out))
    assert facts is not None and facts["interrupted_by"] == "SIGINT"
    # The command was stopped and reaped (SIGINT passed on: status -2), not left running.
    assert facts["command_status"] == -signal.SIGINT


def test_failing_command_still_restores(tracefs: Path, tmp_path: Path) -> None:
    before = tracing_state(tracefs)
    _skip_if_busy(before)
    out = tmp_path / "false.dat"
    p = run_cli("record", "-o", str(out), "--", "sh", "-c", "exit 7")
    assert p.returncode == 0, p.stderr
    assert "exited with status 7" in p.stderr
    assert_clean(tracefs, before)
    facts = record_facts(str(out))
    assert facts is not None and facts["command_status"] == 7


def test_unknown_command_is_a_usage_error(tracefs: Path, tmp_path: Path) -> None:
    before = tracing_state(tracefs)
    p = run_cli("record", "-o", str(tmp_path / "x.dat"), "--", "no-such-command-xyz")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "sheaftune: error: command not found: no-such-command-xyz"
    ]
    assert tracing_state(tracefs) == before


def test_unknown_event_is_a_usage_error(tracefs: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "x.dat")
    p = run_cli("record", "-o", out, "--events", "kmalloc,nope", "--duration", "1")
    assert p.returncode == 2
    assert "no kmem:nope event" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_refuses_when_another_session_filters_the_events(tracefs: Path, tmp_path: Path) -> None:
    before = tracing_state(tracefs)
    _skip_if_busy(before)
    other = tracefs / "instances" / "other-session-test"
    other.mkdir()
    try:
        (other / "events" / "kmem" / "kmem_cache_free" / "filter").write_text('name == "filp"')
        p = run_cli("record", "-o", str(tmp_path / "x.dat"), "--duration", "1")
        assert p.returncode == 3, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1
        assert "another tracing session" in lines[0]
        assert "kmem:kmem_cache_free has a filter in instance 'other-session-test'" in lines[0]
    finally:
        (other / "events" / "kmem" / "kmem_cache_free" / "filter").write_text("0")
        other.rmdir()
    assert tracing_state(tracefs) == before
    assert not (tmp_path / "x.dat").exists()


def test_removes_the_instance_of_a_killed_recorder(tracefs: Path, tmp_path: Path) -> None:
    before = tracing_state(tracefs)
    _skip_if_busy(before)
    # A pid that cannot be alive: above the kernel's pid_max.
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    stale = tracefs / "instances" / f"{INSTANCE_PREFIX}{pid_max + 1}"
    stale.mkdir()
    try:
        (stale / "events" / "kmem" / "kfree" / "enable").write_text("1")
        p = run_cli("record", "-o", str(tmp_path / "x.dat"), "--duration", "0.3")
        assert p.returncode == 0, p.stderr
        assert "left by a recorder that was killed" in p.stderr
        assert not stale.exists()
    finally:
        if stale.exists():
            (stale / "events" / "kmem" / "kfree" / "enable").write_text("0")
            stale.rmdir()
    assert_clean(tracefs, before)


def test_not_root_is_a_one_line_error(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/setpriv"):
        pytest.skip("needs root and setpriv to run the command as another user")
    env = dict(os.environ, NO_COLOR="1", PYTHONDONTWRITEBYTECODE="1")
    p = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "sheaftune",
            "record",
            "-o",
            "/tmp/never-written.dat",
            "--duration",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(Path(__file__).resolve().parents[2]),
        timeout=60,
    )
    assert p.returncode == 3, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs root" in lines[0]


def test_mounts_tracefs_when_it_is_not_mounted(tracefs: Path, tmp_path: Path) -> None:
    """In a private mount namespace (others keep their tracefs) with tracefs unmounted."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    before = tracing_state(tracefs)
    _skip_if_busy(before)
    out = tmp_path / "ns.dat"
    script = (
        f"umount {tracefs} || exit 99; "
        f"{sys.executable} -m sheaftune record -o {out} --duration 0.3 --events kfree; rc=$?; "
        "grep -c ' tracefs ' /proc/mounts; exit $rc"
    )
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    p = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if p.returncode == 99:
        pytest.skip(f"cannot unmount tracefs in a private mount namespace: {p.stderr.strip()}")
    assert p.returncode == 0, p.stderr
    assert f"mounted tracefs at {tracefs}" in p.stderr
    assert "unmounted tracefs" in p.stderr
    assert p.stdout.strip() == "0"  # left unmounted, as found
    assert out.exists()
    assert_clean(tracefs, before)


def test_ctrl_c_is_the_normal_stop_without_command_or_duration(
    tracefs: Path, tmp_path: Path
) -> None:
    before = tracing_state(tracefs)
    _skip_if_busy(before)
    out = tmp_path / "open-ended.dat"
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sheaftune", "record", "-o", str(out), "--events", "kfree"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        _wait_for_instance(tracefs, proc.pid)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        _reap(proc, tracefs)
    assert proc.returncode == 0, err
    assert "press Ctrl-C to stop" in err and "stopped by SIGINT" in err
    assert out.exists()
    assert_clean(tracefs, before)


def test_command_killed_by_a_signal(tracefs: Path, tmp_path: Path) -> None:
    before = tracing_state(tracefs)
    _skip_if_busy(before)
    p = run_cli("record", "-o", str(tmp_path / "kill.dat"), "--", "sh", "-c", "kill -SEGV $$")
    assert p.returncode == 0, p.stderr
    assert "sh was killed by SIGSEGV" in p.stderr
    assert_clean(tracefs, before)
