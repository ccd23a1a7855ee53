"""The JSON wire format: one JSON object per message, newline-separated.

A frame holds one or more messages, each on its own line; empty lines and a
trailing newline are ignored. Payload fields are JSON values embedded as they
are, so a payload is never parsed or re-serialised by the server.

Decoding checks the whole frame is UTF-8 first: msgspec leaves the inside of a
payload unchecked, and a payload is relayed to other clients verbatim, so one
bad byte would otherwise break every subscriber's decoder rather than the
sender's connection.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from wsfleet.protocol.codes import DisconnectCode, ProtocolDisconnect
from wsfleet.protocol.messages import Command, Reply

__all__ = ["JsonCodec"]

_T = TypeVar("_T", Command, Reply)

_encoder = msgspec.json.Encoder()
_command_decoder = msgspec.json.Decoder(Command)
_reply_decoder = msgspec.json.Decoder(Reply)


def _bad(detail: str) -> ProtocolDisconnect:
    return ProtocolDisconnect(DisconnectCode.BAD_REQUEST, detail)


def _decode_frame(frame: bytes, decoder: msgspec.json.Decoder[_T], what: str) -> list[_T]:
    if not frame.isascii():  # the common all-ASCII frame skips the full check
        try:
            frame.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad(f"frame is not valid UTF-8 at byte {exc.start}") from None
    out: list[_T] = []
    for number, line in enumerate(frame.split(b"\n"), 1):
        if not line or line.isspace():
            continue
        try:
            out.append(decoder.decode(line))
        except (msgspec.DecodeError, ValueError, RecursionError) as exc:
            # ValidationError (wrong types) is a DecodeError; ValueError covers
            # UnicodeDecodeError; RecursionError is absurdly deep nesting.
            raise _bad(f"line {number}: invalid JSON {what}: {exc}") from None
    return out


class JsonCodec:
    """Newline-delimited JSON in text frames."""

    name: str = "json"
    binary: bool = False
    separator: bytes = b"\n"

    def decode_commands(self, frame: bytes) -> list[Command]:
        return _decode_frame(frame, _command_decoder, "command")

    def encode_reply(self, reply: Reply) -> bytes:
        return _encoder.encode(reply)

    def encode_command(self, command: Command) -> bytes:
        return _encoder.encode(command)

    def decode_replies(self, frame: bytes) -> list[Reply]:
        return _decode_frame(frame, _reply_decoder, "reply")
