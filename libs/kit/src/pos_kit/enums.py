"""Domain enums <-> protobuf enums, by name, checked when the mapping is built.

`ProtoEnum(PaymentStatus, payment_pb2.PaymentStatus)` pairs `PaymentStatus.CAPTURED` with
`PAYMENT_STATUS_CAPTURED` (the proto enum's name in upper snake case is the value prefix, as
buf's lint rules require). A domain member with no proto value fails at import, so a service
never starts with a state it cannot send.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import TYPE_CHECKING, Generic, TypeVar

from pos_kit.errors import FieldViolation, InvalidArgument

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

E = TypeVar("E", bound=Enum)
# The proto enum's own value type (`OrderStatus.ValueType`, a NewType of int): what generated
# message constructors take, so a mapped value is passed with no cast at the call site.
V = TypeVar("V", bound=int)


def _upper_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


class ProtoEnum(Generic[E, V]):
    def __init__(
        self, domain: type[E], proto: _EnumTypeWrapper[V], *, prefix: str | None = None
    ) -> None:
        self.domain = domain
        self.prefix = prefix or _upper_snake(proto.DESCRIPTOR.name) + "_"
        values: dict[str, V] = dict(proto.items())
        self._to: dict[E, V] = {}
        for member in domain:
            number = values.get(self.prefix + member.name)
            if number is None:
                raise LookupError(f"{proto.DESCRIPTOR.full_name} has no {self.prefix}{member.name}")
            self._to[member] = number
        self._from: dict[int, E] = {number: member for member, number in self._to.items()}

    def to_proto(self, value: E) -> V:
        return self._to[value]

    def from_proto(self, number: int, field: str) -> E:
        """The domain value of a required enum field; unspecified or unknown is refused."""
        value = self._from.get(number)
        if value is None:
            names = ", ".join(m.name.lower() for m in self.domain)
            raise InvalidArgument(
                f"{field} is not valid", [FieldViolation(field, f"must be one of: {names}")]
            )
        return value

    def optional(self, number: int, field: str) -> E | None:
        """For a filter: unspecified (0) means none; an unknown value is refused."""
        return None if number == 0 else self.from_proto(number, field)
