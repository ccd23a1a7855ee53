"""When a node sheds connections: the rules of wsfleet.core.rebalance, no clock, no I/O."""

from __future__ import annotations

from wsfleet.core.rebalance import NodeLoad, decide


def loads(*counts: int, limits: dict[int, int] | None = None) -> list[NodeLoad]:
    caps = limits or {}
    return [NodeLoad(f"n{i}", c, caps.get(i, 0)) for i, c in enumerate(counts)]


def test_after_a_scale_up_an_old_node_sheds_down_to_the_mean() -> None:
    fleet = loads(300, 300, 0, 0)
    d = decide("n0", fleet, tolerance=0.1, previous_total=600)
    assert (d.shed, d.floor, d.total) == (150, 150, 600)
    assert decide("n2", fleet, tolerance=0.1, previous_total=600).shed == 0


def test_within_the_tolerance_nothing_is_shed() -> None:
    assert decide("n0", loads(105, 95, 100), tolerance=0.1, previous_total=300).shed == 0
    assert decide("n0", loads(111, 90, 99), tolerance=0.1, previous_total=300).shed == 11


def test_a_node_short_of_its_share_makes_every_node_above_the_mean_shed() -> None:
    # Everyone else is just within +10%; the new node is 30% short.
    fleet = loads(82, 82, 82, 54)  # mean 75
    for own in ("n0", "n1", "n2"):
        d = decide(own, fleet, tolerance=0.1, previous_total=300)
        assert (d.shed, d.floor, d.why) == (7, 75, "another node is short"), own
    assert decide("n3", fleet, tolerance=0.1, previous_total=300).shed == 0
    # A node at the mean (rounded up) has nothing to give.
    assert decide("n0", loads(75, 90, 90, 45), tolerance=0.1, previous_total=300).shed == 0
    # Short by no more than the tolerance: nothing moves.
    assert decide("n0", loads(80, 80, 80, 70), tolerance=0.1, previous_total=310).shed == 0
    # A full node's low count is its cap, not a shortage.
    fleet = loads(82, 82, 82, 20, limits={3: 20})
    assert decide("n0", fleet, tolerance=0.1, previous_total=266).shed == 0


def test_a_fleet_still_filling_or_draining_is_left_alone() -> None:
    # Counts from different moments while clients arrive: no lasting imbalance.
    d = decide("n0", loads(66, 34, 20), tolerance=0.1, previous_total=60)
    assert d.shed == 0 and d.why == "the fleet is not settled" and d.total == 120
    assert decide("n0", loads(66, 34, 20), tolerance=0.1, previous_total=None).shed == 0
    # Settled: the total moved by no more than the tolerance.
    assert decide("n0", loads(66, 34, 20), tolerance=0.1, previous_total=115).shed == 26


def test_a_full_node_is_left_out_of_the_mean_and_never_sheds() -> None:
    # n0 is at its cap of 50; the others hold 125 each: even among the nodes that can take more.
    fleet = loads(50, 125, 125, limits={0: 50})
    assert decide("n1", fleet, tolerance=0.1, previous_total=300).shed == 0
    assert decide("n0", fleet, tolerance=0.1, previous_total=300).shed == 0
    # Below its cap a node counts again.
    fleet = loads(40, 130, 130, limits={0: 50})
    assert decide("n1", fleet, tolerance=0.1, previous_total=300).shed == 30


def test_alone_or_unlisted_a_node_never_sheds() -> None:
    assert decide("n0", loads(500), tolerance=0.0, previous_total=500).shed == 0
    assert decide("n0", [], tolerance=0.0, previous_total=0).shed == 0
    assert decide("zz", loads(500, 0), tolerance=0.0, previous_total=500).shed == 0
    # The only other node is full: nobody to shed to.
    assert decide("n0", loads(500, 10, limits={1: 10}), tolerance=0.0, previous_total=510).shed == 0


def test_the_mean_is_rounded_up_so_a_node_never_goes_below_it() -> None:
    d = decide("n0", loads(7, 0), tolerance=0.0, previous_total=7)
    assert (d.shed, d.floor) == (3, 4)


def test_while_a_node_starts_or_drains_nothing_is_shed() -> None:
    d = decide("n0", loads(300, 0), tolerance=0.1, previous_total=300, changing=True)
    assert (d.shed, d.why) == (0, "a node is starting or draining")
