"""Events this service consumes: stock follows confirmed sales."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from pos.order.v1 import events_pb2 as order_events
from pos_inventory.adapters.repository import InventoryUow
from pos_inventory.service import handlers
from pos_kit.consumer import IncomingEvent, PoisonMessage
from pos_kit.errors import InvalidArgument
from pos_kit.uow import UnitOfWork


async def on_order_confirmed(uow: UnitOfWork, event: IncomingEvent) -> None:
    try:
        message = order_events.OrderConfirmed.FromString(event.data)
    except DecodeError as exc:
        raise PoisonMessage("not an OrderConfirmed payload") from exc
    order = message.order
    assert isinstance(uow, InventoryUow)
    uow.bind(event.merchant_id)
    try:
        await handlers.record_sale(
            uow, order.id, order.location_id, [(ln.sku, ln.quantity) for ln in order.lines]
        )
    except InvalidArgument as exc:
        # Redelivering a malformed order can never succeed: park it in the DLQ instead.
        raise PoisonMessage(str(exc)) from exc
