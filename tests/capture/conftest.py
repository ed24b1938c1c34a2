"""Fixtures of the capture tests: live tracefs (root) and tracing-state snapshots."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sheaftune.capture.tracefs import (
    DEFAULT_EVENTS,
    INSTANCE_PREFIX,
    TraceFs,
    remove_stale_instances,
    tracefs_mounts,
)


def _tracefs_reason() -> str | None:
    if os.geteuid() != 0:
        return "recording needs root (tracefs is writable only by root)"
    points = tracefs_mounts()
    if not points:
        return "tracefs is not mounted (the test does not mount it for you)"
    if not os.access(os.path.join(points[0], "instances"), os.W_OK):
        return f"{points[0]}/instances is not writable"
    if not os.path.isdir(os.path.join(points[0], "events", "kmem")):
        return "this kernel has no kmem tracepoints"
    return None


@pytest.fixture
def tracefs() -> Path:
    """The tracefs mount point; skips with the reason where recording cannot work.

    An instance left by a recorder that was SIGKILLed (an earlier run's, whose pid is gone) is
    removed first, as `sheaftune record` itself would: the tests compare the state before and
    after a recording, and skip while a live recorder's instance is present.
    """
    reason = _tracefs_reason()
    if reason:
        pytest.skip(reason)
    root = Path(tracefs_mounts()[0])
    remove_stale_instances(TraceFs(str(root)))
    return root


def tracing_state(root: Path) -> dict[str, str]:
    """What record must leave as it found: kmem switches and filters, buffer size, instances."""
    state = {
        "buffer_size_kb": (root / "buffer_size_kb").read_text().strip(),
        "tracing_on": (root / "tracing_on").read_text().strip(),
        "trace_clock": (root / "trace_clock").read_text().strip(),
        "instances": " ".join(
            sorted(n for n in os.listdir(root / "instances") if n.startswith(INSTANCE_PREFIX))
        ),
    }
    for event in DEFAULT_EVENTS:
        d = root / "events" / "kmem" / event
        state[f"{event}/enable"] = (d / "enable").read_text().strip()
        state[f"{event}/filter"] = (d / "filter").read_text().strip()
    return state


def assert_clean(root: Path, before: dict[str, str]) -> None:
    after = tracing_state(root)
    assert after == before
    assert after["instances"] == "", "a sheaftune trace instance was left behind"
    for event in DEFAULT_EVENTS:
        assert after[f"{event}/enable"] == "0", event
        assert after[f"{event}/filter"] == "none", event


def trace_cmd() -> str:
    exe = shutil.which("trace-cmd")
    if exe is None:
        pytest.skip("trace-cmd is not installed (apt-get install trace-cmd): it is the oracle")
    return exe
