"""Inventory use cases on in-memory fakes of our own repositories."""

from __future__ import annotations

import pytest

from pos_inventory.domain.catalog import Product, ProductCreated
from pos_inventory.domain.model import (
    Adjustment,
    Location,
    Reason,
    StockChanged,
    StockLevel,
)
from pos_inventory.service import catalog, handlers
from pos_kit.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from pos_kit.money import Money


class Store:
    """Rows of every merchant, as one database would hold them."""

    def __init__(self) -> None:
        self.locations: dict[tuple[str, str], Location] = {}
        self.products: dict[tuple[str, str], Product] = {}
        self.stock: dict[tuple[str, str, str], list[int]] = {}  # [on_hand, reserved]
        self.ledger: list[tuple[str, Adjustment]] = []


class FakeLocations:
    def __init__(self, store: Store, merchant: str) -> None:
        self._s, self._m = store, merchant

    async def add(self, location: Location) -> None:
        self._s.locations[(self._m, location.id)] = location

    async def get(self, location_id: str) -> Location | None:
        return self._s.locations.get((self._m, location_id))

    async def list(self, limit: int, after_id: str | None) -> list[Location]:
        mine = sorted(
            (x for (m, _), x in self._s.locations.items() if m == self._m), key=lambda x: x.id
        )
        return [x for x in mine if after_id is None or x.id > after_id][:limit]


class FakeProducts:
    def __init__(self, store: Store, merchant: str) -> None:
        self._s, self._m = store, merchant

    async def add(self, product: Product) -> bool:
        if any(m == self._m and p.sku == product.sku for (m, _), p in self._s.products.items()):
            return False
        self._s.products[(self._m, product.id)] = product
        return True

    async def get(self, product_id: str) -> Product | None:
        return self._s.products.get((self._m, product_id))

    async def by_skus(self, skus: list[str]) -> list[Product]:
        return [p for (m, _), p in self._s.products.items() if m == self._m and p.sku in skus]

    async def list(self, limit: int, after_id: str | None) -> list[Product]:
        mine = sorted(
            (p for (m, _), p in self._s.products.items() if m == self._m), key=lambda p: p.id
        )
        return [p for p in mine if after_id is None or p.id > after_id][:limit]


class FakeStock:
    """The same contract as the SQL one: a decrease not covered is refused, not clipped."""

    def __init__(self, store: Store, merchant: str) -> None:
        self._s, self._m = store, merchant

    async def apply(self, adjustment: Adjustment) -> StockLevel | None:
        key = (self._m, adjustment.sku, adjustment.location_id)
        row = self._s.stock.get(key)
        covered = row is not None and row[0] + adjustment.delta >= 0
        if adjustment.delta < 0 and not adjustment.may_go_negative and not covered:
            return None
        row = self._s.stock.setdefault(key, [0, 0])
        row[0] += adjustment.delta
        self._s.ledger.append((self._m, adjustment))
        return StockLevel(adjustment.sku, adjustment.location_id, row[0], row[1])

    async def levels(self, skus: list[str], location_id: str | None) -> list[StockLevel]:
        return [
            StockLevel(s, loc, row[0], row[1])
            for (m, s, loc), row in sorted(self._s.stock.items())
            if m == self._m and s in skus and (location_id is None or loc == location_id)
        ]


class FakeUow:
    def __init__(self, merchant_id: str = "mer_a", store: Store | None = None) -> None:
        self.merchant_id = merchant_id
        self.store = store or Store()
        self.published: list[object] = []

    @property
    def locations(self) -> FakeLocations:
        return FakeLocations(self.store, self.merchant_id)

    @property
    def products(self) -> FakeProducts:
        return FakeProducts(self.store, self.merchant_id)

    @property
    def stock(self) -> FakeStock:
        return FakeStock(self.store, self.merchant_id)

    def publish(self, event: object) -> None:
        self.published.append(event)


async def _shop(uow: FakeUow, *skus: str) -> Location:
    location = await handlers.create_location(uow, " Main St ", "USD", 825)
    for sku in skus:
        await catalog.create_product(uow, sku, sku.title(), Money(1250, "USD"))
    return location


async def test_a_location_is_created_trimmed_and_with_an_id() -> None:
    uow = FakeUow()
    location = await handlers.create_location(uow, " Main St ", "EUR", 2000)
    assert (location.name, location.currency, location.tax_rate_bps) == ("Main St", "EUR", 2000)
    assert location.id.startswith("loc_")
    assert await uow.locations.get(location.id) is location


async def test_a_bad_location_is_refused_field_by_field_and_not_stored() -> None:
    uow = FakeUow()
    with pytest.raises(InvalidArgument) as err:
        await handlers.create_location(uow, "", "DOLLARS", 10_001)
    assert {v.field for v in err.value.violations} == {"name", "currency", "tax_rate_bps"}
    assert uow.store.locations == {}


async def test_a_product_is_announced_and_its_sku_is_unique_per_merchant() -> None:
    uow = FakeUow()
    product = await catalog.create_product(uow, "MUG", "Mug", Money(1250, "USD"))
    assert product.id.startswith("prod_")
    assert uow.published == [ProductCreated(product)]
    with pytest.raises(AlreadyExists) as err:
        await catalog.create_product(uow, "MUG", "Another mug", Money(1, "USD"))
    assert err.value.code == "sku_taken"
    assert len(uow.published) == 1
    # The same sku is free for another merchant.
    other = FakeUow("mer_b", uow.store)
    await catalog.create_product(other, "MUG", "Their mug", Money(900, "USD"))


