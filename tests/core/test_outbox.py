from __future__ import annotations

from collections.abc import Callable

from wsfleet.core.outbox import Outbox
from wsfleet.core.stats import NodeStats


class Loop:
    """Collects scheduled callbacks so a test decides when a loop turn ends."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []

    def call_soon(self, cb: Callable[[], None]) -> None:
        self.pending.append(cb)

    def turn(self) -> None:
        pending, self.pending = self.pending, []
        for cb in pending:
            cb()


def make(max_bytes: int = 1000, max_frame: int = 100, sep: bytes = b"\n"):
    loop = Loop()
    frames: list[bytes] = []
    overflows: list[bool] = []
    stats = NodeStats()
    box = Outbox(
        send=frames.append,
        separator=sep,
        max_bytes=max_bytes,
        max_frame_bytes=max_frame,
        on_overflow=lambda: overflows.append(True),
        call_soon=loop.call_soon,
        stats=stats,
    )
    return box, loop, frames, overflows, stats


def test_everything_queued_in_one_turn_leaves_as_one_frame() -> None:
    box, loop, frames, _, stats = make()
    for i in range(5):
        box.push(b"m%d" % i)
    assert frames == []  # nothing is written before the loop turn ends
    assert len(loop.pending) == 1  # one flush scheduled, not one per push
    loop.turn()
    assert frames == [b"m0\nm1\nm2\nm3\nm4"]
    assert stats.messages_out == 5 and stats.frames_out == 1


def test_protobuf_frames_concatenate_without_separator() -> None:
    box, loop, frames, _, _ = make(sep=b"")
    box.push(b"\x01a")
    box.push(b"\x01b")
    loop.turn()
    assert frames == [b"\x01a\x01b"]


def test_frames_are_cut_near_the_size_cap_and_keep_order() -> None:
    box, loop, frames, _, _ = make(max_frame=10)
    items = [b"aaaa", b"bbbb", b"cccc", b"dddddddddddddddd", b"e"]
    for item in items:
        box.push(item)
    loop.turn()
    assert len(frames) > 1
    assert b"\n".join(frames).split(b"\n") == items
    assert b"dddddddddddddddd" in frames  # an oversized reply still goes whole


def test_overflow_closes_once_and_drops_the_queue() -> None:
    box, loop, frames, overflows, stats = make(max_bytes=10)
    assert box.push(b"12345")
    assert not box.push(b"1234567")  # 12 bytes queued > 10
    assert overflows == [True]
    assert not box.push(b"x")  # closed: nothing more accepted, no second callback
    assert overflows == [True]
    loop.turn()
    assert frames == []
    assert stats.outbox_overflows == 1


def test_paused_transport_holds_writes_and_the_bound_still_applies() -> None:
    box, loop, frames, overflows, _ = make(max_bytes=20)
    box.pause()
    box.push(b"0123456789")
    loop.turn()
    assert frames == []  # held while the socket buffer is full
    box.resume()
    loop.turn()
    assert frames == [b"0123456789"]
    box.pause()
    box.push(b"0123456789")
    box.push(b"0123456789x")  # piles up while paused: counted here
    assert overflows == [True]
