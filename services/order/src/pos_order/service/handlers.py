"""Use cases of the order service."""

from __future__ import annotations

from pos_kit.errors import NotFound
from pos_kit.ids import new_id
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


async def checkout(
    uow: OrderUnitOfWork,
    catalog: Catalog,
    discounts: Discounts,
    payments: Payments,
    customers: CustomerLookup,
    cmd: CheckoutCommand,
) -> tuple[Order, PaymentResult]:
    """The register's one-call sale: three hops (price, discount, pay), one transaction.

    The payment's request id derives from the checkout's, so a retried checkout replays the
    same payment instead of charging twice.
    """
    validate_checkout(cmd.location_id, cmd.lines, cmd.tender)
    assert cmd.tender is not None
    # Before anything is priced or charged: another merchant's customer is no customer.
    learnt = await require_customer(uow, customers, cmd.customer_id)
    location, items = await catalog.price_snapshot(cmd.location_id, [ln.sku for ln in cmd.lines])
    lines = price_lines(cmd.lines, items, location)
    quote = await discounts.quote(lines, location.currency)
    totals = compute_totals(lines, quote.total, location.tax_rate_bps)
    order = Order(
        id=new_id("ord"),
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
    if learnt is not None:
        # Written last, with the order: no row lock held while the other services answer.
        await uow.customers.remember(cmd.customer_id, learnt)
    await uow.orders.add(order)
    for event in order.events:
        uow.publish(event)
    order.events.clear()
    return order, payment


async def require_customer(
    uow: OrderUnitOfWork, customers: CustomerLookup, customer_id: str
) -> int | None:
    """Refuse a customer id the merchant does not have, exactly as one that exists nowhere.

    Ids learnt from the customer service's events need no call, so a sale for a known customer
    goes on while that service is down. Only an id not seen yet is asked about; its version is
    returned for the caller to remember with its own writes, so the next sale needs no call.
    If the customer service cannot answer for such an id, the look-up's Unavailable (503)
    stands: letting it through would let any id through.
    """
    if not customer_id or await uow.customers.contains(customer_id):
        return None
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
