"""JWT connection and subscription tokens: verifying them, and minting HS256 ones.

An application backend signs a token that says who a client is (a connection
token) or that a client may join one channel (a subscription token); the
client hands it over in its connect or subscribe command and wsfleet checks it
here. The claims follow Centrifugo's, so tokens an application already issues
keep working.

This module only verifies and raises: mapping :class:`TokenExpired` and
:class:`TokenInvalid` to protocol errors or disconnect codes is the caller's
business. It reads no environment and no clock of its own (the clock is
injected), and keeps no state between calls.

Security choices, each on purpose:

* The key is chosen by the header's ``alg``, and each key is only ever used
  with its own algorithm family, so a token cannot steer the server into
  verifying an HMAC with an RSA public key (algorithm confusion).
* Only HS256, RS256 and ES256 are accepted, and only when their key is
  configured; ``alg: none`` and everything else is refused.
* Time claims are checked here, against the injected clock, with no leeway.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, RSAAlgorithm

from wsfleet.settings import AuthSettings

__all__ = [
    "ConnectClaims",
    "SubscribeClaims",
    "SubscribeOptionsClaim",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "TokenVerifier",
    "mint_connection_token",
    "mint_subscription_token",
]


class TokenError(Exception):
    """A token was refused. The fault is the client's (or its backend's), never the server's."""


class TokenExpired(TokenError):
    """The token was valid but its ``exp`` has passed; the client should get a fresh one."""


class TokenInvalid(TokenError):
    """The token is not acceptable: malformed, badly signed, or with wrong or missing claims."""


@dataclass(frozen=True, slots=True)
class SubscribeOptionsClaim:
    """One entry of a connection token's ``subs`` claim: a server-side subscription's extras.

    ``info`` is attached to the subscriber's presence and join/leave events;
    ``data`` is sent to the client in the subscribe push. Both are raw bytes
    (compact JSON, or whatever ``b64info``/``b64data`` decoded to); None: absent.
    """

    info: bytes | None = None
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class ConnectClaims:
    """What a verified connection token says."""

    user: str
    """The ``sub`` claim; the empty string is an anonymous user."""
    expire_at: int | None
    """The ``exp`` claim, unix seconds; None: the token never expires."""
    issued_at: int | None
    """The ``iat`` claim, unix seconds; None: absent."""
    info: bytes | None
    """Connection info: ``info`` as compact JSON, or ``b64info`` decoded; None: absent."""
    channels: tuple[str, ...] = ()
    """The ``channels`` claim: channels the server subscribes the connection to."""
    subs: dict[str, SubscribeOptionsClaim] = field(default_factory=dict, hash=False)
    """The ``subs`` claim: server-side subscriptions with their options, by channel."""


@dataclass(frozen=True, slots=True)
class SubscribeClaims:
    """What a verified subscription token says."""

    user: str
    """The ``sub`` claim; equal to the connection's user, or the token was refused."""
    channel: str
    """The ``channel`` claim; equal to the channel asked for, or the token was refused."""
    expire_at: int | None
    """The ``exp`` claim, unix seconds; None: the token never expires."""
    issued_at: int | None
    """The ``iat`` claim, unix seconds; None: absent."""
    info: bytes | None
    """Subscription info: ``info`` as compact JSON, or ``b64info`` decoded; None: absent."""
    data: bytes | None
    """Data for the subscribe reply: ``data`` as compact JSON, or ``b64data``; None: absent."""


# PyJWT warns (through the warnings module) on every verification with an HMAC
# secret shorter than the hash or an RSA key under 2048 bits. The key is the
# operator's configuration, fixed for the life of the process: a warning per
# connect would flood the logs and say nothing new, so these variants do not check.
class _HS256(HMACAlgorithm):
    def check_key_length(self, key: bytes) -> str | None:
        return None


class _RS256(RSAAlgorithm):
    def check_key_length(self, key: Any) -> str | None:
        return None


class _ES256(ECAlgorithm):
    def check_key_length(self, key: Any) -> str | None:
        return None


