"""The wire codecs: how commands and replies travel in WebSocket frames.

A connection speaks one of two formats, chosen at the handshake: JSON (text
frames, the default) or Protobuf (binary frames, WebSocket subprotocol
``centrifuge-protobuf``). Both carry several messages per frame. This module
holds only the contract and the lookup; the formats sit beside it in
``codec_json`` and ``codec_protobuf``.

The server side of a codec is :meth:`Codec.decode_commands` and
:meth:`Codec.encode_reply`. The client side (:meth:`Codec.encode_command`,
:meth:`Codec.decode_replies`) exists for tests and the load generator.

Anything a peer sends that a codec cannot read raises
:class:`~wsfleet.protocol.codes.ProtocolDisconnect` with
``DisconnectCode.BAD_REQUEST``: it is the peer's fault and ends the connection.
"""

from __future__ import annotations

import enum
from typing import Protocol

from wsfleet.protocol.codec_json import JsonCodec
from wsfleet.protocol.codec_protobuf import ProtobufCodec
from wsfleet.protocol.messages import Command, Reply

__all__ = [
    "CODECS",
    "JSON",
    "PROTOBUF",
    "PROTOBUF_SUBPROTOCOL",
    "Codec",
    "CodecName",
    "get_codec",
]

PROTOBUF_SUBPROTOCOL = "centrifuge-protobuf"
"""The WebSocket subprotocol a client asks for to speak Protobuf."""


class CodecName(enum.StrEnum):
    JSON = "json"
    PROTOBUF = "protobuf"


class Codec(Protocol):
    """One wire format. Implementations are stateless and shared by all connections."""

    name: str
    """``"json"`` or ``"protobuf"``."""

    binary: bool
    """Whether frames of this format are binary (else text) WebSocket frames."""

    separator: bytes
    """What joins several encoded replies into one frame."""

    def decode_commands(self, frame: bytes) -> list[Command]:
        """Decode every command in a client's frame, in order.

        Raises ProtocolDisconnect(BAD_REQUEST) if any part of the frame is bad.
        """
        ...

    def encode_reply(self, reply: Reply) -> bytes:
        """Encode one reply, ready to be joined with others by :attr:`separator`."""
        ...

    def encode_command(self, command: Command) -> bytes:
        """Encode one command, ready to be joined with others by :attr:`separator`."""
        ...

    def decode_replies(self, frame: bytes) -> list[Reply]:
        """Decode every reply in a server's frame, in order.

        Raises ProtocolDisconnect(BAD_REQUEST) if any part of the frame is bad.
        """
        ...


JSON: Codec = JsonCodec()
PROTOBUF: Codec = ProtobufCodec()

CODECS: dict[str, Codec] = {JSON.name: JSON, PROTOBUF.name: PROTOBUF}
"""Every codec, by name."""


def get_codec(name: str) -> Codec:
    """Return the codec called ``name``; raise ValueError for an unknown name."""
    try:
        return CODECS[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; expected one of {sorted(CODECS)}") from None
