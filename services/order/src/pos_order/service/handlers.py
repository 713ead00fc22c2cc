"""Use cases of the order service."""

from __future__ import annotations

from dataclasses import dataclass

from pos_kit.errors import NotFound
from pos_order.domain.model import (
    Order,
    compute_totals,
    price_lines,
    validate_checkout,
)
from pos_order.service.ports import (
    Catalog,
    CheckoutCommand,
    CustomerLookup,
    Discounts,
    OrderUnitOfWork,
    PaymentResult,
    Payments,
)


@dataclass(frozen=True)
class Sale:
    """What a checkout's calls settled, to be recorded in one short transaction."""

    order: Order
    payment: PaymentResult
    learnt: int | None  # the version of a customer id asked about, kept with the order


async def is_known_customer(uow: OrderUnitOfWork, customer_id: str) -> bool:
    """Read in the checkout's claim transaction: does the sale need to ask about its customer?"""
    return not customer_id or await uow.customers.contains(customer_id)


async def sell(
    order_id: str,
    known_customer: bool,
    catalog: Catalog,
    discounts: Discounts,
    payments: Payments,
    customers: CustomerLookup,
    cmd: CheckoutCommand,
) -> Sale:
    """The register's one-call sale, its calls: price, discount, pay (and, once, the customer).

    Runs holding no database connection. The order id is fixed by the caller for this request
    and the payment's request id derives from the checkout's, so a re-run of the same checkout
    replays the same payment instead of charging twice.
    """
    validate_checkout(cmd.location_id, cmd.lines, cmd.tender)
    assert cmd.tender is not None
    # Before anything is priced or charged: another merchant's customer is no customer.
    learnt = None if known_customer else await customer_version(customers, cmd.customer_id)
    location, items = await catalog.price_snapshot(cmd.location_id, [ln.sku for ln in cmd.lines])
    lines = price_lines(cmd.lines, items, location)
    quote = await discounts.quote(lines, location.currency)
    totals = compute_totals(lines, quote.total, location.tax_rate_bps)
    order = Order(
        id=order_id,
        location_id=location.id,
        customer_id=cmd.customer_id,
        lines=lines,
        totals=totals,
        discounts_applied=quote.applied,
    )
    payment = await payments.charge(
        f"{cmd.request_id}/payment",
        order.id,
        cmd.tender,
        totals.total,
        cmd.cash_tendered,
        cmd.card_token,
    )
    order.settle(payment.payment_id, payment.captured)
    return Sale(order, payment, learnt)


async def record_sale(uow: OrderUnitOfWork, sale: Sale) -> Order:
    """The sale's writes, in the checkout's one short closing transaction."""
    order = sale.order
    if sale.learnt is not None:
        await uow.customers.remember(order.customer_id, sale.learnt)
    await uow.orders.add(order)
    for event in order.events:
        uow.publish(event)
    order.events.clear()
    return order


async def customer_version(customers: CustomerLookup, customer_id: str) -> int:
    """Refuse a customer id the merchant does not have, exactly as one that exists nowhere.

    Ids learnt from the customer service's events need no call (see `is_known_customer`), so a
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
    order = await uow.orders.get(uow.merchant_id, order_id)
    if order is None:
        raise NotFound("order", order_id)
    return order


async def list_orders(uow: OrderUnitOfWork, limit: int, after_id: str | None) -> list[Order]:
    return await uow.orders.list(uow.merchant_id, limit, after_id)