def _make_jws() -> jwt.PyJWS:
    # Start from no algorithms at all, so nothing PyJWT adds by default (and
    # certainly not "none") is reachable; then add exactly the three we support.
    jws = jwt.PyJWS(algorithms=[])
    jws.register_algorithm("HS256", _HS256(HMACAlgorithm.SHA256))
    jws.register_algorithm("RS256", _RS256(RSAAlgorithm.SHA256))
    jws.register_algorithm("ES256", _ES256(ECAlgorithm.SHA256, ec.SECP256R1))
    return jws


_JWS = _make_jws()

_Key = bytes | rsa.RSAPublicKey | ec.EllipticCurvePublicKey

# Whatever a hostile token can make the parsers raise. PyJWT wraps most of it
# in PyJWTError, but the rest (deep JSON nesting, odd header values) must not
# escape as anything but TokenInvalid.
_PARSE_ERRORS = (jwt.PyJWTError, ValueError, TypeError, KeyError, RecursionError)


def _load_public_key(pem: str, name: str) -> object:
    """A public key from a PEM public key or a PEM X.509 certificate; ValueError if neither."""
    data = pem.strip().encode()
    if b"-----BEGIN CERTIFICATE-----" in data:
        try:
            return x509.load_pem_x509_certificate(data).public_key()
        except ValueError as exc:
            raise ValueError(f"{name}: not a valid PEM certificate: {exc}") from exc
    try:
        return load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: not a valid PEM public key: {exc}") from exc


