"""Use cases of the inventory service."""

from __future__ import annotations

from datetime import datetime

from pos_inventory.domain.model import (
    Adjustment,
    Location,
    Product,
    ProductCreated,
    Reason,
    StockChanged,
    StockLevel,
    validate_adjustment,
    validate_location,
    validate_product,
    validate_sku_list,
)
from pos_inventory.service.ports import InventoryUnitOfWork
from pos_kit.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, require
from pos_kit.ids import new_id
from pos_kit.money import Money
from pos_kit.paging import ChangeCursor


async def create_location(
    uow: InventoryUnitOfWork, name: str, currency: str, tax_rate_bps: int
) -> Location:
    validate_location(name, currency, tax_rate_bps)
    location = Location(new_id("loc"), name.strip(), currency, tax_rate_bps)
    await uow.locations.add(location)
    return location


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


async def adjust_stock(uow: InventoryUnitOfWork, adjustment: Adjustment) -> StockLevel:
    validate_adjustment(adjustment)
    if await uow.locations.get(adjustment.location_id) is None:
        raise NotFound("location", adjustment.location_id)
    if not await uow.products.by_skus([adjustment.sku]):
        raise NotFound("product", adjustment.sku)
    level = await uow.stock.apply(adjustment)
    if level is None:
        raise Conflict(
            f"not enough {adjustment.sku!r} on hand to remove {-adjustment.delta}",
            "insufficient_stock",
            {"sku": adjustment.sku},
        )
    uow.publish(StockChanged(level, adjustment.delta, adjustment.reason))
    return level


async def record_sale(
    uow: InventoryUnitOfWork, order_id: str, location_id: str, lines: list[tuple[str, int]]
) -> None:
    """Stock follows a confirmed sale; it may go negative (flagged in the level, not hidden).

    The sale already happened at the till, so it is recorded even for a SKU or location this
    service does not know: refusing it would only make the ledger disagree with the shelf.
    """
    if not order_id or not location_id:
        raise InvalidArgument(
            "a confirmed order needs an id and a location",
            [
                *require(bool(order_id), "order.id", "is required"),
                *require(bool(location_id), "order.location_id", "is required"),
            ],
        )
    for sku, quantity in lines:
        if not sku or quantity <= 0:
            continue  # nothing left the shelf
        adjustment = Adjustment(sku, location_id, -quantity, Reason.SOLD, order_id)
        level = await uow.stock.apply(adjustment)
        if level is not None:
            uow.publish(StockChanged(level, adjustment.delta, adjustment.reason))


async def stock_levels(
    uow: InventoryUnitOfWork, skus: list[str], location_id: str | None
) -> list[StockLevel]:
    validate_sku_list(skus)
    return await uow.stock.levels(skus, location_id)


async def list_changed_products(
    uow: InventoryUnitOfWork, limit: int, since: datetime, cursor: ChangeCursor | None
) -> list[Product]:
    """The change feed partners poll: oldest change first, resumable by cursor."""
    return await uow.products.list_changed(limit, since, cursor)
