"""What checkout needs from storage and from other services, as protocols."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pos_kit.money import Money
from pos_kit.paging import PageRequest
from pos_order.domain.model import (
    LineRequest,
    Order,
    OrderLine,
    PricedItem,
    SellingLocation,
    Tender,
)

# Storage. Every repository is bound to one merchant when the unit of work builds it.


class OrderRepository(Protocol):
    async def add(self, order: Order) -> None: ...
    async def get(self, order_id: str) -> Order | None: ...
    async def list(self, page: PageRequest) -> list[Order]:
        """By id, after `page.after`: up to `page.fetch` orders."""
        ...


class KnownCustomers(Protocol):
    """The merchant's customer ids as the order service has learnt them."""

    async def contains(self, customer_id: str) -> bool: ...
    async def remember(self, customer_id: str, version: int) -> None: ...


class CheckoutStarts(Protocol):
    async def started_at(self, request_id: str) -> datetime:
        """When this checkout request was first claimed: the same on every retry of it."""
        ...


class OrderUnitOfWork(Protocol):
    @property
    def orders(self) -> OrderRepository: ...

    @property
    def customers(self) -> KnownCustomers: ...

    @property
    def checkouts(self) -> CheckoutStarts: ...

    def publish(self, event: object) -> None: ...


# Other services, called with the caller's merchant by the kit's gRPC client.


class Catalog(Protocol):
    async def price_snapshot(
        self, location_id: str, skus: list[str]
    ) -> tuple[SellingLocation, dict[str, PricedItem]]: ...


class CustomerLookup(Protocol):
    async def version_of(self, customer_id: str) -> int | None:
        """The customer's current version, or None when the merchant has no such customer."""
        ...


@dataclass(frozen=True)
class DiscountQuote:
    total: Money
    applied: bool  # False when promotion could not be asked: sold at list price


class Discounts(Protocol):
    async def quote(self, lines: list[OrderLine], currency: str) -> DiscountQuote: ...


@dataclass(frozen=True)
class PaymentResult:
    payment_id: str
    captured: bool
    raw: object  # the payment as the payment service answered it, returned to the caller


class Payments(Protocol):
    async def charge(
        self,
        request_id: str,
        order_id: str,
        location_id: str,
        tender: Tender,
        amount: Money,
        cash_tendered: Money | None,
        card_token: str,
    ) -> PaymentResult: ...


@dataclass(frozen=True)
class CheckoutPorts:
    """The services a checkout calls."""

    catalog: Catalog
    discounts: Discounts
    payments: Payments
    customers: CustomerLookup


@dataclass(frozen=True)
class CheckoutCommand:
    request_id: str
    location_id: str
    customer_id: str
    lines: list[LineRequest]
    tender: Tender | None
    cash_tendered: Money | None
    card_token: str
