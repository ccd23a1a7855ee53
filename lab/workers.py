"""The lab's SDK clients spread over worker processes.

One Python process cannot drive thousands of SDK clients and still read every
publication on time, so the lab splits its clients between workers, each an
OS process running an asyncio loop with its share (:mod:`lab.clients`).

The parent talks to each worker over its standard streams, one JSON document
per line:

* parent -> worker: first ``{"spec": {...}, "records": "<path>"}``, later
  ``{"stop": true, "last_seq": N, "settle_timeout": S}``;
* worker -> parent: ``{"event": "started"}``, ``{"event": "ready"}`` (every
  client subscribed once), ``{"event": "done"}`` once its records (JSON, one
  list of client records) are written to the given path.

A worker whose parent goes away (its standard input closes) stops at once.
Its standard error (the SDK's own logging) goes to ``worker-<i>.log``.

Run as ``python -m lab.workers`` (by :class:`ClientWorkers`, not by hand).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from lab.clients import ClientSpec, run_clients

__all__ = ["ClientWorkers", "WorkerFailed"]

REPO = Path(__file__).resolve().parent.parent
"""Where ``python -m lab.workers`` is run from (the ``lab`` package's parent)."""


class WorkerFailed(RuntimeError):
    """A worker exited or did not answer in time; the message ends with its log."""


class _Worker:
    def __init__(self, index: int, spec: ClientSpec, workdir: Path) -> None:
        self.index = index
        self.spec = spec
        self.records_path = workdir / f"worker-{index}.json"
        self.log_path = workdir / f"worker-{index}.log"
        self.process: asyncio.subprocess.Process | None = None
        self.events: dict[str, asyncio.Event] = {
            name: asyncio.Event() for name in ("started", "ready", "done")
        }
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "lab.workers",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                cwd=REPO,
            )
        self._send({"spec": dataclasses.asdict(self.spec), "records": str(self.records_path)})
        self._reader = asyncio.create_task(self._read())

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            with contextlib.suppress(ValueError):
                event = json.loads(line).get("event", "")
                if event in self.events:
                    self.events[event].set()

    async def wait(self, event: str, timeout: float) -> None:
        """Until the worker reports ``event``; WorkerFailed if it exits or time runs out."""
        assert self.process is not None
        waiter = asyncio.ensure_future(self.events[event].wait())
        exited = asyncio.ensure_future(self.process.wait())
        done, _ = await asyncio.wait(
            [waiter, exited], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        exited.cancel()
        if self.events[event].is_set():
            return
        why = "exited" if exited in done else f"did not report {event!r} within {timeout} s"
        raise WorkerFailed(f"client worker {self.index} {why}\n{self.log_tail()}")

    async def stop(self, last_seq: int, settle_timeout: float) -> list[dict[str, Any]]:
        self._send({"stop": True, "last_seq": last_seq, "settle_timeout": settle_timeout})
        await self.wait("done", settle_timeout + 60)
        assert self.process is not None and self.process.stdin is not None
        await self.process.wait()
        if self._reader is not None:
            await self._reader
        self.process.stdin.close()
        records: list[dict[str, Any]] = json.loads(self.records_path.read_text())
        return records

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    def log_tail(self, lines: int = 30) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError as exc:
            return f"[worker {self.index}: no log: {exc}]"
        return f"---- client worker {self.index} log, last {len(tail)} lines:\n" + "\n".join(tail)


class ClientWorkers:
    """``total`` SDK clients split evenly between ``workers`` processes.

    ``spec`` is the template: each worker gets its ``first``/``count`` share and
    its share of ``connect_rate`` (clients started per second, lab-wide).
    """

    def __init__(
        self, spec: ClientSpec, *, total: int, workers: int, connect_rate: float, workdir: Path
    ) -> None:
        workers = max(1, min(workers, total))
        self.total = total
        self.workers: list[_Worker] = []
        first = 0
        for i in range(workers):
            count = total // workers + (1 if i < total % workers else 0)
            share = dataclasses.replace(
                spec, first=first, count=count, connect_rate=connect_rate / workers
            )
            self.workers.append(_Worker(i, share, workdir))
            first += count

    async def start(self) -> None:
        for worker in self.workers:
            await worker.start()

    async def wait_ready(self, timeout: float) -> None:
        """Until every client has subscribed once; WorkerFailed otherwise."""
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            await worker.wait("ready", max(0.1, deadline - time.monotonic()))

    async def stop(self, *, last_seq: int = -1, settle_timeout: float = 0) -> list[dict[str, Any]]:
        """Stop every client (after the settle wait); all records, ordered by client."""
        parts = await asyncio.gather(*(w.stop(last_seq, settle_timeout) for w in self.workers))
        return sorted((r for part in parts for r in part), key=lambda r: int(r["index"]))

    def kill(self) -> None:
        for worker in self.workers:
            worker.kill()

    def logs(self) -> str:
        return "\n".join(worker.log_tail() for worker in self.workers)


# -- the worker process ----------------------------------------------------------------


async def _worker_main() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    first = json.loads(await reader.readline())
    spec = ClientSpec.from_json(first["spec"])
    stop: asyncio.Future[dict[str, Any]] = loop.create_future()

    async def listen() -> None:
        while line := await reader.readline():
            message = json.loads(line)
            if message.get("stop") and not stop.done():
                stop.set_result(message)
        if not stop.done():  # the parent is gone
            stop.set_result({})

    listener = asyncio.create_task(listen())
    records = await run_clients(spec, stop, _report)
    text = json.dumps(records, separators=(",", ":"))
    await asyncio.to_thread(Path(first["records"]).write_text, text)
    _report({"event": "done"})
    listener.cancel()
    return 0


def _report(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_worker_main())
    return uvloop.run(_worker_main())


if __name__ == "__main__":
    sys.exit(main())
