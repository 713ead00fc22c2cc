"""Domain events -> the integration events of pos.inventory.v1."""

from __future__ import annotations

from google.protobuf.message import Message

from pos.inventory.v1 import events_pb2
from pos_inventory.adapters.messages import REASON_CODES, level_to_proto, product_to_proto
from pos_inventory.domain.catalog import ProductArchived, ProductCreated, ProductUpdated
from pos_inventory.domain.model import StockChanged
from pos_kit.events import OutgoingEvent, make_event


def to_outgoing(event: object, merchant_id: str) -> OutgoingEvent:
    message: Message
    if isinstance(event, ProductCreated):
        message = events_pb2.ProductCreated(product=product_to_proto(event.product))
    elif isinstance(event, ProductUpdated):
        message = events_pb2.ProductUpdated(product=product_to_proto(event.product))
    elif isinstance(event, ProductArchived):
        message = events_pb2.ProductArchived(product=product_to_proto(event.product))
    elif isinstance(event, StockChanged):
        message = events_pb2.StockChanged(
            level=level_to_proto(event.level),
            delta=event.delta,
            reason=REASON_CODES[event.reason],
        )
    else:
        raise TypeError(f"no integration event for {type(event).__name__}")
    return make_event(message, merchant_id)
