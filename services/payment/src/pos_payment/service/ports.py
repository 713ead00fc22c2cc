"""What the payment handlers need from storage and from processors, as protocols.

Adapters and unit-test fakes provide them. Repositories are bound to one merchant when the unit
of work builds them. The processor port belongs to the domain (pos_payment.domain.processor)
and is re-exported here so handlers import their needs from one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from pos_kit.paging import PageRequest
from pos_payment.domain.model import (
    CreatedWindow,
    ExchangeCredit,
    Operation,
    OutOfBandRefund,
    Payment,
    PaymentSettings,
    PaymentStatus,
    Refund,
    TenderType,
    TerminalCheckout,
)
from pos_payment.domain.processor import TenderProcessor, TerminalReader
from pos_payment.domain.shifts import Movement

# The processor for each tender type; cash and external tenders have a recording one.
Processors = Mapping[TenderType, TenderProcessor]


class PaymentRepository(Protocol):
    async def add(self, payment: Payment, taken_at: tuple[str, str] | None = None) -> None: ...
    async def get(self, payment_id: str, *, lock: bool = False) -> Payment | None: ...
    async def by_request_key(self, key: str) -> Payment | None: ...
    async def for_order(self, order_id: str, *, lock: bool = False) -> list[Payment]: ...
    async def save(self, payment: Payment) -> None: ...
    async def save_if_version(self, payment: Payment, version: int | None) -> bool:
        """Write the payment back if its row is still at `version` (every save bumps it;
        None: whatever it is). False, and nothing written, when another change came first."""
        ...

    async def forget(self, payment_id: str) -> None: ...
    async def list(
        self,
        page: PageRequest,
        order_id: str,
        location_id: str,
        status: PaymentStatus | None,
        created: CreatedWindow,
    ) -> list[Payment]: ...


class OperationRepository(Protocol):
    async def add(self, op: Operation) -> None: ...
    async def get(self, op_id: str) -> Operation | None: ...
    async def by_request_key(self, key: str, *, lock: bool = False) -> Operation | None: ...
    async def save(self, op: Operation) -> None: ...
    async def forget(self, op: Operation) -> None: ...


class RefundRepository(Protocol):
    async def add(self, refund: Refund) -> None: ...
    async def get(self, refund_id: str, *, lock: bool = False) -> Refund | None: ...
    async def of_request(self, prefix: str, legacy: str = "") -> list[Refund]: ...
    async def save(self, refund: Refund) -> None: ...
    async def list(
        self,
        page: PageRequest,
        payment_id: str,
        order_id: str,
        location_id: str,
        created: CreatedWindow,
    ) -> list[Refund]: ...


class CreditRepository(Protocol):
    async def get(self, exchange_order_id: str, *, lock: bool = False) -> ExchangeCredit | None: ...
    async def add(self, credit: ExchangeCredit) -> bool:
        """False, and nothing written, when the new order has a credit already."""
        ...

    async def save(self, credit: ExchangeCredit) -> None: ...


class OutOfBandRepository(Protocol):
    async def get(self, return_id: str) -> OutOfBandRefund | None: ...
    async def add(self, record: OutOfBandRefund) -> bool:
        """False, and nothing written, when the return has a record already."""
        ...

    async def open_shift_at(self, register_id: str) -> tuple[str, str] | None:
        """The register's open shift (id, currency), held until the transaction ends."""
        ...

    async def pay_out(self, movement: Movement) -> None: ...


class TerminalRepository(Protocol):
    async def add(self, checkout: TerminalCheckout) -> None: ...
    async def get(self, checkout_id: str, *, lock: bool = False) -> TerminalCheckout | None: ...
    async def save(self, checkout: TerminalCheckout) -> None: ...


class SettingsRepository(Protocol):
    async def get(self, *, lock: bool = False) -> PaymentSettings | None: ...
    async def save(self, settings: PaymentSettings) -> bool:
        """Write `settings` if the stored ones are still at the version before theirs (1: none
        stored yet); False, and nothing written, when another change came first."""
        ...


class PaymentUnitOfWork(Protocol):
    merchant_id: str

    @property
    def payments(self) -> PaymentRepository: ...

    @property
    def operations(self) -> OperationRepository: ...

    @property
    def refunds(self) -> RefundRepository: ...

    @property
    def terminals(self) -> TerminalRepository: ...

    @property
    def credits(self) -> CreditRepository: ...

    @property
    def out_of_band(self) -> OutOfBandRepository: ...

    @property
    def settings(self) -> SettingsRepository: ...

    def publish(self, event: object) -> None: ...

    async def commit(self) -> None: ...


class UowContext(PaymentUnitOfWork, AbstractAsyncContextManager["UowContext"], Protocol):
    """A unit of work used as `async with new_uow() as uow:` (one short transaction)."""

    def reading(self) -> UowContext:
        """Only reads: ends with COMMIT, not ROLLBACK (`pos_kit.uow.UnitOfWork.reading`)."""
        ...


# A fresh unit of work bound to the caller's merchant, one per transaction.
NewUow = Callable[[], UowContext]

__all__ = ["NewUow", "PaymentUnitOfWork", "Processors", "TenderProcessor", "TerminalReader"]
