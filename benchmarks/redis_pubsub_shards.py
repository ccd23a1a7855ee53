"""Per-channel Redis subscriptions versus a fixed set of shard channels.

Question: a node with 10,000 subscribed channels; should it SUBSCRIBE each
channel, or subscribe N shard channels (shard = hash(channel) % N) and drop
what it does not want? Measured on a private redis-server:

* time to subscribe (per-channel: 10k SUBSCRIBEs through the broker's
  PubSubLink, confirmed; shards: N),
* Redis memory used by the subscriptions,
* delivery: a publisher process publishes M messages over ``--universe``
  channels (the fleet's channels; this node wants 10k of them); we report the
  publisher's throughput, the receiving node's CPU per *wanted* message, and
  Redis's CPU.

Usage: python benchmarks/redis_pubsub_shards.py [--channels 10000] [--messages 200000]
Writes benchmarks/results/redis_pubsub_shards.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from redis.asyncio import Redis  # noqa: E402

from tests.redis_servers import redis_server  # noqa: E402
from wsfleet.brokers.redis_pubsub import PubSubLink  # noqa: E402


def shard_of(channel: bytes, shards: int) -> bytes:
    return b"shard.%d" % (zlib.crc32(channel) % shards)


def channel_name(i: int) -> bytes:
    return b"bench.ch.%d" % i


async def publisher(port: int, universe: int, messages: int, shards: int) -> None:
    """Publish ``messages`` round-robin over ``universe`` channels, pipelined."""
    client = Redis(port=port)
    payload = b"x" * 100
    batch = 1000
    start = time.perf_counter()
    for base in range(0, messages, batch):
        pipe = client.pipeline(transaction=False)
        for i in range(base, min(base + batch, messages)):
            ch = channel_name(i % universe)
            if shards:
                pipe.publish(shard_of(ch, shards), ch + b"|" + payload)
            else:
                pipe.publish(ch, payload)
        await pipe.execute()
    elapsed = time.perf_counter() - start
    await client.aclose()
    print(json.dumps({"publish_per_s": messages / elapsed}))


def redis_info(port: int) -> dict[str, str]:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "info"], capture_output=True, text=True, check=True
    ).stdout
    return dict(
        line.split(":", 1) for line in out.splitlines() if ":" in line and not line.startswith("#")
    )


async def run_mode(port: int, *, channels: int, universe: int, messages: int, shards: int) -> dict:
    client = Redis(port=port)
    wanted = {channel_name(i) for i in range(channels)}
    received = 0
    delivered = 0
    done = asyncio.Event()
    expected = sum(1 for i in range(messages) if channel_name(i % universe) in wanted)

    def on_message(redis_channel: bytes, frame: bytes) -> None:
        nonlocal received, delivered
        received += 1
        if shards:
            ch, _, _ = frame.partition(b"|")
            if ch not in wanted:  # the local filter shards need
                return
        delivered += 1
        if delivered >= expected:
            done.set()

    link = PubSubLink(
        client.connection_pool.make_connection,
        name="bench",
        on_message=on_message,
        on_resubscribed=lambda chans: None,
        on_state=lambda reason: None,
        confirm_timeout=60.0,
    )
    await link.start(wait=5)
    mem0 = int(redis_info(port)["used_memory"])
    t0 = time.perf_counter()
    targets = sorted({shard_of(ch, shards) for ch in wanted}) if shards else sorted(wanted)
    # The node subscribes channel by channel as subscribers arrive: one
    # confirmed subscribe call per channel, many in flight at once.
    sem = asyncio.Semaphore(256)

    async def one(ch: bytes) -> None:
        async with sem:
            await link.subscribe([ch])

    await asyncio.gather(*(one(ch) for ch in targets))
    subscribe_s = time.perf_counter() - t0
    mem1 = int(redis_info(port)["used_memory"])

    info0 = redis_info(port)
    cpu0 = time.process_time()
    w0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--publish", str(port), str(universe), str(messages),
        str(shards), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    await asyncio.wait_for(done.wait(), 120)
    wall = time.perf_counter() - w0
    cpu = time.process_time() - cpu0
    info1 = redis_info(port)
    redis_cpu = sum(float(info1[k]) - float(info0[k]) for k in ("used_cpu_sys", "used_cpu_user"))
    await link.close()
    await client.aclose()
    return {
        "mode": f"{shards} shards" if shards else "per-channel",
        "subscriptions": len(targets),
        "subscribe_s": round(subscribe_s, 3),
        "redis_memory_kb": round((mem1 - mem0) / 1024, 1),
        "publish_per_s": round(json.loads(out)["publish_per_s"]),
        "frames_received": received,
        "frames_wanted": delivered,
        "node_cpu_us_per_wanted_msg": round(cpu / max(delivered, 1) * 1e6, 2),
        "redis_cpu_s": round(redis_cpu, 2),
        "wall_s": round(wall, 2),
    }


async def main(args: argparse.Namespace) -> None:
    results = []
    for universe in (args.channels, args.channels * 10):
        for shards in (0, 16, 256):
            with redis_server() as server:
                row = await run_mode(
                    server.port,
                    channels=args.channels,
                    universe=universe,
                    messages=args.messages,
                    shards=shards,
                )
            row["universe"] = universe
            results.append(row)
            print(row, flush=True)
    out = ROOT / "benchmarks" / "results" / "redis_pubsub_shards.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpus": os.cpu_count(), "channels": args.channels, "messages": args.messages}
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    cols = [
        "universe", "mode", "subscriptions", "subscribe_s", "redis_memory_kb", "publish_per_s",
        "frames_received", "frames_wanted", "node_cpu_us_per_wanted_msg", "redis_cpu_s",
    ]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in results:
        print("| " + " | ".join(str(row[c]) for c in cols) + " |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--publish":
        port, universe, messages, shards = map(int, sys.argv[2:6])
        asyncio.run(publisher(port, universe, messages, shards))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=200_000)
    asyncio.run(main(parser.parse_args()))
