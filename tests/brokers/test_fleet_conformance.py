"""The fleet-state conformance suite: the rules of ``FleetState`` in ``wsfleet.brokers.base``.

Every backend in ``conftest.BACKENDS`` runs every test here, through the same
fixtures as ``test_conformance.py``. Tests speak only the contract: the
registry (``heartbeat``/``leave``/``nodes``), the fleet-wide per-user limit
(``claim_user_connection``/``set_user_connections``), control messages
(``publish_control``/``on_control``) and the rule that presence entries of
nodes that are not live are not answered.

A "node" of the fleet is a uid in the registry. Most tests need two of them;
where one broker instance is all a backend has (memory), the second is
another uid heartbeated through the same fleet state, which the contract
allows: nothing in it ties a uid to the instance that writes it. Tests that
need a second broker instance use the ``peer`` fixture, which skips there.

Time passes only through ``broker_factory.advance`` (tests that do so carry
``advances_time``). Entries a test lets expire get :data:`SHORT_TTL`; no
test relies on a short-lived entry still being alive, so a slow machine can
only make the real sleeps longer, never a test fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from typing import NamedTuple

import pytest

from wsfleet.brokers.base import FleetState, NodeInfo
from wsfleet.protocol.messages import ClientInfo, raw

LONG_TTL = 3600.0
"""Seconds: an entry that outlives any test."""

SHORT_TTL = 0.3
"""Seconds: the ttl of an entry a test lets expire."""

PAST_SHORT_TTL = 0.6
"""Seconds to advance so that an entry written with :data:`SHORT_TTL` has expired."""

WITHIN = 5.0
"""Seconds to wait for an expected control message before failing (not a performance bound)."""

FULL = {
    "version": "1.2.3-rc.1+build.7",
    "phase": "draining",
    "public": ("203.0.113.7:8000", "[2001:db8::7]:8000", "ws.example.test:443"),
    "internal": ("10.0.0.7:9000",),
    "num_clients": 123_456,
    "num_users": 7_891,
    "num_subs": 2_345_678,
    "num_channels": 90_123,
    "cpu": 12345.678901234567,
    "rss": 3 * 2**40 + 17,
    "started_at": 1_700_000_000.123456,
    "updated_at": 1_700_000_042.987654,
}
"""Every optional field of :class:`NodeInfo` set to a value unlike its default."""


def new_uid(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


async def beat(fleet: FleetState, uid: str, *, ttl: float = LONG_TTL) -> bool:
    return await fleet.heartbeat(NodeInfo(uid=uid, name=uid), ttl=ttl)


async def live_uids(fleet: FleetState) -> list[str]:
    return sorted(info.uid for info in await fleet.nodes())


async def by_uid(fleet: FleetState) -> dict[str, NodeInfo]:
    listed = await fleet.nodes()
    uids = [info.uid for info in listed]
    assert len(uids) == len(set(uids)), f"a node is listed twice: {uids}"
    return {info.uid: info for info in listed}


def assert_same_info(got: NodeInfo, written: NodeInfo) -> None:
    assert got == written
    # Equality alone lets 3 == 3.0 through: the types must round-trip too.
    for f in dataclasses.fields(NodeInfo):
        value, expected = getattr(got, f.name), getattr(written, f.name)
        assert type(value) is type(expected), f"{f.name}: {value!r} is not like {expected!r}"


class Member(NamedTuple):
    """A node of the fleet as a test uses it: the fleet state it writes through, its uid."""

    fleet: FleetState
    uid: str

    async def beat(self, *, ttl: float = LONG_TTL) -> bool:
        return await beat(self.fleet, self.uid, ttl=ttl)

    async def claim(self, user: str, *, count: int, limit: int) -> bool:
        return await self.fleet.claim_user_connection(self.uid, user, count=count, limit=limit)

    async def set(self, counts: dict[str, int]) -> None:
        await self.fleet.set_user_connections(self.uid, counts)


def me(node) -> Member:
    return Member(node.fleet, node.uid)


@pytest.fixture
def second(node) -> Member:
    """Another uid of ``node``'s fleet, written through ``node``'s fleet state.

    Tests heartbeat it first (``await second.beat()``).
    """
    return Member(node.fleet, new_uid("second"))


@pytest.fixture(params=["peer", "same-fleet"])
def other(request: pytest.FixtureRequest, node) -> Member:
    """Another node of the fleet: a peer broker, or a second uid of ``node``'s fleet state.

    Tests heartbeat it first (``await other.beat()``). The ``peer`` variant skips
    on backends with a single node.
    """
    if request.param == "peer":
        peer = request.getfixturevalue("peer")
        return Member(peer.fleet, peer.uid)
    return Member(node.fleet, new_uid("other"))


# -- the registry ---------------------------------------------------------------------


async def test_first_heartbeat_returns_false_and_the_next_true(node) -> None:
    uid = new_uid("fresh")
    assert await beat(node.fleet, uid) is False
    assert await beat(node.fleet, uid) is True
    assert await beat(node.fleet, uid) is True
    # The fixture registered the node itself: it is live already.
    assert await beat(node.fleet, node.uid) is True


async def test_nodes_returns_the_info_exactly_as_written(node) -> None:
    written = NodeInfo(uid=new_uid("full"), name="nœud-7 ☃", **FULL)
    minimal = NodeInfo(uid=new_uid("minimal"), name="")
    await node.fleet.heartbeat(written, ttl=LONG_TTL)
    await node.fleet.heartbeat(minimal, ttl=LONG_TTL)
    listed = await by_uid(node.fleet)
    assert sorted(listed) == sorted([node.uid, written.uid, minimal.uid])
    assert_same_info(listed[written.uid], written)
    assert_same_info(listed[minimal.uid], minimal)


async def test_the_latest_heartbeat_s_info_is_listed(node) -> None:
    first = NodeInfo(uid=new_uid("changing"), name="n", **FULL)
    await node.fleet.heartbeat(first, ttl=LONG_TTL)
    later = dataclasses.replace(
        first, phase="running", public=(), num_clients=0, cpu=0.5, updated_at=first.updated_at + 1
    )
    assert await node.fleet.heartbeat(later, ttl=LONG_TTL) is True
    assert_same_info((await by_uid(node.fleet))[first.uid], later)


@pytest.mark.advances_time
async def test_an_entry_not_refreshed_within_its_ttl_expires(node, broker_factory) -> None:
    a, b = new_uid("a"), new_uid("b")
    for uid in (a, b):
        await beat(node.fleet, uid)
        # A shorter ttl replaces the longer one: the latest heartbeat counts.
        assert await beat(node.fleet, uid, ttl=SHORT_TTL) is True
    await broker_factory.advance(PAST_SHORT_TTL)
    # Expired, whether or not nodes() looked at the registry since.
    assert await beat(node.fleet, a) is False
    assert await live_uids(node.fleet) == sorted([node.uid, a])
    assert await beat(node.fleet, b) is False
    assert await live_uids(node.fleet) == sorted([node.uid, a, b])


@pytest.mark.advances_time
async def test_a_longer_ttl_replaces_a_shorter_one(node, broker_factory) -> None:
    uid = new_uid("extended")
    await beat(node.fleet, uid, ttl=SHORT_TTL)
    await beat(node.fleet, uid, ttl=LONG_TTL)
    await broker_factory.advance(PAST_SHORT_TTL)
    assert uid in await live_uids(node.fleet)
    assert await beat(node.fleet, uid) is True


async def test_leave_removes_the_node_at_once(node) -> None:
    uid = new_uid("leaving")
    await beat(node.fleet, uid)
    await node.fleet.leave(uid)
    assert await live_uids(node.fleet) == [node.uid]
    assert await beat(node.fleet, uid) is False
    await node.fleet.leave(node.uid)
    assert await live_uids(node.fleet) == [uid]


async def test_every_node_lists_every_live_node(node, peer) -> None:
    for reader in (node, peer):
        assert await live_uids(reader.fleet) == sorted([node.uid, peer.uid])
    written = NodeInfo(uid=peer.uid, name="peer", **FULL)
    assert await peer.fleet.heartbeat(written, ttl=LONG_TTL) is True
    assert_same_info((await by_uid(node.fleet))[peer.uid], written)
    # One registry: liveness written through one node is seen through the other.
    uid = new_uid("shared")
    assert await beat(node.fleet, uid) is False
    assert await beat(peer.fleet, uid) is True
    await peer.fleet.leave(uid)
    assert await beat(node.fleet, uid) is False
    await peer.fleet.leave(peer.uid)
    for reader in (node, peer):
        assert await live_uids(reader.fleet) == sorted([node.uid, uid])


# -- the per-user limit ---------------------------------------------------------------


async def test_a_claim_alone_is_admitted_up_to_the_limit(node) -> None:
    a = me(node)
    assert await a.claim("alice", count=1, limit=1) is True
    # The node's own stored count is replaced, not added to.
    assert await a.claim("alice", count=1, limit=1) is True
    assert await a.claim("alice", count=2, limit=1) is False
    assert await a.claim("alice", count=3, limit=3) is True
    assert await a.claim("bob", count=1, limit=0) is False


async def test_counts_are_absolute_not_added_up(node, second) -> None:
    a, b = me(node), second
    await b.beat()
    assert await a.claim("alice", count=2, limit=4) is True
    assert await a.claim("alice", count=2, limit=4) is True
    # ``a`` holds 2, not 4.
    assert await b.claim("alice", count=2, limit=4) is True
    assert await b.claim("alice", count=3, limit=4) is False


async def test_the_limit_counts_the_other_nodes_and_the_new_count(node, second) -> None:
    a, b = me(node), second
    await b.beat()
    assert await a.claim("alice", count=2, limit=3) is True
    assert await b.claim("alice", count=1, limit=3) is True
    assert await b.claim("alice", count=2, limit=3) is False
    assert await a.claim("alice", count=2, limit=3) is True
    assert await a.claim("alice", count=3, limit=3) is False


async def test_a_refused_claim_changes_nothing(node, second) -> None:
    a, b = me(node), second
    await b.beat()
    # Refused alone over the limit: nothing stored for ``a``.
    assert await a.claim("alice", count=3, limit=2) is False
    assert await b.claim("alice", count=2, limit=2) is True
    # Refused with another node's count: ``a`` still holds nothing.
    assert await a.claim("alice", count=1, limit=2) is False
    assert await b.claim("alice", count=2, limit=2) is True
    await b.set({"alice": 0})
    assert await a.claim("alice", count=3, limit=4) is True
    # A refused claim neither raises nor clears the claimer's stored 3.
    assert await a.claim("alice", count=5, limit=4) is False
    assert await b.claim("alice", count=1, limit=4) is True  # a holds at most 3
    assert await b.claim("alice", count=2, limit=4) is False  # a holds at least 3
    # ... nor b's stored 1.
    assert await a.claim("alice", count=3, limit=4) is True
    assert await a.claim("alice", count=4, limit=4) is False


async def test_setting_a_count_to_zero_frees_the_slots(node, second) -> None:
    a, b = me(node), second
    await b.beat()
    assert await a.claim("alice", count=3, limit=3) is True
    assert await b.claim("alice", count=1, limit=3) is False
    await a.set({"alice": 0})
    assert await b.claim("alice", count=3, limit=3) is True
    assert await a.claim("alice", count=1, limit=3) is False


async def test_set_user_connections_sets_several_users_at_once(node, second) -> None:
    a, b = me(node), second
    await b.beat()
    await a.set({"alice": 2, "bob": 1, "carol": 0})
    assert await b.claim("alice", count=2, limit=3) is False
    assert await b.claim("alice", count=1, limit=3) is True
    assert await b.claim("bob", count=3, limit=3) is False
    assert await b.claim("bob", count=2, limit=3) is True
    assert await b.claim("carol", count=3, limit=3) is True
    # Set, not added: a now holds alice 1 and no bob.
    await a.set({"alice": 1, "bob": 0})
    assert await b.claim("alice", count=2, limit=3) is True
    assert await b.claim("alice", count=3, limit=3) is False
    assert await b.claim("bob", count=3, limit=3) is True


async def test_users_are_counted_independently(node, second) -> None:
    a, b = me(node), second
    await b.beat()
    # Names that a careless key layout could mix up.
    users = ["alice", "Alice", "alice.x", "alice:x", "{alice}", "al ice", "élise 😀"]
    for user in users:
        assert await a.claim(user, count=2, limit=2) is True, user
    for user in users:
        assert await b.claim(user, count=1, limit=2) is False, user
    await a.set({"alice": 0})
    assert await b.claim("alice", count=2, limit=2) is True
    for user in users[1:]:
        assert await b.claim(user, count=1, limit=2) is False, user


@pytest.mark.advances_time
async def test_counts_of_an_expired_node_do_not_count_until_it_is_back(
    node, other, broker_factory
) -> None:
    a, b = me(node), other
    await b.beat()
    assert await a.claim("alice", count=2, limit=3) is True
    assert await b.claim("alice", count=1, limit=3) is True
    assert await b.claim("alice", count=2, limit=3) is False
    await a.beat(ttl=SHORT_TTL)
    await broker_factory.advance(PAST_SHORT_TTL)
    assert a.uid not in await live_uids(b.fleet)
    assert await b.claim("alice", count=3, limit=3) is True
    # Back in the registry: its count was kept, and counts again.
    assert await a.beat() is False
    assert await b.claim("alice", count=3, limit=3) is False
    assert await b.claim("alice", count=1, limit=3) is True
    assert await a.claim("alice", count=2, limit=3) is True
    assert await a.claim("alice", count=3, limit=3) is False


async def test_leave_drops_the_node_s_counts_for_good(node, other) -> None:
    a, b = me(node), other
    await b.beat()
    assert await a.claim("alice", count=2, limit=3) is True
    assert await b.claim("alice", count=2, limit=3) is False
    await node.fleet.leave(a.uid)
    assert await b.claim("alice", count=3, limit=3) is True
    # Back in the registry, it holds nothing: leave removed its counts.
    assert await a.beat() is False
    assert await b.claim("alice", count=3, limit=3) is True
    assert await a.claim("alice", count=1, limit=3) is False


# -- presence of dead nodes -------------------------------------------------------------


def client(user: str, client_id: str) -> ClientInfo:
    return ClientInfo(user=user, client=client_id, conn_info=raw(b'{"u":"%s"}' % user.encode()))


async def add_entries(node, channel: str, entries: dict[str, str]) -> dict[str, ClientInfo]:
    """Add ``client id -> user`` entries through ``node``; returns them as presence shows them."""
    infos = {client_id: client(user, client_id) for client_id, user in entries.items()}
    for client_id, info in infos.items():
        await node.presence.add_presence(channel, client_id, info, ttl=60.0)
    return infos


async def check_presence_of_a_dead_node(node, peer, make_channel, kill) -> None:
    mixed, only_dead = make_channel(), make_channel()
    dead = await add_entries(node, mixed, {"c1": "alice", "c2": "bob"})
    alive = await add_entries(peer, mixed, {"c3": "alice", "c4": "carol"})
    await add_entries(node, only_dead, {"c5": "dave"})
    for reader in (node, peer):
        assert await reader.presence.presence(mixed) == {**dead, **alive}
        assert await reader.presence.presence_stats(mixed) == (4, 3)
        assert set(await reader.presence.presence(only_dead)) == {"c5"}
    await kill()
    # Asked through either node, the dead node's entries are gone: bob is not
    # counted, alice is (through the live node), dave's channel is empty.
    for reader in (node, peer):
        assert await reader.presence.presence(mixed) == alive
        assert await reader.presence.presence_stats(mixed) == (2, 2)
        assert await reader.presence.presence(only_dead) == {}
        assert await reader.presence.presence_stats(only_dead) == (0, 0)


@pytest.mark.advances_time
async def test_presence_of_an_expired_node_is_not_answered(
    node, peer, broker_factory, make_channel
) -> None:
    async def expire() -> None:
        await beat(node.fleet, node.uid, ttl=SHORT_TTL)
        await broker_factory.advance(PAST_SHORT_TTL)

    await check_presence_of_a_dead_node(node, peer, make_channel, expire)


async def test_presence_of_a_node_that_left_is_not_answered(node, peer, make_channel) -> None:
    async def leave() -> None:
        await node.fleet.leave(node.uid)

    await check_presence_of_a_dead_node(node, peer, make_channel, leave)


# -- control messages -------------------------------------------------------------------


class Inbox:
    """Collects the control messages a fleet state's ``on_control`` hears, in order."""

    def __init__(self, fleet: FleetState) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.seen: list[bytes] = []
        fleet.on_control = self.queue.put_nowait

    async def take(self, count: int) -> list[bytes]:
        taken: list[bytes] = []
        try:
            async with asyncio.timeout(WITHIN):
                while len(taken) < count:
                    taken.append(await self.queue.get())
        except TimeoutError:
            raise AssertionError(
                f"expected {count} control message(s) within {WITHIN} s, got {taken!r}"
            ) from None
        self.seen += taken
        return taken

    async def until(self, last: bytes) -> list[bytes]:
        """What arrives up to and including ``last``."""
        got: list[bytes] = []
        while not got or got[-1] != last:
            got += await self.take(1)
        return got


