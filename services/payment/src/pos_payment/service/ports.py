"""What the payment handlers need from storage and from a card processor, as protocols.

Adapters and unit-test fakes provide them. The processor port belongs to the domain
(pos_payment.domain.processor) and is re-exported here so handlers import their needs from one
place.
"""

from __future__ import annotations

from typing import Protocol

from pos_payment.domain.model import Payment
from pos_payment.domain.processor import CardProcessor


class PaymentRepository(Protocol):
    async def add(self, payment: Payment) -> None: ...
    async def get(self, merchant_id: str, payment_id: str) -> Payment | None: ...


class PaymentUnitOfWork(Protocol):
    merchant_id: str

    @property
    def payments(self) -> PaymentRepository: ...

    def publish(self, event: object) -> None: ...


__all__ = ["CardProcessor", "PaymentRepository", "PaymentUnitOfWork"]
