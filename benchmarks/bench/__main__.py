"""``python -m benchmarks.bench``: the same as ``wsfleet bench``."""

import sys

from benchmarks.bench.cli import main

sys.exit(main())
