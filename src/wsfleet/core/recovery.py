"""Rules for recovering a subscription from history: all or nothing.

A client that resubscribes with the position it last saw (offset and epoch)
gets every publication it missed, or is told ``recovered: false`` and gets
none. A partial recovery would let it believe it is complete while it is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wsfleet.protocol.messages import Publication, StreamPosition


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a subscribe reply says about recovery."""

    recovered: bool
    publications: list[Publication] = field(default_factory=list)


def recover(
    since: StreamPosition,
    top: StreamPosition,
    kept: list[Publication],
    *,
    max_publications: int,
) -> Recovery:
    """Decide recovery from ``since`` given the stream's ``top`` and the ``kept`` publications.

    ``kept`` are the publications the broker returned for "after ``since``", oldest
    first (possibly fewer than were published, when history was trimmed).
    ``max_publications`` bounds a recovery; a larger gap is not recovered.
    """
    if since.epoch != top.epoch or since.offset > top.offset:
        return Recovery(recovered=False)
    missed = top.offset - since.offset
    if missed == 0:
        return Recovery(recovered=True)
    if missed > max_publications:
        return Recovery(recovered=False)
    after = [p for p in kept if since.offset < p.offset <= top.offset]
    # Complete only if every offset since.offset+1 .. top.offset is there, in order.
    if len(after) != missed or any(p.offset != since.offset + i + 1 for i, p in enumerate(after)):
        return Recovery(recovered=False)
    return Recovery(recovered=True, publications=after)
