"""What the handlers need from storage, as protocols: adapters and unit-test fakes provide it."""

from __future__ import annotations

from typing import Protocol

from pos_customer.domain.model import Customer
from pos_kit.paging import PageRequest


class CustomerRepository(Protocol):
    """Bound to one merchant when the unit of work builds it: it sees no other's customers."""

    async def add(self, customer: Customer) -> None: ...
    async def get(self, customer_id: str) -> Customer | None: ...
    async def get_by_email(self, email: str) -> Customer | None: ...
    async def save_points(self, customer: Customer) -> None: ...
    async def save_profile(self, customer: Customer, seen_version: int) -> bool:
        """Write the profile if the stored version is still seen_version; False if not."""
        ...

    async def list(self, page: PageRequest) -> list[Customer]:
        """By id, or with `page.since` the change feed (oldest change first)."""
        ...


class CustomerUnitOfWork(Protocol):
    @property
    def customers(self) -> CustomerRepository: ...

    def publish(self, event: object) -> None: ...
