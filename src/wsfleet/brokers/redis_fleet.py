"""The fleet state in Redis: node registry, per-user counts, control channel.

It shares the connections of the :class:`~wsfleet.brokers.redis.RedisBroker`
that owns it (the broker runs its scripts and carries the control channel
on its pub/sub link), so a fleet costs no extra connection to Redis.
Scripts and key layout: :mod:`~wsfleet.brokers.redis_fleet_scripts`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from wsfleet.brokers.base import FleetState, NodeInfo
from wsfleet.brokers.redis_fleet_scripts import HEARTBEAT, LEAVE, NODES, USER_CLAIM, USER_SET

__all__ = ["SCRIPTS", "FleetKeys", "RedisFleet"]

SCRIPTS: dict[str, str] = {
    "fleet_heartbeat": HEARTBEAT,
    "fleet_leave": LEAVE,
    "fleet_nodes": NODES,
    "fleet_user_claim": USER_CLAIM,
    "fleet_user_set": USER_SET,
}
"""The scripts the broker registers for the fleet, by name."""

FORGET_AFTER = 300.0
"""Seconds after its entry expired that a silent node's entry and user counts
are deleted. Until then they are only skipped; a node back from a shorter
outage finds its counts as it left them."""

RunScript = Callable[[str, list[str], list[Any]], Awaitable[Any]]
Publish = Callable[[str, bytes], Awaitable[None]]


class FleetKeys:
    """Key names of one fleet; all share the hash tag ``{<prefix>}``."""

    __slots__ = ("base", "control", "expiry", "nodes")

    def __init__(self, prefix: str) -> None:
        self.base = f"{prefix}.fleet.{{{prefix}}}."
        self.expiry = self.base + "expiry"
        self.nodes = self.base + "nodes"
        self.control = self.base + "control"

    def user(self, user: str) -> str:
        return f"{self.base}user.{user}"

    def node_users(self, uid: str) -> str:
        return f"{self.base}node-users.{uid}"


_encode = msgspec.json.Encoder().encode
_decode_info = msgspec.json.Decoder(NodeInfo).decode


class RedisFleet(FleetState):
    """:class:`FleetState` on the Redis of a broker.

    prefix: the broker's key prefix. run_script: runs a registered script by
    name (raising BrokerError on failure). publish: publishes a frame on a
    pub/sub channel (sharded in Cluster mode).
    """

    def __init__(self, prefix: str, *, run_script: RunScript, publish: Publish) -> None:
        self.keys = FleetKeys(prefix)
        self._run = run_script
        self._publish = publish

    async def heartbeat(self, info: NodeInfo, *, ttl: float) -> bool:
        # JSON has no NaN or infinity: such an info could not be read back,
        # and the node would be live yet missing from every listing.
        if not all(math.isfinite(v) for v in (info.cpu, info.started_at, info.updated_at)):
            raise ValueError(f"node info of {info.uid} has a non-finite number")
        k = self.keys
        was_live = await self._run(
            "fleet_heartbeat",
            [k.expiry, k.nodes],
            [info.uid, _encode(info), _ms(ttl), _ms(FORGET_AFTER), k.base],
        )
        return bool(was_live)

    async def leave(self, uid: str) -> None:
        await self._run("fleet_leave", [self.keys.expiry, self.keys.nodes], [uid, self.keys.base])

    async def nodes(self) -> list[NodeInfo]:
        flat = await self._run("fleet_nodes", [self.keys.expiry, self.keys.nodes], [1])
        found = []
        for i in range(0, len(flat), 2):
            try:
                found.append(_decode_info(flat[i + 1]))
            except msgspec.DecodeError:
                continue  # a node of a newer version with another layout
        return found

    async def live_uids(self) -> list[str]:
        """The uids of the live nodes (what presence reads filter by)."""
        flat = await self._run("fleet_nodes", [self.keys.expiry, self.keys.nodes], [0])
        return [uid.decode() for uid in flat]

    async def claim_user_connection(self, uid: str, user: str, *, count: int, limit: int) -> bool:
        k = self.keys
        admitted = await self._run(
            "fleet_user_claim",
            [k.expiry, k.user(user), k.node_users(uid)],
            [uid, user, count, limit],
        )
        return bool(admitted)

    async def set_user_connections(self, uid: str, counts: dict[str, int]) -> None:
        if not counts:
            return
        k = self.keys
        keys = [k.node_users(uid)] + [k.user(user) for user in counts]
        args: list[Any] = [uid]
        for user, count in counts.items():
            args += [user, count]
        await self._run("fleet_user_set", keys, args)

    async def publish_control(self, message: bytes) -> None:
        await self._publish(self.keys.control, message)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