class TokenVerifier:
    """Verifies connection and subscription tokens against the configured keys.

    ``settings`` says which algorithms are enabled: HS256 with
    ``token_hmac_secret`` (subscription tokens with
    ``subscription_token_hmac_secret`` when it is set), RS256 with
    ``token_rsa_public_key``, ES256 with ``token_ecdsa_public_key``. A key that
    cannot be used raises ValueError here, at start-up, rather than refusing
    every token later.

    ``clock`` returns the current unix time in seconds; default
    :func:`time.time`. ``exp`` and ``nbf`` are checked against it, with no leeway.
    """

    def __init__(self, settings: AuthSettings, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._audience = settings.token_audience
        self._issuer = settings.token_issuer

        connect_keys: dict[str, _Key] = {}
        subscribe_keys: dict[str, _Key] = {}
        if settings.token_hmac_secret:
            connect_keys["HS256"] = _hmac_key(settings.token_hmac_secret, "token_hmac_secret")
        sub_secret = settings.subscription_token_hmac_secret or settings.token_hmac_secret
        if sub_secret:
            subscribe_keys["HS256"] = _hmac_key(sub_secret, "subscription_token_hmac_secret")
        if settings.token_rsa_public_key:
            key = _load_public_key(settings.token_rsa_public_key, "token_rsa_public_key")
            if not isinstance(key, rsa.RSAPublicKey):
                raise ValueError("token_rsa_public_key: not an RSA public key")
            connect_keys["RS256"] = subscribe_keys["RS256"] = key
        if settings.token_ecdsa_public_key:
            key = _load_public_key(settings.token_ecdsa_public_key, "token_ecdsa_public_key")
            if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
                key.curve, ec.SECP256R1
            ):
                raise ValueError("token_ecdsa_public_key: not an EC P-256 public key (ES256)")
            connect_keys["ES256"] = subscribe_keys["ES256"] = key
        # Keyed by algorithm name, so the header's alg selects the key and a key
        # can never be handed to another algorithm's verifier.
        self._connect_keys: Mapping[str, _Key] = connect_keys
        self._subscribe_keys: Mapping[str, _Key] = subscribe_keys

    @property
    def enabled(self) -> bool:
        """Whether any key is configured; if not, every token is refused."""
        return bool(self._connect_keys or self._subscribe_keys)

    def verify_connection(self, token: str) -> ConnectClaims:
        """The claims of a connection token.

        Raises :class:`TokenExpired` if ``exp`` has passed and
        :class:`TokenInvalid` for anything else wrong, including a missing ``sub``.
        """
        claims = self._decode(token, self._connect_keys)
        user = claims.get("sub")
        if user is None:
            raise TokenInvalid("missing sub claim")
        if not isinstance(user, str):
            raise TokenInvalid("sub claim must be a string")
        channels = claims.get("channels")
        if channels is None:
            channels = []
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise TokenInvalid("channels claim must be a list of strings")
        return ConnectClaims(
            user=user,
            expire_at=_time_claim(claims, "exp"),
            issued_at=_time_claim(claims, "iat"),
            info=_bytes_claim(claims, "info", "b64info"),
            channels=tuple(channels),
            subs=_subs_claim(claims.get("subs")),
        )

    def verify_subscription(self, token: str, *, user: str, channel: str) -> SubscribeClaims:
        """The claims of a subscription token, for connection user ``user`` and ``channel``.

        A token for another user or another channel raises :class:`TokenInvalid`,
        as does anything else wrong with it; an expired one raises
        :class:`TokenExpired`. A token without ``sub`` is for the anonymous user ("").
        """
        claims = self._decode(token, self._subscribe_keys)
        token_user = claims.get("sub", "")
        if not isinstance(token_user, str):
            raise TokenInvalid("sub claim must be a string")
        token_channel = claims.get("channel")
        if token_channel is None:
            raise TokenInvalid("missing channel claim")
        if not isinstance(token_channel, str):
            raise TokenInvalid("channel claim must be a string")
        if token_user != user:
            raise TokenInvalid("token sub does not match the connection's user")
        if token_channel != channel:
            raise TokenInvalid("token channel does not match the channel subscribed to")
        return SubscribeClaims(
            user=token_user,
            channel=token_channel,
            expire_at=_time_claim(claims, "exp"),
            issued_at=_time_claim(claims, "iat"),
            info=_bytes_claim(claims, "info", "b64info"),
            data=_bytes_claim(claims, "data", "b64data"),
        )

    def _decode(self, token: str, keys: Mapping[str, _Key]) -> dict[str, Any]:
        """The verified payload of ``token``, with time, audience and issuer checked."""
        if not isinstance(token, str) or not token:
            raise TokenInvalid("empty token")
        try:
            header = _JWS.get_unverified_header(token)
        except _PARSE_ERRORS as exc:
            raise TokenInvalid(f"malformed token: {exc}") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ("HS256", "RS256", "ES256"):
            raise TokenInvalid(f"unsupported algorithm {alg!r:.40}")
        key = keys.get(alg)
        if key is None:
            raise TokenInvalid(f"algorithm {alg} is not enabled")
        try:
            decoded = _JWS.decode_complete(token, key=key, algorithms=[alg])
        except jwt.InvalidSignatureError:
            raise TokenInvalid("bad signature") from None
        except _PARSE_ERRORS as exc:
            raise TokenInvalid(f"malformed token: {exc}") from None
        try:
            claims = json.loads(decoded["payload"])
        except (ValueError, RecursionError):
            raise TokenInvalid("payload is not valid JSON") from None
        if not isinstance(claims, dict):
            raise TokenInvalid("payload must be a JSON object")
        self._check_time(claims)
        self._check_audience_issuer(claims)
        return claims

    def _check_time(self, claims: dict[str, Any]) -> None:
        now = self._clock()
        exp = _number_claim(claims, "exp")
        # RFC 7519: valid only while now is *before* exp; exp == now has expired.
        if exp is not None and exp <= now:
            raise TokenExpired("token expired")
        nbf = _number_claim(claims, "nbf")
        if nbf is not None and nbf > now:
            raise TokenInvalid("token not valid yet (nbf)")
        _number_claim(claims, "iat")

    def _check_audience_issuer(self, claims: dict[str, Any]) -> None:
        if self._audience:
            aud = claims.get("aud")
            if aud is None:
                raise TokenInvalid("missing aud claim")
            audiences = [aud] if isinstance(aud, str) else aud
            if not isinstance(audiences, list) or self._audience not in audiences:
                raise TokenInvalid("wrong audience")
        if self._issuer:
            iss = claims.get("iss")
            if iss is None:
                raise TokenInvalid("missing iss claim")
            if iss != self._issuer:
                raise TokenInvalid("wrong issuer")


