"""Tests of wsfleet.auth: which tokens are accepted, which are refused, and why."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from wsfleet.auth import (
    ConnectClaims,
    SubscribeOptionsClaim,
    TokenExpired,
    TokenInvalid,
    TokenVerifier,
    mint_connection_token,
    mint_subscription_token,
)
from wsfleet.settings import AuthSettings

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
NOW = 1_700_000_000.0


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_by_hand(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """A token signed without PyJWT, which refuses some of the keys these tests need."""
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(sig)}"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _verifier(clock: Clock | None = None, **settings: Any) -> TokenVerifier:
    return TokenVerifier(AuthSettings(**settings), clock=clock or Clock())


def _hs_verifier(clock: Clock | None = None, **settings: Any) -> TokenVerifier:
    return _verifier(clock, token_hmac_secret=SECRET, **settings)


# --- valid tokens, each algorithm -------------------------------------------------------


def test_hs256_minted_connection_token_round_trips() -> None:
    token = mint_connection_token(
        SECRET, user="42", ttl=60, now=NOW, channels=["news"], info={"name": "Ann"}
    )
    claims = _hs_verifier().verify_connection(token)
    assert claims == ConnectClaims(
        user="42",
        expire_at=int(NOW) + 60,
        issued_at=int(NOW),
        info=b'{"name":"Ann"}',
        channels=("news",),
        subs={},
    )


def test_rs256_token_accepted(rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode({"sub": "u1", "exp": NOW + 10}, rsa_key, algorithm="RS256")
    verifier = _verifier(token_rsa_public_key=_public_pem(rsa_key))
    assert verifier.enabled
    assert verifier.verify_connection(token).user == "u1"


def test_es256_token_accepted(ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = jwt.encode({"sub": "u2"}, ec_key, algorithm="ES256")
    verifier = _verifier(token_ecdsa_public_key=_public_pem(ec_key))
    claims = verifier.verify_connection(token)
    assert claims.user == "u2"
    assert claims.expire_at is None


def test_all_three_algorithms_side_by_side(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    verifier = _hs_verifier(
        token_rsa_public_key=_public_pem(rsa_key), token_ecdsa_public_key=_public_pem(ec_key)
    )
    for key, alg in ((SECRET, "HS256"), (rsa_key, "RS256"), (ec_key, "ES256")):
        token = jwt.encode({"sub": alg}, key, algorithm=alg)
        assert verifier.verify_connection(token).user == alg


def test_no_keys_means_disabled_and_every_token_refused() -> None:
    verifier = _verifier()
    assert not verifier.enabled
    with pytest.raises(TokenInvalid, match="not enabled"):
        verifier.verify_connection(mint_connection_token(SECRET, user="1"))


def test_short_hmac_secret_works_without_warnings() -> None:
    # Warnings are errors in this suite: a per-verification key-length warning would fail here.
    token = mint_connection_token("short", user="1", now=NOW)
    assert _verifier(token_hmac_secret="short").verify_connection(token).user == "1"


# --- expiry against the injected clock -----------------------------------------------------


def test_expired_token_raises_token_expired() -> None:
    token = mint_connection_token(SECRET, user="1", ttl=30, now=NOW)
    clock = Clock(NOW + 29)
    verifier = _hs_verifier(clock)
    assert verifier.verify_connection(token).expire_at == int(NOW) + 30
    clock.now = NOW + 31
    with pytest.raises(TokenExpired):
        verifier.verify_connection(token)


def test_exp_exactly_now_has_expired() -> None:
    token = mint_connection_token(SECRET, user="1", ttl=30, now=NOW)
    with pytest.raises(TokenExpired):
        _hs_verifier(Clock(NOW + 30)).verify_connection(token)
    # A hair before exp is still valid: no leeway either way.
    assert _hs_verifier(Clock(NOW + 29.999)).verify_connection(token).user == "1"


def test_clock_is_the_injected_one_not_wall_time() -> None:
    # Issued and expired in 2001: only valid because the injected clock says so.
    token = mint_connection_token(SECRET, user="1", ttl=60, now=1_000_000_000)
    assert _hs_verifier(Clock(1_000_000_010)).verify_connection(token).user == "1"
    with pytest.raises(TokenExpired):
        _hs_verifier(Clock(NOW)).verify_connection(token)


@pytest.mark.parametrize("ttl", [None, 0])
def test_no_ttl_means_no_exp(ttl: float | None) -> None:
    token = mint_connection_token(SECRET, user="1", ttl=ttl, now=NOW)
    assert "exp" not in jwt.decode(token, options={"verify_signature": False})
    assert _hs_verifier(Clock(NOW + 10**9)).verify_connection(token).expire_at is None


def test_nbf_in_the_future_refused() -> None:
    token = jwt.encode({"sub": "1", "nbf": NOW + 5}, SECRET, algorithm="HS256")
    with pytest.raises(TokenInvalid, match="nbf"):
        _hs_verifier().verify_connection(token)
    assert _hs_verifier(Clock(NOW + 5)).verify_connection(token).user == "1"


@pytest.mark.parametrize("exp", ["soon", True, [1], {"a": 1}])
def test_non_numeric_exp_refused(exp: object) -> None:
    token = jwt.encode({"sub": "1", "exp": exp}, SECRET, algorithm="HS256")
    with pytest.raises(TokenInvalid, match="exp"):
        _hs_verifier().verify_connection(token)


@pytest.mark.parametrize("literal", ["Infinity", "NaN"])
def test_non_finite_exp_refused(literal: str) -> None:
    token = _hs256_by_hand({"alg": "HS256"}, {"sub": "1"}, SECRET.encode())
    # Python's JSON parser accepts these literals; splice one in and re-sign.
    payload = _b64url(('{"sub":"1","exp":' + literal + "}").encode())
    header = token.split(".")[0]
    sig = hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    with pytest.raises(TokenInvalid, match="exp"):
        _hs_verifier().verify_connection(f"{header}.{payload}.{_b64url(sig)}")


# --- claims that must be there, signatures that must match -------------------------------


def test_missing_sub_refused_but_empty_sub_is_anonymous() -> None:
    with pytest.raises(TokenInvalid, match="sub"):
        _hs_verifier().verify_connection(jwt.encode({"exp": NOW + 5}, SECRET, algorithm="HS256"))
    claims = _hs_verifier().verify_connection(mint_connection_token(SECRET, user="", now=NOW))
    assert claims.user == ""


def test_non_string_sub_refused() -> None:
    token = _hs256_by_hand({"alg": "HS256"}, {"sub": 42}, SECRET.encode())
    with pytest.raises(TokenInvalid):
        _hs_verifier().verify_connection(token)


def test_wrong_signature_refused() -> None:
    token = mint_connection_token("another-secret-of-sufficient-length!!", user="1", now=NOW)
    with pytest.raises(TokenInvalid, match="bad signature"):
        _hs_verifier().verify_connection(token)


def test_tampered_payload_refused() -> None:
    header, _, sig = mint_connection_token(SECRET, user="1", now=NOW).split(".")
    forged = _b64url(json.dumps({"sub": "admin"}).encode())
    with pytest.raises(TokenInvalid, match="bad signature"):
        _hs_verifier().verify_connection(f"{header}.{forged}.{sig}")


# --- algorithms that must never be accepted ------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_refused(alg: str) -> None:
    header = _b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = _b64url(json.dumps({"sub": "admin"}).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        with pytest.raises(TokenInvalid):
            _hs_verifier().verify_connection(token)


@pytest.mark.parametrize("alg", ["HS384", "HS512", "PS256", "EdDSA", "RS512", "", None, 256])
def test_other_algorithms_refused(alg: object) -> None:
    token = _hs256_by_hand({"alg": alg}, {"sub": "1"}, SECRET.encode())
    with pytest.raises(TokenInvalid, match="unsupported algorithm"):
        _hs_verifier().verify_connection(token)


def test_hs256_signed_with_rsa_public_pem_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    # The classic confusion attack: the public key is public, so an attacker can
    # HMAC with it and hope the server verifies HS256 with whatever key it holds.
    pem = _public_pem(rsa_key)
    token = _hs256_by_hand({"alg": "HS256", "typ": "JWT"}, {"sub": "admin"}, pem.encode())
    with pytest.raises(TokenInvalid):
        _verifier(token_rsa_public_key=pem).verify_connection(token)
    # Still refused when HS256 is enabled too: HS256 only ever uses the HMAC secret.
    with pytest.raises(TokenInvalid, match="bad signature"):
        _hs_verifier(token_rsa_public_key=pem).verify_connection(token)


def test_hs256_signed_with_ec_public_pem_refused(ec_key: ec.EllipticCurvePrivateKey) -> None:
    pem = _public_pem(ec_key)
    token = _hs256_by_hand({"alg": "HS256"}, {"sub": "admin"}, pem.encode())
    with pytest.raises(TokenInvalid):
        _verifier(token_ecdsa_public_key=pem).verify_connection(token)


def test_rs256_refused_when_only_hmac_configured(rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode({"sub": "1"}, rsa_key, algorithm="RS256")
    with pytest.raises(TokenInvalid, match="RS256 is not enabled"):
        _hs_verifier().verify_connection(token)


def test_es256_token_refused_by_rsa_key(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = jwt.encode({"sub": "1"}, ec_key, algorithm="ES256")
    with pytest.raises(TokenInvalid, match="ES256 is not enabled"):
        _verifier(token_rsa_public_key=_public_pem(rsa_key)).verify_connection(token)


def test_rs256_signed_by_another_key_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"sub": "1"}, other, algorithm="RS256")
    with pytest.raises(TokenInvalid, match="bad signature"):
        _verifier(token_rsa_public_key=_public_pem(rsa_key)).verify_connection(token)


# --- configuration mistakes are caught at start-up ----------------------------------------


def test_bad_key_configuration_raises_value_error(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(ValueError, match="token_rsa_public_key"):
        _verifier(token_rsa_public_key="not a pem")
    with pytest.raises(ValueError, match="not an RSA public key"):
        _verifier(token_rsa_public_key=_public_pem(ec_key))
    with pytest.raises(ValueError, match="EC P-256"):
        _verifier(token_ecdsa_public_key=_public_pem(rsa_key))
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="EC P-256"):
        _verifier(token_ecdsa_public_key=_public_pem(p384))
    with pytest.raises(ValueError, match="HMAC secret"):
        _verifier(token_hmac_secret=_public_pem(rsa_key))


# --- audience and issuer --------------------------------------------------------------------


def test_aud_and_iss_ignored_when_not_configured() -> None:
    token = mint_connection_token(SECRET, user="1", now=NOW, audience="x", issuer="y")
    assert _hs_verifier().verify_connection(token).user == "1"


def test_aud_required_when_configured() -> None:
    verifier = _hs_verifier(token_audience="wsfleet")
    ok = mint_connection_token(SECRET, user="1", now=NOW, audience="wsfleet")
    assert verifier.verify_connection(ok).user == "1"
    in_list = jwt.encode({"sub": "1", "aud": ["other", "wsfleet"]}, SECRET, algorithm="HS256")
    assert verifier.verify_connection(in_list).user == "1"
    with pytest.raises(TokenInvalid, match="missing aud"):
        verifier.verify_connection(mint_connection_token(SECRET, user="1", now=NOW))
    with pytest.raises(TokenInvalid, match="wrong audience"):
        verifier.verify_connection(
            mint_connection_token(SECRET, user="1", now=NOW, audience="other")
        )
    with pytest.raises(TokenInvalid, match="wrong audience"):
        verifier.verify_connection(jwt.encode({"sub": "1", "aud": 5}, SECRET, algorithm="HS256"))


def test_iss_required_when_configured() -> None:
    verifier = _hs_verifier(token_issuer="https://backend")
    ok = mint_connection_token(SECRET, user="1", now=NOW, issuer="https://backend")
    assert verifier.verify_connection(ok).user == "1"
    with pytest.raises(TokenInvalid, match="missing iss"):
        verifier.verify_connection(mint_connection_token(SECRET, user="1", now=NOW))
    with pytest.raises(TokenInvalid, match="wrong issuer"):
        verifier.verify_connection(
            mint_connection_token(SECRET, user="1", now=NOW, issuer="https://evil")
        )


def test_aud_iss_apply_to_subscription_tokens() -> None:
    verifier = _hs_verifier(token_audience="a", token_issuer="i")
    good = mint_subscription_token(SECRET, user="1", channel="c", now=NOW, audience="a", issuer="i")
    assert verifier.verify_subscription(good, user="1", channel="c").channel == "c"
    bad = mint_subscription_token(SECRET, user="1", channel="c", now=NOW)
    with pytest.raises(TokenInvalid):
        verifier.verify_subscription(bad, user="1", channel="c")


# --- claim parsing ----------------------------------------------------------------------------


def test_info_is_compact_json_bytes() -> None:
    info = {"name": "Zoë", "tags": [1, 2.5, None, True], "nested": {"a": "b"}}
    token = jwt.encode({"sub": "1", "info": info}, SECRET, algorithm="HS256")
    raw = _hs_verifier().verify_connection(token).info
    assert raw is not None
    assert b" " not in raw  # compact
    assert json.loads(raw) == info
    assert "Zoë".encode() in raw  # UTF-8, not \\u escapes


def test_scalar_info_kept_and_absent_info_is_none() -> None:
    token = jwt.encode({"sub": "1", "info": "hello"}, SECRET, algorithm="HS256")
    assert _hs_verifier().verify_connection(token).info == b'"hello"'
    plain = jwt.encode({"sub": "1"}, SECRET, algorithm="HS256")
    assert _hs_verifier().verify_connection(plain).info is None


def test_b64info_is_raw_bytes_and_wins_over_info() -> None:
    raw = bytes(range(256))
    token = jwt.encode(
        {"sub": "1", "info": {"ignored": True}, "b64info": base64.b64encode(raw).decode()},
        SECRET,
        algorithm="HS256",
    )
    assert _hs_verifier().verify_connection(token).info == raw


@pytest.mark.parametrize("b64info", ["***", 5, "YWJj!"])
def test_bad_b64info_refused(b64info: object) -> None:
    token = jwt.encode({"sub": "1", "b64info": b64info}, SECRET, algorithm="HS256")
    with pytest.raises(TokenInvalid, match="b64info"):
        _hs_verifier().verify_connection(token)


def test_channels_claim() -> None:
    token = jwt.encode({"sub": "1", "channels": ["a", "ns:b"]}, SECRET, algorithm="HS256")
    assert _hs_verifier().verify_connection(token).channels == ("a", "ns:b")
    for bad in ("a", ["a", 1], {"a": 1}):
        token = jwt.encode({"sub": "1", "channels": bad}, SECRET, algorithm="HS256")
        with pytest.raises(TokenInvalid, match="channels"):
            _hs_verifier().verify_connection(token)


def test_subs_claim() -> None:
    subs = {
        "news": {"info": {"role": "reader"}, "data": [1, 2]},
        "raw": {"b64info": base64.b64encode(b"\x00\x01").decode(), "b64data": "AP8="},
        "bare": {},
    }
    token = jwt.encode({"sub": "1", "subs": subs, "meta": {"x": 1}}, SECRET, algorithm="HS256")
    claims = _hs_verifier().verify_connection(token)
    assert claims.subs == {
        "news": SubscribeOptionsClaim(info=b'{"role":"reader"}', data=b"[1,2]"),
        "raw": SubscribeOptionsClaim(info=b"\x00\x01", data=b"\x00\xff"),
        "bare": SubscribeOptionsClaim(info=None, data=None),
    }


@pytest.mark.parametrize("subs", [["news"], "news", {"news": 5}, {"news": {"b64data": "!"}}])
def test_bad_subs_claim_refused(subs: object) -> None:
    token = jwt.encode({"sub": "1", "subs": subs}, SECRET, algorithm="HS256")
    with pytest.raises(TokenInvalid, match=r"subs|b64data"):
        _hs_verifier().verify_connection(token)


# --- subscription tokens -------------------------------------------------------------------


def test_subscription_token_round_trips() -> None:
    token = mint_subscription_token(SECRET, user="7", channel="room:1", ttl=60, now=NOW)
    claims = _hs_verifier().verify_subscription(token, user="7", channel="room:1")
    assert (claims.user, claims.channel) == ("7", "room:1")
    assert claims.expire_at == int(NOW) + 60
    assert claims.issued_at == int(NOW)
    assert (claims.info, claims.data) == (None, None)


def test_subscription_token_info_and_data() -> None:
    token = jwt.encode(
        {"sub": "7", "channel": "c", "info": {"a": 1}, "b64data": "AQI="},
        SECRET,
        algorithm="HS256",
    )
    claims = _hs_verifier().verify_subscription(token, user="7", channel="c")
    assert (claims.info, claims.data) == (b'{"a":1}', b"\x01\x02")


def test_subscription_token_for_another_user_refused() -> None:
    token = mint_subscription_token(SECRET, user="7", channel="c", now=NOW)
    with pytest.raises(TokenInvalid, match="user"):
        _hs_verifier().verify_subscription(token, user="8", channel="c")
    with pytest.raises(TokenInvalid, match="user"):
        _hs_verifier().verify_subscription(token, user="", channel="c")


def test_subscription_token_for_another_channel_refused() -> None:
    token = mint_subscription_token(SECRET, user="7", channel="c", now=NOW)
    with pytest.raises(TokenInvalid, match="channel"):
        _hs_verifier().verify_subscription(token, user="7", channel="d")


def test_subscription_token_without_channel_refused() -> None:
    token = jwt.encode({"sub": "7"}, SECRET, algorithm="HS256")
    with pytest.raises(TokenInvalid, match="missing channel"):
        _hs_verifier().verify_subscription(token, user="7", channel="c")


def test_subscription_token_without_sub_is_for_anonymous_only() -> None:
    token = jwt.encode({"channel": "c"}, SECRET, algorithm="HS256")
    assert _hs_verifier().verify_subscription(token, user="", channel="c").user == ""
    with pytest.raises(TokenInvalid):
        _hs_verifier().verify_subscription(token, user="7", channel="c")


def test_expired_subscription_token() -> None:
    token = mint_subscription_token(SECRET, user="7", channel="c", ttl=10, now=NOW)
    with pytest.raises(TokenExpired):
        _hs_verifier(Clock(NOW + 10)).verify_subscription(token, user="7", channel="c")


def test_separate_subscription_secret() -> None:
    sub_secret = "subscription-secret-also-long-enough-for-it"
    verifier = _hs_verifier(subscription_token_hmac_secret=sub_secret)
    good = mint_subscription_token(sub_secret, user="7", channel="c", now=NOW)
    assert verifier.verify_subscription(good, user="7", channel="c").channel == "c"
    # The connection secret no longer signs subscriptions, and vice versa.
    with pytest.raises(TokenInvalid, match="bad signature"):
        verifier.verify_subscription(
            mint_subscription_token(SECRET, user="7", channel="c", now=NOW), user="7", channel="c"
        )
    with pytest.raises(TokenInvalid, match="bad signature"):
        verifier.verify_connection(mint_connection_token(sub_secret, user="7", now=NOW))


def test_subscription_secret_alone_enables_only_subscriptions() -> None:
    sub_secret = "subscription-secret-also-long-enough-for-it"
    verifier = _verifier(subscription_token_hmac_secret=sub_secret)
    assert verifier.enabled
    token = mint_subscription_token(sub_secret, user="7", channel="c", now=NOW)
    assert verifier.verify_subscription(token, user="7", channel="c").user == "7"
    with pytest.raises(TokenInvalid, match="not enabled"):
        verifier.verify_connection(mint_connection_token(sub_secret, user="7", now=NOW))


def test_rs256_subscription_token(rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode({"sub": "7", "channel": "c"}, rsa_key, algorithm="RS256")
    verifier = _verifier(token_rsa_public_key=_public_pem(rsa_key))
    assert verifier.verify_subscription(token, user="7", channel="c").channel == "c"


# --- garbage never escapes as anything but TokenInvalid ---------------------------------


_HEADER = _b64url(b'{"alg":"HS256"}')

GARBAGE = [
    "",
    ".",
    "..",
    "...",
    "abc",
    "a.b.c",
    "not a token at all",
    "\x00\xff",
    "ö.ö.ö",
    _b64url(b"[]") + ".e30.",
    _b64url(b'"HS256"') + ".e30.",
    _b64url(b"null") + ".e30.",
    _b64url(b"{") + ".e30.",
    _b64url(b"[" * 100_000 + b"]" * 100_000) + ".e30.",
    _b64url(b'{"alg":"HS256","kid":5}') + ".e30.",
    _b64url(b'{"alg":"HS256","crit":["exp"]}') + ".e30.",
    _b64url(b'{"alg":"HS256","crit":5}') + ".e30.",
    _b64url(b'{"alg":"HS256","b64":false,"crit":["b64"]}') + "..",
    _b64url(b'{"alg":{"x":1}}') + ".e30.",
    _b64url(b'{"alg":["HS256"]}') + ".e30.",
    f"{_HEADER}.!!!.abc",
    f"{_HEADER}.e30.!!!",
    f"{_HEADER}.e30",
    f"{_HEADER}.e30.abc.def",
]


@pytest.mark.parametrize("token", GARBAGE)
def test_garbage_is_token_invalid(token: str) -> None:
    with pytest.raises(TokenInvalid):
        _hs_verifier().verify_connection(token)
    with pytest.raises(TokenInvalid):
        _hs_verifier().verify_subscription(token, user="1", channel="c")


@pytest.mark.parametrize(
    "payload",
    [b"[]", b"5", b'"x"', b"null", b"{", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000],
)
def test_validly_signed_garbage_payload_is_token_invalid(payload: bytes) -> None:
    signing_input = f"{_HEADER}.{_b64url(payload)}"
    sig = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(TokenInvalid):
        _hs_verifier().verify_connection(f"{signing_input}.{_b64url(sig)}")


# --- minting ---------------------------------------------------------------------------------


def test_minted_tokens_are_standard_hs256_jwts() -> None:
    token = mint_connection_token(
        SECRET, user="1", ttl=100, now=NOW, channels=("a",), info=[1], audience="au", issuer="is"
    )
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    decoded = jwt.decode(
        token,
        SECRET,
        algorithms=["HS256"],
        audience="au",
        issuer="is",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert decoded == {
        "sub": "1",
        "iat": int(NOW),
        "exp": int(NOW) + 100,
        "aud": "au",
        "iss": "is",
        "channels": ["a"],
        "info": [1],
    }


def test_minting_with_empty_secret_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        mint_connection_token("", user="1")
    with pytest.raises(ValueError, match="secret"):
        mint_subscription_token("", user="1", channel="c")


def test_minting_defaults_to_wall_clock() -> None:
    token = mint_connection_token(SECRET, user="1")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 3600
