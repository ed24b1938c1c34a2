"""The one console for conversation (progress, warnings) on standard error.

Data goes to standard output through the renderers; this console writes to standard error
only, never interprets trace strings as markup, and honours NO_COLOR (rich does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from sheaftune.events import TraceMeta

    stderr: Console

_console: Console | None = None


def __getattr__(name: str) -> Any:
    # ``stderr`` is made on first use: importing rich costs about 20 ms, which a run that has
    # nothing to say on standard error (``analyze --format json``) should not pay
    if name == "stderr":
        return _stderr()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _stderr() -> Console:
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True, highlight=False, markup=False, emoji=False)
    return _console


def warn(message: str) -> None:
    _stderr().print(f"sheaftune: warning: {message}")


def warn_meta(meta: TraceMeta) -> None:
    """One warning line per kind of thing a reader skipped or lost, with counts."""
    src = meta.source or "input"
    for reason, n in sorted(meta.skipped.items()):
        if reason in ("comment", "header", "blank"):
            continue
        warn(f"{src}: skipped {n} {reason}")
    lost = sum(meta.lost_events.values())
    markers = sum(meta.lost_markers.values())
    if lost or markers:
        warn(f"{src}: the tracer lost events ({lost} counted, {markers} loss markers)")
    for w in meta.warnings:
        warn(f"{src}: {w}")
    if not meta.complete:
        warn(f"{src}: input damaged; result is incomplete")
