"""ASGI application of the Channels benchmark peer (protocol "simple" of the peer contract).

A WebSocket at ``/ws`` handled by an ``AsyncWebsocketConsumer``: the frame
``{"subscribe": c}`` adds the consumer to the group for ``c``. ``POST /publish``
is an async Django view that calls ``channel_layer.group_send`` once per message,
awaited in array order. The URL patterns live here too (``ROOT_URLCONF`` points
at this module) to keep the project to two files.

The consumer sends ``text_data`` rather than using ``AsyncJsonWebsocketConsumer``:
the view serializes each message once as compact JSON (the contract's frame
payload), instead of every consumer running ``json.dumps`` (with spaces) on it.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from peer_common import compact_json, publish_batch, subscribe_target, subscribed_frame

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "channels_site.settings")

from django.core.asgi import get_asgi_application

# Channels' docs: create the Django ASGI app before importing anything that may import models.
django_asgi_app = get_asgi_application()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from django.views.decorators.http import require_POST  # noqa: E402

MESSAGE_TYPE = "bench.message"  # dispatched to BenchConsumer.bench_message

# Channels accepts group names of ASCII letters, digits, "-", "_" and "." shorter
# than 100 characters. Bench channels ("bench.17", "fan") fit and keep a readable
# prefix; any other name becomes a hash. The two prefixes keep the mapping
# injective: "c." + name can never equal "h." + digest.
_VALID_GROUP = re.compile(r"[A-Za-z0-9_.\-]{1,97}")


def group_name(channel: str) -> str:
    if _VALID_GROUP.fullmatch(channel):
        return "c." + channel
    return "h." + hashlib.sha256(channel.encode()).hexdigest()


class BenchConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        self.subscribed: set[str] = set()
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        channel = subscribe_target(text_data)
        if channel is None:
            return  # the contract: unknown frames are ignored
        group = group_name(channel)
        if group not in self.subscribed:
            await self.channel_layer.group_add(group, self.channel_name)
            self.subscribed.add(group)
        await self.send(text_data=subscribed_frame(channel))

    async def disconnect(self, code: int) -> None:
        for group in self.subscribed:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def bench_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])


@csrf_exempt
@require_POST
async def publish(request: HttpRequest) -> HttpResponse:
    messages = publish_batch(request.body)
    if messages is None:
        return sized(JsonResponse({"error": "expected [{channel, data}, ...]"}, status=400))
    layer = get_channel_layer()
    # Awaited one by one, in array order, so per-channel order holds.
    for message in messages:
        text = compact_json(message["data"])
        await layer.group_send(group_name(message["channel"]), {"type": MESSAGE_TYPE, "text": text})
    return sized(JsonResponse({"published": len(messages)}))


def sized(response: HttpResponse) -> HttpResponse:
    # Without CommonMiddleware Django sets no Content-Length and uvicorn falls
    # back to chunked encoding; the benchmark's publisher reads a sized body.
    response["Content-Length"] = str(len(response.content))
    return response


urlpatterns = [path("publish", publish)]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter([path("ws", BenchConsumer.as_asgi())]),
    }
)
