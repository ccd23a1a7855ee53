"""A node's membership in its fleet: heartbeat, control messages, fleet-wide actions.

* Heartbeat. Every ``fleet.heartbeat_interval`` the node writes its
  :class:`~wsfleet.brokers.base.NodeInfo` with a time to live of two
  intervals and reads the live nodes back. A node that stops (SIGKILL, a
  partition) drops out of the registry within two intervals of its last
  heartbeat, and with it every presence entry it added.
* Fleet-wide actions. The server API's disconnect, subscribe and
  unsubscribe act on the local connections at once and reach the other
  nodes through the control channel; the channels API asks every live node
  (a survey) and waits up to ``fleet.survey_timeout`` for the answers.
* Fleet-wide connection rate. ``fleet.connection_rate_limit`` is split
  evenly over the live nodes; each node refuses handshakes over its share.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from wsfleet.brokers.base import BrokerError, FleetState, NodeInfo
from wsfleet.core.client import ClientSession
from wsfleet.core.hub import Hub
from wsfleet.core.limits import TokenBucket
from wsfleet.core.registry import ConnectionRegistry
from wsfleet.core.user_limit import UserConnections
from wsfleet.protocol.codes import Disconnect, ProtocolError
from wsfleet.settings import FleetSettings

log = logging.getLogger("wsfleet.fleet")


class ControlMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What nodes tell each other over the control channel (JSON)."""

    kind: str
    """``disconnect``, ``subscribe``, ``unsubscribe``, ``survey`` or ``answer``."""
    sender: str
    to: str = ""
    request: str = ""
    user: str = ""
    client: str = ""
    channel: str = ""
    whitelist: list[str] = []
    code: int = 0
    reason: str = ""
    pattern: str = ""
    channels: dict[str, int] = {}


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(ControlMessage).decode


