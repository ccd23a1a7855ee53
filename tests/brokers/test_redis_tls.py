"""``rediss://``: the Redis broker over TLS against a real ``redis-server`` with a TLS port.

A throwaway CA signs a certificate for 127.0.0.1; the broker must verify it
against the CA given in the URL (``ssl_ca_certs``), and refuse a server whose
certificate it cannot verify.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.redis_servers import EventLog, free_port, redis_server
from wsfleet.brokers.base import BrokerError, HistoryOptions, HistoryQuery, PublishOptions
from wsfleet.brokers.redis import create_redis_broker
from wsfleet.protocol.messages import Publication, raw

pytestmark = pytest.mark.redis

HISTORY = HistoryOptions(size=10, ttl=60.0)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    else:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path, name: str) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it, as PEM files."""
    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = _certificate(f"{name} CA", ca_key, None)
    server = _certificate("127.0.0.1", server_key, (f"{name} CA", ca_key))
    paths = {
        "ca": directory / f"{name}-ca.pem",
        "cert": directory / f"{name}-server.pem",
        "key": directory / f"{name}-server.key",
    }
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_key(paths["key"], server_key)
    return paths


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    """(TLS port, the CA that signed the server, a CA that did not)."""
    directory = tmp_path_factory.mktemp("tls")
    good, other = make_pki(directory, "good"), make_pki(directory, "other")
    tls_port = free_port()
    tls = [
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(good["cert"]),
        "--tls-key-file", str(good["key"]),
        "--tls-ca-cert-file", str(good["ca"]),
        "--tls-auth-clients", "no",
    ]  # fmt: skip
    with redis_server(*tls):
        yield tls_port, good["ca"], other["ca"]


async def test_publish_subscribe_and_history_over_tls(tls_server: tuple[int, Path, Path]) -> None:
    port, ca, _ = tls_server
    broker, _ = create_redis_broker(
        f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}", key_prefix="tls"
    )
    events = EventLog()
    await broker.start(events)
    try:
        await broker.subscribe("secure")
        result = await broker.publish(
            "secure", Publication(data=raw(b'{"n":1}')), PublishOptions(history=HISTORY)
        )
        heard = await events.next()
        assert heard.position == result.position
        page = await broker.history("secure", HistoryQuery(limit=-1), HISTORY)
        assert [bytes(p.data) for p in page.publications] == [b'{"n":1}']
        assert broker.unavailable_reason() is None
    finally:
        await broker.close()


async def test_a_server_certificate_that_does_not_verify_is_refused(
    tls_server: tuple[int, Path, Path],
) -> None:
    port, _, wrong_ca = tls_server
    broker, _ = create_redis_broker(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={wrong_ca}")
    with pytest.raises(BrokerError, match=r"(?i)certificate"):
        await broker.start(EventLog())
