"""A rich progress bar on standard error while a large input is read."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sheaftune.readers import ReadOptions

#: Inputs smaller than this are read without a progress bar.
PROGRESS_MIN_BYTES = 32 << 20


@contextmanager
def read_options(
    path: str, salvage: bool = False, buffer: str | None = None
) -> Iterator[ReadOptions]:
    """ReadOptions whose progress callback drives a bar for large files on a terminal."""
    try:
        size = os.path.getsize(path) if path != "-" else 0
    except OSError:
        size = 0
    if size < PROGRESS_MIN_BYTES:  # decided before rich is imported (about 30 ms)
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
