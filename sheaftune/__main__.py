"""``python -m sheaftune``: the same entry point as the ``sheaftune`` console script."""

from sheaftune.cli import main

if __name__ == "__main__":
    main()
