"""Events this service consumes: loyalty accrues from confirmed orders."""

from __future__ import annotations

from pos.order.v1 import events_pb2 as order_events
from pos_customer.adapters.repository import CustomerUow
from pos_customer.service import handlers


def names_a_customer(message: order_events.OrderConfirmed) -> bool:
    """Only a sale to a known customer earns points; the rest need no transaction here."""
    return bool(message.order.customer_id)


async def on_order_confirmed(uow: CustomerUow, message: order_events.OrderConfirmed) -> None:
    order = message.order
    await handlers.credit_order(uow, order.customer_id, order.id, order.total.amount)
