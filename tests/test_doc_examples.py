"""Every `sheaftune` command example in README.md, docs/*.md and the commands' --help runs.

Examples name files a reader would have (trace.dat, kmem.txt, ...); the test substitutes the
bundled and fixture traces for them (``SUBSTITUTE``) and runs each example in a scratch folder
with ``workloads/`` beside it. Synopsis lines (with ``[OPTIONS]``-style brackets or upper-case
placeholders) are not examples and are left out. ``sheaftune record`` examples need root and
tracefs; they are skipped with that reason elsewhere.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT

BIN = Path(sys.executable).parent
EXAMPLE_DAT = ROOT / "sheaftune" / "data" / "vma-small.dat"

#: file names used in examples -> real inputs of the same format
SUBSTITUTE = {
    "trace.dat": EXAMPLE_DAT,
    "vma.dat": EXAMPLE_DAT,
    "kmem.dat": EXAMPLE_DAT,
    "/tmp/kmem.txt": FIXTURES / "traces" / "vma-small.ftrace.txt",
    "trace.txt": FIXTURES / "traces" / "vma-small.ftrace.txt",
    "trace.txt.zst": FIXTURES / "large" / "build.ftrace.txt.zst",
    "kmem.perf.txt": FIXTURES / "traces" / "vma-small.perfscript.txt",
    "kmem.tsv": ROOT / "tests" / "data" / "bpftrace" / "vma-kmem-tsv.txt",
    "scenario.yaml": ROOT / "tests" / "data" / "scenarios" / "f3_e2big_flush_spare.yaml",
    "my-machine.yaml": ROOT / "tests" / "data" / "costs" / "my-machine.yaml",
    "my-costs.yaml": ROOT / "tests" / "data" / "costs" / "my-costs.yaml",  # docs/costs.md
}
#: text replacements that keep an example's meaning but make it cheap or non-interactive
REWRITE = (
    (re.compile(r"--events \d+"), "--events 200000"),  # the example's 20M events: capped
    (re.compile(r"\| less$"), "| cat"),
)
SYNOPSIS = re.compile(r"\[|\b[A-Z]{3,}\b(?!=)")


def _doc_examples() -> list[tuple[str, str]]:
    out = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        in_block = False
        for line in doc.read_text().splitlines():
            if line.startswith("```"):
                in_block = not in_block and line.strip() in (
                    "```sh",
                    "```console",
                    "```bash",
                    "```shell",
                )
                continue
            if not in_block:
                continue
            cmd = line.strip().removeprefix("$ ").removeprefix("sudo ")
            if cmd.startswith(("sheaftune ", ".venv/bin/sheaftune ")):
                out.append((doc.name, cmd))
    return out


def _help_examples() -> list[tuple[str, str]]:
    from click.testing import CliRunner

    from sheaftune.cli import cli

    out = []
    names = cli.list_commands(None)  # type: ignore[arg-type]
    for name in names:
        text = CliRunner().invoke(cli, [name, "--help"]).output
        tail = text.split("Examples:", 1)
        if len(tail) == 2:
            out += [
                (f"{name} --help", ln.strip().removeprefix("sudo "))
                for ln in tail[1].splitlines()
                if ln.strip().removeprefix("sudo ").startswith("sheaftune ")
            ]
    return out


def _prepare(cmd: str) -> str:
    cmd = cmd.split("  #", 1)[0].strip().removeprefix("sudo ")
    for pattern, repl in REWRITE:
        cmd = pattern.sub(repl, cmd)
    cmd = cmd.replace(".venv/bin/sheaftune", "sheaftune")
    shell = any(c in cmd for c in "|<>&;")  # keep the shell syntax: substitute words only
    words = cmd.split() if shell else shlex.split(cmd, posix=True)
    for i, w in enumerate(words):
        if w in SUBSTITUTE and not (i and words[i - 1] in ("-o", "--output", ">", ">>")):
            words[i] = str(SUBSTITUTE[w])
    return " ".join(words) if shell else shlex.join(words)


EXAMPLES = [e for e in _doc_examples() + _help_examples() if not SYNOPSIS.search(e[1])]


def test_there_are_examples():
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("where,cmd", EXAMPLES, ids=[f"{w}: {c}" for w, c in EXAMPLES])
def test_example_runs(where: str, cmd: str, tmp_path: Path):
    if not FIXTURES.exists():
        pytest.skip("../shared/fixtures is absent")
    if cmd.startswith("sheaftune record"):
        pytest.skip("sheaftune record needs root and tracefs (tests/capture runs it for real)")
    if "bpftrace kmem.bt" in cmd and not shutil.which("bpftrace"):
        pytest.skip("bpftrace is not installed")
    if "capture-script bpftrace-prefill" in cmd and "--no-check" not in cmd:
        pytest.skip("the prefill script needs kprobes, which this kernel may lack")
    # examples name repository paths (workloads/..., tests/data/...) relative to the checkout
    (tmp_path / "workloads").symlink_to(ROOT / "workloads")
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", NO_COLOR="1", COLUMNS="120")
    p = subprocess.run(
        ["bash", "-o", "pipefail", "-c", _prepare(cmd)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, f"{where}: {cmd}\n{p.stderr[-2000:]}"


def test_costs_doc_example_file_is_the_tested_one():
    """The worked cost file shown in docs/costs.md is the file its examples run with."""
    text = (ROOT / "docs" / "costs.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert block == SUBSTITUTE["my-costs.yaml"].read_text()


def test_reading_an_analysis_shows_the_real_output():
    """The tables pasted in docs/reading-an-analysis.md are what the command prints today
    (at 130 columns; the bundled trace's folder is shown as ``...``)."""
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", NO_COLOR="1", COLUMNS="130")
    p = subprocess.run(
        ["sheaftune", "analyze", "--example", "--capacity", "buckets"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    out = "\n".join(line.rstrip() for line in p.stdout.splitlines())
    out = re.sub(r"Trace \S*/sheaftune/data/", "Trace .../sheaftune/data/", out)
    text = (ROOT / "docs" / "reading-an-analysis.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```text\n")[1:]]
    assert len(blocks) >= 4
    for block in blocks:
        assert block.rstrip("\n") in out, f"not in the output of analyze:\n{block}"
