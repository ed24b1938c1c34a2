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
    (
        "1",
        "Unexpected internal error (one line; --debug shows the traceback), or an output that "
        "cannot be written (a full disk: one line naming the file).",
    ),
    ("2", "Usage error: a bad option or combination."),
    ("3", "Input unreadable, invalid or unsupported; the message names the file and the place."),
    ("4", "Nothing to analyse, for example a --cache filter that matched no event."),
    ("130", "Interrupted (Ctrl-C)."),
]

#: What every command promises about failures; the tests under tests/hardening hold it.
GUARANTEES = [
    (
        "Atomic outputs",
        "A file given with -o (reports, converted and generated traces) is written to a "
        "temporary file in the same folder and renamed over FILE only when complete; an error, "
        "Ctrl-C or a full disk leaves FILE as it was and no temporary file behind. A device or "
        "FIFO (-o /dev/null) is written in place, never replaced.",
    ),
    (
        "Interruption",
        "Ctrl-C stops the command promptly with exit status 130 and the one line "
        "'sheaftune: error: interrupted'.",
    ),
    (
        "Pipes",
        "A closed output pipe (sheaftune analyze ... | head -1) is not an error: exit status 0, "
        "nothing on standard error.",
    ),
    (
        "Damaged input",
        "Every error is one line naming the file and the place (line, section, CPU, byte "
        "offset), exit status 3, never a traceback; a trace cut short is never read as "
        "complete. With --salvage the readable part is kept, what was lost is counted, and "
        "the report says complete: false. Lengths read from a file are checked before "
        "anything is allocated for them; memory and time stay proportional to the input.",
    ),
    (
        "Clocks",
        "Timestamps that step backwards within a CPU are counted per CPU and warned about; the "
        "events are still analysed in time order.",
    ),
    (
        "Reproducibility",
        "The same input and options give byte-identical JSON (sorted keys, no time of the run).",
    ),
]

ENVIRONMENT = [
    ("NO_COLOR", "When set, no colour in terminal output."),
    (
        "COLUMNS",
        "Width of the tables. When standard output is not a terminal the tables are 120 "
        "columns wide (costs: 140) unless COLUMNS says otherwise.",
    ),
    (
        "SHEAFTUNE_CACHE_DIR",
        "Where the ahead-of-time builds of the compiled kernels (reader, normalisation, "
        "characterisation, plan building, replay engine) are cached; default "
        "$XDG_CACHE_HOME/sheaftune, else ~/.cache/sheaftune. The first run builds them and "
        "says so. Its pycode folder keeps the compiled code of dataclass methods and regular "
        "expressions, as .pyc files keep modules', and the code of the modules a run imports "
        "in one file per sys.path (at most four). Deleting the folder is always safe.",
    ),
    (
        "SHEAFTUNE_MODULE_CODE",
        "0 imports every module the way Python does, reading each .pyc file, rather than "
        "taking the code of unchanged modules from the file in the cache's pycode folder (same "
        "modules, slower start; for debugging).",
    ),
    (
        "SHEAFTUNE_AOT",
        "0 uses numba's just-in-time compiler instead of the ahead-of-time builds (same "
        "results, slower start; for debugging).",
    ),
    (
        "NUMBA_CACHE_DIR",
        "Where numba caches the just-in-time kernels (with SHEAFTUNE_AOT=0, or when no "
        "ahead-of-time build is possible): numba's default is __pycache__ beside the installed "
        "modules, or a user cache folder when that is not writable.",
    ),
    (
        "SHEAFTUNE_PAGE_ENGINE",
        "numpy or numba: force the trace.dat page walk (numba: the compiled whole-stream "
        "reader; numpy: the streaming one) instead of the default, the compiled reader when "
        "its build is at hand, else chosen by the amount of page data.",
    ),
    (
        "OPENBLAS_NUM_THREADS",
        "sheaftune sets it to 1 when unset (it does no linear algebra worth a thread pool, "
        "and the pool's start-up costs CPU on every run).",
    ),
    (
        "NUMPY_MADVISE_HUGEPAGE",
        "sheaftune sets it to 0 when unset: numpy then asks for no transparent huge pages, "
        "which on a virtual machine whose host reclaims freed memory cost several "
        "milliseconds each when first touched.",
    ),
    (
        "_SHEAFTUNE_COMPLETE",
        "Shell completion (click's mechanism): bash_source, zsh_source or fish_source print the "
        "completion script for that shell; see docs/completion.md.",
    ),
]

