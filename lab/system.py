"""The system programs the lab runs, and what to do when one is missing.

The lab never skips a part: a missing ``nginx``, ``haproxy`` or ``redis-server``
is an error naming the Debian package to install (``make setup`` installs all of
them when run as root, through ``tools/ensure_system_deps.py``).
"""

from __future__ import annotations

import shutil
import subprocess

__all__ = ["PACKAGES", "MissingProgram", "require_program"]

PACKAGES = {
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",
    "nginx": "nginx",
    "haproxy": "haproxy",
}
"""Program -> the Debian package that provides it."""


class MissingProgram(RuntimeError):
    """A program the lab needs is not installed; the message names its package."""


def require_program(program: str, *, install: bool = False) -> str:
    """The path of ``program``; MissingProgram (naming the package) if it is not installed.

    With ``install`` the package is first installed with apt-get (which works
    when running as root, as on the test machines).
    """
    path = shutil.which(program) or _sbin(program)
    if path:
        return path
    package = PACKAGES.get(program, program)
    problem = ""
    if install:
        try:
            subprocess.run(
                ["apt-get", "install", "-y", package],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=300,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            problem = f"; automatic install failed: {exc}"
        path = shutil.which(program) or _sbin(program)
        if path:
            return path
    raise MissingProgram(
        f"{program} is required: install the '{package}' package "
        f"(apt-get install -y {package}, or `make setup` as root){problem}"
    )


def _sbin(program: str) -> str | None:
    # nginx and haproxy live in /usr/sbin, which a non-root PATH may lack.
    for directory in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        found = shutil.which(program, path=directory)
        if found:
            return found
    return None
