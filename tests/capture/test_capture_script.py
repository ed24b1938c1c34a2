"""``sheaftune capture-script``: the shipped bpftrace scripts, their adaptation to a kernel,
and (where bpftrace is installed and we are root) that they compile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sheaftune.capture import scripts
from sheaftune.capture.tracefs import TracingUnavailable
from sheaftune.errors import UsageError

ALL_618 = {v[0] for v in scripts.SYMBOL_VARIANTS.values()}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "sheaftune", "capture-script", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def bpftrace_compiles(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("bpftrace")
    if exe is None:
        pytest.skip("bpftrace is not installed")
    if os.geteuid() != 0:
        pytest.skip("bpftrace needs root even for a dry run")
    script = tmp_path / "s.bt"
    script.write_text(text)
    # --emit-elf compiles without attaching (bpftrace 0.17+); --dry-run exists from 0.21.
    return subprocess.run(
        [exe, "--emit-elf", str(tmp_path / "s.elf"), str(script)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bpftrace_script_is_kmem_tsv() -> None:
    p = run_cli("bpftrace")
    assert p.returncode == 0, p.stderr
    assert p.stdout == scripts.script_text(scripts.KMEM_TSV)
    assert 'printf("# kmem-tsv/1 clock=bpftrace-nsecs\\n");' in p.stdout
    for event in ("kmalloc", "kmem_cache_alloc", "kfree", "kmem_cache_free"):
        assert f"tracepoint:kmem:{event}\n{{" in p.stdout
    assert "/str(args->name)" not in p.stdout


def test_cache_filter_on_the_named_events_only() -> None:
    p = run_cli("bpftrace", "--cache", "maple_node", "--cache", "kmalloc-*")
    assert p.returncode == 0, p.stderr
    pred = '/str(args->name) == "maple_node" || strncmp(str(args->name), "kmalloc-", 8) == 0/'
    assert p.stdout.count(pred) == 2
    assert f"tracepoint:kmem:kmem_cache_alloc\n{pred}\n{{" in p.stdout
    assert f"tracepoint:kmem:kmem_cache_free\n{pred}\n{{" in p.stdout
    assert "tracepoint:kmem:kfree\n{" in p.stdout and "tracepoint:kmem:kmalloc\n{" in p.stdout
    assert "# filter kmem_cache_alloc,kmem_cache_free: cache in maple_node,kmalloc-*" in p.stdout


def test_bad_cache_names_are_usage_errors() -> None:
    for bad in ('a"b', "kmalloc-?", "*x", ""):
        with pytest.raises(UsageError):
            scripts.kmem_tsv_script([bad])
    p = run_cli("bpftrace", "--cache", 'x"); system("id')
    assert p.returncode == 2 and p.stdout == ""
    assert len(p.stderr.strip().splitlines()) == 1


def test_option_misuse() -> None:
    assert run_cli("bpftrace", "--no-check").returncode == 2
    assert run_cli("bpftrace-prefill", "--cache", "x").returncode == 2
    assert run_cli("nope").returncode == 2


def test_prefill_script_for_618_is_the_shipped_one() -> None:
    text, notes = scripts.prefill_script(ALL_618, check_kprobes=False)
    assert text == scripts.script_text(scripts.PREFILL)
    assert notes == []


def test_prefill_script_adapts_to_older_names_and_missing_probes() -> None:
    symbols = (ALL_618 - {"kmem_cache_alloc_bulk_noprof", "__kfree_rcu_sheaf"}) | {
        "kmem_cache_alloc_bulk"
    }
    text, notes = scripts.prefill_script(symbols, check_kprobes=False)
    assert "kprobe:kmem_cache_alloc_bulk\n" in text and "_bulk_noprof" not in text
    assert "__kfree_rcu_sheaf" not in text and "@rcu_" not in text
    assert notes == ["__kfree_rcu_sheaf is not in this kernel: its probe is left out"]
    assert text.count("END\n{") == 1


def test_prefill_script_refuses_kernels_without_prefill() -> None:
    with pytest.raises(TracingUnavailable, match="lacks kmem_cache_prefill_sheaf, kmem_cache_ret"):
        scripts.prefill_script({"kmem_cache_free_bulk", "kmem_cache_alloc_bulk"}, False)


def test_prefill_cli_here() -> None:
    """On this machine: the script when kprobes and the symbols exist, else one clear line."""
    p = run_cli("bpftrace-prefill")
    if scripts.kprobes_available() and scripts.kernel_symbols(ALL_618) >= set(scripts.REQUIRED):
        assert p.returncode == 0, p.stderr
        assert "kprobe:kmem_cache_prefill_sheaf" in p.stdout
    else:
        assert p.returncode == 3 and p.stdout == ""
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and ("kprobes" in lines[0] or "lacks" in lines[0]), lines


def test_prefill_no_check_prints_the_shipped_script() -> None:
    p = run_cli("bpftrace-prefill", "--no-check")
    assert p.returncode == 0
    assert p.stdout == scripts.script_text(scripts.PREFILL)


def test_kmem_tsv_compiles(tmp_path: Path) -> None:
    p = bpftrace_compiles(scripts.kmem_tsv_script(["maple_node", "kmalloc-*"]), tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "s.elf").stat().st_size > 0


def test_prefill_compiles(tmp_path: Path) -> None:
    if not Path("/sys/kernel/btf/vmlinux").exists():
        pytest.skip("no kernel BTF: struct slab_sheaf cannot be resolved")
    try:
        text, _ = scripts.prefill_script(check_kprobes=False)
    except TracingUnavailable as e:
        pytest.skip(str(e))
    # Compiling needs BTF, not kprobes: this checks the script even where it cannot attach.
    p = bpftrace_compiles(text, tmp_path)
    assert p.returncode == 0, p.stderr
