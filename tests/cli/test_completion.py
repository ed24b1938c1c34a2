"""Shell completion through click's own mechanism works via the console script (docs/completion.md).

The console script is ``sheaftune = sheaftune.cli:main``, which runs the group with
``standalone_mode=False``; click handles ``_SHEAFTUNE_COMPLETE`` before that matters, so the
source scripts generate and the completion requests answer with commands, options and choices.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SHEAFTUNE = Path(sys.executable).parent / "sheaftune"

#: shell -> text every generated script of that shell contains
SOURCE_MARKS = {
    "bash": ("_sheaftune_completion()", "complete -o nosort -F _sheaftune_completion sheaftune"),
    "zsh": ("#compdef sheaftune", "_sheaftune_completion"),
    "fish": ("function _sheaftune_completion", "complete --no-files --command sheaftune"),
}


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if not SHEAFTUNE.exists():
        pytest.skip(f"the console script is not installed beside {sys.executable}")
    return subprocess.run(
        [str(SHEAFTUNE)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("shell", sorted(SOURCE_MARKS))
def test_source_script_generates(shell: str):
    p = _run({"_SHEAFTUNE_COMPLETE": f"{shell}_source"})
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    for mark in SOURCE_MARKS[shell]:
        assert mark in p.stdout, f"{shell}: {mark!r} missing from\n{p.stdout}"
    # the script calls back into the program with the completion request variable
    assert f"_SHEAFTUNE_COMPLETE={shell}_complete" in p.stdout


def _bash(words: str, cword: int) -> list[str]:
    p = _run(
        {"_SHEAFTUNE_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    )
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()


def test_bash_completes_commands_options_and_choices():
    assert "plain,analyze" in _bash("sheaftune an", 1)
    assert "plain,capture-script" in _bash("sheaftune ca", 1)
    assert "plain,--kernel" in _bash("sheaftune analyze --ker", 2)
    assert _bash("sheaftune analyze --kernel ", 3) == ["plain,7.3", "plain,6.18"]
    # path arguments ask the shell to complete file names, also those typed str (`-`, globs)
    for command in ("analyze", "convert", "simulate", "generate", "compare", "recommend", "fleet"):
        assert _bash(f"sheaftune {command} ", 2) == ["file,"], command


def test_zsh_and_fish_complete_with_help_text():
    z = _run(
        {"_SHEAFTUNE_COMPLETE": "zsh_complete", "COMP_WORDS": "sheaftune si", "COMP_CWORD": "1"}
    )
    assert z.returncode == 0, z.stderr
    assert z.stdout.splitlines()[:2] == ["plain", "simulate"]
    f = _run(
        {"_SHEAFTUNE_COMPLETE": "fish_complete", "COMP_WORDS": "sheaftune si", "COMP_CWORD": "si"}
    )
    assert f.returncode == 0, f.stderr
    assert f.stdout.startswith("plain,simulate\t")
