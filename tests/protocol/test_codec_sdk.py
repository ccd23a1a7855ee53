"""Our wire bytes and the official SDK's agree, field by field.

The SDK's bindings come from the public protocol definition; ours from
client.proto. Parsing the same bytes with both and getting the same field
names and values proves the field numbers and types match.
"""

from __future__ import annotations

import base64
import json

import msgspec
from centrifuge.codecs import _JsonCodec, _ProtobufCodec
from centrifuge.fossil import apply_delta as sdk_apply_delta
from centrifuge.protocol import client_pb2 as sdk_pb2
from google.protobuf.json_format import MessageToDict
from hypothesis import given
from hypothesis import strategies as st
from protocol_strategies import commands, replies

from wsfleet.protocol import client_pb2
from wsfleet.protocol.codec import JSON, PROTOBUF
from wsfleet.protocol.fossil import create_delta
from wsfleet.protocol.messages import (
    ClientInfo,
    Command,
    PingRequest,
    Publication,
    PublishRequest,
    PublishResult,
    Push,
    Reply,
    SubscribeRequest,
    raw,
)


def as_dict(message: object) -> dict[str, object]:
    return MessageToDict(message, preserving_proto_field_name=True)  # type: ignore[arg-type]


def strip_prefix(encoded: bytes) -> bytes:
    """The message of one length-prefixed encoding (short or long prefix)."""
    pos = 0
    while encoded[pos] & 0x80:
        pos += 1
    return encoded[pos + 1 :]


@given(reply=replies)
def test_sdk_schema_reads_our_reply_bytes_as_we_do(reply: Reply) -> None:
    body = strip_prefix(PROTOBUF.encode_reply(reply))
    theirs = sdk_pb2.Reply.FromString(body)
    assert as_dict(theirs) == as_dict(client_pb2.Reply.FromString(body))


@given(command=commands)
def test_our_schema_reads_sdk_command_bytes_as_the_sdk_does(command: Command) -> None:
    body = strip_prefix(PROTOBUF.encode_command(command))
    ours = client_pb2.Command.FromString(body)
    assert as_dict(ours) == as_dict(sdk_pb2.Command.FromString(body))


@given(batch=st.lists(replies, min_size=1, max_size=3))
def test_sdk_protobuf_codec_decodes_our_frames(batch: list[Reply]) -> None:
    frame = b"".join(PROTOBUF.encode_reply(reply) for reply in batch)
    decoded = _ProtobufCodec.decode_replies(frame)
    assert len(decoded) == len(batch)
    for theirs, reply in zip(decoded, batch, strict=True):
        assert theirs == as_dict(
            client_pb2.Reply.FromString(strip_prefix(PROTOBUF.encode_reply(reply)))
        )


@given(batch=st.lists(commands, min_size=1, max_size=3))
def test_we_decode_frames_the_sdk_protobuf_codec_encodes(batch: list[Command]) -> None:
    # The SDK builds commands from dicts in Protobuf's JSON mapping: bytes as base64.
    dicts = [msgspec.to_builtins(command, enc_hook=bytes) for command in batch]
    frame = _ProtobufCodec.encode_commands(dicts)
    assert PROTOBUF.decode_commands(frame) == batch


@given(batch=st.lists(commands, min_size=1, max_size=3))
def test_we_decode_frames_the_sdk_json_codec_encodes(batch: list[Command]) -> None:
    dicts = [msgspec.json.decode(JSON.encode_command(command)) for command in batch]
    frame = _JsonCodec.encode_commands(dicts).encode("utf-8")
    decoded = JSON.decode_commands(frame)
    # The SDK spaces its JSON differently, so compare the values, not the bytes.
    assert [msgspec.json.decode(JSON.encode_command(command)) for command in decoded] == dicts


@given(batch=st.lists(replies, min_size=1, max_size=3))
def test_sdk_json_codec_decodes_our_frames(batch: list[Reply]) -> None:
    frame = JSON.separator.join(JSON.encode_reply(reply) for reply in batch)
    assert _JsonCodec.decode_replies(frame.decode("utf-8")) == [
        json.loads(JSON.encode_reply(reply)) for reply in batch
    ]


def test_publication_push_as_the_sdk_sees_it() -> None:
    reply = Reply(
        push=Push(
            channel="chat:1",
            pub=Publication(
                data=raw(b'{"text":"hi"}'),
                info=ClientInfo(user="42", client="c1", conn_info=raw(b'"x"')),
                offset=2**40,
                tags={"kind": "msg"},
                delta=True,
                time=-1,
            ),
        )
    )
    (theirs,) = _ProtobufCodec.decode_replies(PROTOBUF.encode_reply(reply))
    assert theirs == {
        "push": {
            "channel": "chat:1",
            "pub": {
                "data": base64.b64encode(b'{"text":"hi"}').decode(),
                "info": {
                    "user": "42",
                    "client": "c1",
                    "conn_info": base64.b64encode(b'"x"').decode(),
                },
                "offset": str(2**40),
                "tags": {"kind": "msg"},
                "delta": True,
                "time": "-1",
            },
        }
    }


def test_empty_result_is_present_for_the_sdk() -> None:
    body = strip_prefix(PROTOBUF.encode_reply(Reply(id=5, publish=PublishResult())))
    theirs = sdk_pb2.Reply.FromString(body)
    assert theirs.id == 5
    assert theirs.HasField("publish")
    assert not theirs.HasField("ping")


def test_sdk_ping_and_connect_commands() -> None:
    frame = _ProtobufCodec.encode_commands(
        [
            {"id": 1, "connect": {"token": "t", "subs": {"a": {"recover": True, "offset": 5}}}},
            {"id": 2, "ping": {}},
            {"id": 3, "publish": {"channel": "c", "data": base64.b64encode(b"[1]").decode()}},
            {},
        ]
    )
    connect, ping, publish, pong = PROTOBUF.decode_commands(frame)
    assert connect.connect is not None and connect.connect.subs is not None
    assert connect.connect.subs["a"] == SubscribeRequest(recover=True, offset=5)
    assert ping == Command(id=2, ping=PingRequest())
    assert publish == Command(id=3, publish=PublishRequest(channel="c", data=raw(b"[1]")))
    assert pong == Command()


def test_sdk_applies_delta_carried_in_a_protobuf_publication() -> None:
    previous = b'{"score":[1,2,3],"team":"blue","players":["ann","bob","cy"]}'
    current = b'{"score":[1,2,4],"team":"blue","players":["ann","bob","cy"]}'
    reply = Reply(
        push=Push(
            channel="g", pub=Publication(data=raw(create_delta(previous, current)), delta=True)
        )
    )
    (theirs,) = _ProtobufCodec.decode_replies(PROTOBUF.encode_reply(reply))
    delta = base64.b64decode(theirs["push"]["pub"]["data"])
    assert sdk_apply_delta(previous, delta) == current
