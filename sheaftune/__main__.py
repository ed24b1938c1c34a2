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
    try:
        # (first: the heap's pages are faulted on the idle core while the imports below run)
        from sheaftune import heap

        heap.warm(sys.argv[1:])
        from sheaftune import zstd_prefetch

        zstd_prefetch.start(sys.argv[1:])
        from sheaftune import dataclass_code

        dataclass_code.install()
        from sheaftune.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("sheaftune: error: interrupted\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
