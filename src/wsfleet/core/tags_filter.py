"""Publication tags filters: check a subscriber's filter once, then match it fast.

A client may subscribe with a filter over publication tags (the subscribe
request's ``tf``, where its namespace has ``allow_tags_filter``); the node then
delivers only the publications whose tags match. The filter is a tree of
:class:`~wsfleet.protocol.messages.FilterNode`: leaves compare one tag, branches
combine their children with and, or and not. The semantics are the protocol's:

======  ===========================================  ==================
cmp     matches when                                 operand
======  ===========================================  ==================
eq      the tag is present and equals ``val``        ``val``
neq     the tag is absent or differs from ``val``    ``val``
in      the tag's value (``""`` if absent) is one    ``vals``
        of ``vals``
nin     the tag's value (``""`` if absent) is none   ``vals``
        of ``vals``
ex      the tag is present                           none
nex     the tag is absent                            none
sw/ew   the tag is present and starts/ends with      ``val``
        ``val``
ct      the tag is present and contains ``val``      ``val``
gt/gte  the tag is present, a decimal number, and    ``val``, a decimal
lt/lte  compares so with ``val``                     number
======  ===========================================  ==================

:func:`compile_filter` checks a filter when the client subscribes (a bad one is
the client's error, named in the close reason) and turns it into nested
closures, so that matching, which runs once per publication and filtered
subscriber, is a few dictionary lookups with no tree walk and no checks left.
Unlike the protocol's reference behaviour, a numeric comparison whose ``val`` is
not a number is refused at subscribe time rather than never matching: it can
only be a client's mistake. Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal

from wsfleet.protocol.messages import FilterNode

TagsFilter = Callable[[Mapping[str, str] | None], bool]
"""A compiled filter: whether a publication with these tags (None: none) is delivered."""

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
"""Plain decimal notation: no exponent, no NaN or infinity, no spaces."""

_VALUE_CMPS = frozenset({"eq", "neq", "sw", "ew", "ct", "gt", "gte", "lt", "lte"})
_SET_CMPS = frozenset({"in", "nin"})
_PRESENCE_CMPS = frozenset({"ex", "nex"})
_NUMERIC_CMPS = frozenset({"gt", "gte", "lt", "lte"})


class FilterError(ValueError):
    """The filter is malformed; the message says where and why."""


class FilterTooLarge(FilterError):
    """The filter has more nodes than allowed."""


def compile_filter(node: FilterNode, *, max_nodes: int) -> TagsFilter:
    """Check ``node`` and return its matcher.

    ``max_nodes``: most nodes (leaves and branches) the tree may have, which
    bounds the work per publication and subscriber. Raises :class:`FilterError`
    (:class:`FilterTooLarge` over the bound).
    """
    count = _count_nodes(node, max_nodes)
    if count > max_nodes:
        raise FilterTooLarge(f"more than {max_nodes} nodes (client.tags_filter_max_nodes)")
    return _compile(node, "tf")


def _count_nodes(root: FilterNode, stop_after: int) -> int:
    # Iterative, and stopping early: a hostile tree must not cost more than the bound.
    count, stack = 0, [root]
    while stack and count <= stop_after:
        node = stack.pop()
        count += 1
        stack.extend(node.nodes or ())
    return count


def _compile(node: FilterNode, path: str) -> TagsFilter:
    if node.op == "":
        return _leaf(node, path)
    children = node.nodes or []
    if node.op in ("and", "or"):
        if not children:
            raise FilterError(f"{path}: {node.op} needs at least one node")
        return _branch(node.op, children, path)
    if node.op == "not":
        if len(children) != 1:
            raise FilterError(f"{path}: not needs exactly one node, got {len(children)}")
        inner = _compile(children[0], f"{path}.nodes[0]")
        return lambda tags: not inner(tags)
    raise FilterError(f"{path}: unknown op {node.op!r}; allowed: and, or, not, empty (a leaf)")


def _branch(op: str, children: list[FilterNode], path: str) -> TagsFilter:
    matchers = tuple(_compile(child, f"{path}.nodes[{i}]") for i, child in enumerate(children))
    if op == "and":
        return lambda tags: all(match(tags) for match in matchers)
    return lambda tags: any(match(tags) for match in matchers)


def _leaf(node: FilterNode, path: str) -> TagsFilter:
    cmp, key, val, vals = node.cmp, node.key, node.val, node.vals or []
    if node.nodes:
        raise FilterError(f"{path}: a leaf (empty op) has no nodes")
    if cmp in _VALUE_CMPS:
        if not val:
            raise FilterError(f"{path}: {cmp} needs val")
        if vals:
            raise FilterError(f"{path}: {cmp} takes val, not vals")
    elif cmp in _SET_CMPS:
        if not vals:
            raise FilterError(f"{path}: {cmp} needs a non-empty vals")
        if val:
            raise FilterError(f"{path}: {cmp} takes vals, not val")
    elif cmp in _PRESENCE_CMPS:
        if val or vals:
            raise FilterError(f"{path}: {cmp} takes neither val nor vals")
    else:
        allowed = ", ".join(sorted(_VALUE_CMPS | _SET_CMPS | _PRESENCE_CMPS))
        raise FilterError(f"{path}: unknown cmp {cmp!r}; allowed: {allowed}")
    if not key and cmp not in _PRESENCE_CMPS:
        raise FilterError(f"{path}: {cmp} needs key")
    if cmp in _NUMERIC_CMPS:
        if not _NUMBER.fullmatch(val):
            raise FilterError(f"{path}: {cmp} needs a decimal number as val, got {val!r}")
        return _numeric(cmp, key, Decimal(val))
    return _textual(cmp, key, val, frozenset(vals))


def _textual(cmp: str, key: str, val: str, vals: frozenset[str]) -> TagsFilter:
    def get(tags: Mapping[str, str] | None) -> str | None:
        return tags.get(key) if tags else None

    if cmp == "eq":
        return lambda tags: get(tags) == val
    if cmp == "neq":
        return lambda tags: get(tags) != val
    if cmp == "in":
        return lambda tags: (get(tags) or "") in vals
    if cmp == "nin":
        return lambda tags: (get(tags) or "") not in vals
    if cmp == "ex":
        return lambda tags: get(tags) is not None
    if cmp == "nex":
        return lambda tags: get(tags) is None
    if cmp == "sw":
        return lambda tags: (tag := get(tags)) is not None and tag.startswith(val)
    if cmp == "ew":
        return lambda tags: (tag := get(tags)) is not None and tag.endswith(val)
    return lambda tags: (tag := get(tags)) is not None and val in tag  # ct


def _numeric(cmp: str, key: str, bound: Decimal) -> TagsFilter:
    compare: Callable[[Decimal], bool] = {
        "gt": bound.__lt__,  # tag > bound  <=>  bound < tag
        "gte": bound.__le__,
        "lt": bound.__gt__,
        "lte": bound.__ge__,
    }[cmp]

    def match(tags: Mapping[str, str] | None) -> bool:
        tag = tags.get(key) if tags else None
        # A tag that is not a plain decimal number never matches a numeric comparison.
        return tag is not None and _NUMBER.fullmatch(tag) is not None and compare(Decimal(tag))

    return match
