"""Domain events -> the integration events of pos.promotion.v1: one mapper per event."""

from __future__ import annotations

from pos.promotion.v1 import events_pb2
from pos_kit.events import EventRegistry
from pos_promotion.adapters import messages
from pos_promotion.domain.model import PromotionCreated

REGISTRY = EventRegistry()


@REGISTRY.maps(PromotionCreated)
def _created(event: PromotionCreated) -> events_pb2.PromotionCreated:
    return events_pb2.PromotionCreated(promotion=messages.promotion_to_proto(event.promotion))
