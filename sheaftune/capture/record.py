"""The recording loop of ``sheaftune record``: kmem tracepoints on a live kernel -> trace.dat.

Sequence: check root and tracefs (mount it if needed), refuse when another session uses the
same kmem events, create a private trace instance, set the cache filters, enable the events,
start one reader thread per CPU on ``per_cpu/cpuN/trace_pipe_raw``, switch tracing on, run the
command (or wait for the duration, or for Ctrl-C), switch tracing off, drain the buffers, read
the per-CPU statistics, switch the events off, remove the instance and write trace.dat v6
(:mod:`sheaftune.capture.tracedat_writer`; why v6 is explained there).

Keeping up: one thread per CPU moves whole ring-buffer pages (sub-buffers) to a spool file next
to the output with ``splice``, inside the kernel, up to 256 pages per call, decoding nothing;
the partly filled pages left when tracing stops are then read with ``read`` (one sub-buffer per
call). The threads poll non-blocking and sleep 5 ms only when no full page is waiting, run at
nice -10, and the spool keeps memory bounded however long the recording runs. After the fact,
each page's commit word is scanned for the kernel's missed-events flags; the per-CPU
``stats`` file gives the authoritative ``overrun``/``dropped events`` counts.

Tracing state is restored in a ``finally`` whatever happens: Ctrl-C, SIGTERM, SIGHUP, an error,
or a failing command. SIGINT/SIGTERM/SIGHUP are caught for the duration of the recording (only
when called from the main thread) and turn into "stop, drain and write"; SIGINT is passed on to
the command when it did not get it from the terminal already.
"""

from __future__ import annotations

import errno
import fcntl
import os
import platform
import shutil
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sheaftune import __version__
from sheaftune.capture.tracedat_writer import TraceDatMetadata, write_tracedat_v6
from sheaftune.capture.tracefs import (
    CACHE_NAMED_EVENTS,
    DEFAULT_EVENTS,
    Instance,
    Say,
    TraceFs,
    TracingBusy,
    TracingUnavailable,
    busy_events,
    cache_filter,
    remove_stale_instances,
)
from sheaftune.errors import UsageError

#: Pages are written to the spool in batches of this many bytes (fewer write calls).
SPOOL_BATCH = 1 << 20
#: Pipe capacity asked for the splice path (the default /proc/sys/fs/pipe-max-size): 256 pages
#: per splice call.
PIPE_BYTES = 1 << 20
#: How long a reader sleeps when its buffer is empty. The default 1.4 MB buffer holds about
#: 90 ms of events at 250k events/s per CPU, so 5 ms leaves a wide margin.
POLL_INTERVAL_S = 0.005
#: Nice value of the page-copying threads (root may lower it; ignored if refused).
READER_NICE = -10
#: After a stop request: how long the command gets to exit after SIGINT, then after SIGTERM.
CHILD_GRACE_S = 3.0

_MISSED_EVENTS = 1 << 31
_MISSED_STORED = 1 << 30
_COMMIT_SIZE = (1 << 27) - 1


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class RecordOptions:
    output: str = "trace.dat"
    events: tuple[str, ...] = DEFAULT_EVENTS
    caches: tuple[str, ...] = ()
    buffer_kb: int | None = None  # per CPU; None: the instance's default
    duration_s: float | None = None
    command: tuple[str, ...] = ()
    poll_interval_s: float = POLL_INTERVAL_S
    use_splice: bool = True  # False: read() every page (slower; for comparison and fallback)


@dataclass
class CpuCapture:
    """What was read from one CPU's buffer and what its statistics say was lost."""

    cpu: int
    pages: int = 0
    bytes: int = 0
    missed_pages: int = 0  # pages flagged MISSED_EVENTS (events lost before them)
    missed_events: int = 0  # counts stored in those pages (unknown counts are not included)
    stats: dict[str, str] = field(default_factory=dict)  # per_cpu/cpuN/stats, parsed
    stats_text: str = ""

    def stat(self, key: str) -> int:
        try:
            return int(self.stats.get(key, "0").split()[0])
        except ValueError:
            return 0

    @property
    def read_events(self) -> int:
        return self.stat("read events")

    @property
    def overrun(self) -> int:
        return self.stat("overrun")

    @property
    def dropped(self) -> int:
        return self.stat("dropped events")

    @property
    def commit_overrun(self) -> int:
        return self.stat("commit overrun")

    @property
    def lost(self) -> int:
        return self.overrun + self.dropped + self.commit_overrun


