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


def _enum_word(field: Any, number: int) -> str | None:
    enum = field.enum_type
    value = enum.values_by_number.get(number)
    if value is None or number == 0:
        return None
    prefix = (
        "".join("_" + c if c.isupper() and i else c for i, c in enumerate(enum.name)).upper() + "_"
    )
    return str(value.name).removeprefix(prefix).lower()


def _value(field: Any, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if isinstance(value, Timestamp):
            return value.ToDatetime().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return to_json(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _enum_word(field, value)
    return value


def to_json(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    field: Any
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out[field.name] = dict(sorted(value.items()))
        elif field.has_presence and field.type != FieldDescriptor.TYPE_MESSAGE:
            # proto3 `optional`: unset is null, not zero.
            out[field.name] = _value(field, value) if message.HasField(field.name) else None
        elif field.is_repeated:
            out[field.name] = [_value(field, v) for v in value]
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            out[field.name] = _value(field, value) if message.HasField(field.name) else None
        else:
            out[field.name] = _value(field, value)
    return out


def to_model(model: type[M], message: Message) -> M:
    """The answer model `model` of a protobuf message (validated: the answer is the schema)."""
    return model.model_validate(to_json(message))


def to_page(model: type[M], items: Iterable[Message], next_token: str = "") -> M:
    """A list answer (`Page[...]`) of protobuf messages; an empty token is the last page."""
    return model.model_validate(
        {"data": [to_json(x) for x in items], "next_cursor": next_token or None}
    )
