"""Man pages generated from the click commands: ``python -m sheaftune.cli.manpages man/``.

The click help texts are the single source for NAME, SYNOPSIS, OPTIONS and EXAMPLES; the
hand-written sections (DESCRIPTION details, EXIT STATUS, FILES, ENVIRONMENT, SEE ALSO) live
here. A test regenerates the pages and fails when a committed page in ``man/`` differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sheaftune import __version__
from sheaftune.cli import cli

#: No date from the clock: the pages must be reproducible byte for byte.
DATE = "2026"

EXIT_STATUS = [
    ("0", "Success."),
    ("1", "Unexpected internal error (one line; --debug shows the traceback)."),
    ("2", "Usage error: a bad option or combination."),
    ("3", "Input unreadable, invalid or unsupported; the message names the file and the place."),
    ("4", "Nothing to analyse, for example a --cache filter that matched no event."),
    ("130", "Interrupted (Ctrl-C)."),
]

ENVIRONMENT = [
    ("NO_COLOR", "When set, no colour in terminal output."),
    ("COLUMNS", "Terminal width for tables."),
    ("NUMBA_CACHE_DIR", "Where the compiled replay and reader kernels are cached."),
]

FILES = [
    ("workloads/*.yaml", "Synthetic workload definitions shipped with the source."),
    ("/sys/kernel/tracing", "tracefs, used by sheaftune record."),
]

#: Extra DESCRIPTION paragraphs per command (beyond the command's own help text).
DESCRIPTION_EXTRA: dict[str, str] = {
    "": (
        "The four kmem tracepoints are kmem_cache_alloc, kmem_cache_free, kmalloc and kfree. "
        "Frees are matched to allocations by pointer; frees that no event shows (kfree_rcu, "
        "bulk frees) are counted and reported, never guessed silently."
    ),
    "analyze": (
        "The input format is detected from the content: trace-cmd trace.dat (versions 6 and 7, "
        "zstd or zlib compressed), ftrace text from /sys/kernel/tracing/trace or trace_pipe, "
        "trace-cmd report text, perf script text, the kmem-tsv output of the bpftrace script, "
        "and sheaftune's own .npz event files. gzip, xz, bzip2 and zstd compressed inputs are "
        "read directly. Lines that are not kmem events are skipped and counted by reason."
    ),
}


def _esc(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + ln) if ln.startswith((".", "'")) else ln for ln in text.split("\n"))


def _paragraphs(text: str) -> list[str]:
    out = []
    for para in text.strip().split("\n\n"):
        para = para.strip()
        if para.startswith("\b"):
            continue
        out.append(" ".join(line.strip() for line in para.splitlines()))
    return out


def _examples(epilog: str | None) -> list[str]:
    if not epilog:
        return []
    lines = [ln.strip() for ln in epilog.replace("\b", "").splitlines()]
    return [ln for ln in lines if ln.startswith("sheaftune")]


def page(name: str, command: click.Command, ctx: click.Context) -> str:
    """The roff text of one page: ``name`` is '' for sheaftune(1) or a subcommand name."""
    full = f"sheaftune-{name}" if name else "sheaftune"
    title = full.upper()
    help_text = command.help or ""
    summary = _paragraphs(help_text)[0] if help_text else ""
    short = summary.split(". ")[0].rstrip(".")
    out = [
        f'.TH {_esc(title)} 1 "{DATE}" "sheaftune {__version__}" "User Commands"',
        ".SH NAME",
        f"{_esc(full)} \\- {_esc(short[0].lower() + short[1:] if short else '')}",
        ".SH SYNOPSIS",
        f".B {_esc('sheaftune' + (' ' + name if name else ''))}",
        _esc(" ".join(command.collect_usage_pieces(ctx))),
        ".SH DESCRIPTION",
    ]
    for para in _paragraphs(help_text):
        out += [_esc(para), ".PP"]
    if name in DESCRIPTION_EXTRA:
        out += [_esc(DESCRIPTION_EXTRA[name]), ".PP"]
    if out[-1] == ".PP":
        out.pop()
    if isinstance(command, click.Group):
        out.append(".SH COMMANDS")
        for sub in command.list_commands(ctx):
            c = command.get_command(ctx, sub)
            if c is None:
                continue
            out += [".TP", f".BR sheaftune\\-{_esc(sub)} (1)", _esc(c.get_short_help_str(80))]
    opts = [p for p in command.get_params(ctx) if isinstance(p, click.Option) and not p.hidden]
    if opts:
        out.append(".SH OPTIONS")
        for p in opts:
            rec = p.get_help_record(ctx)
            if rec is None:
                continue
            out += [".TP", f".B {_esc(rec[0])}", _esc(rec[1])]
    examples = _examples(command.epilog) if not isinstance(command, click.Group) else []
    if examples:
        out.append(".SH EXAMPLES")
        for ex in examples:
            out += [".PP", ".nf", f".RS 4\n{_esc(ex)}\n.RE", ".fi"]
    out.append(".SH EXIT STATUS")
    for code, text in EXIT_STATUS:
        out += [".TP", f".B {code}", _esc(text)]
    out.append(".SH ENVIRONMENT")
    for var, text in ENVIRONMENT:
        out += [".TP", f".B {var}", _esc(text)]
    out.append(".SH FILES")
    for path, text in FILES:
        out += [".TP", f".I {_esc(path)}", _esc(text)]
    out.append(".SH SEE ALSO")
    others = [f"sheaftune\\-{_esc(c)} (1)" for c in cli.list_commands(ctx) if c != name]
    if name:
        others.insert(0, "sheaftune (1)")
        others = [o for o in others if o != f"sheaftune\\-{_esc(name)} (1)"]
    others += ["trace\\-cmd (1)", "perf\\-script (1)", "bpftrace (8)"]
    out.append(",\n".join(f".BR {o}" for o in others))
    return "\n".join(out) + "\n"


def generate() -> dict[str, str]:
    """File name -> roff text of every page."""
    root = click.Context(cli, info_name="sheaftune")
    pages = {"sheaftune.1": page("", cli, root)}
    for name in cli.list_commands(root):
        cmd = cli.get_command(root, name)
        if cmd is None:
            continue
        sub = click.Context(cmd, info_name=name, parent=root)
        pages[f"sheaftune-{name}.1"] = page(name, cmd, sub)
    return pages


def main(argv: list[str]) -> int:
    outdir = Path(argv[0] if argv else "man")
    outdir.mkdir(parents=True, exist_ok=True)
    pages = generate()
    for stale in outdir.glob("sheaftune*.1"):
        if stale.name not in pages:
            stale.unlink()
    for fname, text in pages.items():
        (outdir / fname).write_text(text)
    print(f"wrote {len(pages)} pages to {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
