"""Benchmark peer: Django Channels under uvicorn (protocol "simple" of the peer contract).

Starts the ASGI application of the tiny Django project in ``channels_site/``
with uvicorn, in this process. One node uses Channels' ``InMemoryChannelLayer``;
with ``--redis URL`` the layer is channels_redis's ``RedisPubSubChannelLayer``
(see ``channels_site/settings.py``), Channels' multi-node mechanism.

Run by the peers' virtualenv (``benchmarks/peers/python_env.py``):
``python channels_peer.py --host H --port P [--redis URL]``.
"""

from __future__ import annotations

import os

from peer_common import parse_args, serve_asgi


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], "two-node mode through channels_redis")
    os.environ["DJANGO_SETTINGS_MODULE"] = "channels_site.settings"
    if args.redis:
        os.environ["CHANNELS_PEER_REDIS"] = args.redis  # read by channels_site.settings
    from channels_site.asgi import application  # settings are read at this import

    # lifespan "off": Django's ASGI handler does not implement it.
    serve_asgi(application, args, lifespan="off")


if __name__ == "__main__":
    main()
