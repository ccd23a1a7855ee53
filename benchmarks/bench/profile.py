"""Profile a wsfleet node under a fan-out load: ``python -m benchmarks.bench.profile``.

Starts one node (memory broker) pinned like ``wsfleet bench`` does, connects the clients,
publishes at a fixed rate for a few seconds while ``py-spy`` samples the node, and prints
the rates reached, the server CPU per delivery and the functions the samples fell in
(self and inclusive). The raw samples stay in ``--out`` for a flame graph tool.

Needs ``py-spy`` (``pip install py-spy`` into the virtualenv); it is not a dependency.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import uvloop

from benchmarks.bench.pool import Pool
from benchmarks.bench.procstat import cpu_seconds, pin, raise_nofile, split_cpus
from benchmarks.bench.publisher import Publisher
from benchmarks.bench.run import Run
from benchmarks.bench.scenarios import Shape
from benchmarks.bench.servers import WsfleetTarget
from benchmarks.bench.sizes import FULL

SAMPLE_RATE = 200


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench.profile", description=__doc__.splitlines()[0]
    )
    p.add_argument("--clients", type=int, default=5000)
    p.add_argument("--per-channel", type=int, default=5, help="subscribers per channel")
    p.add_argument("--rate", type=float, default=14000, help="publications per second")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--out", type=Path, default=Path("profile.txt"), help="py-spy raw samples")
    p.add_argument("--top", type=int, default=20)
    return p


async def _profile(args: argparse.Namespace, spy: str) -> None:
    server_cpus, loadgen_cpus = split_cpus()
    pin(loadgen_cpus)
    raise_nofile()
    pool = Pool(FULL.workers, loadgen_cpus)
    shape = Shape("profile", args.clients, args.per_channel)
    try:
        with tempfile.TemporaryDirectory(prefix="wsfleet-profile-") as tmp:
            run = Run(WsfleetTarget(), Path(tmp), pool, FULL, server_cpus, loadgen_cpus)
            async with run.servers() as (node,):
                spec = run.spec(
                    [node.ws_url],
                    args.clients,
                    channel_format=shape.channel_format,
                    group=shape.group,
                )
                await run.open(spec)
                sampler = subprocess.Popen(  # noqa: ASYNC220  (started, not waited on here)
                    [spy, "record", "-p", str(node.pid), "-d", str(int(args.seconds)), "-r", str(SAMPLE_RATE),
                     "-f", "raw", "-o", str(args.out)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                async with Publisher(run.target, node.publish_url, shape.channels) as pub:
                    await pool.stats(reset=True)
                    cpu0, t0 = cpu_seconds(node.pid), time.monotonic()
                    real = await pub.run(args.rate, args.seconds)
                    received = (await pool.stats())["received"]
                    elapsed, cpu = time.monotonic() - t0, cpu_seconds(node.pid) - cpu0
                await asyncio.to_thread(sampler.wait)
    finally:
        pool.shutdown()
    print(
        f"published {real:,.0f}/s of {args.rate:,.0f}, delivered {received / elapsed:,.0f}/s, "
        f"server CPU {cpu / elapsed:.2f} core, {cpu / max(received, 1) * 1e6:.2f} µs per delivery"
    )


def summary(samples: Path, top: int) -> str:
    """The functions the samples fell in: self time, then inclusive time."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in samples.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"{total} samples"]
    lines += [f"{n / total:6.1%} self  {f}" for f, n in own.most_common(top)]
    lines += [f"{n / total:6.1%} incl  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    args = _parser().parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    uvloop.run(_profile(args, spy))
    print(summary(args.out, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
