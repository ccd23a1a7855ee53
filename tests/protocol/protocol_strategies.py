"""Hypothesis strategies for every message of the client protocol.

Strategies are derived from the structs' annotations, with integer ranges taken
from the SDK's own Protobuf descriptors (uint32, uint64, int32, int64), narrowed
by the structs' own bounds, so a generated message is always encodable and
decodable by both codecs. Maps and lists are either
absent or non-empty, and payloads are either absent or a valid JSON value: the
two forms every codec can carry without loss.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec
from centrifuge.protocol import client_pb2 as sdk_pb2
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import strategies as st

from wsfleet.protocol.messages import EMPTY, Command, Reply

_INT_RANGES = {
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
}

# Surrogates cannot be encoded as UTF-8, so no client can send them.
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=8,
)

payloads = st.just(EMPTY) | json_values.map(lambda value: msgspec.Raw(msgspec.json.encode(value)))


def _field_strategy(
    kind: msgspec.inspect.Type, descriptor: FieldDescriptor
) -> st.SearchStrategy[Any]:
    if isinstance(kind, msgspec.inspect.UnionType):
        (inner,) = (t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType))
        return st.none() | _field_strategy(inner, descriptor)
    if isinstance(kind, msgspec.inspect.StrType):
        return text
    if isinstance(kind, msgspec.inspect.BoolType):
        return st.booleans()
    if isinstance(kind, msgspec.inspect.IntType):
        low, high = _INT_RANGES[descriptor.type]
        # The struct may bound the wire type further (offsets stop at 2**63 - 1).
        low = low if kind.ge is None else max(low, kind.ge)
        high = high if kind.le is None else min(high, kind.le)
        return st.integers(low, high) | st.just(0)
    if isinstance(kind, msgspec.inspect.RawType):
        return payloads
    if isinstance(kind, msgspec.inspect.StructType):
        return st.deferred(lambda: messages(kind.cls))
    if isinstance(kind, msgspec.inspect.DictType):
        value_field = descriptor.message_type.fields_by_name["value"]
        values = _field_strategy(kind.value_type, value_field)
        return st.dictionaries(text, values, min_size=1, max_size=2)
    if isinstance(kind, msgspec.inspect.ListType):
        return st.lists(_field_strategy(kind.item_type, descriptor), min_size=1, max_size=2)
    raise TypeError(kind)


@cache
def messages(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Arbitrary instances of a message struct."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    descriptor = getattr(sdk_pb2, cls.__name__).DESCRIPTOR
    fields = {
        field.name: _field_strategy(field.type, descriptor.fields_by_name[field.name])
        for field in info.fields
    }
    return st.builds(cls, **fields)


commands: st.SearchStrategy[Command] = messages(Command)
replies: st.SearchStrategy[Reply] = messages(Reply)


def raw_payloads(value: object) -> list[msgspec.Raw]:
    """Every Raw inside a decoded message, however deeply nested."""
    found: list[msgspec.Raw] = []
    if isinstance(value, msgspec.Raw):
        found.append(value)
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            found += raw_payloads(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            found += raw_payloads(item)
    elif isinstance(value, list):
        for item in value:
            found += raw_payloads(item)
    return found