#: FILES of every page, then the files of one command (the group's page lists them all).
FILES_COMMON = [
    ("docs/index.md", "The user guide (in the source tree): every page, one question each."),
]
FILES_BY_COMMAND: dict[str, list[tuple[str, str]]] = {
    "analyze": [
        (
            "sheaftune/data/vma-small.dat",
            "The real Linux 6.18 trace (2 CPUs, 7,516 events) that --example analyses, "
            "installed with the package.",
        ),
    ],
    "simulate": [
        (
            "tests/data/scenarios/*.yaml",
            "Scenarios that pin the model rule by rule, with the expected counters derived by "
            "hand in comments (in the source tree).",
        ),
    ],
    "generate": [
        ("workloads/*.yaml", "Synthetic workload definitions shipped with the source."),
    ],
    "recommend": [
        ("workloads/*.yaml", "Workloads for --workload, shipped with the source."),
        ("FILE.yaml", "A cost file for --costs: cost names to ns (docs/costs.md)."),
    ],
    "compare": [
        ("workloads/*.yaml", "Workloads for --workload (prefill-heavy.yaml, ...)."),
        ("FILE.yaml", "A cost file for --costs: cost names to ns (docs/costs.md)."),
    ],
    "fleet": [
        ("@FILE", "A list of trace paths or globs, one a line, # comments."),
        ("FILE.yaml", "A cost file for --costs: cost names to ns (docs/costs.md)."),
    ],
    "costs": [
        (
            "FILE.yaml",
            "A cost file: a YAML mapping of cost names to ns; keys not given keep their "
            "defaults (tests/data/costs/my-costs.yaml is the worked example of docs/costs.md).",
        ),
    ],
    "record": [
        (
            "/sys/kernel/tracing",
            "tracefs; record works in its own instance, instances/sheaftune-PID, and removes it.",
        ),
        ("/proc/kallsyms", "Kernel symbols, stored in the file so that call sites resolve."),
    ],
    "capture-script": [
        ("/proc/kallsyms", "Checked by bpftrace-prefill for kprobes and the sheaf functions."),
        ("/sys/kernel/btf/vmlinux", "Kernel BTF, which the bpftrace-prefill script needs."),
    ],
}

