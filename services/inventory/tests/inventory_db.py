"""Units of work on a real, migrated inventory database, for use-case tests without gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from pos_inventory.adapters.repository import InventoryUow
from pos_inventory.adapters.tables import kit
from pos_inventory.domain.catalog import Product
from pos_inventory.domain.model import GeoPoint, Location
from pos_inventory.service import catalog, handlers
from pos_kit.db import make_engine
from pos_kit.ids import new_id
from pos_kit.money import Money


@dataclass
class Db:
    url: str
    published: list[object] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.engine = make_engine(self.url, pool_size=20)

    def uow(self, merchant: str = "mer_a") -> InventoryUow:
        return InventoryUow(self.engine, kit).bind(merchant)

    @asynccontextmanager
    async def tx(self, merchant: str = "mer_a") -> AsyncIterator[InventoryUow]:
        """One committed transaction; what it publishes is kept in `published`."""
        async with self.uow(merchant) as uow:
            events: list[object] = []
            original: Callable[[object], None] = uow.publish

            def keep(event: object) -> None:
                events.append(event)
                original(event)

            uow.publish = keep  # type: ignore[method-assign]
            yield uow
            await uow.commit()
            self.published += events

    async def shop(
        self,
        *skus: str,
        merchant: str = "mer_a",
        geo: GeoPoint | None = None,
        pickup: bool = True,
        ship: bool = True,
        name: str = "Store",
    ) -> Location:
        """A location, and products for SKUs not yet in the catalog."""
        async with self.tx(merchant) as uow:
            location = await handlers.create_location(
                uow,
                Location("", name, "USD", 825, geo=geo, pickup_enabled=pickup, ship_enabled=ship),
            )
            known = await uow.products.known_skus(list(skus))
            for sku in skus:
                if sku not in known:
                    await catalog.create_product(uow, sku, sku, Money(1000, "USD"))
        return location

    async def product(self, sku: str, merchant: str = "mer_a") -> Product:
        async with self.tx(merchant) as uow:
            return await catalog.create_product(uow, sku, sku, Money(1000, "USD"))


def unique(prefix: str) -> str:
    """A SKU no other test uses, so tests can share one database."""
    return f"{prefix}-{new_id('x')[-10:]}".upper()
