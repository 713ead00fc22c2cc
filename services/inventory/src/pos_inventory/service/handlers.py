"""Use cases of the inventory service."""

from __future__ import annotations

from pos_inventory.domain.model import (
    Adjustment,
    Location,
    Reason,
    StockChanged,
    StockLevel,
    validate_adjustment,
    validate_location,
    validate_sku_list,
)
from pos_inventory.service.ports import InventoryUnitOfWork
from pos_kit.errors import Conflict, InvalidArgument, NotFound, require
from pos_kit.ids import new_id


async def create_location(
    uow: InventoryUnitOfWork, name: str, currency: str, tax_rate_bps: int
) -> Location:
    validate_location(name, currency, tax_rate_bps)
    location = Location(new_id("loc"), name.strip(), currency, tax_rate_bps)
    await uow.locations.add(location)
    return location


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
