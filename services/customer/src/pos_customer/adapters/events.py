"""Domain events -> the integration events of pos.customer.v1: one mapper per event."""

from __future__ import annotations

from pos.customer.v1 import events_pb2
from pos_customer.adapters import messages
from pos_customer.domain import loyalty
from pos_customer.domain.model import (
    CustomerCreated,
    CustomerErased,
    CustomerMerged,
    CustomerUpdated,
)
from pos_kit.events import EventRegistry

REGISTRY = EventRegistry()


@REGISTRY.maps(CustomerCreated)
def _created(event: CustomerCreated) -> events_pb2.CustomerCreated:
    return events_pb2.CustomerCreated(customer=messages.customer_to_proto(event.customer))


@REGISTRY.maps(CustomerUpdated)
def _updated(event: CustomerUpdated) -> events_pb2.CustomerUpdated:
    return events_pb2.CustomerUpdated(customer=messages.customer_to_proto(event.customer))


@REGISTRY.maps(CustomerMerged)
def _merged(event: CustomerMerged) -> events_pb2.CustomerMerged:
    return events_pb2.CustomerMerged(
        winner=messages.customer_to_proto(event.winner), loser_id=event.loser_id
    )


@REGISTRY.maps(CustomerErased)
def _erased(event: CustomerErased) -> events_pb2.CustomerErased:
    return events_pb2.CustomerErased(customer_id=event.customer_id)


@REGISTRY.maps(loyalty.PointsEarned)
def _earned(event: loyalty.PointsEarned) -> events_pb2.LoyaltyPointsEarned:
    e = event.entry
    return events_pb2.LoyaltyPointsEarned(
        customer_id=e.customer_id, order_id=e.order_id, points=e.points, balance=e.balance_after
    )


@REGISTRY.maps(loyalty.PointsRedeemed)
def _redeemed(event: loyalty.PointsRedeemed) -> events_pb2.LoyaltyPointsRedeemed:
    return events_pb2.LoyaltyPointsRedeemed(entry=messages.entry_to_proto(event.entry))


@REGISTRY.maps(loyalty.PointsAdjusted)
def _adjusted(event: loyalty.PointsAdjusted) -> events_pb2.LoyaltyPointsAdjusted:
    return events_pb2.LoyaltyPointsAdjusted(entry=messages.entry_to_proto(event.entry))


@REGISTRY.maps(loyalty.PointsExpired)
def _expired(event: loyalty.PointsExpired) -> events_pb2.LoyaltyPointsExpired:
    return events_pb2.LoyaltyPointsExpired(entry=messages.entry_to_proto(event.entry))


@REGISTRY.maps(loyalty.TierChanged)
def _tier(event: loyalty.TierChanged) -> events_pb2.LoyaltyTierChanged:
    return events_pb2.LoyaltyTierChanged(
        customer_id=event.customer_id, previous_tier=event.previous, tier=event.tier
    )
