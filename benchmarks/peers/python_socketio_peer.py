"""Benchmark peer: python-socketio on aiohttp (protocol "socket.io" of the peer contract).

One ``socketio.AsyncServer`` in aiohttp mode, WebSocket transport only. A client
joins the room named after a channel with the event ``subscribe``; ``POST
/publish`` emits each message to its room as the event ``message``. With
``--redis URL`` the server uses ``socketio.AsyncRedisManager``, python-socketio's
multi-node mechanism: an emit is delivered to this node's room members and
published on one Redis pub/sub channel that every other node listens to.

Run by the peers' virtualenv (``benchmarks/peers/python_env.py``):
``python python_socketio_peer.py --host H --port P [--redis URL]``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio  # type: ignore[import-untyped]
import uvloop
from aiohttp import web
from peer_common import (
    KEEP_ALIVE_SECONDS,
    LISTEN_BACKLOG,
    MAX_PUBLISH_BODY,
    parse_args,
    publish_batch,
)

LISTEN_TIMEOUT = 10.0  # seconds for the Redis listener to subscribe at startup


def make_server(redis_url: str | None) -> socketio.AsyncServer:
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        transports=["websocket"],
        cors_allowed_origins="*",
        logger=False,
        engineio_logger=False,
    )

    @sio.on("subscribe")
    async def subscribe(sid: str, channel: Any) -> bool:
        if not isinstance(channel, str):
            return False
        await sio.enter_room(sid, channel)
        return True  # the return value becomes the ack's payload

    return sio


async def start_listening(sio: socketio.AsyncServer) -> None:
    """Start the Redis listener now and wait until it has sent its SUBSCRIBE.

    python-socketio starts it when the first client connects, so a publish on
    another node right after that client's first subscription could reach
    Redis before this node's SUBSCRIBE and be lost. Started here, it is
    listening before ``POST /publish`` answers (the benchmark's readiness check).
    """
    sio.manager_initialized = True
    sio.manager.initialize()
    deadline = asyncio.get_running_loop().time() + LISTEN_TIMEOUT
    while not (getattr(sio.manager, "pubsub", None) and sio.manager.pubsub.subscribed):
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError("python-socketio's Redis listener did not subscribe")
        await asyncio.sleep(0.01)


def make_app(sio: socketio.AsyncServer, two_node: bool) -> web.Application:
    async def publish(request: web.Request) -> web.Response:
        messages = publish_batch(await request.read())
        if messages is None:
            return web.json_response({"error": "expected [{channel, data}, ...]"}, status=400)
        # Awaited one by one, in array order, so per-channel order holds (with
        # Redis each emit is one PUBLISH on one connection).
        for message in messages:
            await sio.emit("message", message["data"], to=message["channel"])
        return web.json_response({"published": len(messages)})

    async def on_startup(app: web.Application) -> None:
        await start_listening(sio)

    app = web.Application(client_max_size=MAX_PUBLISH_BODY)
    sio.attach(app)  # serves /socket.io/
    app.router.add_post("/publish", publish)
    if two_node:
        app.on_startup.append(on_startup)
    return app


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], "two-node mode through AsyncRedisManager")
    web.run_app(
        make_app(make_server(args.redis), two_node=bool(args.redis)),
        host=args.host,
        port=args.port,
        backlog=LISTEN_BACKLOG,
        keepalive_timeout=KEEP_ALIVE_SECONDS,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),  # aiohttp has no uvloop option of its own
    )


if __name__ == "__main__":
    main()