def messages(label: str, count: int) -> list[bytes]:
    return [b"%s-%d" % (label.encode(), n) for n in range(count)]


BINARY = bytes(range(256))


async def test_control_reaches_the_sender(node) -> None:
    inbox = Inbox(node.fleet)
    payloads = [b"hello", BINARY, BINARY[::-1] * 256, b"\x00", b""]
    for payload in payloads:
        await node.fleet.publish_control(payload)
    got = await inbox.take(len(payloads))
    assert got == payloads
    assert all(type(message) is bytes for message in got)


async def test_control_messages_of_one_sender_arrive_in_order_once(node) -> None:
    inbox = Inbox(node.fleet)
    sent = messages("m", 50)
    for message in sent:
        await node.fleet.publish_control(message)
    await node.fleet.publish_control(b"end")
    assert await inbox.until(b"end") == [*sent, b"end"]


async def test_a_node_without_on_control_drops_control_messages_without_error(
    node, caplog: pytest.LogCaptureFixture
) -> None:
    node.fleet.on_control = None
    dropped = messages("dropped", 3)
    with caplog.at_level(logging.ERROR):
        for message in dropped:
            await node.fleet.publish_control(message)
        await asyncio.sleep(0)  # let delivery already due run while nobody listens
        inbox = Inbox(node.fleet)
        await node.fleet.publish_control(b"heard")
        got = await inbox.until(b"heard")
    # Messages still in flight when the callback was set may be heard; none
    # is heard twice or out of order, and the node still hears new ones.
    assert got == [m for m in [*dropped, b"heard"] if m in got]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_control_reaches_every_node(node, peer) -> None:
    inboxes = [Inbox(node.fleet), Inbox(peer.fleet)]
    await node.fleet.publish_control(BINARY)
    await peer.fleet.publish_control(b"from peer")
    for inbox in inboxes:
        assert sorted(await inbox.take(2)) == sorted([BINARY, b"from peer"])


