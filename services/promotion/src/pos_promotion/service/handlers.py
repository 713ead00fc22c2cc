"""Use cases of the promotion service."""

from __future__ import annotations

from pos_kit.ids import new_id
from pos_kit.money import Money
from pos_promotion.domain.model import (
    AppliedDiscount,
    CartLine,
    Promotion,
    PromotionCreated,
    calculate,
    validate_new,
)
from pos_promotion.service.ports import PromotionUnitOfWork


async def create_promotion(
    uow: PromotionUnitOfWork, name: str, percent_off_bps: int, minimum: Money | None
) -> Promotion:
    validate_new(name, percent_off_bps, minimum)
    promotion = Promotion(new_id("promo"), name.strip(), percent_off_bps, minimum)
    await uow.promotions.add(promotion)
    uow.publish(PromotionCreated(promotion))
    return promotion


async def list_promotions(
    uow: PromotionUnitOfWork, limit: int, after_id: str | None
) -> list[Promotion]:
    return await uow.promotions.list(uow.merchant_id, limit, after_id)


async def calculate_discounts(
    uow: PromotionUnitOfWork, lines: list[CartLine], currency: str
) -> list[AppliedDiscount]:
    """On the checkout hot path: one read, no writes."""
    return calculate(await uow.promotions.active(uow.merchant_id), lines, currency)
