"""The internal port: health, metrics, status and the server API (aiohttp).

Never route this port through the ingress: it carries the API key protected
server API and operational endpoints.

- ``/livez``: 200 while the process runs its event loop; never depends on the
  broker, so Kubernetes does not restart healthy pods during a broker outage.
- ``/readyz``: 200 when the node should get new connections; 503 with the
  reason in the body otherwise (starting, draining, at the connection cap,
  broker unreachable).
- ``/metrics``: Prometheus text format.
- ``/status``: JSON snapshot of the node and the fleet as of its last heartbeat.
- ``POST /api/<method>``: the server API (see :mod:`wsfleet.http.api`).
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web
from prometheus_client import ProcessCollector

from wsfleet.brokers import shown_url
from wsfleet.http.api import ApiBadRequest, ServerApi
from wsfleet.http.metrics import CONTENT_TYPE, build_registry, render

if TYPE_CHECKING:
    from wsfleet.node import Node

log = logging.getLogger("wsfleet.http")

MAX_API_BODY = 16 * 1024 * 1024


class InternalServer:
    """The internal HTTP listener of a node."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._api = ServerApi(node)
        self._registry = build_registry(node)
        ProcessCollector(registry=self._registry)
        self._runner: web.AppRunner | None = None
        app = web.Application(client_max_size=MAX_API_BODY)
        app.router.add_get("/livez", self.livez)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/status", self.status)
        app.router.add_post("/api/{method}", self.api)
        app.router.add_post("/api", self.api_batch_root)
        self.app = app

    async def start(self, host: str, port: int) -> list[tuple[str, int]]:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        server = site._server  # aiohttp exposes bound sockets only here
        sockets = getattr(server, "sockets", None) or []
        return [s.getsockname()[:2] for s in sockets]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- health --------------------------------------------------------------------

    async def livez(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        reason = self._node.not_ready_reason()
        if reason:
            return web.Response(status=503, text=f"not ready: {reason}\n")
        return web.Response(text="ready\n")

    async def metrics(self, request: web.Request) -> web.Response:
        body = render(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def status(self, request: web.Request) -> web.Response:
        node = self._node
        snapshot = node.snapshot()
        reason = node.not_ready_reason()
        body = {
            **snapshot,
            "ready": reason is None,
            "not_ready_reason": reason or "",
            "broker": shown_url(node.settings.broker.url),
            # From the last heartbeat: /status never waits for the broker.
            "nodes": node.fleet_view(node.fleet.nodes),
            "fleet_error": node.fleet.error or "",
            "drain": node.drainer.progress.as_dict(time.monotonic(), len(node.registry)),
            "rebalance": _rebalance_status(node),
            "limits": {
                "connection_limit": node.admission.connection_limit,
                "websockets": node.admission.open,
                "addresses": node.admission.addresses,
            },
        }
        return _json(body)

    # -- server API ----------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        api = self._node.settings.api
        if api.insecure:
            return True
        if not api.key:
            return False
        given = request.headers.get("X-API-Key", "")
        auth = request.headers.get("Authorization", "")
        if not given and auth.lower().startswith("apikey "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), api.key.encode())

    async def api(self, request: web.Request) -> web.Response:
        return await self._call(request, request.match_info["method"])

    async def api_batch_root(self, request: web.Request) -> web.Response:
        return await self._call(request, "batch")

    async def _call(self, request: web.Request, method: str) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401, text="unauthorized: bad or missing X-API-Key\n")
        if method != "batch" and method not in self._api.methods:
            return _json({"error": {"code": 104, "message": "method not found"}}, status=404)
        body = await request.read()
        try:
            reply = await self._api.call(method, body)
        except ApiBadRequest as exc:
            return _json({"error": {"code": 107, "message": str(exc)}}, status=400)
        return _json(reply)


def _rebalance_status(node: Node) -> dict[str, object]:
    rebalancer = node.rebalancer
    if rebalancer is None:
        return {"enabled": False}
    last = rebalancer.last
    if last is None:
        return {"enabled": True, "last": None}
    decision = {"shed": last.shed, "down_to": last.floor, "total": last.total, "why": last.why}
    return {"enabled": True, "last": decision, "shed_total": node.stats.rebalanced}


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(body), status=status, content_type="application/json"
    )
