"""What the payment handlers need from storage and from a card processor."""

from __future__ import annotations

from typing import Protocol

from pos_kit.money import Money
from pos_payment.domain.model import CardResult, Payment


class PaymentRepository(Protocol):
    async def add(self, payment: Payment) -> None: ...
    async def get(self, merchant_id: str, payment_id: str) -> Payment | None: ...


class PaymentUnitOfWork(Protocol):
    merchant_id: str

    @property
    def payments(self) -> PaymentRepository: ...

    def publish(self, event: object) -> None: ...


class CardProcessor(Protocol):
    async def authorize_and_capture(self, token: str, amount: Money) -> CardResult: ...
