"""Use cases of the order service; every entrypoint (gRPC, consumers) calls these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Generic, TypeVar

from pos_kit.errors import NotFound
from pos_kit.idempotency import Claim
from pos_kit.paging import PageRequest
from pos_order.domain.model import (
    Order,
    compute_totals,
    price_lines,
    validate_checkout,
)
from pos_order.service.ports import (
    CheckoutCommand,
    CheckoutPorts,
    CustomerLookup,
    OrderUnitOfWork,
    PaymentResult,
)

R = TypeVar("R")


@dataclass(frozen=True)
class Started:
    """What a checkout reads in its claiming transaction."""

    at: datetime  # when the request was first claimed: its order id derives from it
    known_customer: bool  # no customer, or one the read model has: no call needed


@dataclass(frozen=True)
class Sale:
    """What a checkout's calls settled, to be recorded in one short transaction."""

    order: Order
    payment: PaymentResult
    learnt: int | None  # the version of a customer id asked about, kept with the order


class Checkout(Generic[R]):
    """The register's one-call sale: price, discount, pay (and, once, ask about the customer).

    Three steps, run by the kit once per request id (`pos_kit.servicer.across_calls`): `read`
    in the claiming transaction, `call` holding no database connection, `record` in one short
    transaction. `answer` turns the recorded sale into the caller's response (the entrypoint's
    message), so this layer knows no transport.

    The order id derives from the request and the moment it was *first* claimed, and the
    payment's request id from the checkout's: a retry, whether after a crash or after a call
    that failed (say, the payment's answer lost on the way back), hands the payment service the
    same ids, and it replays the charge instead of refusing it or charging twice.
    """

    def __init__(
        self,
        cmd: CheckoutCommand,
        ports: CheckoutPorts,
        answer: Callable[[Order, PaymentResult], R],
    ) -> None:
        # Bad input is refused before a request id is claimed: nothing to undo.
        validate_checkout(cmd.location_id, cmd.lines, cmd.tender)
        self.cmd = cmd
        self.ports = ports
        self.answer = answer

    async def read(self, uow: OrderUnitOfWork) -> Started:
        cmd = self.cmd
        at = await uow.checkouts.started_at(cmd.request_id)
        known = not cmd.customer_id or await uow.customers.contains(cmd.customer_id)
        return Started(at, known)

    async def call(self, claim: Claim, started: Started) -> Sale:
        cmd, ports = self.cmd, self.ports
        assert cmd.tender is not None  # validated when the checkout was built
        # Before anything is priced or charged: another merchant's customer is no customer.
        learnt = (
            None
            if started.known_customer
            else await customer_version(ports.customers, cmd.customer_id)
        )
        location, items = await ports.catalog.price_snapshot(
            cmd.location_id, [ln.sku for ln in cmd.lines]
        )
        lines = price_lines(cmd.lines, items, location)
        quote = await ports.discounts.quote(lines, location.currency)
        totals = compute_totals(lines, quote.total, location.tax_rate_bps)
        order = Order(
            id=replace(claim, claimed_at=started.at).derived_id("ord"),
            location_id=location.id,
            customer_id=cmd.customer_id,
            lines=lines,
            totals=totals,
            discounts_applied=quote.applied,
        )
        payment = await ports.payments.charge(
            f"{cmd.request_id}/payment",
            order.id,
            location.id,
            cmd.tender,
            totals.total,
            cmd.cash_tendered,
            cmd.card_token,
        )
        order.settle(payment.payment_id, payment.captured)
        return Sale(order, payment, learnt)

    async def record(self, uow: OrderUnitOfWork, sale: Sale) -> R:
        order = sale.order
        if sale.learnt is not None:
            await uow.customers.remember(order.customer_id, sale.learnt)
        await uow.orders.add(order)
        for event in order.events:
            uow.publish(event)
        order.events.clear()
        return self.answer(order, sale.payment)


async def customer_version(customers: CustomerLookup, customer_id: str) -> int:
    """Refuse a customer id the merchant does not have, exactly as one that exists nowhere.

    Ids learnt from the customer service's events need no call (see `Checkout.read`), so a
    sale for a known customer goes on while that service is down. Only an id not seen yet is
    asked about; its version is returned for the caller to remember with its own writes, so the
    next sale needs no call. If the customer service cannot answer for such an id, the look-up's
    Unavailable (503) stands: letting it through would let any id through.
    """
    version = await customers.version_of(customer_id)
    if version is None:
        raise NotFound("customer", customer_id)
    return version


async def remember_customer(uow: OrderUnitOfWork, customer_id: str, version: int) -> None:
    """A customer created or changed at the customer service: its id is now known here."""
    await uow.customers.remember(customer_id, version)


async def get_order(uow: OrderUnitOfWork, order_id: str) -> Order:
    order = await uow.orders.get(order_id)
    if order is None:
        raise NotFound("order", order_id)
    return order


async def list_orders(uow: OrderUnitOfWork, page: PageRequest) -> list[Order]:
    return await uow.orders.list(page)
