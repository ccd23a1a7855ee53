"""Delta-compressed payloads for subscribers that negotiated ``fossil`` deltas.

A delta subscriber gets each publication either whole or as a Fossil delta
against the previous publication it received. On JSON connections these
payloads travel as JSON strings (the delta is text-safe only inside one), so
even a whole payload is wrapped in a string for such a subscriber.
"""

from __future__ import annotations

import msgspec

from wsfleet.protocol.fossil import create_delta
from wsfleet.protocol.messages import Publication, raw


def wire_payload(payload: bytes, *, binary: bool) -> msgspec.Raw:
    """The payload as a delta subscriber's connection carries it."""
    if binary:
        return raw(payload)
    return raw(msgspec.json.encode(payload.decode("utf-8", "replace")))


def delta_or_full(base: bytes, payload: bytes) -> tuple[bytes, bool]:
    """A delta from ``base`` to ``payload`` when it is smaller, else ``payload`` itself."""
    patch = create_delta(base, payload)
    if len(patch) < len(payload):
        return patch, True
    return payload, False


def recovered_with_deltas(pubs: list[Publication], *, binary: bool) -> list[Publication]:
    """Recovered publications for a delta subscriber: the first whole, then deltas."""
    out: list[Publication] = []
    prev: bytes | None = None
    for pub in pubs:
        payload = bytes(pub.data)
        data, is_delta = (payload, False) if prev is None else delta_or_full(prev, payload)
        out.append(
            msgspec.structs.replace(pub, data=wire_payload(data, binary=binary), delta=is_delta)
        )
        prev = payload
    return out
