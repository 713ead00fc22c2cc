"""Events this service consumes: the customer ids each merchant has (the checkout's read model)."""

from __future__ import annotations

from pos.customer.v1 import events_pb2 as customer_events
from pos_kit.consumer import PoisonMessage
from pos_order.adapters.repository import OrderUow
from pos_order.service import handlers


async def on_customer_changed(
    uow: OrderUow, message: customer_events.CustomerCreated | customer_events.CustomerUpdated
) -> None:
    customer = message.customer
    if not customer.id:
        raise PoisonMessage(f"{message.DESCRIPTOR.name} without a customer id")
    await handlers.remember_customer(uow, customer.id, customer.version)
