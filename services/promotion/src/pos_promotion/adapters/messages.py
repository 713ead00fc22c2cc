"""Domain objects <-> pos.promotion.v1 protobuf messages."""

from __future__ import annotations

from pos.promotion.v1 import promotion_pb2
from pos_kit.proto_money import to_proto
from pos_promotion.domain.model import Promotion


def promotion_to_proto(p: Promotion) -> promotion_pb2.Promotion:
    msg = promotion_pb2.Promotion(
        id=p.id, name=p.name, percent_off_bps=p.percent_off_bps, active=p.active
    )
    if p.minimum_subtotal is not None:
        msg.minimum_subtotal.CopyFrom(to_proto(p.minimum_subtotal))
    if p.created_at is not None:
        msg.created_at.FromDatetime(p.created_at)
    return msg
