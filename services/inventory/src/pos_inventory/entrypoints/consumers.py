"""Events this service consumes: stock follows confirmed sales."""

from __future__ import annotations

from pos.order.v1 import events_pb2 as order_events
from pos.order.v1 import order_pb2
from pos_inventory.adapters.repository import InventoryUow
from pos_inventory.service import handlers
from pos_kit.consumer import PoisonMessage
from pos_kit.errors import InvalidArgument


def sold_off_the_shelf(order: order_pb2.Order) -> dict[str, list[tuple[str, int]]]:
    """The lines sold in store, by the location they left from. Pickup and shipment lines were
    held, and committing their hold already took them out of stock: counting them here too
    would sell them twice; so were an exchange's in-store lines (a fulfilment with a
    reservation). An order without fulfilments sold every line at its location."""
    in_store = {
        f.id: f.location_id or order.location_id
        for f in order.fulfillments
        if f.type == order_pb2.FULFILLMENT_TYPE_IN_STORE and not f.reservation_id
    }
    by_location: dict[str, list[tuple[str, int]]] = {}
    for ln in order.lines:
        if not ln.fulfillment_id or not order.fulfillments:
            location = order.location_id
        elif ln.fulfillment_id in in_store:
            location = in_store[ln.fulfillment_id]
        else:
            continue
        by_location.setdefault(location, []).append((ln.sku, ln.quantity))
    return by_location


async def on_order_confirmed(uow: InventoryUow, message: order_events.OrderConfirmed) -> None:
    order = message.order
    try:
        sold = sold_off_the_shelf(order)
        if not sold:  # every line was held: their commits already counted
            return
        for location_id, lines in sorted(sold.items()):
            await handlers.record_sale(uow, order.id, location_id, lines)
    except InvalidArgument as exc:
        # Redelivering a malformed order can never succeed: park it in the DLQ instead.
        raise PoisonMessage(str(exc)) from exc
