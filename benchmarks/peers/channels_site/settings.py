"""Django settings of the Channels benchmark peer.

No database, no middleware, no installed apps: the peer serves one WebSocket
consumer and one view. ``CHANNELS_PEER_REDIS`` (set by ``channels_peer.py`` from
``--redis``) selects the Redis channel layer for two-node mode.
"""

from __future__ import annotations

import os

from peer_common import MAX_PUBLISH_BODY

DEBUG = False
SECRET_KEY = "wsfleet-benchmark-peer"  # nothing is signed; Django refuses to start without one
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
ROOT_URLCONF = "channels_site.asgi"
USE_I18N = False
USE_TZ = True
# A publish batch is read whole (request.body); Django's 2.5 MB defaults would
# refuse a large one, or spool it to a temporary file.
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_PUBLISH_BODY
FILE_UPLOAD_MAX_MEMORY_SIZE = MAX_PUBLISH_BODY
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "WARNING"},
}

_REDIS_URL = os.environ.get("CHANNELS_PEER_REDIS")

if _REDIS_URL:
    # RedisPubSubChannelLayer rather than RedisChannelLayer: its group_send is
    # one PUBLISH of the message, which each node's subscription receives once
    # and fans out to its local consumers. RedisChannelLayer keeps group
    # membership in a Redis sorted set, so each group_send reads every member
    # name (ZRANGE) and writes per node a message listing every local member:
    # O(subscribers) Redis work and bytes per broadcast, and a node whose list
    # holds 100 undelivered messages drops the rest. channels_redis marks the
    # pub/sub layer "Beta"; it is the one built on Redis's own fan-out.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [_REDIS_URL]},
        }
    }
else:
    # Channels' default capacity, spelled out: group_send silently skips a
    # consumer that already holds 100 undelivered messages, so an overloaded
    # Channels node drops messages instead of queueing them. (The pub/sub layer
    # above queues without a limit.)
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 100},
        }
    }
