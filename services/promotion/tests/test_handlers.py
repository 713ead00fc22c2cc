"""Promotion use cases on in-memory fakes."""

from __future__ import annotations

import pytest

from pos_kit.errors import InvalidArgument, NotFound
from pos_kit.money import Money
from pos_kit.paging import PageRequest
from pos_promotion.domain.model import CartLineInput, MoneyInput, Promotion, PromotionCreated
from pos_promotion.service import handlers


class FakePromotions:
    """Bound to one merchant, like the real repositories; `rows`, keyed by (merchant, id) like
    the table's primary key, may be shared by several. `list` comes last so it does not shadow
    the builtin in the annotations above it."""

    def __init__(self, merchant: str, rows: dict[tuple[str, str], Promotion]) -> None:
        self.merchant = merchant
        self.rows = rows
        self.active_reads = 0

    async def add(self, promotion: Promotion) -> None:
        self.rows[(self.merchant, promotion.id)] = promotion

    async def get(self, promotion_id: str) -> Promotion | None:
        return self.rows.get((self.merchant, promotion_id))

    async def active(self) -> list[Promotion]:
        self.active_reads += 1
        return [p for (m, _), p in self.rows.items() if m == self.merchant and p.active]

    async def list(self, page: PageRequest) -> list[Promotion]:
        mine = sorted((p for (m, _), p in self.rows.items() if m == self.merchant), key=by_id)
        return [p for p in mine if page.after is None or p.id > page.after][: page.fetch]


def by_id(promotion: Promotion) -> str:
    return promotion.id


class FakeUow:
    def __init__(
        self, merchant_id: str = "mer_a", rows: dict[tuple[str, str], Promotion] | None = None
    ) -> None:
        self.promotions = FakePromotions(merchant_id, {} if rows is None else rows)
        self.published: list[object] = []

    def publish(self, event: object) -> None:
        self.published.append(event)


def line(amount: int, currency: str = "USD", quantity: int = 1) -> CartLineInput:
    return CartLineInput("SKU", quantity, MoneyInput(amount, currency))


async def test_create_stores_and_announces_the_promotion() -> None:
    uow = FakeUow()
    promo = await handlers.create_promotion(uow, " Summer ", 1000, MoneyInput(5000, "USD"))
    assert promo.id.startswith("promo_")
    assert uow.promotions.rows == {("mer_a", promo.id): promo}
    assert promo.minimum_subtotal == Money(5000, "USD")
    assert uow.published == [PromotionCreated(promo)]


async def test_an_invalid_promotion_is_neither_stored_nor_announced() -> None:
    uow = FakeUow()
    with pytest.raises(InvalidArgument) as err:
        await handlers.create_promotion(uow, "", 0, None)
    assert [v.field for v in err.value.violations] == ["name", "percent_off_bps"]
    assert uow.promotions.rows == {}
    assert uow.published == []


async def test_another_merchants_promotion_is_not_found_like_a_missing_one() -> None:
    rows: dict[tuple[str, str], Promotion] = {}
    mine, theirs = FakeUow("mer_a", rows), FakeUow("mer_b", rows)
    promo = await handlers.create_promotion(mine, "Summer", 1000, None)
    assert await handlers.get_promotion(mine, promo.id) == promo
    with pytest.raises(NotFound):
        await handlers.get_promotion(theirs, promo.id)
    with pytest.raises(NotFound):
        await handlers.get_promotion(mine, "promo_missing")
    assert await handlers.list_promotions(theirs, PageRequest(limit=10)) == []
    assert await handlers.list_promotions(mine, PageRequest(limit=10)) == [promo]


async def test_discounts_come_from_the_callers_promotions_only_in_one_read() -> None:
    rows: dict[tuple[str, str], Promotion] = {}
    mine, theirs = FakeUow("mer_a", rows), FakeUow("mer_b", rows)
    await handlers.create_promotion(mine, "Ten", 1000, None)
    await handlers.create_promotion(theirs, "Fifty", 5000, None)
    result = await handlers.calculate_discounts(mine.promotions, [line(2000, quantity=3)], "USD")
    assert result.total == Money(600, "USD")
    assert [d.reason for d in result.applied] == ["Ten: 10% off"]
    assert mine.promotions.active_reads == 1


async def test_a_bad_cart_is_refused_before_any_read() -> None:
    promotions = FakeUow().promotions
    with pytest.raises(InvalidArgument) as err:
        await handlers.calculate_discounts(promotions, [line(100), line(100, "EUR")], "USD")
    assert [v.field for v in err.value.violations] == ["lines[1].unit_price.currency"]
    assert promotions.active_reads == 0
