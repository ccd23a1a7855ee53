"""The collector settings a node runs with (src/wsfleet/gctune.py).

Checked in a child interpreter: the test process's own collector stays as it was.
"""

from __future__ import annotations

import subprocess
import sys

from wsfleet.gctune import THRESHOLDS

PROBE = """
import gc
from wsfleet import gctune
before = gc.get_freeze_count()
gctune.tune()
gctune.freeze_startup()
print(gc.get_threshold(), before, gc.get_freeze_count())
"""


def test_tune_sets_the_thresholds_and_freeze_keeps_startup_objects_out_of_passes() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split(")")
    assert out[0] + ")" == str(THRESHOLDS)
    before, after = (int(n) for n in out[1].split())
    assert before == 0
    assert after > 1000  # the modules, settings and the like a node starts with

