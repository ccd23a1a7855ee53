"""The server HTTP API through ``cent``: every method, its errors, and its key."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import cent
import pytest
from cent.exceptions import CentApiResponseError, CentUnauthorizedError

from tests.integration.clients import (
    ClientEvents,
    api_client,
    sdk_client,
    subscribed,
    value,
)
from tests.node_harness import RunningNode, running_node
from wsfleet.auth import mint_connection_token

SECRET = "server-api-secret-long-enough-for-hs256-tokens"
API_KEY = "server-api-key"

CONFIG = {
    "channel": {
        "namespaces": [
            {
                "name": "chat",
                "history_size": 20,
                "history_ttl": 300,
                "presence": True,
                "allow_subscribe_for_client": True,
            },
            {"name": "live", "allow_subscribe_for_client": True},  # no history, no presence
        ]
    }
}


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    overrides = {"auth.token_hmac_secret": SECRET, "api.key": API_KEY}
    async with running_node(overrides, config=CONFIG) as running:
        yield running


@pytest.fixture
async def api(node: RunningNode) -> AsyncIterator[cent.AsyncClient]:
    async with api_client(node, API_KEY) as client:
        yield client


def token(user: str) -> str:
    return mint_connection_token(SECRET, user=user)


async def test_publish(node: RunningNode, api: cent.AsyncClient) -> None:
    async with sdk_client(node, token=token("u1")) as client:
        _, events = await subscribed(client, "chat:pub")
        first = await api.publish(cent.PublishRequest(channel="chat:pub", data={"a": 1}))
        second = await api.publish(
            cent.PublishRequest(channel="chat:pub", data={"a": 2}, tags={"k": "v"})
        )
        assert (first.offset, second.offset) == (1, 2)
        assert first.epoch and first.epoch == second.epoch
        got = await events.take("pub", 2)
        assert [value(p.data) for p in got] == [{"a": 1}, {"a": 2}]
        assert got[1].tags == {"k": "v"}

        # skip_history: delivered, but not kept and without an offset.
        skipped = await api.publish(
            cent.PublishRequest(channel="chat:pub", data={"a": 3}, skip_history=True)
        )
        assert skipped.offset == 0
        assert value((await events.next("pub")).data) == {"a": 3}
        history = await api.history(cent.HistoryRequest(channel="chat:pub", limit=-1))
        assert [p.data for p in history.publications] == [{"a": 1}, {"a": 2}]

        # No history in the namespace: no offset, but delivered all the same.
        _, live = await subscribed(client, "live:pub")
        result = await api.publish(cent.PublishRequest(channel="live:pub", data=[1, 2]))
        assert result.offset == 0
        assert value((await live.next("pub")).data) == [1, 2]


async def test_publish_binary_with_b64data(node: RunningNode, api: cent.AsyncClient) -> None:
    blob = bytes(range(256))
    async with sdk_client(node, protobuf=True, token=token("u1")) as client:
        _, events = await subscribed(client, "live:bin")
        await api.publish(
            cent.PublishRequest(
                channel="live:bin", data=None, b64data=base64.b64encode(blob).decode()
            )
        )
        assert (await events.next("pub")).data == blob


async def test_publish_errors(api: cent.AsyncClient) -> None:
    with pytest.raises(CentApiResponseError) as err:
        await api.publish(cent.PublishRequest(channel="nowhere:x", data={}))
    assert err.value.code == 102  # unknown namespace on a non-dev node
    with pytest.raises(CentApiResponseError) as err:
        await api.publish(cent.PublishRequest(channel="", data={}))
    assert err.value.code == 107
    with pytest.raises(CentApiResponseError) as err:
        await api.publish(cent.PublishRequest(channel="chat:x", data=None))
    assert err.value.code == 107  # data required


async def test_broadcast(node: RunningNode, api: cent.AsyncClient) -> None:
    async with sdk_client(node, token=token("u1")) as client:
        recorders = [(await subscribed(client, ch))[1] for ch in ("chat:b1", "live:b2")]
        result = await api.broadcast(
            cent.BroadcastRequest(channels=["chat:b1", "live:b2", "nowhere:b3"], data={"b": 1})
        )
        first, second, third = result.responses
        assert first.result is not None and first.result.offset == 1
        assert second.result is not None and second.result.offset == 0
        assert third.error is not None and third.error.code == 102
        for events in recorders:
            assert value((await events.next("pub")).data) == {"b": 1}


async def test_subscribe_and_unsubscribe(node: RunningNode, api: cent.AsyncClient) -> None:
    events = ClientEvents()
    async with sdk_client(node, events=events, token=token("sam")) as client:
        await api.subscribe(cent.SubscribeRequest(user="sam", channel="chat:srv"))
        ctx = await events.next("server_subscribed")
        assert ctx.channel == "chat:srv"
        assert ctx.recoverable and ctx.positioned  # a namespace with history
        presence = await api.presence(cent.PresenceRequest(channel="chat:srv"))
        assert presence.presence[client.client_id].user == "sam"

        await api.publish(cent.PublishRequest(channel="chat:srv", data={"x": 1}))
        pub = await events.next("server_pub")
        assert (pub.channel, value(pub.pub.data)) == ("chat:srv", {"x": 1})

        # Subscribing again is a no-op, not an error or a second subscription.
        await api.subscribe(cent.SubscribeRequest(user="sam", channel="chat:srv"))
        channels = await api.channels(cent.ChannelsRequest())
        assert channels.channels["chat:srv"].num_clients == 1

        await api.unsubscribe(cent.UnsubscribeRequest(user="sam", channel="chat:srv"))
        assert (await events.next("server_unsubscribed")).channel == "chat:srv"
        assert "chat:srv" not in (await api.channels(cent.ChannelsRequest())).channels

        # Unknown users and unknown namespaces.
        await api.subscribe(cent.SubscribeRequest(user="nobody", channel="chat:srv"))
        with pytest.raises(CentApiResponseError) as err:
            await api.subscribe(cent.SubscribeRequest(user="sam", channel="nowhere:srv"))
        assert err.value.code == 102


async def test_disconnect(node: RunningNode, api: cent.AsyncClient) -> None:
    kicked, kept = ClientEvents(), ClientEvents()
    async with (
        sdk_client(node, events=kicked, token=token("kim")) as first,
        sdk_client(node, protobuf=True, events=kept, token=token("kim")) as second,
    ):
        await api.disconnect(
            cent.DisconnectRequest(
                user="kim",
                client=first.client_id,
                disconnect=cent.Disconnect(code=4503, reason="go away"),
            )
        )
        ctx = await kicked.next("disconnected")
        assert (ctx.code, ctx.reason) == (4503, "go away")
        assert second.state.value == "connected"
        info = await api.info(cent.InfoRequest())
        assert info.nodes[0].num_clients == 1

        with pytest.raises(CentApiResponseError) as err:
            await api.disconnect(
                cent.DisconnectRequest(user="kim", disconnect=cent.Disconnect(code=1000))
            )
        assert err.value.code == 107
        assert second.state.value == "connected"


async def test_presence_and_stats(node: RunningNode, api: cent.AsyncClient) -> None:
    async with (
        sdk_client(node, token=token("p1")) as one,
        sdk_client(node, protobuf=True, token=token("p2")) as two,
    ):
        for client in (one, two):
            await subscribed(client, "chat:room")
        presence = await api.presence(cent.PresenceRequest(channel="chat:room"))
        assert {cid: i.user for cid, i in presence.presence.items()} == {
            one.client_id: "p1",
            two.client_id: "p2",
        }
        assert all(i.client == cid for cid, i in presence.presence.items())
        stats = await api.presence_stats(cent.PresenceStatsRequest(channel="chat:room"))
        assert (stats.num_clients, stats.num_users) == (2, 2)

        empty = await api.presence(cent.PresenceRequest(channel="chat:empty"))
        assert empty.presence == {}

        with pytest.raises(CentApiResponseError) as err:
            await api.presence(cent.PresenceRequest(channel="live:room"))
        assert err.value.code == 108  # presence is off for the namespace
        with pytest.raises(CentApiResponseError) as err:
            await api.presence_stats(cent.PresenceStatsRequest(channel="live:room"))
        assert err.value.code == 108


async def test_history_and_history_remove(api: cent.AsyncClient) -> None:
    for n in range(5):
        await api.publish(cent.PublishRequest(channel="chat:hist", data={"n": n}))
    page = await api.history(cent.HistoryRequest(channel="chat:hist", limit=2, reverse=True))
    assert [p.data for p in page.publications] == [{"n": 4}, {"n": 3}]
    assert page.offset == 5

    await api.history_remove(cent.HistoryRemoveRequest(channel="chat:hist"))
    after = await api.history(cent.HistoryRequest(channel="chat:hist", limit=-1))
    assert after.publications == []
    # The stream position survives the removal: offsets keep growing.
    assert (after.offset, after.epoch) == (5, page.epoch)
    result = await api.publish(cent.PublishRequest(channel="chat:hist", data={"n": 5}))
    assert result.offset == 6

    with pytest.raises(CentApiResponseError) as err:
        await api.history(cent.HistoryRequest(channel="live:hist", limit=1))
    assert err.value.code == 108  # no history in the namespace
    with pytest.raises(CentApiResponseError) as err:
        await api.history(cent.HistoryRequest(channel="nowhere:hist", limit=1))
    assert err.value.code == 102
    with pytest.raises(CentApiResponseError) as err:
        await api.history(
            cent.HistoryRequest(
                channel="chat:hist", limit=1, since=cent.StreamPosition(offset=1, epoch="nope")
            )
        )
    assert err.value.code == 112


async def test_channels(node: RunningNode, api: cent.AsyncClient) -> None:
    async with (
        sdk_client(node, token=token("c1")) as one,
        sdk_client(node, token=token("c2")) as two,
    ):
        await subscribed(one, "chat:a")
        await subscribed(two, "chat:a")
        await subscribed(two, "live:b")
        everything = await api.channels(cent.ChannelsRequest())
        assert {ch: i.num_clients for ch, i in everything.channels.items()} == {
            "chat:a": 2,
            "live:b": 1,
        }
        chat_only = await api.channels(cent.ChannelsRequest(pattern="chat:*"))
        assert set(chat_only.channels) == {"chat:a"}


async def test_info(node: RunningNode, api: cent.AsyncClient) -> None:
    async with sdk_client(node, token=token("i1")) as client:
        await subscribed(client, "chat:info")
        info = await api.info(cent.InfoRequest())
        (me,) = info.nodes
        assert me.name == node.node.name
        assert (me.num_clients, me.num_users, me.num_subs, me.num_channels) == (1, 1, 1, 1)
        assert me.process is not None and me.process.rss > 0


async def test_batch(node: RunningNode, api: cent.AsyncClient) -> None:
    async with sdk_client(node, token=token("b1")) as client:
        _, events = await subscribed(client, "chat:batch")
        result = await api.batch(
            cent.BatchRequest(
                requests=[
                    cent.PublishRequest(channel="chat:batch", data={"i": 1}),
                    cent.PublishRequest(channel="chat:batch", data={"i": 2}),
                    cent.HistoryRequest(channel="chat:batch", limit=-1),
                    cent.PresenceStatsRequest(channel="chat:batch"),
                    cent.InfoRequest(),
                ]
            )
        )
        first, second, history, stats, info = result.replies
        assert isinstance(first, cent.PublishResult) and first.offset == 1
        assert isinstance(second, cent.PublishResult) and second.offset == 2
        assert isinstance(history, cent.HistoryResult)
        assert [p.data for p in history.publications] == [{"i": 1}, {"i": 2}]
        assert isinstance(stats, cent.PresenceStatsResult) and stats.num_clients == 1
        assert isinstance(info, cent.InfoResult) and info.nodes[0].num_clients == 1
        got = await events.take("pub", 2)
        assert [value(p.data) for p in got] == [{"i": 1}, {"i": 2}]


async def test_wrong_api_key_is_unauthorized(node: RunningNode) -> None:
    for key in ("wrong-key", ""):
        async with api_client(node, key) as bad:
            with pytest.raises(CentUnauthorizedError):
                await bad.publish(cent.PublishRequest(channel="chat:x", data={}))
            with pytest.raises(CentUnauthorizedError):
                await bad.info(cent.InfoRequest())
    async with api_client(node, API_KEY) as good:
        history = await good.history(cent.HistoryRequest(channel="chat:x", limit=-1))
        assert history.publications == []  # nothing was published with a bad key


async def test_unknown_method_and_bad_body(node: RunningNode) -> None:
    headers = {"X-API-Key": API_KEY}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{node.api_url}/no_such_method", json={}) as resp:
            assert resp.status == 404
        # Not JSON: the method's bad-request error.
        async with http.post(f"{node.api_url}/publish", data=b"{not json") as resp:
            assert resp.status == 200
            assert (await resp.json())["error"]["code"] == 107
        # A batch body that cannot be read at all is a 400.
        async with http.post(f"{node.api_url}/batch", data=b"{not json") as resp:
            assert resp.status == 400
        # JSON with a field of the wrong type: the method's error reply.
        async with http.post(f"{node.api_url}/publish", json={"channel": 5}) as resp:
            assert resp.status == 200
            assert (await resp.json())["error"]["code"] == 107


async def test_batch_publications_keep_command_order_and_bad_commands_get_their_error(
    node: RunningNode,
) -> None:
    # A batch's publications run without waiting for each other; offsets, history
    # and replies must still follow the commands' order, and a malformed command only
    # spoils its own reply.
    commands: list[object] = []
    for i in range(90):
        commands.append({"publish": {"channel": f"chat:b{i % 3}", "data": {"i": i}}})
        if i == 30:
            commands += [5, {"publish": {}, "history": {}}, {"batch": {}}, {"nope": {}}]
        if i == 60:
            commands.append({"history": {"channel": "chat:b0", "limit": -1}})
    async with aiohttp.ClientSession(headers={"X-API-Key": API_KEY}) as http:
        async with http.post(f"{node.api_url}/batch", json={"commands": commands}) as resp:
            assert resp.status == 200
            replies = (await resp.json())["replies"]
        async with http.post(f"{node.api_url}/batch", json={"commands": {"a": 1}}) as resp:
            assert resp.status == 400
    assert len(replies) == len(commands)
    codes = [r["error"]["code"] for r in replies if "error" in r]
    assert codes == [107, 107, 104, 104]  # two bad commands, a nested batch, an unknown method
    offsets: dict[str, list[int]] = {}
    for command, reply in zip(commands, replies, strict=True):
        if isinstance(command, dict) and "publish" in command and "publish" in reply:
            offsets.setdefault(command["publish"]["channel"], []).append(reply["publish"]["offset"])
    assert offsets == {f"chat:b{n}": list(range(1, 31)) for n in range(3)}
    # The history command after i == 60 sees chat:b0's publications up to 60 (the
    # namespace keeps 20): it waited for the publications before it.
    history = next(r["history"] for r in replies if "history" in r)
    assert [p["data"]["i"] for p in history["publications"]] == list(range(3, 61, 3))


async def test_unknown_namespace_everywhere(api: cent.AsyncClient) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: api.publish(cent.PublishRequest(channel="ghost:x", data={})),
        lambda: api.broadcast(cent.BroadcastRequest(channels=["ghost:x"], data={})),
        lambda: api.history(cent.HistoryRequest(channel="ghost:x")),
        lambda: api.history_remove(cent.HistoryRemoveRequest(channel="ghost:x")),
        lambda: api.presence(cent.PresenceRequest(channel="ghost:x")),
        lambda: api.presence_stats(cent.PresenceStatsRequest(channel="ghost:x")),
        lambda: api.subscribe(cent.SubscribeRequest(user="u", channel="ghost:x")),
    ]
    for call in calls:
        try:
            result = await call()
        except CentApiResponseError as err:
            assert err.code == 102
        else:  # broadcast reports per channel
            assert isinstance(result, cent.BroadcastResult)
            (response,) = result.responses
            assert response.error is not None and response.error.code == 102
