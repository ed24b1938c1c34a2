"""Time the text readers against a plain Python regular-expression loop, side by side.

What a user would otherwise write is a regex per line (``trace-formats.md`` 9.1) that pulls the
same fields out of every kmem event. This script decompresses the large real capture
(``fixtures/large/build.ftrace.txt.zst``, ~715k events, 128 MB of ftrace text) to a temporary
file and times, each in a fresh process so that peak memory is its own:

* ``regex``  - the plain Python loop: spec 9.1 line regex, call_site and key=value fields,
  integers parsed, one tuple per event;
* ``cold``   - ``FtraceReader`` with an empty numba cache (compilation included), once;
* ``warm``   - ``FtraceReader`` with the cache filled: what every later run costs,
  end to end (numba import and cache load included, since the reader imports it lazily).

Runs alternate (regex, warm, regex, warm, ...) so that both see the same machine load; the
medians, their ratio, events/s and peak RSS are printed. With ``trace-cmd`` on PATH it does
the same for ``trace-cmd report`` text made from ``build.v7zstd.dat`` (spec 9.2 regex against
``TraceCmdReportReader``).

Usage: ``python benchmarks/bench_text_readers.py [--repeat N] [--no-report] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SHEAFTUNE_SHARED", ROOT.parent / "shared"))
LARGE = SHARED / "fixtures" / "large"

KMEM = frozenset(
    ("kmalloc", "kmalloc_node", "kfree", "kmem_cache_alloc", "kmem_cache_alloc_node",
     "kmem_cache_free")
)  # fmt: skip

# --- the plain Python loops (what the readers replace) --------------------------------------

FTRACE_LINE = re.compile(
    r"^(?P<comm>.*)-(?P<pid>\d+)\s+(?:\(\s*(?P<tgid>[-\d]+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[.a-zA-Z0-9]{4,5})\s+)?(?P<ts>\d+(?:\.\d+)?):\s(?P<event>\w+):\s(?P<rest>.*)$"
)
REPORT_LINE = re.compile(
    r"^\s*(?P<comm>.*)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\](?:-0x(?P<rawflags>[0-9a-f]+))?\s+"
    r"(?:(?P<flags>[.a-zA-Z0-9]{5})\s+)?(?P<ts>\d+(?:\.\d+)?):\s(?P<event>\w+):\s+(?P<rest>.*)$"
)
SITE = re.compile(r"call_site=(\S+)(?: \[([^\]]+)\])?")
PLUGIN = re.compile(r"^\(\S+\) ")
KV = re.compile(r"(\w+)=(\S+)")


def regex_loop(path: str, report: bool) -> int:
    line_re = REPORT_LINE if report else FTRACE_LINE
    match = line_re.match
    site_match = SITE.search
    kv = KV.findall
    out: list[tuple[Any, ...]] = []
    append = out.append
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = match(line.rstrip("\n"))
            if m is None:
                continue
            event = m.group("event")
            if event not in KMEM:
                continue
            rest = m.group("rest")
            if report:
                rest = PLUGIN.sub("", rest, count=1)
            s = site_match(rest)
            site = s.group(1).split("/", 1)[0] if s else None
            fields = dict(kv(rest[s.end() :] if s else rest))
            sec, _, frac = m.group("ts").partition(".")
            ts_ns = int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")) if frac else int(sec)
            p = fields.get("ptr", "0")
            ptr = 0 if p == "(nil)" else int(p, 16)
            append(
                (
                    ts_ns,
                    int(m.group("cpu")),
                    event,
                    ptr,
                    fields.get("name"),
                    site,
                    int(fields.get("bytes_req", 0)),
                    int(fields.get("bytes_alloc", 0)),
                    fields.get("gfp_flags"),
                    int(fields.get("node", -1)),
                    int(m.group("pid")),
                    m.group("comm").lstrip(),
                )
            )
    return len(out)


def child(kind: str, path: str) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    t0 = time.perf_counter()
    c0 = time.process_time()
    if kind in ("regex", "regex-report"):
        n = regex_loop(path, report=kind == "regex-report")
    else:
        from sheaftune.readers import read_trace

        fmt = "trace-cmd-report" if kind == "report" else "ftrace"
        n = len(read_trace(path, fmt))
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0  # all threads: what the work costs, whatever the load
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {"kind": kind, "seconds": seconds, "cpu": cpu, "events": n, "peak_rss_mb": rss_mb}
        )
    )


# --- the driver -----------------------------------------------------------------------------


def run_child(kind: str, path: str, cache_dir: str) -> dict[str, Any]:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, path],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - t0
    return result


def compare(
    label: str, path: str, regex_kind: str, ours_kind: str, repeat: int, cache_dir: str
) -> dict[str, Any]:
    """Regex loop against our reader; the first call of a session also times a cold run
    (the kernels are shared by the text readers, so only the first one compiles)."""
    size_mb = os.path.getsize(path) / 1e6
    print(f"\n== {label}: {path} ({size_mb:.0f} MB)", flush=True)
    cold: dict[str, Any] | None = None
    if not os.path.isdir(cache_dir):
        cold = run_child(ours_kind, path, cache_dir)
        print(f"  ours cold (empty numba cache, compiling): {cold['seconds']:.2f} s", flush=True)
    regex_runs, warm_runs = [], []
    for i in range(repeat):
        regex_runs.append(run_child(regex_kind, path, cache_dir))
        warm_runs.append(run_child(ours_kind, path, cache_dir))
        print(
            f"  run {i + 1}: regex {regex_runs[-1]['seconds']:.2f} s "
            f"(cpu {regex_runs[-1]['cpu']:.2f}), ours {warm_runs[-1]['seconds']:.2f} s "
            f"(cpu {warm_runs[-1]['cpu']:.2f}); load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    if regex_runs[0]["events"] != warm_runs[0]["events"]:
        print(
            f"  !! event counts differ: regex {regex_runs[0]['events']}, "
            f"ours {warm_runs[0]['events']}"
        )
    regex_s = statistics.median(r["seconds"] for r in regex_runs)
    warm_s = statistics.median(r["seconds"] for r in warm_runs)
    regex_cpu = statistics.median(r["cpu"] for r in regex_runs)
    warm_cpu = statistics.median(r["cpu"] for r in warm_runs)
    # the run of each pair nearest in time: the fairest single comparison on a busy machine
    pair_ratios = [w["seconds"] / r["seconds"] for r, w in zip(regex_runs, warm_runs, strict=True)]
    events = warm_runs[0]["events"]
    res = {
        "input": path,
        "input_mb": round(size_mb, 1),
        "events": events,
        "regex_seconds": round(regex_s, 3),
        "ours_warm_seconds": round(warm_s, 3),
        "ours_cold_seconds": round(cold["seconds"], 3) if cold else None,
        "ratio_ours_over_regex": round(warm_s / regex_s, 3),
        "ratio_per_pair": [round(x, 3) for x in pair_ratios],
        "regex_cpu_seconds": round(regex_cpu, 3),
        "ours_cpu_seconds": round(warm_cpu, 3),
        "cpu_ratio_ours_over_regex": round(warm_cpu / regex_cpu, 3),
        "speedup": round(regex_s / warm_s, 2),
        "regex_events_per_s": round(events / regex_s),
        "ours_events_per_s": round(events / warm_s),
        "regex_peak_rss_mb": round(max(r["peak_rss_mb"] for r in regex_runs)),
        "ours_peak_rss_mb": round(max(r["peak_rss_mb"] for r in warm_runs)),
        "ours_warm_process_seconds": round(
            statistics.median(r["process_seconds"] for r in warm_runs), 3
        ),
    }
    print(
        f"  regex loop : {regex_s:6.2f} s  {res['regex_events_per_s']:>9,} events/s  "
        f"peak RSS {res['regex_peak_rss_mb']} MB\n"
        f"  ours (warm): {warm_s:6.2f} s  {res['ours_events_per_s']:>9,} events/s  "
        f"peak RSS {res['ours_peak_rss_mb']} MB  (whole process "
        f"{res['ours_warm_process_seconds']:.2f} s)\n"
        f"  ours / regex = {res['ratio_ours_over_regex']:.3f}  ({res['speedup']:.1f}x faster; "
        f"per pair {', '.join(f'{x:.3f}' for x in pair_ratios)}); "
        f"CPU time {warm_cpu:.2f} s vs {regex_cpu:.2f} s = {warm_cpu / regex_cpu:.3f}"
        + (f"\n  cold first run (numba compiling) {cold['seconds']:.2f} s" if cold else "")
    )
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-report", action="store_true", help="skip the trace-cmd report part")
    ap.add_argument("--json", action="store_true", help="print the results as JSON at the end")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0
    src = LARGE / "build.ftrace.txt.zst"
    if not src.exists():
        print(f"{src} is absent: the shared fixtures are needed", file=sys.stderr)
        return 2
    import zstandard

    work = tempfile.mkdtemp(prefix="sheaftune-bench-")
    results = []
    try:
        text = os.path.join(work, "build.ftrace.txt")
        with open(src, "rb") as fi, open(text, "wb") as fo:
            zstandard.ZstdDecompressor().copy_stream(fi, fo)
        cache_dir = os.path.join(work, "numba-cache")
        results.append(compare("ftrace text", text, "regex", "ftrace", args.repeat, cache_dir))
        dat = LARGE / "build.v7zstd.dat"
        if not args.no_report and shutil.which("trace-cmd") and dat.exists():
            report = os.path.join(work, "build.report.txt")
            with open(report, "wb") as fo:
                subprocess.run(
                    ["trace-cmd", "report", "-i", str(dat)],
                    stdout=fo,
                    stderr=subprocess.DEVNULL,
                    check=True,
                )
            results.append(
                compare(
                    "trace-cmd report text",
                    report,
                    "regex-report",
                    "report",
                    args.repeat,
                    cache_dir,
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
