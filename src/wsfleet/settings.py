"""The configuration schema: every option wsfleet has, its default and its meaning.

This module only declares. Loading from a file, the environment and flags,
validation and the reference documentation live in :mod:`wsfleet.config`,
which walks these dataclasses; so a new option is one field here, with its
doc, and nothing else.

Conventions: durations are seconds (floats); the loader also accepts strings
such as ``"300ms"``, ``"25s"``, ``"5m"``, ``"1h"``. Sizes are bytes. For every
limit, 0 means "no limit" unless its doc says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NewType

PerSecond = NewType("PerSecond", float)
"""A rate: a plain number per second (never a duration, so ``"1m"`` is refused)."""

Fraction = NewType("Fraction", float)
"""A share of something: a plain number such as 0.1 (never a duration)."""


def opt(default: Any, doc: str, **extra: Any) -> Any:
    """A config field: its default and the one-line doc the reference shows."""
    meta = {"doc": doc, **extra}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def section(factory: Any, doc: str) -> Any:
    """A nested config section."""
    return field(default_factory=factory, metadata={"doc": doc})


@dataclass(kw_only=True)
class ServerSettings:
    host: str = opt("0.0.0.0", "Address of the public WebSocket listener.")
    port: int = opt(8000, "Port of the public WebSocket listener.", min=0, max=65535)
    internal_host: str = opt(
        "0.0.0.0", "Address of the internal listener (health, metrics, server API)."
    )
    internal_port: int = opt(
        9000,
        "Port of the internal listener. Never expose it through the ingress.",
        min=0,
        max=65535,
    )
    node_name: str = opt(
        "", "Name of this node in logs, /status and the fleet registry; empty: hostname-pid."
    )
    advertise_host: str = opt(
        "",
        "Host other nodes and tools reach this node at, as listed in the fleet registry; "
        "empty: the listen address, or the hostname when listening on all interfaces.",
    )
    connection_limit: int = opt(
        0,
        "Open WebSocket connections this node takes; beyond it handshakes get 503 with "
        "Retry-After and /readyz answers 503. 0: no limit.",
        min=0,
    )
    connection_rate_limit: PerSecond = opt(
        0.0,
        "New connections per second this node accepts; over it, 503 with Retry-After. 0: no limit.",
        min=0,
    )
    connection_rate_burst: int = opt(
        0, "New connections this node accepts at once; 0: one second's worth of the rate.", min=0
    )
    ip_connection_limit: int = opt(
        0,
        "Open connections from one client IP address on this node; beyond it handshakes "
        "get 429 with Retry-After. 0: no limit.",
        min=0,
    )
    trusted_proxies: list[str] = opt(
        [],
        "Addresses or CIDR networks of the proxies (ingress, load balancer) whose "
        "X-Forwarded-For header names the client; from anyone else it is ignored.",
    )
    log_format: Literal["json", "text"] = opt(
        "json", "Log line format: json (production) or text (a terminal)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = opt("info", "Lowest level logged.")


@dataclass(kw_only=True)
class BrokerSettings:
    url: str = opt(
        "memory://",
        "Backplane: memory:// (one node), redis://, rediss://, redis+sentinel://, "
        "redis+cluster://; amqp:// and amqps:// are reserved for RabbitMQ.",
    )
    key_prefix: str = opt(
        "wsfleet", "Prefix of every key and channel the broker uses in a shared backend."
    )


@dataclass(kw_only=True)
class FleetSettings:
    heartbeat_interval: float = opt(
        3.0,
        "Seconds between registry heartbeats. A node that stops heartbeating drops out of "
        "the registry, and its clients out of presence, within twice this.",
        min=0.05,
    )
    connection_rate_limit: PerSecond = opt(
        0.0,
        "New connections per second the whole fleet accepts; each node takes an equal share "
        "and refuses the rest with 503 and Retry-After. 0: no limit.",
        min=0,
    )
    survey_timeout: float = opt(
        2.0, "Seconds the channels API waits for the other nodes' answers.", min=0.05
    )


@dataclass(kw_only=True)
class DrainSettings:
    readiness_delay: float = opt(
        5.0,
        "Seconds the node keeps accepting connections after SIGTERM while /readyz already "
        "answers 503, so endpoints and the ingress stop routing here first.",
        min=0,
    )
    window: float = opt(
        15.0,
        "Seconds over which open connections are closed, in paced, jittered batches, with "
        "3001 (reconnect), so clients move to other nodes without a reconnect storm.",
        min=0,
    )
    timeout: float = opt(
        30.0,
        "Seconds from SIGTERM after which a drain that has not finished is cut short and "
        "the process exits with code 70. Must exceed readiness_delay + window.",
        min=1,
    )


@dataclass(kw_only=True)
class RebalanceSettings:
    mode: Literal["auto", "on", "off"] = opt(
        "auto",
        "Whether a node sheds connections when it holds more than its share of the fleet's: "
        "auto is on with a shared broker and off with memory://.",
    )
    tolerance: Fraction = opt(
        0.1,
        "Fraction a node's connections may stray from the fleet mean: above (1 + tolerance) "
        "times the mean a node sheds down to the mean, never below; while a node holds less "
        "than (1 - tolerance) times the mean, every node above the mean does.",
        min=0,
    )
    rate: PerSecond = opt(
        10.0, "Most connections per second a node sheds, each closed with 3011.", min=0.1
    )
    interval: float = opt(
        10.0,
        "Seconds between rebalancing decisions, each from the registry as of the last "
        "heartbeat; after shedding, at least two heartbeat intervals.",
        min=0.1,
    )


@dataclass(kw_only=True)
class AuthSettings:
    token_hmac_secret: str = opt(
        "", "Secret for HS256 connection and subscription tokens; empty: HS256 disabled."
    )
    token_rsa_public_key: str = opt("", "PEM public key for RS256 tokens; empty: RS256 disabled.")
    token_ecdsa_public_key: str = opt("", "PEM public key for ES256 tokens; empty: ES256 disabled.")
    token_audience: str = opt("", "Required `aud` claim; empty: `aud` not checked.")
    token_issuer: str = opt("", "Required `iss` claim; empty: `iss` not checked.")
    subscription_token_hmac_secret: str = opt(
        "", "Separate HS256 secret for subscription tokens; empty: token_hmac_secret."
    )
    allow_anonymous_connect_without_token: bool = opt(
        False, "Accept connect commands without a token, as an anonymous user (empty user id)."
    )


@dataclass(kw_only=True)
class ApiSettings:
    key: str = opt(
        "", "X-API-Key the server API requires; empty: the server API answers 401 to all."
    )
    insecure: bool = opt(False, "Serve the server API without checking the key (tests only).")


@dataclass(kw_only=True)
class ClientSettings:
    ping_interval: float = opt(
        25.0,
        "Seconds between server pings; must stay below every proxy's idle timeout.",
        min=1,
    )
    pong_timeout: float = opt(
        8.0,
        "Seconds to wait for the client's pong before closing with 3012 (no pong).",
        min=1,
    )
    connect_timeout: float = opt(
        10.0, "Seconds a new WebSocket may stay without a connect command.", min=1
    )
    max_message_size: int = opt(
        65536,
        "Largest WebSocket frame accepted from a client, bytes; larger closes 1009.",
        min=512,
    )
    outbox_max_bytes: int = opt(
        4 * 1024 * 1024,
        "Bytes queued for one client before it is a slow consumer (closed with 3008).",
        min=1024,
    )
    max_frame_bytes: int = opt(
        64 * 1024, "Coalesced outgoing frames are cut at about this size, bytes.", min=1024
    )
    user_connection_limit: int = opt(
        0,
        "Connections one user may hold across the whole fleet; over it the connect fails "
        "with 3504 (connection limit). Anonymous connections are not counted. 0: no limit.",
        min=0,
    )
    max_subscriptions: int = opt(
        128,
        "Subscriptions per connection; over it, error 106 (limit exceeded). 0: none.",
        min=0,
    )
    channel_max_length: int = opt(
        255, "Longest channel name accepted, bytes; longer gets error 107.", min=1
    )
    history_max_publication_limit: int = opt(
        300, "Most publications one history command returns.", min=1
    )
    tags_filter_max_nodes: int = opt(
        32,
        "Most nodes (comparisons and and/or/not) in a subscription's tags filter; a larger "
        "filter closes the connection with 3501.",
        min=1,
    )
    recovery_max_publication_limit: int = opt(
        300, "Most publications a recovery returns; a larger gap is not recovered.", min=1
    )
    presence_ttl: float = opt(60.0, "Seconds a presence entry lives without a refresh.", min=1)
    presence_update_interval: float = opt(
        25.0, "Seconds between presence refreshes of each connection.", min=1
    )
    user_personal_channel: bool = opt(
        False, "Subscribe every authenticated user to their personal channel on connect."
    )
    user_personal_channel_namespace: str = opt(
        "", "Namespace of personal channels: the channel is `<namespace>:#<user>`."
    )
    expired_close_delay: float = opt(
        25.0,
        "Seconds past a token's expiry before an unrefreshed connection closes (3005).",
        min=0,
    )
    command_rate_limit: PerSecond = opt(
        100.0,
        "Commands per second one connection may send; over it, error 111. 0: no limit.",
        min=0,
    )
    command_burst: int = opt(200, "Commands one connection may send at once.", min=1)
    command_rate_disconnect_after: int = opt(
        100, "Rate-limited commands after which the connection closes (3013). 0: never.", min=0
    )
    max_pending_commands: int = opt(
        1000, "Commands queued unprocessed on one connection before it closes (3013).", min=1
    )
    max_connection_lifetime: float = opt(
        0.0,
        "Seconds a connection may live before it is closed with 3011 (reconnect), so "
        "long-lived connections move when the fleet changes. 0: no limit.",
        min=0,
    )
    connection_lifetime_jitter: Fraction = opt(
        0.1,
        "Fraction of max_connection_lifetime by which each connection's lifetime is "
        "shortened at random, so connections made together do not close together.",
        min=0,
        max=1,
    )
    max_connection_command_errors: int = opt(
        20,
        "Protocol errors in a row after which a connection is closed (3509). 0: never.",
        min=0,
    )


@dataclass(kw_only=True)
class NamespaceOptions:
    """Channel options, per namespace. Names follow Centrifugo's."""

    history_size: int = opt(0, "Publications kept per channel; 0: no history.", min=0)
    history_ttl: float = opt(
        0.0, "Seconds publications are kept; required with history_size.", min=0
    )
    history_meta_ttl: float = opt(
        30 * 86400.0, "Seconds a stream's epoch and offset outlive its last publication.", min=0
    )
    force_recovery: bool = opt(
        False, "Recover every subscription on resubscribe, even if the client did not ask."
    )
    presence: bool = opt(False, "Keep presence (who is subscribed) for the channels.")
    join_leave: bool = opt(False, "Send join and leave events to subscribers who ask for them.")
    force_push_join_leave: bool = opt(
        False, "Send join and leave events to every subscriber, asked or not."
    )
    allow_subscribe_for_client: bool = opt(
        False, "Authenticated clients may subscribe without a subscription token."
    )
    allow_subscribe_for_anonymous: bool = opt(
        False, "Anonymous clients may subscribe without a subscription token."
    )
    allow_publish_for_subscriber: bool = opt(False, "Subscribers of a channel may publish to it.")
    allow_publish_for_client: bool = opt(
        False, "Any authenticated client may publish to the channels."
    )
    allow_publish_for_anonymous: bool = opt(False, "Anonymous clients may publish.")
    allow_presence_for_subscriber: bool = opt(
        False, "Subscribers may ask for presence and presence stats."
    )
    allow_presence_for_client: bool = opt(
        False, "Any authenticated client may ask for presence and presence stats."
    )
    allow_history_for_subscriber: bool = opt(False, "Subscribers may read history.")
    allow_presence_for_anonymous: bool = opt(
        False, "Anonymous clients may ask for presence and presence stats."
    )
    allow_history_for_client: bool = opt(False, "Any authenticated client may read history.")
    allow_history_for_anonymous: bool = opt(False, "Anonymous clients may read history.")
    allow_user_limited_channels: bool = opt(
        False, "Channels ending in `#user1,user2` admit only the listed users."
    )
    allowed_delta_types: list[Literal["fossil"]] = opt(
        [], "Delta encodings subscribers may negotiate; needs history. Allowed: fossil."
    )
    delta_publish: bool = opt(
        False, "Publish every publication as delta-capable (the API's `delta` per call)."
    )
    allow_tags_filter: bool = opt(
        False,
        "Subscribers may pass a tags filter and get only the publications whose tags match "
        "(bandwidth, not access control: they may read the whole channel). Not with "
        "allowed_delta_types.",
    )


