"""Location and catalog use cases on in-memory fakes of our own repositories.

Stock use cases run against PostgreSQL in test_stock.py: their contract is row locking.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pos_inventory.domain.catalog import Product, ProductStatus
from pos_inventory.domain.model import (
    Address,
    Adjustment,
    GeoPoint,
    Location,
    LocationTax,
    ProductCreated,
)
from pos_inventory.service import catalog, handlers
from pos_kit.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from pos_kit.money import Money
from pos_kit.paging import PageRequest


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

    async def count_for_add(self) -> int:
        return len(await self.all())

    async def get(self, location_id: str, lock: bool = False) -> Location | None:
        return self._s.locations.get((self._m, location_id))

    async def save(self, location: Location) -> None:
        self._s.locations[(self._m, location.id)] = location

    async def many(self, location_ids: list[str]) -> list[Location]:
        return [x for (m, i), x in self._s.locations.items() if m == self._m and i in location_ids]

    async def all(self) -> list[Location]:
        return [x for (m, _), x in self._s.locations.items() if m == self._m]

    async def list(self, page: PageRequest, status: object = None) -> list[Location]:
        mine = sorted(await self.all(), key=lambda x: x.id)
        mine = [x for x in mine if status is None or x.status is status]
        return [x for x in mine if page.after is None or x.id > page.after][: page.fetch]


class FakeProducts:
    def __init__(self, store: Store, merchant: str) -> None:
        self._s, self._m = store, merchant

    async def add(self, product: Product) -> bool:
        if any(m == self._m and p.sku == product.sku for (m, _), p in self._s.products.items()):
            return False
        self._s.products[(self._m, product.id)] = product
        return True

    async def get(self, product_id: str, lock: bool = False) -> Product | None:
        return self._s.products.get((self._m, product_id))

    async def by_skus(self, skus: list[str]) -> list[Product]:
        return [p for (m, _), p in self._s.products.items() if m == self._m and p.sku in skus]

    async def known_skus(self, skus: list[str], hold: bool = False) -> set[str]:
        # `hold` locks rows against concurrent changes; nothing runs concurrently here.
        mine = (p for (m, _), p in self._s.products.items() if m == self._m)
        return {sku for p in mine for sku in p.skus() if sku in skus}

    async def list(self, page: PageRequest, status: ProductStatus | None = None) -> list[Product]:
        mine = sorted(
            (
                p
                for (m, _), p in self._s.products.items()
                if m == self._m and status in (None, p.status)
            ),
            key=lambda p: p.id,
        )
        return [p for p in mine if page.after is None or p.id > page.after][: page.fetch]


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

    def publish(self, event: object) -> None:
        self.published.append(event)


async def _shop(uow: FakeUow, *skus: str) -> Location:
    location = await handlers.create_location(uow, Location("", " Main St ", "USD", 825))
    for sku in skus:
        await catalog.create_product(uow, sku, sku.title(), Money(1250, "USD"))
    return location


async def test_a_location_is_created_trimmed_and_with_an_id() -> None:
    uow = FakeUow()
    location = await handlers.create_location(uow, Location("", " Main St ", "EUR", 2000))
    assert (location.name, location.currency, location.tax_rate_bps) == ("Main St", "EUR", 2000)
    assert location.id.startswith("loc_")
    assert await uow.locations.get(location.id) is location


async def test_a_location_turns_pickup_and_shipping_on_and_off() -> None:
    uow = FakeUow()
    location = await _shop(uow)
    assert (location.pickup_enabled, location.ship_enabled, location.version) == (False, False, 1)
    on = await handlers.update_location(uow, location.id, {"pickup_enabled": True}, 1)
    assert (on.pickup_enabled, on.ship_enabled, on.version) == (True, False, 2)
    both = await handlers.update_location(
        uow, location.id, {"pickup_enabled": False, "ship_enabled": True}, 0
    )
    assert (both.pickup_enabled, both.ship_enabled, both.version) == (False, True, 3)
    # Flags set to what they already are: no new version (no false change for a poller).
    same = await handlers.update_location(uow, location.id, {"ship_enabled": True}, 3)
    assert (same.pickup_enabled, same.ship_enabled, same.version) == (False, True, 3)
    with pytest.raises(Conflict) as stale:
        await handlers.update_location(uow, location.id, {"ship_enabled": False}, 2)
    assert stale.value.metadata == {"current_version": "3"}
    # A location's currency and kind never change; nothing named is no change either.
    for changes in ({}, {"currency": "EUR"}, {"kind": None}):
        with pytest.raises(InvalidArgument) as err:
            await handlers.update_location(uow, location.id, changes, 0)
        assert [v.field for v in err.value.violations] == ["update_mask"]
    with pytest.raises(NotFound):
        await handlers.update_location(uow, "loc_nope", {"ship_enabled": True}, 0)
    assert (await uow.locations.get(location.id)) == both


async def test_a_location_changes_its_name_address_and_taxes() -> None:
    uow = FakeUow()
    location = await _shop(uow)
    moved = await handlers.update_location(
        uow,
        location.id,
        {
            "name": "  Harbor  ",
            "address": Address(line1="9 Pier Rd", city="Portland", country="US"),
            "geo": GeoPoint(45.52, -122.68),
            "time_zone": "America/Los_Angeles",
            "tax_rate_bps": 900,
            "tax_rates_bps": {"food": 0},
        },
        1,
    )
    assert (moved.name, moved.address.city, moved.time_zone, moved.version) == (
        "Harbor", "Portland", "America/Los_Angeles", 2,
    )  # fmt: skip
    assert (moved.tax_rate_for("food"), moved.tax_rate_for("standard")) == (0, 900)
    assert await uow.locations.get(location.id) == moved
    # Coordinates cleared; the same name again is no change of its own.
    cleared = await handlers.update_location(uow, location.id, {"geo": None, "name": "Harbor"}, 2)
    assert (cleared.geo, cleared.version) == (None, 3)
    # Bad values are refused field by field, and nothing of the change is kept.
    with pytest.raises(InvalidArgument) as err:
        await handlers.update_location(
            uow, location.id, {"name": " ", "time_zone": "Mars/Base", "tax_rate_bps": -1}, 3
        )
    assert {v.field for v in err.value.violations} == {"name", "time_zone", "tax_rate_bps"}
    assert await uow.locations.get(location.id) == cleared


async def test_a_location_stored_with_a_country_no_longer_taken_still_changes() -> None:
    """A country is judged when an address is sent: one saved before unassigned codes were
    refused does not keep its location from being renamed or closed, and a new address must
    name an assigned country."""
    uow = FakeUow()
    location = await _shop(uow)
    await uow.locations.save(replace(location, address=Address(line1="1 Quay", country="ZZ")))
    renamed = await handlers.update_location(uow, location.id, {"name": "Quay"}, 1)
    assert (renamed.name, renamed.address.country, renamed.version) == ("Quay", "ZZ", 2)
    with pytest.raises(InvalidArgument) as err:
        await handlers.update_location(
            uow, location.id, {"address": Address(line1="2 Quay", country="XZ")}, 2
        )
    assert [v.field for v in err.value.violations] == ["address.country"]
    moved = await handlers.update_location(
        uow, location.id, {"address": Address(line1="2 Quay", country="IE")}, 2
    )
    assert (moved.address.country, moved.version) == ("IE", 3)


async def test_a_locations_taxes_are_named_once_in_any_case() -> None:
    """Taxes print by name on a receipt: "VAT" and " vat" are one name twice (refused as the
    same name twice is); until 2026-12-05 only an exact repeat was refused."""
    uow = FakeUow()
    location = await _shop(uow)
    for names in (["VAT", "VAT"], ["VAT", " vat"], ["City", "CITY"]):
        taxes = [LocationTax(name, 500) for name in names]
        with pytest.raises(InvalidArgument) as err:
            await handlers.update_location(uow, location.id, {"taxes": taxes}, 1)
        assert [(v.field, v.description) for v in err.value.violations] == [
            ("taxes", "must name each tax once")
        ], names
    kept = await handlers.update_location(
        uow, location.id, {"taxes": [LocationTax("State", 500), LocationTax("City", 100)]}, 1
    )
    assert [t.name for t in kept.taxes] == ["State", "City"]


async def test_a_bad_location_is_refused_field_by_field_and_not_stored() -> None:
    uow = FakeUow()
    with pytest.raises(InvalidArgument) as err:
        await handlers.create_location(uow, Location("", "", "DOLLARS", 10_001))
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
