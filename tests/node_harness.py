"""Run real wsfleet nodes inside the test's event loop, on free ports.

The node is the real composition root (picows listener, aiohttp internal
port, broker); only its ports are chosen by the OS. Clients in tests are the
official SDK (``centrifuge``) and ``cent``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from wsfleet.config import load_settings
from wsfleet.node import Node


@dataclass
class RunningNode:
    node: Node

    @property
    def ws_url(self) -> str:
        host, port = self.node.addresses.public[0]
        return f"ws://127.0.0.1:{port}/connection/websocket"

    @property
    def api_url(self) -> str:
        host, port = self.node.addresses.internal[0]
        return f"http://127.0.0.1:{port}/api"

    @property
    def internal_url(self) -> str:
        host, port = self.node.addresses.internal[0]
        return f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def running_node(
    overrides: Mapping[str, Any] | None = None, *, config: Mapping[str, Any] | None = None
) -> AsyncIterator[RunningNode]:
    """Start a node on 127.0.0.1 with free ports; ``overrides`` are dotted keys.

    ``config`` is a nested mapping written to a temporary YAML file (for
    namespaces and other structured options).
    """
    import tempfile

    import yaml

    values = {
        "server.host": "127.0.0.1",
        "server.port": 0,
        "server.internal_host": "127.0.0.1",
        "server.internal_port": 0,
        "server.log_format": "text",
    }
    values.update(overrides or {})
    path = None
    if config is not None:
        tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        with tmp:
            yaml.safe_dump(dict(config), tmp)
        path = tmp.name
    settings = load_settings(path=path, env={}, overrides=values)
    node = Node(settings)
    await node.start()
    try:
        yield RunningNode(node)
    finally:
        await node.stop()
