"""Bad input from one client: a clear error or close code for it, and nothing lost for
anyone else.

Each abuse runs from a raw WebSocket client (``websockets``) while a well-behaved
SDK client (the :class:`Watcher`) is subscribed to a channel. Publications go
out before, during and after the abuse; the watcher must get every one of
them, in order, still on its first connection, and a new client must still be
able to connect afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection

from tests.integration.clients import (
    WAIT,
    Abuse,
    Watcher,
    eventually,
    scrape,
    with_watcher,
)
from tests.integration.raw import (
    closed_with,
    json_replies,
    pb_commands,
    pb_replies,
    raw_client,
    recv_binary,
    recv_text,
)
from tests.node_harness import RunningNode, running_node

MAX_MESSAGE = 1024

LIMITS = {
    "dev": True,
    "client.max_message_size": MAX_MESSAGE,
    "client.command_rate_limit": 5,
    "client.command_burst": 5,
    "client.command_rate_disconnect_after": 20,
}


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    async with running_node(LIMITS) as running:
        yield running


async def _malformed_json(node: RunningNode, watcher: Watcher) -> None:
    async with raw_client(node) as ws:
        await watcher.publish()
        await ws.send('{"id": 2, "subscribe": {"channel": "x"')
        await watcher.publish()
        code, _ = await closed_with(ws)
        assert code == 3501


async def _invalid_utf8(node: RunningNode, watcher: Watcher) -> None:
    async with raw_client(node) as ws:
        # A text frame must be UTF-8: websockets refuses to send one that is not,
        # so the bad bytes hide inside a JSON string the server must check.
        await ws.send(
            '{"id": 2, "publish": {"channel": "watched", "data": "\udcff"}}'.encode(
                "utf-8", "surrogatepass"
            ),
            text=True,
        )
        await watcher.publish()
        code, _ = await closed_with(ws)
        assert code in (1007, 3501)


async def _malformed_protobuf(node: RunningNode, watcher: Watcher) -> None:
    async with raw_client(node, protobuf=True) as ws:
        await watcher.publish()
        await ws.send(b"\x0a\xff\xff\xff\xff\xff\xff\x01\x02")  # a length past the frame
        code, _ = await closed_with(ws)
        assert code == 3501


async def _garbage_protobuf_message(node: RunningNode, watcher: Watcher) -> None:
    async with raw_client(node, protobuf=True) as ws:
        await ws.send(b"\x04\xff\xff\xff\xff")  # well framed, but not a Command
        await watcher.publish()
        code, _ = await closed_with(ws)
        assert code == 3501


async def _unknown_command(node: RunningNode, watcher: Watcher) -> None:
    async with raw_client(node) as ws:
        await ws.send(json.dumps({"id": 2}))
        await watcher.publish()
        code, _ = await closed_with(ws)
        assert code == 3501


async def _unknown_field_only(node: RunningNode, watcher: Watcher) -> None:
    async with raw_client(node) as ws:
        await ws.send(json.dumps({"id": 2, "teleport": {"to": "mars"}}))
        code, _ = await closed_with(ws)
        assert code == 3501


async def _out_of_range_integers(node: RunningNode, watcher: Watcher) -> None:
    # A negative id would otherwise be echoed back; a negative offset carried into recovery.
    async with raw_client(node) as ws:
        await ws.send(json.dumps({"id": 2, "subscribe": {"channel": "x", "offset": -1}}))
        await watcher.publish()
        code, received = await closed_with(ws)
        assert (code, received) == (3501, [])
    async with raw_client(node) as ws:
        await ws.send(json.dumps({"id": -2, "ping": {}}))
        code, received = await closed_with(ws)
        assert (code, received) == (3501, [])


async def _command_before_connect(node: RunningNode, watcher: Watcher) -> None:
    async with raw_client(node, connect=False) as ws:
        await ws.send(json.dumps({"id": 1, "subscribe": {"channel": "watched"}}))
        await watcher.publish()
        code, received = await closed_with(ws)
        assert code == 3501
        assert received == []  # no subscribe reply, no publication


async def _command_before_connect_protobuf(node: RunningNode, watcher: Watcher) -> None:
    async with raw_client(node, protobuf=True, connect=False) as ws:
        await ws.send(pb_commands({"id": 1, "subscribe": {"channel": "watched"}}))
        code, received = await closed_with(ws)
        assert code == 3501
        assert received == []


async def _duplicate_subscribe(node: RunningNode, watcher: Watcher) -> None:
    async with raw_client(node) as ws:
        await ws.send(json.dumps({"id": 2, "subscribe": {"channel": "dup"}}))
        (reply,) = await json_replies(ws)
        assert reply["id"] == 2 and "subscribe" in reply
        await ws.send(json.dumps({"id": 3, "subscribe": {"channel": "dup"}}))
        (reply,) = await json_replies(ws)
        assert reply["id"] == 3
        assert reply["error"]["code"] == 105
        await watcher.publish()
        # The connection stays and still works.
        await ws.send(json.dumps({"id": 4, "ping": {}}))
        (reply,) = await json_replies(ws)
        assert reply == {"id": 4, "ping": {}}


async def _duplicate_subscribe_protobuf(node: RunningNode, watcher: Watcher) -> None:
    async with raw_client(node, protobuf=True) as ws:
        await ws.send(pb_commands({"id": 2, "subscribe": {"channel": "dup"}}))
        (reply,) = pb_replies(await recv_binary(ws))
        assert reply["id"] == 2 and "subscribe" in reply
        await ws.send(pb_commands({"id": 3, "subscribe": {"channel": "dup"}}))
        (reply,) = pb_replies(await recv_binary(ws))
        assert (reply["id"], reply["error"]["code"]) == (3, 105)
        await ws.send(pb_commands({"id": 4, "ping": {}}))
        (reply,) = pb_replies(await recv_binary(ws))
        assert reply["id"] == 4 and "ping" in reply


async def _oversized_frame(node: RunningNode, watcher: Watcher) -> None:
    async with raw_client(node) as ws:
        big = json.dumps({"id": 2, "publish": {"channel": "watched", "data": "x" * 4096}})
        await ws.send(big)
        await watcher.publish()
        code, _ = await closed_with(ws)
        assert code == 1009


async def _oversized_fragmented_message(node: RunningNode, watcher: Watcher) -> None:
    async with raw_client(node) as ws:
        chunk = "x" * (MAX_MESSAGE // 2)
        # Each fragment is under the limit; the message is not.
        await ws.send(iter([chunk, chunk, chunk, chunk]))
        code, _ = await closed_with(ws)
        assert code == 1009


async def _binary_on_json(node: RunningNode, watcher: Watcher) -> None:
    async with raw_client(node) as ws:
        await ws.send(json.dumps({"id": 2, "ping": {}}).encode())  # bytes: a binary frame
        await watcher.publish()
        code, _ = await closed_with(ws)
        assert code == 3501


async def _text_on_protobuf(node: RunningNode, watcher: Watcher) -> None:
    async with raw_client(node, protobuf=True) as ws:
        await ws.send(json.dumps({"id": 2, "ping": {}}))  # str: a text frame
        code, _ = await closed_with(ws)
        assert code == 3501


async def _flood(node: RunningNode, watcher: Watcher) -> None:
    async with raw_client(node) as ws:
        # connect used one token of the burst of 5; 60 pings in frames under the size limit.
        for start in range(2, 62, 20):
            ids = range(start, start + 20)
            await ws.send("\n".join(json.dumps({"id": i, "ping": {}}) for i in ids))
        await watcher.publish()
        code, received = await closed_with(ws)
        replies = [json.loads(line) for f in received for line in f.splitlines() if line]
        assert code == 3013
        limited = [r for r in replies if "error" in r]
        assert all("ping" in r for r in replies if "error" not in r)
        assert all(r["error"]["code"] == 111 for r in limited)
        assert all(r["error"].get("temporary") for r in limited)
        # Each refusal is answered until the 20th, which closes the connection.
        assert len(limited) == 19


async def _flood_over_frames(node: RunningNode, watcher: Watcher) -> None:
    async with raw_client(node, protobuf=True) as ws:
        for i in range(2, 40):
            await ws.send(pb_commands({"id": i, "ping": {}}))
        await watcher.publish()
        code, received = await closed_with(ws)
        errors = [r["error"]["code"] for f in received for r in pb_replies(f) if "error" in r]
        assert code == 3013
        assert errors == [111] * 19


CASES: dict[str, Abuse] = {
    "malformed_json": _malformed_json,
    "invalid_utf8": _invalid_utf8,
    "malformed_protobuf": _malformed_protobuf,
    "garbage_protobuf_message": _garbage_protobuf_message,
    "unknown_command": _unknown_command,
    "unknown_field_only": _unknown_field_only,
    "out_of_range_integers": _out_of_range_integers,
    "command_before_connect": _command_before_connect,
    "command_before_connect_protobuf": _command_before_connect_protobuf,
    "duplicate_subscribe": _duplicate_subscribe,
    "duplicate_subscribe_protobuf": _duplicate_subscribe_protobuf,
    "oversized_frame": _oversized_frame,
    "oversized_fragmented_message": _oversized_fragmented_message,
    "binary_on_json": _binary_on_json,
    "text_on_protobuf": _text_on_protobuf,
    "flood": _flood,
    "flood_over_frames": _flood_over_frames,
}


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_input_is_refused_and_others_lose_nothing(node: RunningNode, case: str) -> None:
    await with_watcher(node, CASES[case], protobuf=case.endswith("protobuf"))


async def test_oversized_messages_are_counted_per_connection(node: RunningNode) -> None:
    """One frame over client.max_message_size, then one message over it in small
    fragments: each closes its own connection with 1009 and counts once."""

    async def both(node: RunningNode, watcher: Watcher) -> None:
        await _oversized_frame(node, watcher)
        await _oversized_fragmented_message(node, watcher)

    await with_watcher(node, both)
    key = 'wsfleet_limit_hits_total{limit="message_size"}'

    async def counted_twice() -> bool:
        return (await scrape(node)).get(key) == 2  # counted when the socket is gone

    await eventually(counted_twice)
    assert node.node.stats.limit_hits["message_size"] == 2


@pytest.mark.parametrize("fragmented", [False, True], ids=["frame", "fragments"])
async def test_a_message_of_exactly_max_message_size_passes_one_byte_more_does_not(
    node: RunningNode, fragmented: bool
) -> None:
    def publish(size: int) -> str:
        empty = json.dumps({"id": 2, "publish": {"channel": "pad", "data": ""}})
        return json.dumps(
            {"id": 2, "publish": {"channel": "pad", "data": "x" * (size - len(empty))}}
        )

    async def send(ws: ClientConnection, message: str) -> None:
        await ws.send(iter([message[:300], message[300:]]) if fragmented else message)

    async with raw_client(node) as ws:
        await send(ws, publish(MAX_MESSAGE))
        assert await json_replies(ws) == [{"id": 2, "publish": {}}]
        await send(ws, publish(MAX_MESSAGE + 1))
        code, _ = await closed_with(ws)
        assert code == 1009


@pytest.mark.parametrize("flood", [_flood, _flood_over_frames], ids=["json", "protobuf"])
async def test_a_command_flood_is_counted(node: RunningNode, flood: Abuse) -> None:
    """19 commands refused with 111, the 20th closes with 3013: 20 rate-limit hits."""
    await with_watcher(node, flood, protobuf=flood is _flood_over_frames)
    metrics = await scrape(node)
    assert metrics['wsfleet_limit_hits_total{limit="command_rate"}'] == 20
    assert metrics['wsfleet_command_errors_total{code="111"}'] == 19
    assert metrics['wsfleet_disconnects_total{code="3013"}'] == 1


async def test_many_abusers_at_once(node: RunningNode) -> None:
    """Every abuse at the same time, while the watcher keeps receiving."""

    async def all_at_once(node: RunningNode, watcher: Watcher) -> None:
        await asyncio.gather(*(abuse(node, watcher) for abuse in CASES.values()))

    await with_watcher(node, all_at_once)


# -- pings, pongs and the connect deadline ------------------------------------------------


@pytest.fixture
async def pinging_node() -> AsyncIterator[RunningNode]:
    overrides = {
        "dev": True,
        "client.ping_interval": 2,
        "client.pong_timeout": 1,
        "client.connect_timeout": 1,
    }
    async with running_node(overrides) as running:
        yield running


async def _ponging_until(ws: ClientConnection, done: asyncio.Event, *, protobuf: bool) -> None:
    """Answer every server ping until ``done``; then check the connection still works."""

    async def pings() -> None:
        while True:
            frame = await ws.recv()
            if protobuf:
                assert isinstance(frame, bytes)
                assert all(r == {} for r in pb_replies(frame))
                await ws.send(pb_commands({}))
            else:
                assert json.loads(frame) == {}
                await ws.send("{}")

    answering = asyncio.ensure_future(pings())
    try:
        await asyncio.wait_for(done.wait(), WAIT)
        assert not answering.done()  # no error, no close while the other was dropped
    finally:
        answering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answering
    if protobuf:
        await ws.send(pb_commands({"id": 9, "ping": {}}))
        replies = [r for r in pb_replies(await recv_binary(ws)) if r.get("id")]
        while not replies:
            replies = [r for r in pb_replies(await recv_binary(ws)) if r.get("id")]
        assert replies[0]["id"] == 9 and "ping" in replies[0]
    else:
        await ws.send(json.dumps({"id": 9, "ping": {}}))
        reply = json.loads(await recv_text(ws))
        while reply == {}:
            reply = json.loads(await recv_text(ws))
        assert reply == {"id": 9, "ping": {}}


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_client_that_never_pongs_is_closed(pinging_node: RunningNode, protobuf: bool) -> None:
    """A silent client is closed with 3012; one that pongs, and the SDK, stay."""

    async def silent(node: RunningNode, watcher: Watcher) -> None:
        silent_closed = asyncio.Event()
        async with (
            raw_client(node, protobuf=protobuf) as mute,
            raw_client(node, protobuf=protobuf) as polite,
        ):
            answering = asyncio.ensure_future(
                _ponging_until(polite, silent_closed, protobuf=protobuf)
            )
            await watcher.publish()
            code, received = await closed_with(mute)
            silent_closed.set()
            await watcher.publish()
            assert code == 3012
            # What came before the close were the server's pings: empty replies.
            if protobuf:
                assert received and all(r == {} for f in received for r in pb_replies(f))
            else:
                assert received and all(json.loads(f) == {} for f in received)
            await answering

    await with_watcher(pinging_node, silent, protobuf=protobuf)
    assert pinging_node.node.stats.disconnects[3012] == 1  # neither the polite one nor the SDK
    metrics = await scrape(pinging_node)
    assert metrics['wsfleet_limit_hits_total{limit="pong_timeout"}'] == 1
    assert metrics['wsfleet_disconnects_total{code="3012"}'] == 1


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_connection_without_connect_command_is_closed(
    pinging_node: RunningNode, protobuf: bool
) -> None:
    async def idle(node: RunningNode, watcher: Watcher) -> None:
        async with raw_client(node, protobuf=protobuf, connect=False) as ws:
            await watcher.publish()
            code, received = await closed_with(ws)
            assert code == 3502
            assert received == []

    await with_watcher(pinging_node, idle)