async def test_another_merchants_product_is_not_found() -> None:
    uow = FakeUow()
    product = await catalog.create_product(uow, "MUG", "Mug", Money(1250, "USD"))
    assert await catalog.get_product(uow, product.id) is product
    with pytest.raises(NotFound):
        await catalog.get_product(FakeUow("mer_b", uow.store), product.id)


async def test_prices_come_all_in_the_order_asked_or_not_at_all() -> None:
    uow = FakeUow()
    location = await _shop(uow, "MUG", "CAP", "TEE")
    found, at = await catalog.price_snapshot(uow, ["TEE", "MUG", "TEE"], location.id)
    assert [p.sku for p in found] == ["TEE", "MUG"]
    assert at == location
    with pytest.raises(NotFound) as err:
        await catalog.price_snapshot(uow, ["MUG", "ZZZ", "AAA"], "")
    assert err.value.metadata["skus"] == "AAA,ZZZ"
    with pytest.raises(NotFound):
        await catalog.price_snapshot(uow, ["MUG"], "loc_unknown")
    with pytest.raises(NotFound):  # another merchant's catalog is not ours
        await catalog.price_snapshot(FakeUow("mer_b", uow.store), ["MUG"], "")


async def test_received_stock_is_ledgered_and_announced() -> None:
    uow = FakeUow()
    location = await _shop(uow, "MUG")
    level = await handlers.adjust_stock(
        uow, Adjustment("MUG", location.id, 5, Reason.RECEIVED, "po_1")
    )
    assert (level.on_hand, level.available) == (5, 5)
    assert uow.published[-1] == StockChanged(level, 5, Reason.RECEIVED)
    assert [a.delta for _, a in uow.store.ledger] == [5]


async def test_a_decrease_beyond_what_is_on_hand_is_refused_and_changes_nothing() -> None:
    uow = FakeUow()
    location = await _shop(uow, "MUG")
    await handlers.adjust_stock(uow, Adjustment("MUG", location.id, 2, Reason.RECEIVED))
    published = len(uow.published)
    with pytest.raises(Conflict) as err:
        await handlers.adjust_stock(uow, Adjustment("MUG", location.id, -3, Reason.DAMAGED))
    assert err.value.code == "insufficient_stock"
    # A manual SOLD adjustment has no order behind it: it may not go negative either.
    with pytest.raises(Conflict):
        await handlers.adjust_stock(uow, Adjustment("MUG", location.id, -3, Reason.SOLD))
    assert len(uow.published) == published
    levels = await handlers.stock_levels(uow, ["MUG"], location.id)
    assert [x.on_hand for x in levels] == [2]


async def test_stock_of_an_unknown_or_foreign_sku_or_location_is_not_found() -> None:
    uow = FakeUow()
    location = await _shop(uow, "MUG")
    with pytest.raises(NotFound):
        await handlers.adjust_stock(uow, Adjustment("NOPE", location.id, 1, Reason.RECEIVED))
    with pytest.raises(NotFound):
        await handlers.adjust_stock(uow, Adjustment("MUG", "loc_nope", 1, Reason.RECEIVED))
    with pytest.raises(NotFound):
        await handlers.adjust_stock(
            FakeUow("mer_b", uow.store), Adjustment("MUG", location.id, 1, Reason.RECEIVED)
        )
    assert uow.store.ledger == []


async def test_a_zero_adjustment_is_a_field_error() -> None:
    uow = FakeUow()
    location = await _shop(uow, "MUG")
    with pytest.raises(InvalidArgument) as err:
        await handlers.adjust_stock(uow, Adjustment("MUG", location.id, 0, Reason.CORRECTION))
    assert [v.field for v in err.value.violations] == ["delta"]


async def test_a_confirmed_sale_decrements_each_line_and_may_go_negative() -> None:
    uow = FakeUow()
    location = await _shop(uow, "MUG", "CAP")
    await handlers.adjust_stock(uow, Adjustment("MUG", location.id, 1, Reason.RECEIVED))
    await handlers.record_sale(uow, "ord_1", location.id, [("MUG", 3), ("CAP", 1), ("MUG", 0)])
    levels = {x.sku: x.on_hand for x in await handlers.stock_levels(uow, ["MUG", "CAP"], None)}
    assert levels == {"MUG": -2, "CAP": -1}
    sales = [a for _, a in uow.store.ledger if a.reason is Reason.SOLD]
    assert [(a.sku, a.delta, a.reference) for a in sales] == [
        ("MUG", -3, "ord_1"),
        ("CAP", -1, "ord_1"),
    ]
    assert sum(isinstance(e, StockChanged) for e in uow.published) == 3


async def test_a_sale_without_order_id_or_location_is_refused() -> None:
    uow = FakeUow()
    with pytest.raises(InvalidArgument) as err:
        await handlers.record_sale(uow, "", "", [("MUG", 1)])
    assert {v.field for v in err.value.violations} == {"order.id", "order.location_id"}
    assert uow.store.ledger == []
