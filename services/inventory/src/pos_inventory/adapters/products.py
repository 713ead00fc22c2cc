"""PostgreSQL repository of the catalog's products."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_inventory.adapters.tables import products
from pos_inventory.domain.catalog import Product
from pos_kit.money import Money
from pos_kit.paging import ChangeCursor, changed_since


def _product(row: Row[Any]) -> Product:
    m = row._mapping
    return Product(
        m["id"],
        m["sku"],
        m["name"],
        Money(m["price_amount"], m["price_currency"]),
        m["version"],
        m["created_at"],
        m["updated_at"],
    )


class SqlProducts:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def add(self, product: Product) -> bool:
        row = (
            await self._conn.execute(
                pg_insert(products)
                .values(
                    merchant_id=self._merchant,
                    id=product.id,
                    sku=product.sku,
                    name=product.name,
                    price_amount=product.price.amount,
                    price_currency=product.price.currency,
                )
                .on_conflict_do_nothing(index_elements=["merchant_id", "sku"])
                .returning(products.c.created_at, products.c.updated_at)
            )
        ).first()
        if row is None:
            return False
        product.created_at, product.updated_at = row.created_at, row.updated_at
        return True

    async def get(self, product_id: str) -> Product | None:
        row = (
            await self._conn.execute(
                select(products).where(
                    products.c.merchant_id == self._merchant, products.c.id == product_id
                )
            )
        ).first()
        return _product(row) if row else None

    async def by_skus(self, skus: list[str]) -> list[Product]:
        rows = await self._conn.execute(
            select(products).where(
                products.c.merchant_id == self._merchant, products.c.sku.in_(skus)
            )
        )
        return [_product(r) for r in rows]

    async def list_changed(
        self, limit: int, since: datetime, cursor: ChangeCursor | None
    ) -> list[Product]:
        query = select(products).where(products.c.merchant_id == self._merchant)
        query = changed_since(query, products.c.updated_at, products.c.id, since, cursor)
        return [_product(r) for r in await self._conn.execute(query.limit(limit))]

    async def list(self, limit: int, after_id: str | None) -> list[Product]:
        query = select(products).where(products.c.merchant_id == self._merchant)
        if after_id:
            query = query.where(products.c.id > after_id)
        rows = await self._conn.execute(query.order_by(products.c.id).limit(limit))
        return [_product(r) for r in rows]
