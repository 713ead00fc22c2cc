"""The public JSON walk (`pos_gateway.convert.to_json`) against the rules it implements, on every
message type of the protos, filled in every field."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from pos_gateway.convert import to_json

MODULES = [
    f"pos.{service}.v1.{name}_pb2"
    for service, names in {
        "order": ["order", "events"],
        "payment": ["payment", "events", "gift_cards", "settlement"],
        "inventory": ["inventory", "stock", "events", "stock_events"],
        "customer": ["customer", "loyalty", "events"],
        "promotion": ["promotion", "events"],
        "dispatcher": ["dispatcher"],
    }.items()
    for name in names
]


def _types() -> list[Any]:
    found = []
    for module in MODULES:
        try:
            descriptor = importlib.import_module(module).DESCRIPTOR
        except ModuleNotFoundError:
            continue
        found += descriptor.message_types_by_name.values()
    return found


def _words(enum: Any, number: int) -> str | None:
    """The rule: the value's name without the enum's prefix, lower case; zero is null."""
    value = enum.values_by_number.get(number)
    if value is None or number == 0:
        return None
    prefix = "".join("_" + c if c.isupper() and i else c for i, c in enumerate(enum.name))
    return str(value.name).removeprefix(prefix.upper() + "_").lower()


def reference(message: Message) -> dict[str, Any]:
    """The rules, field by field, looked up on every value (as the walk once did)."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)

        def one(v: Any, field: Any = field) -> Any:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                if isinstance(v, Timestamp):
                    return v.ToDatetime().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
                return reference(v)
            if field.type == FieldDescriptor.TYPE_ENUM:
                return _words(field.enum_type, v)
            return v

        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out[field.name] = dict(sorted(value.items()))
        elif field.has_presence and field.type != FieldDescriptor.TYPE_MESSAGE:
            out[field.name] = one(value) if message.HasField(field.name) else None
        elif field.is_repeated:
            out[field.name] = [one(v) for v in value]
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            out[field.name] = one(value) if message.HasField(field.name) else None
        else:
            out[field.name] = one(value)
    return out


def _scalar(field: Any, n: int) -> Any:
    if field.type == FieldDescriptor.TYPE_STRING:
        return f"{field.name}-{n}"
    if field.type == FieldDescriptor.TYPE_BYTES:
        return f"{field.name}-{n}".encode()
    if field.type == FieldDescriptor.TYPE_BOOL:
        return True
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return 1.5 + n
    if field.type == FieldDescriptor.TYPE_ENUM:
        numbers = sorted(field.enum_type.values_by_number)
        return numbers[(n + 1) % len(numbers)]
    return 7 + n


def fill(message: Message, depth: int = 0, skip: str = "") -> Message:
    """Every field set (the one named `skip` left unset), two values in lists and maps."""
    for field in message.DESCRIPTOR.fields:
        if field.name == skip or (field.containing_oneof and depth > 0):
            continue
        target = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            for n in range(2):
                key = _scalar(key_field, n)
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    if depth < 3:
                        fill(target[key], depth + 1)
                else:
                    target[key] = _scalar(value_field, n)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.full_name == Timestamp.DESCRIPTOR.full_name:
                stamps = [Timestamp(seconds=1_780_000_000 + n, nanos=123_000_000) for n in (0, 1)]
                if field.is_repeated:
                    target.extend(stamps)
                else:
                    target.CopyFrom(stamps[0])
            elif depth < 3:
                if field.is_repeated:
                    for _ in range(2):
                        fill(target.add(), depth + 1)
                else:
                    fill(target, depth + 1)
                    target.SetInParent()
        elif field.is_repeated:
            target.extend([_scalar(field, 0), _scalar(field, 1)])
        else:
            setattr(message, field.name, _scalar(field, 0))
    return message


TYPES = _types()


def test_the_protos_were_found() -> None:
    assert len(TYPES) > 50


@pytest.mark.parametrize("descriptor", TYPES, ids=lambda d: d.full_name)
def test_every_message_type_becomes_the_json_the_rules_give(descriptor: Any) -> None:
    cls = importlib.import_module(descriptor.file.name.replace("/", ".")[:-6] + "_pb2")
    message_type = getattr(cls, descriptor.name)
    empty = message_type()
    assert to_json(empty) == reference(empty)
    full = fill(message_type())
    assert to_json(full) == reference(full)
    # With each field left unset in turn: nulls and zeros where the rules say.
    for field in descriptor.fields:
        partial = fill(message_type(), skip=field.name)
        assert to_json(partial) == reference(partial), field.name
