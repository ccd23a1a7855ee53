"""The wsfleet command as a user runs it: a real process, real ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import jwt
import pytest

from tests.redis_servers import node_port

WSFLEET = [sys.executable, "-m", "wsfleet.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSFLEET_")}
    env.update(extra)
    return env


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_check_config_names_every_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        textwrap.dedent(
            """
            server:
              port: "eighty"
              log_format: xml
            client:
              ping_intervall: 10
            channel:
              namespaces:
                - name: chat
                  history_size: 10
            """
        )
    )
    done = subprocess.run(
        [*WSFLEET, "check-config", "--config", str(bad)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=30,
    )
    assert done.returncode != 0
    for key in (
        "server.port",
        "server.log_format",
        "client.ping_intervall",
        "channel.namespaces[0].history_ttl",
    ):
        assert key in done.stderr, done.stderr
    assert "json" in done.stderr and "text" in done.stderr  # what is allowed


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[client]\nping_interval = "20s"\n')
    done = subprocess.run(
        [*WSFLEET, "check-config", "-c", str(good)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


def test_token_is_signed_with_the_configured_secret() -> None:
    env = _env(WSFLEET_AUTH_TOKEN_HMAC_SECRET="s3cret-s3cret-s3cret-s3cret-1234")
    done = subprocess.run(
        [*WSFLEET, "token", "--user", "42", "--ttl", "60"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    claims = jwt.decode(
        done.stdout.strip(), "s3cret-s3cret-s3cret-s3cret-1234", algorithms=["HS256"]
    )
    assert claims["sub"] == "42" and claims["exp"] - claims["iat"] == 60
    sub = subprocess.run(
        [*WSFLEET, "token", "--user", "42", "--channel", "news"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert (
        jwt.decode(sub.stdout.strip(), "s3cret-s3cret-s3cret-s3cret-1234", algorithms=["HS256"])[
            "channel"
        ]
        == "news"
    )


def test_token_without_a_secret_says_which_key_to_set() -> None:
    done = subprocess.run(
        [*WSFLEET, "token", "--user", "42"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=30,
    )
    assert done.returncode != 0 and "auth.token_hmac_secret" in done.stderr


def test_serve_dev_warns_serves_health_and_stops_cleanly_on_sigterm() -> None:
    port, internal = node_port(), node_port()
    proc = subprocess.Popen(
        [
            *WSFLEET,
            "serve",
            "--dev",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--internal-port",
            str(internal),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(WSFLEET_SERVER_INTERNAL_HOST="127.0.0.1"),
    )
    try:
        status = 0
        for _ in range(100):
            try:
                status, _ = _get(f"http://127.0.0.1:{internal}/readyz")
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200
        assert _get(f"http://127.0.0.1:{internal}/livez")[0] == 200
        code, metrics = _get(f"http://127.0.0.1:{internal}/metrics")
        assert code == 200 and "wsfleet_connections " in metrics
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "DEV MODE" in err and "INSECURE" in err
    assert '"event": "ready"' in err or '"event":"ready"' in err  # JSON logs by default


def test_check_config_and_serve_refuse_an_unusable_key(tmp_path: Path) -> None:
    cfg = tmp_path / "keys.yaml"
    cfg.write_text("auth:\n  token_rsa_public_key: 'not a pem'\n")
    for command in (["check-config"], ["serve"]):
        done = subprocess.run(
            [*WSFLEET, *command, "--config", str(cfg)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=30,
        )
        assert done.returncode != 0
        assert "token_rsa_public_key" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "url", ["amqp://guest:guest@127.0.0.1/", "redis://a:6379,b:6379/0", "kafka://x:9092"]
)
def test_check_config_and_serve_refuse_a_broker_url_they_cannot_use(url: str) -> None:
    env = _env(WSFLEET_BROKER_URL=url)
    for command in (["check-config"], ["serve"]):
        done = subprocess.run(
            [*WSFLEET, *command], capture_output=True, text=True, env=env, timeout=30
        )
        assert done.returncode != 0, command
        assert "broker.url" in done.stderr and "Traceback" not in done.stderr, done.stderr
