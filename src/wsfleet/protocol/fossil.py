"""Fossil delta encoding: a compact description of a new payload as edits of an old one.

Channels with delta compression send a subscriber the difference between a
publication's payload and the previous one instead of the whole payload; the
client SDK rebuilds the payload with its Fossil decoder. This module makes such
deltas (:func:`create_delta`) and applies them (:func:`apply_delta`). It is
pure: bytes in, bytes out.

The format (from the public description of Fossil's delta format)::

    delta   = <target length> "\\n" segment* <checksum> ";"
    segment = <count> "@" <offset> ","      copy count bytes of the source at offset
            | <count> ":" <count bytes>     insert these bytes as they are

Every number is written in a base-64 notation of its own (digits, upper case,
``_``, lower case, ``~``; most significant digit first). The checksum is the
32-bit sum of the target read as big-endian words, zero-padded at the end.

The encoder finds copies by indexing the source in 16-byte blocks and looking
each 16-byte window of the target up in that index, then growing every hit
backwards and forwards. Segment boundaries never split a UTF-8 sequence of the
target, so the delta of UTF-8 text is itself UTF-8 text: JSON connections carry
deltas inside JSON strings, which cannot hold arbitrary bytes.
"""

from __future__ import annotations

import struct

__all__ = ["apply_delta", "checksum", "create_delta"]

_DIGITS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"

# Digit value of each byte, -1 for bytes that are not digits (they end a number).
_VALUES: tuple[int, ...] = tuple(_DIGITS.find(bytes((b,))) for b in range(256))

_BLOCK = 16
"""Length of the source blocks indexed and of the target windows looked up."""

_MAX_CANDIDATES = 8
"""Source blocks examined per target window: bounds the work on repetitive input."""


def _number(value: int) -> bytes:
    """Write a non-negative integer in the format's base-64 notation."""
    if value == 0:
        return b"0"
    out = bytearray()
    while value:
        out.append(_DIGITS[value & 63])
        value >>= 6
    out.reverse()
    return bytes(out)


def checksum(data: bytes) -> int:
    """The format's 32-bit checksum of ``data``."""
    tail = len(data) % 4
    if tail:
        data = data + b"\0" * (4 - tail)
    # struct sums the big-endian words in C; the Python loop would be ~20x slower.
    words: tuple[int, ...] = struct.unpack(f">{len(data) // 4}I", data)
    return sum(words) & 0xFFFFFFFF


def _is_continuation(byte: int) -> bool:
    """Whether ``byte`` continues a UTF-8 sequence rather than starting one."""
    return byte & 0xC0 == 0x80


def _forward_match(source: bytes, s: int, target: bytes, t: int) -> int:
    """Length of the common prefix of ``source[s:]`` and ``target[t:]``."""
    limit = min(len(source) - s, len(target) - t)
    # Compare growing slices first, then bisect the last step: slice equality
    # runs in C, so long matches cost a few comparisons, not one per byte.
    step = 16
    done = 0
    while done < limit:
        size = min(step, limit - done)
        if source[s + done : s + done + size] != target[t + done : t + done + size]:
            lo, hi = done, done + size  # prefix of length lo matches, hi does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if source[s + lo : s + mid] == target[t + lo : t + mid]:
                    lo = mid
                else:
                    hi = mid
            return lo
        done += size
        step *= 2
    return limit


def _backward_match(source: bytes, s: int, target: bytes, t: int, limit: int) -> int:
    """Length, at most ``limit``, of the common suffix of ``source[:s]`` and ``target[:t]``."""
    n = 0
    while n < limit and source[s - n - 1] == target[t - n - 1]:
        n += 1
    return n


def _index(source: bytes) -> dict[bytes, list[int]]:
    """Offsets of the source's non-overlapping 16-byte blocks, by content."""
    index: dict[bytes, list[int]] = {}
    for offset in range(0, len(source) - _BLOCK + 1, _BLOCK):
        offsets = index.setdefault(source[offset : offset + _BLOCK], [])
        if len(offsets) < _MAX_CANDIDATES:
            offsets.append(offset)
    return index


