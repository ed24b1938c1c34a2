"""Entry point of ``python -m sheaftune`` and of the ``sheaftune`` console script.

``run`` imports the CLI inside a guard, so a Ctrl-C during start-up (importing click, rich,
numpy) ends with the documented one line and exit 130 rather than a traceback.
"""

import sys


def run() -> None:
    try:
        from sheaftune.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("sheaftune: error: interrupted\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