@dataclass(slots=True)
class _Survey:
    expected: set[str]
    answers: dict[str, dict[str, int]] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class FleetMember:
    """Keeps one node registered in its fleet and carries fleet-wide actions.

    describe: builds this node's current NodeInfo for each heartbeat.
    monotonic: clock of the connection-rate bucket (seconds).
    """

    def __init__(
        self,
        fleet: FleetState,
        *,
        uid: str,
        settings: FleetSettings,
        describe: Callable[[], NodeInfo],
        registry: ConnectionRegistry[ClientSession],
        hub: Hub,
        users: UserConnections,
        monotonic: Callable[[], float],
    ) -> None:
        self.state = fleet
        self.uid = uid
        self.settings = settings
        self._describe = describe
        self._registry = registry
        self._hub = hub
        self._users = users
        self.nodes: list[NodeInfo] = []
        """The live nodes as of the last heartbeat (this one included)."""
        self.error: str | None = None
        """Why the last heartbeat failed, or None."""
        self._rate = TokenBucket(
            rate=settings.connection_rate_limit,
            burst=settings.connection_rate_limit,
            clock=monotonic,
        )
        self._surveys: dict[str, _Survey] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- heartbeat ------------------------------------------------------------------

    @property
    def ttl(self) -> float:
        return 2 * self.settings.heartbeat_interval

    async def start(self) -> None:
        """Register (raises BrokerError when the backend refuses) and keep heartbeating."""
        self.state.on_control = self._on_control
        await self.state.heartbeat(self._describe(), ttl=self.ttl)
        await self._read_nodes()
        self._loop_task = asyncio.get_running_loop().create_task(self._heartbeats())

    async def beat(self) -> None:
        """One heartbeat: write this node, rewrite lost counts, read the fleet."""
        try:
            was_live = await self.state.heartbeat(self._describe(), ttl=self.ttl)
            if not was_live:
                # The registry lost this node (a long outage, or the backend's
                # data): the user counts it held may be gone with it.
                log.warning(
                    "node re-registered in the fleet", extra={"event": "fleet", "uid": self.uid}
                )
                self._users.rewrite_all(self._registry.users())
                # Presence entries may be gone with it (a Redis that lost its
                # data): write them now rather than at each connection's next
                # refresh, up to presence_update_interval later.
                for session in self._registry:
                    session.subs.refresh_presence()
            await self._users.flush()
            await self._read_nodes()
        except BrokerError as exc:
            if self.error is None:
                log.warning("fleet heartbeat failed: %s", exc, extra={"event": "fleet"})
            self.error = str(exc)
            return
        if self.error is not None:
            log.info("fleet heartbeat restored", extra={"event": "fleet"})
        self.error = None

    async def live_nodes(self) -> list[NodeInfo]:
        """The live nodes, read now (and kept as :attr:`nodes`)."""
        await self._read_nodes()
        return self.nodes

    async def _read_nodes(self) -> None:
        self.nodes = await self.state.nodes()
        limit = self.settings.connection_rate_limit
        if limit > 0:
            share = limit / max(1, len(self.nodes))
            self._rate.rate = share
            self._rate.burst = max(1.0, share)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            try:
                await self.beat()
            except Exception:
                # A bug must not end the heartbeat: the node would silently
                # drop out of its fleet while still serving.
                log.exception("fleet heartbeat crashed", extra={"event": "fleet"})

    async def stop(self) -> None:
        """Stop heartbeating and leave the registry at once (best effort)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        for task in list(self._tasks):
            task.cancel()
        self.state.on_control = None
        await self._users.stop()
        try:
            await self.state.leave(self.uid)
        except BrokerError as exc:
            log.warning("leaving the fleet failed: %s", exc, extra={"event": "fleet"})

    # -- limits ---------------------------------------------------------------------

    def take_connection(self) -> bool:
        """Whether this node's share of the fleet connection rate admits one more."""
        return self._rate.take()

    def retry_after(self) -> float:
        return self._rate.retry_after()

    # -- fleet-wide actions ---------------------------------------------------------

    async def disconnect(
        self, user: str, client: str, whitelist: Iterable[str], disconnect: Disconnect
    ) -> None:
        keep = list(whitelist)
        self._disconnect_local(user, client, keep, disconnect)
        await self._send(
            "disconnect",
            user=user,
            client=client,
            whitelist=keep,
            code=disconnect.code,
            reason=disconnect.reason,
        )

    async def subscribe(self, user: str, client: str, channel: str) -> None:
        await self._subscribe_local(user, client, channel)
        await self._send("subscribe", user=user, client=client, channel=channel)

    async def unsubscribe(self, user: str, client: str, channel: str) -> None:
        await self._unsubscribe_local(user, client, channel)
        await self._send("unsubscribe", user=user, client=client, channel=channel)

    async def channels(self, pattern: str) -> tuple[dict[str, int], list[NodeInfo]]:
        """Subscriber counts of the fleet's channels matching ``pattern`` (all when empty).

        Returns the counts and the registry entries of the nodes that did not answer
        in time (their subscribers are not counted).
        """
        counts = Counter(self._local_channels(pattern))
        others = {n.uid: n for n in await self.live_nodes() if n.uid != self.uid}
        if not others:
            return dict(counts), []
        request = secrets.token_hex(8)
        survey = _Survey(expected=set(others))
        self._surveys[request] = survey
        try:
            await self._send("survey", request=request, pattern=pattern)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(survey.done.wait(), self.settings.survey_timeout)
        finally:
            del self._surveys[request]
        for answer in survey.answers.values():
            counts.update(answer)
        missing = [others[uid] for uid in sorted(others.keys() - survey.answers.keys())]
        if missing:
            log.warning(
                "channels survey: %d node(s) did not answer",
                len(missing),
                extra={"event": "fleet", "nodes": [n.name for n in missing]},
            )
        return dict(counts), missing

    async def _send(self, kind: str, **fields: Any) -> None:
        message = ControlMessage(kind=kind, sender=self.uid, **fields)
        await self.state.publish_control(_encode(message))

    # -- control messages from other nodes -----------------------------------------

    def _on_control(self, data: bytes) -> None:
        try:
            msg = _decode(data)
        except msgspec.DecodeError as exc:
            log.warning("unreadable control message: %s", exc, extra={"event": "fleet"})
            return
        if msg.sender == self.uid:
            return  # acted on locally already
        if msg.kind == "disconnect":
            self._disconnect_local(
                msg.user, msg.client, msg.whitelist, Disconnect(msg.code, msg.reason)
            )
        elif msg.kind == "subscribe":
            self._spawn(self._subscribe_local(msg.user, msg.client, msg.channel))
        elif msg.kind == "unsubscribe":
            self._spawn(self._unsubscribe_local(msg.user, msg.client, msg.channel))
        elif msg.kind == "survey":
            answer = self._local_channels(msg.pattern)
            self._spawn(self._send("answer", to=msg.sender, request=msg.request, channels=answer))
        elif msg.kind == "answer" and msg.to == self.uid:
            survey = self._surveys.get(msg.request)
            if survey is not None:
                survey.answers[msg.sender] = msg.channels
                if survey.expected <= survey.answers.keys():
                    survey.done.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        async def run() -> None:
            try:
                await coro
            except (BrokerError, ProtocolError) as exc:
                log.warning("control action failed: %s", exc, extra={"event": "fleet"})

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the local part of each action --------------------------------------------

    def _sessions(self, user: str, client: str) -> list[ClientSession]:
        sessions = self._registry.by_user(user)
        if client:
            sessions = [s for s in sessions if s.client_id == client]
        return sessions

    def _disconnect_local(
        self, user: str, client: str, whitelist: Iterable[str], disconnect: Disconnect
    ) -> None:
        keep = set(whitelist)
        for session in self._sessions(user, client):
            if session.client_id not in keep:
                session.close(disconnect)

    async def _subscribe_local(self, user: str, client: str, channel: str) -> None:
        for session in self._sessions(user, client):
            if channel not in session.subs.entries:
                await session.server_subscribe(channel)

    async def _unsubscribe_local(self, user: str, client: str, channel: str) -> None:
        for session in self._sessions(user, client):
            await session.server_unsubscribe(channel)

    def _local_channels(self, pattern: str) -> dict[str, int]:
        hub = self._hub
        return {
            channel: hub.num_subscribers(channel)
            for channel in hub.channels()
            if not pattern or fnmatch.fnmatchcase(channel, pattern)
        }
