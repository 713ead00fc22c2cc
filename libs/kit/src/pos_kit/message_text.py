"""Every string a gRPC request carries, held to the text rules before any handler sees it.

The gateway checks its REST input the same way, but the services are reachable over gRPC
too (other services, tools, a partner inside the cluster), so each one checks for itself: a
request with NUL or a card number in any string field, at any depth, is INVALID_ARGUMENT with a
field violation per value, and nothing of it is stored, logged or published.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from pos_kit.errors import FieldViolation, InvalidArgument
from pos_kit.text import CARD_NUMBER_NOT_ALLOWED, CARD_NUMBER_REASON, text_problem

_STRING = FieldDescriptor.TYPE_STRING
_MESSAGE = FieldDescriptor.TYPE_MESSAGE


def _map_entry(field: FieldDescriptor) -> Descriptor | None:
    entry = field.message_type if field.type == _MESSAGE else None
    return entry if entry is not None and entry.GetOptions().map_entry else None


def _strings(message: Message, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(path, value) of every string set in `message`: `lines[0].sku`, `variants[1].options`.
    A map's entries are named by the map alone: a key may be the very value being refused."""
    for field, value in message.ListFields():
        path = prefix + field.name
        entry = _map_entry(field)
        if entry is not None:
            key_field, value_field = entry.fields_by_name.values()
            for key, item in value.items():
                if key_field.type == _STRING:
                    yield path, key
                yield from _one(value_field, path, item)
        elif field.is_repeated:
            for i, item in enumerate(value):
                yield from _one(field, f"{path}[{i}]", item)
        else:
            yield from _one(field, path, value)


def _one(field: FieldDescriptor, path: str, value: Any) -> Iterator[tuple[str, str]]:
    if field.type == _STRING:
        yield path, value
    elif field.type == _MESSAGE:
        yield from _strings(value, path + ".")


def text_violations(message: Message) -> list[FieldViolation]:
    return [
        FieldViolation(path, reason)
        for path, value in _strings(message)
        if (reason := text_problem(path, value)) is not None
    ]


def check_request(message: Message) -> None:
    """Raise InvalidArgument naming every string of `message` the text rules refuse."""
    violations = text_violations(message)
    if not violations:
        return
    if any(v.description == CARD_NUMBER_REASON for v in violations):
        raise InvalidArgument(
            "card numbers are never accepted", violations, code=CARD_NUMBER_NOT_ALLOWED
        )
    raise InvalidArgument("the request is not valid", violations)
