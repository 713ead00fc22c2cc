"""Domain events -> the integration events of pos.inventory.v1."""

from __future__ import annotations

from google.protobuf.message import Message

from pos.inventory.v1 import events_pb2, inventory_pb2, stock_events_pb2
from pos_inventory.adapters.messages import (
    REASON_CODES,
    entry_to_proto,
    level_to_proto,
    product_to_proto,
    reservation_to_proto,
)
from pos_inventory.domain.catalog import ProductArchived, ProductCreated, ProductUpdated
from pos_inventory.domain.ledger import LowStock, StockChanged
from pos_inventory.domain.reservations import ReservationEvent
from pos_kit.events import OutgoingEvent, make_event

_RESERVATION_EVENTS: dict[str, type[Message]] = {
    "created": stock_events_pb2.ReservationCreated,
    "committed": stock_events_pb2.ReservationCommitted,
    "released": stock_events_pb2.ReservationReleased,
    "expired": stock_events_pb2.ReservationExpired,
}


def to_outgoing(event: object, merchant_id: str) -> OutgoingEvent:
    message: Message
    if isinstance(event, ProductCreated):
        message = events_pb2.ProductCreated(product=product_to_proto(event.product))
    elif isinstance(event, ProductUpdated):
        message = events_pb2.ProductUpdated(product=product_to_proto(event.product))
    elif isinstance(event, ProductArchived):
        message = events_pb2.ProductArchived(product=product_to_proto(event.product))
    elif isinstance(event, StockChanged):
        entry = event.entry
        message = events_pb2.StockChanged(
            level=level_to_proto(event.level),
            delta=entry.delta,
            reason=REASON_CODES[entry.reason]
            if entry.reason
            else inventory_pb2.ADJUSTMENT_REASON_UNSPECIFIED,
            entry=entry_to_proto(entry),
        )
    elif isinstance(event, ReservationEvent):
        message = _RESERVATION_EVENTS[event.kind](
            reservation=reservation_to_proto(event.reservation),
            levels=[level_to_proto(level) for level in event.levels],
        )
    elif isinstance(event, LowStock):
        message = stock_events_pb2.LowStock(
            level=level_to_proto(event.level), threshold=event.threshold
        )
    else:
        raise TypeError(f"no integration event for {type(event).__name__}")
    return make_event(message, merchant_id)
