"""Shell completion helpers (click's own mechanism; docs/completion.md).

Arguments that take a path but also ``-``, quoted globs or ``@FILE`` lists are typed ``str``, so
click would offer the shell nothing for them; ``complete_path`` asks the shell to complete file
names there, as a ``click.Path`` argument does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click
    from click.shell_completion import CompletionItem


def complete_path(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Let the shell complete file names for this argument."""
    # (imported here: click.shell_completion is only needed when the shell asks, and a run
    # would otherwise import it for the decoration alone)
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="file")]
