"""The bpftrace scripts sheaftune ships (package data ``*.bt``), adapted to the running kernel.

* ``kmem-tsv.bt``: the four kmem tracepoints as kmem-tsv/1 lines (spec trace-formats.md 9.4);
  :func:`kmem_tsv_script` adds a cache-name predicate to the ``kmem_cache_*`` probes.
* ``kmem-prefill.bt``: kprobes on the sheaf prefill/return, bulk and kfree_rcu sheaf
  functions, for what tracepoints cannot show. :func:`prefill_script` checks that the kernel
  can run it (kprobes, the functions in ``/proc/kallsyms``), renames probes to the symbols the
  kernel has (``kmem_cache_alloc_bulk`` before 6.10's ``_noprof``) and removes optional probes
  whose function is missing; it raises :class:`~sheaftune.capture.tracefs.TracingUnavailable`
  with the reason when the required ones cannot be probed.

The script files are sectioned by ``// probe: SYMBOL`` ... ``// end`` comments, and lines of the
END block that belong to one probe end with ``// needs: SYMBOL``; that is what the adapter edits.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from importlib import resources

from sheaftune.capture.tracefs import TracingUnavailable, tracefs_mounts
from sheaftune.errors import UsageError

KMEM_TSV = "kmem-tsv.bt"
PREFILL = "kmem-prefill.bt"

#: Probe symbol in the shipped script -> names it has on some kernel, preferred first.
SYMBOL_VARIANTS: dict[str, tuple[str, ...]] = {
    "kmem_cache_prefill_sheaf": ("kmem_cache_prefill_sheaf",),
    "kmem_cache_return_sheaf": ("kmem_cache_return_sheaf",),
    "kmem_cache_refill_sheaf": ("kmem_cache_refill_sheaf",),
    "kmem_cache_alloc_from_sheaf_noprof": (
        "kmem_cache_alloc_from_sheaf_noprof",
        "kmem_cache_alloc_from_sheaf",
    ),
    "kmem_cache_alloc_bulk_noprof": ("kmem_cache_alloc_bulk_noprof", "kmem_cache_alloc_bulk"),
    "kmem_cache_free_bulk": ("kmem_cache_free_bulk",),
    "__kfree_rcu_sheaf": ("__kfree_rcu_sheaf",),
}
#: Without these the prefill-versus-bulk comparison has nothing to compare.
REQUIRED = (
    "kmem_cache_prefill_sheaf",
    "kmem_cache_return_sheaf",
    "kmem_cache_alloc_bulk_noprof",
    "kmem_cache_free_bulk",
)


def script_text(name: str) -> str:
    """The text of a shipped script, as installed with the package."""
    return resources.files("sheaftune.capture").joinpath(name).read_text(encoding="utf-8")


def _cache_predicate(caches: Sequence[str]) -> str:
    terms = []
    for name in caches:
        if not re.fullmatch(r"[A-Za-z0-9_.:()+-]+\*?", name or ""):
            raise UsageError(
                f"--cache {name!r}: bpftrace filters take a cache name, or a prefix ending in *"
            )
        if name.endswith("*"):
            prefix = name[:-1]
            terms.append(f'strncmp(str(args->name), "{prefix}", {len(prefix)}) == 0')
        else:
            terms.append(f'str(args->name) == "{name}"')
    return " || ".join(terms)


def kmem_tsv_script(caches: Sequence[str] = ()) -> str:
    """kmem-tsv.bt; with ``caches``, the kmem_cache_* probes keep only events of those caches."""
    text = script_text(KMEM_TSV)
    if not caches:
        return text
    pred = _cache_predicate(caches)
    for event in ("kmem_cache_alloc", "kmem_cache_free"):
        probe = f"tracepoint:kmem:{event}\n{{"
        if text.count(probe) != 1:
            raise RuntimeError(f"{KMEM_TSV}: probe {event} not found once")
        text = text.replace(probe, f"tracepoint:kmem:{event}\n/{pred}/\n{{")
    note = (
        f'\tprintf("# filter kmem_cache_alloc,kmem_cache_free: cache in {",".join(caches)}\\n");\n'
    )
    marker = '\tprintf("# ts_ns'
    return text.replace(marker, note + marker, 1)


def kernel_symbols(names: Iterable[str], kallsyms: str = "/proc/kallsyms") -> set[str]:
    """Which of ``names`` the running kernel has as functions (text symbols)."""
    wanted = set(names)
    found: set[str] = set()
    try:
        with open(kallsyms, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in "tT" and parts[2] in wanted:
                    found.add(parts[2])
    except OSError as e:
        raise TracingUnavailable(f"cannot read {kallsyms}: {e.strerror}") from None
    return found


def kprobes_available() -> bool:
    """True when the kernel offers kprobes (perf kprobe PMU or tracefs kprobe_events)."""
    if os.path.exists("/sys/bus/event_source/devices/kprobe"):
        return True
    return any(os.path.exists(os.path.join(m, "kprobe_events")) for m in tracefs_mounts())


def _drop_probe(text: str, symbol: str) -> str:
    section = re.compile(
        rf"^// probe: {re.escape(symbol)}\n.*?^// end\n", flags=re.DOTALL | re.MULTILINE
    )
    text, n = section.subn("", text)
    if n != 1:
        raise RuntimeError(f"{PREFILL}: section of {symbol} not found once")
    return re.sub(rf"^.*// needs: {re.escape(symbol)}\n", "", text, flags=re.MULTILINE)


def prefill_script(
    symbols: set[str] | None = None, check_kprobes: bool = True
) -> tuple[str, list[str]]:
    """kmem-prefill.bt adapted to a kernel, and notes on what was left out.

    ``symbols``: the kernel's function names among :data:`SYMBOL_VARIANTS` (default: read
    /proc/kallsyms). ``None`` with ``check_kprobes=False`` is not a thing: to print the script
    unchanged for another machine, use :func:`script_text`.
    """
    if check_kprobes and not kprobes_available():
        raise TracingUnavailable(
            "this kernel has no kprobes (CONFIG_KPROBES is not set), so the prefill script "
            "cannot attach; the kmem tracepoint script (capture-script bpftrace) still works"
        )
    if symbols is None:
        symbols = kernel_symbols(n for v in SYMBOL_VARIANTS.values() for n in v)
    text = script_text(PREFILL)
    notes: list[str] = []
    missing_required = []
    for probe, variants in SYMBOL_VARIANTS.items():
        have = next((v for v in variants if v in symbols), None)
        if have is None:
            if probe in REQUIRED:
                missing_required.append(variants[0])
            else:
                text = _drop_probe(text, probe)
                notes.append(f"{variants[0]} is not in this kernel: its probe is left out")
        elif have != probe:
            text = re.sub(rf"\b{re.escape(probe)}\b", have, text)
    if missing_required:
        raise TracingUnavailable(
            "this kernel lacks " + ", ".join(missing_required) + " (sheaf prefill appeared in "
            "Linux 6.18), so the prefill script cannot run here"
        )
    return text, notes
