"""What the Python peers share: the command line, the contract's frames, the ASGI server.

Imported by plain name (``import peer_common``): each peer runs as a script from
this directory, which Python puts first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

COMPACT = (",", ":")
LISTEN_BACKLOG = 4096  # as wsfleet's listener: a burst of benchmark clients must not overflow it
# The publisher holds one HTTP connection for a whole run and may leave it idle
# (while clients connect), longer than uvicorn's 5 s default keep-alive timeout.
KEEP_ALIVE_SECONDS = 3600
MAX_PUBLISH_BODY = 64 * 1024 * 1024  # a publish batch may exceed aiohttp's and Django's defaults


def parse_args(description: str, redis_help: str) -> argparse.Namespace:
    """The contract's ``--host H --port P [--redis URL]``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", metavar="URL", help=redis_help)
    return parser.parse_args()


def compact_json(value: Any) -> str:
    """The contract's frame payload: ``value`` as compact JSON."""
    return json.dumps(value, separators=COMPACT)


def subscribed_frame(channel: str) -> str:
    return compact_json({"subscribed": channel})


def subscribe_target(text: str | None) -> str | None:
    """The channel of a ``{"subscribe": c}`` frame; None for any other frame."""
    try:
        frame = json.loads(text or "")
    except ValueError:
        return None
    channel = frame.get("subscribe") if isinstance(frame, dict) else None
    return channel if isinstance(channel, str) else None


def publish_batch(body: bytes) -> list[dict[str, Any]] | None:
    """The messages of a ``POST /publish`` body; None (reply 400) if it is malformed."""
    try:
        messages = json.loads(body)
    except ValueError:
        return None
    if not isinstance(messages, list):
        return None
    for message in messages:
        if not (isinstance(message, dict) and isinstance(message.get("channel"), str)):
            return None
        if "data" not in message:
            return None
    return messages


def serve_asgi(app: Any, args: argparse.Namespace, *, lifespan: str) -> None:
    """Run ``app`` under uvicorn with its fastest supported options (one process).

    ``lifespan`` is uvicorn's: "on" for an app that connects at startup, "off" for
    one that does not implement it.
    """
    import uvicorn  # only the ASGI peers have it (the peers' virtualenv)

    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        # uvicorn's current WebSocket implementation (what ws="auto" picks);
        # ws="websockets" is the legacy one, which uvicorn 0.54 deprecates.
        ws="websockets-sansio",
        log_level="warning",
        access_log=False,
        backlog=LISTEN_BACKLOG,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        lifespan=lifespan,
    )