def create_delta(source: bytes, target: bytes) -> bytes:
    """Return a Fossil delta that turns ``source`` into ``target``.

    Any two byte strings have a delta; for unrelated inputs it is the target
    plus a few bytes of framing. If ``target`` is valid UTF-8, so is the delta.
    """
    out = bytearray(_number(len(target)))
    out += b"\n"
    n = len(target)
    index = _index(source) if n >= _BLOCK else {}
    pending = 0  # start of the target bytes not yet written to the delta
    i = 0
    while index and i + _BLOCK <= n:
        offsets = index.get(target[i : i + _BLOCK])
        if offsets is None:
            i += 1
            continue
        best_len = best_src = best_tgt = 0
        for offset in offsets:
            back = _backward_match(source, offset, target, i, min(offset, i - pending))
            length = back + _forward_match(source, offset, target, i)
            if length > best_len:
                best_len, best_src, best_tgt = length, offset - back, i - back
        # Shrink the copy to whole UTF-8 characters of the target, so that the
        # inserts around it never begin or end inside a character.
        while best_len and _is_continuation(target[best_tgt]):
            best_src, best_tgt, best_len = best_src + 1, best_tgt + 1, best_len - 1
        while (
            best_len and best_tgt + best_len < n and _is_continuation(target[best_tgt + best_len])
        ):
            best_len -= 1
        copy = _number(best_len) + b"@" + _number(best_src) + b","
        # A copy is worth it only if it is shorter than inserting the same bytes.
        if best_len <= len(copy):
            i += 1
            continue
        if best_tgt > pending:
            out += _number(best_tgt - pending) + b":" + target[pending:best_tgt]
        out += copy
        i = pending = best_tgt + best_len
    if pending < n:
        out += _number(n - pending) + b":" + target[pending:]
    out += _number(checksum(target)) + b";"
    return bytes(out)


class _Reader:
    """A cursor over a delta that reads the format's numbers and operators."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def number(self) -> int:
        data, pos = self.data, self.pos
        value = 0
        start = pos
        while pos < len(data):
            digit = _VALUES[data[pos]]
            if digit < 0:
                break
            value = (value << 6) | digit
            pos += 1
        if pos == start:
            raise ValueError(f"bad delta: expected a number at byte {start}")
        self.pos = pos
        return value

    def operator(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError("bad delta: truncated after a number")
        op = self.data[self.pos]
        self.pos += 1
        return op


def apply_delta(source: bytes, delta: bytes) -> bytes:
    """Apply a Fossil ``delta`` to ``source`` and return the target.

    Raises :class:`ValueError` if the delta is malformed, refers outside the
    source, or does not reproduce the length and checksum it announces.
    """
    reader = _Reader(delta)
    size = reader.number()
    if reader.operator() != ord("\n"):
        raise ValueError("bad delta: target length not followed by a newline")
    out = bytearray()
    while reader.pos < len(delta):
        count = reader.number()
        op = reader.operator()
        if op == ord("@"):
            offset = reader.number()
            if reader.operator() != ord(","):
                raise ValueError("bad delta: copy segment not terminated by ','")
            if offset + count > len(source):
                raise ValueError("bad delta: copy beyond the end of the source")
            if len(out) + count > size:
                raise ValueError("bad delta: output longer than announced")
            out += source[offset : offset + count]
        elif op == ord(":"):
            if reader.pos + count > len(delta):
                raise ValueError("bad delta: insert longer than the delta")
            if len(out) + count > size:
                raise ValueError("bad delta: output longer than announced")
            out += delta[reader.pos : reader.pos + count]
            reader.pos += count
        elif op == ord(";"):
            if reader.pos != len(delta):
                raise ValueError("bad delta: bytes after the checksum")
            if len(out) != size:
                raise ValueError("bad delta: output shorter than announced")
            result = bytes(out)
            if checksum(result) != count:
                raise ValueError("bad delta: checksum mismatch")
            return result
        else:
            raise ValueError(f"bad delta: unknown operator {op!r} at byte {reader.pos - 1}")
    raise ValueError("bad delta: no checksum")
