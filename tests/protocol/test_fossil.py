"""Fossil deltas: the SDK's decoder rebuilds what our encoder describes."""

from __future__ import annotations

import pytest
from centrifuge.fossil import apply_delta as sdk_apply_delta
from centrifuge.fossil import checksum as sdk_checksum
from hypothesis import given
from hypothesis import strategies as st

from wsfleet.protocol.fossil import apply_delta, checksum, create_delta


@st.composite
def similar_pairs(
    draw: st.DrawFn, *, alphabet: st.SearchStrategy[bytes] | None = None
) -> tuple[bytes, bytes]:
    """A source and a target made from it by a few cuts, pastes and moves."""
    source = draw(st.binary(max_size=400))
    target = bytearray(source)
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(target)))
        match draw(st.sampled_from(["insert", "delete", "move"])):
            case "insert":
                target[at:at] = draw(st.binary(max_size=20))
            case "delete":
                del target[at : at + draw(st.integers(0, 20))]
            case "move":
                cut = bytes(target[at : at + draw(st.integers(0, 60))])
                del target[at : at + len(cut)]
                to = draw(st.integers(0, len(target)))
                target[to:to] = cut
    return source, bytes(target)


text = st.text(st.characters(exclude_categories=("Cs",)), max_size=120)


@given(pair=similar_pairs())
def test_sdk_and_we_apply_our_delta(pair: tuple[bytes, bytes]) -> None:
    source, target = pair
    delta = create_delta(source, target)
    assert sdk_apply_delta(source, delta) == target
    assert apply_delta(source, delta) == target


@given(source=st.binary(max_size=200), target=st.binary(max_size=200))
def test_unrelated_inputs(source: bytes, target: bytes) -> None:
    delta = create_delta(source, target)
    assert sdk_apply_delta(source, delta) == target
    assert apply_delta(source, delta) == target


@given(parts=st.lists(text, min_size=1, max_size=6), edit=text)
def test_delta_of_utf8_text_is_utf8(parts: list[str], edit: str) -> None:
    # Repeated text makes copies that start and end next to multi-byte characters.
    source = "".join(parts * 3).encode()
    target = "".join([*parts, edit, *parts, *parts]).encode()
    delta = create_delta(source, target)
    delta.decode("utf-8")  # JSON connections carry deltas as JSON strings
    assert sdk_apply_delta(source, delta) == target


@given(
    source=st.binary(min_size=256, max_size=2000),
    at=st.integers(0, 2000),
    edit=st.binary(max_size=16),
)
def test_delta_of_a_small_change_is_much_smaller_than_the_target(
    source: bytes, at: int, edit: bytes
) -> None:
    at = min(at, len(source))
    target = source[:at] + edit + source[at + len(edit) :]
    delta = create_delta(source, target)
    assert len(delta) < len(target) // 4
    assert sdk_apply_delta(source, delta) == target


def test_identical_payloads() -> None:
    payload = b'{"state":"' + b"x" * 100 + b'"}'
    delta = create_delta(payload, payload)
    assert delta.count(b"@") == 1 and b":" not in delta  # one copy, no insert
    assert apply_delta(payload, delta) == payload


def test_numbers_use_the_format_digits() -> None:
    # 64 is "10" in the format's base 64. The checksum is the sum of sixteen
    # big-endian words 0x41414141: 0x14141410, which is K-5-1-G-G (20,5,1,16,16).
    delta = create_delta(b"", b"A" * 64)
    assert delta == b"10\n10:" + b"A" * 64 + b"K51GG;"
    assert sdk_apply_delta(b"", delta) == b"A" * 64


@given(data=st.binary(max_size=100))
def test_checksum_matches_the_sdk(data: bytes) -> None:
    assert checksum(data) == sdk_checksum(data)


@given(pair=similar_pairs())
def test_every_truncation_is_rejected(pair: tuple[bytes, bytes]) -> None:
    source, target = pair
    delta = create_delta(source, target)
    for end in range(len(delta)):
        with pytest.raises(ValueError, match="bad delta"):
            apply_delta(source, delta[:end])


@given(pair=similar_pairs(), position=st.integers(0, 10_000), flip=st.integers(1, 255))
def test_a_corrupted_byte_never_yields_a_wrong_result_silently(
    pair: tuple[bytes, bytes], position: int, flip: int
) -> None:
    source, target = pair
    delta = bytearray(create_delta(source, target))
    delta[position % len(delta)] ^= flip
    try:
        result = apply_delta(source, bytes(delta))
    except ValueError:
        return
    # A flip can survive only where it does not change the output, e.g. a copy
    # offset moved to an identical stretch of the source.
    assert result == target


SOURCE = b"0123456789abcdefghij"


@pytest.mark.parametrize(
    ("delta", "message"),
    [
        (b"", "expected a number"),
        (b"5", "truncated"),
        (b"5;", "not followed by a newline"),
        (b"5\n5:01234", "no checksum"),
        (b"5\n5!01234", "unknown operator"),
        (b"5\n5:01234!;", "expected a number"),
        (b"5\n5@0;", "not terminated by ','"),
        (b"5\n5@K,", "copy beyond the end of the source"),
        (b"5\n9:01234", "insert longer than the delta"),
        (b"2\n5:01234", "output longer than announced"),
        (b"5\n4:0123", "no checksum"),
        (b"4\n2@0,3:234", "output longer"),
        (b"5\n5:012340;", "checksum mismatch"),
        (b"5\n4@0,0;", "shorter than announced"),
        (b"5\n:01234", "expected a number"),
    ],
)
def test_malformed_deltas(delta: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_delta(SOURCE, delta)


def test_trailing_bytes_after_checksum_are_rejected() -> None:
    delta = create_delta(SOURCE, b"hello")
    with pytest.raises(ValueError, match="after the checksum"):
        apply_delta(SOURCE, delta + b"x")
