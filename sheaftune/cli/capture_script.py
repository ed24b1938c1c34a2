"""``sheaftune capture-script``: print a bpftrace script that records what sheaftune reads."""

from __future__ import annotations

import click


@click.command(
    "capture-script",
    epilog="""\b
Examples:
  sheaftune capture-script bpftrace > kmem.bt         # then: sudo bpftrace kmem.bt > kmem.tsv
  sheaftune capture-script bpftrace --cache maple_node --cache vm_area_struct > vma.bt
  sheaftune capture-script bpftrace-prefill --no-check > prefill.bt   # for another machine""",
)
@click.argument("script", type=click.Choice(("bpftrace", "bpftrace-prefill")))
@click.option(
    "--cache",
    "caches",
    multiple=True,
    metavar="NAME",
    help="bpftrace: keep kmem_cache_alloc/kmem_cache_free of this cache only (repeatable; a "
    "trailing * matches a prefix). kmalloc and kfree are kept whole.",
)
@click.option(
    "--no-check",
    is_flag=True,
    help="bpftrace-prefill: print the script as shipped, without checking this kernel's "
    "kprobes and symbols (to run it on another machine).",
)
def command(script: str, caches: tuple[str, ...], no_check: bool) -> None:
    """Print SCRIPT, a bpftrace capture script, on standard output.

    bpftrace: the four kmem tracepoints as kmem-tsv/1 lines, which `sheaftune analyze`
    reads (plain or with `bpftrace -f json`). bpftrace-prefill: kprobes on
    kmem_cache_prefill_sheaf, kmem_cache_return_sheaf, the bulk functions and the kfree_rcu
    sheaf path, whose records feed the prefill-versus-bulk comparison; it fails with the
    reason where this kernel cannot run it.
    """
    from sheaftune.capture.scripts import PREFILL, kmem_tsv_script, prefill_script, script_text
    from sheaftune.cli.console import warn
    from sheaftune.errors import UsageError

    if script == "bpftrace":
        if no_check:
            raise UsageError("--no-check applies to bpftrace-prefill only")
        text = kmem_tsv_script(caches)
    else:
        if caches:
            raise UsageError("--cache applies to the bpftrace script only")
        if no_check:
            text = script_text(PREFILL)
        else:
            text, notes = prefill_script()
            for note in notes:
                warn(note)
    click.echo(text, nl=False)
