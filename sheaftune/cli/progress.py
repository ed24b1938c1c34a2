"""A rich progress bar on standard error while a large input is read."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from sheaftune.readers import ReadOptions

#: Inputs smaller than this are read without a progress bar.
PROGRESS_MIN_BYTES = 32 << 20


def _may_be_terminal() -> bool:
    """False when rich's console on standard error surely is not a terminal: rich's own test
    (``Console.is_terminal``) without importing rich, erring towards True; True means ask
    rich."""
    if os.environ.get("TTY_COMPATIBLE") == "1" or os.environ.get("FORCE_COLOR") is not None:
        return True
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError, OSError):
        return True


@contextmanager
def read_options(
    path: str, salvage: bool = False, buffer: str | None = None
) -> Iterator[ReadOptions]:
    """ReadOptions whose progress callback drives a bar for large files on a terminal."""
    try:
        size = os.path.getsize(path) if path != "-" else 0
    except OSError:
        size = 0
    if size < PROGRESS_MIN_BYTES or not _may_be_terminal():
        # (decided before rich is imported: about 20 ms that a run into a pipe or a file
        # should not pay)
        yield ReadOptions(salvage=salvage, buffer=buffer)
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from sheaftune.cli.console import stderr

    if not stderr.is_terminal:
        yield ReadOptions(salvage=salvage, buffer=buffer)
        return
    with Progress(
        "reading",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    ) as bar:
        task = bar.add_task("read", total=size)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total or size)

        yield ReadOptions(salvage=salvage, buffer=buffer, progress=update)