async def test_control_of_several_senders_is_in_order_per_sender(node, peer) -> None:
    inboxes = [Inbox(node.fleet), Inbox(peer.fleet)]
    sent = {"node": messages("node", 30), "peer": messages("peer", 30)}

    async def send(fleet: FleetState, batch: list[bytes]) -> None:
        for message in batch:
            await fleet.publish_control(message)

    await asyncio.gather(send(node.fleet, sent["node"]), send(peer.fleet, sent["peer"]))
    for inbox in inboxes:
        got = await inbox.take(60)
        for batch in sent.values():
            assert [m for m in got if m in batch] == batch


async def test_a_node_without_on_control_does_not_keep_others_from_hearing(
    node, peer, caplog: pytest.LogCaptureFixture
) -> None:
    peer.fleet.on_control = None
    inbox = Inbox(node.fleet)
    sent = messages("m", 3)
    with caplog.at_level(logging.ERROR):
        for message in sent:
            await node.fleet.publish_control(message)
        assert await inbox.take(3) == sent
        peer_inbox = Inbox(peer.fleet)
        await node.fleet.publish_control(b"heard")
        got = await peer_inbox.until(b"heard")
    assert got == [m for m in [*sent, b"heard"] if m in got]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_closed_node_hears_no_control_messages(node, peer) -> None:
    closed, live = Inbox(node.fleet), Inbox(peer.fleet)
    await node.broker.close()
    sent = messages("after-close", 3)
    for message in sent:
        await peer.fleet.publish_control(message)
    assert await live.take(3) == sent
    assert closed.queue.empty()
