"""What the handlers need from storage, as protocols: adapters and unit-test fakes provide it."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pos_customer.domain.model import Customer
from pos_kit.paging import ChangeCursor


class CustomerRepository(Protocol):
    async def add(self, customer: Customer) -> None: ...
    async def get(self, merchant_id: str, customer_id: str) -> Customer | None: ...
    async def get_by_email(self, merchant_id: str, email: str) -> Customer | None: ...
    async def save_points(self, merchant_id: str, customer: Customer) -> None: ...
    async def save_profile(self, customer: Customer, seen_version: int) -> bool:
        """Write the profile if the stored version is still seen_version; False if not."""
        ...

    async def list_changed(
        self, merchant_id: str, limit: int, since: datetime, cursor: ChangeCursor | None
    ) -> list[Customer]: ...
    async def list(self, merchant_id: str, limit: int, after_id: str | None) -> list[Customer]: ...


class CustomerUnitOfWork(Protocol):
    merchant_id: str

    @property
    def customers(self) -> CustomerRepository: ...

    def publish(self, event: object) -> None: ...
