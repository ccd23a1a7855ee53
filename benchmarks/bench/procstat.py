"""What a server process costs, read from ``/proc`` (Linux), and CPU pinning.

The load generator measures servers from outside, the way an operator would: resident
memory (VmRSS) and CPU time (utime + stime) of the process and of its children.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

__all__ = ["TICKS", "cpu_seconds", "pin", "raise_nofile", "rss_bytes", "split_cpus"]

TICKS = os.sysconf("SC_CLK_TCK")

NOFILE = 200_000
"""Descriptors each benchmark process may open: 20,000+ connections need as many."""


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        out.extend(int(c) for c in children)
    return out


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            todo.extend(_children(current))
        except OSError:
            continue
    return pids


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, bytes."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def cpu_seconds(pid: int, *, tree: bool = True) -> float:
    """CPU time (user + system) of ``pid`` and, with ``tree``, its live descendants, seconds."""
    ticks = 0
    for p in _tree(pid) if tree else [pid]:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces: fields are counted after its closing ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / TICKS


def split_cpus() -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, load generator CPUs): one core each when there are two or more.

    With one core nothing is pinned (both None) and the report says so.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def pin(cpus: set[int] | None, pid: int = 0) -> None:
    """Pin ``pid`` (0: this process) to ``cpus``; None leaves it alone."""
    if cpus:
        os.sched_setaffinity(pid, cpus)


def raise_nofile(limit: int = NOFILE) -> int:
    """Raise this process's descriptor limit as far as allowed; returns the soft limit."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for wanted_hard in (max(hard, limit), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, wanted_hard), wanted_hard))
            break
        except (ValueError, OSError):
            continue  # only root may raise the hard limit
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