def _hmac_key(secret: str, name: str) -> bytes:
    # PyJWT refuses PEM-looking HMAC secrets at each verification (an
    # algorithm-confusion guard); say so once, at start-up, instead.
    if "-----BEGIN" in secret or secret.startswith(("ssh-", "ecdsa-sha2-")):
        raise ValueError(f"{name}: looks like a public key, not an HMAC secret")
    return secret.encode()


def _number_claim(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # bool is an int in Python, and JSON's true is not a date; NaN and infinity
    # (which Python's JSON parser accepts) are not dates either.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TokenInvalid(f"{name} claim must be a number")
    if not math.isfinite(value):
        raise TokenInvalid(f"{name} claim must be finite")
    return value


def _time_claim(claims: dict[str, Any], name: str) -> int | None:
    value = _number_claim(claims, name)
    # Fractional seconds are truncated: for exp, earlier is the safe side.
    return None if value is None else int(value)


def _bytes_claim(claims: Mapping[str, Any], name: str, b64_name: str) -> bytes | None:
    """``b64_name`` decoded when present (it wins), else ``name`` as compact JSON; None: neither."""
    b64 = claims.get(b64_name)
    if b64 is not None and b64 != "":
        if not isinstance(b64, str):
            raise TokenInvalid(f"{b64_name} claim must be a base64 string")
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise TokenInvalid(f"{b64_name} claim is not valid base64") from None
    value = claims.get(name)
    if value is None:
        return None
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except ValueError:
        raise TokenInvalid(f"{name} claim is not valid JSON") from None


def _subs_claim(value: object) -> dict[str, SubscribeOptionsClaim]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TokenInvalid("subs claim must be an object")
    subs: dict[str, SubscribeOptionsClaim] = {}
    for channel, options in value.items():
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise TokenInvalid(f"subs claim: options of {channel!r} must be an object")
        subs[channel] = SubscribeOptionsClaim(
            info=_bytes_claim(options, "info", "b64info"),
            data=_bytes_claim(options, "data", "b64data"),
        )
    return subs


def _base_claims(
    user: str, ttl: float | None, now: float | None, audience: str, issuer: str
) -> dict[str, Any]:
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {"sub": user, "iat": int(issued)}
    if ttl:
        claims["exp"] = int(issued + ttl)
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return claims


def mint_connection_token(
    secret: str,
    *,
    user: str,
    ttl: float | None = 3600,
    now: float | None = None,
    channels: Sequence[str] = (),
    info: object = None,
    audience: str = "",
    issuer: str = "",
) -> str:
    """A connection token for ``user``, signed HS256 with ``secret``.

    ``ttl``: seconds until ``exp``; default 3600; None or 0: no ``exp``, the
    token never expires. ``now``: the issue time, unix seconds; default None:
    :func:`time.time`. ``channels``: server-side subscriptions; default none.
    ``info``: any JSON value, the connection info; default None: no ``info``.
    ``audience``/``issuer``: the ``aud``/``iss`` claims; default "": absent.
    """
    claims = _base_claims(user, ttl, now, audience, issuer)
    if channels:
        claims["channels"] = list(channels)
    if info is not None:
        claims["info"] = info
    return _mint(secret, claims)


def mint_subscription_token(
    secret: str,
    *,
    user: str,
    channel: str,
    ttl: float | None = 3600,
    now: float | None = None,
    audience: str = "",
    issuer: str = "",
) -> str:
    """A subscription token letting ``user`` subscribe to ``channel``, signed HS256.

    ``ttl``, ``now``, ``audience`` and ``issuer`` mean what they mean for
    :func:`mint_connection_token`.
    """
    claims = _base_claims(user, ttl, now, audience, issuer)
    claims["channel"] = channel
    return _mint(secret, claims)


def _mint(secret: str, claims: dict[str, Any]) -> str:
    if not secret:
        raise ValueError("an HS256 token needs a non-empty secret")
    payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()
    return _JWS.encode(payload, secret, algorithm="HS256", headers={"typ": "JWT"})
