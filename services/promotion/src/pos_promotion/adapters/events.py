"""Domain events -> the integration events of pos.promotion.v1."""

from __future__ import annotations

from google.protobuf.message import Message

from pos.promotion.v1 import events_pb2
from pos_kit.events import OutgoingEvent, make_event
from pos_promotion.adapters import messages
from pos_promotion.domain.model import PromotionCreated


def to_outgoing(event: object, merchant_id: str) -> OutgoingEvent:
    msg: Message
    if isinstance(event, PromotionCreated):
        msg = events_pb2.PromotionCreated(promotion=messages.promotion_to_proto(event.promotion))
    else:
        raise TypeError(f"no integration event for {type(event).__name__}")
    return make_event(msg, merchant_id)
