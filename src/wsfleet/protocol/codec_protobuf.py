"""The Protobuf wire format: length-prefixed messages in binary frames.

A frame holds one or more messages, each preceded by its length as a varint.
A zero length is a legal message: an empty command, which is a client's pong.
The messages are those of ``client.proto`` (bindings in ``client_pb2``).

Conversion between the generated messages and the structs of
:mod:`wsfleet.protocol.messages`:

* encoding turns a struct into nested builtins with ``msgspec.to_builtins``
  (defaults left out, payloads as bytes) and hands them to the generated
  constructor; both run in C, and an empty nested dict still marks its field
  present, so ``Reply(publish=PublishResult())`` reaches the client with the
  ``publish`` field set;
* decoding walks ``ListFields()`` (only the fields present, in C) with a
  converter per field, planned once per struct class from its type annotations.
  An absent submessage becomes ``None``, a present empty one an empty struct;
  empty bytes become :data:`~wsfleet.protocol.messages.EMPTY`; an empty map or
  list becomes ``None``, since Protobuf cannot tell it from an absent one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import msgspec
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as PbMessage

from wsfleet.protocol import client_pb2, messages
from wsfleet.protocol.codes import DisconnectCode, ProtocolDisconnect
from wsfleet.protocol.messages import Command, Reply

__all__ = ["ProtobufCodec", "from_pb", "to_pb"]

_S = TypeVar("_S", bound=msgspec.Struct)

_Convert = Callable[[Any], Any]

_MAX_VARINT_BYTES = 10
"""A 64-bit varint's longest form; anything longer is garbage, not a length."""

# One-byte length prefixes, the common case, built once.
_SMALL_PREFIXES = tuple(bytes((n,)) for n in range(128))


def _bad(detail: str) -> ProtocolDisconnect:
    return ProtocolDisconnect(DisconnectCode.BAD_REQUEST, detail)


# -- struct -> message --------------------------------------------------------


def _payload_bytes(value: object) -> bytes:
    # to_builtins calls this for the only type it does not know: Raw payloads.
    if isinstance(value, msgspec.Raw):
        return bytes(value)
    raise TypeError(f"cannot encode {type(value).__name__} as Protobuf")


def to_pb(struct: msgspec.Struct, message_class: type[PbMessage]) -> PbMessage:
    """Convert a message struct to the generated message of the same name."""
    fields = msgspec.to_builtins(struct, builtin_types=(bytes,), enc_hook=_payload_bytes)
    return message_class(**fields)


def _varint(value: int) -> bytes:
    if value < 128:
        return _SMALL_PREFIXES[value]
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encode(struct: msgspec.Struct, message_class: type[PbMessage]) -> bytes:
    body = to_pb(struct, message_class).SerializeToString()
    return _varint(len(body)) + body


# -- message -> struct --------------------------------------------------------


def _raw(value: bytes) -> msgspec.Raw:
    # ListFields never reports empty bytes, so every Raw made here is non-empty.
    return msgspec.Raw(value)


def _converter(kind: msgspec.inspect.Type) -> _Convert | None:
    """The conversion of one field's value; None when the value is used as it is."""
    if isinstance(kind, msgspec.inspect.UnionType):
        (kind,) = (t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType))
    if isinstance(kind, msgspec.inspect.RawType):
        return _raw
    if isinstance(kind, msgspec.inspect.StructType):
        return _decoder_for(kind.cls)
    if isinstance(kind, msgspec.inspect.DictType):
        convert_value = _converter(kind.value_type)
        if convert_value is None:
            return dict
        return lambda entries: {key: convert_value(value) for key, value in entries.items()}
    if isinstance(kind, msgspec.inspect.ListType):
        convert_item = _converter(kind.item_type)
        if convert_item is None:
            return list
        return lambda items: [convert_item(item) for item in items]
    if isinstance(
        kind, msgspec.inspect.StrType | msgspec.inspect.IntType | msgspec.inspect.BoolType
    ):
        return None
    raise TypeError(f"no Protobuf conversion for field type {kind!r}")


_DECODERS: dict[type[msgspec.Struct], Callable[[Any], Any]] = {}


