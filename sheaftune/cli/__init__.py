"""The command line: the click group, its error boundary, and the list of subcommands.

Commands are adapters (parse options, one library call, render the record). Each lives in its
own module of this package and is registered in ``COMMANDS`` below; nothing outside ``cli``
imports click. Every :class:`~sheaftune.errors.SheaftuneError` is caught here, once, and turned
into one line on standard error and the error's exit code.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import os
import sys

import click

from sheaftune import __version__
from sheaftune.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, SheaftuneError

#: module name -> command name, in the order `sheaftune --help` lists them.
COMMANDS: dict[str, str] = {
    "analyze": "analyze",
    "convert": "convert",
    "simulate": "simulate",
    "generate": "generate",
    "recommend": "recommend",
    "compare": "compare",
    "fleet": "fleet",
    "costs": "costs",
    "record": "record",
    "capture_script": "capture-script",
}

EXIT_STATUS_TEXT = """\b
Exit status:
  0    success
  1    unexpected internal error (run with --debug for the traceback)
  2    usage error
  3    input unreadable, invalid or unsupported
  4    nothing to analyse (e.g. a --cache filter matched no event)
  130  interrupted (Ctrl-C)"""


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that command runs or help lists it."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [c for m, c in COMMANDS.items() if _available(m)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        for module, cmd in COMMANDS.items():
            if cmd == name and _available(module):
                mod = importlib.import_module(f"sheaftune.cli.{module}")
                command: click.Command = mod.command
                return command
        return None


def _available(module: str) -> bool:
    return importlib.util.find_spec(f"sheaftune.cli.{module}") is not None


@click.group(cls=LazyGroup, epilog=EXIT_STATUS_TEXT, context_settings={"max_content_width": 100})
@click.version_option(__version__, prog_name="sheaftune")
@click.option("--debug", is_flag=True, help="Show the traceback of unexpected errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Replay kmem allocation traces through a model of SLUB's per-CPU sheaves.

    sheaftune reads kmem tracepoint traces (trace.dat, ftrace text, trace-cmd report,
    perf script, bpftrace kmem-tsv), reports what they contain per cache, CPU and call
    site, and answers what would happen at another sheaf_capacity.
    """
    ctx.obj = {"debug": debug}


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the group and maps errors to exit codes."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    # A closed output pipe (`sheaftune analyze ... | head`) is not an error: SIGPIPE stays
    # ignored (Python's default) so the write raises BrokenPipeError, caught below for a quiet
    # exit 0; dying of SIGPIPE would give the shell status 141, an error under `pipefail`.
    try:
        _invoke(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # a pipe closed under buffered output fails here, not at exit
    except click.exceptions.Exit as e:
        if e.exit_code:  # (0 is --help or --version: a successful run, below)
            sys.exit(e.exit_code)
    except click.Abort:
        _fail("interrupted", EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_USAGE if e.exit_code == 2 else e.exit_code)
    except SheaftuneError as e:
        if debug:
            _print_traceback()
        _fail(str(e), e.exit_code)
    except BrokenPipeError:
        _quiet_pipe()
    except SystemExit as e:
        # rich answers a closed pipe with SystemExit(1) raised while handling BrokenPipeError
        if isinstance(e.__context__, BrokenPipeError):
            _quiet_pipe()
        raise
    except SystemError as e:
        # Ctrl-C inside a numba JIT call: the dispatcher returns with the KeyboardInterrupt
        # set, and CPython raises SystemError ('returned a result with an exception set')
        # from it; that is an interruption, not an internal error
        if not _caused_by_interrupt(e):
            _internal(e, debug)
        _fail("interrupted", EXIT_INTERRUPTED)
    except OSError as e:
        if e.errno not in _OUTPUT_ERRNOS:
            _internal(e, debug)
        # standard output on a full or failing device; files given with -o say their name
        _fail(f"cannot write standard output: {e.strerror}", EXIT_INTERNAL)
    except Exception as e:  # the boundary: one line, traceback only with --debug
        _internal(e, debug)
    if argv is None:
        _exit_program()
    sys.exit(0)


def _caused_by_interrupt(e: BaseException) -> bool:
    """Whether ``e`` was raised from (or while handling) a KeyboardInterrupt."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def _exit_program() -> None:
    """End a successful run of the ``sheaftune`` program without the interpreter's teardown.

    After the report is written, Python would still free every object and module one by one
    (about 30 ms after an analysis, on one core, for nothing the user sees). This does what the
    interpreter's exit does that can be seen, in its order: wait for the non-daemon threads
    (which shuts idle executors down), run the ``atexit`` functions, flush standard output and
    error; then ``os._exit(0)``. Only when this process is the program (``python -m sheaftune``
    or the console script, not an embedding program that calls ``main`` and catches its
    ``SystemExit``), and not under ``python -i``, coverage, a profiler or a debugger (``python
    -m cProfile -m sheaftune`` prints its statistics after the run); else (or on any doubt) it
    returns and ``main`` exits normally.
    """
    if (
        sys.flags.inspect
        or "coverage" in sys.modules
        or sys.getprofile() is not None
        or sys.gettrace() is not None
        or not _is_program()
    ):
        return
    import atexit
    import threading

    shutdown = getattr(threading, "_shutdown", None)
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if shutdown is None or run_exitfuncs is None:  # not CPython's: the ordinary exit
        return
    try:
        shutdown()
        run_exitfuncs()
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return  # (e.g. a pipe closed under --help's output: the ordinary exit says so)
    os._exit(0)


def _is_program() -> bool:
    """Whether this process runs ``sheaftune.__main__`` as its program: ``python -m sheaftune``
    (the ``__main__`` module is that file) or the console script (its ``__main__`` calls
    ``sheaftune.__main__.run``)."""
    entry = sys.modules.get("__main__")
    spec = getattr(entry, "__spec__", None)
    if spec is not None and spec.name == "sheaftune.__main__":
        return True
    ours = sys.modules.get("sheaftune.__main__")
    run = getattr(ours, "run", None)
    return run is not None and getattr(entry, "run", None) is run


def _invoke(args: list[str]) -> None:
    """``cli.main`` without its own error handling, which this module's ``main`` replaces.

    click's ``main`` turns a closed pipe (EPIPE) into exit 1 and prints an empty line to
    standard error before re-raising Ctrl-C as ``Abort``; both would break the contract above
    (a closed pipe exits 0, an interruption is one line).
    """
    cli._main_shell_completion({}, "sheaftune", "_SHEAFTUNE_COMPLETE")
    with cli.make_context("sheaftune", args) as ctx:
        cli.invoke(ctx)


#: write errors that are the output's fault (full disk, quota, I/O error, file too big)
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG})


def _internal(e: BaseException, debug: bool) -> None:
    if debug:
        _print_traceback()
    msg = str(e).splitlines()[0] if str(e) else ""
    _fail(
        f"internal error: {type(e).__name__}: {msg} (run with --debug for details)",
        EXIT_INTERNAL,
    )


def _print_traceback() -> None:
    import traceback  # only on errors with --debug

    traceback.print_exc()


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"sheaftune: error: {message}\n")
    sys.exit(code)


def _quiet_pipe() -> None:
    # Point stdout at /dev/null so the interpreter's final flush of what is still buffered
    # does not raise (and print "Exception ignored") on the closed pipe.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)
