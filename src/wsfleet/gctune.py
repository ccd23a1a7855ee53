"""Garbage collector settings for a server holding many long-lived objects.

CPython's cyclic collector runs a young-generation pass every 700 net allocations and
an older one every ten of those. A node with thousands of connections allocates at that
pace on every delivery (a handle per flush, a frame per write), and each older pass walks
every long-lived object of every connection: measured on a node with 5,000 clients in
1,000 channels, the collector took about a third of the CPU per delivery
(docs/topics/performance.md). Almost everything a node allocates is freed by reference
counting, so collecting cycles less often costs little memory.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "freeze_startup", "tune"]

THRESHOLDS = (50_000, 50, 100)
"""Allocations between young passes, young passes per middle pass, middle per full."""


def tune() -> None:
    """Set :data:`THRESHOLDS` for this process."""
    gc.set_threshold(*THRESHOLDS)


def freeze_startup() -> None:
    """Collect once, then keep everything allocated so far out of every later pass.

    Called when the node has started: its modules, settings and listeners live as long
    as the process, and a full pass need not walk them again.
    """
    gc.collect()
    gc.freeze()
