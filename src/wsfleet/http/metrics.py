"""Prometheus metrics, rendered from the node's plain counters at scrape time.

Names are part of the product's interface (dashboards and autoscalers read
them): they are listed in docs/reference/metrics.md, and a test checks that
every documented name is exported.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wsfleet.core.drain import DrainStep

if TYPE_CHECKING:
    from wsfleet.node import Node

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class NodeCollector(Collector):
    """Reads a node's stats on each scrape."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node = self._node
        s = node.stats
        yield _gauge("wsfleet_connections", "Open client connections.", len(node.registry))
        yield _gauge("wsfleet_users", "Distinct users connected.", node.registry.num_users)
        yield _gauge("wsfleet_subscriptions", "Client subscriptions.", node.hub.num_subscriptions)
        yield _gauge("wsfleet_channels", "Channels with local subscribers.", node.hub.num_channels)
        yield _gauge(
            "wsfleet_ready",
            "1 when the node is ready for traffic.",
            0 if node.not_ready_reason() else 1,
        )
        yield _gauge(
            "wsfleet_fleet_nodes",
            "Live nodes in the fleet registry, as of this node's last heartbeat.",
            len(node.fleet.nodes),
        )
        yield _gauge(
            "wsfleet_fleet_heartbeat_failing",
            "1 while this node's registry heartbeat fails.",
            0 if node.fleet.error is None else 1,
        )
        yield _gauge(
            "wsfleet_websockets",
            "Open WebSocket connections, connect command sent or not (the cap counts these).",
            node.admission.open,
        )
        yield _gauge(
            "wsfleet_connection_limit",
            "This node's connection cap (server.connection_limit); 0: none.",
            node.admission.connection_limit,
        )
        yield from _drain_metrics(node)
        yield _counter(
            "wsfleet_rebalanced",
            "Connections closed to even out the fleet (3011).",
            s.rebalanced,
        )
        yield _counter(
            "wsfleet_connections_accepted",
            "Connections that completed connect.",
            s.connections_accepted,
        )
        yield _counter(
            "wsfleet_connections_closed", "Connected clients that closed.", s.connections_closed
        )
        yield _counter("wsfleet_messages_in", "Frames received from clients.", s.messages_in)
        yield _counter("wsfleet_bytes_in", "Bytes received from clients.", s.bytes_in)
        yield _counter(
            "wsfleet_messages_out", "Replies and pushes sent to clients.", s.messages_out
        )
        yield _counter("wsfleet_frames_out", "WebSocket frames sent to clients.", s.frames_out)
        yield _counter("wsfleet_bytes_out", "Bytes sent to clients.", s.bytes_out)
        yield _counter(
            "wsfleet_publications_received",
            "Publications received from the broker.",
            s.publications_received,
        )
        yield _counter(
            "wsfleet_outbox_overflows", "Connections closed as slow consumers.", s.outbox_overflows
        )
        yield _counter(
            "wsfleet_gaps_detected", "Live publications that arrived after a gap.", s.gaps_detected
        )
        yield _labelled("wsfleet_commands", "Commands handled, by method.", "method", s.commands)
        yield _labelled(
            "wsfleet_command_errors",
            "Error replies, by protocol code.",
            "code",
            {str(k): v for k, v in s.errors.items()},
        )
        yield _labelled(
            "wsfleet_disconnects",
            "Server-side closes, by code.",
            "code",
            {str(k): v for k, v in s.disconnects.items()},
        )
        yield _labelled(
            "wsfleet_handshakes_refused",
            "Refused upgrades, by reason.",
            "reason",
            s.handshakes_refused,
        )
        yield _labelled(
            "wsfleet_limit_hits", "Requests refused by a limit, by limit.", "limit", s.limit_hits
        )


def _drain_metrics(node: Node) -> Iterator[Metric]:
    p = node.drainer.progress
    draining = p.step is not DrainStep.IDLE
    yield _gauge("wsfleet_draining", "1 from the shutdown signal until the node exits.", draining)
    yield _gauge(
        "wsfleet_drain_remaining",
        "Open connections the drain has still to close; 0 when not draining.",
        len(node.registry) if draining else 0,
    )
    yield _counter("wsfleet_drain_closed", "Connections the drain closed (3001).", p.closed)


def _gauge(name: str, doc: str, value: float) -> Metric:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], value)
    return g


def _counter(name: str, doc: str, value: float) -> Metric:
    c = CounterMetricFamily(name, doc)
    c.add_metric([], value)
    return c


def _labelled(name: str, doc: str, label: str, values: dict[str, int]) -> Metric:
    c = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        c.add_metric([key], value)
    return c


def build_registry(node: Node) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
