"""The Node peers' packages, and how to start the Node and picows-raw peers.

The Node peers (socket.io, ws) run from ``benchmarks/peers/node`` with the
exact versions of its ``package-lock.json``, installed by ``npm ci`` into its
``node_modules``. A stamp file in ``node_modules`` holds the sha256 of the
lock it was installed from: an edited lock reinstalls, an unchanged one costs
a file read. The picows-raw peer needs nothing beyond wsfleet's own
virtualenv, so it runs with the interpreter running this code.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from benchmarks.peers.spec import PeerScript, PeerSpec, specs

__all__ = [
    "NODE_PEERS",
    "NodeInstallError",
    "ensure_node_peers",
    "node_peer_specs",
    "picows_raw_spec",
]

NODE_DIR = Path("benchmarks/peers/node")
PICOWS_RAW_SCRIPT = Path("benchmarks/peers/picows_raw_peer.py")
STAMP = ".package-lock.sha256"
MIN_NODE_MAJOR = 20
NPM_TIMEOUT = 600.0  # seconds; a cold install downloads ~40 small packages


NODE_PEERS: Mapping[str, PeerScript] = {
    "node-socket.io": PeerScript(NODE_DIR / "socketio_peer.js", "socketio", True),
    "node-ws": PeerScript(NODE_DIR / "ws_peer.js", "simple", False),
}
"""Peer name -> script; :func:`node_peer_specs` turns these into commands."""


class NodeInstallError(RuntimeError):
    """Node is missing or too old, or ``npm ci`` failed; the message says what to do."""


def ensure_node_peers(root: Path) -> Path:
    """The ``node`` binary, after installing the peers' packages if the lock changed."""
    node = _require("node")
    _check_version(node)
    directory = root / NODE_DIR
    digest = hashlib.sha256((directory / "package-lock.json").read_bytes()).hexdigest()
    stamp = directory / "node_modules" / STAMP
    if stamp.exists() and stamp.read_text().strip() == digest:
        return node
    # npm ci empties node_modules first, so a failed install never leaves a stamp behind.
    npm = _require("npm")
    _run([str(npm), "ci", "--no-audit", "--no-fund"], directory, f"npm ci in {directory}")
    stamp.write_text(digest + "\n")
    return node


def node_peer_specs(root: Path, node: Path | None = None) -> dict[str, PeerSpec]:
    """A :class:`PeerSpec` per Node peer, run by ``node`` (default: installing first)."""
    return specs(root, str(node or ensure_node_peers(root)), NODE_PEERS)


def picows_raw_spec(root: Path) -> PeerSpec:
    """The picows ceiling, run by this interpreter (wsfleet's virtualenv has picows)."""
    return PeerSpec(
        name="picows-raw",
        protocol="simple",
        command=[sys.executable, str(root / PICOWS_RAW_SCRIPT)],
        two_node=False,
        publish_port=True,
    )


def _require(program: str) -> Path:
    path = shutil.which(program)
    if path is None:
        raise NodeInstallError(
            f"{program} is required for the Node peers: install the Debian packages "
            "'nodejs' and 'npm' (apt-get install -y nodejs npm; Node >= "
            f"{MIN_NODE_MAJOR}, e.g. from NodeSource if the distribution's is older)"
        )
    return Path(path)


def _check_version(node: Path) -> None:
    try:
        version = subprocess.run(
            [str(node), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise NodeInstallError(f"{node} --version failed: {exc}") from exc
    match = re.fullmatch(r"v(\d+)\..*", version)
    if match is None or int(match.group(1)) < MIN_NODE_MAJOR:
        raise NodeInstallError(
            f"the Node peers need Node >= {MIN_NODE_MAJOR}, {node} is {version or 'unknown'}: "
            "upgrade the Debian package 'nodejs'"
        )


def _run(argv: list[str], cwd: Path, what: str) -> None:
    try:
        result = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NodeInstallError(f"{what} failed: {exc}") from exc
    if result.returncode != 0:
        summary = _summary(result.stderr.strip() or result.stdout)
        raise NodeInstallError(f"{what} failed (exit {result.returncode}):\n{summary}")


def _summary(output: str, head: int = 10) -> str:
    """npm's first error lines and its last (the debug log's path).

    npm states the cause first and may follow it with a page of usage text.
    """
    lines = [
        line
        for line in output.splitlines()
        if line.strip() not in ("", "npm error") and not line.startswith("npm warn")
    ]
    if len(lines) <= head + 1:
        return "\n".join(lines)
    return "\n".join([*lines[:head], "...", lines[-1]])
