"""Control of the kernel's tracefs for ``sheaftune record``: mount, instance, events, filters.

The recorder works in a private trace *instance* (``instances/sheaftune-<pid>``), a ring buffer
of its own with its own event switches, filters, buffer size and ``tracing_on``. Compared with
driving the top-level buffer this

* never clears or changes another user's trace data, buffer size, clock or ``tracing_on``;
* cannot leave a half-restored top level behind: the instance's events are switched off, its
  filters cleared and the directory removed, which frees its buffer; a stale instance of a
  killed recorder is recognisable by its name (the pid is gone) and removed by the next run.

Because several sessions enabling the same tracepoints slow every traced allocation down and
make drops likelier, the recorder still refuses to start when a kmem event it wants is enabled,
or has a filter, in the top-level buffer or in another instance (:func:`busy_events`).

Library code: problems are raised as :class:`TracingUnavailable` (no root, no tracefs, no such
event; exit 3) or :class:`TracingBusy` (another session; exit 3), never printed; things worth
telling the user (mounting tracefs, removing a stale instance) go through a ``say`` callback.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Sequence

from sheaftune.errors import InputError, UsageError

DEFAULT_MOUNT = "/sys/kernel/tracing"
INSTANCE_PREFIX = "sheaftune-"
#: The kmem tracepoints sheaftune reads, recorded by default.
DEFAULT_EVENTS = ("kmem_cache_alloc", "kmem_cache_free", "kmalloc", "kfree")
#: Events whose payload carries the cache name, so a cache filter applies to them.
CACHE_NAMED_EVENTS = ("kmem_cache_alloc", "kmem_cache_free")

Say = Callable[[str], None]


class TracingUnavailable(InputError):
    """Kernel tracing cannot be used here: not root, no tracefs, or the events are missing."""


class TracingBusy(InputError):
    """Another tracing session uses the events the recorder wants."""


def _quiet(_: str) -> None:
    pass


def tracefs_mounts(mounts_file: str = "/proc/mounts") -> list[str]:
    """Mount points of tracefs, ``/sys/kernel/tracing`` first when it is one of them."""
    points = []
    try:
        with open(mounts_file, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "tracefs":
                    points.append(parts[1].replace("\\040", " "))
    except OSError:
        return []
    points.sort(key=lambda p: p != DEFAULT_MOUNT)
    return points


def require_root() -> None:
    if os.geteuid() != 0:
        raise TracingUnavailable(
            "recording kernel events needs root (tracefs is writable only by root); "
            "run it with sudo, or record elsewhere and analyze the file here"
        )


class TraceFs:
    """A mounted tracefs. ``mounted_here`` is True when this object mounted it (and unmounts)."""

    def __init__(self, root: str, mounted_here: bool = False):
        self.root = root
        self.mounted_here = mounted_here

    @classmethod
    def open(cls, say: Say = _quiet) -> TraceFs:
        """The mounted tracefs; mounts it at /sys/kernel/tracing when none is (and says so)."""
        require_root()
        points = tracefs_mounts()
        if points:
            return cls(points[0])
        if not os.path.isdir(DEFAULT_MOUNT):
            raise TracingUnavailable(
                f"tracefs is not available: {DEFAULT_MOUNT} does not exist "
                "(kernel built without CONFIG_FTRACE / CONFIG_TRACING?)"
            )
        try:
            proc = subprocess.run(
                ["mount", "-t", "tracefs", "nodev", DEFAULT_MOUNT],
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError as e:
            raise TracingUnavailable(f"cannot run mount to mount tracefs: {e.strerror}") from None
        if proc.returncode != 0:
            detail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
            raise TracingUnavailable(
                f"tracefs is not mounted and mounting it at {DEFAULT_MOUNT} failed: {detail}"
            )
        say(f"mounted tracefs at {DEFAULT_MOUNT} (mount -t tracefs nodev {DEFAULT_MOUNT})")
        return cls(DEFAULT_MOUNT, mounted_here=True)

    def release(self, say: Say = _quiet) -> None:
        """Unmount tracefs if this object mounted it (leave tracing as it was found)."""
        if not self.mounted_here:
            return
        proc = subprocess.run(["umount", self.root], capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            say(f"unmounted tracefs from {self.root} (it was not mounted before)")
            self.mounted_here = False
        else:
            say(f"left tracefs mounted at {self.root}: umount failed: {proc.stderr.strip()}")

    # --- files --------------------------------------------------------------------------------

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def read(self, *parts: str) -> str:
        with open(self.path(*parts), encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def read_bytes(self, *parts: str) -> bytes:
        with open(self.path(*parts), "rb") as fh:
            return fh.read()

    def event_systems(self) -> list[str]:
        d = self.path("events")
        return sorted(e for e in os.listdir(d) if os.path.isdir(os.path.join(d, e)))

    def events_of(self, system: str) -> list[str]:
        d = self.path("events", system)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return []
        return sorted(e for e in names if os.path.isfile(os.path.join(d, e, "format")))

    def formats_of(self, system: str) -> list[bytes]:
        """The ``format`` files of every event of ``system``, by event name."""
        return [self.read_bytes("events", system, e, "format") for e in self.events_of(system)]

    def cpus(self) -> int:
        """Number of per-CPU buffers: highest ``per_cpu/cpuN`` + 1."""
        ids = [int(m.group(1)) for n in os.listdir(self.path("per_cpu")) if (m := _CPU_DIR(n))]
        return max(ids) + 1 if ids else 0

    def instances(self) -> list[str]:
        try:
            return sorted(os.listdir(self.path("instances")))
        except FileNotFoundError:
            return []


_CPU_DIR = re.compile(r"cpu(\d+)$").match


def cache_filter(caches: Iterable[str]) -> str:
    """The event filter that keeps events of the named caches (``*``/``?`` glob allowed)."""
    terms = []
    for name in caches:
        if not name or not re.fullmatch(r"[A-Za-z0-9_.:()*?\[\]+-]+", name):
            raise UsageError(f"--cache {name!r}: not a slab cache name")
        op = "~" if any(c in name for c in "*?[") else "=="
        terms.append(f'name {op} "{name}"')
    return " || ".join(terms)


def _event_state(tfs: TraceFs, base: list[str], event: str) -> tuple[str, str]:
    """(enable, filter) of ``kmem/<event>`` under ``base`` (top level or an instance)."""
    d = [*base, "events", "kmem", event]
    try:
        enable = tfs.read(*d, "enable").strip()
        filt = tfs.read(*d, "filter").strip()
    except FileNotFoundError:
        return "0", "none"
    return enable, filt


def busy_events(tfs: TraceFs, events: Sequence[str], own: str | None = None) -> list[str]:
    """Descriptions of the wanted events that another session has enabled or filtered."""
    problems = []
    places: list[tuple[str, list[str]]] = [("the top-level buffer", [])]
    for inst in tfs.instances():
        if inst != own:
            places.append((f"instance {inst!r}", ["instances", inst]))
    for where, base in places:
        for event in events:
            enable, filt = _event_state(tfs, base, event)
            if enable == "1":
                problems.append(f"kmem:{event} is enabled in {where}")
            elif enable not in ("0", ""):  # "0*"/"1*": soft mode, armed by a trigger
                problems.append(f"kmem:{event} is used by a trigger in {where} ({enable})")
            elif filt not in ("none", ""):
                problems.append(f"kmem:{event} has a filter in {where} ({filt})")
    return problems


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Instance:
    """A private trace instance: its own ring buffer, events, filters and switches."""

    def __init__(self, tfs: TraceFs, name: str):
        self.tfs = tfs
        self.name = name
        self.base = ["instances", name]
        self.enabled: list[str] = []
        self.filtered: list[str] = []
        self.closed = False

    @classmethod
    def create(cls, tfs: TraceFs, name: str | None = None) -> Instance:
        name = name or f"{INSTANCE_PREFIX}{os.getpid()}"
        try:
            os.mkdir(tfs.path("instances", name))
        except FileExistsError:
            raise TracingBusy(f"trace instance {name!r} already exists") from None
        except OSError as e:
            raise TracingUnavailable(
                f"cannot create a trace instance in {tfs.path('instances')}: {e.strerror}"
            ) from None
        return cls(tfs, name)

    def path(self, *parts: str) -> str:
        return self.tfs.path(*self.base, *parts)

    def read(self, *parts: str) -> str:
        return self.tfs.read(*self.base, *parts)

    def write(self, *parts: str, value: str) -> None:
        p = self.path(*parts)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
        except OSError as e:
            detail = e.strerror
            if e.errno == errno.EINVAL and parts[-1] == "filter":
                detail = f"the kernel rejected the filter {value!r}"
            raise TracingUnavailable(f"cannot write {p}: {detail}") from None

    # --- switches -----------------------------------------------------------------------------

    def set_tracing_on(self, on: bool) -> None:
        self.write("tracing_on", value="1" if on else "0")

    @property
    def buffer_kb(self) -> int:
        return int(self.read("buffer_size_kb").split()[0])

    def set_buffer_kb(self, kb: int) -> None:
        self.write("buffer_size_kb", value=str(kb))

    @property
    def page_size(self) -> int:
        """Ring-buffer sub-buffer size in bytes (``buffer_subbuf_size_kb``, 6.8+; else 4096)."""
        try:
            return int(self.read("buffer_subbuf_size_kb").split()[0]) * 1024
        except FileNotFoundError:
            return os.sysconf("SC_PAGE_SIZE")

    @property
    def clock(self) -> str:
        m = re.search(r"\[([^\]]+)\]", self.read("trace_clock"))
        return m.group(1) if m else "local"

    def set_filter(self, event: str, expression: str) -> None:
        self.write("events", "kmem", event, "filter", value=expression)
        self.filtered.append(event)

    def enable(self, event: str) -> None:
        self.write("events", "kmem", event, "enable", value="1")
        self.enabled.append(event)

    def exclude_pids(self, tids: list[int]) -> list[int]:
        """Leave the events of these threads out (``set_event_notrace_pid``, Linux 5.8+).

        Returns the thread ids excluded: none where the kernel lacks the file. The instance's
        ``event-fork`` option stays off, so children of these threads are still traced.
        """
        tids = [t for t in tids if t > 0]
        if not tids or not os.path.exists(self.path("set_event_notrace_pid")):
            return []
        try:
            self.write("set_event_notrace_pid", value=" ".join(map(str, tids)))
        except TracingUnavailable:
            return []
        return tids

    def cpu_stats(self, cpu: int) -> str:
        return self.read("per_cpu", f"cpu{cpu}", "stats")

    def raw_pipe(self, cpu: int) -> str:
        return self.path("per_cpu", f"cpu{cpu}", "trace_pipe_raw")

    def close(self) -> list[str]:
        """Switch everything off and remove the instance; returns what could not be undone.

        Idempotent: a second call does nothing.
        """
        if self.closed:
            return []
        self.closed = True
        failures = []
        steps: list[tuple[str, tuple[str, ...], str]] = [("tracing_on", ("tracing_on",), "0")]
        steps += [(f"kmem:{e} enable", ("events", "kmem", e, "enable"), "0") for e in self.enabled]
        steps += [(f"kmem:{e} filter", ("events", "kmem", e, "filter"), "0") for e in self.filtered]
        for what, parts, value in steps:
            try:
                self.write(*parts, value=value)
            except (InputError, OSError) as e:
                failures.append(f"{what}: {e}")
        try:
            os.rmdir(self.tfs.path(*self.base))
        except FileNotFoundError:
            pass
        except OSError as e:
            failures.append(f"remove instance {self.name}: {e.strerror}")
        return failures


def remove_stale_instances(tfs: TraceFs, say: Say = _quiet) -> None:
    """Remove instances left by sheaftune recorders that were killed (their pid is gone)."""
    for name in tfs.instances():
        if not name.startswith(INSTANCE_PREFIX):
            continue
        pid = name[len(INSTANCE_PREFIX) :]
        if not pid.isdigit() or _pid_alive(int(pid)):
            continue
        inst = Instance(tfs, name)
        inst.enabled = tfs.events_of("kmem")
        inst.filtered = list(inst.enabled)
        failures = inst.close()
        if failures:
            say(f"could not remove stale trace instance {name}: {'; '.join(failures)}")
        else:
            say(f"removed trace instance {name} left by a recorder that was killed")
