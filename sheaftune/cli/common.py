"""Options and helpers shared by several commands (inputs, output format, output file)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import click

from sheaftune.readers import READER_NAMES

FORMATS = ("table", "json", "yaml", "csv")


def input_format_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--input-format",
        type=click.Choice(READER_NAMES),
        default=None,
        metavar="NAME",
        help="Force the input format instead of detecting it from the content: "
        + ", ".join(READER_NAMES)
        + ".",
    )(f)


def output_options(formats: tuple[str, ...] = FORMATS) -> Callable[..., Any]:
    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False, writable=True),
            default=None,
            help="Write the report to FILE (atomically) instead of standard output.",
        )(f)
        f = click.option(
            "--format",
            "fmt",
            type=click.Choice(formats),
            default="table",
            show_default=True,
            help="Output format: table for people; json/yaml (versioned schema) for scripts.",
        )(f)
        return f

    return deco


@contextmanager
def output_stream(path: str | None) -> Iterator[IO[str]]:
    """Standard output, or FILE written atomically: a temporary file renamed on success only."""
    if path is None or path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".sheaftune-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
