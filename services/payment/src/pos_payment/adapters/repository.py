"""PostgreSQL repository and unit of work for payments."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from pos.payment.v1 import events_pb2
from pos_kit.events import make_event
from pos_kit.money import Money
from pos_kit.uow import UnitOfWork
from pos_payment.adapters.messages import payment_to_proto
from pos_payment.adapters.tables import payments
from pos_payment.domain.model import Payment, PaymentCaptured, PaymentStatus, TenderType


def _payment(row: Row[Any]) -> Payment:
    m = row._mapping
    cur = m["currency"]
    return Payment(
        id=m["id"],
        order_id=m["order_id"],
        tender_type=TenderType(m["tender_type"]),
        amount=Money(m["amount"], cur),
        status=PaymentStatus(m["status"]),
        change_due=None if m["change_due"] is None else Money(m["change_due"], cur),
        card_summary=m["card_summary"],
        decline_reason=m["decline_reason"],
        created_at=m["created_at"],
    )


class SqlPaymentRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def add(self, payment: Payment) -> None:
        row = (
            await self._conn.execute(
                insert(payments)
                .values(
                    merchant_id=self._merchant,
                    id=payment.id,
                    order_id=payment.order_id,
                    tender_type=payment.tender_type.value,
                    amount=payment.amount.amount,
                    currency=payment.amount.currency,
                    status=payment.status.value,
                    change_due=None if payment.change_due is None else payment.change_due.amount,
                    card_summary=payment.card_summary,
                    decline_reason=payment.decline_reason,
                )
                .returning(payments.c.created_at)
            )
        ).one()
        payment.created_at = row.created_at

    async def get(self, merchant_id: str, payment_id: str) -> Payment | None:
        row = (
            await self._conn.execute(
                select(payments).where(
                    payments.c.merchant_id == merchant_id, payments.c.id == payment_id
                )
            )
        ).first()
        return _payment(row) if row else None


class PaymentUow(UnitOfWork):
    @property
    def payments(self) -> SqlPaymentRepository:
        return SqlPaymentRepository(self.conn, self.merchant_id)

    def publish(self, event: object) -> None:
        if not isinstance(event, PaymentCaptured):
            raise TypeError(f"no integration event for {type(event).__name__}")
        message = events_pb2.PaymentCaptured(payment=payment_to_proto(event.payment))
        self.emit(make_event(message, self.merchant_id))
