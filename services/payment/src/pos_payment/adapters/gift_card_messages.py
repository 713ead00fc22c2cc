"""Gift card domain objects <-> pos.payment.v1 protobuf messages, and their events."""

from __future__ import annotations

from pos.payment.v1 import gift_cards_pb2 as G
from pos_kit.enums import ProtoEnum
from pos_kit.events import EventRegistry
from pos_payment.adapters.messages import money
from pos_payment.domain.gift_cards import (
    Activity,
    ActivityKind,
    GiftCard,
    GiftCardActivityCreated,
    GiftCardStatus,
    GiftCardUpdated,
)

CARD_STATUSES = ProtoEnum(GiftCardStatus, G.GiftCardStatus)
KINDS = ProtoEnum(ActivityKind, G.GiftCardActivityKind)

REGISTRY = EventRegistry()


def card_to_proto(card: GiftCard) -> G.GiftCard:
    msg = G.GiftCard(
        id=card.id,
        code_last4=card.code_last4,
        balance=money(card.balance, card.currency),
        status=G.GiftCardStatus.ValueType(CARD_STATUSES.to_proto(card.status)),
        customer_id=card.customer_id,
        order_id=card.order_id,
        order_line_id=card.order_line_id,
        reason=card.reason.value,
        location_id=card.location_id,
        version=card.version,
    )
    if card.created_at is not None:
        msg.created_at.FromDatetime(card.created_at)
    if card.updated_at is not None:
        msg.updated_at.FromDatetime(card.updated_at)
    return msg


def activity_to_proto(activity: Activity) -> G.GiftCardActivity:
    msg = G.GiftCardActivity(
        id=activity.id,
        gift_card_id=activity.gift_card_id,
        kind=G.GiftCardActivityKind.ValueType(KINDS.to_proto(activity.kind)),
        amount=money(activity.amount, activity.currency),
        balance_after=money(activity.balance_after, activity.currency),
        reference=activity.reference,
        location_id=activity.location_id,
    )
    if activity.created_at is not None:
        msg.created_at.FromDatetime(activity.created_at)
    return msg


@REGISTRY.maps(GiftCardActivityCreated)
def _activity_created(event: GiftCardActivityCreated) -> G.GiftCardActivityCreated:
    return G.GiftCardActivityCreated(
        gift_card=card_to_proto(event.card), activity=activity_to_proto(event.activity)
    )


@REGISTRY.maps(GiftCardUpdated)
def _updated(event: GiftCardUpdated) -> G.GiftCardUpdated:
    return G.GiftCardUpdated(gift_card=card_to_proto(event.card))
