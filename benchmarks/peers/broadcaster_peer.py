"""Benchmark peer: encode/broadcaster on Starlette and uvicorn (protocol "simple").

Each ``{"subscribe": c}`` frame starts a task that holds ``broadcast.subscribe(c)``
and forwards every event on it to the WebSocket as a text frame; ``POST
/publish`` calls ``broadcast.publish`` once per message, awaited in array order.
One node uses ``Broadcast("memory://")``; with ``--redis URL`` it uses
broadcaster's Redis pub/sub backend, its multi-node mechanism. broadcaster
0.3.1 (the newest release) needs two workarounds, both in this file, for races
that lose every event of a subscription: see ``SubscribedRedisBackend`` and
``subscribe_lock``.

Run by the peers' virtualenv (``benchmarks/peers/python_env.py``):
``python broadcaster_peer.py --host H --port P [--redis URL]``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from broadcaster import Broadcast
from broadcaster._backends.redis import RedisBackend
from peer_common import (
    compact_json,
    parse_args,
    publish_batch,
    serve_asgi,
    subscribe_target,
    subscribed_frame,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


class SubscribedRedisBackend(RedisBackend):  # type: ignore[misc]
    """broadcaster 0.3.1's Redis backend, with its listener woken after SUBSCRIBE, not before.

    ``RedisBackend.subscribe`` wakes the listener task and then awaits the
    SUBSCRIBE; with redis-py 8 that await yields, so the listener finds no
    subscription yet, leaves redis-py's ``listen()`` at once and goes back to
    sleep until some other channel is subscribed: a node whose clients all
    subscribe to one channel never delivers anything from Redis.
    """

    async def subscribe(self, channel: str) -> None:
        await self._pubsub.subscribe(channel)
        self._ready.set()


def make_broadcast(redis_url: str | None) -> Broadcast:
    if redis_url is None:
        return Broadcast("memory://")
    return Broadcast(backend=SubscribedRedisBackend(redis_url))


def make_app(broadcast: Broadcast) -> Starlette:
    # Broadcast.subscribe() (broadcaster 0.3.1) checks "first subscriber of this
    # channel?" before awaiting the backend's SUBSCRIBE and registers its queue
    # after it, so concurrent first subscriptions to one channel overwrite each
    # other's queue: with Redis, 1 of 20 clients subscribing at once got events.
    # Entering subscriptions one at a time avoids that.
    subscribe_lock = asyncio.Lock()

    async def forward(websocket: WebSocket, channel: str) -> None:
        async with AsyncExitStack() as stack:
            async with subscribe_lock:
                subscriber = await stack.enter_async_context(broadcast.subscribe(channel))
            await websocket.send_text(subscribed_frame(channel))
            async for event in subscriber:  # type: ignore[union-attr]
                await websocket.send_text(event.message)

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        tasks: dict[str, asyncio.Task[None]] = {}
        try:
            # receive(), not receive_text(): a binary frame is ignored, not an error.
            while (message := await websocket.receive())["type"] == "websocket.receive":
                channel = subscribe_target(message.get("text"))
                if channel is not None and channel not in tasks:
                    tasks[channel] = asyncio.create_task(forward(websocket, channel))
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)

    async def publish(request: Request) -> JSONResponse:
        messages = publish_batch(await request.body())
        if messages is None:
            return JSONResponse({"error": "expected [{channel, data}, ...]"}, status_code=400)
        for message in messages:
            await broadcast.publish(message["channel"], compact_json(message["data"]))
        return JSONResponse({"published": len(messages)})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # broadcaster's README connects in on_startup, which Starlette 1.x removed.
        async with broadcast:
            yield

    return Starlette(
        routes=[Route("/publish", publish, methods=["POST"]), WebSocketRoute("/ws", ws)],
        lifespan=lifespan,
    )


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], "two-node mode through broadcaster's Redis backend")
    # lifespan "on": broadcaster connects to its backend at startup.
    serve_asgi(make_app(make_broadcast(args.redis)), args, lifespan="on")


if __name__ == "__main__":
    main()
