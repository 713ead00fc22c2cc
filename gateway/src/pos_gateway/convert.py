"""Protobuf messages -> the public JSON shape.

One generic walk so every resource looks alike: integers stay integers (protobuf's JSON mapping
would quote int64 amounts), enums become lower-case words without their prefix, timestamps are
RFC 3339 in UTC.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


# How each field of a message type becomes JSON, worked out once per type: the walk below runs
# for every answer and every event the partner feed stores, and looking the descriptors up
# (options, enum prefixes) on every value cost more than the walk itself.
_MAP, _OPTIONAL, _REPEATED, _SINGULAR_MESSAGE, _PLAIN = range(5)
_SCALAR, _ENUM, _TIMESTAMP, _MESSAGE = range(4)
_Plan = tuple[tuple[str, int, int, dict[int, str | None] | None], ...]
_PLANS: dict[str, _Plan] = {}


def _enum_word(field: Any, number: int) -> str | None:
    enum = field.enum_type
    value = enum.values_by_number.get(number)
    if value is None or number == 0:
        return None
    prefix = (
        "".join("_" + c if c.isupper() and i else c for i, c in enumerate(enum.name)).upper() + "_"
    )
    return str(value.name).removeprefix(prefix).lower()


def _plan(descriptor: Any) -> _Plan:
    plan = []
    for field in descriptor.fields:
        words = None
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            is_time = field.message_type.full_name == Timestamp.DESCRIPTOR.full_name
            value_kind = _TIMESTAMP if is_time else _MESSAGE
        elif field.type == FieldDescriptor.TYPE_ENUM:
            value_kind = _ENUM
            words = {n: _enum_word(field, n) for n in field.enum_type.values_by_number}
        else:
            value_kind = _SCALAR
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            shape = _MAP
        elif field.has_presence and field.type != FieldDescriptor.TYPE_MESSAGE:
            shape = _OPTIONAL  # proto3 `optional`: unset is null, not zero.
        elif field.is_repeated:
            shape = _REPEATED
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            shape = _SINGULAR_MESSAGE
        else:
            shape = _PLAIN
        plan.append((field.name, shape, value_kind, words))
    return tuple(plan)


def _value(kind: int, words: dict[int, str | None] | None, value: Any) -> Any:
    if kind == _SCALAR:
        return value
    if kind == _ENUM:
        assert words is not None
        return words.get(value)  # a number this build does not know is null, like zero
    if kind == _TIMESTAMP:
        # The year by hand: strftime's %Y writes year 999 as "999", which is no RFC 3339.
        at = value.ToDatetime()
        return f"{at.year:04d}" + at.strftime("-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return to_json(value)


def to_json(message: Message) -> dict[str, Any]:
    descriptor = message.DESCRIPTOR
    plan = _PLANS.get(descriptor.full_name)
    if plan is None:
        plan = _PLANS[descriptor.full_name] = _plan(descriptor)
    out: dict[str, Any] = {}
    for name, shape, kind, words in plan:
        value = getattr(message, name)
        if shape == _PLAIN:
            out[name] = value if kind == _SCALAR else _value(kind, words, value)
        elif shape == _REPEATED:
            out[name] = [_value(kind, words, v) for v in value]
        elif shape == _MAP:
            out[name] = dict(sorted(value.items()))
        else:  # optional scalars and singular messages: null when unset
            out[name] = _value(kind, words, value) if message.HasField(name) else None
    return out


def to_model(model: type[M], message: Message) -> M:
    """The answer model `model` of a protobuf message (validated: the answer is the schema)."""
    return model.model_validate(to_json(message))


def to_page(model: type[M], items: Iterable[Message], next_token: str = "") -> M:
    """A list answer (`Page[...]`) of protobuf messages; an empty token is the last page."""
    return model.model_validate(
        {"data": [to_json(x) for x in items], "next_cursor": next_token or None}
    )
