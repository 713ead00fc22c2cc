"""Domain events -> the integration events of pos.customer.v1: one mapper per event."""

from __future__ import annotations

from google.protobuf.message import Message

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
        customer_id=e.customer_id,
        order_id=e.order_id,
        points=e.points,
        balance=e.balance_after,
        entry=messages.entry_to_proto(e),
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


# The events that carry a customer's profile, and the field that holds it.
_PROFILE_FIELDS: dict[str, tuple[type[Message], str]] = {
    events_pb2.CustomerCreated.DESCRIPTOR.full_name: (events_pb2.CustomerCreated, "customer"),
    events_pb2.CustomerUpdated.DESCRIPTOR.full_name: (events_pb2.CustomerUpdated, "customer"),
    events_pb2.CustomerMerged.DESCRIPTOR.full_name: (events_pb2.CustomerMerged, "winner"),
}
PROFILE_EVENT_TYPES = tuple(_PROFILE_FIELDS)


def erased_in_event(event_type: str, payload: bytes, customer_id: str) -> bytes:
    """An event not yet published, as an erasure of `customer_id` leaves it: still sent, so
    its readers see the customer's history in order, but with the erased customer's snapshot
    in place of the profile. Another customer's snapshot (a merge's winner, when the erased
    customer was the loser) is not touched."""
    kind, field = _PROFILE_FIELDS[event_type]
    event = kind.FromString(payload)
    held = getattr(event, field)
    if held.id != customer_id:
        return payload
    held.CopyFrom(messages.erased_snapshot(held))
    rewritten: bytes = event.SerializeToString()
    return rewritten


# The events that carry a points entry, whose `reason` may be free text a person typed.
_ENTRY_EVENTS: dict[str, type[Message]] = {
    kind.DESCRIPTOR.full_name: kind
    for kind in (
        events_pb2.LoyaltyPointsEarned,
        events_pb2.LoyaltyPointsRedeemed,
        events_pb2.LoyaltyPointsAdjusted,
        events_pb2.LoyaltyPointsExpired,
    )
}
ENTRY_EVENT_TYPES = tuple(_ENTRY_EVENTS)


def reason_erased_in_event(event_type: str, payload: bytes, customer_id: str) -> bytes | None:
    """A points event as an erasure of `customer_id` leaves it: the entry, its points and its
    balance as they were, its free-text `reason` blank. None when there is nothing to blank
    (another customer's entry, or one without a reason)."""
    event = _ENTRY_EVENTS[event_type].FromString(payload)
    entry = event.entry  # type: ignore[attr-defined]
    if entry.customer_id != customer_id or not entry.reason:
        return None
    entry.reason = ""
    rewritten: bytes = event.SerializeToString()
    return rewritten