def _decoder_for(cls: type[_S]) -> Callable[[Any], _S]:
    """Plan, once per class, the conversion of a generated message to ``cls``."""
    known = _DECODERS.get(cls)
    if known is not None:
        return known
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    converters: dict[str, _Convert | None] = {}
    # Required fields (Error.code, Join.info ...) still need a value when the
    # message leaves them at their default, which Protobuf does not transmit.
    required: list[tuple[str, Callable[[], Any]]] = []

    def convert_one(message: Any) -> _S:
        kwargs = {factory_name: factory() for factory_name, factory in required}
        for field, value in message.ListFields():
            convert = converters[field.name]
            kwargs[field.name] = value if convert is None else convert(value)
        return cls(**kwargs)

    # Registered before planning the fields, so recursive types terminate.
    _DECODERS[cls] = convert_one
    for field in info.fields:
        converters[field.name] = _converter(field.type)
        if field.required:
            required.append((field.name, _default_factory(field.type)))
    return convert_one


def _default_factory(kind: msgspec.inspect.Type) -> Callable[[], Any]:
    if isinstance(kind, msgspec.inspect.StructType):
        return kind.cls
    if isinstance(kind, msgspec.inspect.IntType):
        return int
    raise TypeError(f"no Protobuf default for required field type {kind!r}")


def from_pb(message: PbMessage, cls: type[_S]) -> _S:
    """Convert a generated message to the message struct ``cls``."""
    return _decoder_for(cls)(message)


def _check_schema(cls: type[msgspec.Struct], message_class: type[PbMessage]) -> None:
    """Fail at import if a struct has a field client.proto lacks, or vice versa.

    Names only: field numbers and types are checked against the SDK's own
    bindings by the tests.
    """
    struct_fields = set(cls.__struct_fields__)
    proto_fields = {field.name for field in message_class.DESCRIPTOR.fields}
    if struct_fields != proto_fields:
        raise RuntimeError(
            f"{cls.__name__}: client.proto and messages.py disagree on "
            f"{sorted(struct_fields ^ proto_fields)}; run `make proto`"
        )


def _decode_frame(frame: bytes, message_class: type[PbMessage], cls: type[_S]) -> list[_S]:
    convert = _decoder_for(cls)
    parse = message_class.FromString
    view = memoryview(frame)
    size = len(frame)
    out: list[_S] = []
    pos = 0
    while pos < size:
        start = pos
        length = 0
        shift = 0
        while True:
            if pos >= size:
                raise _bad(f"truncated length prefix at byte {start}")
            byte = frame[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift >= 7 * _MAX_VARINT_BYTES:
                raise _bad(f"length prefix at byte {start} is longer than a varint")
        end = pos + length
        if end > size:
            raise _bad(
                f"message at byte {start} claims {length} bytes, frame has {size - pos} left"
            )
        try:
            # The parser takes any buffer; a view saves copying each message.
            message = parse(cast(bytes, view[pos:end]))
        except DecodeError as exc:
            raise _bad(f"invalid Protobuf {cls.__name__} at byte {start}: {exc}") from None
        out.append(convert(message))
        pos = end
    return out


class ProtobufCodec:
    """Varint-length-delimited Protobuf messages in binary frames."""

    name: str = "protobuf"
    binary: bool = True
    separator: bytes = b""

    def decode_commands(self, frame: bytes) -> list[Command]:
        return _decode_frame(frame, client_pb2.Command, Command)

    def encode_reply(self, reply: Reply) -> bytes:
        return _encode(reply, client_pb2.Reply)

    def encode_command(self, command: Command) -> bytes:
        return _encode(command, client_pb2.Command)

    def decode_replies(self, frame: bytes) -> list[Reply]:
        return _decode_frame(frame, client_pb2.Reply, Reply)


def _check_all() -> None:
    for name in dir(client_pb2):
        message_class = getattr(client_pb2, name)
        if isinstance(message_class, type) and issubclass(message_class, PbMessage):
            _check_schema(getattr(messages, name), message_class)


_check_all()
_decoder_for(Command)
_decoder_for(Reply)