#: Extra DESCRIPTION paragraphs per command (beyond the command's own help text); paragraphs
#: are separated by blank lines.
DESCRIPTION_EXTRA: dict[str, str] = {
    "": (
        "The four kmem tracepoints are kmem_cache_alloc, kmem_cache_free, kmalloc and kfree. "
        "Frees are matched to allocations by pointer; frees that no event shows (kfree_rcu, "
        "bulk frees) are counted and reported, never guessed silently."
        "\n\n"
        "Every command takes --format (table for people; json and yaml carry a versioned "
        '"schema" and "version", docs/schemas.md) and -o FILE, written atomically. Tables '
        "go to standard output, warnings and progress to standard error. Each command's "
        "--help ends with examples. The user guide, from capturing a trace to calibrating "
        "the cost model, is listed in docs/index.md; the model's assumptions and its known "
        "limits against the kernel are in docs/model.md."
    ),
    "analyze": (
        "The input format is detected from the content: trace-cmd trace.dat (versions 6 and 7, "
        "zstd or zlib compressed), ftrace text from /sys/kernel/tracing/trace or trace_pipe, "
        "trace-cmd report text, perf script text, the kmem-tsv output of the bpftrace script, "
        "and sheaftune's own .npz event files. gzip, xz, bzip2 and zstd compressed inputs are "
        "read directly. Lines that are not kmem events are skipped and counted by reason."
        "\n\n"
        "Where the trace is silent the replay assumes, and counts what it assumed under the "
        "sheaf-model table: a pointer allocated again without a visible free was freed by "
        "kfree_rcu on the allocating CPU (--unseen-free rcu) or leaked (none); runs of pops "
        "from prefilled sheaves at the maple tree's store helpers are prefill operations "
        "(--sheaf-pops prefill) whose size follows the tree's request rule (--upper-bound "
        "forces one); an RCU grace period ends every --rcu-gp-ms. A cache marked * has far "
        "fewer visible frees than allocations and depends most on these choices. The replay "
        "runs on the trace's CPUs and one NUMA node; --kernel chooses 7.3 or 6.18 semantics."
        "\n\n"
        "The sheaf-model table: cap (* the kernel's capacity for the cache), alloc@pcs and "
        "free@pcs (share served by the per-CPU sheaves), barn/k and fail/k (successful and "
        "failed barn exchanges per 1000 operations), refilled and flushed (objects moved "
        "between slabs and sheaves), sheaves (sheaf structs allocated), held and held bytes "
        "(peak objects in all sheaves). For the five largest caches with at least 1000 "
        "allocations it then shows the capacity sheaftune recommend would choose for the "
        "traced machine (--no-recommend skips it). docs/reading-an-analysis.md explains every "
        "column."
    ),
    "convert": (
        "The native file is a NumPy .npz of the event columns, the cache and call-site "
        "tables and the trace's metadata, written atomically. Every command reads it without "
        "parsing, so converting a large text trace once saves its parse on every later run. "
        "A file written by a newer sheaftune with a newer format version is refused (exit "
        "status 3)."
    ),
    "simulate": (
        "Objects are identified by allocation order; free frees the newest live objects, "
        "free_oldest the oldest. The model's conventions apply: memory never runs out, no "
        "trylock fails, no interrupts; where the kernel leaves an order open the model makes "
        "a fixed choice (a grace period runs the rcu-sheaf callbacks, then each CPU's classic "
        "kfree_rcu batch). Errors name the file, the line and the op index: a free of more "
        "objects than are live, a CPU out of range or offline, a sheaf handle not outstanding. "
        "The scenario format and the Python API are in docs/simulation.md."
    ),
    "generate": (
        "Operations arrive on each CPU as Poisson processes at the stream's per-CPU rate, so "
        "--cpus scales the machine's total. The same workload, --seed, --cpus and --events "
        "give the same bytes. Pointers are reused the way per-CPU sheaves reuse them (LIFO "
        "per cache and CPU; kfree_rcu objects only after the workload's rcu_delay_us), "
        "timestamps are whole microseconds, and ftrace text hashes pointers like %p. What "
        "was invisible is counted in the .npz metadata (and lost in text, as in a real "
        "trace); docs/workloads.md describes the format and the shipped workloads."
    ),
    "recommend": (
        "Objectives (--objective): balanced, the smallest candidate within --tolerance "
        "(default 5%) of the fastest; time, the fastest; memory, the least worst-case memory "
        "per node; scaling, the smallest candidate whose lock contention costs at most 10% "
        "of its time. Before the objective, candidates below the prefill upper bound are "
        "dropped unless under 1% of prefills would be oversize, and --memory-budget drops "
        "those whose worst case per node exceeds it."
        "\n\n"
        "Times come from the cost model (sheaftune costs, docs/costs.md), with the node's "
        "barn lock and list_lock as closed-loop queues for ceil(cpus / nodes) CPUs per node. "
        "A trace is replayed as it is and --cpus scales the contention and the per-node "
        "memory, not the replay; a workload is regenerated for --cpus. The first quarter of "
        "each replay warms the sheaves up and is not counted. docs/recommend.md has the "
        "details and a sweep of the published will-it-scale case."
    ),
    "compare": (
        "Rule of thumb the command puts numbers on: prefill wins when U is large but rarely "
        "reached; bulk is as good when all of U is used. Every other allocation and free of "
        "the cache is the same in both plans, so the difference is the strategy's. Cost per "
        "operation includes closed-loop lock contention for --cpus CPUs per node; bulk calls "
        "are priced per call (api_call) and per object copied (bulk_object). The crossover "
        "replays synthetic streams with the same U and every k held constant. One NUMA node "
        "is replayed. Worked examples: docs/prefill-vs-bulk.md."
    ),
    "fleet": (
        "Each (trace, cache) is one unit of work, evaluated where it runs; counters are exact "
        "and order statistics are computed per trace, never merged from parts, so the report "
        "is the same on one core, many cores or a cluster. --scheduler needs the dask extra "
        "(pip install 'sheaftune[dask]') and the traces visible to every worker under the "
        "same paths. docs/fleet.md."
    ),
    "costs": (
        "A cost file is a YAML mapping of the names listed to nanoseconds; keys not given "
        "keep their defaults, an unknown key or a negative value is an error (exit status 3). "
        "compare, recommend and fleet take the same --costs FILE.yaml. The defaults come from "
        "published microbenchmarks on other machines and are stated, not calibrated: "
        "docs/costs.md says what to measure on your machine (prototype-kernel's "
        "slab_bulk_test01 and time_bench_sample modules, page_bench01, a core-to-core latency "
        "tool, perf stat and perf lock contention) and how to turn it into a file."
    ),
    "record": (
        "Before recording it refuses (exit status 3) when a kmem event it wants is already "
        "enabled or filtered in any trace instance. --cache filters kmem_cache_alloc and "
        "kmem_cache_free by name; kmalloc and kfree carry no cache name and are recorded "
        "whole (keep kfree: objects of named caches are often freed with kfree). The "
        "recorder's own threads are left out of the trace. Losses are printed at the end "
        "with the remedy: a larger --buffer-kb, fewer --events, or --cache filters. "
        "docs/capture.md describes the file and the other ways to capture."
        "\n\n"
        "Exit status of record: 0 when the file was written, also when COMMAND failed (its "
        "status is reported); 130 when Ctrl-C, SIGTERM or SIGHUP cut COMMAND or --duration "
        "short (what was recorded is still written); 3 when tracing is unavailable (not root, "
        "no tracefs) or busy; 2 for an unknown event or a command that is not found."
    ),
    "capture-script": (
        "The kmem-tsv script prints one tab-separated line per event; --cache adds a name "
        "filter to the kmem_cache_* probes (a trailing * matches a prefix). The prefill "
        "script needs CONFIG_KPROBES and kernel BTF; before printing, it checks the running "
        "kernel's functions in /proc/kallsyms, renames probes to the kernel's symbols and "
        "leaves out optional probes whose function is missing; --no-check prints it as "
        "shipped, to run on another machine. docs/capture.md."
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
    return [ln for ln in lines if ln.removeprefix("sudo ").startswith("sheaftune")]


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
    for para in DESCRIPTION_EXTRA.get(name, "").split("\n\n"):
        if para.strip():
            out += [_esc(para.strip()), ".PP"]
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
    out.append(".SH GUARANTEES")
    for title, text in GUARANTEES:
        out += [".TP", f".B {_esc(title)}", _esc(text)]
    out.append(".SH ENVIRONMENT")
    for var, text in ENVIRONMENT:
        out += [".TP", f".B {var}", _esc(text)]
    out.append(".SH FILES")
    files = list(FILES_COMMON)
    for cmd, extra in FILES_BY_COMMAND.items():
        if name in ("", cmd):
            files += [f for f in extra if f[0] not in {path for path, _ in files}]
    for path, text in files:
        out += [".TP", f".I {_esc(path)}", _esc(text)]
    out += [".SH SEE ALSO", ".nh"]  # no hyphenation inside page names
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