@dataclass(frozen=True)
class RecordResult:
    """The outcome of one recording, for the summary the CLI prints."""

    path: str
    file_size: int
    events: tuple[str, ...]
    filters: dict[str, str]  # event -> filter expression set
    unfiltered: tuple[str, ...]  # events recorded whole although --cache was given
    cpus: tuple[CpuCapture, ...]
    kernel_release: str
    clock: str
    buffer_kb: int
    duration_s: float
    command: tuple[str, ...]
    command_status: int | None  # exit status (negative: killed by that signal); None: no command
    interrupted: bool  # stopped by SIGINT/SIGTERM/SIGHUP
    signal_name: str | None = None

    @property
    def read_events(self) -> int:
        return sum(c.read_events for c in self.cpus)

    @property
    def lost(self) -> int:
        return sum(c.lost for c in self.cpus)


def parse_stats(text: str) -> dict[str, str]:
    """``per_cpu/cpuN/stats`` as key -> value text (``overrun: 0`` -> {"overrun": "0"})."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


class _CpuReader(threading.Thread):
    """Copies one CPU's ring-buffer pages from ``trace_pipe_raw`` to a spool file."""

    def __init__(
        self,
        cpu: int,
        pipe_path: str,
        spool_path: str,
        page_size: int,
        drain: threading.Event,
        interval: float,
        use_splice: bool = True,
    ):
        super().__init__(name=f"sheaftune-cpu{cpu}", daemon=True)
        self.capture = CpuCapture(cpu)
        self.pipe_path = pipe_path
        self.spool_path = spool_path
        self.page_size = page_size
        self.drain = drain
        self.interval = interval
        self.error: BaseException | None = None
        # Opened here, in the caller's thread, so that a busy or missing file is reported
        # before tracing starts.
        try:
            self.out = open(spool_path, "wb", buffering=0)  # closed in run()
        except OSError as e:
            raise UsageError(
                f"cannot write next to the output ({spool_path}): {e.strerror}"
            ) from None
        try:
            self.fd = os.open(pipe_path, os.O_RDONLY | os.O_NONBLOCK)
        except BaseException:
            self.out.close()
            raise
        self.use_splice = use_splice

    def run(self) -> None:
        try:
            # Losing the CPU for the ~90 ms a default buffer lasts at 250k events/s per CPU
            # means lost events, so the copy threads (only they: not the traced command) run
            # at a higher priority. Linux applies setpriority() to the one thread named.
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), READER_NICE)
        except OSError:
            pass
        try:
            if self.use_splice:
                self._splice()
            self._copy()
        except BaseException as e:  # reported by the main thread
            self.error = e
        finally:
            os.close(self.fd)
            self.out.close()

    def _splice(self) -> None:
        """Move whole pages to the spool inside the kernel while tracing runs.

        ``splice`` from ``trace_pipe_raw`` hands over full sub-buffers only (up to the pipe's
        capacity per call) without copying them through user space: the cheapest way to keep
        up. The partly filled pages left at the end are read by :meth:`_copy`. Falls back to
        reading when the kernel or the spool's file system refuses splice.
        """
        flags = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
        r, w = os.pipe()
        try:
            try:
                fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
            except OSError:
                pass  # pipe-max-size lower than ours: the default pipe still works
            cap = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
            out = self.out.fileno()
            to_file = True
            while not self.drain.is_set():
                try:
                    n = os.splice(self.fd, w, cap, flags=flags)
                except BlockingIOError:
                    n = 0
                except OSError as e:
                    if e.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        return  # no splice here: _copy reads instead
                    raise
                if n == 0:
                    self.drain.wait(self.interval)
                    continue
                while n:
                    if to_file:
                        try:
                            moved = os.splice(r, out, n, flags=getattr(os, "SPLICE_F_MOVE", 1))
                        except OSError as e:
                            if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                                raise
                            to_file = False  # the spool's file system takes no splice
                            continue
                    else:
                        moved = os.write(out, os.read(r, n))
                    if moved <= 0:
                        raise OSError(f"{self.spool_path}: writing the spool stalled")
                    n -= moved
                    self.capture.bytes += moved
        finally:
            os.close(r)
            os.close(w)

    def _copy(self) -> None:
        """Read pages (one sub-buffer per read) until the buffer is empty and tracing is off."""
        cap, page_size, fd = self.capture, self.page_size, self.fd
        pending = bytearray()
        unpack_commit = struct.Struct("<q").unpack_from
        while True:
            try:
                page = os.read(fd, page_size)
            except BlockingIOError:
                page = b""
            if page:
                if len(page) != page_size:
                    raise OSError(f"{self.pipe_path}: short read of {len(page)} bytes")
                if unpack_commit(page, 8)[0] & _COMMIT_SIZE == 0:
                    continue  # an empty page holds nothing worth keeping
                pending += page
                if len(pending) >= SPOOL_BATCH:
                    self.out.write(pending)
                    cap.bytes += len(pending)
                    pending.clear()
                continue
            # Empty. Once tracing is off and the buffer is empty, everything has been read.
            if self.drain.is_set():
                break
            self.drain.wait(self.interval)
        if pending:
            self.out.write(pending)
            cap.bytes += len(pending)


