"""PostgreSQL repositories and unit of work for orders."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, exists, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_kit.money import Money
from pos_kit.paging import PageRequest
from pos_kit.uow import UnitOfWork
from pos_order.adapters import events
from pos_order.adapters.tables import checkout_starts, known_customers, orders
from pos_order.domain.model import Order, OrderLine, OrderStatus, Totals


def _order(row: Row[Any]) -> Order:
    m = row._mapping
    cur = m["currency"]
    return Order(
        id=m["id"],
        location_id=m["location_id"],
        customer_id=m["customer_id"],
        lines=[
            OrderLine(ln["sku"], ln["name"], ln["quantity"], Money(ln["unit_price"], cur))
            for ln in m["lines"]
        ],
        totals=Totals(
            Money(m["subtotal"], cur),
            Money(m["discount_total"], cur),
            Money(m["tax_total"], cur),
            Money(m["total"], cur),
        ),
        discounts_applied=m["discounts_applied"],
        status=OrderStatus(m["status"]),
        payment_id=m["payment_id"],
        created_at=m["created_at"],
    )


class SqlOrderRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def add(self, order: Order) -> None:
        t = order.totals
        row = (
            await self._conn.execute(
                insert(orders)
                .values(
                    merchant_id=self._merchant,
                    id=order.id,
                    location_id=order.location_id,
                    customer_id=order.customer_id,
                    status=order.status.value,
                    currency=t.total.currency,
                    lines=[
                        {
                            "sku": ln.sku,
                            "name": ln.name,
                            "quantity": ln.quantity,
                            "unit_price": ln.unit_price.amount,
                        }
                        for ln in order.lines
                    ],
                    subtotal=t.subtotal.amount,
                    discount_total=t.discount.amount,
                    tax_total=t.tax.amount,
                    total=t.total.amount,
                    discounts_applied=order.discounts_applied,
                    payment_id=order.payment_id,
                )
                .returning(orders.c.created_at)
            )
        ).one()
        order.created_at = row.created_at

    async def get(self, order_id: str) -> Order | None:
        row = (
            await self._conn.execute(
                select(orders).where(
                    orders.c.merchant_id == self._merchant, orders.c.id == order_id
                )
            )
        ).first()
        return _order(row) if row else None

    async def list(self, page: PageRequest) -> list[Order]:
        query = select(orders).where(orders.c.merchant_id == self._merchant)
        if page.after:
            query = query.where(orders.c.id > page.after)
        rows = (await self._conn.execute(query.order_by(orders.c.id).limit(page.fetch))).all()
        return [_order(r) for r in rows]


class SqlKnownCustomers:
    """The read model of the merchant's customer ids (see tables.known_customers)."""

    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def contains(self, customer_id: str) -> bool:
        t = known_customers
        query = select(
            exists().where(t.c.merchant_id == self._merchant, t.c.customer_id == customer_id)
        )
        return bool((await self._conn.execute(query)).scalar())

    async def remember(self, customer_id: str, version: int) -> None:
        # Events may arrive out of order and race a checkout's own look-up: keep the newest.
        t = known_customers
        statement = pg_insert(t).values(
            merchant_id=self._merchant, customer_id=customer_id, version=version
        )
        await self._conn.execute(
            statement.on_conflict_do_update(
                constraint="known_customers_pkey",
                set_={"version": statement.excluded.version, "seen_at": statement.excluded.seen_at},
                where=t.c.version < statement.excluded.version,
            )
        )


class SqlCheckoutStarts:
    """When each checkout request was first claimed (see tables.checkout_starts)."""

    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def started_at(self, request_id: str) -> datetime:
        t = checkout_starts
        # The first claim's transaction stamps it (`now()`, the claim's own time); a retry,
        # serialised behind the kit's claim on the same request id, finds it. One round trip
        # on a first attempt, two on a retry.
        first = (
            await self._conn.execute(
                pg_insert(t)
                .values(merchant_id=self._merchant, request_id=request_id)
                .on_conflict_do_nothing()
                .returning(t.c.started_at)
            )
        ).first()
        if first is not None:
            started: datetime = first.started_at
            return started
        earlier: datetime = (
            await self._conn.execute(
                select(t.c.started_at).where(
                    t.c.merchant_id == self._merchant, t.c.request_id == request_id
                )
            )
        ).scalar_one()
        return earlier


class OrderUow(UnitOfWork):
    """The kit's unit of work plus this service's repositories and event mapping."""

    events = events.REGISTRY

    @property
    def orders(self) -> SqlOrderRepository:
        return SqlOrderRepository(self.conn, self.merchant_id)

    @property
    def customers(self) -> SqlKnownCustomers:
        return SqlKnownCustomers(self.conn, self.merchant_id)

    @property
    def checkouts(self) -> SqlCheckoutStarts:
        return SqlCheckoutStarts(self.conn, self.merchant_id)
