"""Use cases of the catalog: products and the price snapshot a checkout takes."""

from __future__ import annotations

from datetime import datetime

from pos_inventory.domain.catalog import Product, ProductCreated, validate_product
from pos_inventory.domain.model import Location, validate_sku_list
from pos_inventory.service.ports import InventoryUnitOfWork
from pos_kit.errors import AlreadyExists, NotFound
from pos_kit.ids import new_id
from pos_kit.money import Money
from pos_kit.paging import ChangeCursor


async def create_product(uow: InventoryUnitOfWork, sku: str, name: str, price: Money) -> Product:
    validate_product(sku, name, price)
    product = Product(new_id("prod"), sku, name.strip(), price)
    if not await uow.products.add(product):
        raise AlreadyExists(f"a product with sku {sku!r} already exists", "sku_taken")
    uow.publish(ProductCreated(product))
    return product


async def get_product(uow: InventoryUnitOfWork, product_id: str) -> Product:
    product = await uow.products.get(product_id)
    if product is None:
        raise NotFound("product", product_id)
    return product


async def price_snapshot(
    uow: InventoryUnitOfWork, skus: list[str], location_id: str
) -> tuple[list[Product], Location | None]:
    """Prices of every SKU asked for (all or an error) and the selling location."""
    validate_sku_list(skus)
    products = await uow.products.by_skus(skus)
    missing = sorted(set(skus) - {p.sku for p in products})
    if missing:
        error = NotFound("product", ", ".join(missing))
        error.metadata["skus"] = ",".join(missing)
        raise error
    location = None
    if location_id:
        location = await uow.locations.get(location_id)
        if location is None:
            raise NotFound("location", location_id)
    # In the order asked for (each once), so a caller can zip them with its lines.
    by_sku = {p.sku: p for p in products}
    return [by_sku[s] for s in dict.fromkeys(skus)], location


async def list_changed_products(
    uow: InventoryUnitOfWork, limit: int, since: datetime, cursor: ChangeCursor | None
) -> list[Product]:
    """The change feed partners poll: oldest change first, resumable by cursor."""
    return await uow.products.list_changed(limit, since, cursor)
