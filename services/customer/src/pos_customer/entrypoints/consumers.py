"""Events this service consumes: loyalty accrues from confirmed orders."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from pos.order.v1 import events_pb2 as order_events
from pos_customer.adapters.repository import CustomerUow
from pos_customer.service import handlers
from pos_kit.consumer import IncomingEvent, PoisonMessage
from pos_kit.uow import UnitOfWork


def names_a_customer(event: IncomingEvent) -> bool:
    """Only a sale to a known customer earns points; the rest need no transaction here."""
    try:
        return bool(order_events.OrderConfirmed.FromString(event.data).order.customer_id)
    except DecodeError:
        return True  # the handler dead-letters it as poison


async def on_order_confirmed(uow: UnitOfWork, event: IncomingEvent) -> None:
    try:
        message = order_events.OrderConfirmed.FromString(event.data)
    except DecodeError as exc:
        raise PoisonMessage("not an OrderConfirmed payload") from exc
    order = message.order
    if not order.customer_id:
        return
    assert isinstance(uow, CustomerUow)
    uow.bind(event.merchant_id)
    await handlers.credit_order(uow, order.customer_id, order.id, order.total.amount)
