"""Domain events -> the integration events of pos.order.v1."""

from __future__ import annotations

from pos.order.v1 import events_pb2
from pos_kit.events import OutgoingEvent, make_event
from pos_order.adapters.messages import order_to_proto
from pos_order.domain.model import OrderConfirmed


def to_outgoing(event: object, merchant_id: str) -> OutgoingEvent:
    if isinstance(event, OrderConfirmed):
        return make_event(events_pb2.OrderConfirmed(order=order_to_proto(event.order)), merchant_id)
    raise TypeError(f"no integration event for {type(event).__name__}")
