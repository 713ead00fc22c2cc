"""PostgreSQL repository and unit of work for customers."""

from __future__ import annotations

from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_customer.adapters import events
from pos_customer.adapters.tables import customers, loyalty_ledger
from pos_customer.domain.model import Customer, LoyaltyPointsEarned
from pos_kit.changes import list_page
from pos_kit.paging import PageRequest
from pos_kit.uow import UnitOfWork


def _customer(row: Row[tuple[object, ...]]) -> Customer:
    m = row._mapping
    return Customer(
        id=m["id"],
        email=m["email"],
        given_name=m["given_name"],
        family_name=m["family_name"],
        loyalty_points=m["loyalty_points"],
        version=m["version"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


class SqlCustomerRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def add(self, customer: Customer) -> None:
        row = (
            await self._conn.execute(
                insert(customers)
                .values(
                    merchant_id=self._merchant,
                    id=customer.id,
                    email=customer.email,
                    given_name=customer.given_name,
                    family_name=customer.family_name,
                )
                .returning(customers.c.created_at, customers.c.updated_at)
            )
        ).one()
        customer.created_at, customer.updated_at = row.created_at, row.updated_at

    async def get(self, customer_id: str) -> Customer | None:
        row = (
            await self._conn.execute(
                select(customers).where(
                    customers.c.merchant_id == self._merchant, customers.c.id == customer_id
                )
            )
        ).first()
        return _customer(row) if row else None

    async def get_by_email(self, email: str) -> Customer | None:
        row = (
            await self._conn.execute(
                select(customers).where(
                    customers.c.merchant_id == self._merchant, customers.c.email == email
                )
            )
        ).first()
        return _customer(row) if row else None

    async def save_points(self, customer: Customer) -> None:
        for event in customer.events:
            if isinstance(event, LoyaltyPointsEarned):
                await self._conn.execute(
                    insert(loyalty_ledger).values(
                        merchant_id=self._merchant,
                        customer_id=customer.id,
                        order_id=event.order_id,
                        points=event.points,
                    )
                )
        await self._conn.execute(
            update(customers)
            .where(customers.c.merchant_id == self._merchant, customers.c.id == customer.id)
            .values(
                loyalty_points=customer.loyalty_points,
                version=customer.version,
            )
        )

    async def save_profile(self, customer: Customer, seen_version: int) -> bool:
        result = await self._conn.execute(
            update(customers)
            .where(
                customers.c.merchant_id == self._merchant,
                customers.c.id == customer.id,
                customers.c.version == seen_version,
            )
            .values(
                email=customer.email,
                given_name=customer.given_name,
                family_name=customer.family_name,
                version=customer.version,
            )
        )
        return bool(result.rowcount)

    async def list(self, page: PageRequest) -> list[Customer]:
        query = select(customers).where(customers.c.merchant_id == self._merchant)
        rows = await list_page(self._conn, query, customers.c.updated_at, customers.c.id, page)
        return [_customer(r) for r in rows]


class CustomerUow(UnitOfWork):
    """The kit's unit of work plus this service's repository and event mapping."""

    events = events.REGISTRY

    @property
    def customers(self) -> SqlCustomerRepository:
        return SqlCustomerRepository(self.conn, self.merchant_id)
