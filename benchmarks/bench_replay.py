"""Replay speed: the reference model against the fast engine, and a capacity sweep.

Prints plan commands per second of both engines on the same input and their ratio:

1. the large fixture's biggest cache (``anon_vma_chain`` of ``build.v7zstd.dat``), both kernels;
2. a generated plan of 20 million commands (allocations and frees on 8 CPUs over 2 nodes,
   remote frees, kfree_rcu and grace periods); the reference runs only its first
   ``--ref-commands`` commands (it would take minutes), its rate stands for the whole;
3. the sweep of the bucket capacities (4, 12, 28, 60, 124, 252, 508) plus each cache's kernel
   capacity over every cache of the large fixture (``run_many``, threads) against one
   single-capacity pass, both including the trace's load, normalisation and plan building as
   ``analyze`` does, and replay-only.

Times are wall clock (best of ``--repeat``) and, for single-threaded replays, CPU time of the
process too (a loaded machine inflates wall time). The first call compiles or loads the engine
from its on-disk cache; that call is reported separately and excluded from the rates.

    .venv/bin/python benchmarks/bench_replay.py [--commands 20000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from sheaftune.model import fast
from sheaftune.model.plan import Cmd, Plan, PlanBuilder
from sheaftune.model.replay import run_reference
from sheaftune.params import ModelParams

LARGE = Path(__file__).resolve().parents[2] / "shared/fixtures/large/build.v7zstd.dat"
BUCKETS = (4, 12, 28, 60, 124, 252, 508)


def timed(fn, repeat: int = 1):  # type: ignore[no-untyped-def]
    """Best wall and CPU seconds of ``repeat`` calls, and the last result."""
    best_wall = best_cpu = float("inf")
    out = None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best_wall, best_cpu, out


def rate(n: int, s: float) -> str:
    return f"{n / s / 1e6:8.2f} M/s" if s > 0 else "     inf"


def synthetic_plan(n_commands: int, cpus: int = 8, seed: int = 0) -> Plan:
    """Allocations and frees (geometric lifetimes, 20% freed on another CPU, 5% with
    kfree_rcu), a grace period every 10 ms of plan time."""
    rng = np.random.default_rng(seed)
    n_obj = n_commands // 2
    pb = PlanBuilder()
    slots = pb.new_objects(n_obj)
    t_alloc = np.arange(n_obj, dtype=np.int64) * 200  # one allocation every 200 ns
    life = rng.geometric(1 / 64, n_obj).astype(np.int64) * 200 + 100
    cpu_a = rng.integers(0, cpus, n_obj).astype(np.uint16)
    move = rng.random(n_obj) < 0.2
    cpu_f = np.where(move, rng.integers(0, cpus, n_obj), cpu_a).astype(np.uint16)
    rcu = rng.random(n_obj) < 0.05
    seq = 2 * np.arange(n_obj, dtype=np.int64)
    pb.add(t_alloc, seq, Cmd.ALLOC, cpu_a, slots, 1, -1)
    pb.add(t_alloc + life, seq + 1, np.where(rcu, Cmd.KFREE_RCU, Cmd.FREE), cpu_f, slots)
    t_end = int(t_alloc[-1] + life.max())
    gps = np.arange(10_000_000, t_end, 10_000_000, dtype=np.int64)
    pb.add(gps, np.full(len(gps), -1), Cmd.RCU_GP, np.zeros(len(gps), dtype=np.uint16))
    return pb.build()


def head(plan: Plan, n: int) -> Plan:
    return Plan(
        plan.ts_ns[:n], plan.cmd[:n], plan.cpu[:n], plan.a[:n], plan.b[:n], plan.c[:n],
        plan.aux, plan.n_objects, plan.n_sheaves,
    )  # fmt: skip


def compare(label: str, plan: Plan, params: ModelParams, ref_plan: Plan, repeat: int) -> None:
    rw, rc, _ = timed(lambda: run_reference(ref_plan, params))
    fw, fc, _ = timed(lambda: fast.run(plan, params), repeat)
    n_ref, n = len(ref_plan), len(plan)
    print(
        f"{label:34s} {n:>10,} cmds  reference {rate(n_ref, rw)} (cpu {rate(n_ref, rc)})"
        f"  fast {rate(n, fw)} (cpu {rate(n, fc)})  ratio {n / fw / (n_ref / rw):6.0f}x"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", type=int, default=20_000_000)
    ap.add_argument("--ref-commands", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--trace", type=Path, default=LARGE)
    args = ap.parse_args()

    from sheaftune.analysis.pipeline import load
    from sheaftune.analysis.tracereplay import build_plan, params_for
    from sheaftune.normalize import normalize

    cold = fast.needs_compile()
    tiny = synthetic_plan(1000)
    w, _, _ = timed(lambda: fast.run(tiny, ModelParams(cpus=8, cpu_node=(0,) * 8)))
    print(f"engine {'compile' if cold else 'load from the on-disk cache'}: {w:.2f} s")

    def analyze_load():  # type: ignore[no-untyped-def]
        n = normalize(load(str(args.trace)))
        t = n.table
        ids = t.cache_id[t.cache_id >= 0]
        counts = np.bincount(ids, minlength=len(t.caches))
        caches = [t.caches[i] for i in np.argsort(-counts, kind="stable") if counts[i]]
        return n, caches, [build_plan(n, c) for c in caches]

    lw, _, (norm, caches, plans) = timed(analyze_load)
    events = len(norm.table)
    print(f"{args.trace.name}: {events:,} events, {len(caches)} caches; load+normalize+plans "
          f"{lw:.2f} s")  # fmt: skip

    # 1. the biggest cache, both kernels
    for kernel in ("7.3", "6.18"):
        params = params_for(norm, caches[0], kernel)
        compare(f"{caches[0]} {kernel} cap {params.sheaf_capacity}", plans[0], params,
                plans[0], args.repeat)  # fmt: skip

    # 2. a generated plan
    w, _, big = timed(lambda: synthetic_plan(args.commands))
    print(f"generated plan: {len(big):,} commands in {w:.1f} s")
    for kernel, cap in (("7.3", 28), ("7.3", 4), ("6.18", 32)):
        params = ModelParams(
            kernel=kernel, sheaf_capacity=cap, object_size=256, objects_per_slab=16, cpus=8,
            nodes=2, cpu_node=(0, 0, 0, 0, 1, 1, 1, 1),
        )  # fmt: skip
        compare(f"generated {kernel} cap {cap} (ref: first {args.ref_commands:,})", big, params,
                head(big, args.ref_commands), args.repeat)  # fmt: skip
    s = fast._State(big, params)
    state_bytes = sum(v.nbytes for v in vars(s).values() if isinstance(v, np.ndarray))
    slot_bytes = s.objs.nbytes + s.pslot.nbytes
    plan_bytes = sum(x.nbytes for x in (big.ts_ns, big.cmd, big.cpu, big.a, big.b, big.c))
    print(f"engine state at start: {(state_bytes - slot_bytes) / 1e3:.0f} kB of pools "
          f"+ {slot_bytes / 1e6:.0f} MB slot table (one handle per plan object; the plan "
          f"itself is {plan_bytes / 1e6:.0f} MB)")  # fmt: skip
    del big, s

    # 3. sweep: every cache of the trace at the bucket capacities (+ the kernel's own)
    kernel = "7.3"
    base = [params_for(norm, c, kernel) for c in caches]
    n_cmds = sum(len(p) for p in plans)

    def single() -> None:
        for plan, p in zip(plans, base, strict=True):
            fast.run(plan, p)

    def sweep() -> None:
        for plan, p in zip(plans, base, strict=True):
            caps = sorted({*BUCKETS, p.sheaf_capacity})
            fast.run_many(plan, [dataclasses.replace(p, sheaf_capacity=c) for c in caps])

    sw, sc, _ = timed(single, args.repeat)
    ww, _, _ = timed(sweep, args.repeat)
    n_caps = len(BUCKETS) + 1
    print(f"all {len(caches)} caches, {n_cmds:,} commands, kernel {kernel}:")
    print(f"  single capacity replay {sw:.3f} s ({rate(n_cmds, sw)}), sweep of {n_caps} "
          f"capacities {ww:.3f} s ({rate(n_cmds * n_caps, ww)}): {ww / sw:.2f}x")  # fmt: skip
    print(f"  with load+normalize+plans as analyze does: single {lw + sw:.2f} s, "
          f"sweep {lw + ww:.2f} s: {(lw + ww) / (lw + sw):.2f}x (target <= 3x)")  # fmt: skip


if __name__ == "__main__":
    main()
