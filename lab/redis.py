"""A private ``redis-server`` process: started on a free port, killed, restarted.

Every server here is a child process on loopback with no persistence, in its
own directory, so a lab run or a test may SIGKILL it and start it again on
the same port, empty, as a Redis restart without persistence does. The shared
Redis on 127.0.0.1:6379 is never touched.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lab.ports import free_port
from lab.system import require_program

__all__ = ["RedisServer", "ensure_redis_server", "redis_cli", "redis_server", "wait_ping"]


def ensure_redis_server() -> str:
    """Path of ``redis-server``, installing the Debian package if it is missing."""
    return require_program("redis-server", install=True)


def redis_cli(port: int, *args: str) -> str:
    """``redis-cli -p port args...``: its standard output (empty if it failed)."""
    cli = shutil.which("redis-cli") or "redis-cli"
    result = subprocess.run(
        [cli, "-p", str(port), *args], capture_output=True, text=True, timeout=30, check=False
    )
    return result.stdout


def wait_ping(port: int, timeout: float = 10.0) -> None:
    """Until a Redis on ``port`` answers PING; RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"redis-server on port {port} did not start")


@dataclass
class RedisServer:
    """One private ``redis-server`` process; ``kill()`` and ``start()`` may repeat."""

    port: int
    workdir: Path
    extra: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start on :attr:`port` (the same one after a kill) and wait for PONG."""
        workdir = self.workdir.resolve()  # redis-server runs in it: a relative --dir would miss
        args = [
            ensure_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
            *self.extra,
        ]  # fmt: skip
        log = workdir / "redis-server.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
        try:
            wait_ping(self.port)
        except RuntimeError as exc:
            self.kill()
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
            raise RuntimeError(f"{exc}; the end of its log ({log}):\n{tail}") from None
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL: the server dies at once and its data is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def cli(self, *args: str) -> str:
        return redis_cli(self.port, *args)


@contextmanager
def redis_server(*extra: str) -> Iterator[RedisServer]:
    """A started private server on a free port, killed on exit."""
    with tempfile.TemporaryDirectory(prefix="wsfleet-redis-") as tmp:
        server = RedisServer(free_port(), Path(tmp), list(extra))
        server.start()
        try:
            yield server
        finally:
            server.kill()
