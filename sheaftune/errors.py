"""The one exception hierarchy of sheaftune; each error carries the exit code the CLI returns.

Library code raises these and never prints or exits; ``sheaftune.cli`` catches them once, prints
one line and exits with ``exit_code``. Exit codes (documented in ``--help``, README, man page):

  0  success
  1  unexpected internal error (one line; the traceback only with ``--debug``)
  2  usage error (bad option, bad combination)
  3  input unreadable, invalid or unsupported
  4  nothing to analyse (e.g. a ``--cache`` filter that matched no event)
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_NOTHING = 4
EXIT_INTERRUPTED = 130


class SheaftuneError(Exception):
    """Base of every error sheaftune reports to the user; the message is one line."""

    exit_code = EXIT_INTERNAL


class UsageError(SheaftuneError):
    """The command line asks for something contradictory or impossible."""

    exit_code = EXIT_USAGE


class InputError(SheaftuneError):
    """An input file is unreadable, invalid or in an unsupported format.

    ``path`` names the file; ``where`` locates the problem (line, section, CPU, byte offset).
    """

    exit_code = EXIT_INPUT

    def __init__(self, message: str, path: str | None = None, where: str | None = None):
        self.path = path
        self.where = where
        self.detail = message
        parts = [p for p in (path, where) if p]
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class NothingToAnalyse(SheaftuneError):
    """The input was valid but nothing is left to analyse (empty trace, filter matched nothing)."""

    exit_code = EXIT_NOTHING
