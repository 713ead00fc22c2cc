"""Money <-> pos.common.v1.Money, with a field-level error for bad input."""

from __future__ import annotations

from pos.common.v1 import money_pb2
from pos_kit.errors import FieldViolation, InvalidArgument
from pos_kit.money import Money, MoneyError


def to_proto(m: Money) -> money_pb2.Money:
    return money_pb2.Money(amount=m.amount, currency=m.currency)


def from_proto(field: str, value: money_pb2.Money) -> Money:
    try:
        return Money(value.amount, value.currency)
    except MoneyError as exc:
        raise InvalidArgument(
            f"{field} is not valid money", [FieldViolation(f"{field}.currency", str(exc))]
        ) from None
