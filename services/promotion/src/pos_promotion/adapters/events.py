"""Domain events -> the integration events of pos.promotion.v1: one mapper per event."""

from __future__ import annotations

from pos.promotion.v1 import events_pb2
from pos_kit.events import EventRegistry
from pos_promotion.adapters import messages
from pos_promotion.domain.coupons import CouponRedeemed, CouponReleased
from pos_promotion.domain.model import (
    PromotionCreated,
    PromotionDeleted,
    PromotionEnded,
    PromotionUpdated,
)

REGISTRY = EventRegistry()


@REGISTRY.maps(PromotionCreated)
def _created(event: PromotionCreated) -> events_pb2.PromotionCreated:
    return events_pb2.PromotionCreated(promotion=messages.promotion_to_proto(event.promotion))


@REGISTRY.maps(PromotionUpdated)
def _updated(event: PromotionUpdated) -> events_pb2.PromotionUpdated:
    return events_pb2.PromotionUpdated(promotion=messages.promotion_to_proto(event.promotion))


@REGISTRY.maps(PromotionEnded)
def _ended(event: PromotionEnded) -> events_pb2.PromotionEnded:
    return events_pb2.PromotionEnded(promotion=messages.promotion_to_proto(event.promotion))


@REGISTRY.maps(PromotionDeleted)
def _deleted(event: PromotionDeleted) -> events_pb2.PromotionDeleted:
    return events_pb2.PromotionDeleted(promotion_id=event.promotion_id)


@REGISTRY.maps(CouponRedeemed)
def _redeemed(event: CouponRedeemed) -> events_pb2.CouponRedeemed:
    return events_pb2.CouponRedeemed(
        coupon=messages.coupon_to_proto(event.coupon),
        order_id=event.order_id,
        customer_id=event.customer_id,
    )


@REGISTRY.maps(CouponReleased)
def _released(event: CouponReleased) -> events_pb2.CouponReleased:
    return events_pb2.CouponReleased(
        coupon=messages.coupon_to_proto(event.coupon),
        order_id=event.order_id,
        customer_id=event.customer_id,
    )
