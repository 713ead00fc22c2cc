"""Domain objects <-> pos.promotion.v1 protobuf messages."""

from __future__ import annotations

from collections.abc import Iterable

from pos.common.v1 import money_pb2
from pos.promotion.v1 import promotion_pb2
from pos_kit.proto_money import to_proto
from pos_promotion.domain.model import CartLineInput, Discounts, MoneyInput, Promotion


def promotion_to_proto(p: Promotion) -> promotion_pb2.Promotion:
    msg = promotion_pb2.Promotion(
        id=p.id, name=p.name, percent_off_bps=p.percent_off_bps, active=p.active
    )
    if p.minimum_subtotal is not None:
        msg.minimum_subtotal.CopyFrom(to_proto(p.minimum_subtotal))
    if p.created_at is not None:
        msg.created_at.FromDatetime(p.created_at)
    return msg


def money_input(value: money_pb2.Money) -> MoneyInput:
    """Raw, not yet validated: the domain checks the currency with every other field."""
    return MoneyInput(value.amount, value.currency)


def cart_lines(lines: Iterable[promotion_pb2.CartLine]) -> list[CartLineInput]:
    return [CartLineInput(ln.sku, ln.quantity, money_input(ln.unit_price)) for ln in lines]


def discounts_to_proto(d: Discounts) -> promotion_pb2.CalculateDiscountsResponse:
    return promotion_pb2.CalculateDiscountsResponse(
        discounts=[
            promotion_pb2.AppliedDiscount(
                promotion_id=a.promotion_id, amount=to_proto(a.amount), reason=a.reason
            )
            for a in d.applied
        ],
        total_discount=to_proto(d.total),
    )
