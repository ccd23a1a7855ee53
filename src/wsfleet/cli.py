"""The ``wsfleet`` command: serve, check-config, token, capacity.

Only this module (and :mod:`wsfleet.config`) reads the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from wsfleet import __version__, capacity_cli
from wsfleet.brokers import BrokerConfigError
from wsfleet.config import DEV_WARNING, ConfigError, check_config, load_settings
from wsfleet.settings import Settings

if TYPE_CHECKING:
    from wsfleet.node import Node

FLAG_NAMES = {
    "server.host": "--host",
    "server.port": "--port",
    "server.internal_port": "--internal-port",
    "broker.url": "--broker",
    "dev": "--dev",
    "server.log_format": "--log-format",
    "server.node_name": "--name",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsfleet", description="Real-time messaging server.")
    parser.add_argument("--version", action="version", version=f"wsfleet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run a node")
    _config_flag(serve)
    serve.add_argument("--host", help="public listener address (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="public WebSocket port (default 8000)")
    serve.add_argument("--internal-port", type=int, help="internal port (default 9000)")
    serve.add_argument("--broker", help="broker URL (default memory://)")
    serve.add_argument("--name", help="node name (default hostname-pid)")
    serve.add_argument("--log-format", choices=["json", "text"])
    serve.add_argument("--dev", action="store_true", default=None, help="insecure development mode")

    check = sub.add_parser("check-config", help="validate a configuration and list every problem")
    _config_flag(check)

    # Parsed by the load generator itself (see _bench); listed here for --help.
    sub.add_parser("bench", help="load-test wsfleet and its peers (from a clone; see bench --help)")

    token = sub.add_parser("token", help="mint an HS256 token from the configured secret")
    _config_flag(token)
    token.add_argument("--user", required=True, help="user id (the sub claim)")
    token.add_argument("--channel", help="mint a subscription token for this channel")
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds valid; 0: no expiry")

    capacity_cli.add_parser(sub)
    return parser


def _config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="YAML or TOML file (or WSFLEET_CONFIG)")


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    values = {
        "server.host": args.host,
        "server.port": args.port,
        "server.internal_port": args.internal_port,
        "broker.url": args.broker,
        "dev": args.dev,
        "server.log_format": args.log_format,
        "server.node_name": args.name,
    }
    return {k: v for k, v in values.items() if v is not None}


def _load(args: argparse.Namespace, overrides: dict[str, object] | None = None) -> Settings:
    return load_settings(
        path=args.config, env=os.environ, overrides=overrides or {}, flag_names=FLAG_NAMES
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return _bench(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            settings = _load(args, _overrides(args))
            problems = _runtime_problems(settings)
            if problems:
                print("wsfleet: cannot start:\n  - " + "\n  - ".join(problems), file=sys.stderr)
                return 2
            return _serve(settings)
        if args.command == "check-config":
            return _check(args)
        if args.command == "token":
            return _token(args)
        if args.command == "capacity":
            return capacity_cli.run(args)
    except (ConfigError, BrokerConfigError) as exc:
        print(f"wsfleet: {exc}", file=sys.stderr)
        return 2
    return 2


def _bench(argv: list[str]) -> int:
    # The load generator needs the peers, nginx and the lab, which the server must not
    # depend on: it lives in the repository's benchmarks/, not in the package.
    root = Path(__file__).resolve().parents[2]
    if not (root / "benchmarks" / "bench" / "cli.py").exists():
        print(
            "wsfleet: bench runs from a clone of the wsfleet repository (the load generator "
            "lives in its benchmarks/ directory, which the package does not ship): clone it, "
            "run `make setup`, then `.venv/bin/wsfleet bench`",
            file=sys.stderr,
        )
        return 2
    sys.path.insert(0, str(root))
    from benchmarks.bench.cli import main as bench_main

    return bench_main(argv)


def _check(args: argparse.Namespace) -> int:
    problems = [str(p) for p in check_config(args.config, os.environ)]
    if not problems:
        problems = _runtime_problems(_load(args))
    if not problems:
        print("configuration is valid")
        return 0
    print(f"{len(problems)} problem(s) in the configuration:", file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1


def _runtime_problems(settings: Settings) -> list[str]:
    """What only building the node finds: unusable keys, a broker URL it cannot use."""
    from wsfleet.auth import TokenVerifier
    from wsfleet.brokers import check_broker_url

    problems = []
    try:
        TokenVerifier(settings.auth)
    except ValueError as exc:
        problems.append(f"auth: {exc}")
    broker = settings.broker
    try:
        check_broker_url(broker.url, key_prefix=broker.key_prefix)
    except BrokerConfigError as exc:
        problems.append(f"broker.url = {broker.url!r}: {exc}")
    return problems


def _token(args: argparse.Namespace) -> int:
    from wsfleet.auth import mint_connection_token, mint_subscription_token

    settings = _load(args)
    auth = settings.auth
    ttl = args.ttl or None
    if args.channel:
        secret = auth.subscription_token_hmac_secret or auth.token_hmac_secret
    else:
        secret = auth.token_hmac_secret
    if not secret:
        print(
            "wsfleet: auth.token_hmac_secret is empty: set it in the config file or "
            "WSFLEET_AUTH_TOKEN_HMAC_SECRET",
            file=sys.stderr,
        )
        return 2
    aud, iss = auth.token_audience, auth.token_issuer
    if args.channel:
        token = mint_subscription_token(
            secret, user=args.user, channel=args.channel, ttl=ttl, audience=aud, issuer=iss
        )
    else:
        token = mint_connection_token(secret, user=args.user, ttl=ttl, audience=aud, issuer=iss)
    print(token)
    return 0


def _serve(settings: Settings) -> int:
    from wsfleet import logs

    logs.configure(fmt=settings.server.log_format, level=settings.server.log_level)
    if settings.dev:
        print(DEV_WARNING, file=sys.stderr, flush=True)
    import uvloop

    from wsfleet import gctune

    gctune.tune()
    return uvloop.run(_run(settings))


WATCHDOG_EXIT = 70
"""Exit code when a drain outlasts ``drain.timeout`` (EX_SOFTWARE)."""


class _Signals:
    """The first SIGTERM/SIGINT starts the drain and its watchdog; later ones hurry it."""

    def __init__(self, node: Node, timeout: float) -> None:
        self.node = node
        self.timeout = timeout
        self.received = asyncio.Event()
        self._watchdog: threading.Timer | None = None

    def __call__(self, sig: signal.Signals) -> None:
        if self.received.is_set():
            print(f"wsfleet: {sig.name} again: closing what is left now", file=sys.stderr)
            self.node.hurry()
            return
        self.received.set()
        print(
            f"wsfleet: {sig.name}: draining (at most {self.timeout:g}s); "
            "send it again to close every connection now",
            file=sys.stderr,
            flush=True,
        )
        # A thread, not the event loop: it must fire even if the loop is stuck.
        self._watchdog = threading.Timer(self.timeout, _watchdog_expired, (self.timeout,))
        self._watchdog.daemon = True
        self._watchdog.start()


def _watchdog_expired(timeout: float) -> None:
    print(
        f"wsfleet: drain not finished within drain.timeout ({timeout:g}s); exiting now",
        file=sys.stderr,
        flush=True,
    )
    os._exit(WATCHDOG_EXIT)


async def _run(settings: Settings) -> int:
    from wsfleet import gctune
    from wsfleet.brokers.base import BrokerError
    from wsfleet.node import Node

    node = Node(settings)
    signals = _Signals(node, settings.drain.timeout)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signals, sig)
    try:
        await node.start()
    except (BrokerError, OSError) as exc:
        # Unreachable broker, port in use: the operator's to fix, not a traceback.
        print(f"wsfleet: cannot start: {exc}", file=sys.stderr, flush=True)
        await node.stop()
        return 1
    gctune.freeze_startup()
    await signals.received.wait()
    await node.drain()
    return 0  # the watchdog thread dies with the process


if __name__ == "__main__":
    sys.exit(main())
