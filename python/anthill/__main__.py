"""``python -m anthill``: the command line (see :mod:`anthill.cli`)."""

from anthill.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