@dataclass(kw_only=True)
class Namespace(NamespaceOptions):
    name: str = opt("", "Namespace name: the part of a channel before `:`.", required=True)


@dataclass(kw_only=True)
class ChannelSettings:
    without_namespace: NamespaceOptions = section(
        NamespaceOptions, "Options of channels with no namespace."
    )
    namespaces: list[Namespace] = opt([], "Namespaces and their options.")


@dataclass(kw_only=True)
class Settings:
    """The whole configuration of one node."""

    dev: bool = opt(
        False,
        "Development mode: anonymous clients may do anything, API key `dev`. Insecure.",
    )
    server: ServerSettings = section(ServerSettings, "Listeners and logging.")
    broker: BrokerSettings = section(BrokerSettings, "The backplane.")
    fleet: FleetSettings = section(FleetSettings, "The node registry and fleet-wide limits.")
    drain: DrainSettings = section(DrainSettings, "Shutting down without dropping anyone.")
    rebalance: RebalanceSettings = section(
        RebalanceSettings, "Spreading long-lived connections after the fleet changes."
    )
    auth: AuthSettings = section(AuthSettings, "Connection and subscription tokens.")
    api: ApiSettings = section(ApiSettings, "The server HTTP API on the internal port.")
    client: ClientSettings = section(ClientSettings, "Per-connection behaviour and limits.")
    channel: ChannelSettings = section(ChannelSettings, "Channels and namespaces.")
