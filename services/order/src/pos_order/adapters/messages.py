"""Domain objects <-> pos.order.v1 protobuf messages."""

from __future__ import annotations

from pos.order.v1 import order_pb2
from pos.payment.v1 import payment_pb2
from pos_kit.enums import ProtoEnum
from pos_kit.proto_money import to_proto
from pos_order.domain.model import Order, OrderStatus, Tender

STATUSES = ProtoEnum(OrderStatus, order_pb2.OrderStatus)
TENDERS = ProtoEnum(Tender, payment_pb2.TenderType)


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
        status=STATUSES.to_proto(o.status),
        discounts_applied=o.discounts_applied,
        payment_id=o.payment_id,
    )
    if o.created_at is not None:
        msg.created_at.FromDatetime(o.created_at)
    return msg
