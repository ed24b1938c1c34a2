"""Entry point of ``python -m sheaftune`` and of the ``sheaftune`` console script.

``run`` imports the CLI inside a guard, so a Ctrl-C during start-up (importing click, rich,
numpy) ends with the documented one line and exit 130 rather than a traceback.
"""

import os
import sys


def run() -> None:
    # sheaftune does no linear algebra worth a thread pool, yet numpy's OpenBLAS starts a
    # thread per core at import: on a short run that is a third of the CPU time, taken from
    # the reader's and the replays' threads. The user's own setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # Nor transparent huge pages, which numpy advises for every array of 4 MiB or more: on a
    # VM whose host takes back the memory a guest frees (Firecracker, measured), a huge page
    # first touched costs 3-6 ms, and a 715k-event analyze run right after another program
    # spent 0.4-0.5 s of system time faulting them, against 0.1 s in 4 KiB pages (see
    # sheaftune.heap). Where the host still holds the memory they save a few ms at most.
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    # Python's cycle collector every 100,000 new container objects rather than 700: a run
    # allocates some 40,000 objects that live until it ends (modules, the analysis) and next to
    # no cyclic garbage, yet the default made ~60 collections rescan them (~10 ms of a JSON
    # analysis); from the first import on (click's and numpy's made another twenty). Long runs
    # (fleet, many traces) still collect, in larger batches. (Only the program: a program that
    # imports sheaftune keeps its own setting.)
    import gc

    gc.set_threshold(100_000, *gc.get_threshold()[1:])
    try:
        # (the compiled code of the modules imported from here on comes from one mapped
        # file: sheaftune.module_code)
        from sheaftune import module_code

        module_code.install()
        # (numpy is imported without its docstring modules and typing package, its
        # libraries loaded ahead on the idle core: sheaftune.npstart)
        from sheaftune import npstart

        npstart.skip_docs()
        npstart.skip_typing()
        npstart.defer()
        libraries = npstart.libraries(sys.argv[1:])
        # (first: the heap's pages are faulted on the idle core while the imports below run)
        # (then, on the same core, the trace.dat's mapping is populated for the reader)
        from sheaftune import heap, premap

        preload = (lambda: npstart.load(libraries)) if libraries else None
        if not heap.warm(sys.argv[1:], then=premap.prepare(sys.argv[1:]), first=preload):
            npstart.start(libraries)
        from sheaftune import zstd_prefetch

        zstd_prefetch.start(sys.argv[1:])
        from sheaftune import dataclass_code, regex_code

        dataclass_code.install()
        regex_code.install()
        from sheaftune.cli import main

        if libraries:
            # (the command imports numpy first thing: now, so that its stand-ins are settled)
            import numpy  # noqa: F401
        npstart.settle()
    except KeyboardInterrupt:
        sys.stderr.write("sheaftune: error: interrupted\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
