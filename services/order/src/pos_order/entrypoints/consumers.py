"""Events this service consumes: the customer ids each merchant has (the checkout's read model)."""

from __future__ import annotations

from google.protobuf.message import DecodeError, Message

from pos.customer.v1 import events_pb2 as customer_events
from pos_kit.consumer import IncomingEvent, PoisonMessage
from pos_kit.uow import UnitOfWork
from pos_order.adapters.repository import OrderUow
from pos_order.service import handlers

CUSTOMER_SUBJECTS = {
    "pos.customer.v1.customer_created": customer_events.CustomerCreated,
    "pos.customer.v1.customer_updated": customer_events.CustomerUpdated,
}


async def on_customer_changed(uow: UnitOfWork, event: IncomingEvent) -> None:
    kind = CUSTOMER_SUBJECTS.get(event.subject)
    if kind is None:
        raise PoisonMessage(f"not a customer event: {event.subject}")
    try:
        message: Message = kind.FromString(event.data)
    except DecodeError as exc:
        raise PoisonMessage(f"not a {kind.__name__} payload") from exc
    customer = message.customer  # type: ignore[attr-defined]
    if not customer.id:
        raise PoisonMessage(f"{kind.__name__} without a customer id")
    assert isinstance(uow, OrderUow)
    uow.bind(event.merchant_id)
    await handlers.remember_customer(uow, customer.id, customer.version)
