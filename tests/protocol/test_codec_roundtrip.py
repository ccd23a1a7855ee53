"""Both codecs carry every message of the protocol without loss."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from protocol_strategies import commands, raw_payloads, replies

from wsfleet.protocol.codec import CODECS, JSON, PROTOBUF, Codec, CodecName, get_codec
from wsfleet.protocol.messages import (
    EMPTY,
    ClientInfo,
    Command,
    Error,
    Join,
    PingRequest,
    PingResult,
    Publication,
    PublishResult,
    Push,
    Reply,
    SubscribeResult,
    UnsubscribeResult,
    raw,
)

codecs = pytest.mark.parametrize("codec", [JSON, PROTOBUF], ids=lambda codec: codec.name)


def frame_of(codec: Codec, encoded: list[bytes]) -> bytes:
    return codec.separator.join(encoded)


@codecs
@given(batch=st.lists(commands, min_size=1, max_size=4))
def test_commands_round_trip_in_one_frame(codec: Codec, batch: list[Command]) -> None:
    frame = frame_of(codec, [codec.encode_command(command) for command in batch])
    assert codec.decode_commands(frame) == batch


@codecs
@given(batch=st.lists(replies, min_size=1, max_size=4))
def test_replies_round_trip_in_one_frame(codec: Codec, batch: list[Reply]) -> None:
    frame = frame_of(codec, [codec.encode_reply(reply) for reply in batch])
    decoded = codec.decode_replies(frame)
    assert decoded == batch
    # An empty payload is always the EMPTY singleton: any other empty Raw would
    # encode as invalid JSON.
    assert all(payload is EMPTY or len(payload) for payload in raw_payloads(decoded))


@codecs
@given(batch=st.lists(commands, min_size=1, max_size=3))
def test_decoded_payloads_are_never_empty_raw(codec: Codec, batch: list[Command]) -> None:
    frame = frame_of(codec, [codec.encode_command(command) for command in batch])
    for payload in raw_payloads(codec.decode_commands(frame)):
        assert payload is EMPTY or len(payload) > 0


@codecs
@pytest.mark.parametrize(
    "reply",
    [
        Reply(id=1, publish=PublishResult()),
        Reply(id=2, unsubscribe=UnsubscribeResult()),
        Reply(id=3, ping=PingResult()),
        Reply(id=4, error=Error(code=0)),
        Reply(push=Push(join=Join(info=ClientInfo()))),
        Reply(push=Push(pub=Publication())),
        Reply(id=5, subscribe=SubscribeResult(publications=[Publication()])),
        Reply(),  # the server's ping
    ],
)
def test_present_but_empty_results_keep_their_presence(codec: Codec, reply: Reply) -> None:
    assert codec.decode_replies(codec.encode_reply(reply)) == [reply]


@codecs
def test_empty_request_keeps_its_presence(codec: Codec) -> None:
    ping = Command(id=9, ping=PingRequest())
    pong = Command()
    frame = frame_of(codec, [codec.encode_command(ping), codec.encode_command(pong)])
    assert codec.decode_commands(frame) == [ping, pong]


def test_protobuf_zero_length_message_is_the_clients_pong() -> None:
    assert PROTOBUF.decode_commands(b"\x00") == [Command()]
    assert PROTOBUF.decode_commands(b"\x00\x00") == [Command(), Command()]


def test_protobuf_empty_bytes_decode_to_the_empty_singleton() -> None:
    decoded = PROTOBUF.decode_replies(PROTOBUF.encode_reply(Reply(push=Push(pub=Publication()))))
    assert decoded[0].push is not None and decoded[0].push.pub is not None
    assert decoded[0].push.pub.data is EMPTY


def test_protobuf_long_message_uses_multibyte_length_prefix() -> None:
    reply = Reply(push=Push(channel="c", pub=Publication(data=raw(b'"' + b"x" * 300 + b'"'))))
    encoded = PROTOBUF.encode_reply(reply)
    assert encoded[0] & 0x80  # more than 127 bytes: the varint takes two bytes
    assert PROTOBUF.decode_replies(encoded * 2) == [reply, reply]


def test_json_frame_with_several_commands_blank_lines_and_trailing_newline() -> None:
    frame = b'{"id":1,"ping":{}}\n\n{"id":2,"publish":{"channel":"c","data":{"a":[1,2]}}}\n{}\n'
    first, second, third = JSON.decode_commands(frame)
    assert first == Command(id=1, ping=PingRequest())
    assert second.id == 2 and second.publish is not None
    assert second.publish.channel == "c"
    assert bytes(second.publish.data) == b'{"a":[1,2]}'
    assert third == Command()


def test_json_ignores_unknown_fields_for_forward_compatibility() -> None:
    (command,) = JSON.decode_commands(b'{"id":3,"connect":{"token":"t","flag":5},"extra":true}')
    assert command.id == 3 and command.connect is not None and command.connect.token == "t"


def test_json_reply_embeds_payload_verbatim() -> None:
    payload = b'{"text":"h\\u00e9llo","n":[1,2.5,null]}'
    reply = Reply(push=Push(channel="news", pub=Publication(data=raw(payload), offset=7)))
    assert JSON.encode_reply(reply) == (
        b'{"push":{"channel":"news","pub":{"data":' + payload + b',"offset":7}}}'
    )


def test_codec_attributes_and_lookup() -> None:
    assert (JSON.name, JSON.binary, JSON.separator) == ("json", False, b"\n")
    assert (PROTOBUF.name, PROTOBUF.binary, PROTOBUF.separator) == ("protobuf", True, b"")
    assert get_codec("json") is JSON
    assert get_codec(CodecName.PROTOBUF) is PROTOBUF
    assert set(CODECS) == {"json", "protobuf"}
    with pytest.raises(ValueError, match="unknown codec"):
        get_codec("xml")
