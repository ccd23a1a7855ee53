"""A connection's bounded, coalescing queue of encoded replies.

Why it exists: on fan-out the per-write system call dominates the cost, so
everything queued for one connection during an event-loop turn leaves as one
WebSocket frame (the JSON protocol joins replies with newlines; the Protobuf
protocol concatenates length-prefixed messages) in one write. And a client
that reads slower than it is written to must not make the node buffer without
bound: past ``max_bytes`` queued, the connection is a slow consumer and is
closed; it recovers from history when it comes back.

The outbox never writes while the transport has asked to pause (its kernel
buffer is full), so bytes pile up here, where they are counted.
"""

from __future__ import annotations

from collections.abc import Callable

from wsfleet.core.stats import NodeStats


class Outbox:
    """Queue bytes with :meth:`push`; they are sent on the next loop turn.

    send: writes one frame to the transport.
    separator: what joins replies inside one frame.
    max_bytes: queued bytes above which ``on_overflow`` is called once and the
        outbox stops accepting.
    max_frame_bytes: frames are cut near this size (a single larger reply
        still goes out whole).
    call_soon: schedules the flush (the event loop's ``call_soon``).
    """

    __slots__ = (
        "_call_soon",
        "_closed",
        "_items",
        "_max_bytes",
        "_max_frame",
        "_on_overflow",
        "_paused",
        "_scheduled",
        "_send",
        "_separator",
        "_size",
        "_stats",
    )

    def __init__(
        self,
        *,
        send: Callable[[bytes], None],
        separator: bytes,
        max_bytes: int,
        max_frame_bytes: int,
        on_overflow: Callable[[], None],
        call_soon: Callable[[Callable[[], None]], object],
        stats: NodeStats,
    ) -> None:
        self._send = send
        self._separator = separator
        self._max_bytes = max_bytes
        self._max_frame = max_frame_bytes
        self._on_overflow = on_overflow
        self._call_soon = call_soon
        self._stats = stats
        self._items: list[bytes] = []
        self._size = 0
        self._scheduled = False
        self._paused = False
        self._closed = False

    @property
    def queued_bytes(self) -> int:
        return self._size

    def push(self, item: bytes) -> bool:
        """Queue one encoded reply; False when the outbox is closed or just overflowed."""
        if self._closed:
            return False
        self._items.append(item)
        self._size += len(item)
        if self._size > self._max_bytes:
            self._closed = True
            self._items.clear()
            self._size = 0
            self._stats.outbox_overflows += 1
            self._on_overflow()
            return False
        if not self._scheduled and not self._paused:
            self._scheduled = True
            self._call_soon(self.flush)
        return True

    def flush(self) -> None:
        """Send everything queued, coalesced into as few frames as the size cap allows."""
        self._scheduled = False
        if self._paused or self._closed or not self._items:
            return
        items = self._items
        self._items = []
        self._size = 0
        stats = self._stats
        stats.messages_out += len(items)
        sep = self._separator
        if len(items) == 1:
            self._write(items[0])
            return
        batch: list[bytes] = []
        batch_size = 0
        for item in items:
            if batch and batch_size + len(item) > self._max_frame:
                self._write(sep.join(batch))
                batch = []
                batch_size = 0
            batch.append(item)
            batch_size += len(item) + len(sep)
        self._write(sep.join(batch))

    def _write(self, frame: bytes) -> None:
        self._stats.frames_out += 1
        self._stats.bytes_out += len(frame)
        self._send(frame)

    def pause(self) -> None:
        """The transport's buffer is full: hold writes (and count what piles up)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        if self._items and not self._scheduled and not self._closed:
            self._scheduled = True
            self._call_soon(self.flush)

    def close(self) -> None:
        """Drop what is queued and accept nothing more."""
        self._closed = True
        self._items.clear()
        self._size = 0
