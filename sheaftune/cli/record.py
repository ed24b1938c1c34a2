"""``sheaftune record``: record the kmem tracepoints of this machine into a trace.dat file."""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING

import click

from sheaftune.errors import EXIT_INTERRUPTED

if TYPE_CHECKING:
    from sheaftune.capture.record import RecordResult


@click.command(
    "record",
    # Everything after the first argument belongs to COMMAND (`record ./prog --its-flag`).
    context_settings={"allow_interspersed_args": False},
    epilog="""\b
Exit status: 0 when the recording was written (also when the command failed: its status is
reported); 130 when Ctrl-C (or SIGTERM/SIGHUP) cut a command or a --duration short (the file
is still written); 3 when tracing is unavailable (not root, no tracefs) or busy.

\b
Examples:
  sudo sheaftune record -o vma.dat --cache maple_node --cache vm_area_struct -- make -j2
  sudo sheaftune record --duration 10 -o idle.dat
  sudo sheaftune record --events kmem_cache_alloc,kmem_cache_free --buffer-kb 8192 -- ./bench""",
)
@click.option(
    "-o",
    "--output",
    default="trace.dat",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The trace.dat (version 6) file to write (atomically).",
)
@click.option(
    "--cache",
    "caches",
    multiple=True,
    metavar="NAME",
    help="Record kmem_cache_alloc/kmem_cache_free of this cache only (repeatable; * and ? "
    "globs). kmalloc and kfree carry no cache name and are recorded whole.",
)
@click.option(
    "--events",
    default="kmem_cache_alloc,kmem_cache_free,kmalloc,kfree",
    show_default=True,
    metavar="LIST",
    help="Comma-separated kmem events to record.",
)
@click.option(
    "--buffer-kb",
    type=click.IntRange(min=8),
    default=None,
    metavar="N",
    help="Ring-buffer size per CPU in KiB (default: the kernel's, about 1.4 MB).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="S",
    help="Stop after S seconds (with a command: whichever ends first).",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def command(
    output: str,
    caches: tuple[str, ...],
    events: str,
    buffer_kb: int | None,
    duration: float | None,
    command: tuple[str, ...],
) -> None:
    """Record kmem allocations and frees of this machine while COMMAND runs.

    Needs root. Traces kmem_cache_alloc, kmem_cache_free, kmalloc and kfree in a private
    tracefs instance (mounting tracefs at /sys/kernel/tracing if needed), copies the per-CPU
    ring buffers while they fill, and writes a trace.dat version 6 file that `sheaftune
    analyze` and `trace-cmd report` read. Without COMMAND (give it after `--`) it records
    until --duration ends or Ctrl-C. Tracing is always left as it was found; lost events are
    counted per CPU and reported.
    """
    from sheaftune.capture.record import RecordOptions, record
    from sheaftune.cli.common import is_special_output
    from sheaftune.cli.console import stderr, warn
    from sheaftune.errors import UsageError

    if is_special_output(output):
        # the writer renames a temporary file over the path: never over a device or FIFO
        raise UsageError(f"-o {output}: a trace.dat must be written to a regular file")

    def say(message: str) -> None:
        stderr.print(f"sheaftune: {message}", soft_wrap=True)

    opts = RecordOptions(
        output=output,
        events=tuple(e for e in events.split(",") if e.strip()),
        caches=caches,
        buffer_kb=buffer_kb,
        duration_s=duration,
        command=command,
    )
    whole = [e for e in opts.events if e.removeprefix("kmem:") in ("kmalloc", "kfree")]
    if caches and whole:
        say(
            f"{' and '.join(whole)} carry no cache name: recorded whole, unfiltered (leave them "
            "out with --events kmem_cache_alloc,kmem_cache_free)"
        )
    if not command and duration is None:
        say("recording; press Ctrl-C to stop")
    result = record(opts, say=say)
    for line in summary_lines(result):
        stderr.print(line, soft_wrap=True)
    status = result.command_status
    if status is not None and status != 0 and not result.interrupted:
        if status < 0:
            warn(f"{result.command[0]} was killed by {signal.Signals(-status).name}")
        else:
            warn(f"{result.command[0]} exited with status {status}")
    if result.interrupted and (command or duration is not None):
        sys.exit(EXIT_INTERRUPTED)


def summary_lines(r: RecordResult) -> list[str]:
    """The end-of-recording summary: where, how much, and what was lost per CPU."""
    lines = []
    if r.interrupted:
        lines.append(f"sheaftune: stopped by {r.signal_name}")
    lines.append(
        f"sheaftune: wrote {r.path} ({r.file_size / 1e6:.1f} MB): {r.read_events} events in "
        f"{r.duration_s:.2f} s, {len(r.cpus)} CPUs, kernel {r.kernel_release}, "
        f"clock {r.clock}, buffer {r.buffer_kb} KiB per CPU"
    )
    if r.filters:
        expr = next(iter(r.filters.values()))
        lines.append(f"sheaftune: filter on {', '.join(r.filters)}: {expr}")
    for c in r.cpus:
        lines.append(
            f"sheaftune:   cpu{c.cpu}: {c.read_events} events read, overrun {c.overrun}, "
            f"dropped {c.dropped}, commit overrun {c.commit_overrun}"
        )
    if r.lost:
        bigger = max(r.buffer_kb * 4, 8192)
        lines.append(
            f"sheaftune: warning: the kernel lost {r.lost} events (ring buffer full before it "
            f"was read); record again with a larger buffer (--buffer-kb {bigger}), fewer "
            "--events, or --cache filters"
        )
    return lines