def scan_pages(path: str, page_size: int) -> tuple[int, int, int]:
    """(pages, pages flagged MISSED_EVENTS, events lost as stored in them) of a page file.

    Looks only at each page's commit word (64-bit little-endian kernels, like the pages the
    recorder reads on this machine); the events themselves are decoded by the readers.
    """
    size = os.path.getsize(path)
    pages = size // page_size
    if pages == 0:
        return 0, 0, 0
    data = np.memmap(path, dtype=np.uint8, mode="r", shape=(pages, page_size))
    commit = data[:, 8:16].copy().view("<u8").ravel()
    missed = (commit & _MISSED_EVENTS) != 0
    stored = missed & ((commit & _MISSED_STORED) != 0)
    lost = 0
    for i in np.flatnonzero(stored):
        at = 16 + int(commit[i] & _COMMIT_SIZE)
        if at + 8 <= page_size:
            lost += int(data[i, at : at + 8].copy().view("<u8")[0])
    del data
    return pages, int(missed.sum()), lost


class _Stopper:
    """Turns SIGINT/SIGTERM/SIGHUP into a stop request while recording (main thread only)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self.child: subprocess.Popen[bytes] | None = None
        self._saved: dict[int, Any] = {}

    def _handler(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()

    @contextmanager
    def installed(self) -> Iterator[_Stopper]:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._saved[sig] = signal.signal(sig, self._handler)
        try:
            yield self
        finally:
            for signum, handler in self._saved.items():
                signal.signal(signum, handler)
            self._saved.clear()


def _stop_child(child: subprocess.Popen[bytes], say: Say) -> None:
    """Ask the command to stop (SIGINT, then SIGTERM, then SIGKILL) and reap it."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if child.poll() is not None:
            return
        try:
            child.send_signal(sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=CHILD_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            say(f"command did not exit after {signal.Signals(sig).name}")


def _resolve_events(tfs: TraceFs, names: Sequence[str]) -> tuple[str, ...]:
    available = set(tfs.events_of("kmem"))
    out: list[str] = []
    for raw in names:
        name = raw.strip()
        if name.startswith("kmem:"):
            name = name[len("kmem:") :]
        if not name:
            continue
        if name not in available:
            known = ", ".join(e for e in DEFAULT_EVENTS if e in available)
            raise UsageError(
                f"--events: this kernel has no kmem:{name} event (kmem events: {known})"
            )
        if name not in out:
            out.append(name)
    if not out:
        raise UsageError("--events: no event given")
    return tuple(out)


def _spool_paths(output: str, cpus: int) -> list[str]:
    d, base = os.path.split(os.path.abspath(output))
    return [os.path.join(d, f".{base}.cpu{c}.{os.getpid()}.spool") for c in range(cpus)]


def _read_optional(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def record(options: RecordOptions, say: Say = _quiet) -> RecordResult:
    """Record the kmem events of a live kernel into a trace.dat v6 file; see the module doc."""
    if options.command and shutil.which(options.command[0]) is None:
        raise UsageError(f"command not found: {options.command[0]}")
    if options.buffer_kb is not None and options.buffer_kb < 8:
        raise UsageError("--buffer-kb must be at least 8 (KiB per CPU)")
    if options.duration_s is not None and options.duration_s <= 0:
        raise UsageError("--duration must be positive")
    out_dir = os.path.dirname(os.path.abspath(options.output))
    if not os.path.isdir(out_dir):
        raise UsageError(f"-o {options.output}: directory {out_dir} does not exist")
    if os.path.isdir(options.output):
        raise UsageError(f"-o {options.output}: is a directory")
    if not os.access(out_dir, os.W_OK):
        raise UsageError(f"-o {options.output}: directory {out_dir} is not writable")

    tfs = TraceFs.open(say)
    try:
        return _record_in(tfs, options, say)
    finally:
        tfs.release(say)


def _record_in(tfs: TraceFs, options: RecordOptions, say: Say) -> RecordResult:
    events = _resolve_events(tfs, options.events)
    filters: dict[str, str] = {}
    unfiltered: tuple[str, ...] = ()
    if options.caches:
        expression = cache_filter(options.caches)
        filters = {e: expression for e in events if e in CACHE_NAMED_EVENTS}
        unfiltered = tuple(e for e in events if e not in CACHE_NAMED_EVENTS)
    remove_stale_instances(tfs, say)
    busy = busy_events(tfs, events)
    if busy:
        raise TracingBusy(
            "another tracing session is using the kmem events: "
            + "; ".join(busy)
            + " (stop that session, e.g. trace-cmd reset, before recording)"
        )
    cpus = tfs.cpus()
    if cpus == 0:
        raise TracingUnavailable(f"{tfs.path('per_cpu')} lists no CPU buffers")

    inst = Instance.create(tfs)
    spools = _spool_paths(options.output, cpus)
    readers: list[_CpuReader] = []
    drain = threading.Event()
    stopper = _Stopper()
    child: subprocess.Popen[bytes] | None = None
    try:
        with stopper.installed():
            inst.set_tracing_on(False)
            if options.buffer_kb is not None:
                inst.set_buffer_kb(options.buffer_kb)
            buffer_kb = inst.buffer_kb
            page_size = inst.page_size
            clock = inst.clock
            for event, expression in filters.items():
                inst.set_filter(event, expression)
            for event in events:
                inst.enable(event)
            for cpu in range(cpus):
                try:
                    r = _CpuReader(
                        cpu,
                        inst.raw_pipe(cpu),
                        spools[cpu],
                        page_size,
                        drain,
                        options.poll_interval_s,
                        options.use_splice,
                    )
                except FileNotFoundError:
                    continue  # a CPU id hole: no buffer, no data
                except OSError as e:
                    raise TracingUnavailable(
                        f"cannot open {inst.raw_pipe(cpu)}: {e.strerror}"
                    ) from None
                readers.append(r)
            for r in readers:
                r.start()
            # Like trace-cmd, leave out the recorder's own events: each spliced page costs the
            # kernel a kmalloc/kfree pair, which would otherwise be traced and read again.
            own_tids = [threading.get_native_id(), *(r.native_id or 0 for r in readers)]
            excluded = inst.exclude_pids(own_tids)
            t0 = time.monotonic()
            inst.set_tracing_on(True)
            if options.command:
                try:
                    child = subprocess.Popen(list(options.command))
                except OSError as e:
                    raise UsageError(f"cannot run {options.command[0]}: {e.strerror}") from None
                stopper.child = child
            deadline = t0 + options.duration_s if options.duration_s else None
            status = _wait(stopper, child, deadline, readers)
            inst.set_tracing_on(False)
            duration = time.monotonic() - t0
            if child is not None and status is None:
                if stopper.signum == signal.SIGINT:
                    # From a terminal the command got the SIGINT too; if the signal was sent to
                    # us alone, pass it on. Either way give it time to exit, then insist.
                    time.sleep(0.05)
                _stop_child(child, say)
                status = child.returncode
            drain.set()
            for r in readers:
                r.join()
            for r in readers:
                if r.error is not None:
                    raise TracingUnavailable(
                        f"reading CPU {r.capture.cpu}'s ring buffer failed: {r.error}"
                    )
            captures = {r.capture.cpu: r.capture for r in readers}
            for cpu, cap in captures.items():
                cap.pages, cap.missed_pages, cap.missed_events = scan_pages(spools[cpu], page_size)
            for cpu, cap in captures.items():
                cap.stats_text = inst.cpu_stats(cpu)
                cap.stats = parse_stats(cap.stats_text)
            cmdlines = _read_optional(tfs.path("saved_cmdlines"))
            trace_clock_text = inst.read("trace_clock")
            failures = inst.close()
            if failures:
                say("could not restore tracing state: " + "; ".join(failures))
            result_caps = tuple(captures.get(c, CpuCapture(c)) for c in range(cpus))
            uname = platform.uname()
            signal_name = signal.Signals(stopper.signum).name if stopper.signum else None
            facts = {
                "events": list(events),
                "filters": filters,
                "unfiltered": list(unfiltered),
                "caches": list(options.caches),
                "buffer_kb": buffer_kb,
                "clock": clock,
                "cpus": cpus,
                "duration_s": round(duration, 6),
                "command": list(options.command),
                "command_status": status,
                "interrupted_by": signal_name,
                "excluded_tids": excluded,
                "lost": {
                    str(c.cpu): {
                        "overrun": c.overrun,
                        "dropped": c.dropped,
                        "commit_overrun": c.commit_overrun,
                        "missed_pages": c.missed_pages,
                    }
                    for c in result_caps
                },
            }
            meta = TraceDatMetadata(
                page_size=page_size,
                cpus=cpus,
                header_page=tfs.read_bytes("events", "header_page"),
                header_event=tfs.read_bytes("events", "header_event"),
                clock=clock,
                trace_clock_text=trace_clock_text,
                ftrace_formats=tfs.formats_of("ftrace"),
                event_formats={"kmem": tfs.formats_of("kmem")},
                kallsyms=_read_optional("/proc/kallsyms"),
                printk_formats=_read_optional(tfs.path("printk_formats")),
                cmdlines=cmdlines,
                uname=f"{uname.system} {uname.node} {uname.release} {uname.machine}",
                cpustats=[f"CPU: {c.cpu}\n{c.stats_text}".encode() for c in result_caps],
                version=f"sheaftune {__version__}",
                sheaftune=facts,
            )
            size = write_tracedat_v6(
                options.output,
                meta,
                [spools[c] if c in captures else None for c in range(cpus)],
            )
    finally:
        drain.set()
        if child is not None and child.poll() is None:
            _stop_child(child, say)
        for r in readers:
            if r.is_alive():
                r.join(timeout=5)
        failures = inst.close()  # idempotent: also after a successful close above
        if failures:
            say("could not restore tracing state: " + "; ".join(failures))
        for p in spools:
            if os.path.exists(p):
                os.unlink(p)
    return RecordResult(
        path=options.output,
        file_size=size,
        events=events,
        filters=filters,
        unfiltered=unfiltered,
        cpus=result_caps,
        kernel_release=uname.release,
        clock=clock,
        buffer_kb=buffer_kb,
        duration_s=duration,
        command=options.command,
        command_status=status,
        interrupted=stopper.signum is not None,
        signal_name=signal_name,
    )


def _wait(
    stopper: _Stopper,
    child: subprocess.Popen[bytes] | None,
    deadline: float | None,
    readers: Sequence[_CpuReader],
) -> int | None:
    """Block until the command exits, the duration ends, a signal arrives or a reader fails."""
    while True:
        if child is not None and child.poll() is not None:
            return child.returncode
        if stopper.event.is_set() or any(r.error is not None for r in readers):
            return None
        timeout = 0.05
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            timeout = min(timeout, left)
        stopper.event.wait(timeout)
