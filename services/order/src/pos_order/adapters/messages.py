"""Domain objects <-> pos.order.v1 protobuf messages."""

from __future__ import annotations

from pos.common.v1 import money_pb2
from pos.order.v1 import order_pb2
from pos_kit.money import Money
from pos_order.domain.model import Order, OrderStatus

_STATUS = {
    OrderStatus.CONFIRMED: order_pb2.ORDER_STATUS_CONFIRMED,
    OrderStatus.PAYMENT_DECLINED: order_pb2.ORDER_STATUS_PAYMENT_DECLINED,
}


def money(m: Money) -> money_pb2.Money:
    return money_pb2.Money(amount=m.amount, currency=m.currency)


def order_to_proto(o: Order) -> order_pb2.Order:
    msg = order_pb2.Order(
        id=o.id,
        location_id=o.location_id,
        customer_id=o.customer_id,
        lines=[
            order_pb2.OrderLine(
                sku=ln.sku,
                name=ln.name,
                quantity=ln.quantity,
                unit_price=money(ln.unit_price),
                line_total=money(ln.line_total),
            )
            for ln in o.lines
        ],
        subtotal=money(o.totals.subtotal),
        discount_total=money(o.totals.discount),
        tax_total=money(o.totals.tax),
        total=money(o.totals.total),
        status=_STATUS[o.status],
        discounts_applied=o.discounts_applied,
        payment_id=o.payment_id,
    )
    if o.created_at is not None:
        msg.created_at.FromDatetime(o.created_at)
    return msg
