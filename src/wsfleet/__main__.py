"""``python -m wsfleet``: the same as the ``wsfleet`` command."""

import sys

from wsfleet.cli import main

if __name__ == "__main__":
    sys.exit(main())
