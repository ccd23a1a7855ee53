from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wsfleet.core.recovery import recover
from wsfleet.protocol.messages import Publication, StreamPosition


def pubs(*offsets: int) -> list[Publication]:
    return [Publication(offset=o) for o in offsets]


def test_complete_gap_is_recovered() -> None:
    r = recover(StreamPosition(2, "e"), StreamPosition(5, "e"), pubs(3, 4, 5), max_publications=10)
    assert r.recovered and [p.offset for p in r.publications] == [3, 4, 5]


def test_nothing_missed_is_recovered_with_no_publications() -> None:
    r = recover(StreamPosition(5, "e"), StreamPosition(5, "e"), [], max_publications=10)
    assert r.recovered and r.publications == []


def test_other_epoch_is_never_recovered() -> None:
    r = recover(
        StreamPosition(2, "old"), StreamPosition(5, "new"), pubs(3, 4, 5), max_publications=10
    )
    assert not r.recovered and r.publications == []


def test_trimmed_history_gives_no_partial_recovery() -> None:
    r = recover(StreamPosition(1, "e"), StreamPosition(5, "e"), pubs(3, 4, 5), max_publications=10)
    assert not r.recovered and r.publications == []


def test_gap_larger_than_the_limit_is_not_recovered() -> None:
    r = recover(
        StreamPosition(0, "e"), StreamPosition(5, "e"), pubs(1, 2, 3, 4, 5), max_publications=4
    )
    assert not r.recovered


def test_position_ahead_of_the_stream_is_not_recovered() -> None:
    r = recover(StreamPosition(9, "e"), StreamPosition(5, "e"), [], max_publications=10)
    assert not r.recovered


@given(
    since=st.integers(0, 30),
    top=st.integers(0, 30),
    kept=st.sets(st.integers(1, 30)),
    limit=st.integers(1, 40),
)
def test_recovery_is_all_or_nothing(since: int, top: int, kept: set[int], limit: int) -> None:
    r = recover(
        StreamPosition(since, "e"),
        StreamPosition(top, "e"),
        pubs(*sorted(o for o in kept if o <= top)),
        max_publications=limit,
    )
    if r.recovered:
        assert [p.offset for p in r.publications] == list(range(since + 1, top + 1))
    else:
        assert r.publications == []
