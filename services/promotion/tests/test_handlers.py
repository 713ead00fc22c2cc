"""Promotion use cases on in-memory fakes."""

from __future__ import annotations

import pytest

from pos_kit.errors import InvalidArgument, NotFound
from pos_kit.money import Money
from pos_promotion.domain.model import CartLineInput, MoneyInput, Promotion, PromotionCreated
from pos_promotion.service import handlers


class FakePromotions:
    """Rows keyed by (merchant, id), like the table's primary key. `list` comes last so it
    does not shadow the builtin in the annotations above it."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Promotion] = {}
        self.merchant = "mer_a"
        self.active_reads: list[str] = []

    async def add(self, promotion: Promotion) -> None:
        self.rows[(self.merchant, promotion.id)] = promotion

    async def get(self, merchant_id: str, promotion_id: str) -> Promotion | None:
        return self.rows.get((merchant_id, promotion_id))

    async def active(self, merchant_id: str) -> list[Promotion]:
        self.active_reads.append(merchant_id)
        return [p for (m, _), p in self.rows.items() if m == merchant_id and p.active]

    async def list(self, merchant_id: str, limit: int, after_id: str | None) -> list[Promotion]:
        mine = sorted(
            (p for (m, _), p in self.rows.items() if m == merchant_id), key=lambda p: p.id
        )
        return [p for p in mine if after_id is None or p.id > after_id][:limit]


class FakeUow:
    def __init__(self, promotions: FakePromotions, merchant_id: str = "mer_a") -> None:
        self.merchant_id = merchant_id
        self.promotions = promotions
        promotions.merchant = merchant_id
        self.published: list[object] = []

    def publish(self, event: object) -> None:
        self.published.append(event)


def line(amount: int, currency: str = "USD", quantity: int = 1) -> CartLineInput:
    return CartLineInput("SKU", quantity, MoneyInput(amount, currency))


async def test_create_stores_and_announces_the_promotion() -> None:
    uow = FakeUow(FakePromotions())
    promo = await handlers.create_promotion(uow, " Summer ", 1000, MoneyInput(5000, "USD"))
    assert promo.id.startswith("promo_")
    assert uow.promotions.rows == {("mer_a", promo.id): promo}
    assert promo.minimum_subtotal == Money(5000, "USD")
    assert uow.published == [PromotionCreated(promo)]


async def test_an_invalid_promotion_is_neither_stored_nor_announced() -> None:
    uow = FakeUow(FakePromotions())
    with pytest.raises(InvalidArgument) as err:
        await handlers.create_promotion(uow, "", 0, None)
    assert [v.field for v in err.value.violations] == ["name", "percent_off_bps"]
    assert uow.promotions.rows == {}
    assert uow.published == []


async def test_another_merchants_promotion_is_not_found_like_a_missing_one() -> None:
    store = FakePromotions()
    promo = await handlers.create_promotion(FakeUow(store, "mer_a"), "Summer", 1000, None)
    assert await handlers.get_promotion(FakeUow(store, "mer_a"), promo.id) == promo
    with pytest.raises(NotFound):
        await handlers.get_promotion(FakeUow(store, "mer_b"), promo.id)
    with pytest.raises(NotFound):
        await handlers.get_promotion(FakeUow(store, "mer_a"), "promo_missing")
    assert await handlers.list_promotions(FakeUow(store, "mer_b"), 10, None) == []


async def test_discounts_come_from_the_callers_promotions_only_in_one_read() -> None:
    store = FakePromotions()
    await handlers.create_promotion(FakeUow(store, "mer_a"), "Ten", 1000, None)
    await handlers.create_promotion(FakeUow(store, "mer_b"), "Fifty", 5000, None)
    result = await handlers.calculate_discounts(store, "mer_a", [line(2000, quantity=3)], "USD")
    assert result.total == Money(600, "USD")
    assert [d.reason for d in result.applied] == ["Ten: 10% off"]
    assert store.active_reads == ["mer_a"]


async def test_a_bad_cart_is_refused_before_any_read() -> None:
    store = FakePromotions()
    with pytest.raises(InvalidArgument) as err:
        await handlers.calculate_discounts(store, "mer_a", [line(100), line(100, "EUR")], "USD")
    assert [v.field for v in err.value.violations] == ["lines[1].unit_price.currency"]
    assert store.active_reads == []
