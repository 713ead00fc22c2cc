"""PostgreSQL repository and unit of work for promotions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from pos.promotion.v1 import events_pb2
from pos_kit.events import make_event
from pos_kit.money import Money
from pos_kit.uow import UnitOfWork
from pos_promotion.adapters.messages import promotion_to_proto
from pos_promotion.adapters.tables import promotions
from pos_promotion.domain.model import Promotion, PromotionCreated


def _promotion(row: Row[Any]) -> Promotion:
    m = row._mapping
    minimum = (
        None if m["minimum_currency"] is None else Money(m["minimum_amount"], m["minimum_currency"])
    )
    return Promotion(
        m["id"], m["name"], m["percent_off_bps"], minimum, m["active"], m["created_at"]
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

    async def active(self, merchant_id: str) -> list[Promotion]:
        rows = await self._conn.execute(
            select(promotions).where(
                promotions.c.merchant_id == merchant_id, promotions.c.active.is_(True)
            )
        )
        return [_promotion(r) for r in rows]

    async def list(self, merchant_id: str, limit: int, after_id: str | None) -> list[Promotion]:
        query = select(promotions).where(promotions.c.merchant_id == merchant_id)
        if after_id:
            query = query.where(promotions.c.id > after_id)
        rows = await self._conn.execute(query.order_by(promotions.c.id).limit(limit))
        return [_promotion(r) for r in rows]


class PromotionUow(UnitOfWork):
    @property
    def promotions(self) -> SqlPromotionRepository:
        return SqlPromotionRepository(self.conn, self.merchant_id)

    def publish(self, event: object) -> None:
        if not isinstance(event, PromotionCreated):
            raise TypeError(f"no integration event for {type(event).__name__}")
        message = events_pb2.PromotionCreated(promotion=promotion_to_proto(event.promotion))
        self.emit(make_event(message, self.merchant_id))
