"""Domain events -> the integration events of pos.order.v1: one mapper per event."""

from __future__ import annotations

from pos.order.v1 import events_pb2
from pos_kit.events import EventRegistry
from pos_order.adapters.messages import order_to_proto
from pos_order.domain.model import OrderConfirmed

REGISTRY = EventRegistry()


@REGISTRY.maps(OrderConfirmed)
def _confirmed(event: OrderConfirmed) -> events_pb2.OrderConfirmed:
    return events_pb2.OrderConfirmed(order=order_to_proto(event.order))
