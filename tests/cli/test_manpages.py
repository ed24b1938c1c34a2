"""The committed man pages are exactly what the generator produces, and render cleanly."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from sheaftune.cli.manpages import generate

MAN = Path(__file__).resolve().parents[2] / "man"


def test_committed_pages_match_generator():
    pages = generate()
    committed = {p.name for p in MAN.glob("sheaftune*.1")}
    assert committed == set(pages), "run: python -m sheaftune.cli.manpages man"
    for name, text in pages.items():
        assert (MAN / name).read_text() == text, (
            f"{name} is stale: python -m sheaftune.cli.manpages man"
        )


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_pages_render_without_warnings():
    for page in MAN.glob("sheaftune*.1"):
        p = subprocess.run(
            ["man", "--warnings", "-l", str(page)],
            capture_output=True,
            text=True,
            env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"},
        )
        assert p.returncode == 0, p.stderr
        assert "EXIT STATUS" in p.stdout
        assert p.stderr.strip() == "", f"{page.name}: {p.stderr}"
