"""PostgreSQL repositories and the unit of work for inventory."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert, Row, Update, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_inventory.adapters import events
from pos_inventory.adapters.products import SqlProducts
from pos_inventory.adapters.tables import locations, stock, stock_ledger
from pos_inventory.domain.model import Adjustment, Location, StockLevel
from pos_kit.uow import UnitOfWork


def _location(row: Row[Any]) -> Location:
    m = row._mapping
    return Location(
        m["id"], m["name"], m["currency"], m["tax_rate_bps"], m["version"], m["created_at"]
    )


class SqlLocations:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def add(self, location: Location) -> None:
        row = (
            await self._conn.execute(
                insert(locations)
                .values(
                    merchant_id=self._merchant,
                    id=location.id,
                    name=location.name,
                    currency=location.currency,
                    tax_rate_bps=location.tax_rate_bps,
                )
                .returning(locations.c.created_at)
            )
        ).one()
        location.created_at = row.created_at

    async def get(self, location_id: str) -> Location | None:
        row = (
            await self._conn.execute(
                select(locations).where(
                    locations.c.merchant_id == self._merchant, locations.c.id == location_id
                )
            )
        ).first()
        return _location(row) if row else None

    async def list(self, limit: int, after_id: str | None) -> list[Location]:
        query = select(locations).where(locations.c.merchant_id == self._merchant)
        if after_id:
            query = query.where(locations.c.id > after_id)
        rows = await self._conn.execute(query.order_by(locations.c.id).limit(limit))
        return [_location(r) for r in rows]


class SqlStock:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def apply(self, adjustment: Adjustment) -> StockLevel | None:
        key = (
            (stock.c.merchant_id == self._merchant)
            & (stock.c.sku == adjustment.sku)
            & (stock.c.location_id == adjustment.location_id)
        )
        statement: Insert | Update
        if adjustment.delta > 0 or adjustment.may_go_negative:
            statement = (
                pg_insert(stock)
                .values(
                    merchant_id=self._merchant,
                    sku=adjustment.sku,
                    location_id=adjustment.location_id,
                    on_hand=adjustment.delta,
                )
                .on_conflict_do_update(
                    constraint="stock_pkey",
                    set_={"on_hand": stock.c.on_hand + adjustment.delta, "updated_at": func.now()},
                )
            )
        else:
            # One conditional UPDATE: the row lock makes concurrent decreases queue, and the
            # condition is re-checked on the latest row, so on_hand can never go below zero.
            statement = (
                update(stock)
                .where(key, stock.c.on_hand + adjustment.delta >= 0)
                .values(on_hand=stock.c.on_hand + adjustment.delta, updated_at=func.now())
            )
        row = (
            await self._conn.execute(statement.returning(stock.c.on_hand, stock.c.reserved))
        ).first()
        if row is None:
            return None
        await self._conn.execute(
            insert(stock_ledger).values(
                merchant_id=self._merchant,
                sku=adjustment.sku,
                location_id=adjustment.location_id,
                delta=adjustment.delta,
                reason=adjustment.reason.value,
                reference=adjustment.reference,
                on_hand_after=row.on_hand,
            )
        )
        return StockLevel(adjustment.sku, adjustment.location_id, row.on_hand, row.reserved)

    async def levels(self, skus: list[str], location_id: str | None) -> list[StockLevel]:
        query = select(stock).where(stock.c.merchant_id == self._merchant, stock.c.sku.in_(skus))
        if location_id:
            query = query.where(stock.c.location_id == location_id)
        rows = await self._conn.execute(query.order_by(stock.c.sku, stock.c.location_id))
        found = [StockLevel(r.sku, r.location_id, r.on_hand, r.reserved) for r in rows]
        if location_id:
            # Nothing ever received is a level of zero, not an absence.
            have = {level.sku for level in found}
            found += [StockLevel(s, location_id, 0, 0) for s in skus if s not in have]
        return found


class InventoryUow(UnitOfWork):
    @property
    def locations(self) -> SqlLocations:
        return SqlLocations(self.conn, self.merchant_id)

    @property
    def products(self) -> SqlProducts:
        return SqlProducts(self.conn, self.merchant_id)

    @property
    def stock(self) -> SqlStock:
        return SqlStock(self.conn, self.merchant_id)

    def publish(self, event: object) -> None:
        self.emit(events.to_outgoing(event, self.merchant_id))
