"""What erasing a customer blanks in a message, read from the contracts.

A field marked `[(pos.common.v1.personal) = true]` in a proto holds a person's data (an order's
notes and metadata, a fulfilment's `ship_to` and `destination`). Every place that keeps a copy
of such a message blanks it through here: the order service's unpublished outbox rows, the
customer service's pass over the NATS streams and their dead letters, and the partner feed's
stored JSON. One mark in the proto, so a personal field added later is blanked everywhere.
"""

from __future__ import annotations

from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from pos.common.v1 import personal_pb2

# Per message type: its fields marked personal, and its message fields whose type holds one
# somewhere below (only those are walked).
_Plan = tuple[tuple[FieldDescriptor, ...], tuple[tuple[FieldDescriptor, Descriptor], ...]]
_PLANS: dict[str, _Plan] = {}


def _is_map(field: FieldDescriptor) -> bool:
    kind = field.message_type
    return kind is not None and kind.GetOptions().map_entry


def _plan(descriptor: Descriptor, visiting: frozenset[str] = frozenset()) -> _Plan:
    known = _PLANS.get(descriptor.full_name)
    if known is not None:
        return known
    marked: list[FieldDescriptor] = []
    below: list[tuple[FieldDescriptor, Descriptor]] = []
    for field in descriptor.fields:
        if field.GetOptions().Extensions[personal_pb2.personal]:
            marked.append(field)
            continue
        kind = field.message_type
        if kind is None or _is_map(field) or kind.full_name in visiting:
            continue  # a recursive type is walked where it first appears
        if holds_personal_fields(kind, visiting | {descriptor.full_name}):
            below.append((field, kind))
    plan = (tuple(marked), tuple(below))
    if not visiting:
        _PLANS[descriptor.full_name] = plan
    return plan


def holds_personal_fields(descriptor: Descriptor, visiting: frozenset[str] = frozenset()) -> bool:
    """Whether a message of this type can hold a personal field, at any depth."""
    marked, below = _plan(descriptor, visiting)
    return bool(marked or below)


def personal_fields(descriptor: Descriptor) -> list[str]:
    """The dotted paths of the personal fields of this type (`fulfillments.ship_to`, ...)."""
    marked, below = _plan(descriptor)
    paths = [field.name for field in marked]
    for field, kind in below:
        paths += [f"{field.name}.{p}" for p in personal_fields(kind)]
    return paths


def _holds(message: Message, field: FieldDescriptor) -> bool:
    if field.is_repeated:
        return len(getattr(message, field.name)) > 0
    if field.has_presence:
        return message.HasField(field.name)
    return bool(getattr(message, field.name))


def blank(message: Message) -> bool:
    """Clear every personal field of `message` in place, at any depth; whether any held
    something (so a caller rewrites a copy only when it changed)."""
    marked, below = _plan(cast(Descriptor, message.DESCRIPTOR))
    changed = False
    for field in marked:
        if _holds(message, field):
            message.ClearField(field.name)
            changed = True
    for field, _ in below:
        if field.is_repeated:
            for item in getattr(message, field.name):
                changed = blank(item) or changed
        elif message.HasField(field.name):
            changed = blank(getattr(message, field.name)) or changed
    return changed


def _empty(field: FieldDescriptor) -> Any:
    """The JSON a blanked field reads as: what the public conversion writes for it unset."""
    if _is_map(field):
        return {}
    if field.is_repeated:
        return []
    if field.message_type is not None or field.has_presence:
        return None
    if field.type == FieldDescriptor.TYPE_STRING:
        return ""
    if field.type == FieldDescriptor.TYPE_BOOL:
        return False
    return 0


def blank_json(data: dict[str, Any], descriptor: Descriptor) -> bool:
    """The same on a message's public JSON form (the gateway's answer for it, whose names are
    the proto's): each personal field present is set to what it reads as unset; whether any
    held something else. A field the JSON does not carry (an older snapshot) is left out."""
    marked, below = _plan(descriptor)
    changed = False
    for field in marked:
        if field.name in data and data[field.name] != _empty(field):
            data[field.name] = _empty(field)
            changed = True
    for field, kind in below:
        value = data.get(field.name)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict):
                changed = blank_json(item, kind) or changed
    return changed
