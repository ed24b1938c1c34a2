"""Options and helpers shared by several commands (inputs, output format, output file)."""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import click

from sheaftune.errors import SheaftuneError, UsageError
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


def is_special_output(path: str) -> bool:
    """True when ``path`` exists and is not a regular file (``/dev/null``, a FIFO, a tty).

    Such a path is written in place: renaming a temporary file over it would replace the device
    (as root, ``-o /dev/null`` would turn /dev/null into a regular file), and a partial write
    to a device or pipe cannot pass for a complete report file anyway.
    """
    try:
        st = os.stat(path)
    except OSError:
        return False
    return not stat.S_ISREG(st.st_mode)


@contextmanager
def output_stream(path: str | None) -> Iterator[IO[str]]:
    """Standard output, or FILE written atomically: a temporary file renamed on success only.

    The temporary file is in FILE's folder (so the rename is atomic), flushed and fsynced before
    the rename (so a full disk fails here, not later in the page cache), and given the mode a new
    file would have. On any error or interruption it is removed and FILE is left as it was.
    """
    if path is None or path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    if is_special_output(path):
        try:
            with open(path, "w", encoding="utf-8") as fh:
                yield fh
        except OSError as e:
            if e.filename is not None or e.errno == errno.EPIPE:
                raise
            raise SheaftuneError(f"cannot write {path}: {e.strerror or e}") from None
        return
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".sheaftune-", dir=directory)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:
            raise SheaftuneError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def save_events(table: Any, path: str) -> None:
    """Write an EventTable as a native .npz, atomically; one-line errors for unwritable paths."""
    from sheaftune.events import save_native

    if is_special_output(path):
        # save_native renames a temporary file over the path: never over a device or FIFO
        raise UsageError(f"-o {path}: an .npz must be written to a regular file")
    try:
        save_native(table, path)
    except OSError as e:
        raise SheaftuneError(f"cannot write {path}: {e.strerror or e}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def stack(*decorators: Decorator) -> Decorator:
    """One decorator of several click options, listed in --help in the order given."""

    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        for d in reversed(decorators):
            f = d(f)
        return f

    return deco


# One factory per option that several commands take with the same type and default; the help
# text is the command's own where the option means something particular to it.


def kernel_option(help: str = "Whose sheaf semantics the replay applies.") -> Decorator:
    return click.option(
        "--kernel",
        type=click.Choice(("7.3", "6.18")),
        default="7.3",
        show_default=True,
        help=help,
    )


def cpus_option(help: str) -> Decorator:
    return click.option("--cpus", type=click.IntRange(1, 8192), default=None, help=help)


def upper_bound_option(help: str, metavar: str | None = None) -> Decorator:
    return click.option(
        "--upper-bound",
        type=click.IntRange(1, 65535),
        default=None,
        metavar=metavar,
        help=help,
    )


def rcu_gp_ms_option(help: str = "An RCU grace period ends every this many ms.") -> Decorator:
    return click.option(
        "--rcu-gp-ms",
        type=click.FloatRange(0.001, 1e6),
        default=10.0,
        show_default=True,
        help=help,
    )


def seed_option(help: str) -> Decorator:
    return click.option(
        "--seed",
        type=click.IntRange(0, 2**63 - 1),
        default=0,
        show_default=True,
        help=help,
    )


def workload_option(help: str) -> Decorator:
    return click.option("--workload", type=click.Path(dir_okay=False), default=None, help=help)


def events_option(help: str) -> Decorator:
    return click.option("--events", type=click.IntRange(1, 2_000_000_000), default=None, help=help)


def costs_yaml_option(help: str) -> Decorator:
    """``--costs FILE.yaml`` of `compare` and `costs`."""
    return click.option(
        "--costs", "costs_file", type=str, default=None, metavar="FILE.yaml", help=help
    )


def model_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options of every command that replays events through the sheaf model."""
    return stack(
        kernel_option(),
        click.option(
            "--capacity",
            multiple=True,
            metavar="N[,N...]|buckets|CACHE=N",
            help="Replay at these sheaf capacities instead of the kernel's own; "
            "'buckets' = 4,12,28,60,124,252,508 plus the current and autotuned "
            "values; CACHE=N for one cache. Repeatable.",
        ),
        click.option(
            "--engine",
            type=click.Choice(("fast", "reference")),
            default="fast",
            show_default=True,
            help="Compiled engine, or the readable reference model (slow).",
        ),
        click.option(
            "--unseen-free",
            type=click.Choice(("rcu", "none")),
            default="rcu",
            show_default=True,
            help="Objects reallocated without a visible free: freed by kfree_rcu on "
            "the allocating CPU before the reuse (rcu), or leaked (none).",
        ),
        click.option(
            "--sheaf-pops",
            type=click.Choice(("prefill", "plain")),
            default="prefill",
            show_default=True,
            help="Replay pops at the maple tree's store helpers as prefilled-sheaf "
            "operations, or as ordinary allocations.",
        ),
        rcu_gp_ms_option(),
        upper_bound_option(
            "Prefill size of every inferred prefill operation (default: the "
            "maple tree's request rule for the store type)."
        ),
        click.option(
            "--no-model",
            is_flag=True,
            help="Only the trace statistics; no replay through the sheaf model.",
        ),
        click.option(
            "--recommend/--no-recommend",
            default=True,
            show_default=True,
            help="Recommend a sheaf_capacity for the five largest caches (with at least 1000 "
            "allocations), as `sheaftune recommend` would.",
        ),
    )(f)


def replay_policy(rcu_gp_ms: float, **kwargs: Any) -> Any:
    """The library's ReplayPolicy, with the grace period given in ms (--rcu-gp-ms)."""
    from sheaftune.analysis.tracereplay import ReplayPolicy

    return ReplayPolicy(rcu_gp_ns=int(rcu_gp_ms * 1e6), **kwargs)


def build_model_options(
    kernel: str,
    capacity: tuple[str, ...],
    engine: str,
    unseen_free: str,
    sheaf_pops: str,
    rcu_gp_ms: float,
    upper_bound: int | None,
    recommend: bool = True,
) -> Any:
    """The library's ModelOptions from the model_options values."""
    from sheaftune.analysis.pipeline import ModelOptions
    from sheaftune.analysis.sweep import parse_capacities

    policy = replay_policy(
        rcu_gp_ms, unseen_free=unseen_free, sheaf_pops=sheaf_pops, upper_bound=upper_bound
    )
    return ModelOptions(
        kernel=kernel,
        capacities=parse_capacities(capacity),
        engine=engine,
        policy=policy,
        recommend=recommend,
    )


def recommend_options(
    *, cpus_help: str, objective_help: str, tolerance_help: str, memory_budget_help: str
) -> Decorator:
    """The target machine and the objective of `recommend` and `fleet`: --cpus, --nodes,
    --kernel, --objective, --tolerance, --memory-budget."""
    return stack(
        cpus_option(cpus_help),
        click.option(
            "--nodes", type=click.IntRange(1, 1024), default=None, help="NUMA nodes [default: 1]."
        ),
        kernel_option("Whose sheaf semantics the replays apply."),
        click.option(
            "--objective",
            type=click.Choice(("balanced", "time", "memory", "scaling")),
            default="scaling",
            show_default=True,
            help=objective_help,
        ),
        click.option(
            "--tolerance",
            type=click.FloatRange(0.0, 10.0),
            default=0.05,
            show_default=True,
            help=tolerance_help,
        ),
        click.option("--memory-budget", default=None, metavar="BYTES", help=memory_budget_help),
    )


def recommend_engine_options(*, engine_help: str, costs_help: str) -> Decorator:
    """--engine and --costs of `recommend` and `fleet`."""
    return stack(
        click.option(
            "--engine",
            type=click.Choice(("auto", "fast", "reference")),
            default="auto",
            show_default=True,
            help=engine_help,
        ),
        click.option(
            "--costs",
            "costs_file",
            type=click.Path(dir_okay=False),
            default=None,
            help=costs_help,
        ),
    )


_SUFFIX = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_bytes(value: str) -> int:
    """``65536``, ``64K``, ``64KiB``, ``1.5M``, ``2G`` -> bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:i?[bB])?\s*", value)
    if not m:
        raise click.BadParameter(f"{value!r} is not a size (e.g. 65536, 512K, 4M, 1G)")
    return int(float(m.group(1)) * _SUFFIX[m.group(2).lower()])


def parse_memory_budget(value: str | None) -> int | None:
    """--memory-budget in bytes (None: no limit); a usage error for what is not a size."""
    if value is None:
        return None
    try:
        return parse_bytes(value)
    except click.BadParameter as e:
        raise UsageError(f"--memory-budget: {e.message}") from None


def load_costs(path: str | None) -> Any:
    """The cost model: the built-in one, with the overrides of the YAML file at ``path``."""
    from sheaftune.costs import CostModel

    return CostModel.from_yaml(path) if path else CostModel()


def build_recommend_options(
    *,
    kernel: str,
    cpus: int | None,
    nodes: int | None,
    objective: str,
    tolerance: float,
    memory_budget: int | None,
    engine: str,
    costs_file: str | None,
    capacities: tuple[int, ...] = (),
    upper_bound: int | None = None,
) -> Any:
    """The library's RecommendOptions from the recommend_options values (the budget parsed)."""
    from sheaftune.analysis.recommend import RecommendOptions

    return RecommendOptions(
        kernel=kernel,
        cpus=cpus,
        nodes=nodes,
        objective=objective,
        memory_budget=memory_budget,
        capacities=capacities,
        upper_bound=upper_bound,
        engine=engine,
        costs=load_costs(costs_file),
        tolerance=tolerance,
    )


def recommend_fleet(
    paths: list[str],
    input_format: str | None,
    options: Any,
    rcu_gp_ms: float,
    caches: tuple[str, ...],
    min_allocs: int,
    jobs: int | None,
    scheduler: str | None,
) -> Any:
    """One recommendation per machine (trace) and cache, summarised as a FleetReport."""
    from sheaftune.analysis.distribute import make_executor, recommend_many, trace_inputs
    from sheaftune.analysis.fleet import fleet_report
    from sheaftune.cli.console import warn_meta

    policy = replay_policy(rcu_gp_ms)
    inputs = trace_inputs(paths, input_format)
    with make_executor(jobs, scheduler) as ex:
        per_machine = recommend_many(
            inputs, ex, options, policy, caches, min_allocs, on_meta=warn_meta
        )
    return fleet_report(
        paths,
        per_machine,
        kernel=options.kernel,
        objective=options.objective,
        tolerance=options.tolerance,
    )


def require_matplotlib() -> None:
    """A usage error, before any work, when --plot cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib: pip install 'sheaftune[plot]' (or pip install matplotlib)"
        ) from None


def announce_compile(engine: str) -> None:
    """Say on standard error when kernels must compile (first run only), and start the
    ahead-of-time builds at once so the engine's overlaps reading the trace."""
    try:
        from sheaftune import compiled

        pending = compiled.pending_builds()
    except Exception:  # noqa: BLE001 - a broken cache only costs the announcement
        pending = []
    if pending:
        from sheaftune.cli.console import stderr

        stderr.print("sheaftune: compiling sheaftune's kernels (first run only, about a minute)...")
        compiled.prebuild()
        return
    if engine != "fast":
        return
    try:
        from sheaftune.model import fast
    except ImportError:
        return
    needs = getattr(fast, "needs_compile", None)
    if needs is not None and needs():
        from sheaftune.cli.console import stderr

        stderr.print("sheaftune: compiling the replay engine (first run only)...")


def executor_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--jobs`` / ``--scheduler``: where the units of a many-trace run execute."""
    f = click.option(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="Run on a dask.distributed cluster (e.g. tcp://host:8786); workers read the "
        "traces by path. Needs the dask extra: pip install 'sheaftune[dask]'.",
    )(f)
    f = click.option(
        "--jobs",
        "-j",
        type=click.IntRange(0, 4096),
        default=None,
        metavar="N",
        help="Worker processes on this machine (0: all cores; default: all cores when there "
        "are several traces, this process for one).",
    )(f)
    return f


def expand_trace_args(traces: tuple[str, ...]) -> list[str]:
    """TRACE arguments -> paths: files, globs (quoted, so the shell leaves them) and
    ``@list.txt`` files of paths or globs, one a line."""
    from sheaftune.analysis.inputs import expand_inputs

    return expand_inputs(traces)


def distributed(paths: list[str], jobs: int | None, scheduler: str | None) -> bool:
    """Whether a run goes through an executor: --scheduler, --jobs other than 1, or several
    traces without --jobs. One trace and no option keeps the in-process path."""
    from sheaftune.errors import UsageError

    if scheduler is not None:
        if jobs not in (None, 0):
            raise UsageError("--jobs and --scheduler exclude each other")
        return True
    if "-" in paths:
        if jobs not in (None, 1):
            raise UsageError("standard input (`-`) is read in this process; drop --jobs")
        return False
    if jobs is None:
        return len(paths) > 1
    return jobs != 1
