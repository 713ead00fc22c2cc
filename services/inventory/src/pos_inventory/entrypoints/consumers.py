"""Events this service consumes: stock follows confirmed sales."""

from __future__ import annotations

from pos.order.v1 import events_pb2 as order_events
from pos_inventory.adapters.repository import InventoryUow
from pos_inventory.service import handlers
from pos_kit.consumer import PoisonMessage
from pos_kit.errors import InvalidArgument


async def on_order_confirmed(uow: InventoryUow, message: order_events.OrderConfirmed) -> None:
    order = message.order
    try:
        await handlers.record_sale(
            uow, order.id, order.location_id, [(ln.sku, ln.quantity) for ln in order.lines]
        )
    except InvalidArgument as exc:
        # Redelivering a malformed order can never succeed: park it in the DLQ instead.
        raise PoisonMessage(str(exc)) from exc
