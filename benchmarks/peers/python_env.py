"""The Python peer servers' own virtualenv, and how to start each peer.

The peers (python-socketio, Django Channels, broadcaster) need packages that
wsfleet does not (Django, Starlette, uvicorn, ...) and pin versions of their own,
so they get a separate virtualenv at ``<root>/.venv/bench-peers``, installed
from ``benchmarks/peers/requirements.txt``. A stamp file in that virtualenv
holds the sha256 of the requirements it was installed from: an edited
requirements file rebuilds the virtualenv, an unchanged one costs a file read.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from benchmarks.peers.spec import PeerScript, PeerSpec, specs

__all__ = [
    "PYTHON_PEERS",
    "PeerInstallError",
    "ensure_python_peers",
    "python_peer_specs",
]

PEERS_DIR = Path("benchmarks/peers")
REQUIREMENTS = PEERS_DIR / "requirements.txt"
VENV = Path(".venv/bench-peers")
STAMP = ".requirements.sha256"
PIP_TIMEOUT = 900.0  # seconds; a cold install downloads ~30 wheels


PYTHON_PEERS: Mapping[str, PeerScript] = {
    "python-socketio": PeerScript(PEERS_DIR / "python_socketio_peer.py", "socketio", True),
    "django-channels": PeerScript(
        PEERS_DIR / "channels_peer.py", "simple", True, always_redis=True
    ),
    "broadcaster": PeerScript(PEERS_DIR / "broadcaster_peer.py", "simple", True),
}
"""Peer name -> script; :func:`python_peer_specs` turns these into commands."""


class PeerInstallError(RuntimeError):
    """Creating the peers' virtualenv or installing into it failed; says which step."""


def ensure_python_peers(root: Path) -> Path:
    """The peers' virtualenv python, (re)building the virtualenv if it is missing or stale.

    PeerInstallError, ending with pip's last lines, if building it fails.
    """
    requirements = root / REQUIREMENTS
    venv = root / VENV
    python = venv / "bin" / "python"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = venv / STAMP
    if _stamped(stamp, digest) and python.exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    # Two processes (a test run and a benchmark) may both find the venv missing:
    # one installs while the other waits, then finds the stamp.
    with (venv.parent / ".bench-peers.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _stamped(stamp, digest) and python.exists():
            return python
        # A fresh venv each time, so a package dropped from the requirements goes too.
        _run(
            [sys.executable, "-m", "venv", "--clear", str(venv)], f"creating the virtualenv {venv}"
        )
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        if "--hash=" in requirements.read_text():
            pip.append("--require-hashes")
        _run([*pip, "-r", str(requirements)], f"pip install -r {requirements} into {venv}")
        stamp.write_text(digest + "\n")
    return python


def _stamped(stamp: Path, digest: str) -> bool:
    return stamp.exists() and stamp.read_text().strip() == digest


def python_peer_specs(root: Path, python: Path | None = None) -> dict[str, PeerSpec]:
    """A :class:`PeerSpec` per Python peer, run by ``python`` (default: the installed venv's)."""
    return specs(root, str(python or ensure_python_peers(root)), PYTHON_PEERS)


def _run(argv: list[str], what: str) -> None:
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerInstallError(f"{what} failed: {exc}") from exc
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip()).splitlines()
        tail = "\n".join(output[-15:])
        raise PeerInstallError(f"{what} failed (exit {result.returncode}):\n{tail}")
