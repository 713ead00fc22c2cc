"""Domain objects <-> pos.order.v1 protobuf messages."""

from __future__ import annotations

from pos.order.v1 import order_pb2
from pos_kit.proto_money import to_proto
from pos_order.domain.model import Order, OrderStatus

_STATUS = {
    OrderStatus.CONFIRMED: order_pb2.ORDER_STATUS_CONFIRMED,
    OrderStatus.PAYMENT_DECLINED: order_pb2.ORDER_STATUS_PAYMENT_DECLINED,
}


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
                unit_price=to_proto(ln.unit_price),
                line_total=to_proto(ln.line_total),
            )
            for ln in o.lines
        ],
        subtotal=to_proto(o.totals.subtotal),
        discount_total=to_proto(o.totals.discount),
        tax_total=to_proto(o.totals.tax),
        total=to_proto(o.totals.total),
        status=_STATUS[o.status],
        discounts_applied=o.discounts_applied,
        payment_id=o.payment_id,
    )
    if o.created_at is not None:
        msg.created_at.FromDatetime(o.created_at)
    return msg
