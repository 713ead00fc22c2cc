"""Domain events -> the integration events of pos.customer.v1: one mapper per event."""

from __future__ import annotations

from pos.customer.v1 import events_pb2
from pos_customer.adapters import messages
from pos_customer.domain.model import CustomerCreated, CustomerUpdated, LoyaltyPointsEarned
from pos_kit.events import EventRegistry

REGISTRY = EventRegistry()


@REGISTRY.maps(CustomerCreated)
def _created(event: CustomerCreated) -> events_pb2.CustomerCreated:
    return events_pb2.CustomerCreated(customer=messages.customer_to_proto(event.customer))


@REGISTRY.maps(CustomerUpdated)
def _updated(event: CustomerUpdated) -> events_pb2.CustomerUpdated:
    return events_pb2.CustomerUpdated(customer=messages.customer_to_proto(event.customer))


@REGISTRY.maps(LoyaltyPointsEarned)
def _earned(event: LoyaltyPointsEarned) -> events_pb2.LoyaltyPointsEarned:
    return events_pb2.LoyaltyPointsEarned(
        customer_id=event.customer_id,
        order_id=event.order_id,
        points=event.points,
        balance=event.balance,
    )
