"""PostgreSQL repository of the catalog's products.

A product is one row (variants and barcodes as JSONB, read and written whole); product_skus and
product_barcodes index every SKU and barcode it sells under, so uniqueness across products and
variants is a primary key and not a check that races.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Table,
    Text,
    all_,
    any_,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_inventory.adapters.tables import product_barcodes, product_skus, products
from pos_inventory.domain.catalog import Product, ProductStatus, Variant, concurrent_change
from pos_inventory.domain.search import ProductQuery
from pos_kit.changes import list_page
from pos_kit.direct import Prepared
from pos_kit.money import Money
from pos_kit.paging import PageRequest


def _money(raw: dict[str, Any] | None) -> Money | None:
    return Money(raw["amount"], raw["currency"]) if raw else None


def _variant(raw: dict[str, Any]) -> Variant:
    return Variant(
        raw["id"],
        raw["sku"],
        raw["name"],
        raw["options"],
        _money(raw["price"]),
        raw["barcodes"],
        _money(raw.get("unit_cost")),
    )


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
        m["description"],
        m["category"],
        m["tax_category"],
        ProductStatus(m["status"]),
        m["external_id"] or "",
        list(m["barcodes"]),
        [_variant(v) for v in m["variants"]],
        m["open_price"],
        _cost(m["unit_cost_amount"], m["price_currency"]),
    )


def _cost(amount: int | None, currency: str) -> Money | None:
    return None if amount is None else Money(amount, currency)


def _row(merchant: str, p: Product) -> dict[str, Any]:
    return {
        "merchant_id": merchant,
        "id": p.id,
        "sku": p.sku,
        "name": p.name,
        "price_amount": p.price.amount,
        "price_currency": p.price.currency,
        "version": p.version,
        "description": p.description,
        "category": p.category,
        "tax_category": p.tax_category,
        "status": p.status.value,
        "external_id": p.external_id or None,
        "barcodes": p.barcodes,
        "variants": [
            {
                "id": v.id,
                "sku": v.sku,
                "name": v.name,
                "options": v.options,
                "price": {"amount": v.price.amount, "currency": v.price.currency}
                if v.price
                else None,
                "barcodes": v.barcodes,
                "unit_cost": {"amount": v.unit_cost.amount, "currency": v.unit_cost.currency}
                if v.unit_cost
                else None,
            }
            for v in p.variants
        ],
        "search_text": p.search_text(),
        "open_price": p.open_price,
        "unit_cost_amount": p.unit_cost.amount if p.unit_cost else None,
    }


def _any(values: Sequence[str]) -> Any:
    # One array parameter, not one per value: a 1000-item batch can name 100,000 SKUs.
    return any_(bindparam(None, list(values), type_=ARRAY(Text)))


WORD = re.compile(r"\w+")


def text_query(text: str) -> str:
    """Words as a tsquery where each word is a prefix and all must match: `tee bl` finds
    "Tee, black". Only word characters get through, so no input can break the tsquery syntax."""
    return " & ".join(f"{w}:*" for w in WORD.findall(text.lower())[:16])


def _by_skus() -> Any:
    merchant = bindparam("w_merchant_id", type_=Text)
    owning = select(product_skus.c.product_id).where(
        product_skus.c.merchant_id == merchant,
        product_skus.c.sku == any_(bindparam("skus", type_=ARRAY(Text))),
    )
    return select(products).where(products.c.merchant_id == merchant, products.c.id.in_(owning))


def _known_skus() -> Any:
    return select(product_skus.c.sku).where(
        product_skus.c.merchant_id == bindparam("w_merchant_id", type_=Text),
        product_skus.c.sku == any_(bindparam("skus", type_=ARRAY(Text))),
    )


def _kept_skus() -> Any:
    # KEY SHARE: taken in SKU order like every lock here; it waits for a change taking a SKU
    # away (FOR UPDATE, DELETE) and for nothing else, so writers of stock never queue on each
    # other or on a change that keeps the SKU.
    return _known_skus().order_by(product_skus.c.sku).with_for_update(read=True, key_share=True)


# Every sale prices its lines by SKU, every hold that fails and every stock write checks them:
# the statements are built once (pos_kit.direct.Prepared).
BY_SKUS = Prepared(_by_skus)
KNOWN_SKUS = Prepared(_known_skus)
KEPT_SKUS = Prepared(_kept_skus)


class SqlProducts:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    def _mine(self) -> ColumnElement[bool]:
        return products.c.merchant_id == self._merchant

    async def add(self, product: Product) -> bool:
        """Insert with its SKUs and barcodes. False when a unique key is taken: the caller must
        then abandon the unit of work, which may hold part of the product."""
        return await self.add_many([product])

    async def add_many(self, new: list[Product]) -> bool:
        if not new:
            return True
        rows = [_row(self._merchant, p) for p in new]
        inserted = await self._conn.execute(
            pg_insert(products)
            .on_conflict_do_nothing()
            .returning(products.c.id, products.c.created_at, products.c.updated_at),
            rows,
        )
        stamps = {r.id: (r.created_at, r.updated_at) for r in inserted}
        if len(stamps) != len(new):
            return False
        for p in new:
            p.created_at, p.updated_at = stamps[p.id]
        return await self._index(new)

    async def save(self, product: Product, seen_version: int) -> bool:
        """Write a changed product if its version is still `seen_version`.

        The caller has raised `product.version`; the condition makes concurrent writers lose
        rather than overwrite each other.
        """
        values = _row(self._merchant, product)
        del values["merchant_id"], values["id"]
        row = (
            await self._conn.execute(
                update(products)
                .where(
                    self._mine(), products.c.id == product.id, products.c.version == seen_version
                )
                .values(**values)
                .returning(products.c.updated_at)
            )
        ).first()
        if row is None:
            return False
        product.updated_at = row.updated_at
        if not await self._index([product], replacing=True):
            raise concurrent_change()
        return True

    async def replace_many(self, changed: list[Product]) -> None:
        """Write products this transaction holds locked (see by_external_ids(lock=True))."""
        if not changed:
            return
        rows = [_row(self._merchant, p) for p in changed]
        insert = pg_insert(products)
        names = [c for c in rows[0] if c not in ("merchant_id", "id")]
        upsert = insert.on_conflict_do_update(
            constraint="products_pkey",
            set_={c: insert.excluded[c] for c in names},
        ).returning(products.c.id, products.c.updated_at)
        try:
            stamped = await self._conn.execute(upsert, rows)
        except IntegrityError:
            # Another request took an external id, SKU or barcode after we looked.
            raise concurrent_change() from None
        # Each row's own stamp (the trigger sets it at the moment of its write).
        stamps = {r.id: r.updated_at for r in stamped}
        for p in changed:
            p.updated_at = stamps[p.id]
        if not await self._index(changed, replacing=True):
            raise concurrent_change()

    async def _index(self, items: list[Product], replacing: bool = False) -> bool:
        """Claim every SKU and barcode of `items`; False when one is another product's.

        `replacing`: the products are already indexed; the SKUs and barcodes they no longer
        have are given up, the ones they keep stay where they are. (Dropped and claimed again,
        a kept SKU's row was gone for a moment: a stock write holding the SKU, which waits for
        such a row, then found no SKU and refused units for a product that still sells it.)
        """
        skus = [
            {"merchant_id": self._merchant, "sku": sku, "product_id": p.id}
            for p in items
            for sku in p.skus()
        ]
        codes = [
            {"merchant_id": self._merchant, "barcode": key, "product_id": p.id, "sku": sku}
            for p in items
            for key, sku in p.barcode_skus().items()
        ]
        for table, rows in ((product_skus, skus), (product_barcodes, codes)):
            key = table.primary_key.columns.values()[1]
            if replacing:
                await self._conn.execute(
                    delete(table).where(
                        table.c.merchant_id == self._merchant,
                        table.c.product_id == _any([p.id for p in items]),
                        key != all_(bindparam(None, [r[key.name] for r in rows], ARRAY(Text))),
                    )
                )
            if not rows:
                continue
            insert = pg_insert(table)
            # A row the product already has is rewritten in place (the same key, never a key
            # update, so a stock write's KEY SHARE lock neither waits nor is waited for); a
            # row of another product is left alone and not returned.
            claim = insert.on_conflict_do_update(
                constraint=table.primary_key,
                set_={c.name: insert.excluded[c.name] for c in table.c if not c.primary_key},
                where=table.c.product_id == insert.excluded.product_id,
            )
            got = await self._conn.execute(claim.returning(key), rows)
            if len(got.all()) != len(rows):
                return False
        return True

    async def get(self, product_id: str, lock: bool = False) -> Product | None:
        query = select(products).where(self._mine(), products.c.id == product_id)
        row = (await self._conn.execute(query.with_for_update() if lock else query)).first()
        return _product(row) if row else None

    def _owned(self, table: Table, match: ColumnElement[bool]) -> ColumnElement[bool]:
        """Products with a matching row in an index table: product_skus or product_barcodes."""
        return products.c.id.in_(
            select(table.c.product_id).where(table.c.merchant_id == self._merchant, match)
        )

    async def _where(self, condition: ColumnElement[bool]) -> list[Product]:
        rows = await self._conn.execute(select(products).where(self._mine(), condition))
        return [_product(r) for r in rows]

    async def by_skus(self, skus: list[str]) -> list[Product]:
        """The products selling under any of `skus` (their own or a variant's), each once."""
        rows = await BY_SKUS.execute(self._conn, {"w_merchant_id": self._merchant, "skus": skus})
        return [_product(r) for r in rows]

    async def known_skus(self, skus: list[str], hold: bool = False) -> set[str]:
        """Which of `skus` the catalog sells (a product's own or a variant's, archived or not):
        one index-only read of product_skus, no product rows.

        `hold`: for a stock write, each SKU found stays the catalog's until this transaction
        ends (its product_skus row key-share locked), so a change taking it away waits for the
        write and then sees its units (see `lock_skus`); one that went first has removed the
        row, and the SKU is not found."""
        if not skus:
            return set()
        statement = KEPT_SKUS if hold else KNOWN_SKUS
        rows = await statement.execute(self._conn, {"w_merchant_id": self._merchant, "skus": skus})
        return {r[0] for r in rows}

    async def lock_skus(self, skus: list[str]) -> None:
        """Lock the SKUs a change is about to take away, in SKU order, until it ends: a stock
        write holding one (`known_skus(hold=True)`) is waited for, and one that comes later
        waits for the change, so stock read after this is all the stock there will be."""
        if skus:
            await self._conn.execute(
                select(product_skus.c.sku)
                .where(
                    product_skus.c.merchant_id == self._merchant, product_skus.c.sku == _any(skus)
                )
                .order_by(product_skus.c.sku)
                .with_for_update()
            )

    async def by_barcodes(self, keys: list[str]) -> list[Product]:
        code = product_barcodes.c.barcode
        return await self._where(self._owned(product_barcodes, code == _any(keys)))

    async def by_external_ids(self, ids: list[str], lock: bool = False) -> list[Product]:
        query = select(products).where(self._mine(), products.c.external_id == _any(ids))
        if lock:
            # Held until commit, so an upsert's "unchanged/updated" verdict stays true.
            query = query.order_by(products.c.id).with_for_update()
        return [_product(r) for r in await self._conn.execute(query)]

    async def search(self, query: ProductQuery, page: PageRequest) -> list[Product]:
        stmt = select(products).where(self._mine())
        if query.sku:
            stmt = stmt.where(self._owned(product_skus, product_skus.c.sku == query.sku))
        if query.barcode_key:
            code = product_barcodes.c.barcode
            stmt = stmt.where(self._owned(product_barcodes, code == query.barcode_key))
        words = text_query(query.text)
        if words:
            stmt = stmt.where(products.c.search.op("@@")(func.to_tsquery("simple", words)))
        if query.status is not None:
            stmt = stmt.where(products.c.status == query.status.value)
        if page.after:
            stmt = stmt.where(products.c.id > page.after)
        rows = await self._conn.execute(stmt.order_by(products.c.id).limit(page.fetch))
        return [_product(r) for r in rows]

    async def list(self, page: PageRequest, status: ProductStatus | None = None) -> list[Product]:
        query = select(products).where(self._mine())
        if status is not None:
            query = query.where(products.c.status == status.value)
        rows = await list_page(self._conn, query, products.c.updated_at, products.c.id, page)
        return [_product(r) for r in rows]
