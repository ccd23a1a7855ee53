"""Publication tags filters: every comparison, every combination, every malformed tree."""

from __future__ import annotations

import pytest

from wsfleet.core.tags_filter import FilterError, FilterTooLarge, compile_filter
from wsfleet.protocol.messages import FilterNode

TAGS = {"ticker": "AAPL", "price": "101.5", "source": "NASDAQ", "empty": ""}


def leaf(key: str, cmp: str, val: str = "", vals: list[str] | None = None) -> FilterNode:
    return FilterNode(key=key, cmp=cmp, val=val, vals=vals)


def matches(node: FilterNode, tags: dict[str, str] | None = TAGS) -> bool:
    return compile_filter(node, max_nodes=32)(tags)


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (leaf("ticker", "eq", "AAPL"), True),
        (leaf("ticker", "eq", "MSFT"), False),
        (leaf("missing", "eq", "AAPL"), False),
        (leaf("ticker", "neq", "MSFT"), True),
        (leaf("ticker", "neq", "AAPL"), False),
        (leaf("missing", "neq", "AAPL"), True),
        (leaf("source", "in", vals=["NYSE", "NASDAQ"]), True),
        (leaf("source", "in", vals=["NYSE"]), False),
        (leaf("missing", "in", vals=["", "x"]), True),  # an absent tag counts as ""
        (leaf("source", "nin", vals=["NYSE"]), True),
        (leaf("source", "nin", vals=["NASDAQ"]), False),
        (leaf("missing", "nin", vals=[""]), False),
        (leaf("ticker", "ex"), True),
        (leaf("empty", "ex"), True),  # present though empty
        (leaf("missing", "ex"), False),
        (leaf("missing", "nex"), True),
        (leaf("ticker", "nex"), False),
        (leaf("source", "sw", "NAS"), True),
        (leaf("source", "sw", "DAQ"), False),
        (leaf("source", "ew", "DAQ"), True),
        (leaf("source", "ew", "NAS"), False),
        (leaf("source", "ct", "SDA"), True),
        (leaf("source", "ct", "XYZ"), False),
        (leaf("missing", "ct", "A"), False),
        (leaf("price", "gt", "100"), True),
        (leaf("price", "gt", "101.5"), False),
        (leaf("price", "gte", "101.50"), True),  # compared as numbers, not strings
        (leaf("price", "lt", "99"), False),
        (leaf("price", "lt", "1000"), True),  # "101.5" < "1000" as numbers, not as text
        (leaf("price", "lte", "101.5"), True),
        (leaf("price", "gt", "-5"), True),
        (leaf("ticker", "gt", "1"), False),  # not a number: never matches
        (leaf("missing", "lt", "1"), False),
    ],
)
def test_every_comparison(node: FilterNode, expected: bool) -> None:
    assert matches(node) is expected


def test_numbers_in_tags_must_be_plain_decimals() -> None:
    gt = leaf("n", "gt", "0")
    for text in ("1", "+1", "1.", ".5", "0001.250"):
        assert matches(gt, {"n": text}), text
    for text in ("1e3", "NaN", "Infinity", " 1", "1_000", "0x10", ""):
        assert not matches(gt, {"n": text}), text


def test_publications_without_tags() -> None:
    assert matches(leaf("a", "nex"), None)
    assert matches(leaf("a", "neq", "x"), {})
    assert not matches(leaf("a", "eq", "x"), None)
    assert not matches(leaf("a", "gt", "1"), None)


def test_and_or_not() -> None:
    aapl, cheap = leaf("ticker", "eq", "AAPL"), leaf("price", "lt", "50")
    assert not matches(FilterNode(op="and", nodes=[aapl, cheap]))
    assert matches(FilterNode(op="or", nodes=[aapl, cheap]))
    assert matches(FilterNode(op="not", nodes=[cheap]))
    nested = FilterNode(
        op="and",
        nodes=[aapl, FilterNode(op="not", nodes=[FilterNode(op="or", nodes=[cheap])])],
    )
    assert matches(nested)
    assert not matches(nested, {"ticker": "AAPL", "price": "10"})


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (FilterNode(op="xor", nodes=[leaf("a", "ex")]), "tf: unknown op 'xor'"),
        (FilterNode(op="and"), "tf: and needs at least one node"),
        (FilterNode(op="or", nodes=[]), "tf: or needs at least one node"),
        (FilterNode(op="not"), "tf: not needs exactly one node, got 0"),
        (FilterNode(op="not", nodes=[leaf("a", "ex")] * 2), "not needs exactly one node, got 2"),
        (leaf("a", ""), "tf: unknown cmp ''"),
        (leaf("a", "regex", "x"), "unknown cmp 'regex'; allowed: ct, eq, ew, ex, gt"),
        (leaf("a", "eq"), "tf: eq needs val"),
        (leaf("a", "eq", "x", ["y"]), "tf: eq takes val, not vals"),
        (leaf("a", "in"), "tf: in needs a non-empty vals"),
        (leaf("a", "nin", "x", ["y"]), "tf: nin takes vals, not val"),
        (leaf("a", "ex", "x"), "tf: ex takes neither val nor vals"),
        (leaf("", "eq", "x"), "tf: eq needs key"),
        (leaf("a", "gt", "ten"), "tf: gt needs a decimal number as val, got 'ten'"),
        (leaf("a", "lte", "1e3"), "lte needs a decimal number"),
        (FilterNode(key="a", cmp="ex", nodes=[leaf("b", "ex")]), "a leaf (empty op) has no nodes"),
        # The path names the offending node.
        (
            FilterNode(
                op="and", nodes=[leaf("a", "ex"), FilterNode(op="or", nodes=[leaf("b", "")])]
            ),
            "tf.nodes[1].nodes[0]: unknown cmp ''",
        ),
    ],
)
def test_malformed_filters_are_refused_with_where_and_why(node: FilterNode, message: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(node, max_nodes=32)
    assert message in str(info.value)
    assert not isinstance(info.value, FilterTooLarge)


def test_the_node_bound() -> None:
    wide = FilterNode(op="or", nodes=[leaf("a", "eq", str(i)) for i in range(31)])
    assert compile_filter(wide, max_nodes=32)({"a": "30"})  # 32 nodes: at the bound
    wider = FilterNode(op="or", nodes=[leaf("a", "eq", str(i)) for i in range(32)])
    with pytest.raises(FilterTooLarge, match="more than 32 nodes"):
        compile_filter(wider, max_nodes=32)


def test_a_deep_tree_is_refused_by_count_before_it_is_walked() -> None:
    node = leaf("a", "ex")
    for _ in range(100_000):  # far deeper than the interpreter's recursion limit
        node = FilterNode(op="not", nodes=[node])
    with pytest.raises(FilterTooLarge):
        compile_filter(node, max_nodes=64)
