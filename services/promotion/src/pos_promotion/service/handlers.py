"""Use cases of the promotion service, one function each."""

from __future__ import annotations

from pos_kit.errors import NotFound
from pos_kit.ids import new_id
from pos_kit.paging import PageRequest
from pos_promotion.domain.model import (
    CartLineInput,
    Discounts,
    MoneyInput,
    Promotion,
    PromotionCreated,
    discounts_for,
    new_cart,
    new_promotion,
)
from pos_promotion.service.ports import ActivePromotions, PromotionUnitOfWork


async def create_promotion(
    uow: PromotionUnitOfWork, name: str, percent_off_bps: int, minimum: MoneyInput | None
) -> Promotion:
    promotion = new_promotion(new_id("promo"), name, percent_off_bps, minimum)
    await uow.promotions.add(promotion)
    uow.publish(PromotionCreated(promotion))
    return promotion


async def get_promotion(uow: PromotionUnitOfWork, promotion_id: str) -> Promotion:
    promotion = await uow.promotions.get(promotion_id)
    if promotion is None:
        raise NotFound("promotion", promotion_id)
    return promotion


async def list_promotions(uow: PromotionUnitOfWork, page: PageRequest) -> list[Promotion]:
    return await uow.promotions.list(page)


async def calculate_discounts(
    promotions: ActivePromotions, lines: list[CartLineInput], currency: str
) -> Discounts:
    """On the checkout hot path: the cart is validated first, so a bad one costs no query;
    then one read and no writes."""
    cart = new_cart(lines, currency)
    return discounts_for(await promotions.active(), cart)
