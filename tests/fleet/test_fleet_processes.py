"""The fleet harness runs what an operator runs, and a node's life cycle works in a fleet.

What this proves: ``wsfleet serve --broker <redis> --port ... --name node-<i>``
started several times forms one fleet of separate processes, each reporting
its own name and the shared broker; a node that cannot reach its broker does
not start and says why; SIGTERM drains a node (exit code 0, its clients told
to reconnect with 3001) and the same command on the same ports brings it back
into the fleet, where its clients reconnect by themselves and recover what
was published through another node while it was away.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import cent
import pytest

from tests.fleet.conftest import API_KEY, CONFIG, sdk
from tests.fleet.processes import Fleet, NodeNotReady, fleet, running_fleet
from tests.integration.clients import ClientEvents, subscribed, value
from tests.redis_servers import free_port, redis_server

SHUTDOWN = 3001


async def test_each_node_is_its_own_process_on_the_shared_broker(fleet3: Fleet) -> None:
    pids = set()
    for i, node in enumerate(fleet3):
        assert node.process is not None and node.running
        pids.add(node.process.pid)
        raw = Path(f"/proc/{node.process.pid}/cmdline").read_bytes()  # noqa: ASYNC240
        cmdline = [arg.decode() for arg in raw.split(b"\0") if arg]
        assert cmdline[-13:] == [
            "serve",
            "--broker", fleet3.broker_url,
            "--port", str(node.port),
            "--internal-port", str(node.internal_port),
            "--host", "127.0.0.1",
            "--name", f"node-{i}",
            "--config", str(fleet3.config_path),
        ]  # fmt: skip
        code, body = await node.probe("/status")
        assert code == 200, body
        status = json.loads(body)
        assert (status["name"], status["ready"]) == (f"node-{i}", True)
        assert status["broker"] == fleet3.broker_url
        assert (await node.probe("/livez"))[0] == 200
    assert len(pids) == 3


def test_a_node_without_its_broker_does_not_start() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with pytest.raises(NodeNotReady) as err, running_fleet(1, dead, config=CONFIG):
        pass
    message = str(err.value)
    assert "node-0 exited with code" in message
    assert "node-0 exited with code 1" in message
    # The node's own words, from its log (the harness's start line names the
    # URL too, so "redis" alone would prove nothing), and no traceback.
    assert "cannot start: redis unreachable" in message
    assert "Traceback" not in message


async def test_a_node_drained_and_restarted_rejoins_and_its_client_recovers() -> None:
    channel = f"feed:rolling-{uuid.uuid4().hex[:8]}"
    with redis_server() as redis:
        async with fleet(2, redis.url, config=CONFIG) as group:
            restarted, other = group
            events = ClientEvents()
            client = sdk(restarted, "roller", events=events)
            api = cent.AsyncClient(other.api_url, API_KEY)
            try:
                await client.connect()
                _, sub_events = await subscribed(client, channel, recoverable=True)
                await sub_events.next("subscribed")
                await api.publish(cent.PublishRequest(channel=channel, data={"n": 1}))
                assert (await sub_events.next("pub")).offset == 1

                assert await restarted.terminate() == 0  # SIGTERM: drained, clean exit
                assert (await events.next("connecting")).code == SHUTDOWN
                for n in (2, 3, 4):  # published through the other node meanwhile
                    await api.publish(cent.PublishRequest(channel=channel, data={"n": n}))
                await restarted.start()  # same command, same ports

                again = await sub_events.next("subscribed")
                assert again.was_recovering and again.recovered
                missed = await sub_events.take("pub", 3)
                assert [value(p.data)["n"] for p in missed] == [2, 3, 4]
                assert [p.offset for p in missed] == [2, 3, 4]
                assert restarted.starts == 2
            finally:
                await client.disconnect()
                await api.close()
