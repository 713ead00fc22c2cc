"""PostgreSQL repositories and unit of work for promotions."""

from __future__ import annotations

from sqlalchemy import Row, Select, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pos_kit.money import Money
from pos_kit.paging import PageRequest
from pos_kit.uow import UnitOfWork
from pos_promotion.adapters import events
from pos_promotion.adapters.tables import promotions
from pos_promotion.domain.model import Promotion

_COLUMNS = (
    promotions.c.id,
    promotions.c.name,
    promotions.c.percent_off_bps,
    promotions.c.minimum_amount,
    promotions.c.minimum_currency,
    promotions.c.active,
    promotions.c.created_at,
)


def _select(merchant_id: str) -> Select[tuple[object, ...]]:
    return select(*_COLUMNS).where(promotions.c.merchant_id == merchant_id)


def _promotion(row: Row[tuple[object, ...]]) -> Promotion:
    m = row._mapping
    minimum = (
        None if m["minimum_currency"] is None else Money(m["minimum_amount"], m["minimum_currency"])
    )
    return Promotion(
        id=m["id"],
        name=m["name"],
        percent_off_bps=m["percent_off_bps"],
        minimum_subtotal=minimum,
        active=m["active"],
        created_at=m["created_at"],
    )


class SqlPromotionRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def add(self, promotion: Promotion) -> None:
        minimum = promotion.minimum_subtotal
        row = (
            await self._conn.execute(
                insert(promotions)
                .values(
                    merchant_id=self._merchant,
                    id=promotion.id,
                    name=promotion.name,
                    percent_off_bps=promotion.percent_off_bps,
                    minimum_amount=None if minimum is None else minimum.amount,
                    minimum_currency=None if minimum is None else minimum.currency,
                    active=promotion.active,
                )
                .returning(promotions.c.created_at)
            )
        ).one()
        promotion.created_at = row.created_at

    async def get(self, promotion_id: str) -> Promotion | None:
        query = _select(self._merchant).where(promotions.c.id == promotion_id)
        row = (await self._conn.execute(query)).first()
        return _promotion(row) if row else None

    async def list(self, page: PageRequest) -> list[Promotion]:
        query = _select(self._merchant)
        if page.after:
            query = query.where(promotions.c.id > page.after)
        rows = (await self._conn.execute(query.order_by(promotions.c.id).limit(page.fetch))).all()
        return [_promotion(r) for r in rows]


class SqlActivePromotions:
    """The checkout hot path's read, on an autocommit connection, bound to one merchant.

    A unit of work would wrap the one SELECT in BEGIN ... ROLLBACK: two more round trips to
    PostgreSQL for a read that needs no transaction (one statement sees one snapshot anyway).
    """

    def __init__(self, engine: AsyncEngine, merchant_id: str) -> None:
        self._engine = engine
        self._merchant = merchant_id

    async def active(self) -> list[Promotion]:
        query = _select(self._merchant).where(promotions.c.active.is_(True))
        async with self._engine.connect() as conn:
            reader = await conn.execution_options(isolation_level="AUTOCOMMIT")
            rows = (await reader.execute(query)).all()
        return [_promotion(r) for r in rows]


class PromotionUow(UnitOfWork):
    """The kit's unit of work plus this service's repository and event mapping."""

    events = events.REGISTRY

    @property
    def promotions(self) -> SqlPromotionRepository:
        return SqlPromotionRepository(self.conn, self.merchant_id)
