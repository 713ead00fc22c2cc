"""What the inventory handlers need from storage."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pos_inventory.domain.catalog import Product
from pos_inventory.domain.model import Adjustment, Location, StockLevel
from pos_inventory.domain.search import ProductQuery
from pos_kit.paging import ChangeCursor


class LocationRepository(Protocol):
    async def add(self, location: Location) -> None: ...
    async def get(self, location_id: str) -> Location | None: ...
    async def list(self, limit: int, after_id: str | None) -> list[Location]: ...


class ProductRepository(Protocol):
    async def add(self, product: Product) -> bool: ...  # False when the sku is taken
    async def get(self, product_id: str) -> Product | None: ...
    async def by_skus(self, skus: list[str]) -> list[Product]: ...
    async def list_changed(
        self, limit: int, since: datetime, cursor: ChangeCursor | None
    ) -> list[Product]: ...
    # The catalog's own (service/catalog.py, service/upsert.py):
    async def add_many(self, new: list[Product]) -> bool: ...  # False when a key is taken
    async def save(self, product: Product, seen_version: int) -> bool: ...  # False: stale
    async def replace_many(self, changed: list[Product]) -> None: ...
    async def by_barcodes(self, keys: list[str]) -> list[Product]: ...
    async def by_external_ids(self, ids: list[str], lock: bool = False) -> list[Product]: ...
    async def search(
        self, query: ProductQuery, limit: int, after_id: str | None
    ) -> list[Product]: ...
    async def list(self, limit: int, after_id: str | None) -> list[Product]: ...


class StockRepository(Protocol):
    async def apply(self, adjustment: Adjustment) -> StockLevel | None:
        """Apply atomically; None when a decrease is not covered by what is on hand."""
        ...

    async def levels(self, skus: list[str], location_id: str | None) -> list[StockLevel]: ...


class InventoryUnitOfWork(Protocol):
    merchant_id: str

    @property
    def locations(self) -> LocationRepository: ...

    @property
    def products(self) -> ProductRepository: ...

    @property
    def stock(self) -> StockRepository: ...

    def publish(self, event: object) -> None: ...
