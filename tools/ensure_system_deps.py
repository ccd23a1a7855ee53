"""Make sure the system programs the tests drive are installed.

The test suite uses real servers, never mocks: a private ``redis-server`` per
test session, and for the end-to-end tests and the fleet lab (``make lab``) a
real ``nginx`` (and, with ``--balancer haproxy``, ``haproxy``) in front of the
nodes, each run as the current user with a private directory; and ``node`` with
``npm`` for the offline validation of deploy/ (tools/deploy_tools.py installs its
pinned npm packages). Where a program
is missing and this runs as root with apt-get available, it is installed;
otherwise this fails naming the package, so a missing server is never
silently skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

PROGRAMS = {
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",
    "nginx": "nginx",
    "haproxy": "haproxy",
    "node": "nodejs",
    "npm": "npm",
}


def _installed(program: str) -> bool:
    # nginx and haproxy live in /usr/sbin, which a non-root PATH may lack.
    return bool(shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin"))


def main() -> int:
    missing = sorted({pkg for prog, pkg in PROGRAMS.items() if not _installed(prog)})
    if not missing:
        return 0
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {' '.join(missing)} with apt-get", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=False, env=env)
        done = subprocess.run(["apt-get", "install", "-y", "-q", *missing], env=env)
        if done.returncode == 0:
            return 0
    print(
        f"missing system packages: {' '.join(missing)} "
        f"(install them, e.g. `sudo apt-get install {' '.join(missing)}`)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
