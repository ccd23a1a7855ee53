"""What redis-py raises when Redis fails, and re-reading a Cluster's slot map.

Shared by the broker, its publish pipeline and its sharded pub/sub, which each
meet the same failures and must all follow a Cluster whose master was replaced.
"""

from __future__ import annotations

import contextlib

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["CONNECTION_ERRORS", "FAILURES", "refresh_slots"]

FAILURES = (RedisError, RedisClusterException, OSError)
"""Any failure of a call. RedisClusterException (no Cluster node answers, a slot
nobody serves) is not a RedisError, and letting it through ends whatever task
made the call."""

CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
"""Failures that say a server is unreachable: the slot map may be out of date."""


async def refresh_slots(client: Redis | RedisCluster) -> None:
    """Re-read a Cluster's slot map (nothing for one server); failures are left to the next call.

    redis-py does this after a failed single command, not after a failed
    pipeline or pub/sub connection, so without it a master replaced by its
    replica would be dialled forever.
    """
    if isinstance(client, RedisCluster):
        with contextlib.suppress(*FAILURES):
            await client.nodes_manager.initialize()
