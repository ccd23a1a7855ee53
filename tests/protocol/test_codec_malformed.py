"""Every kind of malformed frame closes the connection with "bad request" (3501)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsfleet.protocol.codec import JSON, PROTOBUF, Codec
from wsfleet.protocol.codes import ProtocolDisconnect


def assert_bad_request(codec: Codec, frame: bytes, detail: str) -> None:
    with pytest.raises(ProtocolDisconnect) as info:
        codec.decode_commands(frame)
    assert info.value.disconnect.code == 3501
    assert detail in info.value.detail


@pytest.mark.parametrize(
    ("frame", "detail"),
    [
        (b"{", "line 1: invalid JSON"),
        (b"not json", "invalid JSON"),
        (b'{"id":1}\n{"id":', "line 2: invalid JSON"),
        (b'{"id":"one"}', "Expected `int`"),
        (b'{"id":1.5}', "Expected `int`"),
        (b'{"publish":{"channel":7}}', "$.publish.channel"),
        (b'{"ping":[]}', "$.ping"),
        (b"[1,2]", "Expected `object`"),
        (b"null", "Expected `object`"),
        (b'{"id":1}{"id":2}', "trailing characters"),
        # The protocol's integer types bound JSON too (uint32 ids, offsets from 0).
        (b'{"id":-1}', "Expected `int` >= 0 - at `$.id`"),
        (b'{"id":4294967296}', "Expected `int` <= 4294967295 - at `$.id`"),
        (b'{"subscribe":{"channel":"a","recover":true,"offset":-1}}', "$.subscribe.offset"),
        (b'{"history":{"channel":"a","since":{"offset":-3}}}', "$.history.since.offset"),
        (b'{"history":{"channel":"a","limit":2147483648}}', "$.history.limit"),
        (b'{"connect":{"subs":{"a":{"offset":-1}}}}', "$.connect.subs[...].offset"),
        (b'{"subscribe":{"channel":"a","offset":9223372036854775808}}', "<= 9223372036854775807"),
        (b'{"publish":{"channel":"\xff"}}', "not valid UTF-8 at byte 23"),
        (b'{"publish":{"data":"\xc3"}}', "not valid UTF-8"),  # inside a payload
        (b'{"publish":{"data":' + b"[" * 20000 + b"]" * 20000 + b"}}", "invalid JSON"),
    ],
)
def test_json_malformed(frame: bytes, detail: str) -> None:
    assert_bad_request(JSON, frame, detail)


@pytest.mark.parametrize(
    ("frame", "detail"),
    [
        (b"\x80", "truncated length prefix at byte 0"),
        (b"\x00\xff\xff", "truncated length prefix at byte 1"),
        (b"\x05\x08\x01", "claims 5 bytes, frame has 2 left"),
        (b"\x02\x08", "claims 2 bytes"),
        (b"\xff" * 10 + b"\x01", "longer than a varint"),
        # Field 1 with wire type 7, which does not exist.
        (b"\x01\x0f", "invalid Protobuf Command at byte 0"),
        # publish (field 7) holding a channel that is not UTF-8.
        (b"\x05\x3a\x03\x0a\x01\xff", "invalid Protobuf Command"),
        # A length-delimited field running past the end of its message.
        (b"\x02\x22\x05", "invalid Protobuf Command"),
        # A good command followed by a bad one.
        (b"\x02\x08\x01\x01\x0f", "at byte 3"),
    ],
)
def test_protobuf_malformed(frame: bytes, detail: str) -> None:
    assert_bad_request(PROTOBUF, frame, detail)


@pytest.mark.parametrize("codec", [JSON, PROTOBUF], ids=lambda codec: codec.name)
@given(frame=st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_close_with_bad_request(codec: Codec, frame: bytes) -> None:
    try:
        codec.decode_commands(frame)
    except ProtocolDisconnect as exc:
        assert exc.disconnect.code == 3501


@given(frame=st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_arbitrary_text_decodes_or_closes_with_bad_request(frame: bytes) -> None:
    try:
        JSON.decode_commands(frame)
    except ProtocolDisconnect as exc:
        assert exc.disconnect.code == 3501
